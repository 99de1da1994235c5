import Foundation
import Testing
@testable import Experiments

private struct Fixture: Decodable {
  struct Group: Decodable {
    let samples: [String]
    let tokens: [[String]]
    let sentence_bleu: [Double]
    let self_bleu: Double
    let distinct: [Double]
  }
  let groups: [Group]
}

/// Self-BLEU, sentence BLEU, the 13a tokenizer and distinct-n against values the `sacrebleu` package wrote
/// (scripts/make_diversity_fixtures.py).
@Test func diversityMetricsMatchSacrebleu() throws {
  let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/diversity.json")
  let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
  #expect(fixture.groups.count == 5)
  for g in fixture.groups {
    #expect(g.samples.map(Diversity.tokenize13a) == g.tokens)
    for (i, s) in g.samples.enumerated() {
      let others = g.samples.indices.filter { $0 != i }.map { g.samples[$0] }
      #expect(Swift.abs(Diversity.sentenceBLEU(s, references: others) - g.sentence_bleu[i]) < 1e-9, "\(s)")
    }
    #expect(Swift.abs(Diversity.selfBLEU(g.samples) - g.self_bleu) < 1e-12)
    for n in 1...3 { #expect(Swift.abs(Diversity.distinct(g.samples, n: n) - g.distinct[n - 1]) < 1e-12) }
  }
  // Identical samples are as alike as can be; disjoint ones not at all.
  #expect(Swift.abs(Diversity.selfBLEU(["a b c d e", "a b c d e"]) - 1) < 1e-12)
  #expect(Diversity.selfBLEU(["a b c d", "e f g h"]) == 0)
}

@Test func spearmanUsesAverageRanksForTies() {
  #expect(Correlation.ranks([5, 6, 7, 8, 7]) == [1, 2, 3.5, 5, 3.5])
  // Values computed by hand (Pearson correlation of the average ranks).
  #expect(Swift.abs(Correlation.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) - 0.8207826816681233) < 1e-12)
  #expect(Swift.abs(Correlation.spearman([10, 20, 20, 40, 35, 1], [3, 1, 2, 2, 9, 0.5]) - 0.45588235294117646) < 1e-12)
  #expect(Correlation.spearman([1, 2, 3], [3, 2, 1]) == -1)
  #expect(Correlation.spearman([1, 1, 1], [1, 2, 3]).isNaN)
}
