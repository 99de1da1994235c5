import Foundation
import Hummingbird
import LM
import NIOCore

/// How `shatter serve` runs.
public struct ServerOptions: Sendable {
  public var host = "127.0.0.1"
  public var port = 8000
  /// With a key, `/v1/*` needs `Authorization: Bearer <key>`.
  public var apiKey: String?
  /// The id `/v1/models` lists and responses carry.
  public var modelName = "model"
  /// Largest request body in bytes; larger ones get 413.
  public var maxBodyBytes = 1 << 20
  /// `max_tokens` when a request gives none (capped by the context).
  public var defaultMaxTokens = 256
  /// Seconds a request body may take to arrive; a slower one gets 408 and its connection's input is closed.
  public var bodyTimeout = 15.0
  /// Seconds a connection may stay silent — between requests, or while its request is being read — before
  /// it is closed (a response being written does not count as idle).
  public var idleTimeout = 30.0
  public init() {}
}

/// Hummingbird's request context plus the request's connection, so that a body arriving too slowly can
/// have that connection's input closed.
struct ServeContext: RequestContext {
  var coreContext: CoreRequestContextStorage
  let channel: any Channel

  init(source: ApplicationRequestContextSource) {
    coreContext = .init(source: source)
    channel = source.channel
  }
}

/// The OpenAI-compatible endpoints over a `GenerationEngine`. Handlers only decode, validate and stream;
/// decoding happens on the engine's worker thread, so one slow completion never blocks another's I/O.
public final class OpenAIServer: Sendable {
  public let engine: GenerationEngine
  public let options: ServerOptions
  let chatTemplate: ChatTemplate
  let created = Int(Date().timeIntervalSince1970)

  public init(engine: GenerationEngine, chatTemplate: ChatTemplate, options: ServerOptions) {
    self.engine = engine
    self.chatTemplate = chatTemplate
    self.options = options
  }

