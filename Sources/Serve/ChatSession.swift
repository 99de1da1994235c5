import Foundation
import LM
import Torch

/// The ids that end a completion for this model: EOS ids of config.json and the tokenizer, and the
/// end-of-turn markers of the chat families (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`).
public func completionStopTokens(model: any CausalLM, tokenizer: any TextTokenizer) -> Set<Int> {
  var stops = model.stopTokens(tokenizer: tokenizer)
  for marker in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>"] {
    if let id = tokenizer.tokenId(marker) { stops.insert(id) }
  }
  return stops
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
    self.options.stopTokens.formUnion(completionStopTokens(model: model, tokenizer: tokenizer))
    reset()
  }

  /// Forgets the conversation (the system message stays).
  public func reset() {
    history = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
  }

  /// Sends `message` as the user's turn; `onPiece` gets the reply's text as it is generated.
  public func send(_ message: String, onPiece: @escaping (String) -> Void = { _ in }) throws -> Reply {
    let turns = history + [ChatMessage(role: "user", content: message)]
    let prompt = template.render(turns, addGenerationPrompt: true)
    let ids = tokenizer.encode(prompt, addSpecialTokens: false)
    let context = model.config.maxPositions
    guard !ids.isEmpty else { throw APIError.invalid("message", "the conversation encodes to no tokens") }
    guard ids.count < context else {
      throw APIError.invalid("message", "the conversation has \(ids.count) tokens, more than the model's context of \(context) "
        + "tokens; /reset starts a new one")
    }
    let vocabulary = min(model.config.vocabSize, tokenizer.vocabularySize)
    if let bad = ids.first(where: { $0 >= vocabulary }) {
      throw APIError.invalid("message", "the conversation encodes to token id \(bad), outside the model's vocabulary of \(vocabulary)")
    }
    var opts = options
    opts.maxNewTokens = min(options.maxNewTokens, context - ids.count)
    var streamer = TextStreamer(tokenizer: tokenizer)
    var finish = FinishReason.length
    let stops = opts.stopTokens
    let new = model.generate([ids], options: opts, padId: tokenizer.padTokenId ?? 0, generator: Generator(seed: seed)) { _, token in
      if stops.contains(token) {
        finish = .stop
        return false
      }
      let piece = streamer.push(token)
      if !piece.isEmpty { onPiece(piece) }
      return true
    }[0]
    let tail = streamer.finish()
    if !tail.isEmpty { onPiece(tail) }
    let text = streamer.text
    history = turns + [ChatMessage(role: "assistant", content: text)]
    return Reply(text: text, finish: finish, promptTokens: ids.count, completionTokens: new.count, prompt: prompt)
  }
}
