import Foundation
import LM
import Torch

/// RLP-SPG (Lang et al. 2024; METHODS §6): synthetic preference pairs from the policy's own samples by
/// self-consistency. For each prompt, n samples are clustered by semantic equivalence; the prompt is kept
/// when the largest cluster holds at least γ of them (its confidence); chosen is the largest cluster's
/// member the reward model scores highest, rejected a random sample from another cluster.
public enum SyntheticPreferences {
  /// The pair picked from one prompt's samples: indices into them, and the largest cluster's share.
  public struct Selection: Equatable, Sendable {
    public let chosen: Int
    public let rejected: Int
    public let confidence: Double
  }

  /// Why a prompt gave no pair.
  public enum Skip: String, Sendable { case lowConfidence = "low_confidence", unanimous }

  /// The selection rule on one prompt's samples, given each one's equivalence key and reward: the largest
  /// cluster (ties: the one whose first member comes first), its confidence, and — when confidence ≥ γ and
  /// some sample falls outside it — chosen (the cluster's highest reward, first on a tie) and rejected
  /// (`pick(k)` chooses among the k samples outside the cluster, in order).
  public static func select(keys: [String], rewards: [Double], gamma: Double, pick: (Int) -> Int) -> Result<Selection, SkipReason> {
    precondition(keys.count == rewards.count && !keys.isEmpty, "one key and one reward per sample")
    var members: [String: [Int]] = [:], order: [String] = []
    for (i, k) in keys.enumerated() {
      if members[k] == nil { order.append(k) }
      members[k, default: []].append(i)
    }
    let size = members.values.map(\.count).max()!
    let top = order.first { members[$0]!.count == size }!
    let confidence = Double(size) / Double(keys.count)
    guard confidence >= gamma else { return .failure(SkipReason(.lowConfidence, confidence)) }
    let others = keys.indices.filter { keys[$0] != top }
    guard !others.isEmpty else { return .failure(SkipReason(.unanimous, confidence)) }
    let inside = members[top]!
    let chosen = inside.dropFirst().reduce(inside[0]) { rewards[$1] > rewards[$0] ? $1 : $0 }
    return .success(Selection(chosen: chosen, rejected: others[pick(others.count)], confidence: confidence))
  }

  public struct SkipReason: Error, Equatable {
    public let reason: Skip
    public let confidence: Double
    public init(_ reason: Skip, _ confidence: Double) { (self.reason, self.confidence) = (reason, confidence) }
  }

  /// The built-in equivalence for verifiable tasks: the exact normalised final answer (the last number when
  /// there is one, else the last non-empty line, lower-cased, trimmed, without a final period) — the
  /// answer the `exact-match` reward compares.
  public static func answerKey(_ completion: String) -> String {
    if let n = ExactMatchReward.numbers(completion).last { return n == n.rounded() && Swift.abs(n) < 1e15 ? "\(Int(n))" : "\(n)" }
    let last = completion.split(separator: "\n").map(String.init).last { !$0.trimmingCharacters(in: .whitespaces).isEmpty } ?? ""
    return ExactMatchReward.normalised(last)
  }

  /// A synthetic pair, with the prompt's confidence.
  public struct Pair: Sendable {
    public let prompt: String
    public let chosen: String
    public let rejected: String
    public let confidence: Double
  }

  public struct Generated: Sendable {
    public var pairs: [Pair] = []
    public var skipped: [Skip: Int] = [:]
    public var meanConfidence = 0.0
  }

  /// Samples `samples` completions per prompt from `model`, keys them with `equivalence` (nil: `answerKey`),
  /// scores them with `reward`, and applies the selection rule with threshold `gamma`.
  public static func generate(_ prompts: [PromptExample], model: any CausalLM, sampler: CompletionSampler, samples: Int,
                              gamma: Double, reward: any CompletionReward, equivalence: (([RewardItem]) throws -> [String])?,
                              seed: UInt64, progress: (Int, Int) -> Void = { _, _ in }) throws -> Generated {
    let stream = Generator(seed: seed &+ 0x5A6)
    var out = Generated()
    var confidences: [Double] = []
    for (done, prompt) in prompts.enumerated() {
      let completions = sampler.sample(Array(repeating: prompt, count: samples), model: model, generator: stream)
      let items = sampler.items(Array(repeating: prompt, count: samples), completions)
      let keys = try equivalence?(items) ?? items.map { answerKey($0.completion) }
      let rewards = try reward.rewards(items)
      switch select(keys: keys, rewards: rewards, gamma: gamma, pick: { Tensor.randperm($0, generator: stream).toArray(Int.self)[0] }) {
      case .success(let s):
        out.pairs.append(Pair(prompt: prompt.text, chosen: items[s.chosen].completion, rejected: items[s.rejected].completion,
                              confidence: s.confidence))
        confidences.append(s.confidence)
      case .failure(let skip):
        out.skipped[skip.reason, default: 0] += 1
        confidences.append(skip.confidence)
      }
      progress(done + 1, prompts.count)
    }
    out.meanConfidence = confidences.reduce(0, +) / Double(Swift.max(1, confidences.count))
    return out
  }
}
