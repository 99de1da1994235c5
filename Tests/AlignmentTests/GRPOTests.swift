import Foundation
import Testing
import Torch
@testable import Alignment
@testable import LM

/// A tiny batch with unequal lengths: row 0 has two completion tokens, row 1 three.
private let lp = [[-1.0, -0.5, 0.0], [-2.0, -0.3, -1.2]]
private let old = [[-1.3, -0.4, 0.0], [-1.5, -0.3, -1.6]]
private let ref = [[-0.9, -0.7, 0.0], [-2.2, -0.1, -1.0]]
private let maskRows = [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
private let adv = [1.0, -0.5]

private func t(_ rows: [[Double]]) -> Tensor { Tensor(rows.flatMap { $0 }, shape: [rows.count, rows[0].count]) }

/// Per-token loss by hand: −min(ρA, clip(ρ)A) + β·k3.
private func perToken(_ i: Int, _ j: Int, low: Double, high: Double, beta: Double) -> Double {
  let ratio = Foundation.exp(lp[i][j] - old[i][j])
  let clipped = Swift.min(Swift.max(ratio, 1 - low), 1 + high)
  let d = ref[i][j] - lp[i][j]
  return -Swift.min(ratio * adv[i], clipped * adv[i]) + beta * (Foundation.exp(d) - d - 1)
}

@Test func grpoLossTypesMatchTheirNormalisationsByHand() {
  let (low, high, beta, maxLength) = (0.2, 0.28, 0.04, 4)
  var rowSums = [0.0, 0.0], rowCounts = [0.0, 0.0]
  for i in 0..<2 { for j in 0..<3 where maskRows[i][j] == 1 { rowSums[i] += perToken(i, j, low: low, high: high, beta: beta); rowCounts[i] += 1 } }
  let expected: [GRPO.LossType: Double] = [
    .grpo: (rowSums[0] / rowCounts[0] + rowSums[1] / rowCounts[1]) / 2,
    .bnpo: (rowSums[0] + rowSums[1]) / 5, .dapo: (rowSums[0] + rowSums[1]) / 5,
    .drGRPO: (rowSums[0] + rowSums[1]) / Double(2 * maxLength),
  ]
  for type in GRPO.LossType.allCases {
    let r = GRPO.loss(logProbs: t(lp), oldLogProbs: t(old), advantages: Tensor(adv), mask: t(maskRows), epsilonLow: low,
                      epsilonHigh: high, beta: beta, referenceLogProbs: t(ref), lossType: type, maxCompletionLength: maxLength)
    #expect(Swift.abs(r.loss.item() - expected[type]!) < 1e-12, "\(type)")
  }
  // Clip counts: row 0 (A > 0) has ρ = e^0.3 > 1.28 at token 0; row 1 (A < 0) has ρ = e^-0.5 < 0.8 at token 0.
  let r = GRPO.loss(logProbs: t(lp), oldLogProbs: t(old), advantages: Tensor(adv), mask: t(maskRows), epsilonLow: low,
                    epsilonHigh: high, lossType: .dapo, maxCompletionLength: maxLength)
  #expect(Swift.abs(r.metrics["clip_ratio/high_mean"]! - 1.0 / 5) < 1e-12)
  #expect(Swift.abs(r.metrics["clip_ratio/low_mean"]! - 1.0 / 5) < 1e-12)
  #expect(Swift.abs(r.metrics["clip_ratio/region_mean"]! - 2.0 / 5) < 1e-12)
  #expect(r.metrics["kl"] == nil)
}

@Test func grpoWithOneIterationAndNoKLHasRatioOne() {
  // μ = 1: the old log-probs are the live ones, detached, so every ratio is exactly 1 and nothing is clipped.
  let live = t(lp)
  let r = GRPO.loss(logProbs: live, oldLogProbs: live.detached(), advantages: Tensor(adv), mask: t(maskRows), epsilonLow: 0.2,
                    epsilonHigh: 0.2, lossType: .dapo, maxCompletionLength: 3)
  #expect(r.loss.item() == -(2 * adv[0] + 3 * adv[1]) / 5)
  #expect(r.metrics["clip_ratio/region_mean"] == 0)
}

@Test func grpoGradientsFollowFiniteDifferences() {
  for type in GRPO.LossType.allCases {
    expectGradientsMatch([t(lp)]) {
      GRPO.loss(logProbs: $0[0], oldLogProbs: t(old), advantages: Tensor(adv), mask: t(maskRows), epsilonLow: 0.2,
                epsilonHigh: 0.28, beta: 0.1, referenceLogProbs: t(ref), lossType: type, maxCompletionLength: 4).loss
    }
  }
}

@Test func groupAdvantagesCentreScaleAndCountZeroStdGroups() {
  let rewards = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5]
  let (a, std, zero) = GRPO.advantages(rewards, groupSize: 4, scale: .group)
  let s = (4 * 0.25 / 3).squareRoot()  // unbiased std of {1, 0, 0, 1}
  #expect(Swift.abs(a[0] - 0.5 / (s + 1e-4)) < 1e-12 && Swift.abs(a[1] + 0.5 / (s + 1e-4)) < 1e-12)
  #expect(Swift.abs(std[0] - s) < 1e-12)
  // The second group's rewards are all equal: zero advantage, counted.
  #expect(a[4...].allSatisfy { $0 == 0 } && zero == [false, false, false, false, true, true, true, true])
  let none = GRPO.advantages(rewards, groupSize: 4, scale: .none).advantages
  #expect(none[0] == 0.5 && none[1] == -0.5)
  let batchStd = (rewards.map { ($0 - 0.5) * ($0 - 0.5) }.reduce(0, +) / 7).squareRoot()
  #expect(Swift.abs(GRPO.advantages(rewards, groupSize: 4, scale: .batch).advantages[0] - 0.5 / (batchStd + 1e-4)) < 1e-12)
}

