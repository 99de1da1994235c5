import Foundation

/// Short arithmetic word problems with exact answers, for the real-model comparison of IFT with SFT → DPO
/// (issue: IFT's headline at small scale): one addition or subtraction of two whole numbers told as a
/// story, the answer a whole number, and a plausible wrong answer (the other operation's result) for the
/// preference pairs.
public struct WordProblem: Sendable, Equatable, Codable {
  public let question: String
  public let answer: Int
  /// The other operation applied to the same numbers (never equal to `answer`).
  public let wrongAnswer: Int

  /// The user message: the question and the reply format.
  public var prompt: String { question + " Reply with just the number." }

  /// 1 when the first whole number in `reply` is the answer, else 0.
  public func score(_ reply: String) -> Double {
    Self.firstNumber(reply) == answer ? 1 : 0
  }

  /// The first whole number in a text (a minus sign directly before it counts).
  public static func firstNumber(_ text: String) -> Int? {
    var digits = "", sign = ""
    for ch in text {
      if ch.isASCII && ch.isNumber {
        digits.append(ch)
      } else if !digits.isEmpty {
        break
      } else {
        sign = ch == "-" ? "-" : ""
      }
    }
    return digits.isEmpty ? nil : Int(sign + digits)
  }
}

public enum WordProblems {
  static let names = ["Ana", "Ben", "Chloe", "David", "Ella", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Kira", "Leo"]
  static let items = ["apples", "marbles", "stickers", "books", "coins", "pencils", "shells", "cards"]

  /// (template, is addition): {n} a name, {i} an item, {a} and {b} the numbers.
  static let templates: [(String, Bool)] = [
    ("{n} has {a} {i}. {n} gets {b} more. How many {i} does {n} have now?", true),
    ("{n} had {a} {i} and gave {b} of them away. How many {i} does {n} have left?", false),
    ("One box holds {a} {i} and another holds {b}. How many {i} are in the two boxes together?", true),
    ("{n} read {a} pages on Monday and {b} pages on Tuesday. How many pages did {n} read in all?", true),
    ("There were {a} birds on a tree and {b} flew away. How many birds are on the tree now?", false),
    ("{n} is {a} years old. How old will {n} be in {b} years?", true),
    ("A shelf had {a} {i}. {n} took {b} of them. How many {i} are on the shelf now?", false),
    ("{n} walked {a} km on Saturday and {b} km on Sunday. How many km did {n} walk over the weekend?", true),
  ]

  /// `count` distinct problems from a seeded stream, numbers `a` in 10…60 and `b` in 2…(a−1) for a
  /// subtraction (so answers stay positive), 2…40 for an addition; questions in `excluding` are skipped.
  public static func generate(count: Int, seed: UInt64, excluding: Set<String> = []) -> [WordProblem] {
    var rng = SplitMix64(seed: seed ^ 0x3A7D_0000_0000)
    func draw(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(rng.next() % UInt64(range.count)) }
    var out: [WordProblem] = [], seen = excluding
    var attempts = 0
    while out.count < count && attempts < count * 100 {
      attempts += 1
      let (template, add) = templates[draw(0...(templates.count - 1))]
      let a = draw(10...60), b = add ? draw(2...40) : draw(2...(a - 1))
      let question = template.replacingOccurrences(of: "{n}", with: names[draw(0...(names.count - 1))])
        .replacingOccurrences(of: "{i}", with: items[draw(0...(items.count - 1))])
        .replacingOccurrences(of: "{a}", with: "\(a)").replacingOccurrences(of: "{b}", with: "\(b)")
      guard seen.insert(question).inserted else { continue }
      out.append(WordProblem(question: question, answer: add ? a + b : a - b, wrongAnswer: add ? a - b : a + b))
    }
    return out
  }
}
