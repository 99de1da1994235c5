import Foundation
import LM
import Testing
import Torch
@testable import Serve

func body(_ s: String) -> Data { Data(s.utf8) }

func expectAPIError(_ param: String?, status: Int = 400, _ f: () throws -> Void) {
  do {
    try f()
    Issue.record("expected an error for \(param ?? "nil")")
  } catch let e as APIError {
    #expect(e.status == status)
    #expect(e.param == param, "\(e.message)")
  } catch {
    Issue.record("unexpected error \(error)")
  }
}

@Suite struct RequestDecodingTests {
  @Test func chatRequestWithEveryOption() throws {
    let r = try RequestDecoder.chat(body("""
      {"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
       "temperature":0,"top_p":0.5,"max_tokens":7,"stop":["x","y"],"seed":42,"n":1,"stream":true,
       "stream_options":{"include_usage":true},"user":"ignored","presence_penalty":0}
      """))
    #expect(r.messages == [ChatMessage(role: "system", content: "S"), ChatMessage(role: "user", content: "ab")])
    let p = r.parameters
    #expect(p.model == "m" && p.temperature == 0 && p.topP == 0.5 && p.maxTokens == 7 && p.stop == ["x", "y"])
    #expect(p.seed == 42 && p.stream && p.includeUsageInStream)
  }

