import Foundation

/// A push-optimal Sokoban solver: A* over pushes.
///
/// A search state is the set of box cells and the player's region (normalised to the least cell the
/// player can reach), stored exactly in a hash set. A move is one push of a box the player can walk to.
/// The lower bound is the cheapest matching of boxes to goals under each box's push distance to each
/// goal with the other boxes removed (Hungarian method); it is consistent, so the first solved state
/// popped has the fewest pushes. Pruned as deadlocks, both sound: a box on a *dead square* (a non-goal
/// cell from which no goal can be reached by pushes even in an empty room) and a *freeze* (a pushed box
/// that can move along neither axis, walls and frozen boxes holding it, with some frozen box off its
/// goal — a box in a corner, a 2×2 block).
///
/// The search has a budget (`timeLimit`, `maxExpansions`). The optimal A* gets `optimalShare` of it;
/// if it has not finished then, a weighted A* (`f = g + fallbackWeight · h`) uses the rest and its plan
/// is labelled not proven optimal. A search that runs out of states has proved the level unsolvable.
public struct SokobanSolver: Sendable {
  public var timeLimit: Double
  public var maxExpansions: Int
  public var optimalShare: Double
  public var fallbackWeight: Int

  public init(timeLimit: Double = 10, maxExpansions: Int = 3_000_000, optimalShare: Double = 0.5, fallbackWeight: Int = 3) {
    self.timeLimit = timeLimit
    self.maxExpansions = maxExpansions
    self.optimalShare = optimalShare
    self.fallbackWeight = fallbackWeight
  }

  public enum Status: Sendable, Equatable {
    case solved
    /// Every reachable state was searched.
    case unsolvable
    /// The budget ran out first.
    case budgetExhausted
  }

  public struct Plan: Sendable, Equatable {
    /// The player's moves, pushes included.
    public let moves: [Sokoban.Action]
    public let pushes: Int
    /// Fewest pushes possible (the optimal A* finished); false for the weighted fallback's plan.
    public let provenOptimal: Bool
    /// The plan in LURD notation: lowercase moves, uppercase pushes.
    public let lurd: String
  }

  public struct Result: Sendable {
    public let status: Status
    public let plan: Plan?
    public let expanded: Int
    public let seconds: Double
  }

  public func solve(_ level: SokobanLevel) -> Result {
    let clock = ContinuousClock()
    let started = clock.now
    func elapsed() -> Double {
      let d = clock.now - started
      return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
    guard let search = SokobanSearch(level) else {
      return Result(status: .unsolvable, plan: nil, expanded: 0, seconds: elapsed())
    }
    if level.isSolved {
      return Result(status: .solved, plan: Plan(moves: [], pushes: 0, provenOptimal: true, lurd: ""), expanded: 0, seconds: elapsed())
    }
    let firstTime = timeLimit * optimalShare
    let firstNodes = Int(Double(maxExpansions) * optimalShare)
    let a = search.run(weight: 1, deadline: firstTime, maxExpansions: firstNodes, elapsed: elapsed)
    if let pushes = a.pushes {
      return Result(status: .solved, plan: search.plan(pushes, optimal: true), expanded: a.expanded, seconds: elapsed())
    }
    if a.exhausted { return Result(status: .unsolvable, plan: nil, expanded: a.expanded, seconds: elapsed()) }
    let b = search.run(
      weight: max(fallbackWeight, 1), deadline: timeLimit, maxExpansions: maxExpansions - a.expanded, elapsed: elapsed)
    if let pushes = b.pushes {
      return Result(status: .solved, plan: search.plan(pushes, optimal: false), expanded: a.expanded + b.expanded, seconds: elapsed())
    }
    return Result(
      status: b.exhausted ? .unsolvable : .budgetExhausted, plan: nil, expanded: a.expanded + b.expanded, seconds: elapsed())
  }

  /// Why a position cannot be solved, if it plainly cannot: a box on a dead square or a frozen group off
  /// its goals. Nil when neither test finds one (which does not prove the position solvable).
  public func deadlock(in level: SokobanLevel) -> Deadlock? {
    guard let search = SokobanSearch(level) else { return .unreachable }
    return search.deadlock()
  }

  public enum Deadlock: Sendable, Equatable {
    /// A box (row-major cell) that no sequence of pushes can bring to any goal.
    case deadSquare(Int)
    /// A box frozen in place, with a frozen box off its goal.
    case freeze(Int)
    /// A box or goal the player can never reach.
    case unreachable
  }
}

/// A set of up to 256 cells.
struct CellSet: Hashable {
  var w: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

