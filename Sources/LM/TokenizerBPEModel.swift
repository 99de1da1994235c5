import Foundation

/// The BPE merge step of a byte-level tokenizer, on byte strings: each pre-token starts as one symbol per
/// byte and merges are applied lowest rank first (leftmost first among equal ranks), which is the order
/// the Rust `tokenizers` library uses.
struct BPEMergeModel: Sendable {
  /// Id of the single-byte token for each byte, or -1 when the vocabulary lacks it.
  let byteIds: [Int32]
  /// (left id << 32 | right id) → (rank << 32 | merged id).
  let merges: [UInt64: UInt64]
  /// With `ignore_merges` (Llama-3), a pre-token that is itself a vocabulary entry is emitted whole.
  let wholeTokens: [[UInt8]: Int32]
  let ignoreMerges: Bool
  let unknownId: Int32?
  let fuseUnknown: Bool
  let cache = BPEWordCache()

  /// Words up to this many bytes go through the quadratic scan; longer ones (long whitespace or symbol
  /// runs) use a heap so a pathological input stays O(n log n). Both give identical results.
  static let heapThreshold = 48

  @inline(__always) static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
    UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
  }

  func encode(_ word: [UInt8], into out: inout [Int]) {
    if word.isEmpty { return }
    if ignoreMerges, let id = wholeTokens[word] {
      out.append(Int(id))
      return
    }
    let cacheable = word.count <= 64
    if cacheable, let hit = cache.lookup(word) {
      for id in hit { out.append(Int(id)) }
      return
    }
    var symbols = initialSymbols(word)
    if symbols.count > 1 {
      if symbols.count > Self.heapThreshold {
        symbols = mergeWithHeap(symbols)
      } else {
        mergeByScan(&symbols)
      }
    }
    if cacheable { cache.store(word, symbols) }
    for id in symbols { out.append(Int(id)) }
  }

  /// One symbol per byte; bytes without a token become the unknown token (fused if asked) or vanish,
  /// as in `tokenizers` (which can only happen with an incomplete byte-level vocabulary).
  private func initialSymbols(_ word: [UInt8]) -> [Int32] {
    var symbols: [Int32] = []
    symbols.reserveCapacity(word.count)
    var lastWasUnknown = false
    for b in word {
      let id = byteIds[Int(b)]
      if id >= 0 {
        symbols.append(id)
        lastWasUnknown = false
      } else if let unknownId {
        if !(fuseUnknown && lastWasUnknown) { symbols.append(unknownId) }
        lastWasUnknown = true
      }
    }
    return symbols
  }

  /// Repeatedly merges the leftmost pair of lowest rank.
  func mergeByScan(_ symbols: inout [Int32]) {
    while symbols.count > 1 {
      var bestRank = UInt64.max
      var bestIndex = -1
      var bestId: Int32 = 0
      for i in 0..<(symbols.count - 1) {
        if let entry = merges[Self.pairKey(symbols[i], symbols[i + 1])] {
          let rank = entry >> 32
          if rank < bestRank {
            bestRank = rank
            bestIndex = i
            bestId = Int32(truncatingIfNeeded: entry & 0xFFFF_FFFF)
          }
        }
      }
      if bestIndex < 0 { break }
      symbols[bestIndex] = bestId
      symbols.remove(at: bestIndex + 1)
    }
  }

  /// The same merge order as `mergeByScan`, with a priority queue keyed by (rank, original position)
  /// over a linked list of symbols; stale queue entries are skipped when popped.
  func mergeWithHeap(_ initial: [Int32]) -> [Int32] {
    let n = initial.count
    var ids = initial
    var next = [Int](0..<n).map { $0 + 1 }
    next[n - 1] = -1
    var prev = [Int](0..<n).map { $0 - 1 }
    var alive = [Bool](repeating: true, count: n)
    var heap = MergeHeap()
    for i in 0..<(n - 1) {
      if let entry = merges[Self.pairKey(ids[i], ids[i + 1])] {
        heap.push(rank: entry >> 32, position: i, newId: Int32(truncatingIfNeeded: entry & 0xFFFF_FFFF))
      }
    }
    while let top = heap.pop() {
      let pos = top.position
      guard alive[pos], next[pos] >= 0 else { continue }
      let right = next[pos]
      guard let entry = merges[Self.pairKey(ids[pos], ids[right])],
            Int32(truncatingIfNeeded: entry & 0xFFFF_FFFF) == top.newId else { continue }
      ids[pos] = top.newId
      alive[right] = false
      next[pos] = next[right]
      if next[right] >= 0 { prev[next[right]] = pos }
      if prev[pos] >= 0, let e = merges[Self.pairKey(ids[prev[pos]], ids[pos])] {
        heap.push(rank: e >> 32, position: prev[pos], newId: Int32(truncatingIfNeeded: e & 0xFFFF_FFFF))
      }
      if next[pos] >= 0, let e = merges[Self.pairKey(ids[pos], ids[next[pos]])] {
        heap.push(rank: e >> 32, position: pos, newId: Int32(truncatingIfNeeded: e & 0xFFFF_FFFF))
      }
    }
    var out: [Int32] = []
    var i = 0
    while i >= 0 {
      out.append(ids[i])
      i = next[i]
    }
    return out
  }
}

/// A binary min-heap of candidate merges ordered by (rank, position).
struct MergeHeap {
  struct Item {
    var rank: UInt64
    var position: Int
    var newId: Int32
  }

  private var items: [Item] = []

  @inline(__always) private static func less(_ a: Item, _ b: Item) -> Bool {
    a.rank != b.rank ? a.rank < b.rank : a.position < b.position
  }

  mutating func push(rank: UInt64, position: Int, newId: Int32) {
    items.append(Item(rank: rank, position: position, newId: newId))
    var child = items.count - 1
    while child > 0 {
      let parent = (child - 1) / 2
      if !Self.less(items[child], items[parent]) { break }
      items.swapAt(child, parent)
      child = parent
    }
  }

  mutating func pop() -> Item? {
    guard let first = items.first else { return nil }
    let last = items.removeLast()
    if !items.isEmpty {
      items[0] = last
      var parent = 0
      while true {
        let left = 2 * parent + 1
        let right = left + 1
        var smallest = parent
        if left < items.count && Self.less(items[left], items[smallest]) { smallest = left }
        if right < items.count && Self.less(items[right], items[smallest]) { smallest = right }
        if smallest == parent { break }
        items.swapAt(parent, smallest)
        parent = smallest
      }
    }
    return first
  }
}

/// Merge results per pre-token. Shared by copies of a tokenizer and safe across threads (a lock around a
/// dictionary); emptied when it grows past `capacity` so memory stays bounded on endless distinct input.
final class BPEWordCache: @unchecked Sendable {
  private let lock = NSLock()
  private var entries: [[UInt8]: [Int32]] = [:]
  let capacity = 100_000

  func lookup(_ word: [UInt8]) -> [Int32]? {
    lock.lock()
    defer { lock.unlock() }
    return entries[word]
  }

  func store(_ word: [UInt8], _ ids: [Int32]) {
    lock.lock()
    defer { lock.unlock() }
    if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
    entries[word] = ids
  }
}
