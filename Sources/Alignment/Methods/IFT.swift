import Foundation
import LM
import Torch

/// Intuitive Fine-Tuning (Hua et al. 2024; METHODS §4).
public enum IFT {
  /// The model's greedy prediction of each input token from the tokens before it: out[:, t] =
  /// argmax ℓ_{t−1}, and out[:, 0] = input[:, 0] (nothing predicts the first token).
  public static func greedyShifted(logits: Tensor, inputTokens: Tensor) -> Tensor {
    let t = inputTokens.size(1)
    let pred = logits.argmax(dim: -1)
    guard t > 1 else { return inputTokens }
    return Tensor.cat([inputTokens.narrow(dim: 1, start: 0, length: 1), pred.narrow(dim: 1, start: 0, length: t - 1)], dim: 1)
  }

  /// (1−λ)·E(y*_t) + λ·E(ŷ_t) where `responseMask` marks positions whose input token is a response token;
  /// the ground-truth embedding elsewhere. The model's own input embedding is used (not a frozen copy).
  public static func mixEmbeddings(embeddingWeight: Tensor, inputTokens: Tensor, predictedTokens: Tensor,
                                   responseMask: Tensor, lambda: Double) -> Tensor {
    let truth = Tensor.embedding(inputTokens, weight: embeddingWeight)
    guard lambda != 0 else { return truth }
    let own = Tensor.embedding(predictedTokens, weight: embeddingWeight)
    return truth + (own - truth) * responseMask.to(truth.dtype).unsqueezed(dim: -1) * lambda
  }

  /// The token losses re-weighted by their discounted future **(choice)**: each response position t
  /// contributes c_t = Σ_{k≥t} γ^{k−t} ℓ_k (its own loss plus the discounted losses of the tokens it
  /// conditions; gradient flows through all of them), and the total is divided by the same discounted
  /// mass of a unit loss, Σ_t Σ_{k≥t} γ^{k−t}, so the loss stays on the SFT scale. METHODS' literal
  /// w_t = c_t·N/Σc gives Σℓ²/Σℓ at γ = 0, not SFT; this form is exactly the SFT mean at γ = 0, as METHODS
  /// requires. Discounting runs within each sequence over its response tokens only.
  public static func weightedLoss(tokenLosses: Tensor, mask: Tensor, gamma: Double) -> LossResult {
    let l = wide(tokenLosses)
    let m = mask.to(l.dtype)
    let t = l.size(1)
    // D[t, k] = γ^{k−t} for k ≥ t, else 0; with γ = 0 it is the identity.
    var rows: [Double] = []
    rows.reserveCapacity(t * t)
    for i in 0..<t { for k in 0..<t { rows.append(k < i ? 0 : (k == i ? 1 : Foundation.pow(gamma, Double(k - i)))) } }
    let d = Tensor(rows, shape: [t, t]).to(l.dtype, l.device)
    let future = (l * m).matmul(d.transposed(0, 1))  // [B,T]: c_t
    let mass = m.matmul(d.transposed(0, 1))          // the same for unit losses
    let loss = (future * m).sum() / (mass * m).sum().clamp(min: 1e-12)
    return LossResult(loss: loss, metrics: ["nll": maskedMean(l, m), "ift_loss": loss])
  }

  /// λ for an optimizer step (1-based): a linear ramp from 0 to `base` over `warmup` steps.
  public static func lambda(at step: Int, base: Double, warmup: Int) -> Double {
    warmup > 0 ? base * Swift.min(1, Double(step) / Double(warmup)) : base
  }
}

/// IFT as a trainer method: the model's own greedy predictions are mixed into the input embeddings of
/// the response, and token losses are re-weighted by their discounted future.
public final class IFTMethod: MethodDefinition {
  public static let commandName = "ift"
  public static let abstract = "Intuitive Fine-Tuning (METHODS §4) on demonstrations."
  public static let discussion = "λ = 0 and γ = 0 is exactly SFT. Data as for `train sft`."
  public static let options: [MethodOption] = [
    .double("lambda", 0.2, "λ: weight of the model's own greedy prediction in the response's input embeddings."),
    .double("gamma", 0.95, "γ: discount of the future token losses each token's weight accumulates."),
    .int("lambda-warmup", 0, "Ramp λ linearly from 0 over this many steps."),
    .double("lambda-noise", 0, "Standard deviation of Gaussian noise added to λ each training step (0: none; evaluation uses λ without noise)."),
  ]
  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> IFTMethod {
    guard a.double("lambda") >= 0, a.double("lambda") <= 1, (0...1).contains(a.double("gamma")), a.int("lambda-warmup") >= 0,
      a.double("lambda-noise") >= 0
    else { throw MethodOptionError("--lambda and --gamma must be in [0, 1], --lambda-warmup and --lambda-noise ≥ 0") }
    return IFTMethod(padId: setup.padId, lambda: a.double("lambda"), gamma: a.double("gamma"), warmup: a.int("lambda-warmup"),
                     lambdaNoise: a.double("lambda-noise"), seed: setup.seed)
  }

  public let padId: Int, lambda: Double, gamma: Double, warmup: Int, lambdaNoise: Double
  /// Draws λ's noise in training (checkpointed).
  let noise: Generator
  public init(padId: Int, lambda: Double = 0.2, gamma: Double = 0.95, warmup: Int = 0, lambdaNoise: Double = 0, seed: UInt64 = 0) {
    self.padId = padId
    self.lambda = lambda
    self.gamma = gamma
    self.warmup = warmup
    self.lambdaNoise = lambdaNoise
    noise = Generator(seed: seed &+ 0x1F7)
  }
  public var name: String { Self.commandName }
  public var generators: [(name: String, generator: Generator)] { [("lambda_noise", noise)] }
  public func weight(of example: TokenSequence) -> Double { Double(example.targetCount) }

  /// λ for a training step: the linear warm-up, plus N(0, σ²) noise when asked, clamped to [0, 1].
  func lambda(at step: Int, noisy: Bool) -> Double {
    var l = IFT.lambda(at: step, base: lambda, warmup: warmup)
    if noisy, lambdaNoise > 0 { l += lambdaNoise * Tensor.randn([], dtype: .float64, generator: noise).item() }
    return Swift.min(1, Swift.max(0, l))
  }

  public func loss(_ batch: [TokenSequence], model: any CausalLM, step: Int) -> MicroBatchLoss {
    loss(batch, model: model, lambda: lambda(at: step, noisy: true))
  }

  public func evaluationLoss(_ batch: [TokenSequence], model: any CausalLM, step: Int) -> MicroBatchLoss {
    loss(batch, model: model, lambda: lambda(at: step, noisy: false))
  }

  func loss(_ batch: [TokenSequence], model: any CausalLM, lambda: Double) -> MicroBatchLoss {
    let b = SequenceBatch(batch, padId: padId)
    let tokens = b.padded.tokens
    let predicted = withoutGradients { IFT.greedyShifted(logits: model.score(b.padded).logits, inputTokens: tokens) }
    let mixed = IFT.mixEmbeddings(embeddingWeight: model.embeddingWeight, inputTokens: tokens, predictedTokens: predicted,
                                  responseMask: b.targetInputs(batch), lambda: lambda)
    let a = ScoredBatch(batch, model: model, padId: padId, inputEmbeddings: mixed)
    let r = IFT.weightedLoss(tokenLosses: -a.tokens.logProbs, mask: a.mask, gamma: gamma)
    return MicroBatchLoss(loss: r.loss, metrics: r.tensorMetrics, tokens: b.tokenCount)
  }
}
