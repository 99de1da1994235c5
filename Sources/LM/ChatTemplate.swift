import Foundation

/// One turn of a conversation, as in `{"messages": [{"role": …, "content": …}]}` data.
public struct ChatMessage: Sendable, Codable, Equatable, Hashable {
  public var role: String
  public var content: String

  public init(role: String, content: String) {
    self.role = role
    self.content = content
  }
}

/// Conversation → prompt text, for the template families Shatter's models use. A Jinja interpreter is
/// out of scope: the kind is recognised from the markers in the model's `chat_template` and rendered by
/// fixed code that produces what that family's published template produces for plain role/content turns.
///
/// The rendered text already contains the special-token strings (including Llama-3's
/// `<|begin_of_text|>`), so encode it with `addSpecialTokens: false`.
public enum ChatTemplate: Sendable, Equatable {
  /// `<|im_start|>role\ncontent<|im_end|>\n` per message (ChatML models whose template has no fixed
  /// default system turn).
  case chatML
  /// ChatML whose template opens with a fixed system turn when the first message is not a system turn
  /// (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"; Qwen2:
  /// "You are a helpful assistant.").
  case chatMLWithDefaultSystem(String)
  /// `<|begin_of_text|>` then `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>` per message,
  /// with the content trimmed of surrounding whitespace as Llama-3's template does (`| trim`).
  case llama3
  /// `role: content\n` per message, for models without a chat template.
  case plain

  /// Chooses the kind from a `chat_template` source: ChatML if it mentions `<|im_start|>` (with the default
  /// system turn its source spells out, if any), Llama-3 if it
  /// mentions `<|start_header_id|>`, otherwise plain.
  public init(templateSource: String?) {
    guard let source = templateSource else {
      self = .plain
      return
    }
    if source.contains("<|im_start|>") {
      self = ChatTemplate.defaultSystemMessage(inChatML: source).map { .chatMLWithDefaultSystem($0) } ?? .chatML
    } else if source.contains("<|start_header_id|>") {
      self = .llama3
    } else {
      self = .plain
    }
  }

  /// The prompt text for `messages`; with `addGenerationPrompt` it ends with the opening of an
  /// assistant turn, ready for generation.
  public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
    var out = ""
    switch self {
    case .chatMLWithDefaultSystem(let system):
      // The template checks `loop.first and messages[0]['role'] != 'system'`, so none for no messages.
      if let first = messages.first, first.role != "system" { out += "<|im_start|>system\n\(system)<|im_end|>\n" }
      for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
      if addGenerationPrompt { out += "<|im_start|>assistant\n" }
    case .chatML:
      for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
      if addGenerationPrompt { out += "<|im_start|>assistant\n" }
    case .llama3:
      // The published template puts the BOS string before the first message (so none for no messages).
      if !messages.isEmpty { out += "<|begin_of_text|>" }
      for m in messages {
        let content = m.content.trimmingCharacters(in: .whitespacesAndNewlines)
        out += "<|start_header_id|>\(m.role)<|end_header_id|>\n\n\(content)<|eot_id|>"
      }
      if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
    case .plain:
      for m in messages { out += "\(m.role): \(m.content)\n" }
      if addGenerationPrompt { out += "assistant: " }
    }
    return out
  }

  /// The literal system turn a ChatML template emits when the conversation does not open with one: the
  /// text of a quoted `'<|im_start|>system\n…<|im_end|>'` guarded by a `!= 'system'` test. Templates that
  /// take the system text from a variable (or have no such branch) give nil.
  static func defaultSystemMessage(inChatML source: String) -> String? {
    guard source.contains("!= 'system'") || source.contains("!= \"system\"") else { return nil }
    for opener in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
      var from = source.startIndex
      while let start = source.range(of: opener, range: from..<source.endIndex),
        let end = source.range(of: "<|im_end|>", range: start.upperBound..<source.endIndex)
      {
        from = end.upperBound
        let raw = String(source[start.upperBound..<end.lowerBound])
        // A variable or a concatenation means the text is not fixed.
        if raw.contains("'") || raw.contains("\"") || raw.contains("{{") || raw.contains("+") { continue }
        return raw.replacingOccurrences(of: "\\n", with: "\n")
      }
    }
    return nil
  }
}