  subscript(_ i: Int) -> Bool {
    get {
      let bit = UInt64(1) << UInt64(i & 63)
      switch i >> 6 {
      case 0: return w.0 & bit != 0
      case 1: return w.1 & bit != 0
      case 2: return w.2 & bit != 0
      default: return w.3 & bit != 0
      }
    }
    set {
      let bit = UInt64(1) << UInt64(i & 63)
      switch i >> 6 {
      case 0: w.0 = newValue ? w.0 | bit : w.0 & ~bit
      case 1: w.1 = newValue ? w.1 | bit : w.1 & ~bit
      case 2: w.2 = newValue ? w.2 | bit : w.2 & ~bit
      default: w.3 = newValue ? w.3 | bit : w.3 & ~bit
      }
    }
  }

  static func == (a: CellSet, b: CellSet) -> Bool { a.w.0 == b.w.0 && a.w.1 == b.w.1 && a.w.2 == b.w.2 && a.w.3 == b.w.3 }

  func hash(into h: inout Hasher) {
    h.combine(w.0)
    h.combine(w.1)
    h.combine(w.2)
    h.combine(w.3)
  }

  /// The members, ascending.
  func members(into out: inout [Int]) {
    out.removeAll(keepingCapacity: true)
    for (k, word) in [w.0, w.1, w.2, w.3].enumerated() {
      var x = word
      while x != 0 {
        out.append(k * 64 + x.trailingZeroBitCount)
        x &= x - 1
      }
    }
  }
}

private struct StateKey: Hashable {
  var boxes: CellSet
  var player: Int32
}

/// The search over one level, in compact cell numbers (the cells the player can reach).
final class SokobanSearch {
  let level: SokobanLevel
  /// Compact cell → row-major cell.
  let cells: [Int]
  /// Compact neighbours in `Sokoban.Action` order (up, down, left, right), −1 for none.
  let neighbours: [[Int]]
  let goalSet: CellSet
  let isGoal: [Bool]
  let goals: [Int]
  /// `distance[g][c]`: pushes from c to goal g in an empty room (Int.max if never).
  let distance: [[Int]]
  let dead: [Bool]
  let startBoxes: CellSet
  let startPlayer: Int

  // Search records: each generated node's boxes, player cell after its push, parent and push.
  private var nodeBoxes: [CellSet] = []
  private var nodePlayer: [Int32] = []
  private var nodeParent: [Int32] = []
  private var nodeG: [Int32] = []
  private var nodePush: [Int32] = []  // box cell before the push · 4 + direction
  private var reachStamp: [Int32]
  private var stamp: Int32 = 0
  private var queue: [Int]

  /// Nil when a box or goal lies outside the player's reach (and is not a box already on its goal).
  init?(_ level: SokobanLevel) {
    self.level = level
    let w = level.columns
    var index = [Int](repeating: -1, count: level.rows * w)
    var cells: [Int] = []
    var todo = [level.player]
    index[level.player] = 0
    cells.append(level.player)
    while let x = todo.popLast() {
      let r = x / w, c = x % w
      for (dr, dc) in [(-1, 0), (1, 0), (0, -1), (0, 1)] {
        let nr = r + dr, nc = c + dc
        guard nr >= 0, nr < level.rows, nc >= 0, nc < w else { continue }
        let y = nr * w + nc
        if !level.walls[y] && index[y] < 0 {
          index[y] = cells.count
          cells.append(y)
          todo.append(y)
        }
      }
    }
    // Boxes already on goals outside the reach are walls; any other box or goal out there is fatal.
    let outside = Set(level.boxes.filter { index[$0] < 0 })
    for b in outside where !level.goals[b] { return nil }
    for g in 0..<level.goals.count where level.goals[g] && index[g] < 0 && !outside.contains(g) { return nil }
    guard cells.count <= 256 else { return nil }
    self.cells = cells
    neighbours = cells.map { x in
      let r = x / w, c = x % w
      return [(-1, 0), (1, 0), (0, -1), (0, 1)].map { (dr, dc) in
        let nr = r + dr, nc = c + dc
        guard nr >= 0, nr < level.rows, nc >= 0, nc < w else { return -1 }
        return index[nr * w + nc]
      }
    }
    var goalSet = CellSet()
    var isGoal = [Bool](repeating: false, count: cells.count)
    var goals: [Int] = []
    for (i, x) in cells.enumerated() where level.goals[x] {
      goalSet[i] = true
      isGoal[i] = true
      goals.append(i)
    }
    self.goalSet = goalSet
    self.isGoal = isGoal
    self.goals = goals
    var startBoxes = CellSet()
    for b in level.boxes where index[b] >= 0 { startBoxes[index[b]] = true }
    self.startBoxes = startBoxes
    startPlayer = 0
    // Push distances by reverse BFS from each goal: a box at x came from b = x − d, pushed from b − d.
    let nbr = neighbours
    distance = goals.map { g in
      var dist = [Int](repeating: Int.max, count: cells.count)
      dist[g] = 0
      var frontier = [g]
      var head = 0
      while head < frontier.count {
        let x = frontier[head]
        head += 1
        for d in 0..<4 {
          let back = d ^ 1
          let b = nbr[x][back]
          guard b >= 0 else { continue }
          let p = nbr[b][back]
          guard p >= 0, dist[b] == Int.max else { continue }
          dist[b] = dist[x] + 1
          frontier.append(b)
        }
      }
      return dist
    }
    let distance = self.distance
    dead = (0..<cells.count).map { c in !isGoal[c] && distance.allSatisfy { $0[c] == Int.max } }
    reachStamp = [Int32](repeating: 0, count: cells.count)
    queue = []
    queue.reserveCapacity(cells.count)
  }

