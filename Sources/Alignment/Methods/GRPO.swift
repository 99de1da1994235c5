import Foundation
import LM
import Torch

/// Group Relative Policy Optimisation as TRL's GRPOTrainer computes it: G completions per prompt from the
/// live policy, advantages relative to the group's mean reward, a clipped token ratio, an optional k3 KL
/// to a frozen reference, and four ways of normalising the token sum.
public enum GRPO {
  public enum LossType: String, Sendable, CaseIterable {
    /// Each completion's token mean, then the mean over completions (the original paper's).
    case grpo
    /// The token sum over the micro-batch's completion tokens.
    case bnpo
    /// The token sum over (completions × --max-completion-length) (Dr. GRPO).
    case drGRPO = "dr_grpo"
    /// The token sum over every completion token of the optimizer step (DAPO; TRL's default).
    case dapo
  }

  public enum RewardScale: String, Sendable, CaseIterable {
    /// Divide by the group's standard deviation.
    case group
    /// Divide by the whole generation batch's standard deviation.
    case batch
    /// Keep the centred rewards.
    case none
  }

  /// A = r − mean over the prompt's G completions, divided by (std + 1e-4) unless `scale` is none (std
  /// unbiased, as torch.std). Also each sample's group std, and which groups' std is zero (their
  /// advantages are 0: nothing to learn from them).
  public static func advantages(_ rewards: [Double], groupSize g: Int, scale: RewardScale)
    -> (advantages: [Double], groupStd: [Double], zeroStd: [Bool])
  {
    precondition(g >= 2 && rewards.count % g == 0, "GRPO.advantages: \(rewards.count) rewards in groups of \(g)")
    var out = [Double](repeating: 0, count: rewards.count), stds = out, zero = [Bool](repeating: false, count: rewards.count)
    let batchStd = unbiasedStd(rewards[...])
    for start in stride(from: 0, to: rewards.count, by: g) {
      let group = rewards[start..<start + g]
      let mean = group.reduce(0, +) / Double(g)
      let s = unbiasedStd(group)
      for i in start..<start + g {
        stds[i] = s
        zero[i] = Swift.abs(s) <= 1e-8
        let centred = rewards[i] - mean
        switch scale {
        case .group: out[i] = centred / (s + 1e-4)
        case .batch: out[i] = centred / (batchStd + 1e-4)
        case .none: out[i] = centred
        }
      }
    }
    return (out, stds, zero)
  }

  /// The loss of a micro-batch. logProbs, oldLogProbs, referenceLogProbs and mask are [B, T]; advantages [B].
  /// Per token: −min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high)A) with ρ = exp(log π − log π_old), plus
  /// β·(exp(ref − log π) − (ref − log π) − 1) when β > 0.
  public static func loss(logProbs: Tensor, oldLogProbs: Tensor, advantages: Tensor, mask: Tensor, epsilonLow: Double,
                          epsilonHigh: Double, beta: Double = 0, referenceLogProbs: Tensor? = nil, lossType: LossType,
                          maxCompletionLength: Int) -> LossResult {
    let lp = wide(logProbs)
    let m = mask.to(lp.dtype)
    let ratio = (lp - wide(oldLogProbs).detached().to(lp.dtype)).exp()
    let a = advantages.detached().to(lp.dtype).unsqueezed(dim: 1)
    let clipped = ratio.clamp(min: 1 - epsilonLow, max: 1 + epsilonHigh)
    var perToken = -(ratio * a).minimum(clipped * a)
    var metrics: [String: Tensor] = [:]
    if beta != 0, let referenceLogProbs {
      let d = wide(referenceLogProbs).detached().to(lp.dtype) - lp
      let kl = d.exp() - d - 1
      perToken = perToken + kl * beta
      metrics["kl"] = maskedMean(kl, m)
    }
    let loss: Tensor
    switch lossType {
    case .grpo: loss = ((perToken * m).sum(dim: 1) / m.sum(dim: 1).clamp(min: 1)).mean()
    case .bnpo, .dapo: loss = (perToken * m).sum() / m.sum().clamp(min: 1)
    case .drGRPO: loss = (perToken * m).sum() / Double(lp.size(0) * maxCompletionLength)
    }
    let low = ratio.lt(1 - epsilonLow).to(lp.dtype) * a.lt(0).to(lp.dtype)
    let high = ratio.gt(1 + epsilonHigh).to(lp.dtype) * a.gt(0).to(lp.dtype)
    metrics["clip_ratio/low_mean"] = maskedMean(low, m)
    metrics["clip_ratio/high_mean"] = maskedMean(high, m)
    metrics["clip_ratio/region_mean"] = maskedMean(low + high, m)
    return LossResult(loss: loss, metrics: metrics)
  }
}

