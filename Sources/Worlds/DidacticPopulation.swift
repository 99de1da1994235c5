import Foundation

/// The didactic data-generating process of METHODS.md §1.2: a heterogeneous population of person types,
/// each with its own preferences over a small, fully enumerable response space, so the population's choice
/// share `p*(·|x)` and every query's choice probabilities are known exactly.
///
/// **(choice)** The source paper publishes no code; this project's reconstruction is:
/// - A response is L tokens over a vocabulary of V (written as letters); the response space has V^L
///   elements, indexed row-major with the first token most significant.
/// - Type m prefers, at prompt x and position l, tokens near a centre `c_{m,x,l}` on a circle of V tokens:
///   `q_{m,x,l}(v) ∝ exp(sharpness · cos(2π(v − c_{m,x,l})/V))` (a discrete von Mises distribution).
///   The centres are `c_{m,x,l} = s_{x,l} + m·V/M`: a prompt- and position-dependent shift `s_{x,l}`,
///   drawn uniformly from [0, V) by `SplitMix64(seed)` in prompt-major then position order, plus an offset
///   that spreads the M types evenly around the circle, so the types favour different regions of
///   response space at every position.
/// - A type's preference over whole responses is the product over positions,
///   `p_m(y|x) = Π_l q_{m,x,l}(y_l)`; the population target is `p*(y|x) = Σ_m w_m p_m(y|x)` with the
///   weights normalised to sum to 1.
/// - A query shows a random person (type m ~ w) K candidates; the person picks `y_i` with the Luce
///   probability `p_m(y_i|x) / Σ_k p_m(y_k|x)`.
/// - The pre-training prior is `p_0(y|x) = priorMix · p_maj(y|x) + (1 − priorMix) / V^L`, where `maj` is the
///   type with the largest weight (the first on a tie): a pre-trained model fitted to it is biased towards
///   the majority, so feedback is needed to become inclusive.
///
/// All distributions are tabulated when the population is built (`prompts × types × V^L` doubles, bounded
/// by `PopulationConfig.maxTableEntries`). Indices out of range are programming errors and trap.
public struct DidacticPopulation: ChoicePopulation {
  public let config: PopulationConfig
  /// The type weights normalised to sum to 1.
  public let weights: [Double]
  /// The type with the largest weight (the first on a tie); the pre-training prior leans towards it.
  public let majorityType: Int
  /// V^L, the number of responses per prompt.
  public let responseCount: Int

  /// `centres[m][x][l]` = c_{m,x,l}.
  private let centres: [[[Double]]]
  /// `logTokenProbabilities[m][x][l][v]` = log q_{m,x,l}(v).
  private let logTokenProbabilities: [[[[Double]]]]
  /// `typeTables[m][x]` = p_m(·|x) over all responses.
  private let typeTables: [[[Double]]]
  private let targetTable: [[Double]]
  private let priorTable: [[Double]]

  public var prompts: Int { config.prompts }
  public var vocabulary: Int { config.vocabulary }
  public var length: Int { config.length }
  public var types: Int { config.types }

  /// Builds the population; throws the config's validation error when it is malformed.
  public init(_ config: PopulationConfig = PopulationConfig()) throws {
    try config.validate()
    self.config = config
    let v = config.vocabulary, l = config.length, m = config.types, xs = config.prompts
    let total = config.weights.reduce(0, +)
    weights = config.weights.map { $0 / total }
    var best = 0
    for i in 1..<max(m, 1) where weights[i] > weights[best] { best = i }
    majorityType = best
    responseCount = config.responseCountIfValid!

    var rng = SplitMix64(seed: config.seed)
    var shifts = [[Double]](repeating: [Double](repeating: 0, count: l), count: xs)
    for x in 0..<xs { for pos in 0..<l { shifts[x][pos] = rng.uniform() * Double(v) } }
    centres = (0..<m).map { type in
      shifts.map { row in row.map { $0 + Double(type) * Double(v) / Double(m) } }
    }

    let sharpness = config.sharpness
    logTokenProbabilities = centres.map { perPrompt in
      perPrompt.map { perPosition in
        perPosition.map { c in
          let logits = (0..<v).map { token in sharpness * cos(2 * Double.pi * (Double(token) - c) / Double(v)) }
          let top = logits.max()!
          let lse = top + log(logits.reduce(0) { $0 + exp($1 - top) })
          return logits.map { $0 - lse }
        }
      }
    }

    let n = responseCount
    var tables = [[[Double]]]()
    tables.reserveCapacity(m)
    for type in 0..<m {
      var perPrompt = [[Double]]()
      for x in 0..<xs {
        let q = logTokenProbabilities[type][x].map { $0.map(exp) }
        // Build the product table one position at a time: after position `pos` the table has V^(pos+1)
        // entries in row-major order, so the first token ends up most significant.
        var table = [1.0]
        for pos in 0..<l {
          var next = [Double](repeating: 0, count: table.count * v)
          for i in 0..<table.count { for token in 0..<v { next[i * v + token] = table[i] * q[pos][token] } }
          table = next
        }
        precondition(table.count == n)
        let sum = table.reduce(0, +)
        perPrompt.append(table.map { $0 / sum })
      }
      tables.append(perPrompt)
    }
    typeTables = tables

    let w = weights
    targetTable = (0..<xs).map { x in
      var t = [Double](repeating: 0, count: n)
      for type in 0..<m { for i in 0..<n { t[i] += w[type] * tables[type][x][i] } }
      let sum = t.reduce(0, +)
      return t.map { $0 / sum }
    }
    let mix = config.priorMix, uniform = 1 / Double(n)
    priorTable = (0..<xs).map { x in
      let p = tables[best][x].map { mix * $0 + (1 - mix) * uniform }
      let sum = p.reduce(0, +)
      return p.map { $0 / sum }
    }
  }

