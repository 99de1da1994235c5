import Foundation
import Torch

/// How to pick continuations. Temperature 0 is greedy decoding.
public struct SamplingOptions: Sendable {
  public var maxNewTokens: Int
  public var temperature: Double
  public var topK: Int?
  public var topP: Double?
  public var stopTokens: Set<Int>
  public var useCache: Bool

  public init(maxNewTokens: Int = 32, temperature: Double = 0, topK: Int? = nil, topP: Double? = nil,
              stopTokens: Set<Int> = [], useCache: Bool = true) {
    self.maxNewTokens = maxNewTokens
    self.temperature = temperature
    self.topK = topK
    self.topP = topP
    self.stopTokens = stopTokens
    self.useCache = useCache
  }
}

extension CausalLM {
  /// Continues each prompt (batched, left-padded) and returns the new tokens of each, a stop token
  /// included when one ended the row. Random choices come from `generator`.
  ///
  /// `onToken(row, token)` is called for each new token as soon as it is chosen (for streaming); returning
  /// false ends that row there (a stop string was seen, the reader went away), as a stop token would.
  public func generate(_ prompts: [[Int]], options: SamplingOptions, padId: Int = 0,
                       generator: Generator? = nil, onToken: ((_ row: Int, _ token: Int) -> Bool)? = nil) -> [[Int]] {
    precondition(prompts.allSatisfy { !$0.isEmpty }, "generate: every prompt needs at least one token")
    return withoutGradients {
      let rows = prompts.count
      var out = [[Int]](repeating: [], count: rows)
      var done = [Bool](repeating: false, count: rows)
      // With the cache, the decode loop of `shatter serve` (`BatchDecoder`); without, every step runs the
      // whole sequence again.
      let width = prompts.map(\.count).max() ?? 0
      let decoder = options.useCache ? BatchDecoder(model: self, padId: padId, reserve: width + options.maxNewTokens) : nil
      let uncached = options.useCache ? nil : UncachedDecode(model: self, prompts: prompts, padId: padId)
      var logits = decoder?.add(prompts) ?? uncached.unsafelyUnwrapped.logits()
      for step in 0..<options.maxNewTokens {
        let next = pick(logits, options: options, generator: generator).toArray(Int64.self).map { Int($0) }
        for r in 0..<rows where !done[r] {
          out[r].append(next[r])
          if options.stopTokens.contains(next[r]) { done[r] = true }
          if let onToken, !onToken(r, next[r]) { done[r] = true }
        }
        if done.allSatisfy({ $0 }) || step == options.maxNewTokens - 1 { break }
        // Finished rows are still fed (their tokens are dropped), so every row keeps its place in the batch.
        logits = decoder?.step(next) ?? uncached.unsafelyUnwrapped.append(next)
      }
      return out
    }
  }

  func pick(_ logits: Tensor, options: SamplingOptions, generator: Generator?) -> Tensor {
    if options.temperature <= 0 { return logits.argmax(dim: -1) }
    var l = logits / options.temperature
    if let k = options.topK, k > 0, k < l.size(-1) {
      let kth = l.topK(k, dim: -1).values.narrow(dim: -1, start: k - 1, length: 1)
      l = l.maskedFill(l.lt(kth), -Double.infinity)
    }
    if let p = options.topP, p < 1 {
      let (sorted, order) = l.sorted(dim: -1, descending: true)
      let probs = sorted.softmax(dim: -1)
      // Drop a token when the tokens ranked above it already cover p (the top one always stays).
      let drop = (probs.cumsum(dim: -1) - probs).gt(p)
      let dropInOriginalOrder = Tensor.zeros(drop.shape, dtype: .int64, device: drop.device).scatterAdd(dim: -1, index: order, source: drop.to(.int64))
      l = l.maskedFill(dropInOriginalOrder.ne(0), -Double.infinity)
    }
    // Generators are host generators: draw on the host (a [rows, V] copy) so seeds mean the same on every device.
    return l.softmax(dim: -1).to(.float32, .cpu).multinomial(1, generator: generator).squeezed(dim: -1)
  }
}

/// Decoding without a cache (the reference the cache is checked against): each step runs the model over
/// every token so far.
private final class UncachedDecode {
  let model: any CausalLM
  var tokens: Tensor, mask: Tensor, positions: Tensor
  let padded: Bool

