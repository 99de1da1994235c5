import Foundation
import LM

/// An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with an HTTP status.
public struct APIError: Error, Equatable, CustomStringConvertible {
  public var status: Int
  public var message: String
  public var type: String
  public var param: String?
  public var code: String?

  public init(status: Int, message: String, type: String = "invalid_request_error", param: String? = nil, code: String? = nil) {
    self.status = status
    self.message = message
    self.type = type
    self.param = param
    self.code = code
  }

  public var description: String { "\(status) \(message)" }

  static func invalid(_ param: String, _ message: String, code: String? = nil) -> APIError {
    APIError(status: 400, message: message, param: param, code: code)
  }

  /// The response body.
  public var json: [String: Any] {
    ["error": ["message": message, "type": type, "param": param ?? NSNull(), "code": code ?? NSNull()] as [String: Any]]
  }
}

/// What every generation request carries besides its prompt.
public struct GenerationParameters: Sendable, Equatable {
  public var model: String?
  /// 0 is greedy (OpenAI's default is 1).
  public var temperature: Double = 1
  public var topP: Double = 1
  public var maxTokens: Int?
  public var stop: [String] = []
  public var seed: UInt64?
  public var stream = false
  public var includeUsageInStream = false
}

/// `POST /v1/chat/completions`, decoded and checked.
public struct ChatCompletionRequest: Sendable, Equatable {
  public var messages: [ChatMessage]
  public var parameters: GenerationParameters
}

/// `POST /v1/completions`, decoded and checked. The prompt is text or token ids.
public struct CompletionRequest: Sendable, Equatable {
  public enum Prompt: Sendable, Equatable {
    case text(String)
    case tokens([Int])
  }
  public var prompt: Prompt
  public var parameters: GenerationParameters
}

/// A JSON document as parsed, keeping booleans apart from numbers (Foundation's JSONSerialization does not
/// on every platform).
public indirect enum JSONValue: Decodable, Equatable, Sendable {
  case null
  case bool(Bool)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  public init(from decoder: any Decoder) throws {
    let c = try decoder.singleValueContainer()
    if c.decodeNil() {
      self = .null
    } else if let b = try? c.decode(Bool.self) {
      self = .bool(b)
    } else if let d = try? c.decode(Double.self) {
      self = .number(d)
    } else if let s = try? c.decode(String.self) {
      self = .string(s)
    } else if let a = try? c.decode([JSONValue].self) {
      self = .array(a)
    } else {
      self = .object(try c.decode([String: JSONValue].self))
    }
  }

  var kind: String {
    switch self {
    case .null: return "null"
    case .bool: return "a boolean"
    case .number: return "a number"
    case .string: return "a string"
    case .array: return "an array"
    case .object: return "an object"
    }
  }

  var string: String? { if case .string(let s) = self { return s } else { return nil } }
  var integer: Int? {
    if case .number(let d) = self, d.isFinite, d == d.rounded(), Swift.abs(d) < 9.0e15 { return Int(d) }
    return nil
  }
}

/// Request bodies → typed requests. Every problem is a 400 naming the field (`param`) and what was expected;
/// unknown fields are ignored, as clients send options this server has no use for.
public enum RequestDecoder {
  static func object(_ body: Data) throws -> [String: JSONValue] {
    guard !body.isEmpty else { throw APIError.invalid("body", "the request body is empty; expected a JSON object") }
    let parsed: JSONValue
    do {
      parsed = try JSONDecoder().decode(JSONValue.self, from: body)
    } catch {
      throw APIError(status: 400, message: "the request body is not valid JSON: \(describe(error))", param: "body")
    }
    guard case .object(let object) = parsed else {
      throw APIError.invalid("body", "the request body must be a JSON object, not \(parsed.kind)")
    }
    return object
  }

  static func describe(_ error: any Error) -> String {
    if case DecodingError.dataCorrupted(let context) = error {
      return context.underlyingError.map { "\($0.localizedDescription)" } ?? context.debugDescription
    }
    return "\(error)"
  }

  public static func chat(_ body: Data) throws -> ChatCompletionRequest {
    let o = try object(body)
    guard let raw = o["messages"], raw != .null else {
      throw APIError.invalid("messages", "'messages' is required", code: "missing_required_parameter")
    }
    guard case .array(let list) = raw else { throw APIError.invalid("messages", "'messages' must be an array, not \(raw.kind)") }
    guard !list.isEmpty else { throw APIError.invalid("messages", "'messages' must contain at least one message") }
    var messages: [ChatMessage] = []
    for (i, item) in list.enumerated() {
      let p = "messages[\(i)]"
      guard case .object(let m) = item else { throw APIError.invalid(p, "'\(p)' must be an object, not \(item.kind)") }
      guard let role = m["role"]?.string else { throw APIError.invalid("\(p).role", "'\(p).role' must be a string") }
      guard ["system", "developer", "user", "assistant", "tool"].contains(role) else {
        throw APIError.invalid("\(p).role", "'\(p).role' is '\(role)'; expected one of system, developer, user, assistant, tool")
      }
      messages.append(ChatMessage(role: role == "developer" ? "system" : role, content: try content(m["content"], param: "\(p).content")))
    }
    return ChatCompletionRequest(messages: messages, parameters: try parameters(o))
  }

