import Foundation
import Torch

/// A differentiable scalar loss and named metrics. Metrics stay tensors (no device sync) until the
/// trainer reads them all at once after an optimizer step; `metrics` reads them now.
public struct LossResult {
  public let loss: Tensor
  public let tensorMetrics: [String: Tensor]

  public init(loss: Tensor, metrics: [String: Tensor]) {
    self.loss = loss
    tensorMetrics = metrics.mapValues { $0.detached() }
  }

  /// The metrics as numbers, read with one sync.
  public var metrics: [String: Double] { readScalars(tensorMetrics) }
}

/// Every 0-dim tensor's value, read in one device sync.
public func readScalars(_ tensors: [String: Tensor]) -> [String: Double] {
  guard !tensors.isEmpty else { return [:] }
  let keys = tensors.keys.sorted()
  let values = Tensor.stack(keys.map { tensors[$0]!.to(.float64).reshaped([]) }).toArray(Double.self)
  return Dictionary(uniqueKeysWithValues: zip(keys, values))
}

// Conventions for every objective: token-level inputs are `TokenScores` aligned so that index t scores
// target t ([B,T]) and `mask` [B,T] (0/1, floating) marks response tokens. Token means are
// Σ(mask·x)/Σmask over the whole batch, the normalisation SFT uses, so reductions are exact.
// Reductions happen in float32 at least; probabilities stay in log space.

/// Σ(mask·x)/max(Σmask, 1).
func maskedMean(_ x: Tensor, _ mask: Tensor) -> Tensor { (x * mask).sum() / mask.sum().clamp(min: 1) }

func wide(_ t: Tensor) -> Tensor { t.dtype == .float64 ? t : t.to(.float32) }

/// The fraction of entries where `condition` holds, as a float tensor.
func fraction(_ condition: Tensor) -> Tensor { condition.to(.float32).mean() }

public enum TokenLoss {
  /// Σ_t mask·log π(y_t|s_t) per sequence [B].
  public static func sequenceLogProbs(_ tokens: TokenScores, mask: Tensor) -> Tensor { (tokens.logProbs * mask).sum(dim: 1) }

  /// Length-normalised log-likelihood: the mean per-token log-probability of each sequence [B].
  public static func meanLogProbs(_ tokens: TokenScores, mask: Tensor) -> Tensor {
    sequenceLogProbs(tokens, mask: mask) / mask.sum(dim: 1).clamp(min: 1)
  }

  /// SFT (METHODS §7): the mean token negative log-likelihood over response tokens. The one SFT loss:
  /// SFT, the SFT terms of ORPO and of the choice likelihood all call it.
  public static func crossEntropy(_ tokens: TokenScores, mask: Tensor) -> LossResult {
    let loss = -maskedMean(wide(tokens.logProbs), mask)
    return LossResult(loss: loss, metrics: ["nll": loss])
  }

  /// The mean policy entropy H(π(·|s_t)) = −Σ_a π log π over the target positions, with gradient: the
  /// bonus MLE with entropy regularisation subtracts (the IQLearn experiment's baseline, METHODS §5).
  /// `logits` [B,T,V] aligned with `mask` [B,T].
  public static func entropy(logits: Tensor, mask: Tensor) -> Tensor {
    let logp = wide(logits).logSoftmax(dim: -1)
    return maskedMean(-(logp.exp() * logp).sum(dim: -1), mask)
  }
}

/// Rows `start..<start+length` of every tensor of a token view (to split a concatenated forward).
extension TokenScores {
  public func rows(_ start: Int, _ length: Int) -> TokenScores {
    TokenScores(logProbs: logProbs.narrow(dim: 0, start: start, length: length),
                logSumExp: logSumExp.narrow(dim: 0, start: start, length: length))
  }
}
