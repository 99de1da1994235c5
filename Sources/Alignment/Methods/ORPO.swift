import Foundation
import LM
import Torch

/// ORPO (METHODS §7): SFT on the chosen plus λ·−log σ(log odds(y_w) − log odds(y_l)), with
/// log odds(y) = log p − log(1 − p) and log p the mean per-token log-probability (length-normalised).
public enum ORPOLoss {
  public static func compute(chosen: TokenScores, chosenMask: Tensor, rejected: TokenScores, rejectedMask: Tensor,
                             lambda: Double) -> LossResult {
    let nll = TokenLoss.crossEntropy(chosen, mask: chosenMask).loss
    func logOdds(_ lp: Tensor) -> Tensor { lp - (-(lp.clamp(max: -1e-6).exp())).log1p() }
    let ratio = logOdds(wide(TokenLoss.meanLogProbs(chosen, mask: chosenMask)))
      - logOdds(wide(TokenLoss.meanLogProbs(rejected, mask: rejectedMask)))
    let orLoss = -ratio.logSigmoid().mean()
    let loss = nll + orLoss * lambda
    return LossResult(loss: loss, metrics: [
      "nll": nll, "or_loss": orLoss, "log_odds_ratio": ratio.mean(), "rewards/accuracies": fraction(ratio.gt(0)),
    ])
  }
}

/// Odds-ratio preference optimisation as a trainer method: chosen and rejected through one
/// concatenated forward pass, split by rows for the loss.
public final class ORPOMethod: MethodDefinition {
  public static let commandName = "orpo"
  /// Chosen and rejected in one forward.
  public static let sequencesPerExample = 2
  public static let abstract = "Odds-ratio preference optimisation: SFT on chosen + λ·odds-ratio loss (METHODS §7)."
  public static let discussion = "Data: {\"prompt\",\"chosen\",\"rejected\"} lines. No reference model."
  public static let options: [MethodOption] = [.double("lambda", 0.1, "λ: weight of the odds-ratio term.")]
  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> ORPOMethod {
    guard a.double("lambda") >= 0 else { throw MethodOptionError("--lambda must be ≥ 0") }
    return ORPOMethod(padId: setup.padId, lambda: a.double("lambda"))
  }

  public let padId: Int, lambda: Double
  public init(padId: Int, lambda: Double = 0.1) {
    self.padId = padId
    self.lambda = lambda
  }
  public var name: String { Self.commandName }
  public func weight(of example: PairExample) -> Double { 1 }
  public func loss(_ batch: [PairExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let n = batch.count
    let a = ScoredBatch(batch.map(\.chosen) + batch.map(\.rejected), model: model, padId: padId)
    let tokens = a.tokens
    let r = ORPOLoss.compute(chosen: tokens.rows(0, n), chosenMask: a.mask.narrow(dim: 0, start: 0, length: n),
                             rejected: tokens.rows(n, n), rejectedMask: a.mask.narrow(dim: 0, start: n, length: n), lambda: lambda)
    return MicroBatchLoss(loss: r.loss, metrics: r.tensorMetrics, tokens: a.batch.tokenCount)
  }
}
