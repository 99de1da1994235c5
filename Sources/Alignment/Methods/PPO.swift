import Foundation
import LM
import NN
import Torch

/// Scores whole responses; the PPO reward arrives at each response's last token.
public protocol RewardFunction {
  func rewards(prompts: [[Int]], responses: [[Int]]) -> [Double]
}

/// A programmatic reward in Swift: the fraction of response tokens equal to `target` (a trailing stop
/// token is not counted). The simplest verifiable objective, used to check that PPO learns.
public struct TokenFractionReward: RewardFunction {
  public let target: Int
  public let stopTokens: Set<Int>
  public init(target: Int, stopTokens: Set<Int> = []) {
    self.target = target
    self.stopTokens = stopTokens
  }
  public func rewards(prompts: [[Int]], responses: [[Int]]) -> [Double] {
    responses.map { r in
      let body = r.last.map { stopTokens.contains($0) } == true ? Array(r.dropLast()) : r
      return body.isEmpty ? 0 : Double(body.filter { $0 == target }.count) / Double(body.count)
    }
  }
}

/// A trained reward model as the PPO reward.
public struct RewardModelScorer: RewardFunction {
  public let model: RewardModel
  public let padId: Int
  public init(model: RewardModel, padId: Int) {
    self.model = model
    self.padId = padId
  }
  public func rewards(prompts: [[Int]], responses: [[Int]]) -> [Double] {
    withoutGradients {
      let seqs = zip(prompts, responses).map { TokenSequence(prompt: $0, response: $1) }
      return model.rewards(seqs, padId: padId).toArray(Double.self)
    }
  }
}

/// The pieces of PPO for RLHF (METHODS §7).
public enum PPO {
  /// Per-token rewards: −β·(log π − log π_ref) on response tokens, plus the sequence score at each row's
  /// last response token. Returns them and each row's summed KL estimate.
  public static func klPenalizedRewards(score: Tensor, policyLogProbs: Tensor, referenceLogProbs: Tensor, mask: Tensor,
                                        klCoef: Double) -> (rewards: Tensor, kl: Tensor) {
    let kl = (wide(policyLogProbs) - wide(referenceLogProbs)) * mask
    let positions = Tensor.arange(0, Double(mask.size(1)), dtype: mask.dtype, device: mask.device).unsqueezed(dim: 0)
    let last = (mask * (positions + 1)).argmax(dim: 1, keepDim: true)  // index of the last response token
    let rewards = (-kl * klCoef).scatterAdd(dim: 1, index: last, source: wide(score).to(kl.dtype).unsqueezed(dim: 1))
    return (rewards * mask, kl.sum(dim: 1))
  }

