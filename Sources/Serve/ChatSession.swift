import Foundation
import LM
import Torch

/// The ids that end a completion for this model: EOS ids of config.json and the tokenizer, and the
/// end-of-turn markers of the chat families (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`).
public func completionStopTokens(model: any CausalLM, tokenizer: any TextTokenizer) -> Set<Int> {
  ChatModel.stopTokens(model: model, tokenizer: tokenizer)
}

/// A conversation with a local model in the terminal: the model's chat template renders the history,
/// each reply streams piece by piece and joins the history.
public final class ChatSession {
  public let model: any CausalLM
  public let tokenizer: any TextTokenizer
  public let template: ChatTemplate
  public let system: String?
  public var options: SamplingOptions
  public var seed: UInt64
  public private(set) var history: [ChatMessage] = []

  public struct Reply: Sendable {
    public var text: String
    public var finish: FinishReason
    public var promptTokens: Int
    public var completionTokens: Int
    /// The exact prompt text the template produced.
    public var prompt: String
  }

  public init(model: any CausalLM, tokenizer: any TextTokenizer, template: ChatTemplate, system: String?,
              options: SamplingOptions, seed: UInt64) {
    self.model = model
    self.tokenizer = tokenizer
    self.template = template
    self.system = system
    self.options = options
    self.seed = seed
    reset()
  }

  /// Forgets the conversation (the system message stays).
  public func reset() {
    history = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
  }

  /// Sends `message` as the user's turn; `onPiece` gets the reply's text as it is generated.
  public func send(_ message: String, onPiece: @escaping (String) -> Void = { _ in }) throws -> Reply {
    let turns = history + [ChatMessage(role: "user", content: message)]
    let chat = ChatModel(model: model, tokenizer: tokenizer, template: template)
    let r: ChatModel.Completion
    do {
      r = try chat.complete(turns, options: options, seed: seed, onPiece: onPiece)
    } catch let e as ChatInputError {
      throw APIError.invalid("message", e.message + (e.exceedsContext ? "; /reset starts a new one" : ""))
    }
    history = turns + [ChatMessage(role: "assistant", content: r.text)]
    return Reply(text: r.text, finish: r.stopped ? .stop : .length, promptTokens: r.promptTokens,
                 completionTokens: r.completionTokens, prompt: r.prompt)
  }
}
