import Foundation

/// Minesweeper as TextArena 0.7.4's `Minesweeper-v0` plays it (METHODS.md §11), move for move.
///
/// Mines are placed at the first reveal, never in that cell's 3×3 neighbourhood, so the opening cell is
/// a 0 and flood-fills: revealing a 0 reveals its neighbours, and theirs while they are 0 (breadth
/// first). The episode is won when every safe cell is revealed. The board prints as TextArena's does:
/// a header of column numbers, then each row's number and its cells (`.` hidden, a digit revealed).
///
/// With `.textArena` rules a mine is an invalid move, as in TextArena: the cell stays hidden and the move
/// uses no turn; the first invalid move in a row is forgiven, the second ends the episode paying the share
/// of safe cells revealed after the opening (`_get_percentage_completion`). With `.sparse` rules a mine
/// ends the episode with reward 0 and is shown as `*`.
///
/// TextArena 0.7.4 only reveals (`[3 2]`), and `.textArena` syntax accepts only that. `.lenient` syntax
/// (the default with `.sparse` rules) also accepts `3 2`, `[reveal 3 2]` and `[flag 3 2]` (TextArena
/// 0.6's forms), bracketed or bare. A flag toggles a marker on a hidden cell, uses a turn, shows as `F`, stops
/// the flood and must be removed before the cell can be revealed; the first reveal clears all flags, and
/// flags never count towards a win.
///
/// Mines drawn here come from `SplitMix64(seed)`, uniformly among the cells outside the opening's 3×3
/// (TextArena's rejection sampling draws the same distribution from Python's `random`, so its layouts
/// are not reproduced: replay one by passing it as `layout`).
public struct Minesweeper: TextGame, Sendable {
  public enum Action: Hashable, Sendable, CustomStringConvertible {
    case reveal(row: Int, column: Int)
    case flag(row: Int, column: Int)

    public var description: String {
      switch self {
      case .reveal(let r, let c): return "[\(r) \(c)]"
      case .flag(let r, let c): return "[flag \(r) \(c)]"
      }
    }
  }

  /// TextArena's registered sizes.
  public struct Preset: Sendable, Equatable {
    public let rows: Int, columns: Int, mines: Int
    public init(rows: Int, columns: Int, mines: Int) {
      self.rows = rows
      self.columns = columns
      self.mines = mines
    }
    /// `Minesweeper-v0-small`
    public static let small = Preset(rows: 5, columns: 5, mines: 5)
    /// `Minesweeper-v0`
    public static let standard = Preset(rows: 8, columns: 8, mines: 10)
    /// `Minesweeper-v0-medium`
    public static let medium = Preset(rows: 10, columns: 10, mines: 20)
    /// `Minesweeper-v0-hard`
    public static let hard = Preset(rows: 12, columns: 12, mines: 30)
  }

  public let rows: Int
  public let columns: Int
  public let mineCount: Int
  public let maxTurns: Int
  public let rules: GameRules
  public let syntax: ActionSyntax
  /// A layout given up front (row-major cell indices); nil when mines are drawn at the first reveal.
  public let layout: Set<Int>?

  /// Mines by cell (row-major); all false until they are placed.
  public private(set) var mines: [Bool]
  /// Adjacent-mine counts of safe cells (−1 for a mine), once mines are placed.
  public private(set) var numbers: [Int]
  public private(set) var revealed: [Bool]
  public private(set) var flags: [Bool]
  /// The first reveal, whose 3×3 neighbourhood is kept free of mines.
  public private(set) var openingCell: Int?
  /// Played moves so far (TextArena's `state.turn`).
  public private(set) var turn = 0
  /// Invalid moves in a row (TextArena's `state.error_count`).
  public private(set) var errorCount = 0
  public private(set) var terminated = false
  public private(set) var truncated = false
  private var rng = SplitMix64(seed: 0)
  private var lastMessage: String?