  init(model: any CausalLM, prompts: [[Int]], padId: Int) {
    self.model = model
    let batch = PaddedBatch(prompts, padId: padId, side: .left).on(model.embeddingWeight.device)
    (tokens, mask, positions, padded) = (batch.tokens, batch.mask, batch.positions, batch.hasPadding)
  }

  /// Next-token logits [rows, V] (float32) of the sequences so far.
  func logits() -> Tensor {
    let t = tokens.size(1)
    let bias = padded ? Attention.bias(keyMask: mask, queries: t, past: 0, dtype: model.dtype) : nil
    let logits = model.forward(tokens, positions: positions, attentionBias: bias, cache: nil).logits
    return logits.select(dim: 1, index: t - 1).to(.float32)
  }

  /// Appends one token to every row and returns the next logits.
  func append(_ next: [Int]) -> Tensor {
    let rows = next.count
    let lastPos = positions.narrow(dim: 1, start: positions.size(1) - 1, length: 1) + 1
    tokens = Tensor.cat([tokens, Tensor(next.map { Int64($0) }, shape: [rows, 1]).to(tokens.device)], dim: 1)
    mask = Tensor.cat([mask, Tensor.ones([rows, 1], dtype: .int64, device: mask.device)], dim: 1)
    positions = Tensor.cat([positions, lastPos], dim: 1)
    return logits()
  }
}

/// A batched decode whose rows come and go: the step API under streaming and the server's scheduler.
///
/// Rows are left-aligned to one shared KV cache. A prompt that joins mid-decode is prefilled on its own
/// and its keys/values are left-padded (or the running rows' are) to the common length, so requests that
/// arrive while others decode join the next step instead of waiting for the batch to drain (continuous
/// batching). Each row keeps its own positions, so its logits equal those of decoding it alone.
/// Not thread-safe: drive one decoder from one thread.
public final class BatchDecoder {
  public let model: any CausalLM
  let padId: Int
  var cache: KVCache
  /// [B, S] int64, 1 where the cached position is a real token of that row.
  var mask: Tensor?
  /// Whether some row has padding in the cache (else attention needs no mask).
  var padded = false
  /// The position the next fed token of each row gets.
  var nextPositions: [Int] = []

  /// Positions the cache is first made with room for (it grows by doubling beyond that).
  let reserve: Int

  /// - reserve: positions per row to make room for at once (prompt plus new tokens, when known).
  public init(model: any CausalLM, padId: Int = 0, reserve: Int = 0) {
    self.model = model
    self.padId = padId
    self.reserve = reserve
    cache = KVCache(layers: model.config.layers, reserve: reserve)
  }

  /// Number of rows decoding now.
  public var rows: Int { nextPositions.count }
  /// Cached positions per row (the longest row plus the padding of the others).
  public var cachedLength: Int { cache.length }

  /// Keys and values of recent prompts: a new prompt that starts like one of them prefills only the rest
  /// (nil: every prompt is prefilled whole, the joining ones together).
  public var prefixCache: PrefixCache?

  /// Adds `prompts` as rows after the existing ones and returns their next-token logits [n, V] (float32).
  public func add(_ prompts: [[Int]]) -> Tensor {
    precondition(!prompts.isEmpty && prompts.allSatisfy { !$0.isEmpty }, "BatchDecoder.add: every prompt needs a token")
    if let prefixCache { return withoutGradients { Tensor.cat(prompts.map { addReusing($0, prefixCache) }, dim: 0) } }
    return withoutGradients {
      let batch = PaddedBatch(prompts, padId: padId, side: .left).on(model.embeddingWeight.device)
      let fresh = KVCache(layers: model.config.layers, reserve: reserve)
      let t = batch.tokens.size(1)
      let bias = batch.hasPadding ? Attention.bias(keyMask: batch.mask, queries: t, past: 0, dtype: model.dtype) : nil
      // The head runs on the last position only: over the whole prompt it would cost as much as several
      // layers and a [n, T, V] tensor, for logits nobody reads.
      let embedded = Tensor.embedding(batch.tokens, weight: model.embeddingWeight)
      let hidden = model.hiddenStates(embeddings: embedded, positions: batch.positions, attentionBias: bias, cache: fresh)
      let last = model.outputLogits(hidden.select(dim: 1, index: t - 1)).to(.float32)
      if rows == 0 {
        cache = fresh
        mask = batch.mask
        padded = batch.hasPadding
      } else {
        merge(fresh, mask: batch.mask, newPadded: batch.hasPadding)
      }
      nextPositions += prompts.map(\.count)
      return last
    }
  }