  /// Generalised advantage estimation over response tokens; the value after the last one is 0.
  public static func gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: Double, lambda: Double)
    -> (advantages: Tensor, returns: Tensor)
  {
    let t = rewards.size(1)
    let r = wide(rewards), v = wide(values).detached(), m = mask.to(r.dtype)
    var next = Tensor.zeros([r.size(0)], dtype: r.dtype, device: r.device)
    var nextValue = Tensor.zeros([r.size(0)], dtype: r.dtype, device: r.device)
    var columns: [Tensor] = Array(repeating: next, count: t)
    for i in stride(from: t - 1, through: 0, by: -1) {
      let mi = m.select(dim: 1, index: i)
      let delta = r.select(dim: 1, index: i) + nextValue * gamma - v.select(dim: 1, index: i)
      next = (delta + next * (gamma * lambda)) * mi
      columns[i] = next
      // Moving left: the value and advantage to bootstrap from are this position's (zero off the response).
      nextValue = v.select(dim: 1, index: i) * mi
    }
    let advantages = Tensor.stack(columns, dim: 1)
    return (advantages, (advantages + v) * m)
  }

  /// (x − mean)/std over the masked entries (mean kept when `shiftMean` is false); zero off the mask.
  public static func whiten(_ x: Tensor, mask: Tensor, shiftMean: Bool = true) -> Tensor {
    let w = wide(x), m = mask.to(w.dtype)
    let mean = maskedMean(w, m)
    let variance = maskedMean((w - mean).square(), m)
    var out = (w - mean) * (variance + 1e-8).rsqrt()
    if !shiftMean { out = out + mean }
    return out * m
  }

  /// The clipped surrogate −min(ρA, clip(ρ, 1±ε)A), averaged over response tokens.
  public static func policyLoss(logProbs: Tensor, oldLogProbs: Tensor, advantages: Tensor, mask: Tensor, clip: Double)
    -> LossResult
  {
    let logRatio = wide(logProbs) - wide(oldLogProbs).detached()
    let ratio = logRatio.exp()
    let a = advantages.detached().to(ratio.dtype)
    let unclipped = -a * ratio
    let clipped = -a * ratio.clamp(min: 1 - clip, max: 1 + clip)
    let loss = maskedMean(unclipped.maximum(clipped), mask)
    return LossResult(loss: loss, metrics: [
      "clip_ratio": maskedMean(clipped.gt(unclipped).to(ratio.dtype), mask),
      "approx_kl": maskedMean(logRatio.square() * 0.5, mask),
    ])
  }

  /// ½·max((v − R)², (clip(v, v_old ± c) − R)²), averaged over response tokens.
  public static func valueLoss(values: Tensor, oldValues: Tensor, returns: Tensor, mask: Tensor, clip: Double) -> LossResult {
    let v = wide(values), old = wide(oldValues).detached(), ret = wide(returns).detached()
    let clippedV = old + (v - old).clamp(min: -clip, max: clip)
    let a = (v - ret).square(), b = (clippedV - ret).square()
    let loss = maskedMean(a.maximum(b), mask) * 0.5
    return LossResult(loss: loss, metrics: ["value_clip_ratio": maskedMean(b.gt(a).to(v.dtype), mask)])
  }
}

/// One sampled response with what the rollout computed for it, each a row [W-1] aligned with its targets
/// (W the rollout's padded width; a mini-batch narrows them to its own width).
public struct PPOSample {
  public let sequence: TokenSequence
  let oldLogProbs: Tensor
  let oldValues: Tensor
  let advantages: Tensor
  let returns: Tensor
}

/// RLHF with PPO (METHODS §7) as an online method: responses sampled in-process from the live policy
/// with the KV cache, reward at the last token minus a per-token KL penalty to the frozen reference, a
/// value head on the policy's hidden states, GAE(γ, λ), whitened advantages, clipped policy and value
/// losses, several passes per rollout. Metrics: reward mean/std, KL, clip fraction, entropy, value loss,
/// grad norm.
public final class PPOMethod: MethodDefinition, OnlineMethod {
  public static let commandName = "ppo"
  public static let abstract = "RLHF with PPO: sample, score, and update against a reward (METHODS §7)."
  public static let discussion = """
    Data: {"prompt"} lines. Each step samples --batch-size prompts' responses with the live policy (KV cache), \
    scores them with the reward — a reward model (--reward-model, from `train rm`) or a programmatic scorer \
    (--reward-token-fraction TEXT: the fraction of response tokens equal to TEXT's single token) — subtracts \
    β·(log π − log π_ref) per token against a frozen copy of the starting model, and runs --ppo-epochs passes \
    of clipped updates in mini-batches of --mini-batch. --steps counts rollouts.
    """
  public static let options: [MethodOption] = [
    .string("reward-model", "Reward-model checkpoint written by `shatter train rm`."),
    .string("reward-token-fraction", "Reward = fraction of response tokens equal to this text's single token."),
    .int("response-length", 16, "Largest number of response tokens."),
    .int("ppo-epochs", 4, "Update passes over each rollout."),
    .int("mini-batch", 4, "Sequences per update."),
    .double("beta", 0.05, "β: per-token KL penalty coefficient towards the reference."),
    .double("clip", 0.2, "Policy ratio clip ε."),
    .double("value-clip", 0.2, "Value clip around the rollout's values."),
    .double("value-coef", 0.1, "Value-loss coefficient."),
    .double("gamma", 1.0, "γ: GAE discount."),
    .double("lambda", 0.95, "λ: GAE trace decay."),
    .double("temperature", 1.0, "Sampling temperature for rollouts."),
    .flag("no-whiten-rewards", "Use the raw scores instead of whitening them across each rollout."),
  ]
  public static var trainerDefaults: TrainerOptions {
    var o = TrainerOptions()
    o.steps = 20
    o.learningRate = 1e-4
    o.schedule = .constant
    return o
  }
  public static let progressMetrics = ["reward/mean", "kl", "clip_ratio", "entropy"]
  public static let summaryHistories = [(metric: "reward/mean", key: "reward_history")]

  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> PPOMethod {
    let rm = a.string("reward-model"), fraction = a.string("reward-token-fraction")
    guard (rm == nil) != (fraction == nil) else {
      throw MethodOptionError("give exactly one of --reward-model DIR and --reward-token-fraction TEXT")
    }
    guard a.int("response-length") > 0, a.int("ppo-epochs") > 0, a.int("mini-batch") > 0, a.double("temperature") > 0 else {
      throw MethodOptionError("--response-length, --ppo-epochs, --mini-batch and --temperature must be positive")
    }
    let reward: RewardFunction
    if let rm {
      reward = RewardModelScorer(model: try RewardModel.load(from: URL(fileURLWithPath: rm)), padId: setup.padId)
    } else {
      let text = fraction ?? ""
      let ids = setup.tokenizer.encode(text, addSpecialTokens: false)
      guard ids.count == 1 else {
        throw MethodOptionError("--reward-token-fraction '\(text)' encodes to \(ids.count) tokens; give one token")
      }
      reward = TokenFractionReward(target: ids[0], stopTokens: setup.stopTokens)
    }
    var o = PPOOptions()
    o.responseLength = a.int("response-length")
    o.epochs = a.int("ppo-epochs")
    o.miniBatch = a.int("mini-batch")
    o.klCoef = a.double("beta")
    o.clip = a.double("clip")
    o.valueClip = a.double("value-clip")
    o.valueCoef = a.double("value-coef")
    o.gamma = a.double("gamma")
    o.lambda = a.double("lambda")
    o.temperature = a.double("temperature")
    o.whitenRewards = !a.flag("no-whiten-rewards")
    return PPOMethod(policy: setup.model, reward: reward, options: o, stopTokens: setup.stopTokens, padId: setup.padId,
                     seed: setup.seed)
  }