  // MARK: Responses

  /// The tokens (each in 0..<V) of response `index`, first token most significant.
  public func response(_ index: Int) -> [Int] {
    precondition((0..<responseCount).contains(index), "response index \(index) out of range 0..<\(responseCount)")
    var tokens = [Int](repeating: 0, count: length)
    var rest = index
    for pos in stride(from: length - 1, through: 0, by: -1) {
      tokens[pos] = rest % vocabulary
      rest /= vocabulary
    }
    return tokens
  }

  /// The index of a response given as tokens; inverse of `response(_:)`.
  public func index(of response: [Int]) -> Int {
    precondition(response.count == length, "a response has \(length) tokens, got \(response.count)")
    var index = 0
    for token in response {
      precondition((0..<vocabulary).contains(token), "token \(token) out of range 0..<\(vocabulary)")
      index = index * vocabulary + token
    }
    return index
  }

  // MARK: Distributions

  /// The centre c_{m,x,l} of type m's token preference at prompt x, position l (on the circle [0, V)
  /// taken modulo V).
  public func centre(type: Int, prompt: Int, position: Int) -> Double {
    centres[type][prompt][position]
  }

  /// q_{m,x,l}(·): type m's preference over the V tokens at position l of a response to prompt x.
  public func tokenDistribution(type: Int, prompt: Int, position: Int) -> [Double] {
    logTokenProbabilities[type][prompt][position].map(exp)
  }

  /// p_m(·|x) over all `responseCount` responses (sums to 1).
  public func typeDistribution(type: Int, prompt: Int) -> [Double] {
    checkType(type)
    checkPrompt(prompt)
    return typeTables[type][prompt]
  }

  /// The population's choice share p*(·|x) = Σ_m w_m p_m(·|x): what an inclusive model should match.
  public func target(prompt: Int) -> [Double] {
    checkPrompt(prompt)
    return targetTable[prompt]
  }

  /// The pre-training prior p_0(·|x) = priorMix · p_majority(·|x) + (1 − priorMix) · uniform.
  public func prior(prompt: Int) -> [Double] {
    checkPrompt(prompt)
    return priorTable[prompt]
  }

  /// log p_m(y|x) = Σ_l log q_{m,x,l}(y_l), exact even where the product would underflow.
  public func logProbability(type: Int, prompt: Int, response index: Int) -> Double {
    checkType(type)
    checkPrompt(prompt)
    let q = logTokenProbabilities[type][prompt]
    var sum = 0.0
    for (pos, token) in response(index).enumerated() { sum += q[pos][token] }
    return sum
  }

  // MARK: Text

  /// The text of prompt x, e.g. "prompt 3:".
  public func promptText(_ x: Int) -> String {
    checkPrompt(x)
    return "prompt \(x):"
  }

  /// The text of a response: one letter per token, token 0 = "a", with no separators (e.g. "bhc").
  public func responseText(_ index: Int) -> String {
    String(String.UnicodeScalarView(response(index).map { Unicode.Scalar(UInt8(97 + $0)) }))
  }

  /// The response index spelled by `text` (inverse of `responseText`), or nil if it is not a response.
  public func index(ofText text: String) -> Int? {
    let scalars = Array(text.unicodeScalars)
    guard scalars.count == length else { return nil }
    var tokens = [Int]()
    for s in scalars {
      let t = Int(s.value) - 97
      guard (0..<vocabulary).contains(t) else { return nil }
      tokens.append(t)
    }
    return index(of: tokens)
  }

  /// Writes queries as JSONL in the project's K-way choice format, one
  /// `{"prompt": "prompt 0:", "candidates": ["abc", …], "choice": i}` line each (texts from `promptText` and
  /// `responseText`, `choice` an index into `candidates`), so `PreferenceData.loadChoices` reads them.
  /// Written atomically (temp file + rename). Throws when a prompt, candidate or choice is out of range.
  public func writeQueries(_ queries: [(prompt: Int, candidates: [Int], choice: Int)], to url: URL) throws {
    var out = ""
    for (n, q) in queries.enumerated() {
      guard (0..<prompts).contains(q.prompt) else {
        throw WorldsError("query \(n): prompt \(q.prompt) is out of range 0..<\(prompts)")
      }
      guard q.candidates.count >= 2 else {
        throw WorldsError("query \(n): needs at least 2 candidates, got \(q.candidates.count)")
      }
      if let bad = q.candidates.first(where: { !(0..<responseCount).contains($0) }) {
        throw WorldsError("query \(n): candidate \(bad) is out of range 0..<\(responseCount)")
      }
      guard (0..<q.candidates.count).contains(q.choice) else {
        throw WorldsError("query \(n): choice \(q.choice) is out of range for \(q.candidates.count) candidates")
      }
      let object: [String: Any] = ["prompt": promptText(q.prompt), "candidates": q.candidates.map(responseText),
                                   "choice": q.choice]
      let line = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
      out += String(decoding: line, as: UTF8.self) + "\n"
    }
    do {
      try Data(out.utf8).write(to: url, options: .atomic)
    } catch {
      throw WorldsError("\(url.path): could not write queries: \(error.localizedDescription)")
    }
  }

  // MARK: Private


  private func checkType(_ type: Int) {
    precondition((0..<types).contains(type), "type \(type) out of range 0..<\(types)")
  }

  private func checkPrompt(_ prompt: Int) {
    precondition((0..<prompts).contains(prompt), "prompt \(prompt) out of range 0..<\(prompts)")
  }
}
