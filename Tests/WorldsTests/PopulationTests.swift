import Foundation
import Testing
@testable import Worlds

/// Checks of the didactic population (METHODS.md §1.2) against exact values and sampling.
@Suite struct PopulationTests {
  let population: DidacticPopulation

  init() throws { population = try DidacticPopulation() }

  // MARK: Generator

  @Test func splitMixMatchesReferenceStream() {
    // Reference outputs of splitmix64 seeded with 0 (Vigna's splitmix64.c).
    var rng = SplitMix64(seed: 0)
    #expect(rng.next() == 0xE220_A839_7B1D_CDAF)
    #expect(rng.next() == 0x6E78_9E6A_A1B9_65F4)
    #expect(rng.next() == 0x06C4_5D18_8009_454F)
  }

  @Test func uniformAndCategoricalBehave() {
    var rng = SplitMix64(seed: 7)
    var sum = 0.0
    for _ in 0..<10_000 {
      let u = rng.uniform()
      #expect(u >= 0 && u < 1)
      sum += u
    }
    #expect(abs(sum / 10_000 - 0.5) < 5 * (1 / 12.0).squareRoot() / 100)  // 5σ of the mean
    var counts = [0, 0, 0, 0]
    for _ in 0..<20_000 { counts[rng.categorical([1, 0, 3, 0])] += 1 }
    #expect(counts[1] == 0 && counts[3] == 0)
    let share = Double(counts[2]) / 20_000
    #expect(abs(share - 0.75) < 5 * (0.75 * 0.25 / 20_000).squareRoot())
  }

  @Test func sameSeedSameWorldDifferentSeedDifferentWorld() throws {
    let again = try DidacticPopulation()
    let other = try DidacticPopulation(PopulationConfig(seed: 1))
    #expect(again.target(prompt: 2) == population.target(prompt: 2))
    #expect(other.centre(type: 0, prompt: 0, position: 0) != population.centre(type: 0, prompt: 0, position: 0))
    #expect(DidacticPopulation.kl(other.target(prompt: 0), population.target(prompt: 0)) > 0.01)
  }

  // MARK: Distributions

  @Test func everyDistributionSumsToOne() {
    #expect(population.responseCount == 512)
    for x in 0..<population.prompts {
      for m in 0..<population.types {
        let p = population.typeDistribution(type: m, prompt: x)
        #expect(p.count == 512)
        #expect(abs(p.reduce(0, +) - 1) < 1e-12, "type \(m) prompt \(x)")
        #expect(p.allSatisfy { $0 > 0 })
      }
      #expect(abs(population.target(prompt: x).reduce(0, +) - 1) < 1e-12, "target prompt \(x)")
      #expect(abs(population.prior(prompt: x).reduce(0, +) - 1) < 1e-12, "prior prompt \(x)")
    }
  }

  @Test func typeDistributionIsTheProductOfTheFormula() {
    // Recompute q_{m,x,l}(v) ∝ exp(sharpness · cos(2π(v − c)/V)) independently and multiply.
    let v = population.vocabulary, s = population.config.sharpness
    func q(_ m: Int, _ x: Int, _ l: Int) -> [Double] {
      let c = population.centre(type: m, prompt: x, position: l)
      let e = (0..<v).map { exp(s * cos(2 * Double.pi * (Double($0) - c) / Double(v))) }
      let z = e.reduce(0, +)
      return e.map { $0 / z }
    }
    for (m, x, index) in [(0, 0, 0), (1, 2, 137), (2, 3, 511)] {
      let y = population.response(index)
      let expected = (0..<population.length).reduce(1.0) { $0 * q(m, x, $1)[y[$1]] }
      let actual = population.typeDistribution(type: m, prompt: x)[index]
      #expect(abs(actual - expected) < 1e-12 * max(1, expected / 1e-3), "type \(m) prompt \(x) response \(index)")
      #expect(abs(actual / expected - 1) < 1e-10)
    }
    // Target is the weighted mixture; weights are normalised.
    let w = population.weights
    #expect(abs(w.reduce(0, +) - 1) < 1e-15)
    let i = 300
    let mixture = (0..<3).reduce(0.0) { $0 + w[$1] * population.typeDistribution(type: $1, prompt: 1)[i] }
    #expect(abs(population.target(prompt: 1)[i] - mixture) < 1e-15)
  }

