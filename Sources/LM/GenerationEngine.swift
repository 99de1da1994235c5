import Foundation
import Torch

/// Why a completion ended, in OpenAI's words.
public enum FinishReason: String, Sendable, Equatable {
  /// A stop token (EOS, `<|im_end|>`) or a stop string.
  case stop
  /// `max_tokens` reached.
  case length
}

/// What a submitted job reports, in order: text pieces as they are decoded, then one `finished`.
public enum GenerationEvent: Sendable, Equatable {
  case text(String)
  case finished(FinishReason, promptTokens: Int, completionTokens: Int)
}

/// One completion to decode.
public struct GenerationJob: Sendable {
  public var prompt: [Int]
  public var maxTokens: Int
  public var temperature: Double
  public var topP: Double
  public var seed: UInt64?
  public var stop: [String]

  public init(prompt: [Int], maxTokens: Int, temperature: Double = 0, topP: Double = 1, seed: UInt64? = nil, stop: [String] = []) {
    self.prompt = prompt
    self.maxTokens = maxTokens
    self.temperature = temperature
    self.topP = topP
    self.seed = seed
    self.stop = stop
  }
}

/// Counters that show the scheduler at work (served on /health).
public struct EngineStats: Sendable, Equatable {
  public var completed = 0
  public var decodeSteps = 0
  public var prefills = 0
  /// The most rows decoded together in one step.
  public var largestBatch = 0
  /// Rows that joined a decode already running (continuous batching).
  public var joinedRunning = 0
  /// Prompts that took their beginning from the prefix cache, and the positions they did not prefill.
  public var prefixHits = 0
  public var reusedPrefixPositions = 0
  /// Jobs ended early because their reader went away (a client that disconnected mid-stream), queued or running.
  public var cancelled = 0
  /// Rows decoding now, and jobs waiting for a row.
  public var running = 0
  public var queued = 0
}

/// A submitted job: its events, and `cancel()` to end it from the reader's side (its row leaves the batch
/// before the next step; a queued job never starts). Dropping `events` does the same.
public struct Submission: Sendable {
  public let events: AsyncStream<GenerationEvent>
  let row: Row

  public func cancel() { row.cancel() }
}

/// Decodes submitted jobs on one worker thread (libtorch work never runs on the server's event loops) with
/// continuous batching: every step, jobs that arrived since the last step are prefilled and join the
/// running rows of one `BatchDecoder`, up to `maxBatch` rows; a row leaves when it finishes or its reader
/// goes away. Each row samples with its own temperature, top-p and seed, so batching changes no result
/// beyond float rounding.
public final class GenerationEngine: @unchecked Sendable {
  public let tokenizer: any TextTokenizer
  public let contextLength: Int
  public let vocabularySize: Int
  public let stopTokens: Set<Int>
  public let maxBatch: Int
  public let prefixCacheEntries: Int

  private let model: any CausalLM
  private let padId: Int
  private let condition = NSCondition()
  // Guarded by `condition`:
  private var queue: [Row] = []
  private var stopping = false
  private var stopped = false
  private var forgetPrefixes = false
  private var _stats = EngineStats()
  private var thread: Thread?

  /// - stopTokens: ids that end a completion (EOS ids of config and tokenizer, `<|im_end|>`, …).
  /// - prefixCacheEntries: prompts whose keys and values are kept so that later prompts starting the same
  ///   way prefill only the rest (0: none; then joining prompts prefill together in one padded batch).
  public init(model: any CausalLM, tokenizer: any TextTokenizer, stopTokens: Set<Int>, maxBatch: Int = 8,
              prefixCacheEntries: Int = 0) {
    self.prefixCacheEntries = prefixCacheEntries
    self.model = model
    self.tokenizer = tokenizer
    self.stopTokens = stopTokens
    self.maxBatch = max(1, maxBatch)
    contextLength = model.config.maxPositions
    vocabularySize = min(model.config.vocabSize, tokenizer.vocabularySize)
    padId = tokenizer.padTokenId ?? 0
    let t = Thread { self.work() }  // the engine lives as long as its worker
    t.name = "shatter-decode"
    t.stackSize = 8 << 20
    thread = t
    t.start()
  }

