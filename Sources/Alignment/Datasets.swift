import Foundation
import LM

/// A problem with a data file; the message names the file, the line and what was expected.
public struct DataError: Error, CustomStringConvertible {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// One JSON object per non-blank line, with its 1-based line number.
public struct JSONLFile {
  public let path: String
  public let records: [(line: Int, object: [String: Any])]

  public init(url: URL) throws {
    guard let data = FileManager.default.contents(atPath: url.path) else { throw DataError("\(url.path): file not found") }
    try self.init(data: data, path: url.path)
  }

  /// Reads a file already in memory; `path` names it in errors.
  public init(data: Data, path: String) throws {
    self.path = path
    guard let text = String(data: data, encoding: .utf8) else { throw DataError("\(path): not UTF-8 text") }
    var out: [(Int, [String: Any])] = []
    for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty { continue }
      guard let any = try? JSONSerialization.jsonObject(with: Data(line.utf8)) else {
        throw DataError("\(path):\(i + 1): not valid JSON")
      }
      guard let obj = any as? [String: Any] else { throw DataError("\(path):\(i + 1): expected a JSON object") }
      out.append((i + 1, obj))
    }
    if out.isEmpty { throw DataError("\(path): no records") }
    records = out
  }

  /// JSON `true`/`false` (Foundation hands them over as NSNumber, and on Linux `1 is Bool` holds).
  public static func isBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

  public func string(_ key: String, in obj: [String: Any], line: Int) throws -> String {
    guard let v = obj[key] else { throw DataError("\(path):\(line): missing key '\(key)'") }
    guard let s = v as? String else { throw DataError("\(path):\(line): key '\(key)' should be a string") }
    return s
  }
}

public enum SFTData {
  /// Reads `{"text"}`, `{"prompt","completion"}` or `{"messages":[{"role","content"}…]}` lines. The loss
  /// mask comes from the prompt/completion boundary in the data (the last message is the completion),
  /// never from template markup. Every completion ends with the tokenizer's EOS, which is a target even
  /// when the pad token is the same id. Sequences longer than `maxLength` keep their first tokens.
  public static func load(_ url: URL, tokenizer: any TextTokenizer, template: ChatTemplate, maxLength: Int) throws
    -> [TokenSequence]
  {
    try load(JSONLFile(url: url), tokenizer: tokenizer, template: template, maxLength: maxLength)
  }

  public static func load(_ file: JSONLFile, tokenizer: any TextTokenizer, template: ChatTemplate, maxLength: Int) throws
    -> [TokenSequence]
  {
    var out: [TokenSequence] = []
    for (line, obj) in file.records {
      let (prompt, completion): ([Int], [Int])
      if obj["text"] != nil {
        let text = try file.string("text", in: obj, line: line)
        (prompt, completion) = ([], tokenizer.encode(text, addSpecialTokens: true))
      } else if obj["prompt"] != nil || obj["completion"] != nil {
        let p = try file.string("prompt", in: obj, line: line)
        let c = try file.string("completion", in: obj, line: line)
        if c.isEmpty { throw DataError("\(file.path):\(line): empty completion") }
        (prompt, completion) = (tokenizer.encode(p, addSpecialTokens: true), tokenizer.encode(c, addSpecialTokens: false))
      } else if let raw = obj["messages"] {
        guard let split = chatSplit(try parseMessages(raw, file: file, line: line), tokenizer: tokenizer, template: template) else {
          throw DataError("\(file.path):\(line): the chat template does not extend the prompt with the last message")
        }
        (prompt, completion) = split
      } else {
        throw DataError("\(file.path):\(line): expected a 'text', 'prompt'/'completion' or 'messages' key")
      }
      var example = sequence(prompt: prompt, completion: completion, tokenizer: tokenizer)
      if prompt.isEmpty, !example.targets.isEmpty { example.targets[0] = false }  // the first token has no context to predict it from
      example = example.truncated(to: maxLength)
      if example.targetCount == 0 {
        throw DataError("\(file.path):\(line): no completion tokens fit in the sequence length \(maxLength) "
          + "(the prompt has \(prompt.count) tokens)")
      }
      out.append(example)
    }
    return out
  }

  /// A conversation whose last message is the reply, split into the template's prompt (with the generation
  /// prompt) and the reply's tokens as the template renders them; nil when the template does not extend the
  /// prompt with the reply. The rendered template already carries any BOS marker, so the post-processor adds none.
  static func chatSplit(_ messages: [ChatMessage], tokenizer: any TextTokenizer, template: ChatTemplate) -> ([Int], [Int])? {
    let promptText = template.render(Array(messages.dropLast()), addGenerationPrompt: true)
    let fullText = template.render(messages, addGenerationPrompt: false)
    guard fullText.hasPrefix(promptText) else { return nil }
    return (tokenizer.encode(promptText, addSpecialTokens: false),
            tokenizer.encode(String(fullText.dropFirst(promptText.count)), addSpecialTokens: false))
  }

