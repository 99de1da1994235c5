import Alignment
import Foundation
import Testing
import Torch
import Worlds
@testable import Experiments

/// measure(): the win rate is the annotator's mean preference against the reference reply, sample by sample.
@Test func rlpExperimentMeasuresWinRateGoldAndAccuracyAgainstTheReference() {
  let c = RLPExperimentConfig(), p = SumProblem(a: 8, b: 9)
  let m = RLPExperiment.measure([["17", "it is 16"]], reference: [["17", "17"]], kl: 0.3, eval: [p], config: c)
  #expect(Swift.abs(m.winRate - (0.5 + c.annotator.preference(p, "it is 16", "17")) / 2) < 1e-12)
  #expect(Swift.abs(m.gold - (c.annotator.gold(p, "17") + c.annotator.gold(p, "it is 16")) / 2) < 1e-12)
  #expect(m.accuracy == 0.5 && m.kl == 0.3 && m.meanLength == 5)
}

/// goldPairs(): distinct replies with different gold rewards, chosen the higher; ties and duplicates dropped.
@Test func rlpExperimentHeldOutPairsAreOrderedByTheGoldReward() {
  let c = RLPExperimentConfig(), p = SumProblem(a: 2, b: 3)
  let texts = ["5", "it is 5", "6", "5"]
  let group = texts.map { (text: $0, sequence: RLPExperiment.sequence(p, $0)) }
  let pairs = RLPExperiment.goldPairs([group], eval: [p], config: c)
  // (5, it is 5), (5, 6), (it is 5, 6), (it is 5, 5′), (6, 5′): the two "5"s are the same text.
  #expect(pairs.count == 5)
  for pair in pairs {
    let text = { (s: TokenSequence) in RLPExperiment.tokenizer.decode(Array(s.tokens.dropFirst(s.prompt.count).dropLast())) }
    #expect(c.annotator.gold(p, text(pair.chosen)) > c.annotator.gold(p, text(pair.rejected)))
  }
}

@Test func theRLPExperimentRunsEveryMethodAndResumesToTheSameSummary() throws {
  var c = RLPExperimentConfig()
  c.seeds = 1
  c.maxOperand = 9
  c.trainProblems = 40
  c.humanPairs = 24
  c.policyPrompts = 8
  c.evalProblems = 6
  c.hiddenSize = 16
  c.layers = 1
  c.sftSteps = 20
  c.rmSteps = 3
  c.rmBatch = 8
  c.views = 2
  c.multiViewBatch = 4
  c.spgSamples = 4
  c.ppoSteps = 2
  c.ppoBatch = 4
  c.curveEvery = 1
  c.bestOfN = 4
  c.responseLength = 8
  let out = FileManager.default.temporaryDirectory.appendingPathComponent("rlp-\(UUID().uuidString)")
  defer { try? FileManager.default.removeItem(at: out) }
  let s = try RLPExperiment.run(c, out: out)
  for file in ["config.json", "metrics.jsonl", "summary.json", "report.md", "win-rate.svg", "gold-vs-kl.svg", "runs/seed0.json"] {
    #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "\(file)")
  }
  #expect(s.order == ["sft", "ppo", "best-of-n", "rlp-uml", "rlp-spg"] && s.rewardModelOrder == ["rm", "rm-uml", "rm-spg"])
  for name in s.order {
    let w = s.policies[name]!["win_rate"]!.mean
    #expect((0...1).contains(w), "\(name) \(w)")
  }
  // Best-of-n's KL is the closed form log n − (n−1)/n; SFT's is 0.
  #expect(Swift.abs(s.policies["best-of-n"]!["kl"]!.mean - (log(4.0) - 0.75)) < 1e-12 && s.policies["sft"]!["kl"]!.mean == 0)
  let run = try JSONDecoder().decode(RLPRun.self, from: Data(contentsOf: out.appendingPathComponent("runs/seed0.json")))
  #expect(run.curves["ppo"]!.map(\.step) == [0, 1, 2] && run.bestOfNCurve.map(\.step) == [1, 2, 4])
  #expect(RLPExperiment.table(s).contains("| RLP-SPG |"))
  let again = try RLPExperiment.run(c, out: out)
  #expect(again.policies["rlp-spg"]!["win_rate"]!.mean == s.policies["rlp-spg"]!["win_rate"]!.mean)
}
