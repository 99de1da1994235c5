import Foundation

/// Random Sokoban rooms by reverse play, gym-sokoban's method (Schrader's `room_utils.py`, which
/// TextArena's Sokoban copies):
/// 1. a random walk carves floor out of a walled room, stamping a random 3×3 mask at each step and
///    turning with probability `changeDirection`;
/// 2. the player and `boxes` goals go on random floor cells, each box starting on its goal;
/// 3. a depth-first search plays backwards — the player walks, or walks away from an adjacent box and
///    pulls it along — to depth `searchDepth` over at most `maxStates` positions, and keeps the one with
///    the highest score `box swaps × Σ box-to-own-goal Manhattan distance` among those with no box on a
///    goal. Every pull undone is a push, so the room is solvable by construction.
/// A walk that yields no room with a positive score is redrawn (up to `tries` times).
///
/// Draws come from `SplitMix64(seed)`, so rooms are reproducible here but are not gym-sokoban's or
/// TextArena's rooms for the same seed (those come from Python's and NumPy's generators).
public struct SokobanGenerator: Sendable, Equatable {
  public var rows: Int
  public var columns: Int
  public var boxes: Int
  /// Steps of the carving walk; gym-sokoban's `int(1.7 · (rows + columns))` when nil.
  public var walkSteps: Int?
  public var changeDirection: Double
  public var searchDepth: Int
  public var maxStates: Int
  public var tries: Int

  public init(
    rows: Int = 7, columns: Int = 7, boxes: Int = 2, walkSteps: Int? = nil, changeDirection: Double = 0.35,
    searchDepth: Int = 300, maxStates: Int = 300_000, tries: Int = 1000
  ) {
    self.rows = rows
    self.columns = columns
    self.boxes = boxes
    self.walkSteps = walkSteps
    self.changeDirection = changeDirection
    self.searchDepth = searchDepth
    self.maxStates = maxStates
    self.tries = tries
  }

  /// TextArena's `Sokoban-v0` size: 6×6, 3 boxes.
  public static let textArena = SokobanGenerator(rows: 6, columns: 6, boxes: 3)
  /// TextArena's `Sokoban-v0-medium` size: 8×8, 5 boxes.
  public static let textArenaMedium = SokobanGenerator(rows: 8, columns: 8, boxes: 5)

  /// A room from the seed; throws for a room under 3×3, no boxes, or when no try yields a room.
  public func generate(seed: UInt64) throws -> SokobanLevel {
    guard rows >= 3, columns >= 3 else { throw WorldsError("Sokoban generator: \(rows)×\(columns) room, expected at least 3×3") }
    guard boxes >= 1 else { throw WorldsError("Sokoban generator: \(boxes) boxes, expected at least 1") }
    guard tries >= 1 else { throw WorldsError("Sokoban generator: \(tries) tries, expected at least 1") }
    var rng = SplitMix64(seed: seed)
    let steps = walkSteps ?? Int(1.7 * Double(rows + columns))
    for _ in 0..<tries {
      let floor = carve(steps: steps, &rng)
      let cells = floor.indices.filter { floor[$0] }
      guard cells.count > boxes + 1 else { continue }
      // Player and goals on distinct random floor cells.
      var pool = cells
      for i in 0...boxes {
        let j = i + Int(SplitMix64.below(UInt64(pool.count - i), &rng))
        pool.swapAt(i, j)
      }
      let player = pool[0]
      let goals = Array(pool[1...boxes])
      if let (boxCells, finalPlayer) = reversePlay(floor: floor, goals: goals, player: player) {
        var goalMap = [Bool](repeating: false, count: rows * columns)
        for g in goals { goalMap[g] = true }
        return try SokobanLevel(
          rows: rows, columns: columns, walls: floor.map { !$0 }, goals: goalMap, boxes: boxCells, player: finalPlayer)
      }
    }
    throw WorldsError("Sokoban generator: no room with \(boxes) boxes in \(tries) tries (\(rows)×\(columns))")
  }

  /// The carving walk: floor cells (true) of a room walled all round.
  private func carve(steps: Int, _ rng: inout SplitMix64) -> [Bool] {
    let masks: [[[Int]]] = [
      [[0, 0, 0], [1, 1, 1], [0, 0, 0]],
      [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
      [[0, 0, 0], [1, 1, 0], [0, 1, 0]],
      [[0, 0, 0], [1, 1, 0], [1, 1, 0]],
      [[0, 0, 0], [0, 1, 1], [0, 1, 0]],
    ]
    let directions = [(1, 0), (0, 1), (-1, 0), (0, -1)]
    var direction = directions[Int(SplitMix64.below(4, &rng))]
    var r = 1 + Int(SplitMix64.below(UInt64(max(rows - 2, 1)), &rng))
    var c = 1 + Int(SplitMix64.below(UInt64(max(columns - 2, 1)), &rng))
    var floor = [Bool](repeating: false, count: rows * columns)
    for _ in 0..<steps {
      if rng.uniform() < changeDirection { direction = directions[Int(SplitMix64.below(4, &rng))] }
      r = max(min(r + direction.0, rows - 2), 1)
      c = max(min(c + direction.1, columns - 2), 1)
      let mask = masks[Int(SplitMix64.below(UInt64(masks.count), &rng))]
      for dr in 0..<3 {
        for dc in 0..<3 where mask[dr][dc] == 1 {
          let rr = r - 1 + dr, cc = c - 1 + dc
          if rr > 0, rr < rows - 1, cc > 0, cc < columns - 1 { floor[rr * columns + cc] = true }
        }
      }
    }
    return floor
  }

  private struct ReverseState: Hashable {
    var player: Int
    var boxes: [Int]  // boxes[k] is the box that started on goal k
  }

  /// The depth-first reverse play; the best position's boxes and player, or nil when none scores above 0.
  private func reversePlay(floor: [Bool], goals: [Int], player: Int) -> ([Int], Int)? {
    var explored = Set<ReverseState>()
    var bestScore = 0
    var best: ReverseState?
    let deltas = [-columns, columns, -1, 1]
    func score(_ s: ReverseState, swaps: Int) -> Int {
      if s.boxes.contains(where: { goals.contains($0) }) { return 0 }
      var displacement = 0
      for (k, b) in s.boxes.enumerated() {
        displacement += abs(b / columns - goals[k] / columns) + abs(b % columns - goals[k] % columns)
      }
      return swaps * displacement
    }
    func search(_ state: ReverseState, swaps: Int, lastPulled: Int, ttl: Int) {
      let ttl = ttl - 1
      guard ttl > 0, explored.count < maxStates, explored.insert(state).inserted else { return }
      let value = score(state, swaps: swaps)
      if value > bestScore {
        bestScore = value
        best = state
      }
      for pull in [true, false] {
        for d in deltas {
          let next = state.player + d
          guard floor[next], !state.boxes.contains(next) else { continue }
          var child = state
          child.player = next
          var pulled = lastPulled
          if pull {
            guard let k = state.boxes.firstIndex(of: state.player - d) else { continue }
            child.boxes[k] = state.player
            pulled = k
          }
          search(child, swaps: swaps + (pulled != lastPulled ? 1 : 0), lastPulled: pulled, ttl: ttl)
        }
      }
    }
    search(ReverseState(player: player, boxes: goals), swaps: 0, lastPulled: -1, ttl: searchDepth)
    guard let best, bestScore > 0 else { return nil }
    return (best.boxes, best.player)
  }
}
