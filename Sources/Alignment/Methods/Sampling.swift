import Foundation
import LM
import Torch

/// Completions sampled from the live policy for the methods that learn from them (GRPO, RLOO, online
/// DPO): generation with the KV cache, in process; the text reward functions see (without the stop
/// token); whether each ended on its own; and the held-out reward of one sample per prompt.
public struct CompletionSampler {
  public let tokenizer: any TextTokenizer
  public let stopTokens: Set<Int>
  public let padId: Int
  public let maxNewTokens: Int
  public let temperature: Double

  public init(tokenizer: any TextTokenizer, stopTokens: Set<Int>, padId: Int, maxNewTokens: Int, temperature: Double) {
    self.tokenizer = tokenizer
    self.stopTokens = stopTokens
    self.padId = padId
    self.maxNewTokens = maxNewTokens
    self.temperature = temperature
  }

  public func sample(_ prompts: [PromptExample], model: any CausalLM, generator: Generator) -> [[Int]] {
    let opts = SamplingOptions(maxNewTokens: maxNewTokens, temperature: temperature, stopTokens: stopTokens)
    return model.generate(prompts.map(\.tokens), options: opts, padId: padId, generator: generator)
  }

  /// Whether the completion ended with a stop token (rather than at the length limit).
  public func ended(_ completion: [Int]) -> Bool { completion.last.map { stopTokens.contains($0) } == true }

  public func text(_ completion: [Int]) -> String {
    tokenizer.decode(ended(completion) ? Array(completion.dropLast()) : completion)
  }

  public func items(_ prompts: [PromptExample], _ completions: [[Int]]) -> [RewardItem] {
    zip(prompts, completions).map { RewardItem(prompt: $0, completion: text($1), completionTokens: $1) }
  }

  /// Mean reward of one sample per held-out prompt, from a stream seeded by the step (never the training one).
  public func evaluate(_ prompts: [PromptExample], model: any CausalLM, rewards: WeightedRewards, seed: UInt64,
                       step: Int) throws -> [String: Double] {
    let completions = sample(prompts, model: model, generator: Generator(seed: seed &+ 0xE7A1 &+ UInt64(step)))
    let (total, _) = try rewards.evaluate(items(prompts, completions))
    return ["reward": total.reduce(0, +) / Double(Swift.max(1, total.count))]
  }

  /// TRL's completion metrics: mean length and the fraction cut at the length limit.
  public func lengthMetrics(_ completions: [[Int]]) -> [String: Double] {
    let n = Double(Swift.max(1, completions.count))
    return ["completions/mean_length": completions.reduce(0) { $0 + Double($1.count) } / n,
            "completions/clipped_ratio": Double(completions.filter { !ended($0) }.count) / n]
  }
}

/// The mean of the values (0 for none).
func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(Swift.max(1, xs.count)) }

/// The reward options every method that samples declares (GRPO, RLOO, online DPO), and the rewards they
/// build.
public enum RewardOptions {
  public static let options: [MethodOption] = [
    .string("reward-funcs", "Comma-separated built-in rewards: exact-match, format:REGEX, length:N."),
    .string("reward-model", "A reward model directory (`shatter train rm`, same vocabulary) whose score is a reward."),
    .string("reward-command", "A program that reads JSONL completions on stdin and writes one reward per line."),
    .string("reward-weights", "Comma-separated weights of the rewards (--reward-funcs in order, the reward model, the command)."),
  ]

  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> WeightedRewards {
    do {
      let rm = try a.string("reward-model").map {
        try RewardModelReward(directory: $0, vocabularySize: setup.model.config.vocabSize, padId: setup.padId,
                              device: setup.model.device)
      }
      return try WeightedRewards.parse(a.string("reward-funcs"), rewardModel: rm, command: a.string("reward-command"),
                                       weights: a.string("reward-weights"))
    } catch let e as RewardError {
      throw MethodOptionError(e.description)
    }
  }
}

extension TrainerOptions {
  /// The defaults of the methods that sample (GRPO, RLOO, online DPO): `steps` generation batches of
  /// `batchSize` prompts at a constant learning rate.
  public static func sampling(learningRate: Double) -> TrainerOptions {
    var o = TrainerOptions()
    o.steps = 20
    o.batchSize = 4
    o.learningRate = learningRate
    o.schedule = .constant
    return o
  }
}