  /// One prompt as a new row, its longest cached prefix taken from `store` and only the rest prefilled;
  /// the prompt's keys and values then join the store. Returns its next-token logits [1, V].
  private func addReusing(_ prompt: [Int], _ store: PrefixCache) -> Tensor {
    let device = model.embeddingWeight.device
    let fresh = KVCache(layers: model.config.layers, reserve: reserve)
    let reused = store.restore(longestPrefixOf: prompt, into: fresh)
    let rest = Array(prompt[reused...])
    let tokens = Tensor(rest.map { Int64($0) }, shape: [1, rest.count]).to(device)
    let positions = Tensor((reused..<prompt.count).map { Int64($0) }, shape: [1, rest.count]).to(device)
    // Causal attention over the cached prefix and the new tokens needs no mask: a single row has no padding.
    let hidden = model.hiddenStates(embeddings: Tensor.embedding(tokens, weight: model.embeddingWeight), positions: positions,
                                    attentionBias: nil, cache: fresh)
    let last = model.outputLogits(hidden.select(dim: 1, index: rest.count - 1)).to(.float32)
    store.insert(prompt, from: fresh)
    let rowMask = Tensor.ones([1, prompt.count], dtype: .int64, device: device)
    if rows == 0 {
      cache = fresh
      mask = rowMask
      padded = false
    } else {
      merge(fresh, mask: rowMask, newPadded: false)
    }
    nextPositions.append(prompt.count)
    return last
  }

  /// Feeds one token to every row (in row order) and returns the next-token logits [rows, V] (float32).
  public func step(_ tokens: [Int]) -> Tensor {
    precondition(tokens.count == rows, "BatchDecoder.step: \(tokens.count) tokens for \(rows) rows")
    return withoutGradients {
      let n = rows
      let device = model.embeddingWeight.device
      let input = Tensor(tokens.map { Int64($0) }, shape: [n, 1]).to(device)
      let positions = Tensor(nextPositions.map { Int64($0) }, shape: [n, 1]).to(device)
      let ones = Tensor.ones([n, 1], dtype: .int64, device: device)
      let m = mask.map { Tensor.cat([$0, ones], dim: 1) } ?? ones
      mask = m
      let past = cache.length
      let bias = padded ? Attention.bias(keyMask: m, queries: 1, past: past, dtype: model.dtype) : nil
      let logits = model.forward(input, positions: positions, attentionBias: bias, cache: cache).logits
      for r in 0..<n { nextPositions[r] += 1 }
      return logits.select(dim: 1, index: 0).to(.float32)
    }
  }

  /// Keeps only `rows` (indices into the current rows, in the order given); the others are dropped.
  /// Cache columns that are padding for every remaining row are trimmed.
  public func keep(_ kept: [Int]) {
    if kept == Array(0..<rows) { return }
    if kept.isEmpty {
      cache = KVCache(layers: model.config.layers, reserve: reserve)
      mask = nil
      padded = false
      nextPositions = []
      return
    }
    withoutGradients {
      let index = Tensor(kept.map { Int64($0) }, shape: [kept.count]).to(model.embeddingWeight.device)
      cache.select(rows: index)
      nextPositions = kept.map { nextPositions[$0] }
      guard let m = mask?.indexSelect(dim: 0, index: index) else { return }
      // Leading columns where no remaining row has a real token carry nothing.
      let realPerColumn = m.sum(dim: 0).toArray(Int64.self)
      let lead = realPerColumn.prefix { $0 == 0 }.count
      var trimmed = m
      if lead > 0 {
        trimmed = m.narrow(dim: 1, start: lead, length: m.size(1) - lead)
        cache.dropLeading(lead)
      }
      mask = trimmed
      padded = trimmed.eq(0).to(.int64).sum().itemInt() > 0
    }
  }

  /// Appends the rows of `fresh` (keys/values over `newMask`'s columns), left-padding whichever side is shorter.
  private func merge(_ fresh: KVCache, mask newMask: Tensor, newPadded: Bool) {
    let old = cache.length, new = fresh.length
    let width = max(old, new)
    guard let oldMask = mask else { preconditionFailure("BatchDecoder: rows without a mask") }
    let oldRows = oldMask.size(0), newRows = newMask.size(0)
    let a = oldMask.leftPadded(to: width), b = newMask.leftPadded(to: width)
    cache.leftPad(to: width)
    fresh.leftPad(to: width)
    cache.appendRows(of: fresh)
    let merged = Tensor.cat([a, b], dim: 0)
    precondition(merged.size(0) == oldRows + newRows)
    mask = merged
    padded = padded || newPadded || old != new
  }
}