  @Test func defaultsAndStopAsString() throws {
    let r = try RequestDecoder.chat(body(#"{"messages":[{"role":"user","content":"hi"}],"stop":"\n"}"#))
    #expect(r.parameters.temperature == 1 && r.parameters.topP == 1 && r.parameters.maxTokens == nil && !r.parameters.stream)
    #expect(r.parameters.stop == ["\n"])
  }

  @Test func badChatRequestsName400Fields() {
    expectAPIError("body") { _ = try RequestDecoder.chat(body("{not json")) }
    expectAPIError("body") { _ = try RequestDecoder.chat(body("[1]")) }
    expectAPIError("body") { _ = try RequestDecoder.chat(Data()) }
    expectAPIError("messages") { _ = try RequestDecoder.chat(body("{}")) }
    expectAPIError("messages") { _ = try RequestDecoder.chat(body(#"{"messages":[]}"#)) }
    expectAPIError("messages") { _ = try RequestDecoder.chat(body(#"{"messages":"hi"}"#)) }
    expectAPIError("messages[0].role") { _ = try RequestDecoder.chat(body(#"{"messages":[{"role":"wizard","content":"x"}]}"#)) }
    expectAPIError("messages[0].content") { _ = try RequestDecoder.chat(body(#"{"messages":[{"role":"user","content":5}]}"#)) }
    let ok = #""messages":[{"role":"user","content":"x"}]"#
    expectAPIError("temperature") { _ = try RequestDecoder.chat(body("{\(ok),\"temperature\":3}")) }
    expectAPIError("temperature") { _ = try RequestDecoder.chat(body("{\(ok),\"temperature\":\"hot\"}")) }
    expectAPIError("top_p") { _ = try RequestDecoder.chat(body("{\(ok),\"top_p\":0}")) }
    expectAPIError("max_tokens") { _ = try RequestDecoder.chat(body("{\(ok),\"max_tokens\":0}")) }
    expectAPIError("max_tokens") { _ = try RequestDecoder.chat(body("{\(ok),\"max_tokens\":1.5}")) }
    expectAPIError("n") { _ = try RequestDecoder.chat(body("{\(ok),\"n\":2}")) }
    expectAPIError("stop") { _ = try RequestDecoder.chat(body("{\(ok),\"stop\":[1]}")) }
    expectAPIError("stop") { _ = try RequestDecoder.chat(body("{\(ok),\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}")) }
    expectAPIError("stream") { _ = try RequestDecoder.chat(body("{\(ok),\"stream\":1}")) }
    expectAPIError("model") { _ = try RequestDecoder.chat(body("{\(ok),\"model\":3}")) }
  }

  @Test func completionPrompts() throws {
    #expect(try RequestDecoder.completion(body(#"{"prompt":"abc"}"#)).prompt == .text("abc"))
    #expect(try RequestDecoder.completion(body(#"{"prompt":["abc"]}"#)).prompt == .text("abc"))
    #expect(try RequestDecoder.completion(body(#"{"prompt":[1,2,3]}"#)).prompt == .tokens([1, 2, 3]))
    expectAPIError("prompt") { _ = try RequestDecoder.completion(body(#"{"prompt":["a","b"]}"#)) }
    expectAPIError("prompt") { _ = try RequestDecoder.completion(body(#"{"prompt":true}"#)) }
    expectAPIError("prompt") { _ = try RequestDecoder.completion(body(#"{}"#)) }
    expectAPIError("echo") { _ = try RequestDecoder.completion(body(#"{"prompt":"a","echo":true}"#)) }
  }

  @Test func contextLimitNamesTheContextLength() throws {
    var p = GenerationParameters()
    #expect(try OpenAIServer.makeJob([1, 2, 3], p, contextLength: 10, defaultMaxTokens: 256).maxTokens == 7)
    do {
      _ = try OpenAIServer.makeJob(Array(repeating: 1, count: 10), p, contextLength: 10, defaultMaxTokens: 4)
      Issue.record("expected a context error")
    } catch let e as APIError {
      #expect(e.status == 400 && e.code == "context_length_exceeded" && e.message.contains("maximum context length is 10 tokens"))
    }
    p.maxTokens = 8
    expectAPIError("max_tokens") { _ = try OpenAIServer.makeJob([1, 2, 3], p, contextLength: 10, defaultMaxTokens: 4) }
  }

  @Test func errorObjectHasOpenAIsShape() throws {
    let e = APIError(status: 400, message: "bad", param: "top_p")
    let data = try JSONSerialization.data(withJSONObject: e.json)
    let o = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let inner = try #require(o["error"] as? [String: Any])
    #expect(inner["message"] as? String == "bad" && inner["type"] as? String == "invalid_request_error")
    #expect(inner["param"] as? String == "top_p" && inner["code"] is NSNull)
  }
}

@Suite struct SSETests {
  @Test func framingAndParsing() throws {
    let chunk = OpenAIShapes.chatChunk(id: "c1", created: 5, model: "m", delta: ["content": "hi\nthere"], finish: nil)
    let event = SSE.event(chunk)
    #expect(event.hasPrefix("data: {") && event.hasSuffix("}\n\n"))
    #expect(!event.dropLast(2).contains("\n"), "the JSON must stay on one line")
    let stream = event + SSE.event(OpenAIShapes.chatChunk(id: "c1", created: 5, model: "m", delta: [:], finish: .stop)) + SSE.done
    let payloads = SSE.payloads(stream)
    #expect(payloads.count == 3 && payloads[2] == "[DONE]")
    let first = try #require(try JSONSerialization.jsonObject(with: Data(payloads[0].utf8)) as? [String: Any])
    #expect(first["object"] as? String == "chat.completion.chunk")
    let choice = try #require((first["choices"] as? [[String: Any]])?.first)
    #expect((choice["delta"] as? [String: Any])?["content"] as? String == "hi\nthere")
    #expect(choice["finish_reason"] is NSNull)
    let last = try #require(try JSONSerialization.jsonObject(with: Data(payloads[1].utf8)) as? [String: Any])
    #expect((last["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String == "stop")
  }
}

@Suite struct EngineTests {
  static let tokenizerDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("LMTests/Fixtures/tokenizers/qwen2")

  static func engine(maxBatch: Int, maxPositions: Int = 128) throws -> GenerationEngine {
    let tokenizer = try BPETokenizer(directory: tokenizerDir)
    let config = ModelConfig(family: .qwen2, vocabSize: tokenizer.vocabularySize, hiddenSize: 32, layers: 2, heads: 4, kvHeads: 2,
                             maxPositions: maxPositions)
    let model = Checkpoint.makeModel(config, generator: Generator(seed: 3))
    return GenerationEngine(model: model, tokenizer: tokenizer, stopTokens: [], maxBatch: maxBatch)
  }

  static func run(_ engine: GenerationEngine, _ job: GenerationJob) async -> (String, FinishReason?, Int) {
    var text = "", finish: FinishReason?, count = 0
    for await e in engine.submit(job) {
      switch e {
      case .text(let t): text += t
      case .finished(let r, _, let c): (finish, count) = (r, c)
      }
    }
    return (text, finish, count)
  }

  /// Eight requests at once decode together and each gets what it gets alone.
  @Test func concurrentJobsBatchAndMatchSerialResults() async throws {
    let engine = try Self.engine(maxBatch: 8)
    let prompts = (0..<8).map { i in Array(1...(2 + i)) }
    var alone: [(String, FinishReason?, Int)] = []
    for p in prompts { alone.append(await Self.run(engine, GenerationJob(prompt: p, maxTokens: 5 + p.count % 3))) }
    let together = await withTaskGroup(of: (Int, (String, FinishReason?, Int)).self) { group in
      for (i, p) in prompts.enumerated() {
        group.addTask { (i, await Self.run(engine, GenerationJob(prompt: p, maxTokens: 5 + p.count % 3))) }
      }
      var out = [(String, FinishReason?, Int)](repeating: ("", nil, 0), count: prompts.count)
      for await (i, r) in group { out[i] = r }
      return out
    }
    for i in prompts.indices {
      #expect(together[i].0 == alone[i].0)
      #expect(together[i].1 == .length && together[i].2 == 5 + prompts[i].count % 3)
    }
    #expect(engine.stats.largestBatch > 1)
    engine.shutdown()
  }

  /// Seeded sampling gives a row the same text whether it decodes alone or beside other rows.
  @Test func seededSamplingIsTheSameInABatch() async throws {
    let engine = try Self.engine(maxBatch: 4)
    let job = GenerationJob(prompt: [3, 4, 5], maxTokens: 8, temperature: 0.9, topP: 0.9, seed: 11)
    let alone = await Self.run(engine, job)
    let others = (0..<3).map { GenerationJob(prompt: Array(1...(4 + $0)), maxTokens: 8, temperature: 1, seed: UInt64($0)) }
    let together = await withTaskGroup(of: (Int, String).self) { group in
      for (i, j) in ([job] + others).enumerated() { group.addTask { (i, await Self.run(engine, j).0) } }
      var out: [Int: String] = [:]
      for await (i, t) in group { out[i] = t }
      return out
    }
    #expect(together[0] == alone.0)
    engine.shutdown()
  }

  @Test func stopStringEndsWithStop() async throws {
    let engine = try Self.engine(maxBatch: 2)
    let (free, _, _) = await Self.run(engine, GenerationJob(prompt: [5, 6, 7], maxTokens: 12))
    guard let ch = free.dropFirst(2).first.map(String.init), !ch.isEmpty else { engine.shutdown(); return }
    let (cut, finish, _) = await Self.run(engine, GenerationJob(prompt: [5, 6, 7], maxTokens: 12, stop: [ch]))
    #expect(finish == .stop)
    #expect(free.hasPrefix(cut) && !cut.contains(ch))
    engine.shutdown()
  }

  /// A job far longer than any test waits for: tens of thousands of steps with a growing cache, so the worker
  /// cannot finish it before a reader (however starved of CPU by tests beside it) gets to cancel it.
  static let longJob = 60_000
  static let longContext = 1 << 16

  /// Waits (up to `seconds`) until the engine holds no row and no queued job.
  static func waitIdle(_ engine: GenerationEngine, seconds: Double = 10) async throws -> EngineStats {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
      let s = engine.stats
      if s.running == 0 && s.queued == 0 { return s }
      try await Task.sleep(nanoseconds: 5_000_000)
    }
    Issue.record("the engine still has rows after \(seconds) s: \(engine.stats)")
    return engine.stats
  }

  /// A reader that cancels after two pieces ends its job at once: the row leaves the batch, the stream ends
  /// with far fewer tokens than asked, and the job counts as cancelled, not completed.
  @Test func cancelledJobLeavesTheBatch() async throws {
    let engine = try Self.engine(maxBatch: 2, maxPositions: Self.longContext)
    let submission = engine.start(GenerationJob(prompt: [5, 6, 7], maxTokens: Self.longJob))
    var pieces = 0, finished: (FinishReason, Int)?
    for await event in submission.events {
      switch event {
      case .text:
        pieces += 1
        if pieces == 2 { submission.cancel() }
      case .finished(let r, _, let c): finished = (r, c)
      }
    }
    let s = try await Self.waitIdle(engine)
    let (reason, tokens) = try #require(finished)
    #expect(reason == .stop && tokens < Self.longJob)
    #expect(s.cancelled == 1 && s.completed == 0)
    #expect(s.decodeSteps < Self.longJob)
    // The engine still serves the next job in full.
    let (_, finish, count) = await Self.run(engine, GenerationJob(prompt: [5, 6, 7], maxTokens: 6))
    #expect(finish == .length && count == 6 && engine.stats.completed == 1)
    engine.shutdown()
  }

  /// Dropping the event stream (a reader that went away without a word) cancels the job too.
  @Test func droppedStreamCancelsItsJob() async throws {
    let engine = try Self.engine(maxBatch: 2, maxPositions: Self.longContext)
    do {
      var it = engine.submit(GenerationJob(prompt: [5, 6, 7], maxTokens: Self.longJob)).makeAsyncIterator()
      _ = await it.next()
    }
    let s = try await Self.waitIdle(engine)
    #expect(s.cancelled == 1 && s.decodeSteps < Self.longJob)
    engine.shutdown()
  }

  /// A queued job whose reader went away never takes a row: it is never prefilled, and the running row
  /// beside it is unaffected.
  @Test func cancelledQueuedJobNeverStarts() async throws {
    let engine = try Self.engine(maxBatch: 1, maxPositions: Self.longContext)
    let running = engine.start(GenerationJob(prompt: [5, 6, 7], maxTokens: Self.longJob))
    var it = running.events.makeAsyncIterator()
    _ = await it.next()  // the first job holds the only row
    let queued = engine.start(GenerationJob(prompt: [8, 9], maxTokens: 10))
    #expect(engine.stats.queued == 1 && engine.stats.running == 1)
    queued.cancel()
    var queuedEvents: [GenerationEvent] = []
    for await e in queued.events { queuedEvents.append(e) }
    #expect(queuedEvents == [.finished(.stop, promptTokens: 2, completionTokens: 0)])
    #expect(engine.stats.prefills == 1 && engine.stats.running == 1)
    running.cancel()
    let s = try await Self.waitIdle(engine)
    #expect(s.cancelled == 2 && s.prefills == 1 && s.completed == 0)
    engine.shutdown()
  }
}