  /// The method's knobs (the trainer owns steps, prompts per rollout, learning rate and clipping).
  public struct PPOOptions: Sendable {
    public var responseLength = 16
    public var epochs = 4
    public var miniBatch = 4
    public var clip = 0.2
    public var valueClip = 0.2
    public var valueCoef = 0.1
    public var klCoef = 0.05
    public var gamma = 1.0
    public var lambda = 0.95
    public var temperature = 1.0
    public var whitenRewards = true
    public init() {}
  }

  let reference: any CausalLM
  let reward: RewardFunction
  public let options: PPOOptions
  public let valueHead: Linear
  let stopTokens: Set<Int>
  let padId: Int
  let seed: UInt64
  /// Samples the rollouts (checkpointed).
  let sampler: Generator

  /// The reference is a frozen copy of `policy` as it is now (the starting model).
  public init(policy: any CausalLM, reward: RewardFunction, options: PPOOptions, stopTokens: Set<Int>, padId: Int, seed: UInt64 = 0) {
    self.reference = Checkpoint.frozenCopy(of: policy)
    self.reward = reward
    self.options = options
    self.stopTokens = stopTokens
    self.padId = padId
    self.seed = seed
    sampler = Generator(seed: seed &+ 0x5A)
    let head = Linear(policy.config.hiddenSize, 1, generator: sampler)
    withoutGradients {
      head.weight.zero_()
      head.bias?.zero_()
    }
    head.move(to: policy.device)
    valueHead = head
  }

  public var name: String { Self.commandName }
  public var passes: Int { options.epochs }
  public func miniBatch(promptsPerStep: Int) -> Int { options.miniBatch }
  public var extraParameters: [(name: String, tensor: Tensor)] {
    valueHead.trainableParameters().map { ("v_head." + $0.name, $0.tensor) }
  }
  public var generators: [(name: String, generator: Generator)] { [("sampler", sampler)] }
  public func weight(of example: PPOSample) -> Double { 1 }

  /// Values V(s_t) for the states that predict each target: [B, T-1].
  func values(_ a: ScoredBatch) -> Tensor {
    valueHead(a.scored.hidden.narrow(dim: 1, start: 0, length: a.mask.size(1)).to(.float32)).squeezed(dim: -1)
  }

