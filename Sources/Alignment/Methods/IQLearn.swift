import Foundation
import LM
import Torch

/// IQLearn as TD-regularised MLE (METHODS §5): logits are soft Q-values, Q(s_t,a) = ℓ_t[a],
/// V(s_t) = logsumexp ℓ_t, and V after the last response token is 0.
public enum IQLearnLoss {
  /// V(s_{t+1}) aligned at t: the next position's soft value where it is a response token, else 0.
  static func nextValues(_ lse: Tensor, mask: Tensor) -> Tensor {
    let t = lse.size(1)
    let zeros = Tensor.zeros([lse.size(0), 1], dtype: lse.dtype, device: lse.device)
    guard t > 1 else { return zeros }
    let shifted = lse.narrow(dim: 1, start: 1, length: t - 1) * mask.narrow(dim: 1, start: 1, length: t - 1)
    return Tensor.cat([shifted, zeros], dim: 1)
  }

  /// The implicit per-token reward r_t = Q(s_t,y_t) − γV(s_{t+1}) [B,T] (meaningful where `mask` is 1).
  public static func rewards(_ tokens: TokenScores, mask: Tensor, gamma: Double) -> Tensor {
    wide(tokens.targetLogits) - nextValues(wide(tokens.logSumExp), mask: mask) * gamma
  }

  /// The extracted sequence reward Σ_t r_t over each sequence's response tokens [B].
  public static func sequenceRewards(_ tokens: TokenScores, mask: Tensor, gamma: Double) -> Tensor {
    (rewards(tokens, mask: mask, gamma: gamma) * mask).sum(dim: 1)
  }

  /// Per token −log π(y_t|s_t) + λ(Q(s_t,y_t) − γV(s_{t+1}))², averaged over response tokens. λ = 0 is SFT.
  public static func compute(_ tokens: TokenScores, mask: Tensor, lambda: Double, gamma: Double) -> LossResult {
    let nll = -maskedMean(wide(tokens.logProbs), mask)
    let td = rewards(tokens, mask: mask, gamma: gamma)
    let tdLoss = maskedMean(td.square(), mask)
    let loss = lambda == 0 ? nll : nll + tdLoss * lambda
    return LossResult(loss: loss, metrics: [
      "nll": nll, "td_loss": tdLoss, "rewards/token_mean": maskedMean(td, mask),
      "rewards/sequence_mean": (td * mask).sum(dim: 1).mean(),
    ])
  }

  /// The online variant's term for the policy's own samples **(choice, METHODS §5)**: they enter only
  /// the value term, λ·mean over response tokens of (V(s_t) − γV(s_{t+1}))².
  public static func valueTerm(_ tokens: TokenScores, mask: Tensor, gamma: Double, lambda: Double) -> LossResult {
    let lse = wide(tokens.logSumExp)
    let loss = maskedMean((lse - nextValues(lse, mask: mask) * gamma).square(), mask) * lambda
    return LossResult(loss: loss, metrics: ["value_term": loss])
  }
}

/// IQLearn as a trainer method. With α > 0, that fraction of each batch's prompts get a response sampled
/// from the current policy, which enters only the value term **(choice, METHODS §5)**.
public final class IQLearnMethod: MethodDefinition {
  public static let commandName = "iqlearn"
  public static let abstract = "IQLearn as TD-regularised MLE (METHODS §5) on demonstrations."
  public static let discussion = "Per token −log π(y|s) + λ(Q(s,y) − γV(s'))², logits as soft Q-values. λ = 0 is exactly SFT."
  public static let options: [MethodOption] = [
    .double("lambda", 0.1, "λ: weight of the temporal-difference regulariser."),
    .double("gamma", 1.0, "γ: discount of the next state's soft value."),
    .double("alpha", 0, "α: fraction of each batch replaced by the policy's own samples, which enter only the value term."),
  ]
  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> IQLearnMethod {
    guard a.double("lambda") >= 0, (0...1).contains(a.double("gamma")), (0...1).contains(a.double("alpha")) else {
      throw MethodOptionError("--lambda must be ≥ 0, --gamma and --alpha in [0, 1]")
    }
    return IQLearnMethod(padId: setup.padId, lambda: a.double("lambda"), gamma: a.double("gamma"), alpha: a.double("alpha"),
                         stopTokens: setup.stopTokens, seed: setup.seed)
  }

  public let padId: Int, lambda: Double, gamma: Double, alpha: Double
  let stopTokens: Set<Int>
  let seed: UInt64
  /// Samples the online responses in training (checkpointed).
  let sampler: Generator
  public init(padId: Int, lambda: Double, gamma: Double, alpha: Double = 0, stopTokens: Set<Int> = [], seed: UInt64 = 0) {
    self.padId = padId
    self.lambda = lambda
    self.gamma = gamma
    self.alpha = alpha
    self.stopTokens = stopTokens
    self.seed = seed
    sampler = Generator(seed: seed &+ 0x10)
  }
  public var name: String { Self.commandName }
  public var generators: [(name: String, generator: Generator)] { [("sampler", sampler)] }
  public func weight(of example: TokenSequence) -> Double { Double(example.targetCount) }

  public func loss(_ batch: [TokenSequence], model: any CausalLM, step: Int) -> MicroBatchLoss {
    loss(batch, model: model, sampler: sampler)
  }

  /// Held-out online samples come from a stream of their own, seeded by the step.
  public func evaluationLoss(_ batch: [TokenSequence], model: any CausalLM, step: Int) -> MicroBatchLoss {
    loss(batch, model: model, sampler: Generator(seed: seed &+ 0xE7A1 &+ UInt64(step)))
  }

  func loss(_ batch: [TokenSequence], model: any CausalLM, sampler: Generator) -> MicroBatchLoss {
    let online = Int((alpha * Double(batch.count)).rounded())
    let demos = Array(batch.dropFirst(online))
    var parts: [LossResult] = []
    var tokens = 0
    if !demos.isEmpty {
      let a = ScoredBatch(demos, model: model, padId: padId)
      parts.append(IQLearnLoss.compute(a.tokens, mask: a.mask, lambda: lambda, gamma: gamma))
      tokens += a.batch.tokenCount
    }
    if online > 0 {
      let a = ScoredBatch(policySamples(Array(batch.prefix(online)), model: model, sampler: sampler), model: model, padId: padId)
      let v = IQLearnLoss.valueTerm(a.tokens, mask: a.mask, gamma: gamma, lambda: lambda)
      parts.append(LossResult(loss: v.loss, metrics: ["online_value_term": v.loss]))
      tokens += a.batch.tokenCount
    }
    let loss = parts.dropFirst().reduce(parts[0].loss) { $0 + $1.loss }
    return MicroBatchLoss(loss: loss, metrics: parts.reduce(into: [:]) { $0.merge($1.tensorMetrics) { a, _ in a } }, tokens: tokens)
  }

  /// The prompts of `examples` continued by the current policy (each as long as its demonstration at
  /// most), sampled as one batch.
  func policySamples(_ examples: [TokenSequence], model: any CausalLM, sampler: Generator) -> [TokenSequence] {
    let lengths = examples.map { Swift.max(1, $0.tokens.count - $0.prompt.count) }
    let opts = SamplingOptions(maxNewTokens: lengths.max() ?? 1, temperature: 1, stopTokens: stopTokens)
    let responses = model.generate(examples.map(\.prompt), options: opts, padId: padId, generator: sampler)
    return zip(examples, zip(responses, lengths)).map { e, r in TokenSequence(prompt: e.prompt, response: Array(r.0.prefix(r.1))) }
  }
}