  /// A board with `mines` drawn at the first reveal. Throws unless the board is non-empty and the mines
  /// fit outside any opening's 3×3 neighbourhood, and `maxTurns` is at least 1.
  public init(
    rows: Int = 8, columns: Int = 8, mines: Int = 10, maxTurns: Int = 100, rules: GameRules = .textArena,
    syntax: ActionSyntax? = nil
  ) throws {
    guard rows >= 1, columns >= 1 else {
      throw WorldsError("Minesweeper: \(rows)×\(columns) board, expected at least one row and one column")
    }
    let opening = min(3, rows) * min(3, columns)
    guard mines >= 0, mines <= rows * columns - opening else {
      throw WorldsError(
        "Minesweeper: \(mines) mines on \(rows)×\(columns), expected 0...\(rows * columns - opening) (the opening's 3×3 stays clear)")
    }
    try self.init(rows: rows, columns: columns, mines: mines, layout: nil, maxTurns: maxTurns, rules: rules, syntax: syntax)
  }

  public init(
    preset: Preset, maxTurns: Int = 100, rules: GameRules = .textArena, syntax: ActionSyntax? = nil
  ) throws {
    try self.init(
      rows: preset.rows, columns: preset.columns, mines: preset.mines, maxTurns: maxTurns, rules: rules, syntax: syntax)
  }

  /// A board with a fixed layout (`[row, column]` pairs), e.g. one recorded from TextArena: the first
  /// reveal places nothing, so it is only safe if the layout keeps it so. Throws for a cell off the
  /// board or listed twice.
  public init(
    rows: Int, columns: Int, layout: [[Int]], maxTurns: Int = 100, rules: GameRules = .textArena,
    syntax: ActionSyntax? = nil
  ) throws {
    guard rows >= 1, columns >= 1 else {
      throw WorldsError("Minesweeper: \(rows)×\(columns) board, expected at least one row and one column")
    }
    var cells = Set<Int>()
    for pair in layout {
      guard pair.count == 2, (0..<rows).contains(pair[0]), (0..<columns).contains(pair[1]) else {
        throw WorldsError("Minesweeper layout: \(pair) is not a [row, column] on the \(rows)×\(columns) board")
      }
      guard cells.insert(pair[0] * columns + pair[1]).inserted else {
        throw WorldsError("Minesweeper layout: \(pair) is listed twice")
      }
    }
    try self.init(
      rows: rows, columns: columns, mines: cells.count, layout: cells, maxTurns: maxTurns, rules: rules, syntax: syntax)
  }

  private init(
    rows: Int, columns: Int, mines: Int, layout: Set<Int>?, maxTurns: Int, rules: GameRules, syntax: ActionSyntax?
  ) throws {
    guard maxTurns >= 1 else { throw WorldsError("Minesweeper: max turns \(maxTurns), expected at least 1") }
    self.rows = rows
    self.columns = columns
    mineCount = mines
    self.maxTurns = maxTurns
    self.rules = rules
    self.syntax = syntax ?? (rules == .textArena ? .textArena : .lenient)
    self.layout = layout
    self.mines = [Bool](repeating: false, count: rows * columns)
    numbers = [Int](repeating: 0, count: rows * columns)
    revealed = [Bool](repeating: false, count: rows * columns)
    flags = revealed
  }

  public var instructions: String {
    """
    You are playing Minesweeper on a \(rows)×\(columns) board with \(mineCount) mines. Reveal every cell that \
    holds no mine. Hidden cells show '.', revealed cells the number of mines among their eight neighbours; \
    revealing a 0 reveals its neighbours too. Your first reveal is always safe and opens an area around it. \
    Answer with the row and column to reveal in square brackets, e.g. [3 2] for row 3, column 2\
    \(syntax == .lenient ? " ([flag 3 2] marks a suspected mine)" : ""). Do not choose a cell already revealed.
    """
  }

  /// A new episode: hidden board, mines to be drawn from `SplitMix64(seed)` at the first reveal (or the
  /// fixed layout).
  public mutating func reset(seed: UInt64) -> Observation {
    rng = SplitMix64(seed: seed)
    let n = rows * columns
    mines = [Bool](repeating: false, count: n)
    numbers = [Int](repeating: 0, count: n)
    revealed = [Bool](repeating: false, count: n)
    flags = revealed
    openingCell = nil
    turn = 0
    errorCount = 0
    terminated = false
    truncated = false
    lastMessage = nil
    return observation
  }