  public static func completion(_ body: Data) throws -> CompletionRequest {
    let o = try object(body)
    guard let raw = o["prompt"], raw != .null else {
      throw APIError.invalid("prompt", "'prompt' is required", code: "missing_required_parameter")
    }
    let prompt: CompletionRequest.Prompt
    switch raw {
    case .string(let s): prompt = .text(s)
    case .array(let list) where list.count == 1 && list[0].string != nil: prompt = .text(list[0].string ?? "")
    case .array(let list) where !list.isEmpty && list.allSatisfy({ $0.integer != nil }):
      prompt = .tokens(list.compactMap(\.integer))
    case .array(let list) where list.count > 1 && list.allSatisfy({ $0.string != nil }):
      throw APIError.invalid("prompt", "'prompt' has \(list.count) strings; this server takes one prompt per request")
    default:
      throw APIError.invalid("prompt", "'prompt' must be a string, an array with one string, or an array of token ids")
    }
    if o["echo"] == .bool(true) { throw APIError.invalid("echo", "'echo' is not supported") }
    if let suffix = o["suffix"], suffix != .null { throw APIError.invalid("suffix", "'suffix' is not supported") }
    return CompletionRequest(prompt: prompt, parameters: try parameters(o))
  }

  static func content(_ raw: JSONValue?, param: String) throws -> String {
    switch raw {
    case .string(let s)?: return s
    case nil, .null?: return ""
    case .array(let parts)?:
      // The array form: text parts only ({"type": "text", "text": …}).
      var out = ""
      for (j, part) in parts.enumerated() {
        guard case .object(let d) = part, d["type"] == .string("text"), let t = d["text"]?.string else {
          throw APIError.invalid("\(param)[\(j)]", "'\(param)[\(j)]' must be {\"type\": \"text\", \"text\": …}; other content types are not supported")
        }
        out += t
      }
      return out
    case let other?:
      throw APIError.invalid(param, "'\(param)' must be a string or an array of text parts, not \(other.kind)")
    }
  }

  static func parameters(_ o: [String: JSONValue]) throws -> GenerationParameters {
    var p = GenerationParameters()
    if let m = o["model"], m != .null {
      guard let s = m.string else { throw APIError.invalid("model", "'model' must be a string, not \(m.kind)") }
      p.model = s
    }
    if let t = try number(o, "temperature") {
      guard t >= 0, t <= 2 else { throw APIError.invalid("temperature", "'temperature' is \(t); expected a number from 0 to 2") }
      p.temperature = t
    }
    if let t = try number(o, "top_p") {
      guard t > 0, t <= 1 else { throw APIError.invalid("top_p", "'top_p' is \(t); expected a number in (0, 1]") }
      p.topP = t
    }
    for key in ["max_tokens", "max_completion_tokens"] {
      if let n = try integer(o, key) {
        guard n >= 1 else { throw APIError.invalid(key, "'\(key)' is \(n); expected an integer ≥ 1") }
        p.maxTokens = n
      }
    }
    if let n = try integer(o, "n"), n != 1 {
      throw APIError.invalid("n", "'n' is \(n); this server returns one choice per request (n = 1)")
    }
    if let seed = try integer(o, "seed") { p.seed = UInt64(bitPattern: Int64(seed)) }
    switch o["stop"] {
    case nil, .null?: break
    case .string(let s)?: p.stop = [s]
    case .array(let list)? where list.count <= 4 && list.allSatisfy({ $0.string != nil }): p.stop = list.compactMap(\.string)
    default: throw APIError.invalid("stop", "'stop' must be a string or an array of at most 4 strings")
    }
    if let s = o["stream"], s != .null {
      guard case .bool(let b) = s else { throw APIError.invalid("stream", "'stream' must be true or false, not \(s.kind)") }
      p.stream = b
    }
    if let so = o["stream_options"], so != .null {
      guard case .object(let d) = so else { throw APIError.invalid("stream_options", "'stream_options' must be an object") }
      if let u = d["include_usage"], u != .null {
        guard case .bool(let b) = u else {
          throw APIError.invalid("stream_options.include_usage", "'stream_options.include_usage' must be true or false")
        }
        p.includeUsageInStream = b
      }
    }
    for key in ["presence_penalty", "frequency_penalty"] {
      if let v = try number(o, key), v != 0 { throw APIError.invalid(key, "'\(key)' is not supported (only 0)") }
    }
    if let lp = o["logprobs"], lp == .bool(true) || (lp.integer ?? 0) > 0 {
      throw APIError.invalid("logprobs", "'logprobs' is not supported")
    }
    return p
  }

  static func number(_ o: [String: JSONValue], _ key: String) throws -> Double? {
    guard let v = o[key], v != .null else { return nil }
    guard case .number(let d) = v, d.isFinite else { throw APIError.invalid(key, "'\(key)' must be a number, not \(v.kind)") }
    return d
  }

  static func integer(_ o: [String: JSONValue], _ key: String) throws -> Int? {
    guard let v = o[key], v != .null else { return nil }
    guard let n = v.integer else { throw APIError.invalid(key, "'\(key)' must be an integer, not \(v.kind)") }
    return n
  }
}
