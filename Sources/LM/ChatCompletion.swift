import Foundation
import Torch

/// A reply a model could not be asked for: the conversation does not fit the context or the vocabulary.
public struct ChatInputError: Error, CustomStringConvertible, Sendable {
  public let message: String
  /// The conversation is longer than the model's context (a new conversation would fit).
  public let exceedsContext: Bool
  public init(_ message: String, exceedsContext: Bool = false) {
    self.message = message
    self.exceedsContext = exceedsContext
  }
  public var description: String { message }
}

/// A local model as a chat model: its chat template renders the messages, generation runs until an
/// end-of-turn token, a stop string or the token budget, and the reply is decoded as it streams. The one
/// path under `shatter chat`, the agents' local backend and anything else that turns messages into a reply.
public struct ChatModel {
  public let model: any CausalLM
  public let tokenizer: any TextTokenizer
  public let template: ChatTemplate
  /// The ids that end a reply: EOS ids of config.json and the tokenizer, and the chat families' end-of-turn
  /// markers (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`).
  public let stopTokens: Set<Int>

  public init(model: any CausalLM, tokenizer: any TextTokenizer, template: ChatTemplate) {
    self.model = model
    self.tokenizer = tokenizer
    self.template = template
    stopTokens = Self.stopTokens(model: model, tokenizer: tokenizer)
  }

  /// EOS ids of config.json and the tokenizer, and the end-of-turn markers the tokenizer has.
  public static func stopTokens(model: any CausalLM, tokenizer: any TextTokenizer) -> Set<Int> {
    var stops = model.stopTokens(tokenizer: tokenizer)
    for marker in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>"] {
      if let id = tokenizer.tokenId(marker) { stops.insert(id) }
    }
    return stops
  }

  public struct Completion: Sendable {
    public var text: String
    /// True when a stop token or stop string ended the reply, false when the token budget did.
    public var stopped: Bool
    public var promptTokens: Int
    public var completionTokens: Int
    /// The exact prompt text the template produced.
    public var prompt: String
  }

  /// The prompt text the template makes of `messages` and its token ids, checked to leave room for a reply
  /// within the context and to stay inside the model's vocabulary.
  public func encode(_ messages: [ChatMessage]) throws -> (prompt: String, ids: [Int]) {
    let prompt = template.render(messages, addGenerationPrompt: true)
    let ids = tokenizer.encode(prompt, addSpecialTokens: false)
    let context = model.config.maxPositions
    guard !ids.isEmpty else { throw ChatInputError("the conversation encodes to no tokens") }
    guard ids.count < context else {
      throw ChatInputError("the conversation has \(ids.count) tokens, more than the model's context of \(context) tokens",
                           exceedsContext: true)
    }
    let vocabulary = min(model.config.vocabSize, tokenizer.vocabularySize)
    if let bad = ids.first(where: { $0 >= vocabulary }) {
      throw ChatInputError("the conversation encodes to token id \(bad), outside the model's vocabulary of \(vocabulary)")
    }
    return (prompt, ids)
  }

  /// The model's reply to `messages`. `options.maxNewTokens` is cut to what the context leaves; the reply
  /// ends at the first stop token of `stopTokens` ∪ `options.stopTokens` or stop string (not included).
  public func complete(_ messages: [ChatMessage], options: SamplingOptions, seed: UInt64, stopStrings: [String] = [],
                       onPiece: @escaping (String) -> Void = { _ in }) throws -> Completion {
    let (prompt, ids) = try encode(messages)
    let context = model.config.maxPositions
    var opts = options
    opts.maxNewTokens = min(options.maxNewTokens, context - ids.count)
    opts.stopTokens.formUnion(stopTokens)
    let stops = opts.stopTokens
    var streamer = TextStreamer(tokenizer: tokenizer, stopStrings: stopStrings)
    var stopped = false
    let new = model.generate([ids], options: opts, padId: tokenizer.padTokenId ?? 0, generator: Generator(seed: seed)) { _, token in
      if stops.contains(token) {
        stopped = true
        return false
      }
      let piece = streamer.push(token)
      if !piece.isEmpty { onPiece(piece) }
      if streamer.stopped {
        stopped = true
        return false
      }
      return true
    }[0]
    let tail = streamer.finish()
    if !tail.isEmpty { onPiece(tail) }
    return Completion(text: streamer.text, stopped: stopped, promptTokens: ids.count, completionTokens: new.count,
                      prompt: prompt)
  }
}
