import Foundation

/// A Sokoban level in the XSB text format that Boxoban and most collections use (METHODS.md §11):
/// `#` wall, `@` player, `$` box, `.` goal, `*` box on a goal, `+` player on a goal, space (or `-`, `_`)
/// floor. Ragged rows are padded with floor on the right.
public struct SokobanLevel: Sendable, Equatable, CustomStringConvertible {
  public let rows: Int
  public let columns: Int
  /// Row-major.
  public let walls: [Bool]
  public let goals: [Bool]
  /// Cells holding a box, ascending.
  public let boxes: [Int]
  public let player: Int

  /// Parses XSB rows; throws naming the row and symbol when a character is not XSB, and unless there is
  /// exactly one player and as many boxes as goals (at least one).
  public init(xsb text: String) throws {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0.filter { $0 != "\r" }) }
    while let last = lines.last, last.trimmingCharacters(in: .whitespaces).isEmpty { lines.removeLast() }
    while let first = lines.first, first.trimmingCharacters(in: .whitespaces).isEmpty { lines.removeFirst() }
    guard !lines.isEmpty else { throw WorldsError("Sokoban level: no rows") }
    let width = lines.map(\.count).max()!
    var walls: [Bool] = [], goals: [Bool] = [], boxes: [Int] = []
    var players: [Int] = []
    for (r, line) in lines.enumerated() {
      let padded = line + String(repeating: " ", count: width - line.count)
      for (c, ch) in padded.enumerated() {
        let i = r * width + c
        walls.append(ch == "#")
        goals.append(".*+".contains(ch))
        switch ch {
        case "#", " ", "-", "_", ".": break
        case "@", "+": players.append(i)
        case "$", "*": boxes.append(i)
        default:
          throw WorldsError("Sokoban level: row \(r) column \(c) has '\(ch)', expected one of # @ + $ * . or space")
        }
      }
    }
    guard players.count == 1 else { throw WorldsError("Sokoban level: \(players.count) players, expected exactly one ('@' or '+')") }
    let goalCount = goals.filter { $0 }.count
    guard !boxes.isEmpty, boxes.count == goalCount else {
      throw WorldsError("Sokoban level: \(boxes.count) boxes and \(goalCount) goals, expected as many boxes as goals (at least one)")
    }
    try self.init(rows: lines.count, columns: width, walls: walls, goals: goals, boxes: boxes, player: players[0])
  }

  /// A level from its parts (row-major cells); throws when they disagree in size or overlap.
  public init(rows: Int, columns: Int, walls: [Bool], goals: [Bool], boxes: [Int], player: Int) throws {
    let n = rows * columns
    guard rows >= 1, columns >= 1, walls.count == n, goals.count == n else {
      throw WorldsError("Sokoban level: walls and goals must have rows × columns = \(n) cells")
    }
    guard (0..<n).contains(player), !walls[player] else { throw WorldsError("Sokoban level: the player is not on a floor cell") }
    guard Set(boxes).count == boxes.count, boxes.allSatisfy({ (0..<n).contains($0) && !walls[$0] && $0 != player }) else {
      throw WorldsError("Sokoban level: boxes must be distinct floor cells apart from the player")
    }
    self.rows = rows
    self.columns = columns
    self.walls = walls
    self.goals = goals
    self.boxes = boxes.sorted()
    self.player = player
  }

  /// The level in XSB, one row a line (trailing floor kept, so every row is `columns` wide).
  public var xsb: String {
    let boxSet = Set(boxes)
    return (0..<rows).map { r in
      String((0..<columns).map { c -> Character in
        let i = r * columns + c
        if walls[i] { return "#" }
        if i == player { return goals[i] ? "+" : "@" }
        if boxSet.contains(i) { return goals[i] ? "*" : "$" }
        return goals[i] ? "." : " "
      })
    }.joined(separator: "\n")
  }

  public var description: String { xsb }

  /// The same room with the boxes and player moved.
  public func with(boxes: [Int], player: Int) throws -> SokobanLevel {
    try SokobanLevel(rows: rows, columns: columns, walls: walls, goals: goals, boxes: boxes, player: player)
  }

  /// Every box on a goal.
  public var isSolved: Bool { boxes.allSatisfy { goals[$0] } }

  /// The levels of a Boxoban file: each headed by a line `; N`, rows until the next header or a blank
  /// line. Throws naming the level (and its line) that does not parse.
  public static func boxoban(_ text: String) throws -> [(id: Int, level: SokobanLevel)] {
    var out: [(Int, SokobanLevel)] = []
    var id: Int?
    var headerLine = 0
    var rows: [String] = []
    func flush() throws {
      guard let current = id else { return }
      do { out.append((current, try SokobanLevel(xsb: rows.joined(separator: "\n")))) } catch let e as WorldsError {
        throw WorldsError("Boxoban level \(current) (line \(headerLine)): \(e.message)")
      }
      rows = []
      id = nil
    }
    for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = raw.filter { $0 != "\r" }
      if line.hasPrefix(";") {
        try flush()
        let number = line.dropFirst().trimmingCharacters(in: .whitespaces)
        guard let value = Int(number) else {
          throw WorldsError("Boxoban file line \(n + 1): header '\(line)', expected '; N' with a level number")
        }
        id = value
        headerLine = n + 1
      } else if line.trimmingCharacters(in: .whitespaces).isEmpty {
        try flush()
      } else if id != nil {
        rows.append(String(line))
      } else {
        throw WorldsError("Boxoban file line \(n + 1): level rows before any '; N' header")
      }
    }
    try flush()
    return out
  }

  /// `boxoban(_:)` on a file; throws naming the path when it cannot be read.
  public static func boxoban(contentsOf url: URL) throws -> [(id: Int, level: SokobanLevel)] {
    guard let data = try? Data(contentsOf: url), let text = String(data: data, encoding: .utf8) else {
      throw WorldsError("Boxoban file \(url.path): cannot be read as UTF-8 text")
    }
    do { return try boxoban(text) } catch let e as WorldsError { throw WorldsError("\(url.path): \(e.message)") }
  }
}

