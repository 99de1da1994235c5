import Foundation

/// A Frozen Lake map (METHODS.md §9): rows of `S` start, `F` frozen, `H` hole, `G` goal.
public struct FrozenLakeMap: Sendable, Equatable, CustomStringConvertible {
  /// The rows as Gymnasium's `desc` writes them.
  public let rows: [String]
  public let rowCount: Int
  public let columnCount: Int
  /// The tiles row-major: state `s = row · columns + column` is `tiles[s]`.
  public let tiles: [Character]

  /// Gymnasium's `MAPS["4x4"]`.
  public static let fourByFour = try! FrozenLakeMap(["SFFF", "FHFH", "FFFH", "HFFG"])
  /// Gymnasium's `MAPS["8x8"]`.
  public static let eightByEight = try! FrozenLakeMap([
    "SFFFFFFF", "FFFFFFFF", "FFFHFFFF", "FFFFFHFF", "FFFHFFFF", "FHHFFFHF", "FHFFHFHF", "FFFHFFFG",
  ])

  /// A map from its rows; throws unless they are equally long, non-empty, use only `SFHG` and hold at
  /// least one `S`.
  public init(_ rows: [String]) throws {
    guard let width = rows.first?.count, width > 0 else { throw WorldsError("Frozen Lake map: no rows") }
    var tiles: [Character] = []
    for (i, row) in rows.enumerated() {
      guard row.count == width else {
        throw WorldsError("Frozen Lake map: row \(i) has \(row.count) tiles, expected \(width) like row 0")
      }
      for ch in row {
        guard "SFHG".contains(ch) else {
          throw WorldsError("Frozen Lake map: row \(i) has tile '\(ch)', expected one of S, F, H, G")
        }
        tiles.append(ch)
      }
    }
    guard tiles.contains("S") else { throw WorldsError("Frozen Lake map: no start tile 'S'") }
    self.rows = rows
    rowCount = rows.count
    columnCount = width
    self.tiles = tiles
  }

  public var stateCount: Int { tiles.count }
  public var description: String { rows.joined(separator: "\n") }

  /// Gymnasium's `generate_random_map(size, p, seed)`, draw for draw: each tile is frozen with
  /// probability p (NumPy's `choice(["F", "H"], (size, size), p=[p, 1 - p])` on `NumPyPCG64(seed)`), the
  /// corners become `S` and `G`, and the board is redrawn until a depth-first search finds a path, so the
  /// same seed gives Gymnasium's map. Throws for a size under 2, p outside (0, 1] (p above 1 is clamped,
  /// as Gymnasium does), or no solvable draw in `maxDraws` tries.
  public static func random(
    size: Int = 8, frozenProbability p: Double = 0.8, seed: UInt64, maxDraws: Int = 1_000_000
  ) throws -> FrozenLakeMap {
    guard size >= 2 else { throw WorldsError("Frozen Lake random map: size \(size), expected at least 2") }
    guard p > 0, p.isFinite else {
      throw WorldsError("Frozen Lake random map: frozen probability \(p), expected a number in (0, 1]")
    }
    let p = min(1, p)
    var rng = NumPyPCG64(seed: seed)
    // NumPy's choice: cdf = cumsum([p, 1 - p]) / its last entry; a draw u picks H when u >= cdf[0].
    let total = p + (1 - p)
    let frozenBelow = p / total
    for _ in 0..<maxDraws {
      var board = [Character](repeating: "F", count: size * size)
      for i in 0..<board.count where rng.random() >= frozenBelow { board[i] = "H" }
      board[0] = "S"
      board[size * size - 1] = "G"
      if pathExists(board, size: size) {
        return try FrozenLakeMap((0..<size).map { String(board[$0 * size..<($0 + 1) * size]) })
      }
    }
    throw WorldsError("Frozen Lake random map: no solvable map in \(maxDraws) draws (size \(size), p \(p))")
  }