  public var isDone: Bool { terminated || truncated }

  public mutating func step(_ action: Action) -> StepResult {
    guard !isDone else {
      return StepResult(
        observation: observation, reward: 0, terminated: terminated, truncated: truncated,
        info: StepInfo(invalidAction: "The episode has ended; reset to play again."))
    }
    var invalid: String?
    var reward = 0.0
    var message: String?
    var lost = false
    func refuseMove(_ reason: String) {
      invalid = reason
      if rules == .textArena {
        if let warning = GameRules.textArenaWarning(reason, errorCount: &errorCount) {
          message = warning
        } else {
          reward = completion
          lost = true
        }
      }
    }
    var played = false
    switch action {
    case .reveal(let r, let c):
      if !(0..<rows).contains(r) || !(0..<columns).contains(c) {
        refuseMove("The specified row and column coordinates are out of bounds.")
      } else if revealed[r * columns + c] {
        refuseMove("The cell at (\(r), \(c)) has already been revealed.")
      } else if flags[r * columns + c] {
        refuseMove("The cell at (\(r), \(c)) is flagged; remove the flag first.")
      } else {
        let cell = r * columns + c
        if openingCell == nil {
          flags = [Bool](repeating: false, count: rows * columns)
          placeMines(avoiding: cell)
          openingCell = cell
        }
        if mines[cell] {
          if rules == .textArena {
            refuseMove("You hit a mine at (\(r), \(c)).")
          } else {
            revealed[cell] = true
            message = "You hit a mine at (\(r), \(c))."
            lost = true
            played = true
          }
        } else {
          flood(from: cell)
          message = "You revealed the cell at (\(r), \(c))."
          played = true
        }
      }
    case .flag(let r, let c):
      if !(0..<rows).contains(r) || !(0..<columns).contains(c) {
        refuseMove("The specified row and column coordinates are out of bounds.")
      } else if revealed[r * columns + c] {
        refuseMove("The cell at (\(r), \(c)) is revealed and cannot be flagged.")
      } else {
        flags[r * columns + c].toggle()
        message = flags[r * columns + c] ? "You flagged the cell at (\(r), \(c))." : "You removed the flag at (\(r), \(c))."
        played = true
      }
    }
    return finish(invalid: invalid, played: played, lost: lost, reward: reward, message: message)
  }

  /// TextArena's end of `step`: win, then turn limit, then the turn count (which an invalid move leaves).
  private mutating func finish(invalid: String?, played: Bool, lost: Bool, reward: Double, message: String?) -> StepResult {
    var reward = reward
    var message = message
    if lost {
      terminated = true
      if rules == .sparse { reward = 0 }
    }
    if isSolved {
      terminated = true
      reward = 1
      message = "Congratulations! You have successfully cleared the Minesweeper board."
    } else if !terminated {
      switch rules {
      case .textArena:
        // `check_turn_limit` reads the turn count before this move is counted.
        if turn >= maxTurns {
          truncated = true
          reward = completion
          message = "The turn limit has been reached. You successfully uncovered \(Int((completion * 100).rounded(.toNearestOrEven)))% of the safe cells."
        }
      case .sparse:
        if played && turn + 1 >= maxTurns {
          truncated = true
          message = "The turn limit has been reached."
        }
      }
    }
    switch rules {
    case .textArena:
      // `SinglePlayerState.step`: a move that was not refused (or the refusal that ended the game) counts.
      if invalid == nil || lost {
        errorCount = 0
        turn += 1
      }
    case .sparse:
      if played { turn += 1 }
    }
    lastMessage = message
    return StepResult(
      observation: observation, reward: reward, terminated: terminated, truncated: truncated,
      info: StepInfo(invalidAction: invalid, message: message))
  }

