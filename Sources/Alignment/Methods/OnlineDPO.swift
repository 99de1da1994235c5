import Foundation
import LM
import Torch

/// Online DPO as TRL's OnlineDPOTrainer (Guo et al. 2024): two completions per prompt from the live
/// policy, ranked by the rewards (a reward model, reward functions or a command), and the DPO loss on
/// that pair against a frozen copy of the starting model.
public final class OnlineDPOMethod: MethodDefinition, OnlineMethod {
  public static let commandName = "online-dpo"
  public static let abstract = "Online DPO: pairs sampled from the live policy, ranked by rewards (TRL's OnlineDPO)."
  public static let discussion = """
    Data: {"prompt", …} lines, as for grpo. Each step samples two completions for each of --batch-size \
    prompts from the live policy, scores both with the rewards (--missing-eos-penalty is subtracted from \
    a completion cut at --max-completion-length), takes the higher as chosen (the first on a tie, as TRL), \
    and takes one DPO step against a frozen copy of the starting model. --steps counts generation batches.
    """
  public static let options: [MethodOption] = [
    .double("beta", 0.1, "β: strength of the implicit KL constraint."),
    .int("max-completion-length", 64, "Largest number of completion tokens (TRL's max_new_tokens)."),
    .double("temperature", 0.9, "Sampling temperature."),
    .double("missing-eos-penalty", 0, "Subtracted from the score of a completion that did not end with EOS."),
  ] + RewardOptions.options
  public static var trainerDefaults: TrainerOptions { .sampling(learningRate: 5e-7) }
  public static let progressMetrics = ["reward", "objective/scores_margin", "rewards/accuracies", "objective/kl"]
  public static let summaryHistories = [(metric: "reward", key: "reward_history")]

  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> OnlineDPOMethod {
    guard a.double("beta") > 0 else { throw MethodOptionError("--beta must be positive") }
    guard a.int("max-completion-length") > 0, a.double("temperature") > 0 else {
      throw MethodOptionError("--max-completion-length and --temperature must be positive")
    }
    guard a.double("missing-eos-penalty") >= 0 else { throw MethodOptionError("--missing-eos-penalty must be at least 0") }
    let sampler = CompletionSampler(tokenizer: setup.tokenizer, stopTokens: setup.stopTokens, padId: setup.padId,
                                    maxNewTokens: a.int("max-completion-length"), temperature: a.double("temperature"))
    return OnlineDPOMethod(policy: setup.model, sampler: sampler, rewards: try RewardOptions.make(a, setup),
                           beta: a.double("beta"), missingEOSPenalty: a.double("missing-eos-penalty"), seed: setup.seed)
  }

  let dpo: DPOMethod
  let sampler: CompletionSampler
  let rewards: WeightedRewards
  let reference: any CausalLM
  let missingEOSPenalty: Double
  let seed: UInt64
  let stream: Generator

  public init(policy: any CausalLM, sampler: CompletionSampler, rewards: WeightedRewards, beta: Double,
              missingEOSPenalty: Double = 0, seed: UInt64 = 0) {
    dpo = DPOMethod(padId: sampler.padId, beta: beta)
    self.sampler = sampler
    self.rewards = rewards
    reference = Checkpoint.frozenCopy(of: policy)
    self.missingEOSPenalty = missingEOSPenalty
    self.seed = seed
    stream = Generator(seed: seed &+ 0xD90)
  }

  public var name: String { Self.commandName }
  public var passes: Int { 1 }
  /// One pair per prompt, all in one optimizer step.
  public func miniBatch(promptsPerStep: Int) -> Int { promptsPerStep }
  public var generators: [(name: String, generator: Generator)] { [("sampler", stream)] }
  public func weight(of example: ReferencedPair) -> Double { 1 }

  /// Which of each prompt's two completions is chosen: the first when its score is at least the
  /// second's (TRL's `scores[:n] >= scores[n:]`).
  public static func firstIsChosen(_ first: Double, _ second: Double) -> Bool { first >= second }

  public func rollout(_ prompts: [PromptExample], model: any CausalLM, step: Int) throws -> Rollout<ReferencedPair> {
    // Completions 0..<n answer the prompts once, n..<2n again.
    let n = prompts.count
    let doubled = prompts + prompts
    let completions = sampler.sample(doubled, model: model, generator: stream)
    let (raw, each) = try rewards.evaluate(sampler.items(doubled, completions))
    let scores = zip(raw, completions).map { sampler.ended($1) ? $0 : $0 - missingEOSPenalty }
    let sequences = zip(doubled, completions).map { TokenSequence(prompt: $0.tokens, response: $1) }
    let (policyLP, referenceLP) = withoutGradients {
      (ScoredBatch(sequences, model: model, padId: sampler.padId).sequenceLogProbs.to(.float64).toArray(Double.self),
       ScoredBatch(sequences, model: reference, padId: sampler.padId).sequenceLogProbs.to(.float64).toArray(Double.self))
    }
    var pairs: [ReferencedPair] = [], margins: [Double] = [], ties = 0
    for i in 0..<n {
      let (c, r) = Self.firstIsChosen(scores[i], scores[n + i]) ? (i, n + i) : (n + i, i)
      if scores[i] == scores[n + i] { ties += 1 }
      margins.append(scores[c] - scores[r])
      pairs.append(ReferencedPair(pair: PairExample(chosen: sequences[c], rejected: sequences[r]),
                                  referenceChosen: referenceLP[c], referenceRejected: referenceLP[r]))
    }
    let kl = zip(policyLP, referenceLP).map { $0 - $1 }
    let metrics: [String: Double] = [
      "reward": mean(raw), "objective/scores": mean(scores), "objective/scores_margin": mean(margins),
      "objective/kl": mean(kl), "objective/non_score_reward": -dpo.beta * mean(kl),
      "objective/rlhf_reward": mean(scores) - dpo.beta * mean(kl), "frac_ties": Double(ties) / Double(Swift.max(1, n)),
      "val/contain_eos_token": mean(completions.map { sampler.ended($0) ? 1 : 0 }), "beta": dpo.beta,
    ].merging(sampler.lengthMetrics(completions)) { a, _ in a }.merging(rewards.metrics(each)) { a, _ in a }
    return Rollout(examples: pairs, metrics: metrics)
  }

  /// The DPO loss itself (DPOMethod's), on the sampled pairs.
  public func loss(_ batch: [ReferencedPair], model: any CausalLM, step: Int) -> MicroBatchLoss {
    dpo.loss(batch, model: model, step: step)
  }

  public func evaluate(_ prompts: [PromptExample], model: any CausalLM, step: Int) throws -> [String: Double] {
    try sampler.evaluate(prompts, model: model, rewards: rewards, seed: seed, step: step)
  }

}
