import AsyncHTTPClient
import Foundation
import LM
import NIOCore

/// An OpenAI-compatible chat server (`shatter serve`, llama.cpp's server, vLLM, Ollama, OpenAI): POSTs
/// `{baseURL}/chat/completions` and returns `choices[0].message.content`. 429 and 5xx answers and connection
/// failures are retried with exponential back-off (1 s, 2 s, 4 s, … up to `retries` times, or the server's
/// `Retry-After`); other answers fail at once with the server's message.
public struct OpenAIChatBackend: ChatBackend {
  public let baseURL: String
  public let model: String
  public let apiKey: String?
  public let timeout: TimeInterval
  public let retries: Int
  /// First back-off in seconds (doubled each retry); tests make it small.
  public let backoff: TimeInterval
  public var name: String { "\(baseURL) \(model)" }

  /// - baseURL: up to and including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
  public init(baseURL: String, model: String, apiKey: String? = nil, timeout: TimeInterval = 120, retries: Int = 4,
              backoff: TimeInterval = 1) {
    var base = baseURL
    while base.hasSuffix("/") { base.removeLast() }
    self.baseURL = base
    self.model = model
    self.apiKey = apiKey
    self.timeout = timeout
    self.retries = retries
    self.backoff = backoff
  }

  /// The request body, as the OpenAI API spells it.
  func body(_ messages: [ChatMessage], _ options: ChatOptions) throws -> Data {
    var object: [String: Any] = [
      "model": model, "temperature": options.temperature, "max_tokens": options.maxTokens,
      "messages": messages.map { ["role": $0.role, "content": $0.content] },
    ]
    if !options.stop.isEmpty { object["stop"] = options.stop }
    if let seed = options.seed { object["seed"] = Int(truncatingIfNeeded: seed & 0x7FFF_FFFF) }
    return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
  }

  /// The reply text of a chat-completion response body.
  static func content(of data: Data) throws -> String {
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let choices = object["choices"] as? [[String: Any]], let first = choices.first,
      let message = first["message"] as? [String: Any]
    else { throw ChatBackendError("the server's answer is not a chat completion: \(String(decoding: data.prefix(300), as: UTF8.self))") }
    return message["content"] as? String ?? ""
  }

  public func reply(to messages: [ChatMessage], options: ChatOptions) async throws -> String {
    let url = baseURL + "/chat/completions"
    let payload = try body(messages, options)
    var attempt = 0
    while true {
      var request = HTTPClientRequest(url: url)
      request.method = .POST
      request.headers.add(name: "Content-Type", value: "application/json")
      if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
      request.body = .bytes(ByteBuffer(bytes: payload))
      var wait = backoff * Double(1 << min(attempt, 16))
      var failure = ""
      do {
        let response = try await HTTPClient.shared.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        let data = Data(bytes.readableBytesView)
        let status = Int(response.status.code)
        if status == 200 { return try Self.content(of: data) }
        let text = String(decoding: data.prefix(500), as: UTF8.self)
        failure = "\(url) answered \(status): \(text)"
        guard status == 429 || status >= 500 else { throw ChatBackendError(failure) }
        if let after = response.headers.first(name: "Retry-After").flatMap(Double.init) { wait = after }
      } catch let e as ChatBackendError {
        throw e
      } catch {
        failure = "\(url): \(error)"
      }
      attempt += 1
      if attempt > retries { throw ChatBackendError("\(failure) (after \(retries) retries)") }
      try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
    }
  }
}