  public var stats: EngineStats {
    condition.lock()
    defer { condition.unlock() }
    return _stats
  }

  /// Queues `job`; its events arrive on the returned stream. Dropping the stream (or cancelling the task
  /// reading it) ends the job before its next step.
  public func submit(_ job: GenerationJob) -> AsyncStream<GenerationEvent> { start(job).events }

  /// Queues `job` and returns its events with a handle that ends it early: a server calls `cancel()` when
  /// the client it streams to goes away, so the row stops decoding without waiting for the stream to be freed.
  public func start(_ job: GenerationJob) -> Submission {
    let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream(bufferingPolicy: .unbounded)
    let row = Row(job: job, continuation: continuation, tokenizer: tokenizer)
    continuation.onTermination = { [weak row] _ in row?.cancel() }
    condition.lock()
    if stopping {
      condition.unlock()
      continuation.yield(.finished(.stop, promptTokens: job.prompt.count, completionTokens: 0))
      continuation.finish()
      return Submission(events: stream, row: row)
    }
    queue.append(row)
    _stats.queued = queue.count
    condition.signal()
    condition.unlock()
    return Submission(events: stream, row: row)
  }

  /// A job's events gathered: the whole text, why it ended, prompt and completion token counts.
  public static func collect(_ events: AsyncStream<GenerationEvent>) async -> (text: String, finish: FinishReason,
                                                                               promptTokens: Int, completionTokens: Int) {
    var text = "", finish = FinishReason.stop, p = 0, c = 0
    for await event in events {
      switch event {
      case .text(let piece): text += piece
      case .finished(let reason, let prompt, let completion): (finish, p, c) = (reason, prompt, completion)
      }
    }
    return (text, finish, p, c)
  }

  /// Drops the kept prompt prefixes before the next job starts: call it after the model's weights change
  /// (a training step between generations), while no job is running, so no later prompt reuses keys and
  /// values the old weights computed.
  public func weightsChanged() {
    condition.lock()
    forgetPrefixes = true
    condition.unlock()
  }

  /// Stops the worker after the rows it holds finish their current step; queued jobs end at once.
  public func shutdown() {
    condition.lock()
    stopping = true
    condition.broadcast()
    while !stopped { condition.wait() }
    condition.unlock()
  }

  // MARK: - Worker