  /// Gymnasium's `is_valid`: a depth-first search from the top-left over non-hole tiles reaches a `G`.
  public var isSolvable: Bool {
    guard rowCount == columnCount else {
      // The same search on a rectangle.
      return FrozenLakeMap.pathExists(tiles, rows: rowCount, columns: columnCount)
    }
    return FrozenLakeMap.pathExists(tiles, size: rowCount)
  }

  static func pathExists(_ board: [Character], size: Int) -> Bool {
    pathExists(board, rows: size, columns: size)
  }

  static func pathExists(_ board: [Character], rows: Int, columns: Int) -> Bool {
    var frontier = [(0, 0)]
    var discovered = Set<Int>()
    while let (r, c) = frontier.popLast() {
      guard discovered.insert(r * columns + c).inserted else { continue }
      for (dr, dc) in [(1, 0), (0, 1), (-1, 0), (0, -1)] {
        let nr = r + dr, nc = c + dc
        guard nr >= 0, nr < rows, nc >= 0, nc < columns else { continue }
        if board[nr * columns + nc] == "G" { return true }
        if board[nr * columns + nc] != "H" { frontier.append((nr, nc)) }
      }
    }
    return false
  }
}

/// One entry of Gymnasium's transition table `P[s][a]`.
public struct FrozenLakeTransition: Sendable, Equatable {
  public let probability: Double
  public let next: Int
  public let reward: Double
  public let terminated: Bool

  public init(probability: Double, next: Int, reward: Double, terminated: Bool) {
    self.probability = probability
    self.next = next
    self.reward = reward
    self.terminated = terminated
  }
}

/// Gymnasium's `FrozenLake-v1` with its `TimeLimit` (METHODS.md §9), step for step: the same transition
/// table, and with `reset(seed:)` the same NumPy PCG64 stream, so a seeded episode slips exactly as
/// Gymnasium's does.
///
/// Actions 0 left, 1 down, 2 right, 3 up; state = row · columns + column. Slippery: the intended direction
/// with probability `successRate`, each perpendicular one with `(1 − successRate)/2`, listed in
/// Gymnasium's order `(a − 1) mod 4, a, (a + 1) mod 4`; walls clamp. The reward schedule pays (goal,
/// hole, frozen) for the tile moved onto (`S` counts as frozen); holes and the goal are absorbing.
/// The step limit truncates (100 on every map but the standard 8×8, 200 there, as `FrozenLake-v1` and
/// `FrozenLake8x8-v1` register them).
///
/// Where it differs from Gymnasium: a reply that names no direction is refused without a step (Gymnasium
/// has no text), and a step after the episode ended is refused too (Gymnasium would draw again).
public struct FrozenLake: TextGame, Sendable {
  public enum Action: Int, CaseIterable, Sendable, CustomStringConvertible {
    case left = 0, down = 1, right = 2, up = 3
    public var description: String { "[\(name)]" }
    public var name: String { ["left", "down", "right", "up"][rawValue] }
  }

  /// The reward for moving onto the goal, a hole, and a frozen (or start) tile.
  public struct RewardSchedule: Sendable, Equatable {
    public var goal: Double, hole: Double, frozen: Double
    public init(goal: Double = 1, hole: Double = 0, frozen: Double = 0) {
      self.goal = goal
      self.hole = hole
      self.frozen = frozen
    }
  }

  public let map: FrozenLakeMap
  public let isSlippery: Bool
  public let successRate: Double
  public let rewardSchedule: RewardSchedule
  /// The `TimeLimit`'s `max_episode_steps`; nil for none.
  public let maxEpisodeSteps: Int?
  /// `P[s][a]`, exactly as Gymnasium builds it.
  public let transitions: [[[FrozenLakeTransition]]]

  public private(set) var state: Int
  public private(set) var lastAction: Action?
  public private(set) var elapsedSteps = 0
  public private(set) var terminated = false
  public private(set) var truncated = false
  private var rng: NumPyPCG64

  /// How many steps an episode may last before it is truncated.
  public enum StepLimit: Sendable, Equatable {
    /// As Gymnasium registers it: 200 on the standard 8×8 map (`FrozenLake8x8-v1`), 100 on any other
    /// (`FrozenLake-v1`, which `gym.make("FrozenLake-v1", desc=...)` also uses).
    case registered
    case steps(Int)
    case unlimited
  }

