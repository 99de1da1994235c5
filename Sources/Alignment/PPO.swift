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
      let seqs = zip(prompts, responses).map { p, r in
        SFTExample(tokens: p + r, targets: [Bool](repeating: false, count: p.count) + [Bool](repeating: true, count: r.count))
      }
      return model.rewards(seqs, padId: padId).toArray(Double.self)
    }
  }
}

public struct PPOOptions: Sendable {
  /// Rollout rounds (each: sample, score, then several epochs of updates).
  public var iterations = 20
  public var promptsPerRollout = 8
  public var responseLength = 16
  public var epochs = 4
  public var miniBatch = 4
  public var learningRate = 1e-4
  public var clip = 0.2
  public var valueClip = 0.2
  public var valueCoef = 0.1
  public var klCoef = 0.05
  public var gamma = 1.0
  public var lambda = 0.95
  public var temperature = 1.0
  public var whitenRewards = true
  public var clipNorm: Double? = 1.0
  public var seed: UInt64 = 0
  public init() {}
}

/// One rollout round's report.
public struct PPOLog: Sendable {
  public let iteration: Int
  public let iterations: Int
  public let metrics: [String: Double]
}

/// RLHF with PPO (METHODS §7): responses sampled in-process from the live policy with the KV cache,
/// reward at the last token minus a per-token KL penalty to the frozen reference, a value head on the
/// policy's hidden states, GAE(γ, λ), whitened advantages, clipped policy and value losses, several
/// epochs per rollout. Metrics: reward mean/std, KL, clip fraction, entropy, value loss, grad norm.
public final class PPOTrainer {
  public let policy: any CausalLM
  let reference: any CausalLM
  let reward: RewardFunction
  let prompts: [PromptExample]
  public let options: PPOOptions
  public let valueHead: Linear
  let optimizer: AdamW
  let generator: Generator
  let stopTokens: Set<Int>
  let padId: Int
  var order: [Int] = []
  var cursor = 0

  public init(policy: any CausalLM, reference: any CausalLM, reward: RewardFunction, prompts: [PromptExample],
              options: PPOOptions, stopTokens: Set<Int>, padId: Int) {
    precondition(!prompts.isEmpty)
    self.policy = policy
    self.reference = reference
    self.reward = reward
    self.prompts = prompts
    self.options = options
    self.stopTokens = stopTokens
    self.padId = padId
    generator = Generator(seed: options.seed)
    let head = Linear(policy.config.hiddenSize, 1, generator: generator)
    withoutGradients {
      head.weight.zero_()
      head.bias?.zero_()
    }
    valueHead = head
    reference.setRequiresGrad(false)
    optimizer = AdamW(policy.trainableParameters() + valueHead.trainableParameters().map { ("v_head." + $0.name, $0.tensor) },
                      learningRate: options.learningRate, betas: (0.9, 0.95), weightDecay: 0)
  }

  func nextPrompts() -> [[Int]] {
    (0..<options.promptsPerRollout).map { _ in
      if cursor >= order.count {
        order = Tensor.randperm(prompts.count, generator: generator).toArray(Int.self)
        cursor = 0
      }
      defer { cursor += 1 }
      return prompts[order[cursor]].tokens
    }
  }

  /// Values V(s_t) for the states that predict each target: [B, T-1].
  func values(_ a: AlignedBatch) -> Tensor {
    let h = a.scored.hidden.narrow(dim: 1, start: 0, length: a.mask.size(1))
    return valueHead(h.to(.float32)).squeezed(dim: -1)
  }

  /// Mean reward of greedy-free samples from the current policy, without training (for before/after).
  public func meanReward(rounds: Int = 2) -> Double {
    var total = 0.0
    for _ in 0..<rounds {
      let p = nextPrompts()
      let r = sample(p)
      total += reward.rewards(prompts: p, responses: r).reduce(0, +) / Double(p.count)
    }
    return total / Double(rounds)
  }

  func sample(_ prompts: [[Int]]) -> [[Int]] {
    let opts = SamplingOptions(maxNewTokens: options.responseLength, temperature: options.temperature,
                               stopTokens: stopTokens)
    return policy.generate(prompts, options: opts, padId: padId, generator: generator)
  }

