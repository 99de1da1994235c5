import Foundation
import Testing
import Torch
@testable import Alignment
@testable import LM

@Test func rlooBaselineIsTheMeanOfTheOtherCompletionsAfterTheKLPenalty() {
  // Two prompts, k = 3 each.
  let r = [1.0, 0.0, 0.5, 2.0, 2.0, -1.0], kl = [0.2, -0.1, 0.4, 0.0, 1.0, 0.3], beta = 0.05
  let (a, penalized) = RLOO.advantages(r, klSums: kl, groupSize: 3, beta: beta)
  for i in 0..<6 {
    let p = r[i] - beta * kl[i]
    #expect(Swift.abs(penalized[i] - p) < 1e-15)
    let group = (i / 3) * 3
    let others = (group..<group + 3).filter { $0 != i }.map { r[$0] - beta * kl[$0] }
    #expect(Swift.abs(a[i] - (p - others.reduce(0, +) / 2)) < 1e-12, "\(i)")
  }
  // Advantages within a group sum to zero·k/(k−1): the leave-one-out baseline is unbiased.
  #expect(Swift.abs(a[0] + a[1] + a[2]) < 1e-12)
  // Normalised: zero mean, unit (unbiased) std over the batch.
  let (n, _) = RLOO.advantages(r, klSums: kl, groupSize: 3, beta: beta, normalize: true)
  let m = n.reduce(0, +) / 6
  #expect(Swift.abs(m) < 1e-12)
  #expect(Swift.abs((n.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 5).squareRoot() - 1) < 1e-6)
}

@Test func rlooLossIsTheClippedSequenceRatioByHand() {
  let lp = [-3.0, -5.0, -2.0], old = [-3.4, -4.7, -2.0], adv = [1.0, -2.0, 0.5], eps = 0.2
  let res = RLOO.loss(sequenceLogProbs: Tensor(lp), oldLogProbs: Tensor(old), advantages: Tensor(adv), epsilon: eps)
  var total = 0.0, clipped = 0.0
  for i in 0..<3 {
    let ratio = Foundation.exp(lp[i] - old[i])
    let a = -adv[i] * ratio, b = -adv[i] * Swift.min(Swift.max(ratio, 1 - eps), 1 + eps)
    total += Swift.max(a, b)
    if b > a { clipped += 1 }
  }
  #expect(Swift.abs(res.loss.item() - total / 3) < 1e-12)
  // Row 0: ρ = e^0.4 > 1.2 with A > 0 is clipped; row 1: ρ = e^-0.3 < 0.8 with A < 0 is clipped.
  #expect(clipped == 2 && Swift.abs(res.metrics["policy/clipfrac_avg"]! - 2.0 / 3) < 1e-7)
  expectGradientsMatch([Tensor(lp)]) {
    RLOO.loss(sequenceLogProbs: $0[0], oldLogProbs: Tensor(old), advantages: Tensor(adv), epsilon: eps).loss
  }
}

@Test func onlineDPOPicksTheHigherScoreAndTheFirstOnATie() {
  #expect(OnlineDPOMethod.firstIsChosen(1, 0))
  #expect(!OnlineDPOMethod.firstIsChosen(0, 1))
  #expect(OnlineDPOMethod.firstIsChosen(0.5, 0.5))
}

@Test func aRewardModelDirectoryIsAReward() throws {
  let lm = Checkpoint.makeModel(ModelConfig(family: .gpt2, vocabSize: 40, hiddenSize: 16, layers: 1, heads: 2, maxPositions: 32),
                                generator: Generator(seed: 2))
  let rm = RewardModel(lm: lm, generator: Generator(seed: 3))
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-rm-reward-\(getpid())")
  defer { try? FileManager.default.removeItem(at: dir) }
  try rm.save(to: dir)
  let prompt = PromptExample(tokens: [3, 4, 5], text: "x", record: Data("{}".utf8), source: "p.jsonl:1")
  let items = [[6, 7], [8], [9, 10, 11]].map { RewardItem(prompt: prompt, completion: "", completionTokens: $0) }
  let reward = try RewardModelReward(directory: dir.path, vocabularySize: 40, padId: 0)
  let expected = withoutGradients {
    rm.rewards(items.map { TokenSequence(prompt: $0.prompt.tokens, response: $0.completionTokens) }, padId: 0).to(.float64)
      .toArray(Double.self)
  }
  let got = try reward.rewards(items)
  #expect(got.count == 3 && zip(got, expected).allSatisfy { Swift.abs($0 - $1) < 1e-6 })
  #expect(Set(got.map { ($0 * 1e6).rounded() }).count == 3, "different completions score differently")
  #expect(throws: RewardError.self) { try RewardModelReward(directory: dir.path, vocabularySize: 41, padId: 0) }
}
