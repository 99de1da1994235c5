import Foundation
import Testing
import Torch
@testable import Alignment
@testable import LM

private func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

@Test func ktoMatchesItsFormulaByHand() {
  let policy = [-1.0, -3.0, -2.0], reference = [-2.0, -2.5, -2.2]
  let policyKL = [-4.0, -5.0, -3.0], referenceKL = [-4.5, -5.1, -3.6]
  let desirable = [true, false, true]
  let (beta, wd, wu) = (0.5, 1.0, 1.33)
  let r = KTOLoss.compute(policy: Tensor(policy), reference: Tensor(reference), policyKL: Tensor(policyKL),
                          referenceKL: Tensor(referenceKL), desirable: desirable, beta: beta, desirableWeight: wd,
                          undesirableWeight: wu)
  let z0 = Swift.max(0, zip(policyKL, referenceKL).map { $0 - $1 }.reduce(0, +) / 3)  // 0.4
  let ratios = zip(policy, reference).map { $0 - $1 }
  let losses = zip(ratios, desirable).map { x, d in d ? wd * (1 - sigmoid(beta * (x - z0))) : wu * (1 - sigmoid(beta * (z0 - x))) }
  #expect(Swift.abs(r.loss.item() - losses.reduce(0, +) / 3) < 1e-12)
  #expect(Swift.abs(r.metrics["kl"]! - z0) < 1e-12)
  #expect(Swift.abs(r.metrics["rewards/chosen"]! - beta * (ratios[0] + ratios[2]) / 2) < 1e-12)
  #expect(Swift.abs(r.metrics["rewards/rejected"]! - beta * ratios[1]) < 1e-12)
  #expect(Swift.abs(r.metrics["logps/chosen"]! - (policy[0] + policy[2]) / 2) < 1e-12)
  // A negative mismatched log-ratio is clamped: z0 = 0.
  let clamped = KTOLoss.compute(policy: Tensor(policy), reference: Tensor(reference), policyKL: Tensor([-5.0, -6.0, -4.0]),
                                referenceKL: Tensor(referenceKL), desirable: desirable, beta: beta)
  #expect(clamped.metrics["kl"] == 0)
  let plain = zip(ratios, desirable).map { x, d in d ? 1 - sigmoid(beta * x) : 1 - sigmoid(-beta * x) }
  #expect(Swift.abs(clamped.loss.item() - plain.reduce(0, +) / 3) < 1e-12)
}

@Test func ktoGradientFollowsFiniteDifferencesAndSkipsTheReferencePoint() {
  let reference = Tensor([-2.0, -2.5, -2.2, -1.0] as [Double])
  let referenceKL = Tensor([-4.5, -5.1, -3.6, -2.0] as [Double])
  let desirable = [true, false, true, false]
  expectGradientsMatch([Tensor([-1.0, -3.0, -2.0, -0.5] as [Double])]) {
    KTOLoss.compute(policy: $0[0], reference: reference, policyKL: Tensor([-4.0, -5.0, -3.0, -1.0] as [Double]),
                    referenceKL: referenceKL, desirable: desirable, beta: 0.7, desirableWeight: 1.2, undesirableWeight: 0.8).loss
  }
  // z0 is detached: the mismatched log-probs get no gradient.
  let kl = Tensor([-4.0, -5.0, -3.0, -1.0] as [Double]).requiringGrad()
  let policy = Tensor([-1.0, -3.0, -2.0, -0.5] as [Double]).requiringGrad()
  KTOLoss.compute(policy: policy, reference: reference, policyKL: kl, referenceKL: referenceKL, desirable: desirable,
                  beta: 0.7).loss.backward()
  #expect(kl.grad == nil || kl.grad!.toArray(Double.self).allSatisfy { $0 == 0 })
  #expect(policy.grad!.toArray(Double.self).allSatisfy { $0 != 0 })
}