  // MARK: Search

  struct Run {
    var pushes: [Int32]?  // node indices from the first push to the last
    var exhausted: Bool
    var expanded: Int
  }

  /// The player's region: marks reachable cells with the current stamp; returns its least cell.
  @discardableResult
  private func reach(from player: Int, boxes: CellSet) -> Int {
    stamp &+= 1
    if stamp == Int32.max { reachStamp = [Int32](repeating: 0, count: cells.count); stamp = 1 }
    queue.removeAll(keepingCapacity: true)
    queue.append(player)
    reachStamp[player] = stamp
    var least = player
    var head = 0
    while head < queue.count {
      let x = queue[head]
      head += 1
      for y in neighbours[x] where y >= 0 && reachStamp[y] != stamp && !boxes[y] {
        reachStamp[y] = stamp
        if y < least { least = y }
        queue.append(y)
      }
    }
    return least
  }

  func run(weight: Int, deadline: Double, maxExpansions: Int, elapsed: () -> Double) -> Run {
    nodeBoxes = [startBoxes]
    nodePlayer = [Int32(startPlayer)]
    nodeParent = [-1]
    nodeG = [0]
    nodePush = [-1]
    var heap = PackedHeap()
    guard let h0 = heuristic(startBoxes) else { return Run(pushes: nil, exhausted: true, expanded: 0) }
    heap.push(f: weight * h0, h: h0, node: 0)
    var closed = Set<StateKey>()
    var expanded = 0
    var boxList: [Int] = []
    boxList.reserveCapacity(goals.count)
    while let (_, _, node) = heap.pop() {
      let boxes = nodeBoxes[node]
      let least = reach(from: Int(nodePlayer[node]), boxes: boxes)
      guard closed.insert(StateKey(boxes: boxes, player: Int32(least))).inserted else { continue }
      if boxes == goalSet { return Run(pushes: path(to: node), exhausted: false, expanded: expanded) }
      expanded += 1
      if expanded >= maxExpansions { return Run(pushes: nil, exhausted: false, expanded: expanded) }
      if expanded & 1023 == 0, elapsed() >= deadline { return Run(pushes: nil, exhausted: false, expanded: expanded) }
      let g = Int(nodeG[node]) + 1
      boxes.members(into: &boxList)
      // `reach` marked the region; gather the pushes before the marks are reused.
      var pushes: [(Int, Int)] = []
      for b in boxList {
        for d in 0..<4 {
          let from = neighbours[b][d ^ 1]
          let to = neighbours[b][d]
          guard from >= 0, to >= 0, reachStamp[from] == stamp, !boxes[to], !dead[to] else { continue }
          pushes.append((b, d))
        }
      }
      for (b, d) in pushes {
        let to = neighbours[b][d]
        var child = boxes
        child[b] = false
        child[to] = true
        if isFrozenDeadlock(to, child) { continue }
        guard let h = heuristic(child) else { continue }
        nodeBoxes.append(child)
        nodePlayer.append(Int32(b))
        nodeParent.append(Int32(node))
        nodeG.append(Int32(g))
        nodePush.append(Int32(b * 4 + d))
        heap.push(f: g + weight * h, h: h, node: nodeBoxes.count - 1)
      }
    }
    return Run(pushes: nil, exhausted: true, expanded: expanded)
  }

