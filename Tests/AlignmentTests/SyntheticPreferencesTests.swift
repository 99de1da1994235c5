import Foundation
import Testing
@testable import Alignment

/// The SPG rule on constructed samples: the largest cluster's share is the confidence; below γ, or with no
/// sample outside it, the prompt gives no pair; chosen is the largest cluster's highest reward, rejected
/// one of the others.
@Test func spgSelectsByConfidenceAndRewardAsTheRuleSays() throws {
  let keys = ["a", "a", "b", "a", "c", "b", "a", "a", "b", "c"]
  let rewards = [0.1, 0.9, 5.0, 0.3, 2.0, 1.0, 0.95, 0.2, 0.0, 0.4]
  var offered: [Int] = []
  let s = try SyntheticPreferences.select(keys: keys, rewards: rewards, gamma: 0.5) { k in offered.append(k); return 2 }.get()
  #expect(s.confidence == 0.5)
  #expect(s.chosen == 6)  // the best "a" (0.95), not the best overall (the "b" at 5.0)
  #expect(offered == [5])  // the five samples outside cluster "a": indices 2, 4, 5, 8, 9
  #expect(s.rejected == 5)
  #expect(keys[s.rejected] != "a")
  // Below γ: 5/10 < 0.6.
  #expect(throws: SyntheticPreferences.SkipReason(.lowConfidence, 0.5)) {
    try SyntheticPreferences.select(keys: keys, rewards: rewards, gamma: 0.6) { _ in 0 }.get()
  }
  // Unanimous: no other cluster to take the rejected one from.
  #expect(throws: SyntheticPreferences.SkipReason(.unanimous, 1)) {
    try SyntheticPreferences.select(keys: ["x", "x", "x"], rewards: [1, 2, 3], gamma: 0.5) { _ in 0 }.get()
  }
  // A tie for largest goes to the cluster seen first; equal rewards to the first member.
  let tie = try SyntheticPreferences.select(keys: ["b", "a", "a", "b"], rewards: [1, 1, 1, 1], gamma: 0.5) { _ in 1 }.get()
  #expect(tie == SyntheticPreferences.Selection(chosen: 0, rejected: 2, confidence: 0.5))
}

@Test func spgAnswerKeysAreTheNormalisedFinalAnswer() {
  #expect(SyntheticPreferences.answerKey("7 + 5 = 12") == "12")
  #expect(SyntheticPreferences.answerKey("so it is 12.0.") == "12")
  #expect(SyntheticPreferences.answerKey("The capital is\nParis. ") == "paris")
  #expect(SyntheticPreferences.answerKey("x = 2.5") == "2.5")
}