/// Sokoban as TextArena 0.7.4's `Sokoban-v0` plays it, move for move, on a given level or on rooms made
/// by reverse play (`SokobanGenerator`, gym-sokoban's method).
///
/// Moves `[up]`, `[down]`, `[left]`, `[right]` (or `[w]`, `[a]`, `[s]`, `[d]`, any case); the player
/// pushes a box by walking into it when the cell behind is free. The board prints as TextArena's:
/// `#` wall, `_` floor, `O` goal, `X` box, `√` box on goal, `P` player, space-separated.
///
/// With `.textArena` rules a move into a wall or an unpushable box is an invalid move (not played, no
/// turn used; the second in a row ends the episode); a win pays 1, running out of turns or moves pays the
/// share of boxes on goals. With `.sparse` rules a blocked move is a no-op that uses a turn (gym-sokoban),
/// and only a win pays.
///
/// Difference from TextArena: a level loaded with a box already on a goal (`*`) counts that box as on
/// its goal; TextArena's generator never starts one there.
public struct Sokoban: TextGame, Sendable {
  public enum Action: Int, CaseIterable, Sendable, CustomStringConvertible {
    case up = 0, down, left, right
    public var name: String { ["up", "down", "left", "right"][rawValue] }
    public var description: String { "[\(name)]" }
    /// LURD notation for a move (lowercase) or a push (uppercase).
    public func lurd(push: Bool) -> Character {
      let ch: Character = ["u", "d", "l", "r"][rawValue]
      return push ? Character(ch.uppercased()) : ch
    }
    var delta: (Int, Int) { [(-1, 0), (1, 0), (0, -1), (0, 1)][rawValue] }
  }

  /// The level each episode starts from, or the generator that makes a new room at every reset.
  public enum Source: Sendable {
    case level(SokobanLevel)
    case generated(SokobanGenerator)
  }

  public let source: Source
  public let maxTurns: Int
  public let rules: GameRules
  public let syntax: ActionSyntax

  /// The episode's level as it started.
  public private(set) var start: SokobanLevel
  public private(set) var player: Int
  /// Box by cell.
  public private(set) var boxAt: [Bool]
  public private(set) var turn = 0
  public private(set) var errorCount = 0
  public private(set) var terminated = false
  public private(set) var truncated = false
  private var lastMessage: String?

