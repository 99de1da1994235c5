import Foundation

/// A game an agent plays through text (METHODS.md §8, §11): Frozen Lake, Minesweeper, Sokoban.
///
/// The shape is Gymnasium's — `reset` gives the first observation, `step` gives observation, reward,
/// terminated, truncated and info — with two additions an LLM agent needs: every observation carries the
/// board as a text grid and the legal actions as the strings the game accepts, and `step(text:)` takes a
/// model's free reply, finds the action in it, and answers a reply that names none with an *invalid
/// action* outcome (the game's own rule decides whether the episode goes on) instead of failing.
public protocol TextGame {
  associatedtype Action: Hashable & Sendable & CustomStringConvertible

  /// What an agent is told before it plays: the symbols of the board and the action format.
  var instructions: String { get }

  /// Starts an episode. The seed draws whatever the game draws (slips, mines, a room), so the same seed
  /// and configuration replay the same episode.
  mutating func reset(seed: UInt64) -> Observation

  /// Plays one action. After the episode has ended it changes nothing and answers an invalid action.
  mutating func step(_ action: Action) -> StepResult

  /// Answers a reply that names no playable action, by the game's rules (TextArena counts it as an
  /// invalid move; Frozen Lake ignores it).
  mutating func refuse(_ reason: String) -> StepResult

  /// Finds the action in a model's reply (`[up]`, `up`, `w`, `[3 2]`, `reveal 3 2`, …).
  func parseAction(_ text: String) -> Result<Action, InvalidAction>

  /// The actions that are playable now (for Sokoban: the moves that are not blocked).
  var legalActions: [Action] { get }

  /// The board as a text grid.
  func render() -> String

  /// The current observation (board, status line and legal actions).
  var observation: Observation { get }
}

extension TextGame {
  /// Parses a model's reply and plays it; a reply without an action is refused, never a crash.
  public mutating func step(text: String) -> StepResult {
    switch parseAction(text) {
    case .success(let action): return step(action)
    case .failure(let invalid): return refuse(invalid.reason)
    }
  }
}

/// What an agent sees: the board as text, a status line, and the legal actions as accepted strings.
public struct Observation: Sendable, Equatable {
  /// The board and status, as an agent's prompt shows them.
  public var text: String
  /// The board alone (`render()`).
  public var board: String
  /// Every action playable now, each in the form `parseAction` accepts.
  public var legalActions: [String]

  public init(text: String, board: String, legalActions: [String]) {
    self.text = text
    self.board = board
    self.legalActions = legalActions
  }
}

/// One step's outcome, as Gymnasium's `step` returns it.
public struct StepResult: Sendable, Equatable {
  public var observation: Observation
  public var reward: Double
  /// The episode reached a terminal state (goal, hole, win, loss).
  public var terminated: Bool
  /// The episode was cut off by a step limit.
  public var truncated: Bool
  public var info: StepInfo

  public var isDone: Bool { terminated || truncated }

  public init(observation: Observation, reward: Double, terminated: Bool, truncated: Bool, info: StepInfo) {
    self.observation = observation
    self.reward = reward
    self.terminated = terminated
    self.truncated = truncated
    self.info = info
  }
}

/// What a step says besides its reward.
public struct StepInfo: Sendable, Equatable {
  /// Why the action was not played; nil when it was.
  public var invalidAction: String?
  /// What happened, in words ("You revealed the cell at (3, 2).").
  public var message: String?
  /// Frozen Lake: the probability of the transition taken (Gymnasium's `info["prob"]`).
  public var probability: Double?

  public init(invalidAction: String? = nil, message: String? = nil, probability: Double? = nil) {
    self.invalidAction = invalidAction
    self.message = message
    self.probability = probability
  }
}

/// A reply that names no action the game accepts.
public struct InvalidAction: Error, Equatable, Sendable, CustomStringConvertible {
  public let reason: String
  public init(_ reason: String) { self.reason = reason }
  public var description: String { reason }
}

/// How a game finds the action in a reply.
public enum ActionSyntax: Sendable, Equatable {
  /// TextArena's: the first bracketed action (`[up]`, `[w]`, `[3 2]`) anywhere in the reply; anything
  /// else is invalid.
  case textArena
  /// TextArena's bracketed forms first; failing those, the whole reply (trimmed, any case, trailing
  /// punctuation dropped) as a bare action: `up`, `w`, `3 2`, `reveal 3 2`.
  case lenient
}

/// How Minesweeper and Sokoban score and end an episode.
public enum GameRules: Sendable, Equatable {
  /// TextArena 0.7.4 exactly: an unparseable, impossible or (Minesweeper) mine-hitting move is an
  /// invalid move that is not played and does not use a turn; one in a row is forgiven, the second in a
  /// row ends the episode. Losing or running out of turns pays the completed share (safe cells revealed
  /// after the opening, boxes on goals); winning pays 1. The turn limit is checked before the turn count
  /// moves, so an episode ends on valid move `maxTurns + 1`.
  case textArena
  /// Sparse 0/1 reward (METHODS.md §11, the CEL papers): 1 for a win, 0 otherwise; a mine ends the
  /// episode; an unparseable or impossible reply is refused and changes nothing (Sokoban: a blocked move
  /// is a no-op that uses a turn, as gym-sokoban plays it); the episode is truncated after `maxTurns`
  /// played moves.
  case sparse
}

extension GameRules {
  /// TextArena's warning for an invalid move it forgives (the first in a row), counting it; nil when this
  /// one is the second in a row and ends the episode.
  static func textArenaWarning(_ reason: String, errorCount: inout Int) -> String? {
    guard errorCount < 1 else { return nil }
    errorCount += 1
    return "You attempted an invalid move. Reason: \(reason) Please resubmit a valid move and remember to follow the game rules to avoid penalties."
  }
}

/// The parsing both TextArena games share: bracketed groups first, then (lenient) the bare reply.
enum ReplyScanner {
  /// The contents of every `[...]` group, in order.
  static func bracketed(_ text: String) -> [Substring] {
    var groups: [Substring] = []
    var open: String.Index?
    var i = text.startIndex
    while i < text.endIndex {
      let ch = text[i]
      if ch == "[" { open = text.index(after: i) }
      else if ch == "]", let start = open {
        groups.append(text[start..<i])
        open = nil
      }
      i = text.index(after: i)
    }
    return groups
  }

  /// The reply as a bare action: trimmed, lowercased, without surrounding quotes, backticks and final
  /// punctuation.
  static func bare(_ text: String) -> String {
    var s = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    let strip: Set<Character> = ["`", "\"", "'", ".", "!", "?", ","]
    while let f = s.first, strip.contains(f) { s.removeFirst() }
    while let l = s.last, strip.contains(l) { s.removeLast() }
    return s.trimmingCharacters(in: .whitespaces)
  }

  /// Whitespace-separated words.
  static func words(_ s: Substring) -> [Substring] {
    s.split(whereSeparator: { $0.isWhitespace })
  }

  /// A non-negative decimal integer, as Python's `int("03")` reads `\d+`; one too long for an `Int` reads
  /// as `Int.max` (out of any board, as Python's unbounded integer is).
  static func number(_ s: Substring) -> Int? {
    guard !s.isEmpty, s.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
    return Int(s) ?? Int.max
  }
}
