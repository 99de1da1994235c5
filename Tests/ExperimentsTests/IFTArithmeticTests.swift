import Foundation
import LM
import Testing
import Torch
import Worlds
@testable import Experiments

@Test func wordProblemsHaveTheirAnswersAndAPlausibleWrongOne() {
  let problems = WordProblems.generate(count: 200, seed: 4)
  #expect(problems.count == 200)
  #expect(Set(problems.map(\.question)).count == 200)
  for p in problems {
    let numbers = p.question.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    #expect(numbers.count == 2, "\(p.question)")
    #expect((p.a, p.b) == (numbers[0], numbers[1]), "\(p.question)")
    #expect((p.answer, p.wrongAnswer) == (p.isAddition ? (p.a + p.b, p.a - p.b) : (p.a - p.b, p.a + p.b)))
    #expect(p.answer > 0)
    #expect(p.solution == "\(p.a) \(p.isAddition ? "+" : "-") \(p.b) = \(p.answer)")
  }
  let excluded = WordProblems.generate(count: 50, seed: 9, excluding: Set(problems.map(\.question)))
  #expect(Set(excluded.map(\.question)).isDisjoint(with: problems.map(\.question)))
  #expect(WordProblems.generate(count: 20, seed: 4) == Array(problems.prefix(20)))
}

@Test func theIFTArithmeticExperimentRunsAndResumesToTheSameSummary() throws {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ift-arith-\(UUID().uuidString)")
  defer { try? FileManager.default.removeItem(at: dir) }
  let chat = try tinyChat(in: dir)
  let model = chat.model
  var c = IFTArithmeticConfig()
  c.model = "tiny"
  c.seeds = 2
  c.trainProblems = 6
  c.evalProblems = 3
  c.steps = 2
  c.batchSize = 2
  c.loraRank = 2
  c.maxNewTokens = 2
  let out = dir.appendingPathComponent("out")
  let before = model.namedParameters().map { $0.tensor.toArray(Float.self) }
  let s = try IFTArithmetic.run(c, chat: chat, out: out)
  for file in ["config.json", "metrics.jsonl", "summary.json", "report.md", "accuracy.svg"] {
    #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "\(file)")
  }
  #expect(s.accuracy.keys.sorted() == ["base", "ift", "sft", "sft→dpo"])
  #expect(s.iftMinus.keys.sorted() == ["sft", "sft→dpo"])
  // Every run's adapter came off again: the base weights are untouched.
  #expect(!Adapter.isAttached(model))
  #expect(model.namedParameters().map { $0.tensor.toArray(Float.self) } == before)
  try FileManager.default.removeItem(at: out.appendingPathComponent("runs/sft-dpo-seed1.json"))
  let again = try IFTArithmetic.run(c, chat: chat, out: out)
  for (m, a) in s.accuracy { #expect(again.accuracy[m]?.mean == a.mean, "\(m)") }
}
