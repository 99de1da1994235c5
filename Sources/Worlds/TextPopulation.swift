import Foundation

/// The inclusive experiment's natural-language world **(choice)**: four everyday questions, each with eight
/// written answers that differ in three documented ways (a 2×2×2 design), and three person types whose
/// preferences over the answers follow from those attributes, so p*(·|x) and KL(p*‖π) are exact over the
/// eight answers.
/// - **length**: a one-line answer or a paragraph;
/// - **tone**: formal or casual;
/// - **topic**: what to do (practical steps) or why it works (the background).
/// Type m's preference is `p_m(y|x) ∝ exp(u_m · a(y))` with `a(y) ∈ {0, 1}³` = (long, formal, explains why):
///
/// | type | weight | long | formal | why |
/// |---|---|---|---|---|
/// | busy: short, practical answers | 0.5 | −2.0 | 0 | −1.5 |
/// | learner: thorough, explained answers | 0.3 | +1.5 | +0.5 | +2.0 |
/// | friendly: a casual voice above all | 0.2 | 0 | −2.5 | 0 |
///
/// A person of type m ~ w answers a K-way question with the Luce rule of `p_m`, like `DidacticPopulation`.
public struct TextPopulation: ChoicePopulation {
  public struct Answer: Sendable {
    public let text: String
    public let long: Bool, formal: Bool, why: Bool
    var attributes: [Double] { [long ? 1 : 0, formal ? 1 : 0, why ? 1 : 0] }
  }

  public let questions: [String]
  /// `answers[x]`: the eight answers to question x, in the order (practical, why) × (short, long) × (formal, casual).
  public let answers: [[Answer]]
  public let typeNames = ["busy", "learner", "friendly"]
  public let utilities: [[Double]] = [[-2.0, 0, -1.5], [1.5, 0.5, 2.0], [0, -2.5, 0]]
  public let weights = [0.5, 0.3, 0.2]
  /// `logTables[m][x][y]` = log p_m(y|x).
  private let logTables: [[[Double]]]

  public var prompts: Int { questions.count }
  public var responseCount: Int { answers[0].count }
  public var types: Int { weights.count }

  public init() {
    questions = Self.corpus.map(\.question)
    answers = Self.corpus.map { entry in
      var out: [Answer] = []
      for (why, texts) in [(false, entry.practical), (true, entry.background)] {
        for (i, text) in texts.enumerated() { out.append(Answer(text: text, long: i >= 2, formal: i % 2 == 0, why: why)) }
      }
      return out
    }
    let answers = self.answers
    logTables = utilities.map { u in
      answers.map { row in
        let scores = row.map { a in zip(u, a.attributes).reduce(0) { $0 + $1.0 * $1.1 } }
        let top = scores.max()!
        let lse = top + log(scores.reduce(0) { $0 + exp($1 - top) })
        return scores.map { $0 - lse }
      }
    }
  }

  public func logProbability(type: Int, prompt: Int, response index: Int) -> Double { logTables[type][prompt][index] }

  public func target(prompt: Int) -> [Double] {
    (0..<responseCount).map { y in (0..<types).reduce(0) { $0 + weights[$1] * exp(logTables[$1][prompt][y]) } }
  }

