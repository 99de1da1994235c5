import Foundation

/// The sizes and shape of the didactic preference population (METHODS.md §1.2). The defaults keep every
/// probability exactly computable and every experiment to minutes on two CPU cores: 4 prompts, responses of
/// 3 tokens over 8 letters (512 responses per prompt), 3 types weighted 0.5 / 0.3 / 0.2, pairwise queries.
///
/// Decoding fills in any missing key with its default, so a run config may name only what it changes.
public struct PopulationConfig: Codable, Sendable, Equatable {
  /// Number of prompts x.
  public var prompts: Int
  /// Tokens per position V (2…26: responses are written as the letters a…z).
  public var vocabulary: Int
  /// Tokens per response L; the response space has V^L elements.
  public var length: Int
  /// Number of person types M.
  public var types: Int
  /// Type weights w_m: `types` positive entries, normalised by `DidacticPopulation` (need not sum to 1).
  public var weights: [Double]
  /// How peaked each type's token preferences are (0 = uniform).
  public var sharpness: Double
  /// The pre-training prior is `priorMix · p_majority + (1 − priorMix) · uniform`, in [0, 1].
  public var priorMix: Double
  /// K, the number of responses shown per query (at least 2).
  public var candidates: Int
  /// Seeds the preference centres; the same seed and config give the same world.
  public var seed: UInt64

  public init(prompts: Int = 4, vocabulary: Int = 8, length: Int = 3, types: Int = 3,
              weights: [Double] = [0.5, 0.3, 0.2], sharpness: Double = 2.0, priorMix: Double = 0.9,
              candidates: Int = 2, seed: UInt64 = 0) {
    self.prompts = prompts
    self.vocabulary = vocabulary
    self.length = length
    self.types = types
    self.weights = weights
    self.sharpness = sharpness
    self.priorMix = priorMix
    self.candidates = candidates
    self.seed = seed
  }

  enum CodingKeys: String, CodingKey {
    case prompts, vocabulary, length, types, weights, sharpness, priorMix, candidates, seed
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = PopulationConfig()
    prompts = try c.decodeIfPresent(Int.self, forKey: .prompts) ?? d.prompts
    vocabulary = try c.decodeIfPresent(Int.self, forKey: .vocabulary) ?? d.vocabulary
    length = try c.decodeIfPresent(Int.self, forKey: .length) ?? d.length
    types = try c.decodeIfPresent(Int.self, forKey: .types) ?? d.types
    weights = try c.decodeIfPresent([Double].self, forKey: .weights) ?? d.weights
    sharpness = try c.decodeIfPresent(Double.self, forKey: .sharpness) ?? d.sharpness
    priorMix = try c.decodeIfPresent(Double.self, forKey: .priorMix) ?? d.priorMix
    candidates = try c.decodeIfPresent(Int.self, forKey: .candidates) ?? d.candidates
    seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
  }

  /// Largest response space the population will tabulate (V^L).
  public static let maxResponses = 1 << 20
  /// Largest `prompts × types × V^L` table of exact probabilities the population will hold in memory.
  public static let maxTableEntries = 1 << 24

  /// V^L, or nil when it exceeds `maxResponses` (or overflows).
  var responseCountIfValid: Int? {
    guard vocabulary >= 1, length >= 1 else { return nil }
    var n = 1
    for _ in 0..<length {
      let (m, overflow) = n.multipliedReportingOverflow(by: vocabulary)
      if overflow || m > Self.maxResponses { return nil }
      n = m
    }
    return n
  }

  /// Throws a `WorldsError` naming the first offending field and what it should be.
  public func validate() throws {
    func fail(_ message: String) throws -> Never { throw WorldsError("population config: " + message) }
    if prompts < 1 { try fail("prompts must be at least 1 (got \(prompts))") }
    if vocabulary < 2 || vocabulary > 26 {
      try fail("vocabulary must be between 2 and 26, since responses are written as the letters a…z (got \(vocabulary))")
    }
    if length < 1 { try fail("length must be at least 1 (got \(length))") }
    guard let responses = responseCountIfValid else {
      try fail("vocabulary^length = \(vocabulary)^\(length) responses exceeds the limit of \(Self.maxResponses); "
        + "lower vocabulary or length")
    }
    if types < 1 { try fail("types must be at least 1 (got \(types))") }
    if weights.count != types {
      try fail("weights has \(weights.count) entr\(weights.count == 1 ? "y" : "ies") but types is \(types)")
    }
    for (i, w) in weights.enumerated() where !(w > 0 && w.isFinite) {
      try fail("weights[\(i)] must be positive and finite (got \(w))")
    }
    if !(sharpness >= 0 && sharpness.isFinite) {
      try fail("sharpness must be a finite number ≥ 0 (got \(sharpness))")
    }
    if !(priorMix >= 0 && priorMix <= 1) { try fail("priorMix must be in [0, 1] (got \(priorMix))") }
    if candidates < 2 { try fail("candidates must be at least 2 (got \(candidates))") }
    if candidates > responses {
      try fail("candidates (\(candidates)) exceeds the \(responses) responses per prompt")
    }
    let (pt, o1) = prompts.multipliedReportingOverflow(by: types)
    let (entries, o2) = pt.multipliedReportingOverflow(by: responses)
    if o1 || o2 || entries > Self.maxTableEntries {
      try fail("prompts × types × responses = \(prompts) × \(types) × \(responses) exceeds the limit of "
        + "\(Self.maxTableEntries) exact probabilities; lower prompts, types, vocabulary or length")
    }
  }
}
