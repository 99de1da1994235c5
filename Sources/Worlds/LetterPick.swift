import Foundation

/// A generation task with many correct answers, an exact checker and prompts that generalise, for the
/// IQLearn experiment's performance–diversity front (METHODS §5): "Write three different letters of
/// `k q a m z r`, in alphabetical order." A completion scores 1 when it is exactly `pick` letters, all in
/// the prompt, distinct and strictly increasing; each of the C(pool, pick) subsets is one correct answer.
/// Held-out prompts are letter pools never trained on, so a model can only score there by copying and
/// ordering, not by remembering.
public struct LetterPickTask: Sendable, Equatable {
  /// The prompt's letters, distinct lowercase a–z, in the order the prompt lists them.
  public let letters: [Character]
  public let pick: Int

  public static let alphabet: [Character] = Array("abcdefghijklmnopqrstuvwxyz")

  public init(letters: String, pick: Int = 3) throws {
    let l = Array(letters.filter { $0 != " " })
    guard l.allSatisfy({ Self.alphabet.contains($0) }), Set(l).count == l.count else {
      throw WorldsError("letter-pick: '\(letters)' must be distinct lowercase letters a–z")
    }
    guard pick >= 1, pick <= l.count else {
      throw WorldsError("letter-pick: cannot pick \(pick) letters from \(l.count)")
    }
    self.letters = l
    self.pick = pick
  }

  /// A pool of `size` distinct letters in random order.
  public static func random(size: Int, pick: Int, using rng: inout SplitMix64) throws -> LetterPickTask {
    var pool = alphabet
    for i in 0..<size {
      let j = i + Int(rng.next() % UInt64(pool.count - i))
      pool.swapAt(i, j)
    }
    return try LetterPickTask(letters: String(pool.prefix(size)), pick: pick)
  }

  public var prompt: String {
    "Write \(pick) different letters of \(letters.map(String.init).joined(separator: " ")), in alphabetical order."
  }

  /// Every correct answer, one per subset of the prompt's positions in lexicographic order of the positions
  /// ((0,1,2), (0,1,3), …): the order the demonstrations' bias follows.
  public var answers: [[Character]] {
    var out: [[Character]] = []
    func extend(_ chosen: [Int], from: Int) {
      if chosen.count == pick { out.append(chosen.map { letters[$0] }.sorted()); return }
      guard from < letters.count else { return }
      for i in from..<letters.count { extend(chosen + [i], from: i + 1) }
    }
    extend([], from: 0)
    return out
  }

  /// 1 when `completion` (letters; spaces ignored) is exactly `pick` distinct letters of the prompt in
  /// strictly increasing order, else 0.
  public func score(_ completion: String) -> Double {
    let c = Array(completion.filter { $0 != " " })
    guard c.count == pick, c.allSatisfy(letters.contains), zip(c, c.dropFirst()).allSatisfy({ $0 < $1 }) else { return 0 }
    return 1
  }

  /// `count` demonstrations covering the answers unevenly: answer k (in `answers` order) is drawn with
  /// probability ∝ (k + 1)^−zipf, so subsets of the first-listed letters dominate and most are rare.
  public func demonstrations(count: Int, zipf: Double, using rng: inout SplitMix64) -> [[Character]] {
    let all = answers
    let weights = all.indices.map { Foundation.pow(Double($0 + 1), -zipf) }
    let total = weights.reduce(0, +)
    return (0..<count).map { _ in
      var u = Double(rng.next() >> 11) / Double(1 << 53) * total
      var k = 0
      while k < all.count - 1 && u >= weights[k] {
        u -= weights[k]
        k += 1
      }
      return all[k]
    }
  }
}
