import Testing
@testable import Worlds

@Test func letterPickAnswersAreTheSortedSubsetsInPositionOrder() throws {
  let t = try LetterPickTask(letters: "dbca", pick: 3)
  // Positions (0,1,2) = d b c, (0,1,3) = d b a, (0,2,3) = d c a, (1,2,3) = b c a, each sorted.
  #expect(t.answers.map { String($0) } == ["bcd", "abd", "acd", "abc"])
  #expect(try LetterPickTask(letters: "abcdef").answers.count == 20)
  #expect(t.prompt == "Write 3 different letters of d b c a, in alphabetical order.")
  #expect(throws: WorldsError.self) { try LetterPickTask(letters: "aab") }
  #expect(throws: WorldsError.self) { try LetterPickTask(letters: "aB3") }
  #expect(throws: WorldsError.self) { try LetterPickTask(letters: "ab", pick: 3) }
}

@Test func letterPickScoresOnlyDistinctIncreasingLettersOfThePrompt() throws {
  let t = try LetterPickTask(letters: "kqamzr")
  #expect(t.score("a k m") == 1)
  #expect(t.score("akm") == 1)
  #expect(t.score("k a m") == 0)  // not in order
  #expect(t.score("a a m") == 0)  // repeated
  #expect(t.score("a b m") == 0)  // b is not in the prompt
  #expect(t.score("a k") == 0)  // too few
  #expect(t.score("a k m q") == 0)  // too many
  #expect(t.answers.allSatisfy { t.score(String($0)) == 1 })
}

@Test func letterPickDemonstrationsFollowTheZipfWeights() throws {
  let t = try LetterPickTask(letters: "abcdef")
  var rng = SplitMix64(seed: 7)
  let demos = t.demonstrations(count: 20_000, zipf: 1, using: &rng)
  let harmonic = (1...20).map { 1 / Double($0) }.reduce(0, +)
  let first = Double(demos.filter { $0 == t.answers[0] }.count) / 20_000
  let last = Double(demos.filter { $0 == t.answers[19] }.count) / 20_000
  #expect(Swift.abs(first - 1 / harmonic) < 0.015)
  #expect(Swift.abs(last - 1 / 20 / harmonic) < 0.005)
  var a = SplitMix64(seed: 3), b = SplitMix64(seed: 3)
  #expect(try LetterPickTask.random(size: 6, pick: 3, using: &a) == LetterPickTask.random(size: 6, pick: 3, using: &b))
  #expect(try LetterPickTask.random(size: 6, pick: 3, using: &a).letters.count == 6)
}