  /// A game on one level. TextArena's `Sokoban-v0` allows 30 turns, `-medium` 50, its class default 100.
  public init(level: SokobanLevel, maxTurns: Int = 100, rules: GameRules = .textArena, syntax: ActionSyntax? = nil) throws {
    guard maxTurns >= 1 else { throw WorldsError("Sokoban: max turns \(maxTurns), expected at least 1") }
    source = .level(level)
    self.maxTurns = maxTurns
    self.rules = rules
    self.syntax = syntax ?? (rules == .textArena ? .textArena : .lenient)
    start = level
    player = level.player
    boxAt = Sokoban.boxMap(level)
  }

  /// A game on rooms generated by reverse play, a new one at every `reset(seed:)` (the first from seed 0
  /// until then). Throws the generator's error when it cannot make a room.
  public init(generator: SokobanGenerator, maxTurns: Int = 100, rules: GameRules = .textArena, syntax: ActionSyntax? = nil) throws {
    guard maxTurns >= 1 else { throw WorldsError("Sokoban: max turns \(maxTurns), expected at least 1") }
    let level = try generator.generate(seed: 0)
    source = .generated(generator)
    self.maxTurns = maxTurns
    self.rules = rules
    self.syntax = syntax ?? (rules == .textArena ? .textArena : .lenient)
    start = level
    player = level.player
    boxAt = Sokoban.boxMap(level)
  }

  private static func boxMap(_ level: SokobanLevel) -> [Bool] {
    var map = [Bool](repeating: false, count: level.rows * level.columns)
    for b in level.boxes { map[b] = true }
    return map
  }

  public var instructions: String {
    """
    You are solving a Sokoban puzzle: push every box onto a goal. Walk into a box to push it one cell, if \
    the cell behind it is free; boxes cannot be pulled, and you cannot walk through walls or boxes. The \
    board shows P for you, # walls, _ floor, X boxes, O empty goals and √ boxes on goals. Answer with one \
    move in square brackets: [up], [down], [left] or [right] (or [w], [a], [s], [d]).
    """
  }

  /// Restarts the level (a given level ignores the seed), or generates a new room from the seed.
  public mutating func reset(seed: UInt64) -> Observation {
    if case .generated(let generator) = source, let level = try? generator.generate(seed: seed) { start = level }
    player = start.player
    boxAt = Sokoban.boxMap(start)
    turn = 0
    errorCount = 0
    terminated = false
    truncated = false
    lastMessage = nil
    return observation
  }

  public var isDone: Bool { terminated || truncated }

  /// The current position as a level.
  public var level: SokobanLevel {
    try! start.with(boxes: boxAt.indices.filter { boxAt[$0] }, player: player)
  }

  /// The cell one step from `cell`, or nil off the board.
  func neighbour(_ cell: Int, _ action: Action) -> Int? {
    let (dr, dc) = action.delta
    let r = cell / start.columns + dr, c = cell % start.columns + dc
    guard r >= 0, r < start.rows, c >= 0, c < start.columns else { return nil }
    return r * start.columns + c
  }

  /// TextArena's `_would_collide_with_wall`: off the board, a wall, or a box that cannot move on.
  func isBlocked(_ action: Action) -> Bool {
    guard let next = neighbour(player, action), !start.walls[next] else { return true }
    if boxAt[next] {
      guard let behind = neighbour(next, action), !start.walls[behind], !boxAt[behind] else { return true }
    }
    return false
  }

  public var boxesOnGoals: Int { boxAt.indices.filter { boxAt[$0] && start.goals[$0] }.count }
  public var isSolved: Bool { boxesOnGoals == start.boxes.count }
  /// TextArena's `_get_percentage_completion`.
  public var completion: Double { isSolved ? 1 : Double(boxesOnGoals) / Double(start.boxes.count) }