  private func path(to node: Int) -> [Int32] {
    var out: [Int32] = []
    var n = Int32(node)
    while nodeParent[Int(n)] >= 0 {
      out.append(n)
      n = nodeParent[Int(n)]
    }
    return out.reversed()
  }

  /// The walk and pushes that replay a push sequence from the start.
  func plan(_ nodes: [Int32], optimal: Bool) -> SokobanSolver.Plan {
    var boxes = startBoxes
    var player = startPlayer
    var moves: [Sokoban.Action] = []
    var lurd = ""
    for n in nodes {
      let push = Int(nodePush[Int(n)])
      let b = push / 4, d = push % 4
      let target = neighbours[b][d ^ 1]
      for step in walk(from: player, to: target, boxes: boxes) {
        moves.append(Sokoban.Action(rawValue: step)!)
        lurd.append(Sokoban.Action(rawValue: step)!.lurd(push: false))
      }
      moves.append(Sokoban.Action(rawValue: d)!)
      lurd.append(Sokoban.Action(rawValue: d)!.lurd(push: true))
      boxes[b] = false
      boxes[neighbours[b][d]] = true
      player = b
    }
    return SokobanSolver.Plan(moves: moves, pushes: nodes.count, provenOptimal: optimal, lurd: lurd)
  }

  /// A shortest walk (directions) between two cells around the boxes.
  private func walk(from start: Int, to target: Int, boxes: CellSet) -> [Int] {
    if start == target { return [] }
    var previous = [Int](repeating: -1, count: cells.count)
    var via = [Int](repeating: -1, count: cells.count)
    var frontier = [start]
    previous[start] = start
    var head = 0
    while head < frontier.count {
      let x = frontier[head]
      head += 1
      if x == target { break }
      for d in 0..<4 {
        let y = neighbours[x][d]
        guard y >= 0, previous[y] < 0, !boxes[y] else { continue }
        previous[y] = x
        via[y] = d
        frontier.append(y)
      }
    }
    precondition(previous[target] >= 0, "SokobanSearch.walk: the push cell is unreachable (search bug)")
    var steps: [Int] = []
    var x = target
    while x != start {
      steps.append(via[x])
      x = previous[x]
    }
    return steps.reversed()
  }

  // MARK: Bounds and deadlocks

  /// The cheapest assignment of boxes to goals by push distance; nil when some box can reach no goal
  /// left to it.
  func heuristic(_ boxes: CellSet) -> Int? {
    var list: [Int] = []
    boxes.members(into: &list)
    let n = list.count
    // Boxes already matched at zero cost on their goals still take part: the matching needs all.
    var cost = [[Int]](repeating: [Int](repeating: 0, count: n), count: n)
    let big = 1 << 20
    for (i, b) in list.enumerated() {
      var any = false
      for (j, _) in goals.enumerated() {
        let d = distance[j][b]
        cost[i][j] = d == Int.max ? big : d
        if d != Int.max { any = true }
      }
      if !any { return nil }
    }
    let total = hungarian(cost)
    return total >= big ? nil : total
  }

  /// Whether the box just pushed to `cell` is frozen with a frozen box off its goal.
  func isFrozenDeadlock(_ cell: Int, _ boxes: CellSet) -> Bool {
    var walls: [Int] = []
    var offGoal = false
    return frozen(cell, boxes, &walls, &offGoal) && offGoal
  }

  private func frozen(_ cell: Int, _ boxes: CellSet, _ walls: inout [Int], _ offGoal: inout Bool) -> Bool {
    walls.append(cell)
    defer { walls.removeLast() }
    let result = axisBlocked(cell, 2, 3, boxes, &walls, &offGoal) && axisBlocked(cell, 0, 1, boxes, &walls, &offGoal)
    if result && !isGoal[cell] { offGoal = true }
    return result
  }