  public mutating func refuse(_ reason: String) -> StepResult {
    guard !isDone else {
      return StepResult(
        observation: observation, reward: 0, terminated: terminated, truncated: truncated,
        info: StepInfo(invalidAction: "The episode has ended; reset to play again."))
    }
    var reward = 0.0
    var lost = false
    var message: String?
    if rules == .textArena {
      if let warning = GameRules.textArenaWarning(reason, errorCount: &errorCount) {
        message = warning
      } else {
        reward = completion
        lost = true
      }
    }
    return finish(invalid: reason, played: false, lost: lost, reward: reward, message: message)
  }

  /// TextArena's reveal: the cell, then breadth first every hidden neighbour of a revealed 0 (flags stop
  /// it).
  private mutating func flood(from cell: Int) {
    var queue = [cell]
    var head = 0
    revealed[cell] = true
    while head < queue.count {
      let current = queue[head]
      head += 1
      guard numbers[current] == 0 else { continue }
      for n in neighbours(current) where !revealed[n] && !flags[n] {
        revealed[n] = true
        queue.append(n)
      }
    }
  }

  private mutating func placeMines(avoiding cell: Int) {
    if let layout {
      for m in layout { mines[m] = true }
    } else {
      let r0 = cell / columns, c0 = cell % columns
      var allowed = (0..<rows * columns).filter { abs($0 / columns - r0) > 1 || abs($0 % columns - c0) > 1 }
      for i in 0..<mineCount {
        let j = i + Int(SplitMix64.below(UInt64(allowed.count - i), &rng))
        allowed.swapAt(i, j)
        mines[allowed[i]] = true
      }
    }
    for i in 0..<rows * columns {
      numbers[i] = mines[i] ? -1 : neighbours(i).filter { mines[$0] }.count
    }
  }