extension Tensor {
  /// [B, S] → [B, width] with zeros in front (int64 masks).
  fileprivate func leftPadded(to width: Int) -> Tensor {
    let missing = width - size(1)
    if missing <= 0 { return self }
    return Tensor.cat([Tensor.zeros([size(0), missing], dtype: dtype, device: device), self], dim: 1)
  }
}

/// The keys and values of recently prefilled prompts (vLLM's automatic prefix caching, simply): an agent's
/// calls share long beginnings — the system prompt, the rules, the board — and a prompt that starts like an
/// earlier one prefills only what differs. Least recently used entries go first.
public final class PrefixCache {
  struct Entry {
    var tokens: [Int]
    /// Per layer [1, H_kv, S, D].
    var keys: [Tensor], values: [Tensor]
    var lastUse: Int
  }
  public let capacity: Int
  /// Shorter shared beginnings are prefilled again (copying them would save little).
  public let minimumReuse: Int
  var entries: [Entry] = []
  var clock = 0
  /// Prompts that reused a prefix, and the positions they did not prefill.
  public private(set) var hits = 0, reusedPositions = 0

  public init(capacity: Int = 32, minimumReuse: Int = 16) {
    self.capacity = Swift.max(1, capacity)
    self.minimumReuse = Swift.max(1, minimumReuse)
  }

  /// Fills `cache` (empty, one row) with the longest cached beginning of `prompt`, leaving at least its last
  /// token to prefill (its logits are needed); returns the number of positions restored.
  func restore(longestPrefixOf prompt: [Int], into cache: KVCache) -> Int {
    var best = (index: -1, length: 0)
    for (i, e) in entries.enumerated() {
      let n = zip(e.tokens, prompt).prefix { $0 == $1 }.count
      if n > best.length { best = (i, n) }
    }
    let n = Swift.min(best.length, prompt.count - 1)
    guard best.index >= 0, n >= minimumReuse else { return 0 }
    clock += 1
    entries[best.index].lastUse = clock
    let e = entries[best.index]
    for l in 0..<cache.layerCount {
      cache.rebuildLayer(l, keys: e.keys[l].narrow(dim: 2, start: 0, length: n), values: e.values[l].narrow(dim: 2, start: 0, length: n))
    }
    hits += 1
    reusedPositions += n
    return n
  }

  /// Keeps `prompt`'s keys and values (the first `prompt.count` positions of one-row `cache`), unless an
  /// entry already holds it whole.
  func insert(_ prompt: [Int], from cache: KVCache) {
    clock += 1
    if let i = entries.firstIndex(where: { $0.tokens.count >= prompt.count && Array($0.tokens.prefix(prompt.count)) == prompt }) {
      entries[i].lastUse = clock
      return
    }
    // A stored prompt this one extends is superseded by it.
    entries.removeAll { $0.tokens.count < prompt.count && Array(prompt.prefix($0.tokens.count)) == $0.tokens }
    let n = prompt.count
    let keys = (0..<cache.layerCount).compactMap { cache.keys($0)?.narrow(dim: 2, start: 0, length: n).contiguous() }
    let values = (0..<cache.layerCount).compactMap { cache.values($0)?.narrow(dim: 2, start: 0, length: n).contiguous() }
    guard keys.count == cache.layerCount, values.count == cache.layerCount else { return }
    if entries.count >= capacity, let oldest = entries.indices.min(by: { entries[$0].lastUse < entries[$1].lastUse }) {
      entries.remove(at: oldest)
    }
    entries.append(Entry(tokens: prompt, keys: keys, values: values, lastUse: clock))
  }
}

extension KVCache {
  /// Zero keys/values in front so every layer has `width` positions.
  func leftPad(to width: Int) {
    guard length < width else { return }
    rebuild { x in
      let s = x.shape
      return Tensor.cat([Tensor.zeros([s[0], s[1], width - s[2], s[3]], dtype: x.dtype, device: x.device), x], dim: 2)
    }
  }

  /// Concatenates `other`'s rows after these (both must have the same length).
  func appendRows(of other: KVCache) {
    precondition(length == other.length || length == 0 || other.length == 0, "appendRows: lengths \(length) and \(other.length)")
    for l in 0..<layerCount {
      let ks = [keys(l), other.keys(l)].compactMap { $0 }, vs = [values(l), other.values(l)].compactMap { $0 }
      guard !ks.isEmpty else { continue }
      rebuildLayer(l, keys: ks.count == 1 ? ks[0] : Tensor.cat(ks, dim: 0), values: vs.count == 1 ? vs[0] : Tensor.cat(vs, dim: 0))
    }
  }

