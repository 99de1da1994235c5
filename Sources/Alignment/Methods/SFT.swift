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
  public static let options: [MethodOption] = []
  public static func make(_ arguments: MethodArguments, _ setup: MethodSetup) throws -> SFTMethod { SFTMethod(padId: setup.padId) }

  public let padId: Int
  public init(padId: Int) { self.padId = padId }
  public var name: String { Self.commandName }
  public func weight(of example: TokenSequence) -> Double { Double(example.targetCount) }
  public func loss(_ batch: [TokenSequence], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let a = ScoredBatch(batch, model: model, padId: padId)
    let r = TokenLoss.crossEntropy(a.tokens, mask: a.mask)
    return MicroBatchLoss(loss: r.loss, metrics: r.tensorMetrics, tokens: a.batch.tokenCount)
  }
}