  public mutating func step(_ action: Action) -> StepResult {
    guard !isDone else {
      return StepResult(
        observation: observation, reward: 0, terminated: terminated, truncated: truncated,
        info: StepInfo(invalidAction: "The episode has ended; reset to play again."))
    }
    if isBlocked(action) {
      switch rules {
      case .textArena: return invalidMove("You cannot move into a wall!")
      case .sparse: return played(message: "You cannot move \(action.name): the way is blocked.")
      }
    }
    let next = neighbour(player, action)!
    var pushed = false
    if boxAt[next] {
      let behind = neighbour(next, action)!
      boxAt[next] = false
      boxAt[behind] = true
      pushed = true
    }
    player = next
    // TextArena's message, double space and all, when no box moves.
    return played(message: "You \(pushed ? "pushed a box while" : "") moved [\(action.name)].")
  }

  private mutating func played(message: String) -> StepResult {
    var reward = 0.0
    var message = message
    if isSolved {
      terminated = true
      reward = 1
      message = "Congratulations! You have solved the Sokoban puzzle!"
    } else {
      switch rules {
      case .textArena:
        // Checked before the turn count moves: the episode ends on valid move maxTurns + 1.
        if turn >= maxTurns {
          truncated = true
          reward = completion
          message = "The turn limit has been reached. You did not solve the puzzle."
        }
      case .sparse:
        if turn + 1 >= maxTurns {
          truncated = true
          message = "The turn limit has been reached. You did not solve the puzzle."
        }
      }
    }
    errorCount = 0
    turn += 1
    lastMessage = message
    return StepResult(
      observation: observation, reward: reward, terminated: terminated, truncated: truncated,
      info: StepInfo(message: message))
  }

  private mutating func invalidMove(_ reason: String) -> StepResult {
    var reward = 0.0
    var message: String?
    if rules == .textArena {
      if let warning = GameRules.textArenaWarning(reason, errorCount: &errorCount) {
        message = warning
      } else {
        terminated = true
        reward = completion
        message = "Invalid Move: \(reason)"
        // The refusal that ends the game counts as TextArena's turn.
        errorCount = 0
        turn += 1
      }
    }
    lastMessage = message
    return StepResult(
      observation: observation, reward: reward, terminated: terminated, truncated: truncated,
      info: StepInfo(invalidAction: reason, message: message))
  }

  public mutating func refuse(_ reason: String) -> StepResult {
    guard !isDone else {
      return StepResult(
        observation: observation, reward: 0, terminated: terminated, truncated: truncated,
        info: StepInfo(invalidAction: "The episode has ended; reset to play again."))
    }
    return invalidMove(reason)
  }

  public func parseAction(_ text: String) -> Result<Action, InvalidAction> {
    func word(_ s: String) -> Action? {
      switch s {
      case "up", "w": return .up
      case "down", "s": return .down
      case "left", "a": return .left
      case "right", "d": return .right
      default: return nil
      }
    }
    // TextArena: r'\[(up|down|left|right|w|a|s|d)\]', case-insensitive, the first match.
    for group in ReplyScanner.bracketed(text) {
      if let a = word(group.lowercased()) { return .success(a) }
    }
    if syntax == .lenient, let a = word(ReplyScanner.bare(text)) { return .success(a) }
    return .failure(InvalidAction(
      "The submitted move does not follow the correct format. Use [up], [down], [left], [right] or [w], [a], [s], [d]."))
  }

  public var legalActions: [Action] { isDone ? [] : Action.allCases.filter { !isBlocked($0) } }

  /// TextArena's `create_board_str`: symbols separated by spaces, each row ending in a newline.
  public func render() -> String {
    var out = ""
    for r in 0..<start.rows {
      var symbols: [String] = []
      for c in 0..<start.columns {
        let i = r * start.columns + c
        if start.walls[i] { symbols.append("#") }
        else if i == player { symbols.append("P") }
        else if boxAt[i] { symbols.append(start.goals[i] ? "√" : "X") }
        else { symbols.append(start.goals[i] ? "O" : "_") }
      }
      out += symbols.joined(separator: " ") + "\n"
    }
    return out
  }

  public var observation: Observation {
    let board = render()
    let legal = legalActions.map(\.description)
    var text = "Current Board:\n\n\(board)"
    if let lastMessage { text += "\n\(lastMessage)" }
    text += isDone ? "\nThe episode is over." : "\nAvailable Moves: " + Action.allCases.map(\.name).joined(separator: ", ")
    return Observation(text: text, board: board, legalActions: legal)
  }
}