  public func train(progress: (PPOLog) -> Void = { _ in }) throws -> [[String: Double]] {
    var history: [[String: Double]] = []
    for iteration in 1...options.iterations {
      // 1. Rollout with the live weights.
      policy.setTraining(false)
      let promptBatch = nextPrompts()
      let responses = sample(promptBatch)
      let scores = reward.rewards(prompts: promptBatch, responses: responses)
      let sequences = zip(promptBatch, responses).map { p, r in
        SFTExample(tokens: p + r, targets: [Bool](repeating: false, count: p.count) + [Bool](repeating: true, count: r.count))
      }
      let (oldLogProbs, oldValues, advantages, returns, rolloutMetrics) = withoutGradients {
        () -> (Tensor, Tensor, Tensor, Tensor, [String: Double]) in
        let a = AlignedBatch(sequences, model: policy, padId: padId)
        let ref = AlignedBatch(sequences, model: reference, padId: padId)
        let mask = a.mask
        let oldLP = a.scored.tokenLogProbs
        let v = values(a)
        var s = Tensor(scores.map { Float($0) })
        if options.whitenRewards && scores.count > 1 { s = PPO.whiten(s, mask: Tensor.ones([scores.count])) }
        let (rewards, kl) = PPO.klPenalizedRewards(score: s, policyLogProbs: oldLP, referenceLogProbs: ref.scored.tokenLogProbs,
                                                   mask: mask, klCoef: options.klCoef)
        let (adv, ret) = PPO.gae(rewards: rewards, values: v, mask: mask, gamma: options.gamma, lambda: options.lambda)
        let logp = a.logits.logSoftmax(dim: -1)
        let entropy = -((logp.exp() * logp).sum(dim: -1) * mask).sum().item() / Swift.max(1, mask.sum().item())
        let mean = scores.reduce(0, +) / Double(scores.count)
        let std = (scores.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(scores.count)).squareRoot()
        return (oldLP, v, PPO.whiten(adv, mask: mask), ret,
                ["reward/mean": mean, "reward/std": std, "kl": kl.mean().item(), "entropy": entropy,
                 "response_length": Double(responses.map(\.count).reduce(0, +)) / Double(responses.count)])
      }

      // 2. Several epochs of clipped updates on this rollout.
      policy.setTraining(true)
      var sums: [String: Double] = [:]
      var updates = 0
      for _ in 0..<options.epochs {
        let perm = Tensor.randperm(sequences.count, generator: generator).toArray(Int.self)
        for start in stride(from: 0, to: perm.count, by: options.miniBatch) {
          let idx = Array(perm[start..<Swift.min(start + options.miniBatch, perm.count)])
          let rows = Tensor(idx.map { Int64($0) })
          let a = AlignedBatch(idx.map { sequences[$0] }, model: policy, padId: padId)
          // The mini-batch may pad to a shorter width than the rollout; align on its width.
          let w = a.mask.size(1)
          func pick(_ t: Tensor) -> Tensor { t.indexSelect(dim: 0, index: rows).narrow(dim: 1, start: 0, length: w) }
          let mask = a.mask
          let pl = PPO.policyLoss(logProbs: a.scored.tokenLogProbs, oldLogProbs: pick(oldLogProbs),
                                  advantages: pick(advantages), mask: mask, clip: options.clip)
          let vl = PPO.valueLoss(values: values(a), oldValues: pick(oldValues), returns: pick(returns), mask: mask,
                                 clip: options.valueClip)
          let loss = pl.loss + vl.loss * options.valueCoef
          let value = loss.item()
          guard value.isFinite else { throw NonFiniteError(step: iteration, metric: "ppo loss", value: value) }
          optimizer.zeroGrad()
          loss.backward()
          let norm = optimizer.clipGradients(maxNorm: options.clipNorm)
          guard norm.isFinite else { throw NonFiniteError(step: iteration, metric: "grad_norm", value: norm) }
          optimizer.step()
          updates += 1
          sums["loss/policy", default: 0] += pl.loss.item()
          sums["loss/value", default: 0] += vl.loss.item()
          sums["grad_norm", default: 0] += norm
          for (k, v) in pl.metrics.merging(vl.metrics, uniquingKeysWith: { a, _ in a }) { sums[k, default: 0] += v }
        }
      }
      var metrics = rolloutMetrics
      for (k, v) in sums { metrics[k] = v / Double(Swift.max(1, updates)) }
      history.append(metrics)
      progress(PPOLog(iteration: iteration, iterations: options.iterations, metrics: metrics))
    }
    return history
  }
}
