import Foundation
import Testing
import Worlds
@testable import Experiments

@Test func iqlearnExperimentNearMissesAllFailAndCorrectAnswersAllPass() throws {
  let t = try LetterPickTask(letters: "kqamzr")
  var rng = SplitMix64(seed: 1)
  for a in t.answers {
    let seq = IQLearnExperiment.sequence(t, answer: a)
    #expect(t.score(IQLearnExperiment.text(Array(seq.tokens.dropFirst(seq.prompt.count)))) == 1)
    for miss in IQLearnExperiment.nearMisses(t, a, rng: &rng) { #expect(t.score(String(miss)) == 0, "\(miss)") }
  }
  // A response's text stops at EOS; a token that is not a letter reads as '?'.
  #expect(IQLearnExperiment.text([IQLearnExperiment.token("a"), IQLearnExperiment.sep, IQLearnExperiment.eos, 5]) == "a ?")
}

/// measure() on hand-made samples: the score, the distinct correct answers and distinct-1 per prompt, averaged.
@Test func iqlearnExperimentMeasuresScoreAndDiversityPerPrompt() throws {
  let t = try LetterPickTask(letters: "abcdef")
  let m = IQLearnExperiment.measure([["a b c", "a b c", "a b d", "c b a"]], eval: [t])
  #expect(m.score == 0.75)
  #expect(m.correct == 2)
  #expect(m.distinct1 == 4.0 / 12)
  #expect(Swift.abs(m.selfBLEU - Diversity.selfBLEU(["a b c", "a b c", "a b d", "c b a"])) < 1e-12)
}

@Test func theIQLearnExperimentRunsAndResumesToTheSameSummary() throws {
  var c = IQLearnExperimentConfig()
  c.seeds = 2
  c.trainPrompts = 64
  c.evalPrompts = 4
  c.samplesPerPrompt = 3
  c.steps = 6
  c.batchSize = 8
  c.entropyBonuses = [0.1]
  c.lambdas = [0.1]
  c.hiddenSize = 16
  c.layers = 1
  let out = FileManager.default.temporaryDirectory.appendingPathComponent("iqlearn-\(UUID().uuidString)")
  defer { try? FileManager.default.removeItem(at: out) }
  let s = try IQLearnExperiment.run(c, out: out)
  for file in ["config.json", "metrics.jsonl", "summary.json", "report.md", "front.svg"] {
    #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "\(file)")
  }
  #expect(s.order == ["mle", "mle+entropy(β=0.1)", "iqlearn(λ=0.1)", "iqlearn-online(λ=0.1,α=0.25)"])
  #expect(s.configurations.values.map(\.family).sorted() == ["iqlearn", "iqlearn-online", "mle", "mle+entropy"])
  #expect(s.demonstrations.score.mean == 1)
  let lines = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
  #expect(lines.count == 8)
  // Interrupted: two runs lost; the rerun redoes them and gives the same summary.
  for name in ["iqlearn(λ=0.1)-seed1.json", "mle-seed0.json"] {
    try FileManager.default.removeItem(at: out.appendingPathComponent("runs/\(name)"))
  }
  let again = try IQLearnExperiment.run(c, out: out)
  for name in s.order {
    let (a, b) = (again.configurations[name]!, s.configurations[name]!)
    #expect(a.score.mean == b.score.mean && a.selfBLEU.mean == b.selfBLEU.mean && a.entropy.mean == b.entropy.mean, "\(name)")
    #expect(a.poolRewardSpearman?.mean == b.poolRewardSpearman?.mean, "\(name)")
  }
  var other = c
  other.steps = 7
  #expect(throws: ExperimentError.self) { try IQLearnExperiment.run(other, out: out) }
}