  private func axisBlocked(_ cell: Int, _ d1: Int, _ d2: Int, _ boxes: CellSet, _ walls: inout [Int], _ offGoal: inout Bool) -> Bool {
    let a = neighbours[cell][d1], b = neighbours[cell][d2]
    if a < 0 || b < 0 || walls.contains(a) || walls.contains(b) { return true }
    if dead[a] && dead[b] { return true }
    if boxes[a] && frozen(a, boxes, &walls, &offGoal) { return true }
    if boxes[b] && frozen(b, boxes, &walls, &offGoal) { return true }
    return false
  }

  func deadlock() -> SokobanSolver.Deadlock? {
    var list: [Int] = []
    startBoxes.members(into: &list)
    for b in list where dead[b] { return .deadSquare(cells[b]) }
    for b in list where isFrozenDeadlock(b, startBoxes) { return .freeze(cells[b]) }
    if heuristic(startBoxes) == nil { return .deadSquare(cells[list.first ?? 0]) }
    return nil
  }
}

/// The Hungarian method (Kuhn–Munkres, potentials form) on a square cost matrix: the least total cost
/// of a perfect assignment.
func hungarian(_ cost: [[Int]]) -> Int {
  let n = cost.count
  if n == 0 { return 0 }
  let inf = Int.max / 4
  var u = [Int](repeating: 0, count: n + 1), v = [Int](repeating: 0, count: n + 1)
  var p = [Int](repeating: 0, count: n + 1), way = [Int](repeating: 0, count: n + 1)
  for i in 1...n {
    p[0] = i
    var j0 = 0
    var minv = [Int](repeating: inf, count: n + 1)
    var used = [Bool](repeating: false, count: n + 1)
    repeat {
      used[j0] = true
      let i0 = p[j0]
      var delta = inf, j1 = 0
      for j in 1...n where !used[j] {
        let cur = cost[i0 - 1][j - 1] - u[i0] - v[j]
        if cur < minv[j] { minv[j] = cur; way[j] = j0 }
        if minv[j] < delta { delta = minv[j]; j1 = j }
      }
      for j in 0...n {
        if used[j] { u[p[j]] += delta; v[j] -= delta } else { minv[j] -= delta }
      }
      j0 = j1
    } while p[j0] != 0
    repeat {
      let j1 = way[j0]
      p[j0] = p[j1]
      j0 = j1
    } while j0 != 0
  }
  var total = 0
  for j in 1...n { total += cost[p[j] - 1][j - 1] }
  return total
}

/// A binary min-heap of (f, h, node) packed into one integer: lower f first, then lower h (deeper
/// nodes), then the earlier node.
struct PackedHeap {
  private var items: [UInt64] = []

  mutating func push(f: Int, h: Int, node: Int) {
    let key = UInt64(min(f, 0xFFFF)) << 48 | UInt64(min(h, 0xFFFF)) << 32 | UInt64(node)
    items.append(key)
    var i = items.count - 1
    while i > 0 {
      let parent = (i - 1) / 2
      if items[parent] <= items[i] { break }
      items.swapAt(parent, i)
      i = parent
    }
  }

  mutating func pop() -> (Int, Int, Int)? {
    guard let top = items.first else { return nil }
    let last = items.removeLast()
    if !items.isEmpty {
      items[0] = last
      var i = 0
      while true {
        let l = 2 * i + 1, r = l + 1
        var m = i
        if l < items.count && items[l] < items[m] { m = l }
        if r < items.count && items[r] < items[m] { m = r }
        if m == i { break }
        items.swapAt(i, m)
        i = m
      }
    }
    return (Int(top >> 48), Int((top >> 32) & 0xFFFF), Int(top & 0xFFFF_FFFF))
  }
}

extension SokobanLevel {
  /// Plays moves from this level; the position reached, or nil if a move is blocked.
  public func playing(_ moves: [Sokoban.Action]) -> SokobanLevel? {
    var boxes = Set(self.boxes)
    var player = self.player
    for m in moves {
      let (dr, dc) = m.delta
      func step(_ x: Int) -> Int? {
        let r = x / columns + dr, c = x % columns + dc
        guard r >= 0, r < rows, c >= 0, c < columns, !walls[r * columns + c] else { return nil }
        return r * columns + c
      }
      guard let next = step(player) else { return nil }
      if boxes.contains(next) {
        guard let behind = step(next), !boxes.contains(behind) else { return nil }
        boxes.remove(next)
        boxes.insert(behind)
      }
      player = next
    }
    return try? with(boxes: Array(boxes), player: player)
  }
}