  /// Serves until SIGINT/SIGTERM; `onListening` gets the bound port (useful with port 0).
  public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
    let router = Router(context: ServeContext.self)
    router.get("/health") { request, _ in await self.logged(request) { _ in self.health() } }
    router.get("/v1/models") { request, _ in await self.logged(request) { _ in try self.authorize(request); return self.models() } }
    router.post("/v1/chat/completions") { request, context in
      await self.logged(request) { stats in try await self.chatCompletions(request, context, stats: stats) }
    }
    router.post("/v1/completions") { request, context in
      await self.logged(request) { stats in try await self.completions(request, context, stats: stats) }
    }
    let app = Application(
      router: router,
      server: .http1(configuration: .init(idleTimeout: .nanoseconds(Int64(options.idleTimeout * 1e9)))),
      configuration: .init(address: .hostname(options.host, port: options.port), serverName: "shatter"),
      onServerRunning: { channel in onListening(channel.localAddress?.port ?? self.options.port) }
    )
    try await app.runService()
    engine.shutdown()
  }

  // MARK: - Endpoints

  func health() -> Response {
    let s = engine.stats
    return json(200, [
      "status": "ok", "model": options.modelName, "context_length": engine.contextLength, "max_batch": engine.maxBatch,
      "completed": s.completed, "decode_steps": s.decodeSteps, "prefills": s.prefills, "largest_batch": s.largestBatch,
      "joined_running": s.joinedRunning, "cancelled": s.cancelled, "running": s.running, "queued": s.queued,
    ])
  }

  func models() -> Response { json(200, OpenAIShapes.models([options.modelName], created: created)) }

  func chatCompletions(_ request: Request, _ context: ServeContext, stats: RequestStats) async throws -> Response {
    try authorize(request)
    let req = try RequestDecoder.chat(try await body(request, context))
    let text = chatTemplate.render(req.messages, addGenerationPrompt: true)
    let prompt = engine.tokenizer.encode(text, addSpecialTokens: false)
    let job = try makeJob(prompt, req.parameters)
    let id = "chatcmpl-\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(24))"
    let model = req.parameters.model ?? options.modelName
    let submission = engine.start(job)
    let events = submission.events
    stats.set(prompt.count, 0)
    if !req.parameters.stream {
      let (text, finish, p, c) = await collect(submission)
      stats.set(p, c)
      return json(200, OpenAIShapes.chatCompletion(id: id, created: created, model: model, text: text, finish: finish,
                                                   promptTokens: p, completionTokens: c))
    }
    let includeUsage = req.parameters.includeUsageInStream
    let created = self.created
    return stream(stats, submission) { write in
      try await write(SSE.event(OpenAIShapes.chatChunk(id: id, created: created, model: model,
                                                       delta: ["role": "assistant", "content": ""], finish: nil)))
      for await event in events {
        switch event {
        case .text(let piece):
          try await write(SSE.event(OpenAIShapes.chatChunk(id: id, created: created, model: model, delta: ["content": piece], finish: nil)))
        case .finished(let reason, let p, let c):
          stats.set(p, c)
          try await write(SSE.event(OpenAIShapes.chatChunk(id: id, created: created, model: model, delta: [:], finish: reason)))
          if includeUsage {
            try await write(SSE.event(OpenAIShapes.chatChunk(id: id, created: created, model: model, delta: nil, finish: nil,
                                                             usage: OpenAIShapes.usage(prompt: p, completion: c))))
          }
        }
      }
    }
  }

  func completions(_ request: Request, _ context: ServeContext, stats: RequestStats) async throws -> Response {
    try authorize(request)
    let req = try RequestDecoder.completion(try await body(request, context))
    let prompt: [Int]
    switch req.prompt {
    case .text(let s): prompt = engine.tokenizer.encode(s, addSpecialTokens: true)
    case .tokens(let ids):
      if let bad = ids.first(where: { $0 < 0 || $0 >= engine.vocabularySize }) {
        throw APIError.invalid("prompt", "'prompt' contains token id \(bad), outside the vocabulary 0..<\(engine.vocabularySize)")
      }
      prompt = ids
    }
    let job = try makeJob(prompt, req.parameters)
    let id = "cmpl-\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(24))"
    let model = req.parameters.model ?? options.modelName
    let submission = engine.start(job)
    let events = submission.events
    stats.set(prompt.count, 0)
    let created = self.created
    if !req.parameters.stream {
      let (text, finish, p, c) = await collect(submission)
      stats.set(p, c)
      return json(200, OpenAIShapes.completion(id: id, created: created, model: model, text: text, finish: finish,
                                               usage: OpenAIShapes.usage(prompt: p, completion: c)))
    }
    let includeUsage = req.parameters.includeUsageInStream
    return stream(stats, submission) { write in
      for await event in events {
        switch event {
        case .text(let piece):
          try await write(SSE.event(OpenAIShapes.completion(id: id, created: created, model: model, text: piece, finish: nil, usage: nil)))
        case .finished(let reason, let p, let c):
          stats.set(p, c)
          try await write(SSE.event(OpenAIShapes.completion(id: id, created: created, model: model, text: "", finish: reason, usage: nil)))
          if includeUsage {
            var chunk = OpenAIShapes.completion(id: id, created: created, model: model, text: "", finish: nil,
                                                usage: OpenAIShapes.usage(prompt: p, completion: c))
            chunk["choices"] = [Any]()
            try await write(SSE.event(chunk))
          }
        }
      }
    }
  }

  // MARK: - Pieces

  /// The job for a prompt, or a 400 when it does not fit the context.
  func makeJob(_ prompt: [Int], _ p: GenerationParameters) throws -> GenerationJob {
    // Text can encode to ids the model has no rows for when tokenizer and checkpoint disagree.
    if let bad = prompt.first(where: { $0 < 0 || $0 >= engine.vocabularySize }) {
      throw APIError.invalid("prompt", "the prompt contains token id \(bad), outside the model's vocabulary 0..<\(engine.vocabularySize)")
    }
    return try Self.makeJob(prompt, p, contextLength: engine.contextLength, defaultMaxTokens: options.defaultMaxTokens)
  }

  static func makeJob(_ prompt: [Int], _ p: GenerationParameters, contextLength: Int, defaultMaxTokens: Int) throws -> GenerationJob {
    guard !prompt.isEmpty else { throw APIError.invalid("prompt", "the prompt encodes to no tokens") }
    if prompt.count >= contextLength {
      throw APIError(status: 400, message: "This model's maximum context length is \(contextLength) tokens. However, your "
        + "prompt has \(prompt.count) tokens, which leaves no room for a completion. Please reduce the length of the prompt.",
        param: "messages", code: "context_length_exceeded")
    }
    let room = contextLength - prompt.count
    let maxTokens = p.maxTokens ?? min(defaultMaxTokens, room)
    if maxTokens > room {
      throw APIError(status: 400, message: "This model's maximum context length is \(contextLength) tokens. However, you "
        + "requested \(prompt.count + maxTokens) tokens (\(prompt.count) in the prompt, \(maxTokens) for the completion). "
        + "Please reduce the length of the prompt or max_tokens.", param: "max_tokens", code: "context_length_exceeded")
    }
    return GenerationJob(prompt: prompt, maxTokens: maxTokens, temperature: p.temperature, topP: p.topP, seed: p.seed, stop: p.stop)
  }

  func authorize(_ request: Request) throws {
    guard let key = options.apiKey else { return }
    guard let header = request.headers[.authorization] else {
      throw APIError(status: 401, message: "Missing API key: send 'Authorization: Bearer <key>'.", type: "invalid_request_error",
                     code: "invalid_api_key")
    }
    guard header == "Bearer \(key)" else {
      throw APIError(status: 401, message: "Incorrect API key provided.", type: "invalid_request_error", code: "invalid_api_key")
    }
  }

  /// A non-streamed job's events gathered; a cancelled request task (the server shutting down) ends the job.
  func collect(_ submission: Submission) async -> (text: String, finish: FinishReason, promptTokens: Int, completionTokens: Int) {
    await withTaskCancellationHandler { await GenerationEngine.collect(submission.events) } onCancel: { submission.cancel() }
  }

  /// The request body, at most `maxBodyBytes`; a larger one is read to its end (so the client sees the
  /// answer rather than a reset connection) and refused with 413. A body still arriving after
  /// `bodyTimeout` seconds (a slow or stalled client) gets 408, and the connection's input is closed, so
  /// the slow client holds nothing beyond that deadline.
  func body(_ request: Request, _ context: ServeContext) async throws -> Data {
    let limit = options.maxBodyBytes
    if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > 64 * limit {
      throw tooLarge(declared)
    }
    let race = BodyRace()
    let channel = context.channel
    let timeout = options.bodyTimeout
    let timer = Task {
      try await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
      if race.timeOut() { channel.close(mode: .input, promise: nil) }
    }
    defer { timer.cancel() }
    var data = Data()
    var total = 0
    do {
      for try await chunk in request.body {
        total += chunk.readableBytes
        if total <= limit { data.append(contentsOf: chunk.readableBytesView) }
        if total > 64 * limit { break }
      }
    } catch {
      if !race.arrived() { throw bodyTimedOut(total) }
      throw error
    }
    if !race.arrived() { throw bodyTimedOut(total) }
    if total > limit { throw tooLarge(total) }
    return data
  }

  func bodyTimedOut(_ received: Int) -> APIError {
    APIError(status: 408, message: "The request body did not arrive within \(options.bodyTimeout) seconds (\(received) bytes "
      + "received); the connection's input is closed (--body-timeout).", param: "body", code: "request_timeout")
  }

  func tooLarge(_ size: Int) -> APIError {
    APIError(status: 413, message: "The request body has \(size) bytes, more than this server's limit of \(options.maxBodyBytes) "
      + "bytes (--max-body).", param: "body", code: "request_too_large")
  }

  func json(_ status: Int, _ object: [String: Any]) -> Response {
    var buffer = ByteBuffer()
    buffer.writeString(JSONText.encode(object))
    return Response(status: .init(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
  }

  /// An SSE response whose body `produce` writes event by event; ends with `data: [DONE]`. A write that
  /// fails (the client went away mid-stream) cancels the job, whose row then leaves the batch before the
  /// next decoding step.
  func stream(_ stats: RequestStats, _ submission: Submission,
              _ produce: @escaping @Sendable (_ write: (String) async throws -> Void) async throws -> Void) -> Response {
    stats.streaming = true
    let body = ResponseBody { writer in
      defer { stats.finish() }
      do {
        try await withTaskCancellationHandler {
          try await produce { text in
            var b = ByteBuffer()
            b.writeString(text)
            try await writer.write(b)
          }
        } onCancel: { submission.cancel() }
        var b = ByteBuffer()
        b.writeString(SSE.done)
        try await writer.write(b)
        try await writer.finish(nil)
      } catch {
        submission.cancel()
        stats.status = 499  // the client went away mid-stream
        throw error
      }
    }
    return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
  }

  /// Runs a handler, turns thrown `APIError`s into OpenAI error responses and logs one line per request
  /// (for streams, when the stream ends).
  func logged(_ request: Request, _ handler: (RequestStats) async throws -> Response) async -> Response {
    let stats = RequestStats(method: request.method.rawValue, path: request.uri.path)
    var response: Response
    do {
      response = try await handler(stats)
    } catch let e as APIError {
      response = json(e.status, e.json)
    } catch {
      let e = APIError(status: 500, message: "internal error: \(error)", type: "server_error")
      response = json(500, e.json)
    }
    stats.status = Int(response.status.code)
    if !stats.streaming { stats.finish() }
    return response
  }
}

/// Whether a request body arrived before its deadline: the first of `arrived` and `timeOut` wins.
final class BodyRace: @unchecked Sendable {
  private let lock = NSLock()
  private var outcome: Bool?

  /// The body is complete; false when the deadline passed first.
  func arrived() -> Bool { lock.withLock { if outcome == nil { outcome = true }; return outcome! } }
  /// The deadline passed; false when the body was complete first.
  func timeOut() -> Bool { lock.withLock { if outcome == nil { outcome = false }; return !outcome! } }
}

/// What the request log line needs; filled while the request runs.
final class RequestStats: @unchecked Sendable {
  let method: String
  let path: String
  let start = Date()
  private let lock = NSLock()
  private var _status = 0
  private var promptTokens = 0
  private var completionTokens = 0
  private var _streaming = false
  private var logged = false

  init(method: String, path: String) {
    self.method = method
    self.path = path
  }

  var status: Int {
    get { lock.withLock { _status } }
    set { lock.withLock { _status = newValue } }
  }
  var streaming: Bool {
    get { lock.withLock { _streaming } }
    set { lock.withLock { _streaming = newValue } }
  }

  func set(_ prompt: Int, _ completion: Int) { lock.withLock { (promptTokens, completionTokens) = (prompt, completion) } }

  /// Writes the line once: `POST /v1/chat/completions 200 tokens=12+30 ms=812`.
  func finish() {
    let line: String? = lock.withLock {
      if logged { return nil }
      logged = true
      let ms = Int(Date().timeIntervalSince(start) * 1000)
      return "\(method) \(path) \(_status) tokens=\(promptTokens)+\(completionTokens) ms=\(ms)\n"
    }
    if let line { FileHandle.standardError.write(Data(line.utf8)) }
  }
}
