import Foundation
import LM
import Torch

/// REINFORCE Leave-One-Out as TRL's RLOOTrainer computes it (Ahmadian et al. 2024): k completions per
/// prompt, the KL to the reference as a penalty on the reward, each completion's baseline the mean of
/// its k − 1 siblings' rewards, and a clipped sequence-level ratio.
public enum RLOO {
  /// r′ = r − β·Σ_t(log π_old − log π_ref) per completion, then A_i = r′_i − (Σ_j r′_j − r′_i)/(k − 1)
  /// within each prompt's k completions (contiguous in `rewards`); with `normalize`, the advantages are
  /// standardised over the batch ((A − mean)/(std + 1e-8), std unbiased, as TRL).
  public static func advantages(_ rewards: [Double], klSums: [Double], groupSize k: Int, beta: Double,
                                normalize: Bool = false) -> (advantages: [Double], penalized: [Double]) {
    precondition(k >= 2 && rewards.count % k == 0 && klSums.count == rewards.count,
                 "RLOO.advantages: \(rewards.count) rewards in groups of \(k)")
    let penalized = zip(rewards, klSums).map { $0 - beta * $1 }
    var out = penalized
    for start in stride(from: 0, to: penalized.count, by: k) {
      let total = penalized[start..<start + k].reduce(0, +)
      for i in start..<start + k { out[i] = penalized[i] - (total - penalized[i]) / Double(k - 1) }
    }
    if normalize, out.count > 1 {
      let m = out.reduce(0, +) / Double(out.count), s = unbiasedStd(out[...])
      out = out.map { ($0 - m) / (s + 1e-8) }
    }
    return (out, penalized)
  }

  /// mean_i max(−A_i·ρ_i, −A_i·clip(ρ_i, 1 − ε, 1 + ε)) with ρ_i = exp(Σ_t log π − Σ_t log π_old): the
  /// ratio of whole completions. sequenceLogProbs and oldLogProbs are [B], advantages [B].
  public static func loss(sequenceLogProbs: Tensor, oldLogProbs: Tensor, advantages: Tensor, epsilon: Double) -> LossResult {
    let lp = wide(sequenceLogProbs)
    let logRatio = lp - wide(oldLogProbs).detached().to(lp.dtype)
    let ratio = logRatio.exp()
    let a = advantages.detached().to(lp.dtype)
    let unclipped = -(a * ratio), clipped = -(a * ratio.clamp(min: 1 - epsilon, max: 1 + epsilon))
    let loss = unclipped.maximum(clipped).mean()
    return LossResult(loss: loss, metrics: [
      "policy/clipfrac_avg": fraction(clipped.gt(unclipped)), "val/ratio": ratio.mean(),
      "policy/approxkl_avg": (logRatio.square() * 0.5).mean(),
    ])
  }
}

/// One completion of an RLOO rollout: its sequence, advantage and the sampling policy's sequence log-prob.
public struct RLOOSample {
  public let sequence: TokenSequence
  public let advantage: Double
  let oldLogProb: Double
}

public final class RLOOMethod: MethodDefinition, OnlineMethod {
  public static let commandName = "rloo"
  public static let abstract = "REINFORCE Leave-One-Out with reward functions or a reward model (TRL's RLOO)."
  public static let discussion = """
    Data: {"prompt", …} lines, as for grpo. Each step samples --num-generations completions for each of \
    --batch-size prompts from the live policy, scores them with the rewards, subtracts β·Σ_t(log π_old − \
    log π_ref) (the KL to a frozen copy of the starting model), takes each completion's advantage against \
    the mean of its siblings, and runs --num-iterations optimizer steps on the clipped ratio of whole \
    completions. --steps counts generation batches.
    """
  public static let options: [MethodOption] = [
    .int("num-generations", 2, "k: completions sampled per prompt (at least 2; TRL's rloo_k)."),
    .int("max-completion-length", 64, "Largest number of completion tokens."),
    .double("temperature", 1.0, "Sampling temperature."),
    .double("beta", 0.05, "β: the KL penalty on the reward (TRL's kl_coef)."),
    .double("epsilon", 0.2, "ε: clip range of the sequence ratio (TRL's cliprange)."),
    .int("num-iterations", 1, "μ: optimizer steps on each generation batch (TRL's num_ppo_epochs)."),
    .flag("normalize-advantages", "Standardise the advantages over the generation batch."),
  ] + RewardOptions.options
  public static var trainerDefaults: TrainerOptions { .sampling(learningRate: 1e-5) }
  public static let progressMetrics = ["reward", "objective/kl", "objective/rlhf_reward", "completions/mean_length"]
  public static let summaryHistories = [(metric: "reward", key: "reward_history")]

