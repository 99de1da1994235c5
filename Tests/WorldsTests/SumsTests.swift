import Foundation
import Testing
import Worlds

@Test func aSumReplysFinalNumberIsItsAnswer() {
  #expect(Sums.finalNumber("so 8+9 is 17") == 17)
  #expect(Sums.finalNumber("17") == 17)
  #expect(Sums.finalNumber("it is ") == nil)
  #expect(Sums.finalNumber("the sum is 4 2") == 2)
  #expect(Sums.finalNumber("") == nil)
  let p = SumProblem(a: 8, b: 9)
  for style in Sums.styles.indices { #expect(Sums.finalNumber(Sums.reply(p, style: style, sum: 17)) == 17) }
  #expect(Sums.reply(p, style: 3, sum: 17) == "so 8+9 is 17" && p.prompt == "8+9=")
}

/// The gold reward's closed form (correctness + length bias, capped) and the Bradley–Terry annotator.
@Test func theGoldRewardIsCorrectnessPlusACappedLengthBias() {
  let p = SumProblem(a: 8, b: 9), a = SumAnnotator()
  #expect(Swift.abs(a.gold(p, "17") - (1 + 0.25 * 2 / 16)) < 1e-12)
  #expect(Swift.abs(a.gold(p, "the sum is 16") - 0.25 * 13 / 16) < 1e-12)
  // Past the cap, length adds nothing.
  #expect(a.gold(p, "so so so so so so so 17") == 1.25 && a.gold(p, "so so so so so so so so so 17") == 1.25)
  let (g1, g2) = (a.gold(p, "17"), a.gold(p, "it is 16"))
  #expect(Swift.abs(a.preference(p, "17", "it is 16") - 1 / (1 + exp(-(g1 - g2) / 0.5))) < 1e-12)
  #expect(Swift.abs(a.preference(p, "17", "it is 16") + a.preference(p, "it is 16", "17") - 1) < 1e-12)
  #expect(a.preference(p, "17", "17") == 0.5)
  #expect(a.prefersFirst(p, "17", "it is 16", uniform: 0.8) && !a.prefersFirst(p, "17", "it is 16", uniform: 0.95))
}

@Test func sumDemonstrationsSlipAtTheirRateAndProblemsAreDistinct() {
  let problems = Sums.problems(count: 400, maxOperand: 49, seed: 3)
  #expect(Set(problems).count == 400 && problems.allSatisfy { (0...49).contains($0.a) && (0...49).contains($0.b) })
  let more = Sums.problems(count: 100, maxOperand: 49, seed: 4, excluding: Set(problems))
  #expect(Set(more).isDisjoint(with: Set(problems)))
  // Asking for more problems than exist gives all of them.
  #expect(Sums.problems(count: 50, maxOperand: 2, seed: 1).count == 9)
  var rng = SplitMix64(seed: 9)
  var slips = 0, styles = Set<Int>()
  for p in problems {
    let d = Sums.demonstration(p, slipRate: 0.2, using: &rng)
    let n = Sums.finalNumber(d)!
    if n != p.answer {
      slips += 1
      #expect([1, 10].contains(Swift.abs(n - p.answer)), "\(d)")
    }
    styles.insert(Sums.styles.indices.first { Sums.reply(p, style: $0, sum: n) == d }!)
  }
  #expect((50...110).contains(slips), "\(slips) slips in 400 at rate 0.2")
  #expect(styles.count == Sums.styles.count)
}
