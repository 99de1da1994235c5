import Foundation
import LM
import Torch

/// Supervised fine-tuning (METHODS §7): token cross-entropy on the completions. Examples weigh their
/// target-token count, so accumulated micro-batches reproduce one large batch's token mean.
public final class SFTMethod: MethodDefinition {
  public static let commandName = "sft"
  public static let abstract = "Supervised fine-tuning: token cross-entropy on completions."
  public static let discussion = """
    Data: JSONL with {"text"}, {"prompt","completion"} or {"messages":[{"role","content"}…]} per line. \
    The loss covers the completion (the last message for chat data) and its final EOS token, never the \
    prompt; the boundary comes from the data, not from chat-template markup.
    """
  public static let options: [MethodOption] = [
    .double("entropy-bonus", 0, "β: subtract β × the policy's mean token entropy from the loss (MLE with entropy regularisation; 0 is plain SFT)."),
  ]
  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> SFTMethod {
    guard a.double("entropy-bonus") >= 0 else { throw MethodOptionError("--entropy-bonus must be ≥ 0") }
    return SFTMethod(padId: setup.padId, entropyBonus: a.double("entropy-bonus"))
  }

  public let padId: Int
  /// β of the entropy bonus: the loss is CE − β·H̄ over the completion's tokens.
  public let entropyBonus: Double
  public init(padId: Int, entropyBonus: Double = 0) {
    self.padId = padId
    self.entropyBonus = entropyBonus
  }
  public var name: String { Self.commandName }
  public func weight(of example: TokenSequence) -> Double { Double(example.targetCount) }
  public func loss(_ batch: [TokenSequence], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let a = ScoredBatch(batch, model: model, padId: padId)
    let r = TokenLoss.crossEntropy(a.tokens, mask: a.mask)
    guard entropyBonus > 0 else { return MicroBatchLoss(loss: r.loss, metrics: r.tensorMetrics, tokens: a.batch.tokenCount) }
    let h = TokenLoss.entropy(logits: a.logits, mask: a.mask)
    return MicroBatchLoss(loss: r.loss - h * entropyBonus, metrics: ["nll": r.loss.detached(), "entropy": h.detached()], tokens: a.batch.tokenCount)
  }
}