extension GRPO {
  /// The loss of a micro-batch of samples under `settings` (its loss type, clip range and β), with TRL's
  /// metrics: what GRPOMethod and every other GRPO learner (CEL's game training) optimise.
  public static func microBatchLoss(_ batch: [GRPOSample], model: any CausalLM, padId: Int,
                                    settings: GRPOMethod.Settings) -> MicroBatchLoss {
    let a = ScoredBatch(batch.map(\.sequence), model: model, padId: padId)
    let w = a.mask.size(1)
    let lp = a.scored.tokenLogProbs
    func rows(_ t: KeyPath<GRPOSample, Tensor?>) -> Tensor? {
      let xs = batch.compactMap { $0[keyPath: t] }
      return xs.count == batch.count ? Tensor.stack(xs).narrow(dim: 1, start: 0, length: w) : nil
    }
    let r = loss(logProbs: lp, oldLogProbs: rows(\.oldLogProbs) ?? lp.detached(),
                 advantages: Tensor(batch.map(\.advantage)).to(lp.device), mask: a.mask, epsilonLow: settings.epsilonLow,
                 epsilonHigh: settings.epsilonHigh, beta: settings.beta, referenceLogProbs: rows(\.referenceLogProbs),
                 lossType: settings.lossType, maxCompletionLength: settings.maxCompletionLength)
    var metrics = r.tensorMetrics
    metrics["entropy"] = a.meanEntropy
    return MicroBatchLoss(loss: r.loss, metrics: metrics, tokens: a.batch.tokenCount)
  }
}

/// The sample standard deviation (n − 1 in the denominator, as torch.std); needs two values.
func unbiasedStd(_ xs: ArraySlice<Double>) -> Double {
  let m = xs.reduce(0, +) / Double(xs.count)
  return (xs.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(xs.count - 1)).squareRoot()
}

/// One completion of a rollout: its sequence (targets off when a truncated completion is masked), its
/// advantage, and the per-token log-probs the update needs beside the live ones, [W-1] aligned with the
/// targets (W the rollout's padded width).
public struct GRPOSample {
  public let sequence: TokenSequence
  public let advantage: Double
  let oldLogProbs: Tensor?
  let referenceLogProbs: Tensor?

  /// A sample of the current policy with no reference (μ = 1, β = 0): its ratio is taken against itself.
  public init(sequence: TokenSequence, advantage: Double) {
    self.init(sequence: sequence, advantage: advantage, oldLogProbs: nil, referenceLogProbs: nil)
  }

  init(sequence: TokenSequence, advantage: Double, oldLogProbs: Tensor?, referenceLogProbs: Tensor?) {
    self.sequence = sequence
    self.advantage = advantage
    self.oldLogProbs = oldLogProbs
    self.referenceLogProbs = referenceLogProbs
  }
}

public final class GRPOMethod: MethodDefinition, OnlineMethod {
  public static let commandName = "grpo"
  public static let abstract = "Group Relative Policy Optimisation with reward functions (TRL's GRPO)."
  public static let discussion = """
    Data: {"prompt", …} lines; the other columns reach the reward functions (exact-match reads "answer"). \
    Each step samples --num-generations completions for each of --batch-size prompts from the live policy \
    (KV cache, in process), scores them with the weighted sum of --reward-funcs (exact-match, format:REGEX, \
    length:N), --reward-model DIR and --reward-command CMD (a program reading JSONL {"prompt","completion",…columns} on stdin and \
    writing one number per line), and takes --num-iterations optimizer steps on the group-relative \
    advantages. --beta > 0 adds the k3 KL to a frozen copy of the starting model. --steps counts generation \
    batches.
    """
  public static let options: [MethodOption] = [
    .int("num-generations", 8, "G: completions sampled per prompt (at least 2)."),
    .int("max-completion-length", 64, "Largest number of completion tokens."),
    .double("temperature", 1.0, "Sampling temperature."),
    .double("epsilon", 0.2, "ε: lower clip of the token ratio (and the upper one unless --epsilon-high)."),
    .string("epsilon-high", "Upper clip of the token ratio (default: --epsilon; DAPO uses 0.28)."),
    .double("beta", 0.0, "β: weight of the k3 KL to the reference (0: no reference is kept)."),
    .string("loss-type", "grpo, bnpo, dr_grpo or dapo (default dapo)."),
    .string("scale-rewards", "group (default), batch or none: what the centred rewards are divided by."),
    .int("num-iterations", 1, "μ: optimizer steps on each generation batch."),
    .flag("mask-truncated-completions", "Leave completions that hit --max-completion-length out of the loss."),
  ] + RewardOptions.options
  public static var trainerDefaults: TrainerOptions { .sampling(learningRate: 1e-5) }
  public static let progressMetrics = ["reward", "reward_std", "frac_reward_zero_std", "completions/mean_length"]
  public static let summaryHistories = [(metric: "reward", key: "reward_history")]