  /// A training sequence whose completion ends with the tokenizer's EOS (appended unless it is there).
  static func sequence(prompt: [Int], completion: [Int], tokenizer: any TextTokenizer) -> TokenSequence {
    var response = completion
    if let eos = tokenizer.eosTokenId, (prompt + response).last != eos { response.append(eos) }
    return TokenSequence(prompt: prompt, response: response)
  }

  /// A conversation whose last message is the reply, as SFT trains on it from `{"messages"}` data: the
  /// template's prompt, then the reply and EOS as targets. nil when the template does not extend the prompt
  /// with the reply.
  public static func chatSequence(_ messages: [ChatMessage], tokenizer: any TextTokenizer, template: ChatTemplate) -> TokenSequence? {
    chatSplit(messages, tokenizer: tokenizer, template: template).map { sequence(prompt: $0.0, completion: $0.1, tokenizer: tokenizer) }
  }

  static func parseMessages(_ raw: Any, file: JSONLFile, line: Int, endsWithReply: Bool = true) throws -> [ChatMessage] {
    guard let list = raw as? [[String: Any]], !list.isEmpty else {
      throw DataError("\(file.path):\(line): 'messages' should be a non-empty list of {\"role\",\"content\"} objects")
    }
    let messages = try list.enumerated().map { i, m -> ChatMessage in
      guard let role = m["role"] as? String, let content = m["content"] as? String else {
        throw DataError("\(file.path):\(line): messages[\(i)] needs string 'role' and 'content'")
      }
      return ChatMessage(role: role, content: content)
    }
    guard !endsWithReply || (messages.last?.role == "assistant" && !(messages.last?.content.isEmpty ?? true)) else {
      throw DataError("\(file.path):\(line): the last message should be a non-empty assistant reply (the completion)")
    }
    return messages
  }
}

/// A prompt with two completions, the first preferred (`{"prompt","chosen","rejected"}`).
public struct PairExample: Sendable {
  public var chosen: TokenSequence
  public var rejected: TokenSequence
  public init(chosen: TokenSequence, rejected: TokenSequence) {
    self.chosen = chosen
    self.rejected = rejected
  }
}

/// A prompt with K candidate completions and the index a person picked (`{"prompt","candidates","choice"}`).
public struct ChoiceExample: Sendable {
  public var candidates: [TokenSequence]
  public var choice: Int
}

/// A prompt to sample responses for (PPO, GRPO), with its line's other columns for reward functions.
public struct PromptExample: Sendable {
  public var tokens: [Int]
  /// The prompt as the file wrote it.
  public var text: String = ""
  /// The whole JSON object of its line (an `answer` column, …), as JSON.
  public var record: Data = Data("{}".utf8)
  /// "file:line", for messages about this prompt.
  public var source: String = ""

  public init(tokens: [Int], text: String = "", record: Data = Data("{}".utf8), source: String = "") {
    (self.tokens, self.text, self.record, self.source) = (tokens, text, record, source)
  }

  /// The line's columns.
  public var columns: [String: Any] { ((try? JSONSerialization.jsonObject(with: record)) as? [String: Any]) ?? [:] }
}

public enum PreferenceData {
  /// The completion `text` after `prompt` as a training sequence: completion tokens and the final EOS
  /// are targets; the prompt is context. Sequences longer than `maxLength` keep their first tokens.
  static func sequence(prompt: [Int], completion: String, tokenizer: any TextTokenizer, maxLength: Int,
                       file: JSONLFile, line: Int, key: String) throws -> TokenSequence {
    let c = tokenizer.encode(completion, addSpecialTokens: false)
    let e = SFTData.sequence(prompt: prompt, completion: c, tokenizer: tokenizer).truncated(to: maxLength)
    if e.targetCount == 0 {
      throw DataError("\(file.path):\(line): no tokens of '\(key)' fit in the sequence length \(maxLength) "
        + "(the prompt has \(prompt.count) tokens)")
    }
    return e
  }

  static func completion(_ key: String, in obj: [String: Any], file: JSONLFile, line: Int) throws -> String {
    let s = try file.string(key, in: obj, line: line)
    if s.isEmpty { throw DataError("\(file.path):\(line): empty '\(key)'") }
    return s
  }

  /// `{"prompt","chosen","rejected"}` lines.
  public static func loadPairs(_ url: URL, tokenizer: any TextTokenizer, maxLength: Int) throws -> [PairExample] {
    try loadPairs(JSONLFile(url: url), tokenizer: tokenizer, maxLength: maxLength)
  }

  public static func loadPairs(_ file: JSONLFile, tokenizer: any TextTokenizer, maxLength: Int) throws -> [PairExample] {
    try file.records.map { line, obj in
      let prompt = tokenizer.encode(try file.string("prompt", in: obj, line: line), addSpecialTokens: true)
      func seq(_ key: String) throws -> TokenSequence {
        try sequence(prompt: prompt, completion: try completion(key, in: obj, file: file, line: line), tokenizer: tokenizer,
                     maxLength: maxLength, file: file, line: line, key: key)
      }
      return PairExample(chosen: try seq("chosen"), rejected: try seq("rejected"))
    }
  }

