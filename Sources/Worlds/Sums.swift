import Foundation

/// The verifiable task of the RLP experiment (issue: Reward Learning on Policy): "a+b=" with whole numbers,
/// answered in one of a few styles ("17", "it is 17", "the sum is 17", "so 8+9 is 17"). The answer is the
/// reply's final number; the task's true quality is computable, so a simulated annotator can stand in for
/// people (AlpacaFarm's simulated annotators are the RLP paper's own stand-in).
public struct SumProblem: Sendable, Equatable, Hashable, Codable {
  public let a: Int, b: Int
  public init(a: Int, b: Int) { (self.a, self.b) = (a, b) }
  public var answer: Int { a + b }
  public var prompt: String { "\(a)+\(b)=" }
}

/// The gold reward and the annotator that labels pairs by it.
///
/// gold(y) = 1[y's final number is a + b] + lengthBias · min(|y|, lengthCap) / lengthCap: correctness plus a
/// documented bias for longer replies (up to `lengthBias`, reached at `lengthCap` characters), the verbosity
/// preference simulated and human annotators share. The annotator prefers y1 to y2 with the Bradley–Terry
/// probability σ((gold(y1) − gold(y2)) / temperature): its noise.
public struct SumAnnotator: Sendable, Codable, Equatable {
  public var lengthBias = 0.25
  public var lengthCap = 16
  public var temperature = 0.5
  public init() {}

  public func gold(_ p: SumProblem, _ reply: String) -> Double {
    (Sums.finalNumber(reply) == p.answer ? 1 : 0) + lengthBias * Double(Swift.min(reply.count, lengthCap)) / Double(lengthCap)
  }

  /// P(y1 ≻ y2) under the annotator.
  public func preference(_ p: SumProblem, _ y1: String, _ y2: String) -> Double {
    1 / (1 + exp(-(gold(p, y1) - gold(p, y2)) / temperature))
  }

  /// One label: whether the annotator prefers y1, drawn with `uniform` ∈ [0, 1).
  public func prefersFirst(_ p: SumProblem, _ y1: String, _ y2: String, uniform: Double) -> Bool {
    uniform < preference(p, y1, y2)
  }
}

public enum Sums {
  /// Reply styles: {a}, {b} the operands, {s} the stated sum.
  public static let styles = ["{s}", "it is {s}", "the sum is {s}", "so {a}+{b} is {s}"]
  /// Every character a prompt or reply uses.
  public static let alphabet = Array("0123456789+= abcdefghijklmnopqrstuvwxyz")

  /// `count` distinct problems with operands in 0…maxOperand from a seeded stream, none of `excluding`.
  public static func problems(count: Int, maxOperand: Int, seed: UInt64, excluding: Set<SumProblem> = []) -> [SumProblem] {
    var rng = SplitMix64(seed: seed ^ 0x5005_0000_0000)
    var out: [SumProblem] = [], seen = excluding
    let space = (maxOperand + 1) * (maxOperand + 1)
    while out.count < count && seen.count < space {
      let p = SumProblem(a: Int(rng.next() % UInt64(maxOperand + 1)), b: Int(rng.next() % UInt64(maxOperand + 1)))
      if seen.insert(p).inserted { out.append(p) }
    }
    return out
  }

  /// A reply in `style` stating `sum`.
  public static func reply(_ p: SumProblem, style: Int, sum: Int) -> String {
    styles[style].replacingOccurrences(of: "{a}", with: "\(p.a)").replacingOccurrences(of: "{b}", with: "\(p.b)")
      .replacingOccurrences(of: "{s}", with: "\(sum)")
  }

  /// A demonstration as people write them: a uniformly drawn style, and with probability `slipRate` a slip
  /// (the sum off by ±1 or ±10, never below 0).
  public static func demonstration(_ p: SumProblem, slipRate: Double, using rng: inout SplitMix64) -> String {
    let style = Int(rng.next() % UInt64(styles.count))
    var sum = p.answer
    if Double(rng.next() >> 11) / Double(1 << 53) < slipRate {
      let slips = [1, -1, 10, -10].filter { sum + $0 >= 0 }
      sum += slips[Int(rng.next() % UInt64(slips.count))]
    }
    return reply(p, style: style, sum: sum)
  }

  /// The reply's final whole number (its last run of digits), nil when it has none.
  public static func finalNumber(_ reply: String) -> Int? {
    var digits = "", last: String? = nil
    for c in reply + " " {
      if c.isASCII && c.isNumber { digits.append(c) } else if !digits.isEmpty { last = digits; digits = "" }
    }
    return last.flatMap { Int($0.prefix(18)) }
  }
}