  public struct Settings: Sendable {
    public var generations = 8
    public var maxCompletionLength = 64
    public var temperature = 1.0
    public var epsilonLow = 0.2
    public var epsilonHigh = 0.2
    public var beta = 0.0
    public var lossType = GRPO.LossType.dapo
    public var scale = GRPO.RewardScale.group
    public var iterations = 1
    public var maskTruncated = false
    public init() {}
  }

  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> GRPOMethod {
    var s = Settings()
    s.generations = a.int("num-generations")
    s.maxCompletionLength = a.int("max-completion-length")
    s.temperature = a.double("temperature")
    s.epsilonLow = a.double("epsilon")
    s.epsilonHigh = try a.string("epsilon-high").map {
      guard let v = Double($0) else { throw MethodOptionError("--epsilon-high: '\($0)' is not a number") }
      return v
    } ?? s.epsilonLow
    s.beta = a.double("beta")
    s.iterations = a.int("num-iterations")
    s.maskTruncated = a.flag("mask-truncated-completions")
    if let t = a.string("loss-type") {
      guard let v = GRPO.LossType(rawValue: t) else { throw MethodOptionError("--loss-type \(t): expected grpo, bnpo, dr_grpo or dapo") }
      s.lossType = v
    }
    if let t = a.string("scale-rewards") {
      guard let v = GRPO.RewardScale(rawValue: t) else { throw MethodOptionError("--scale-rewards \(t): expected group, batch or none") }
      s.scale = v
    }
    guard s.generations >= 2 else { throw MethodOptionError("--num-generations must be at least 2 (advantages are relative to the group)") }
    guard s.maxCompletionLength > 0, s.temperature > 0, s.iterations > 0 else {
      throw MethodOptionError("--max-completion-length, --temperature and --num-iterations must be positive")
    }
    guard s.epsilonLow >= 0, s.epsilonHigh >= 0, s.beta >= 0 else {
      throw MethodOptionError("--epsilon, --epsilon-high and --beta must be at least 0")
    }
    let rewards = try RewardOptions.make(a, setup)
    return GRPOMethod(policy: setup.model, tokenizer: setup.tokenizer, rewards: rewards, settings: s,
                      stopTokens: setup.stopTokens, padId: setup.padId, seed: setup.seed)
  }

  public let settings: Settings
  let rewards: WeightedRewards
  let sampler: CompletionSampler
  /// The frozen starting model, kept only when β > 0.
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
    self.padId = padId
    self.seed = seed
    stream = Generator(seed: seed &+ 0x6A0)
    if settings.beta > 0 {
      reference = Checkpoint.frozenCopy(of: policy)
    } else {
      reference = nil
    }
  }

  public var name: String { Self.commandName }
  public var passes: Int { settings.iterations }
  /// One optimizer step over the whole generation batch.
  public func miniBatch(promptsPerStep: Int) -> Int { promptsPerStep * settings.generations }
  public var generators: [(name: String, generator: Generator)] { [("sampler", stream)] }

  /// dapo normalises by every completion token of the step, so each completion weighs its tokens; the
  /// other types weigh completions equally.
  public func weight(of example: GRPOSample) -> Double {
    settings.lossType == .dapo ? Double(example.sequence.targetCount) : 1
  }

  public func rollout(_ prompts: [PromptExample], model: any CausalLM, step: Int) throws -> Rollout<GRPOSample> {
    let g = settings.generations
    let expanded = prompts.flatMap { Array(repeating: $0, count: g) }
    let completions = sampler.sample(expanded, model: model, generator: stream)
    let (total, each) = try rewards.evaluate(sampler.items(expanded, completions))
    let (adv, groupStd, zeroStd) = GRPO.advantages(total, groupSize: g, scale: settings.scale)
    let ended = completions.map(sampler.ended)
    var sequences = zip(expanded, completions).map { TokenSequence(prompt: $0.tokens, response: $1) }
    if settings.maskTruncated {
      for i in sequences.indices where !ended[i] {
        sequences[i].targets = [Bool](repeating: false, count: sequences[i].targets.count)
      }
    }
    // The old policy's log-probs are needed only when a batch is reused (μ > 1): with μ = 1 the ratio is
    // taken against the live log-probs themselves, detached, and is exactly 1.
    let (old, ref): ([Tensor?], [Tensor?]) = withoutGradients {
      func rows(_ m: any CausalLM) -> [Tensor?] {
        let t = ScoredBatch(sequences, model: m, padId: padId).scored.tokenLogProbs
        return sequences.indices.map { t[$0] }
      }
      let o: [Tensor?] = settings.iterations > 1 ? rows(model) : sequences.map { _ in nil }
      let r: [Tensor?] = reference.map(rows) ?? sequences.map { _ in nil }
      return (o, r)
    }
    let metrics: [String: Double] = [
      "reward": mean(total), "reward_std": mean(groupStd), "frac_reward_zero_std": mean(zeroStd.map { $0 ? 1 : 0 }),
    ].merging(sampler.lengthMetrics(completions)) { a, _ in a }.merging(rewards.metrics(each)) { a, _ in a }
    let samples = sequences.indices.map { i in
      GRPOSample(sequence: sequences[i], advantage: adv[i], oldLogProbs: old[i], referenceLogProbs: ref[i])
    }
    return Rollout(examples: samples, metrics: metrics)
  }

  public func loss(_ batch: [GRPOSample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    GRPO.microBatchLoss(batch, model: model, padId: padId, settings: settings)
  }

  /// Mean reward of one sample per held-out prompt.
  public func evaluate(_ prompts: [PromptExample], model: any CausalLM, step: Int) throws -> [String: Double] {
    try sampler.evaluate(prompts, model: model, rewards: rewards, seed: seed, step: step)
  }

}
