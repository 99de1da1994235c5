import Testing
@testable import Worlds

@Test func threeSumHasEveryAnswerAndAnExactChecker() throws {
  let t = try ThreeSumTask(total: 9)
  #expect(t.answers == [[1, 2, 6], [1, 3, 5], [2, 3, 4]])
  #expect(try ThreeSumTask(total: 12).answers.count == 7)
  #expect(throws: WorldsError.self) { try ThreeSumTask(total: 5) }
  #expect(t.score("1, 2, 6") == 1 && t.score("6 + 2 + 1 = 9") == 1 && t.score("Sure: 4, 3 and 2.") == 1)
  #expect(t.score("3, 3, 3") == 0, "not distinct")
  #expect(t.score("1, 2, 7") == 0 && t.score("1, 2") == 0 && t.score("-1, 4, 6") == 0 && t.score("none") == 0)
  #expect(t.answer("5, 1, 3 (sum 9)") == [1, 3, 5])
}

@Test func threeSumDemonstrationsCoverTheAnswersUnevenly() throws {
  let t = try ThreeSumTask(total: 20)
  let demos = t.demonstrations(count: 400, zipf: 1.2, seed: 1)
  #expect(demos == t.demonstrations(count: 400, zipf: 1.2, seed: 1), "seeded")
  #expect(demos.allSatisfy { t.score($0) == 1 })
  var counts: [String: Int] = [:]
  for d in demos { counts[d, default: 0] += 1 }
  // 24 answers: the first is the most common by far; in a small set some are never shown.
  #expect(t.answers.count == 24)
  #expect(counts["1, 2, 17", default: 0] > 400 / 5)
  #expect(Set(t.demonstrations(count: 40, zipf: 1.2, seed: 1)).count < t.answers.count)
  // With zipf 0 the draw is uniform: every answer appears.
  #expect(Set(t.demonstrations(count: 2000, zipf: 0, seed: 2)).count == 24)
}