  func sample(_ prompts: [PromptExample], model: any CausalLM, generator: Generator) -> [[Int]] {
    let opts = SamplingOptions(maxNewTokens: options.responseLength, temperature: options.temperature, stopTokens: stopTokens)
    return model.generate(prompts.map(\.tokens), options: opts, padId: padId, generator: generator)
  }

  public func rollout(_ prompts: [PromptExample], model: any CausalLM, step: Int) -> Rollout<PPOSample> {
    let responses = sample(prompts, model: model, generator: sampler)
    let scores = reward.rewards(prompts: prompts.map(\.tokens), responses: responses)
    let sequences = zip(prompts, responses).map { TokenSequence(prompt: $0.tokens, response: $1) }
    return withoutGradients {
      let a = ScoredBatch(sequences, model: model, padId: padId)
      let ref = ScoredBatch(sequences, model: reference, padId: padId)
      let mask = a.mask
      let oldLP = a.scored.tokenLogProbs
      let v = values(a)
      var s = Tensor(scores.map { Float($0) }).to(mask.device)
      if options.whitenRewards && scores.count > 1 { s = PPO.whiten(s, mask: Tensor.ones([scores.count], device: mask.device)) }
      let (rewards, kl) = PPO.klPenalizedRewards(score: s, policyLogProbs: oldLP, referenceLogProbs: ref.scored.tokenLogProbs,
                                                 mask: mask, klCoef: options.klCoef)
      let (adv, ret) = PPO.gae(rewards: rewards, values: v, mask: mask, gamma: options.gamma, lambda: options.lambda)
      let whitened = PPO.whiten(adv, mask: mask)
      let logp = a.logits.logSoftmax(dim: -1)
      let entropy = -((logp.exp() * logp).sum(dim: -1) * mask).sum() / mask.sum().clamp(min: 1)
      let mean = scores.reduce(0, +) / Double(scores.count)
      let std = (scores.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(scores.count)).squareRoot()
      var metrics = readScalars(["kl": kl.mean(), "entropy": entropy])
      metrics["reward/mean"] = mean
      metrics["reward/std"] = std
      metrics["response_length"] = Double(responses.map(\.count).reduce(0, +)) / Double(responses.count)
      let samples = sequences.indices.map { i in
        PPOSample(sequence: sequences[i], oldLogProbs: oldLP[i], oldValues: v[i], advantages: whitened[i], returns: ret[i])
      }
      return Rollout(examples: samples, metrics: metrics)
    }
  }

  public func loss(_ batch: [PPOSample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let a = ScoredBatch(batch.map(\.sequence), model: model, padId: padId)
    // The mini-batch may pad to a shorter width than the rollout; align on its width.
    let w = a.mask.size(1)
    func rows(_ t: KeyPath<PPOSample, Tensor>) -> Tensor { Tensor.stack(batch.map { $0[keyPath: t] }).narrow(dim: 1, start: 0, length: w) }
    let pl = PPO.policyLoss(logProbs: a.scored.tokenLogProbs, oldLogProbs: rows(\.oldLogProbs), advantages: rows(\.advantages),
                            mask: a.mask, clip: options.clip)
    let vl = PPO.valueLoss(values: values(a), oldValues: rows(\.oldValues), returns: rows(\.returns), mask: a.mask,
                           clip: options.valueClip)
    var metrics = pl.tensorMetrics.merging(vl.tensorMetrics) { x, _ in x }
    metrics["loss/policy"] = pl.loss
    metrics["loss/value"] = vl.loss
    return MicroBatchLoss(loss: pl.loss + vl.loss * options.valueCoef, metrics: metrics, tokens: a.batch.tokenCount)
  }

  /// Mean reward of responses to held-out prompts, sampled from a stream seeded by the step.
  public func evaluate(_ prompts: [PromptExample], model: any CausalLM, step: Int) -> [String: Double] {
    let responses = sample(prompts, model: model, generator: Generator(seed: seed &+ 0xE7A1 &+ UInt64(step)))
    let scores = reward.rewards(prompts: prompts.map(\.tokens), responses: responses)
    return ["reward/mean": scores.reduce(0, +) / Double(Swift.max(1, scores.count))]
  }
}