private func prompt(_ text: String, _ columns: [String: Any], line: Int = 1) -> PromptExample {
  var obj = columns
  obj["prompt"] = text
  return PromptExample(tokens: [1], text: text, record: try! JSONSerialization.data(withJSONObject: obj), source: "data.jsonl:\(line)")
}

@Test func builtInRewardsReadTheFinalAnswer() throws {
  let p = prompt("2+3=", ["answer": "5"])
  let items = ["The sum is 5.", "5", "4 or 5", "5 or 4", "no idea", "-5"].map { RewardItem(prompt: p, completion: $0) }
  #expect(try ExactMatchReward().rewards(items) == [1, 1, 1, 0, 0, 0])
  let words = [RewardItem(prompt: prompt("Capital of France?", ["answer": "Paris"]), completion: "I think\n  paris. ")]
  #expect(try ExactMatchReward().rewards(words) == [1])
  #expect(throws: RewardError.self) { try ExactMatchReward().rewards([RewardItem(prompt: prompt("x", [:]), completion: "1")]) }
  #expect(try FormatReward(pattern: "^<answer>\\d+</answer>$").rewards(
    [RewardItem(prompt: p, completion: "<answer>5</answer>"), RewardItem(prompt: p, completion: "5")]) == [1, 0])
  #expect(try LengthPenalty(limit: 4).rewards([RewardItem(prompt: p, completion: "abc"), RewardItem(prompt: p, completion: "abcdefgh")]) == [0, -1])
  let weighted = try WeightedRewards.parse("exact-match,length:4", command: nil, weights: "1,0.5")
  let (total, each) = try weighted.evaluate([RewardItem(prompt: p, completion: "the sum is 5")])
  #expect(total == [1 - 0.5 * 8 / 4] && each.map(\.name) == ["exact_match", "length"])
  #expect(throws: RewardError.self) { try WeightedRewards.parse("exact-match", command: nil, weights: "1,2") }
  #expect(throws: RewardError.self) { try WeightedRewards.parse("bogus", command: nil, weights: nil) }
}

@Test func aRewardCommandReadsJSONLAndItsFailuresNameThePrompt() throws {
  let items = [RewardItem(prompt: prompt("2+3=", ["answer": "5"], line: 1), completion: "5"),
               RewardItem(prompt: prompt("1+1=", ["answer": "2"], line: 2), completion: "3")]
  let script = #"python3 -c 'import sys, json; [print(float(json.loads(l)["completion"] == json.loads(l)["answer"])) for l in sys.stdin]'"#
  #expect(try CommandReward(command: script).rewards(items) == [1, 0])
  func message(_ command: String) -> String {
    do { _ = try CommandReward(command: command).rewards(items); return "" } catch { return "\(error)" }
  }
  let crash = message("echo boom >&2; exit 3")
  #expect(crash.contains("exited with status 3") && crash.contains("boom") && crash.contains("data.jsonl:1"), "\(crash)")
  let count = message("echo 1")
  #expect(count.contains("wrote 1 lines for 2 completions"), "\(count)")
  let nan = message("printf '1\\nabc\\n'")
  #expect(nan.contains("'abc'") && nan.contains("data.jsonl:2"), "\(nan)")
}