  /// `{"prompt","responses":[…]}` lines, at least two responses each (RLP-UML's views of one prompt,
  /// typically the policy's own samples).
  public static func loadMultiView(_ url: URL, tokenizer: any TextTokenizer, maxLength: Int) throws -> [[TokenSequence]] {
    try loadMultiView(JSONLFile(url: url), tokenizer: tokenizer, maxLength: maxLength)
  }

  public static func loadMultiView(_ file: JSONLFile, tokenizer: any TextTokenizer, maxLength: Int) throws -> [[TokenSequence]] {
    try file.records.map { line, obj in
      let prompt = tokenizer.encode(try file.string("prompt", in: obj, line: line), addSpecialTokens: true)
      guard let responses = obj["responses"] as? [String], responses.count >= 2 else {
        throw DataError("\(file.path):\(line): 'responses' should be a list of at least two strings (the views of the prompt)")
      }
      return try responses.enumerated().map { i, text in
        if text.isEmpty { throw DataError("\(file.path):\(line): responses[\(i)] is empty") }
        return try sequence(prompt: prompt, completion: text, tokenizer: tokenizer, maxLength: maxLength, file: file, line: line,
                            key: "responses[\(i)]")
      }
    }
  }

  /// `{"prompt","candidates":[…],"choice":i}` lines; `{"prompt","chosen","rejected"}` lines are read as
  /// K = 2 choices of the first candidate.
  public static func loadChoices(_ url: URL, tokenizer: any TextTokenizer, maxLength: Int) throws -> [ChoiceExample] {
    try loadChoices(JSONLFile(url: url), tokenizer: tokenizer, maxLength: maxLength)
  }

  public static func loadChoices(_ file: JSONLFile, tokenizer: any TextTokenizer, maxLength: Int) throws -> [ChoiceExample] {
    try file.records.map { line, obj in
      let prompt = tokenizer.encode(try file.string("prompt", in: obj, line: line), addSpecialTokens: true)
      func seq(_ text: String, _ key: String) throws -> TokenSequence {
        try sequence(prompt: prompt, completion: text, tokenizer: tokenizer, maxLength: maxLength, file: file, line: line,
                     key: key)
      }
      if obj["candidates"] == nil, obj["chosen"] != nil {
        return ChoiceExample(candidates: [try seq(try completion("chosen", in: obj, file: file, line: line), "chosen"),
                                          try seq(try completion("rejected", in: obj, file: file, line: line), "rejected")],
                             choice: 0)
      }
      guard let raw = obj["candidates"] else { throw DataError("\(file.path):\(line): missing key 'candidates'") }
      guard let texts = raw as? [String], texts.count >= 2 else {
        throw DataError("\(file.path):\(line): 'candidates' should be a list of at least two strings")
      }
      if let i = texts.firstIndex(of: "") { throw DataError("\(file.path):\(line): candidates[\(i)] is empty") }
      guard let choiceValue = obj["choice"] else { throw DataError("\(file.path):\(line): missing key 'choice'") }
      guard let n = choiceValue as? NSNumber, !JSONLFile.isBoolean(n), n.doubleValue == n.doubleValue.rounded() else {
        throw DataError("\(file.path):\(line): 'choice' should be an integer index")
      }
      let choice = n.intValue
      guard (0..<texts.count).contains(choice) else {
        throw DataError("\(file.path):\(line): choice \(choice) is out of range for \(texts.count) candidates")
      }
      return ChoiceExample(candidates: try texts.enumerated().map { try seq($1, "candidates[\($0)]") }, choice: choice)
    }
  }

  /// `{"prompt"}` lines (other keys are ignored).
  /// Reads `{"prompt", …}` lines. A prompt is text, or (TRL's conversational format) a list of
  /// `{"role","content"}` messages rendered with the chat template up to the assistant's turn.
  public static func loadPrompts(_ url: URL, tokenizer: any TextTokenizer, template: ChatTemplate = .plain,
                                 maxLength: Int) throws -> [PromptExample] {
    try loadPrompts(JSONLFile(url: url), tokenizer: tokenizer, template: template, maxLength: maxLength)
  }

  public static func loadPrompts(_ file: JSONLFile, tokenizer: any TextTokenizer, template: ChatTemplate = .plain,
                                 maxLength: Int) throws -> [PromptExample] {
    try file.records.map { line, obj in
      let text: String, p: [Int]
      if let raw = obj["prompt"], !(raw is String) {
        let messages = try SFTData.parseMessages(raw, file: file, line: line, endsWithReply: false)
        text = template.render(messages, addGenerationPrompt: true)
        // The rendered template already carries any BOS marker, so the post-processor adds none.
        p = tokenizer.encode(text, addSpecialTokens: false)
      } else {
        text = try file.string("prompt", in: obj, line: line)
        p = tokenizer.encode(text, addSpecialTokens: true)
      }
      if p.isEmpty { throw DataError("\(file.path):\(line): empty prompt") }
      if p.count >= maxLength {
        throw DataError("\(file.path):\(line): the prompt has \(p.count) tokens, leaving no room to respond within \(maxLength)")
      }
      let record = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data("{}".utf8)
      return PromptExample(tokens: p, text: text, record: record, source: "\(file.path):\(line)")
    }
  }

}
