import Foundation

/// A generation task with many correct answers and an exact checker, for the IQLearn experiment's
/// performance–diversity front (METHODS §5): "List three different positive whole numbers that add up to
/// N." A completion scores 1 when its first three whole numbers are distinct, positive and sum to N.
public struct ThreeSumTask: Sendable, Equatable {
  public let total: Int

  public init(total: Int) throws {
    guard total >= 6 else { throw WorldsError("three-sum: N = \(total) has no answer (the smallest is 1 + 2 + 3 = 6)") }
    self.total = total
  }

  public var prompt: String { "List three different positive whole numbers that add up to \(total)." }

  /// Every correct answer as an increasing triple a < b < c with a + b + c = N, smallest a first.
  public var answers: [[Int]] {
    var out: [[Int]] = []
    for a in 1..<total {
      for b in (a + 1)..<total {
        let c = total - a - b
        if c > b { out.append([a, b, c]) }
      }
    }
    return out
  }

  /// The whole numbers in a text, in order (a minus sign directly before a digit counts).
  public static func numbers(_ text: String) -> [Int] {
    var out: [Int] = [], current = ""
    func flush() {
      if let v = Int(current) { out.append(v) }
      current = ""
    }
    for ch in text {
      if ch.isASCII && ch.isNumber || (ch == "-" && current.isEmpty) { current.append(ch) } else { flush() }
    }
    flush()
    return out
  }

  /// 1 when the completion's first three whole numbers are distinct, positive and sum to N, else 0.
  public func score(_ completion: String) -> Double {
    let n = Self.numbers(completion).prefix(3)
    guard n.count == 3, n.allSatisfy({ $0 > 0 }), Set(n).count == 3, n.reduce(0, +) == total else { return 0 }
    return 1
  }

  /// The answer a completion gives, as an increasing triple, when it is correct.
  public func answer(_ completion: String) -> [Int]? {
    score(completion) == 1 ? Array(Self.numbers(completion).prefix(3)).sorted() : nil
  }

  /// `count` demonstrations ("a, b, c") covering the answers unevenly: answer k (in `answers` order) is
  /// drawn with probability ∝ (k + 1)^−zipf, so a few answers dominate and most are rare or absent.
  public func demonstrations(count: Int, zipf: Double, seed: UInt64) -> [String] {
    let all = answers
    let weights = all.indices.map { Foundation.pow(Double($0 + 1), -zipf) }
    let totalWeight = weights.reduce(0, +)
    var rng = SplitMix64(seed: seed ^ UInt64(total) &* 0x9E37_79B9_7F4A_7C15)
    return (0..<count).map { _ in
      var u = Double(rng.next() >> 11) / Double(1 << 53) * totalWeight
      var k = 0
      while k < all.count - 1 && u >= weights[k] {
        u -= weights[k]
        k += 1
      }
      return all[k].map(String.init).joined(separator: ", ")
    }
  }
}