  private func work() {
    let decoder = BatchDecoder(model: model, padId: padId)
    if prefixCacheEntries > 0 { decoder.prefixCache = PrefixCache(capacity: prefixCacheEntries) }
    var active: [Row] = []
    while true {
      // Rows whose reader went away leave before the step, so a disconnected client costs no more decoding.
      let gone = Set(active.indices.filter { active[$0].isCancelled })
      if !gone.isEmpty {
        for i in gone { active[i].end(.stop) }
        let kept = active.indices.filter { !gone.contains($0) }
        decoder.keep(kept)
        active = kept.map { active[$0] }
      }
      condition.lock()
      _stats.cancelled += gone.count
      _stats.running = active.count
      while queue.isEmpty && active.isEmpty && !stopping { condition.wait() }
      if stopping {
        let left = queue + active
        queue = []
        (_stats.queued, _stats.running) = (0, 0)
        stopped = true
        condition.broadcast()
        condition.unlock()
        for r in left { r.end(.stop) }
        return
      }
      if forgetPrefixes {
        forgetPrefixes = false
        if prefixCacheEntries > 0 { decoder.prefixCache = PrefixCache(capacity: prefixCacheEntries) }
      }
      // Queued jobs whose reader went away never start, wherever they are in the queue.
      let dropped = queue.filter(\.isCancelled)
      if !dropped.isEmpty { queue.removeAll(where: \.isCancelled) }
      _stats.cancelled += dropped.count
      let room = maxBatch - active.count
      let joining = Array(queue.prefix(room))
      queue.removeFirst(joining.count)
      _stats.queued = queue.count
      _stats.running = active.count + joining.count
      if joining.isEmpty && active.isEmpty {
        condition.unlock()
        for r in dropped { r.end(.stop) }
        continue
      }
      if !joining.isEmpty {
        _stats.prefills += 1
        if !active.isEmpty { _stats.joinedRunning += joining.count }
      }
      condition.unlock()
      for r in dropped { r.end(.stop) }

      var tokens: [Int]
      if !joining.isEmpty {
        // New rows are prefilled and take their first token; running rows wait this one step.
        let logits = decoder.add(joining.map(\.job.prompt))
        tokens = model.pickEach(logits, samplers: joining.map(\.sampler))
        for (r, t) in zip(joining, tokens) { r.accept(t, stopTokens: stopTokens) }
        active += joining
      } else {
        let logits = decoder.step(active.map(\.pending))
        tokens = model.pickEach(logits, samplers: active.map(\.sampler))
        for (r, t) in zip(active, tokens) { r.accept(t, stopTokens: stopTokens) }
      }
      condition.lock()
      _stats.decodeSteps += 1
      _stats.largestBatch = max(_stats.largestBatch, decoder.rows)
      if let p = decoder.prefixCache { (_stats.prefixHits, _stats.reusedPrefixPositions) = (p.hits, p.reusedPositions) }
      _stats.completed += active.filter { $0.isDone && !$0.endedByCancel }.count
      _stats.cancelled += active.filter { $0.isDone && $0.endedByCancel }.count
      let kept = active.indices.filter { !active[$0].isDone }
      _stats.running = kept.count
      condition.unlock()
      decoder.keep(kept)
      active = kept.map { active[$0] }
    }
  }
}

/// One job's decoding state; touched by the worker thread only, except `cancel` (any thread).
final class Row: @unchecked Sendable {
  let job: GenerationJob
  let sampler: RowSampler
  private let continuation: AsyncStream<GenerationEvent>.Continuation
  private var streamer: TextStreamer
  private(set) var pending = 0
  private(set) var generated = 0
  private(set) var isDone = false
  /// Whether the row ended because its reader went away.
  private(set) var endedByCancel = false
  private let lock = NSLock()
  private var cancelled = false

  init(job: GenerationJob, continuation: AsyncStream<GenerationEvent>.Continuation, tokenizer: any TextTokenizer) {
    self.job = job
    self.continuation = continuation
    streamer = TextStreamer(tokenizer: tokenizer, stopStrings: job.stop)
    let options = SamplingOptions(maxNewTokens: job.maxTokens, temperature: job.temperature, topP: job.topP < 1 ? job.topP : nil)
    sampler = RowSampler(options: options, seed: job.seed)
  }

  func cancel() {
    lock.lock()
    cancelled = true
    lock.unlock()
  }

  var isCancelled: Bool {
    lock.lock()
    defer { lock.unlock() }
    return cancelled
  }

  /// Takes the row's next token: streams its text, and ends the row on a stop token, a stop string,
  /// `max_tokens`, or a reader that went away.
  func accept(_ token: Int, stopTokens: Set<Int>) {
    guard !isDone else { return }
    generated += 1
    pending = token
    if stopTokens.contains(token) {
      flushAndEnd(.stop)
      return
    }
    let piece = streamer.push(token)
    if !piece.isEmpty { continuation.yield(.text(piece)) }
    if streamer.stopped {
      end(.stop)
    } else if generated >= job.maxTokens {
      flushAndEnd(.length)
    } else if isCancelled {
      endedByCancel = true
      end(.stop)
    }
  }

  private func flushAndEnd(_ reason: FinishReason) {
    let tail = streamer.finish()
    if !tail.isEmpty { continuation.yield(.text(tail)) }
    end(reason)
  }

  func end(_ reason: FinishReason) {
    guard !isDone else { return }
    isDone = true
    continuation.yield(.finished(reason, promptTokens: job.prompt.count, completionTokens: generated))
    continuation.finish()
  }
}