  /// Throws for a success rate outside [0, 1] or a step limit under 1.
  public init(
    map: FrozenLakeMap = .fourByFour, isSlippery: Bool = true, successRate: Double = 1.0 / 3.0,
    rewardSchedule: RewardSchedule = RewardSchedule(), stepLimit: StepLimit = .registered
  ) throws {
    guard successRate >= 0, successRate <= 1 else {
      throw WorldsError("Frozen Lake: success rate \(successRate), expected a probability in [0, 1]")
    }
    let limit: Int?
    switch stepLimit {
    case .registered: limit = map == .eightByEight ? 200 : 100
    case .steps(let n): limit = n
    case .unlimited: limit = nil
    }
    if let limit, limit < 1 { throw WorldsError("Frozen Lake: step limit \(limit), expected at least 1") }
    self.map = map
    self.isSlippery = isSlippery
    self.successRate = successRate
    self.rewardSchedule = rewardSchedule
    self.maxEpisodeSteps = limit
    transitions = FrozenLake.table(map: map, isSlippery: isSlippery, successRate: successRate, rewards: rewardSchedule)
    rng = NumPyPCG64(seed: 0)
    state = map.tiles.firstIndex(of: "S")!
  }

  /// Builds `P[s][a]` as Gymnasium's `FrozenLakeEnv.__init__` does.
  public static func table(
    map: FrozenLakeMap, isSlippery: Bool, successRate: Double, rewards: RewardSchedule
  ) -> [[[FrozenLakeTransition]]] {
    let nrow = map.rowCount, ncol = map.columnCount
    let failRate = (1.0 - successRate) / 2.0
    func outcome(_ row: Int, _ col: Int, _ a: Int, _ p: Double) -> FrozenLakeTransition {
      var r = row, c = col
      switch a {
      case 0: c = max(c - 1, 0)
      case 1: r = min(r + 1, nrow - 1)
      case 2: c = min(c + 1, ncol - 1)
      default: r = max(r - 1, 0)
      }
      let next = r * ncol + c
      let letter = map.tiles[next]
      let reward = letter == "G" ? rewards.goal : letter == "H" ? rewards.hole : rewards.frozen
      return FrozenLakeTransition(probability: p, next: next, reward: reward, terminated: letter == "G" || letter == "H")
    }
    var table: [[[FrozenLakeTransition]]] = []
    for row in 0..<nrow {
      for col in 0..<ncol {
        let s = row * ncol + col
        var perAction: [[FrozenLakeTransition]] = []
        for a in 0..<4 {
          let letter = map.tiles[s]
          if letter == "G" || letter == "H" {
            perAction.append([FrozenLakeTransition(probability: 1, next: s, reward: 0, terminated: true)])
          } else if isSlippery {
            perAction.append([(a + 3) % 4, a, (a + 1) % 4].map { b in
              outcome(row, col, b, b == a ? successRate : failRate)
            })
          } else {
            perAction.append([outcome(row, col, a, 1)])
          }
        }
        table.append(perAction)
      }
    }
    return table
  }

  public var instructions: String {
    """
    You are playing Frozen Lake: walk from the start S to the goal G across frozen tiles F without falling \
    into a hole H. The board shows you as P.\(isSlippery ? " The ice is slippery: you may slide to either side of the direction you choose." : "") \
    Moving into the edge leaves you where you are. Reaching G pays \(rewardSchedule.goal); the episode ends in G or a hole\
    \(maxEpisodeSteps.map { ", or after \($0) steps" } ?? ""). Answer with one move: [left], [down], [right] or [up] \
    (or [a], [s], [d], [w]).
    """
  }

  /// `reset(seed=seed)`: reseeds the NumPy stream and draws the start state from it.
  public mutating func reset(seed: UInt64) -> Observation {
    rng = NumPyPCG64(seed: seed)
    return reset()
  }