  public struct Settings: Sendable {
    public var generations = 2
    public var maxCompletionLength = 64
    public var temperature = 1.0
    public var beta = 0.05
    public var epsilon = 0.2
    public var iterations = 1
    public var normalize = false
    public init() {}
  }

  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> RLOOMethod {
    var s = Settings()
    s.generations = a.int("num-generations")
    s.maxCompletionLength = a.int("max-completion-length")
    s.temperature = a.double("temperature")
    s.beta = a.double("beta")
    s.epsilon = a.double("epsilon")
    s.iterations = a.int("num-iterations")
    s.normalize = a.flag("normalize-advantages")
    guard s.generations >= 2 else { throw MethodOptionError("--num-generations must be at least 2 (the baseline is the other completions)") }
    guard s.maxCompletionLength > 0, s.temperature > 0, s.iterations > 0 else {
      throw MethodOptionError("--max-completion-length, --temperature and --num-iterations must be positive")
    }
    guard s.beta >= 0, s.epsilon >= 0 else { throw MethodOptionError("--beta and --epsilon must be at least 0") }
    return RLOOMethod(policy: setup.model, tokenizer: setup.tokenizer, rewards: try RewardOptions.make(a, setup), settings: s,
                      stopTokens: setup.stopTokens, padId: setup.padId, seed: setup.seed)
  }

  public let settings: Settings
  let rewards: WeightedRewards
  let sampler: CompletionSampler
  /// The frozen starting model (kept only when β > 0).
  let reference: (any CausalLM)?
  let padId: Int
  let seed: UInt64
  let stream: Generator

  public init(policy: any CausalLM, tokenizer: any TextTokenizer, rewards: WeightedRewards, settings: Settings,
              stopTokens: Set<Int>, padId: Int, seed: UInt64 = 0) {
    self.settings = settings
    self.rewards = rewards
    sampler = CompletionSampler(tokenizer: tokenizer, stopTokens: stopTokens, padId: padId,
                                maxNewTokens: settings.maxCompletionLength, temperature: settings.temperature)
    reference = settings.beta > 0 ? Checkpoint.frozenCopy(of: policy) : nil
    self.padId = padId
    self.seed = seed
    stream = Generator(seed: seed &+ 0x7100)
  }

  public var name: String { Self.commandName }
  public var passes: Int { settings.iterations }
  public func miniBatch(promptsPerStep: Int) -> Int { promptsPerStep * settings.generations }
  public var generators: [(name: String, generator: Generator)] { [("sampler", stream)] }
  public func weight(of example: RLOOSample) -> Double { 1 }

  public func rollout(_ prompts: [PromptExample], model: any CausalLM, step: Int) throws -> Rollout<RLOOSample> {
    let k = settings.generations
    let expanded = prompts.flatMap { Array(repeating: $0, count: k) }
    let completions = sampler.sample(expanded, model: model, generator: stream)
    let (scores, each) = try rewards.evaluate(sampler.items(expanded, completions))
    let sequences = zip(expanded, completions).map { TokenSequence(prompt: $0.tokens, response: $1) }
    let (old, kl): ([Double], [Double]) = withoutGradients {
      let o = ScoredBatch(sequences, model: model, padId: padId).sequenceLogProbs.to(.float64).toArray(Double.self)
      guard let reference else { return (o, o.map { _ in 0 }) }
      let r = ScoredBatch(sequences, model: reference, padId: padId).sequenceLogProbs.to(.float64).toArray(Double.self)
      return (o, zip(o, r).map { $0 - $1 })
    }
    let (adv, penalized) = RLOO.advantages(scores, klSums: kl, groupSize: k, beta: settings.beta, normalize: settings.normalize)
    let metrics: [String: Double] = [
      "reward": mean(scores), "reward_std": scores.count > 1 ? unbiasedStd(scores[...]) : 0, "objective/scores": mean(scores),
      "objective/kl": mean(kl), "objective/non_score_reward": -settings.beta * mean(kl), "objective/rlhf_reward": mean(penalized),
    ].merging(sampler.lengthMetrics(completions)) { a, _ in a }.merging(rewards.metrics(each)) { a, _ in a }
    let samples = sequences.indices.map { RLOOSample(sequence: sequences[$0], advantage: adv[$0], oldLogProb: old[$0]) }
    return Rollout(examples: samples, metrics: metrics)
  }

  public func loss(_ batch: [RLOOSample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let a = ScoredBatch(batch.map(\.sequence), model: model, padId: padId)
    let lp = a.sequenceLogProbs
    let r = RLOO.loss(sequenceLogProbs: lp, oldLogProbs: Tensor(batch.map(\.oldLogProb)).to(lp.device),
                      advantages: Tensor(batch.map(\.advantage)).to(lp.device), epsilon: settings.epsilon)
    var metrics = r.tensorMetrics
    metrics["objective/entropy"] = a.meanEntropy
    return MicroBatchLoss(loss: r.loss, metrics: metrics, tokens: a.batch.tokenCount)
  }

  public func evaluate(_ prompts: [PromptExample], model: any CausalLM, step: Int) throws -> [String: Double] {
    try sampler.evaluate(prompts, model: model, rewards: rewards, seed: seed, step: step)
  }

}
