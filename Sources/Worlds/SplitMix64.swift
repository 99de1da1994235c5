/// A small, fast, seedable generator (Steele, Lea & Flood's SplitMix64), so every world built from a
/// seed reproduces bit for bit on any machine — `SystemRandomNumberGenerator` cannot be seeded.
///
/// Not cryptographic. Two generators with the same seed produce the same stream.
public struct SplitMix64: RandomNumberGenerator, Sendable {
  public private(set) var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// A double in [0, 1) with 53 random bits (every value a multiple of 2⁻⁵³).
  public mutating func uniform() -> Double {
    Double(next() >> 11) * 0x1.0p-53
  }

  /// An index drawn with probability proportional to `probs[i]`. The weights need not sum to 1 (they are
  /// normalised by their total); entries that are zero are never drawn. Traps on an empty list, a negative
  /// or non-finite entry, or an all-zero list (programming errors, not user input).
  public mutating func categorical(_ probs: [Double]) -> Int {
    precondition(!probs.isEmpty, "categorical: empty probability list")
    var total = 0.0
    var last = -1
    for i in 0..<probs.count {
      let p = probs[i]
      precondition(p >= 0 && p.isFinite, "categorical: probs[\(i)] = \(p) is not a non-negative finite number")
      total += p
      if p > 0 { last = i }
    }
    precondition(total > 0, "categorical: all probabilities are zero")
    let u = uniform() * total
    var accumulated = 0.0
    for i in 0..<probs.count {
      accumulated += probs[i]
      if u < accumulated { return i }
    }
    // Rounding can leave `u` a hair above the running sum; the answer is then the last possible index.
    return last
  }
}