  /// `reset()` without a seed: a new episode that continues the current stream.
  public mutating func reset() -> Observation {
    let starts = map.tiles.map { $0 == "S" ? 1.0 : 0.0 }
    let count = starts.reduce(0, +)
    state = FrozenLake.categorical(starts.map { $0 / count }, &rng)
    lastAction = nil
    elapsedSteps = 0
    terminated = false
    truncated = false
    return observation
  }

  /// Gymnasium's `categorical_sample`: the first index whose running sum exceeds one uniform draw (0 if
  /// none does, as `argmax` of all-false).
  static func categorical(_ probs: [Double], _ rng: inout NumPyPCG64) -> Int {
    let u = rng.random()
    var sum = 0.0
    for (i, p) in probs.enumerated() {
      sum += p
      if sum > u { return i }
    }
    return 0
  }

  public mutating func step(_ action: Action) -> StepResult {
    guard !(terminated || truncated) else { return refuse("The episode has ended; reset to play again.") }
    let options = transitions[state][action.rawValue]
    let t = options[FrozenLake.categorical(options.map(\.probability), &rng)]
    state = t.next
    lastAction = action
    elapsedSteps += 1
    terminated = t.terminated
    if let limit = maxEpisodeSteps, elapsedSteps >= limit { truncated = true }
    let message = "You chose \(action.name) and reached row \(t.next / map.columnCount), column \(t.next % map.columnCount)."
    return StepResult(
      observation: observation, reward: t.reward, terminated: terminated, truncated: truncated,
      info: StepInfo(message: message, probability: t.probability))
  }

  public mutating func refuse(_ reason: String) -> StepResult {
    StepResult(
      observation: observation, reward: 0, terminated: terminated, truncated: truncated,
      info: StepInfo(invalidAction: reason))
  }

  public func parseAction(_ text: String) -> Result<Action, InvalidAction> {
    func word(_ s: String) -> Action? {
      switch s {
      case "left", "a", "0": return .left
      case "down", "s", "1": return .down
      case "right", "d", "2": return .right
      case "up", "w", "3": return .up
      default: return nil
      }
    }
    for group in ReplyScanner.bracketed(text) {
      if let a = word(group.trimmingCharacters(in: .whitespaces).lowercased()) { return .success(a) }
    }
    if let a = word(ReplyScanner.bare(text)) { return .success(a) }
    return .failure(InvalidAction("No move found: answer with [left], [down], [right] or [up]."))
  }

  public var legalActions: [Action] { terminated || truncated ? [] : Action.allCases }

  /// The map with the player's tile shown as `P`, one row a line.
  public func render() -> String {
    var tiles = map.tiles
    tiles[state] = "P"
    let w = map.columnCount
    return (0..<map.rowCount).map { String(tiles[$0 * w..<($0 + 1) * w]) }.joined(separator: "\n")
  }

  /// Gymnasium's `render_mode="ansi"` frame: the last action in parentheses (or an empty line), then the
  /// map with the player's tile highlighted red.
  public func renderANSI() -> String {
    var out = lastAction.map { "  (\(["Left", "Down", "Right", "Up"][$0.rawValue]))\n" } ?? "\n"
    for r in 0..<map.rowCount {
      for c in 0..<map.columnCount {
        let s = r * map.columnCount + c
        let ch = String(map.tiles[s])
        out += s == state ? "\u{1B}[41m\(ch)\u{1B}[0m" : ch
      }
      out += "\n"
    }
    return out
  }

  public var observation: Observation {
    let board = render()
    let r = state / map.columnCount, c = state % map.columnCount
    let tile: String
    switch map.tiles[state] {
    case "G": tile = "You reached the goal."
    case "H": tile = "You fell into a hole."
    default: tile = "You are at row \(r), column \(c)."
    }
    let limit = maxEpisodeSteps.map { " Step \(elapsedSteps) of \($0)." } ?? ""
    let legal = legalActions.map(\.description)
    let moves = legal.isEmpty ? " The episode is over." : " Moves: \(legal.joined(separator: ", "))."
    return Observation(text: "\(board)\n\(tile)\(limit)\(moves)", board: board, legalActions: legal)
  }
}
