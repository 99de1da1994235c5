import Foundation
import LM
import Torch

/// The LM-as-reward K-way choice likelihood (METHODS §1.1): P(pick y_i) = softmax_k(r_θ(x, y_k))[i].
public enum ChoiceLoss {
  /// - scores: [N,K] sequence log-likelihoods; chosen: [N] int64; validMask: [N,K] bool (nil: all valid).
  public static func compute(scores: Tensor, chosen: Tensor, validMask: Tensor? = nil) -> LossResult {
    let n = scores.size(0)
    return compute(typeLogWeights: Tensor.zeros([n, 1], dtype: wide(scores).dtype, device: scores.device),
                   scores: scores.unsqueezed(dim: 1), chosen: chosen, validMask: validMask)
  }

  /// The choice likelihood of a population of M latent person types: each type picks by its own Luce rule
  /// on its scores, and the pick's probability is their mixture,
  /// P(pick k) = Σ_m w_m · softmax_k(s_m)[k], computed as logsumexp_m(log w_m + log_softmax_k(s_m)[k]).
  /// With M = 1 it is the single Luce choice likelihood above. Fitted to K-way choices with K ≥ 3, its
  /// optimum recovers the types (and so the population's own distribution, Σ_m w_m p_m), where a single
  /// Luce fit of a mixture cannot (docs/INCLUSIVE.md).
  /// - typeLogWeights: [N,M] log w_m (each row normalised); scores: [N,M,K]; chosen: [N]; validMask: [N,K].
  public static func compute(typeLogWeights: Tensor, scores: Tensor, chosen: Tensor, validMask: Tensor? = nil) -> LossResult {
    let logP = logProbabilities(typeLogWeights: typeLogWeights, scores: scores, validMask: validMask)
    let picked = Self.picked(logP, chosen)
    let loss = -picked.mean()
    return LossResult(loss: loss, metrics: ["loss": loss, "accuracy": fraction(logP.argmax(dim: 1).eq(chosen)),
                                            "chosen_probability_mean": picked.exp().mean()])
  }

  /// log P(pick chosen) [N] under the mixture of `compute(typeLogWeights:scores:chosen:validMask:)`.
  public static func chosenLogProbabilities(typeLogWeights: Tensor, scores: Tensor, chosen: Tensor) -> Tensor {
    picked(logProbabilities(typeLogWeights: typeLogWeights, scores: scores), chosen)
  }

  static func picked(_ logP: Tensor, _ chosen: Tensor) -> Tensor {
    logP.gather(dim: 1, index: chosen.unsqueezed(dim: 1)).squeezed(dim: 1)
  }

  /// log P(pick k) [N,K] under the mixture of `compute(typeLogWeights:scores:chosen:validMask:)`.
  public static func logProbabilities(typeLogWeights: Tensor, scores: Tensor, validMask: Tensor? = nil) -> Tensor {
    var s = wide(scores)
    if let validMask { s = s.maskedFill(validMask.logicalNot().unsqueezed(dim: 1).expanded(to: s.shape), -Double.infinity) }
    return (wide(typeLogWeights).to(s.dtype).unsqueezed(dim: 2) + s.logSoftmax(dim: 2)).logSumExp(dim: 1)
  }
}

/// The choice likelihood as a trainer method, plus μ·SFT on the chosen completions.
public final class ChoiceMethod: MethodDefinition {
  public static let commandName = "choice"
  /// Two candidates at least (K-way data puts K through).
  public static let sequencesPerExample = 2
  public static let abstract = "Fit the model's own likelihood to recorded K-way choices (METHODS §1.1)."
  public static let discussion = """
    P(pick y_i) = softmax_k(log π(y_k|x))[i]: the language model is the reward, so fitting the choices is the \
    fine-tuning. Data: {"prompt","candidates":[…],"choice":i} lines, or {"prompt","chosen","rejected"} as K = 2.
    """
  public static let options: [MethodOption] = [.double("mu", 0, "μ: weight of an SFT term on the chosen completions (0: none).")]
  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> ChoiceMethod {
    guard a.double("mu") >= 0 else { throw MethodOptionError("--mu must be ≥ 0") }
    return ChoiceMethod(padId: setup.padId, mu: a.double("mu"))
  }

  public let padId: Int, mu: Double
  public init(padId: Int, mu: Double = 0) {
    self.padId = padId
    self.mu = mu
  }
  public var name: String { Self.commandName }
  public func weight(of example: ChoiceExample) -> Double { 1 }
  public func loss(_ batch: [ChoiceExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let k = batch.map(\.candidates.count).max() ?? 0
    let flat = batch.flatMap(\.candidates)
    let a = ScoredBatch(flat, model: model, padId: padId)
    // Lay the flat scores out as [N, K], padding rows with fewer candidates.
    var index: [Int64] = [], valid: [Bool] = [], chosenRows: [Int64] = []
    var offset = 0
    for e in batch {
      for j in 0..<k {
        index.append(Int64(offset + Swift.min(j, e.candidates.count - 1)))
        valid.append(j < e.candidates.count)
      }
      chosenRows.append(Int64(offset + e.choice))
      offset += e.candidates.count
    }
    let device = a.mask.device
    let scores = a.sequenceLogProbs.indexSelect(dim: 0, index: Tensor(index).to(device)).reshaped([batch.count, k])
    let r = ChoiceLoss.compute(scores: scores, chosen: Tensor(batch.map { Int64($0.choice) }).to(device),
                               validMask: Tensor(valid, shape: [batch.count, k]).to(device))
    var loss = r.loss
    var metrics = r.tensorMetrics
    if mu > 0 {
      // The chosen candidates' rows of the same forward pass.
      let rows = Tensor(chosenRows).to(device)
      let tokens = TokenScores(logProbs: a.tokens.logProbs.indexSelect(dim: 0, index: rows),
                               logSumExp: a.tokens.logSumExp.indexSelect(dim: 0, index: rows))
      let s = TokenLoss.crossEntropy(tokens, mask: a.mask.indexSelect(dim: 0, index: rows))
      loss = loss + s.loss * mu
      metrics["sft_nll"] = s.loss
    }
    return MicroBatchLoss(loss: loss, metrics: metrics, tokens: a.batch.tokenCount)
  }
}
