import Foundation

/// Short arithmetic word problems with exact answers, for the real-model comparison of IFT with SFT → DPO
/// (issue: IFT's headline at small scale): one addition or subtraction of two whole numbers told as a
/// story, the answer a whole number, the demonstration a one-line calculation, and the other operation's
/// calculation as the plausible wrong reply of the preference pairs. Replies are scored as GRPO's `exact-match` reward scores them (the last number).
public struct WordProblem: Sendable, Equatable, Codable {
  public let question: String
  /// The two numbers in the order the story gives them, and whether the story adds them.
  public let a: Int, b: Int
  public let isAddition: Bool

  public var answer: Int { isAddition ? a + b : a - b }
  /// The other operation applied to the same numbers (never equal to `answer`): the common mistake.
  public var wrongAnswer: Int { isAddition ? a - b : a + b }

  /// The user message: the question and the reply format.
  public var prompt: String { question + " Reply with the calculation, like 3 + 4 = 7." }
  /// The reply a demonstration gives: the calculation and its result ("12 - 5 = 7").
  public var solution: String { "\(a) \(isAddition ? "+" : "-") \(b) = \(answer)" }
  /// The rejected reply of a preference pair: the other operation, correctly computed.
  public var wrongSolution: String { "\(a) \(isAddition ? "-" : "+") \(b) = \(wrongAnswer)" }
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

  /// `count` distinct problems from a seeded stream, numbers `a` in 3…20 and `b` in 2…(a−1) for a
  /// subtraction (so answers stay positive), 2…20 for an addition; questions in `excluding` are skipped.
  public static func generate(count: Int, seed: UInt64, excluding: Set<String> = []) -> [WordProblem] {
    var rng = SplitMix64(seed: seed ^ 0x3A7D_0000_0000)
    func draw(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(rng.next() % UInt64(range.count)) }
    var out: [WordProblem] = [], seen = excluding
    var attempts = 0
    while out.count < count && attempts < count * 100 {
      attempts += 1
      let (template, add) = templates[draw(0...(templates.count - 1))]
      let a = draw(3...20), b = add ? draw(2...20) : draw(2...(a - 1))
      let question = template.replacingOccurrences(of: "{n}", with: names[draw(0...(names.count - 1))])
        .replacingOccurrences(of: "{i}", with: items[draw(0...(items.count - 1))])
        .replacingOccurrences(of: "{a}", with: "\(a)").replacingOccurrences(of: "{b}", with: "\(b)")
      guard seen.insert(question).inserted else { continue }
      out.append(WordProblem(question: question, a: a, b: b, isAddition: add))
    }
    return out
  }
}
