import Foundation
import Testing
import Torch
@testable import Alignment
@testable import LM

/// KL(N(0, 1) ‖ N(1, 4)) = ln 2 + (1 + 1)/8 − ½, and a second dimension KL(N(2, e) ‖ N(0, 1)) = ½(−1 + e + 4 − 1);
/// the KL of a distribution with itself is 0; the gradient by finite differences.
@Test func gaussianKLMatchesTheClosedForm() {
  let kl = MultiViewLoss.gaussianKL(mu1: Tensor([0.0, 2.0], shape: [1, 2]), logVar1: Tensor([0.0, 1.0], shape: [1, 2]),
                                    mu2: Tensor([1.0, 0.0], shape: [1, 2]), logVar2: Tensor([Foundation.log(4.0), 0.0], shape: [1, 2]))
  let expected = (Foundation.log(2.0) + 2.0 / 8 - 0.5) + 0.5 * (-1 + Foundation.exp(1.0) + 4 - 1)
  #expect(Swift.abs(kl.item() - expected) < 1e-12)
  let mu = Tensor([0.3, -1.2, 0.5, 2.0] as [Double], shape: [2, 2]), lv = Tensor([0.1, -0.4, 0.7, 0.0] as [Double], shape: [2, 2])
  #expect(MultiViewLoss.gaussianKL(mu1: mu, logVar1: lv, mu2: mu, logVar2: lv).toArray(Double.self).allSatisfy { Swift.abs($0) < 1e-12 })
  expectGradientsMatch([randomLogits(1, 2, 3), randomLogits(1, 2, 3), randomLogits(1, 2, 3), randomLogits(1, 2, 3)]) {
    MultiViewLoss.gaussianKL(mu1: $0[0], logVar1: $0[1], mu2: $0[2], logVar2: $0[3]).sum()
  }
}

/// Î_JSD on a 2 × 2 score matrix by hand: the diagonal's mean log σ(T) minus the off-diagonal's mean softplus(T).
@Test func jsdMutualInformationIsPositivesMinusNegativesByHand() {
  func softplus(_ x: Double) -> Double { Foundation.log(1 + Foundation.exp(x)) }
  let t = Tensor([2.0, -1.0, 0.5, 1.0], shape: [2, 2])
  let expected = (-softplus(-2) - softplus(-1)) / 2 - (softplus(-1) + softplus(0.5)) / 2
  #expect(Swift.abs(MultiViewLoss.jsdMutualInformation(scores: t).item() - expected) < 1e-12)
  // A critic that separates the positives from the negatives scores higher than one that cannot.
  let sharp = MultiViewLoss.jsdMutualInformation(scores: Tensor([8.0, -8, -8, 8], shape: [2, 2])).item()
  let blind = MultiViewLoss.jsdMutualInformation(scores: Tensor([0.0, 0, 0, 0], shape: [2, 2])).item()
  #expect(sharp > blind && Swift.abs(blind - -2 * Foundation.log(2.0)) < 1e-12)
  expectGradientsMatch([Tensor.randn([3, 3], dtype: .float64, generator: gen)]) { MultiViewLoss.jsdMutualInformation(scores: $0[0]) }
}

/// The multi-view head: identical views have zero symmetric KL, so L_M = −Î exactly; UML adds λ·L_M to the
/// Bradley–Terry loss of the same batch.
@Test func umlAddsLambdaTimesTheMultiViewTermToBradleyTerry() {
  let head = MultiViewHead(features: 8, hidden: 16, latent: 4, generator: Generator(seed: 2))
  let h = Tensor.randn([5, 8], generator: Generator(seed: 3))
  let same = head.loss(view1: h, view2: h, generator: Generator(seed: 4))
  #expect(Swift.abs(same.metrics["multiview/skl"]!) < 1e-6)
  #expect(Swift.abs(same.loss.item() + same.metrics["multiview/mi_jsd"]!) < 1e-6)

  let config = ModelConfig(family: .gpt2, vocabSize: 12, hiddenSize: 16, layers: 1, heads: 2, maxPositions: 16)
  let lm = Checkpoint.makeModel(config, generator: Generator(seed: 5))
  let pairs = (0..<3).map { i in
    PairExample(chosen: TokenSequence(prompt: [1, 2 + i], response: [4, 5]), rejected: TokenSequence(prompt: [1, 2 + i], response: [6, 5]))
  }
  let views = (0..<4).map { i in [TokenSequence(prompt: [1, 3 + i], response: [7, 5]), TokenSequence(prompt: [1, 3 + i], response: [8, 9, 5])] }
  let plain = RewardModelMethod(padId: 0, rewardModel: RewardModel(lm: lm, generator: Generator(seed: 6)))
  let uml = RewardModelMethod(padId: 0, rewardModel: RewardModel(lm: lm, generator: Generator(seed: 6)),
                              multiView: (views, 0.5, 3), seed: 1)
  let a = plain.loss(pairs, model: lm, step: 1), b = uml.loss(pairs, model: lm, step: 1)
  let skl = b.metrics["multiview/skl"]!.item(), mi = b.metrics["multiview/mi_jsd"]!.item()
  #expect(Swift.abs(b.metrics["bt_loss"]!.item() - a.loss.item()) < 1e-5)
  #expect(Swift.abs(b.loss.item() - (a.loss.item() + 0.5 * (skl - mi))) < 1e-5)
  #expect(skl > 0)
  // The head's weights are trained and checkpointed with the score head.
  #expect(uml.extraParameters.count == 1 + 7)
  #expect(uml.generators.map(\.name) == ["multiview"])
}