  /// Drops the first `n` positions of every layer.
  func dropLeading(_ n: Int) {
    rebuild { $0.narrow(dim: 2, start: n, length: $0.size(2) - n) }
  }
}

/// How one row of a batch picks its tokens; rows of one decode may differ (a server batches requests).
public final class RowSampler {
  public let options: SamplingOptions
  public let generator: Generator?
  public init(options: SamplingOptions, seed: UInt64?) {
    self.options = options
    generator = seed.map { Generator(seed: $0) } ?? (options.temperature > 0 ? Generator(seed: UInt64.random(in: 0...UInt64.max)) : nil)
  }
}

extension CausalLM {
  /// The next token of each row of `logits` [rows, V], each row by its own sampler.
  public func pickEach(_ logits: Tensor, samplers: [RowSampler]) -> [Int] {
    precondition(logits.size(0) == samplers.count, "pickEach: \(logits.size(0)) rows, \(samplers.count) samplers")
    return withoutGradients {
      if samplers.allSatisfy({ $0.options.temperature <= 0 }) {
        return logits.argmax(dim: -1).toArray(Int64.self).map { Int($0) }
      }
      return samplers.enumerated().map { r, s in
        let row = logits.narrow(dim: 0, start: r, length: 1)
        return Int(pick(row, options: s.options, generator: s.generator).toArray(Int64.self)[0])
      }
    }
  }
}

/// New tokens → text pieces as they come, for streaming. Pieces concatenate to exactly the text of the
/// whole completion (decoded at once, special tokens skipped) cut before the first stop string.
///
/// A piece is held back while the text so far ends in an incomplete UTF-8 sequence (decoded as U+FFFD)
/// or in what could be the start of a stop string, and released when the next tokens settle it.
public struct TextStreamer {
  public let tokenizer: any TextTokenizer
  public let stopStrings: [String]
  public private(set) var tokens: [Int] = []
  /// Characters of the completion already handed out.
  private var emitted = ""
  /// Set once a stop string was seen; no further text comes out.
  public private(set) var stopped = false

  public init(tokenizer: any TextTokenizer, stopStrings: [String] = []) {
    self.tokenizer = tokenizer
    self.stopStrings = stopStrings.filter { !$0.isEmpty }
  }

  /// Adds one token; returns the text that is now certain (maybe empty). Check `stopped` afterwards.
  public mutating func push(_ token: Int) -> String {
    guard !stopped else { return "" }
    tokens.append(token)
    let text = tokenizer.decode(tokens, skipSpecialTokens: true)
    if let cut = firstStop(in: text) {
      stopped = true
      return release(upTo: String(text[..<cut]))
    }
    var safe = text
    while safe.hasSuffix("\u{FFFD}") { safe.removeLast() }
    // Keep back a tail that a stop string could still complete.
    var hold = 0
    for s in stopStrings {
      for n in stride(from: min(s.count - 1, safe.count), to: 0, by: -1) where safe.hasSuffix(String(s.prefix(n))) {
        hold = max(hold, n)
        break
      }
    }
    return release(upTo: String(safe.dropLast(hold)))
  }

  /// What is still held back, at the end of the completion (a partial character or stop-string prefix).
  public mutating func finish() -> String {
    guard !stopped else { return "" }
    return release(upTo: tokenizer.decode(tokens, skipSpecialTokens: true))
  }

  /// The whole text handed out so far.
  public var text: String { emitted }

  private func firstStop(in text: String) -> String.Index? {
    stopStrings.compactMap { text.range(of: $0)?.lowerBound }.min()
  }

  private mutating func release(upTo prefix: String) -> String {
    // Decoding more tokens can rewrite the tail (a U+FFFD becoming a character); only ever hand out a
    // continuation of what was already sent.
    // Compared by Unicode scalars: a combining mark joins the previous character, which Character-wise
    // comparison would see as a different string.
    let sent = emitted.unicodeScalars, now = prefix.unicodeScalars
    guard now.count > sent.count, now.starts(with: sent) else { return "" }
    var piece = String.UnicodeScalarView()
    piece.append(contentsOf: now.dropFirst(sent.count))
    emitted = prefix
    return String(piece)
  }
}