  /// The eight neighbours on the board, in TextArena's order.
  func neighbours(_ cell: Int) -> [Int] {
    let r = cell / columns, c = cell % columns
    var out: [Int] = []
    out.reserveCapacity(8)
    for (dr, dc) in [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)] {
      let nr = r + dr, nc = c + dc
      if nr >= 0, nr < rows, nc >= 0, nc < columns { out.append(nr * columns + nc) }
    }
    return out
  }

  /// Every safe cell revealed (TextArena's `_is_solved`; before the first reveal no cell is a mine yet,
  /// so a board is never solved by doing nothing unless it has no mines and all is revealed).
  public var isSolved: Bool {
    (0..<rows * columns).allSatisfy { mines[$0] || revealed[$0] } && openingCell != nil
  }

  /// TextArena's `_get_percentage_completion`: the share of safe cells revealed, leaving out those the
  /// opening alone reveals (its 3×3 and the flood from it); 0 before the first reveal, 1 if nothing is
  /// left out of the opening.
  public var completion: Double {
    guard let opening = openingCell else { return 0 }
    let r0 = opening / columns, c0 = opening % columns
    // What the opening alone reveals: the flood from it over safe cells.
    var initial = [Bool](repeating: false, count: rows * columns)
    var queue = [opening]
    var head = 0
    initial[opening] = true
    while head < queue.count {
      let current = queue[head]
      head += 1
      guard numbers[current] == 0 else { continue }
      for n in neighbours(current) where !initial[n] && !mines[n] {
        initial[n] = true
        queue.append(n)
      }
    }
    var total = 0, done = 0
    for i in 0..<rows * columns where !mines[i] {
      let inZone = abs(i / columns - r0) <= 1 && abs(i % columns - c0) <= 1
      if !(inZone || initial[i]) {
        total += 1
        if revealed[i] { done += 1 }
      }
    }
    return total > 0 ? Double(done) / Double(total) : 1
  }

  public func parseAction(_ text: String) -> Result<Action, InvalidAction> {
    // TextArena 0.7.4: r"\[(\d+)\s(\d+)\]", the first match; TextArena 0.6: r"\[([a-zA-Z]+)\s(\d+)\s(\d+)\]".
    func read(_ group: Substring, exact: Bool) -> Action? {
      let words = ReplyScanner.words(group)
      if exact {
        // One whitespace character between two digit runs, nothing else.
        let parts = group.split(omittingEmptySubsequences: false, whereSeparator: { $0.isWhitespace })
        if parts.count == 2, let r = ReplyScanner.number(parts[0]), let c = ReplyScanner.number(parts[1]) {
          return .reveal(row: r, column: c)
        }
      } else if words.count == 2, let r = ReplyScanner.number(words[0]), let c = ReplyScanner.number(words[1]) {
        return .reveal(row: r, column: c)
      }
      if !exact, words.count == 3, let r = ReplyScanner.number(words[1]), let c = ReplyScanner.number(words[2]) {
        switch words[0].lowercased() {
        case "reveal": return .reveal(row: r, column: c)
        case "flag": return .flag(row: r, column: c)
        default: return nil
        }
      }
      return nil
    }
    for group in ReplyScanner.bracketed(text) {
      if let a = read(group, exact: syntax == .textArena) { return .success(a) }
    }
    if syntax == .lenient, let a = read(Substring(ReplyScanner.bare(text)), exact: false) { return .success(a) }
    return .failure(InvalidAction("You did not respond with valid coordinates in square brackets."))
  }

  public var legalActions: [Action] {
    guard !isDone else { return [] }
    var out: [Action] = []
    for i in 0..<rows * columns where !revealed[i] && !flags[i] { out.append(.reveal(row: i / columns, column: i % columns)) }
    if syntax == .lenient {
      for i in 0..<rows * columns where !revealed[i] { out.append(.flag(row: i / columns, column: i % columns)) }
    }
    return out
  }

  /// TextArena's `_render_board`, with `F` for a flag and `*` for a revealed mine.
  public func render() -> String {
    var board = "   " + (0..<columns).map { pad(String($0), 2) }.joined(separator: " ") + "\n"
    for r in 0..<rows {
      var line = pad(String(r), 2) + " "
      for c in 0..<columns {
        let i = r * columns + c
        if revealed[i] { line += mines[i] ? " * " : " \(numbers[i]) " }
        else if flags[i] { line += " F " }
        else { line += " . " }
      }
      board += line + "\n"
    }
    return board
  }

  private func pad(_ s: String, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - s.count)) + s
  }

  /// What a player may see: numbers of revealed cells, hidden and flagged cells, and the mine count.
  public var view: MinesweeperView {
    MinesweeperView(
      rows: rows, columns: columns, mines: mineCount,
      cells: (0..<rows * columns).map { revealed[$0] ? (mines[$0] ? .mine : .number(numbers[$0])) : flags[$0] ? .flagged : .hidden })
  }

  public var observation: Observation {
    let board = render()
    var status = lastMessage.map { $0 + "\n" } ?? ""
    if !isDone {
      status += "Turn \(turn) of \(maxTurns). Reveal a hidden cell with [row col]."
    } else {
      status += "The episode is over."
    }
    return Observation(text: "Current Board:\n\n\(board)\n\(status)", board: board, legalActions: legalActions.map(\.description))
  }
}

extension SplitMix64 {
  /// A uniform integer in [0, n) without modulo bias (Lemire's multiply-and-reject).
  static func below(_ n: UInt64, _ rng: inout SplitMix64) -> UInt64 {
    precondition(n > 0, "below: empty range")
    var (high, low) = rng.next().multipliedFullWidth(by: n)
    if low < n {
      let threshold = (0 &- n) % n
      while low < threshold { (high, low) = rng.next().multipliedFullWidth(by: n) }
    }
    return high
  }
}

/// A Minesweeper board as a player sees it.
public struct MinesweeperView: Sendable, Equatable {
  public enum Cell: Sendable, Equatable {
    case hidden, flagged, mine
    case number(Int)
  }
  public let rows: Int, columns: Int, mines: Int
  public let cells: [Cell]

  public init(rows: Int, columns: Int, mines: Int, cells: [Cell]) {
    self.rows = rows
    self.columns = columns
    self.mines = mines
    self.cells = cells
  }
}