  @Test func samplingFrequenciesMatchTheTarget() {
    let draws = 200_000
    let x = 1
    let p = population.target(prompt: x)
    var rng = SplitMix64(seed: 42)
    var counts = [Int](repeating: 0, count: p.count)
    for _ in 0..<draws { counts[rng.categorical(p)] += 1 }
    func within5Sigma(_ prob: Double, _ count: Int) -> Bool {
      let sigma = (prob * (1 - prob) / Double(draws)).squareRoot()
      return abs(Double(count) / Double(draws) - prob) < 5 * sigma
    }
    // The ten most likely responses, one at a time.
    let top = p.indices.sorted { p[$0] > p[$1] }.prefix(10)
    for i in top { #expect(within5Sigma(p[i], counts[i]), "response \(i): p = \(p[i]), count = \(counts[i])") }
    // Buckets by first token (8 buckets of 64 responses).
    for first in 0..<population.vocabulary {
      let range = (first * 64)..<((first + 1) * 64)
      let prob = range.reduce(0.0) { $0 + p[$1] }
      let count = range.reduce(0) { $0 + counts[$1] }
      #expect(within5Sigma(prob, count), "first token \(first): p = \(prob), count = \(count)")
    }
  }

  @Test func responseIndexRoundTrip() {
    var badTokens = [Int](), badIndex = [Int](), badText = [Int]()
    for i in 0..<population.responseCount {
      let y = population.response(i)
      if !(y.count == 3 && y.allSatisfy { (0..<8).contains($0) }) { badTokens.append(i) }
      if population.index(of: y) != i { badIndex.append(i) }
      if population.index(ofText: population.responseText(i)) != i { badText.append(i) }
    }
    #expect(badTokens.isEmpty, "responses with bad tokens: \(badTokens.prefix(5))…")
    #expect(badIndex.isEmpty, "index(of: response(i)) != i for \(badIndex.count) responses, e.g. \(badIndex.prefix(5))")
    #expect(badText.isEmpty, "text round trip fails for \(badText.count) responses, e.g. \(badText.prefix(5))")
    #expect(population.response(1) == [0, 0, 1])  // first token most significant
    #expect(population.response(8) == [0, 1, 0])
    #expect(population.response(511) == [7, 7, 7])
    #expect(population.responseText(population.index(of: [1, 7, 2])) == "bhc")
    #expect(population.promptText(3) == "prompt 3:")
    #expect(population.index(ofText: "abz") == nil)
    #expect(population.index(ofText: "ab") == nil)
  }

  // MARK: Choices

  @Test func luceChoiceMatchesTheFormulaExactly() throws {
    let candidates = [5, 200, 511]
    for m in 0..<population.types {
      let p = population.typeDistribution(type: m, prompt: 2)
      let z = p[5] + p[200] + p[511]
      let luce = population.choiceProbabilities(type: m, prompt: 2, candidates: candidates)
      #expect(luce.count == 3)
      for (i, c) in candidates.enumerated() { #expect(abs(luce[i] - p[c] / z) < 1e-12, "type \(m) candidate \(c)") }
    }
    // By hand: with sharpness 0 every type is uniform, so each of 3 candidates is picked with 1/3.
    let flat = try DidacticPopulation(PopulationConfig(sharpness: 0))
    for m in 0..<3 {
      for prob in flat.choiceProbabilities(type: m, prompt: 0, candidates: candidates) { #expect(abs(prob - 1 / 3.0) < 1e-15) }
    }
    // By hand: one position over two tokens, centre c; sharpness s gives q(0) ∝ e^{s cos(2π(0−c)/2)},
    // q(1) ∝ e^{s cos(2π(1−c)/2)}; Luce over {0, 1} is just q.
    let tiny = try DidacticPopulation(PopulationConfig(prompts: 1, vocabulary: 2, length: 1, types: 1, weights: [1], sharpness: 1.5))
    let c = tiny.centre(type: 0, prompt: 0, position: 0)
    let a = exp(1.5 * cos(-Double.pi * c)), b = exp(1.5 * cos(Double.pi * (1 - c)))
    let luce = tiny.choiceProbabilities(type: 0, prompt: 0, candidates: [0, 1])
    #expect(abs(luce[0] - a / (a + b)) < 1e-12 && abs(luce[1] - b / (a + b)) < 1e-12)
    // Population mixture = Σ w_m Luce_m.
    let mix = population.populationChoiceProbabilities(prompt: 2, candidates: candidates)
    for i in 0..<3 {
      let expected = (0..<3).reduce(0.0) {
        $0 + population.weights[$1] * population.choiceProbabilities(type: $1, prompt: 2, candidates: candidates)[i]
      }
      #expect(abs(mix[i] - expected) < 1e-15)
    }
    #expect(abs(mix.reduce(0, +) - 1) < 1e-12)
  }

  @Test func answersMatchChoiceProbabilitiesEmpirically() {
    // Candidates chosen so that the types disagree about them.
    let prompt = 0
    let candidates = (0..<3).map { m in
      let p = population.typeDistribution(type: m, prompt: prompt)
      return p.indices.max { p[$0] < p[$1] }!
    }
    #expect(Set(candidates).count == 3)
    let draws = 100_000
    var rng = SplitMix64(seed: 3)
    var byType = [[Int]](repeating: [0, 0, 0], count: 3)
    var overall = [0, 0, 0]
    var typeCounts = [0, 0, 0]
    for _ in 0..<draws {
      let (type, choice) = population.answer(prompt: prompt, candidates: candidates, rng: &rng)
      byType[type][choice] += 1
      overall[choice] += 1
      typeCounts[type] += 1
    }
    func close(_ prob: Double, _ count: Int, _ n: Int) -> Bool {
      let sigma = (prob * (1 - prob) / Double(n)).squareRoot()
      return abs(Double(count) / Double(n) - prob) < 5 * sigma + 1e-12
    }
    let expected = population.populationChoiceProbabilities(prompt: prompt, candidates: candidates)
    for i in 0..<3 { #expect(close(expected[i], overall[i], draws), "choice \(i): \(expected[i]) vs \(overall[i])") }
    for m in 0..<3 {
      #expect(close(population.weights[m], typeCounts[m], draws), "type \(m) frequency")
      let luce = population.choiceProbabilities(type: m, prompt: prompt, candidates: candidates)
      #expect(luce[m] > 0.5, "type \(m) should prefer its own favourite")
      for i in 0..<3 { #expect(close(luce[i], byType[m][i], typeCounts[m]), "type \(m) choice \(i)") }
    }
  }

  // MARK: KL and the shape of the world

  @Test func klValues() {
    let p = [0.5, 0.5], q = [0.25, 0.75]
    #expect(DidacticPopulation.kl(p, p) == 0)
    #expect(abs(DidacticPopulation.kl(p, q) - 0.5 * log(4.0 / 3.0)) < 1e-15)  // ½ln2 + ½ln(2/3)
    #expect(DidacticPopulation.kl(q, p) > 0)
    #expect(abs(DidacticPopulation.kl([1, 0], [0.5, 0.5]) - log(2.0)) < 1e-15)  // p = 0 term is 0
    #expect(abs(DidacticPopulation.kl([1, 0], [0, 1]) - log(1e300)) < 1e-9)  // q floored at 1e-300
    let targets = (0..<population.prompts).map { population.target(prompt: $0) }
    #expect(population.meanKL(model: targets) == 0)
    let priors = (0..<population.prompts).map { population.prior(prompt: $0) }
    let expected = (0..<population.prompts).reduce(0.0) { $0 + DidacticPopulation.kl(targets[$1], priors[$1]) } / 4
    #expect(population.meanKL(model: priors) > 0)
    #expect(abs(population.meanKL(model: priors) - expected) < 1e-15)
  }

  @Test func priorFavoursTheMajority() throws {
    #expect(population.majorityType == 0)
    for x in 0..<population.prompts {
      let p0 = population.prior(prompt: x)
      let majority = DidacticPopulation.kl(population.typeDistribution(type: 0, prompt: x), p0)
      let target = DidacticPopulation.kl(population.target(prompt: x), p0)
      #expect(majority < target, "prompt \(x): KL(p_maj‖p0) = \(majority), KL(p*‖p0) = \(target)")
    }
    // The majority is the largest weight wherever it sits.
    let shifted = try DidacticPopulation(PopulationConfig(weights: [1, 5, 2]))
    #expect(shifted.majorityType == 1)
    let y = 77
    let expected = 0.9 * shifted.typeDistribution(type: 1, prompt: 0)[y] + 0.1 / 512
    #expect(abs(shifted.prior(prompt: 0)[y] - expected) < 1e-15)
  }

  @Test func typesReallyDiffer() {
    for x in 0..<population.prompts {
      for a in 0..<population.types {
        for b in 0..<population.types where a != b {
          let d = DidacticPopulation.kl(population.typeDistribution(type: a, prompt: x),
                                        population.typeDistribution(type: b, prompt: x))
          #expect(d > 0.1, "prompt \(x): KL(p_\(a) ‖ p_\(b)) = \(d)")
        }
      }
    }
  }

  // MARK: Config

  @Test func validateRejectsBadConfigsNamingTheField() {
    let cases: [(PopulationConfig, String)] = [
      (PopulationConfig(prompts: 0), "prompts"),
      (PopulationConfig(vocabulary: 1), "vocabulary"),
      (PopulationConfig(vocabulary: 27), "vocabulary"),
      (PopulationConfig(length: 0), "length"),
      (PopulationConfig(vocabulary: 26, length: 6), "vocabulary^length"),
      (PopulationConfig(types: 0, weights: []), "types"),
      (PopulationConfig(weights: [0.5, 0.5]), "weights has 2 entries but types is 3"),
      (PopulationConfig(weights: [0.5, -0.1, 0.2]), "weights[1]"),
      (PopulationConfig(weights: [0.5, .nan, 0.2]), "weights[1]"),
      (PopulationConfig(sharpness: -1), "sharpness"),
      (PopulationConfig(sharpness: .infinity), "sharpness"),
      (PopulationConfig(priorMix: 1.5), "priorMix"),
      (PopulationConfig(priorMix: .nan), "priorMix"),
      (PopulationConfig(candidates: 1), "candidates"),
      (PopulationConfig(vocabulary: 2, length: 1, candidates: 3), "candidates"),
      (PopulationConfig(prompts: 100, vocabulary: 16, length: 5, types: 3), "prompts × types × responses"),
    ]
    for (config, field) in cases {
      let error = #expect(throws: WorldsError.self) { try config.validate() }
      #expect(error?.message.contains(field) == true, "\(error?.message ?? "no error") should name \(field)")
      #expect(throws: WorldsError.self) { _ = try DidacticPopulation(config) }
    }
    #expect(throws: Never.self) { try PopulationConfig().validate() }
  }

  @Test func configDecodesWithDefaultsAndRoundTrips() throws {
    let partial = try JSONDecoder().decode(PopulationConfig.self, from: Data(#"{"types": 2, "weights": [2, 1]}"#.utf8))
    #expect(partial == PopulationConfig(types: 2, weights: [2, 1]))
    let full = PopulationConfig(prompts: 2, vocabulary: 5, length: 2, types: 2, weights: [1, 1], sharpness: 3,
                                priorMix: 0.5, candidates: 4, seed: 99)
    let decoded = try JSONDecoder().decode(PopulationConfig.self, from: try JSONEncoder().encode(full))
    #expect(decoded == full)
    let p = try DidacticPopulation(partial)
    #expect(p.weights == [2.0 / 3.0, 1.0 / 3.0])
  }

  // MARK: Files

  @Test func writeQueriesWritesParseableJSONL() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("worlds-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("queries.jsonl")
    var rng = SplitMix64(seed: 11)
    var queries: [(prompt: Int, candidates: [Int], choice: Int)] = []
    for n in 0..<5 {
      let prompt = n % population.prompts
      let candidates = [Int(rng.next() % 512), Int(rng.next() % 512), Int(rng.next() % 512)]
      let (_, choice) = population.answer(prompt: prompt, candidates: candidates, rng: &rng)
      queries.append((prompt, candidates, choice))
    }
    try population.writeQueries(queries, to: url)
    let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 5)
    for (line, q) in zip(lines, queries) {
      let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
      #expect(Set(object.keys) == ["prompt", "candidates", "choice"])
      #expect(object["prompt"] as? String == population.promptText(q.prompt))
      #expect(object["candidates"] as? [String] == q.candidates.map { population.responseText($0) })
      #expect(object["choice"] as? Int == q.choice)
    }
    // Out-of-range queries are rejected with a message, and the existing file is left alone.
    let error = #expect(throws: WorldsError.self) {
      try population.writeQueries([(prompt: 0, candidates: [1, 2], choice: 2)], to: url)
    }
    #expect(error?.message.contains("choice 2") == true)
    #expect(throws: WorldsError.self) { try population.writeQueries([(prompt: 9, candidates: [1, 2], choice: 0)], to: url) }
    #expect(throws: WorldsError.self) { try population.writeQueries([(prompt: 0, candidates: [1, 600], choice: 0)], to: url) }
    #expect(try String(contentsOf: url, encoding: .utf8).split(separator: "\n").count == 5)
  }
}