  /// Each question with its answers: practical then background, each short formal, short casual, long formal,
  /// long casual.
  static let corpus: [(question: String, practical: [String], background: [String])] = [
    ("How do I keep a basil plant alive indoors?",
     ["Place it in a sunny window and water it when the top of the soil is dry.",
      "Stick it in your sunniest window and water it when the soil feels dry. Easy!",
      "Place the pot in a south-facing window with at least six hours of sun a day. Water it thoroughly when the top centimetre of soil is dry, make sure the pot drains, and pinch off the flower buds as soon as they appear so the plant keeps producing leaves.",
      "Give it the sunniest spot you've got, six hours of light or more. Water it well whenever the top of the soil dries out, use a pot with holes so it never sits in water, and pinch off any flowers so it keeps growing tasty leaves."],
     ["Basil is a Mediterranean herb, so it needs strong light and dislikes wet roots.",
      "Basil comes from hot, sunny places, so it loves light and hates soggy feet.",
      "Basil evolved in warm climates with intense sunlight, so indoor light is usually its limiting factor. Its roots rot quickly in waterlogged soil because they need oxygen, and once the plant flowers it diverts its energy from leaves to seeds, which is why growers remove the buds.",
      "Basil grew up in hot, bright places, so a dim room starves it. Its roots need air, so soggy soil makes them rot. And when it flowers it starts putting its energy into seeds instead of leaves, which is why people pinch the flowers off."]),
    ("How can I prepare for a job interview?",
     ["Research the company, rehearse answers to common questions, and prepare two questions of your own.",
      "Look the company up, practise a few answers out loud, and have a couple of questions ready.",
      "Read the company's website and recent news, and match your experience to the job description. Rehearse answers to common questions out loud, using concrete examples with a clear situation, action and result. Prepare two thoughtful questions for the interviewer, and plan your route so that you arrive ten minutes early.",
      "Dig into the company a bit: their website, recent news, and what the job actually asks for. Practise your answers out loud with real examples of things you did and how they turned out. Have a couple of good questions ready, and plan to get there ten minutes early."],
     ["Interviewers assess preparation as a signal of genuine interest and reliability.",
      "Interviewers read good prep as a sign you really want the job.",
      "An interview is a short, high-stakes conversation in which the interviewer looks for evidence of competence and motivation. Preparation reduces anxiety, because rehearsed material is easier to recall under stress, and specific examples are more persuasive than general claims because they can be checked and remembered.",
      "An interview is a quick chat where they try to figure out if you can do the job and actually want it. Practising helps because nerves make it hard to think on the spot, and real stories about what you did stick in their minds far better than general claims."]),
    ("How can I fall asleep faster?",
     ["Keep a fixed bedtime, avoid screens for an hour before bed, and keep the bedroom cool and dark.",
      "Go to bed at the same time, ditch your phone an hour before, and keep the room cool and dark.",
      "Go to bed and get up at the same time every day, including weekends. Stop using screens an hour before bed, avoid caffeine after midday, and keep the bedroom cool, dark and quiet. If you are still awake after twenty minutes, get up and read until you feel sleepy.",
      "Stick to the same bedtime and wake-up time, even on weekends. Put the phone away an hour before bed, skip coffee after lunch, and keep your room cool, dark and quiet. If you're still awake after twenty minutes, get up and read something boring until you're drowsy."],
     ["Sleep onset is governed by the circadian rhythm and by melatonin, which light suppresses.",
      "Your body clock and the sleep hormone melatonin decide when you get sleepy, and light messes with both.",
      "Sleep onset depends on two processes: the circadian rhythm, an internal clock that regular schedules keep stable, and sleep pressure, which builds up during waking hours. Bright and blue light in the evening suppresses melatonin, and caffeine blocks adenosine, the molecule that carries sleep pressure.",
      "Two things make you sleepy: your body clock, which likes a regular schedule, and sleep pressure, which builds up the longer you're awake. Screen light in the evening holds back melatonin, the sleep hormone, and coffee blocks adenosine, the stuff that makes you feel tired."]),
    ("What is a good way to start learning to code?",
     ["Choose one beginner language such as Python, follow a structured course, and build a small project.",
      "Pick Python, follow a beginner course, and build something small you actually care about.",
      "Choose one beginner-friendly language, such as Python, and follow a structured free course for a few weeks. Write code every day, even for twenty minutes, and as soon as possible start a small project of your own, such as a budget tracker, so that you practise solving real problems.",
      "Pick one easy language like Python and work through a free beginner course. Code a little every day, even just twenty minutes, and start your own tiny project early, like a to-do app or a budget tracker, because that's where it really clicks."],
     ["Programming is a skill built by practice, because understanding comes from writing and debugging code.",
      "Coding is learned by doing: you get it by writing code and fixing your own bugs.",
      "Programming is less about memorising syntax than about learning to break problems into precise steps. That skill develops through deliberate practice: writing code, meeting errors and debugging them. Projects help because they force you to combine concepts and to search for answers, which is how professionals work.",
      "Coding is mostly about learning to break a problem into tiny exact steps, not memorising commands. You only get that by writing code, hitting errors and figuring them out. Projects work because they make you combine everything and look things up, which is exactly what real programmers do all day."]),
  ]
}
