import Foundation
import LM
import Torch

/// How one reply is drawn.
public struct ChatOptions: Sendable, Equatable {
  public var temperature: Double
  public var maxTokens: Int
  /// Strings that end the reply (not included).
  public var stop: [String]
  /// Seeds the draw where the backend can (the local model always; servers that take a `seed`).
  public var seed: UInt64?

  public init(temperature: Double = 0, maxTokens: Int = 256, stop: [String] = [], seed: UInt64? = nil) {
    self.temperature = temperature
    self.maxTokens = maxTokens
    self.stop = stop
    self.seed = seed
  }
}

/// A chat model behind one call: messages in, the assistant's reply out. The agents talk to every model
/// (the local one, an OpenAI-compatible server, a script in tests) through this.
public protocol ChatBackend: Sendable {
  /// A short name for transcripts and reports ("local:smollm2-135m-instruct", "http://…/v1 model", "scripted").
  var name: String { get }
  func reply(to messages: [ChatMessage], options: ChatOptions) async throws -> String
}

/// A backend that fails: a server that kept refusing, a local model that could not take the prompt.
public struct ChatBackendError: Error, CustomStringConvertible, Sendable {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// Replies written by a test: a function of the conversation (and of how many calls came before).
public final class ScriptedChatBackend: ChatBackend, @unchecked Sendable {
  public let name = "scripted"
  private let lock = NSLock()
  private let script: @Sendable (_ messages: [ChatMessage], _ call: Int) -> String
  /// Every conversation it was sent, in order.
  public private(set) var received: [[ChatMessage]] = []

  public init(_ script: @escaping @Sendable (_ messages: [ChatMessage], _ call: Int) -> String) {
    self.script = script
  }

  public func reply(to messages: [ChatMessage], options: ChatOptions) async throws -> String {
    let call: Int = lock.withLock {
      received.append(messages)
      return received.count - 1
    }
    return script(messages, call)
  }
}

/// The local model (any checkpoint or GGUF Shatter loads) with its chat template, on a continuous-batching
/// `GenerationEngine`: calls made at the same time (CEL's look-ahead candidates, the jobs of an experiment)
/// decode together in one batch, and a greedy reply is the one a lone call gets.
public final class LocalChatBackend: ChatBackend, @unchecked Sendable {
  public let name: String
  /// The model, tokenizer and template the replies come from.
  public let chat: ChatModel
  private let engine: GenerationEngine

  /// - maxBatch: replies decoded together at most.
  public init(_ chat: ChatModel, name: String, maxBatch: Int = 16) {
    self.chat = chat
    self.name = name
    // An agent's calls share long beginnings (system prompt, rules, board), so their keys and values are kept.
    engine = GenerationEngine(model: chat.model, tokenizer: chat.tokenizer, stopTokens: chat.stopTokens, maxBatch: maxBatch,
                              prefixCacheEntries: 32)
  }

  deinit { engine.shutdown() }

  /// Call after the model's weights changed (a training step), while no reply is being decoded.
  public func weightsChanged() { engine.weightsChanged() }

  /// The engine's counters (decode steps, the largest batch).
  public var stats: EngineStats { engine.stats }

  public func reply(to messages: [ChatMessage], options: ChatOptions) async throws -> String {
    let ids: [Int]
    do {
      ids = try chat.encode(messages).ids
    } catch let e as ChatInputError {
      throw ChatBackendError("\(name): \(e.message)")
    }
    let room = chat.model.config.maxPositions - ids.count
    let job = GenerationJob(prompt: ids, maxTokens: min(options.maxTokens, room), temperature: options.temperature,
                            seed: options.seed ?? 0, stop: options.stop)
    return await GenerationEngine.collect(engine.submit(job)).text
  }
}

/// Passes every call to another backend and keeps each conversation with its reply, in order (what a
/// trainer learns from).
public final class RecordingChatBackend: ChatBackend, @unchecked Sendable {
  public let inner: any ChatBackend
  private let lock = NSLock()
  private var calls: [(messages: [ChatMessage], reply: String)] = []

  public init(_ inner: any ChatBackend) { self.inner = inner }
  public var name: String { inner.name }

  public func reply(to messages: [ChatMessage], options: ChatOptions) async throws -> String {
    let reply = try await inner.reply(to: messages, options: options)
    lock.withLock { calls.append((messages, reply)) }
    return reply
  }

  /// The calls made so far.
  public var recorded: [(messages: [ChatMessage], reply: String)] { lock.withLock { calls } }
}
