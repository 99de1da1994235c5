/// NumPy's default generator, bit for bit: `numpy.random.default_rng(seed)`, i.e. `PCG64` seeded through
/// `SeedSequence(seed)`, with `Generator.random()` doubles.
///
/// Gymnasium seeds every environment this way (`gymnasium.utils.seeding.np_random`), so with it a Frozen
/// Lake episode reset with seed s slips exactly as Gymnasium's does, and `generate_random_map(size, p,
/// seed)` draws the same map. SplitMix64 stays the project's own generator everywhere else.
public struct NumPyPCG64: RandomNumberGenerator, Sendable {
  // The 128-bit LCG state and increment, as (high, low) words.
  private var stateHigh: UInt64, stateLow: UInt64
  private let incHigh: UInt64, incLow: UInt64

  private static let multHigh: UInt64 = 2_549_297_995_355_413_924
  private static let multLow: UInt64 = 4_865_540_595_714_422_341

  /// `PCG64(SeedSequence(seed))`: the seed's 32-bit words are mixed into a pool of four, which then
  /// gives the 128-bit state and increment.
  public init(seed: UInt64) {
    let words = NumPyPCG64.seedSequenceState(entropy: seed, words: 8)
    let s0 = UInt64(words[0]) | UInt64(words[1]) << 32
    let s1 = UInt64(words[2]) | UInt64(words[3]) << 32
    let i0 = UInt64(words[4]) | UInt64(words[5]) << 32
    let i1 = UInt64(words[6]) | UInt64(words[7]) << 32
    // pcg64_set_seed: state = (s0 << 64) | s1, sequence = (i0 << 64) | i1.
    incHigh = i0 << 1 | i1 >> 63
    incLow = i1 << 1 | 1
    stateHigh = 0
    stateLow = 0
    step()
    let (low, carry) = stateLow.addingReportingOverflow(s1)
    stateLow = low
    stateHigh = stateHigh &+ s0 &+ (carry ? 1 : 0)
    step()
  }

  private mutating func step() {
    // state = state · mult + inc (mod 2¹²⁸)
    let (hi, lo) = stateLow.multipliedFullWidth(by: NumPyPCG64.multLow)
    var high = hi &+ stateHigh &* NumPyPCG64.multLow &+ stateLow &* NumPyPCG64.multHigh
    let (low, carry) = lo.addingReportingOverflow(incLow)
    high = high &+ incHigh &+ (carry ? 1 : 0)
    stateHigh = high
    stateLow = low
  }

  /// The next 64 bits (PCG's XSL-RR output of the advanced state).
  public mutating func next() -> UInt64 {
    step()
    let x = stateHigh ^ stateLow
    let rot = stateHigh >> 58
    return x >> rot | x << ((64 - rot) & 63)
  }

  /// `Generator.random()`: a double in [0, 1) from the top 53 bits.
  public mutating func random() -> Double {
    Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
  }

  /// `SeedSequence(entropy).generate_state(words, uint32)` for a non-negative integer entropy and no
  /// spawn key (NumPy's `bit_generator.pyx`).
  static func seedSequenceState(entropy: UInt64, words: Int) -> [UInt32] {
    let initA: UInt32 = 0x43b0_d7e5, multA: UInt32 = 0x931e_8875
    let initB: UInt32 = 0x8b51_f9dd, multB: UInt32 = 0x58f3_8ded
    let mixL: UInt32 = 0xca01_f9dd, mixR: UInt32 = 0x4973_f715
    // The integer as little-endian 32-bit words (0 is one word).
    var entropyWords: [UInt32] = []
    var n = entropy
    if n == 0 { entropyWords = [0] }
    while n > 0 {
      entropyWords.append(UInt32(truncatingIfNeeded: n))
      n >>= 32
    }
    var hashConst = initA
    func hashmix(_ value: UInt32) -> UInt32 {
      var v = value ^ hashConst
      hashConst = hashConst &* multA
      v = v &* hashConst
      return v ^ (v >> 16)
    }
    func mix(_ x: UInt32, _ y: UInt32) -> UInt32 {
      let r = mixL &* x &- mixR &* y
      return r ^ (r >> 16)
    }
    var pool = [UInt32](repeating: 0, count: 4)
    for i in 0..<4 { pool[i] = hashmix(i < entropyWords.count ? entropyWords[i] : 0) }
    for src in 0..<4 {
      for dst in 0..<4 where src != dst { pool[dst] = mix(pool[dst], hashmix(pool[src])) }
    }
    if entropyWords.count > 4 {
      for src in 4..<entropyWords.count {
        for dst in 0..<4 { pool[dst] = mix(pool[dst], hashmix(entropyWords[src])) }
      }
    }
    var out: [UInt32] = []
    var constB = initB
    for i in 0..<words {
      var v = pool[i % 4] ^ constB
      constB = constB &* multB
      v = v &* constB
      out.append(v ^ (v >> 16))
    }
    return out
  }
}
