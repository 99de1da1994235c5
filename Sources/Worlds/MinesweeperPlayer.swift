import Foundation

/// A reference Minesweeper player: it reveals a hidden cell of least mine probability, from what the
/// board shows (never the mines).
///
/// The probabilities are exact when the frontier's consistent configurations can be enumerated within
/// `nodeBudget` search nodes: the hidden cells next to revealed numbers split into independent
/// components; each component's assignments that satisfy every number are counted by their mine count,
/// and a configuration of the whole board weighs `Π_j N_j(k_j) · C(n_rest, M − Σ k_j)` (the mines left
/// over go anywhere among the `n_rest` hidden cells off the frontier, all layouts being equally likely).
/// Past the budget it falls back to a heuristic — a frontier cell gets the largest `number / hidden
/// neighbours` among the numbers beside it, any other cell the board's mine density — and says so.
/// Flags are ignored (a flag is an opinion, not a fact); before any cell is revealed the opening is the
/// centre, which the first-reveal rule makes safe.
public struct MinesweeperPlayer: Sendable {
  /// Search nodes the exact enumeration may visit on one board before the heuristic takes over.
  public var nodeBudget: Int

  public init(nodeBudget: Int = 2_000_000) { self.nodeBudget = nodeBudget }

  /// Mine probabilities of the hidden (and flagged) cells; nil for revealed ones.
  public struct Estimate: Sendable {
    public let probabilities: [Double?]
    /// Exact posterior (true) or the heuristic fallback (false).
    public let exact: Bool
  }

  /// The reveal a player makes, with its mine probability.
  public struct Choice: Sendable {
    public let action: Minesweeper.Action
    public let mineProbability: Double
    public let exact: Bool
  }

  public func choose(_ view: MinesweeperView) -> Choice? {
    if !view.cells.contains(where: { $0 != .hidden && $0 != .flagged }) {
      return Choice(action: .reveal(row: view.rows / 2, column: view.columns / 2), mineProbability: 0, exact: true)
    }
    let estimate = mineProbabilities(view)
    var best: Int?
    for (i, p) in estimate.probabilities.enumerated() {
      guard let p else { continue }
      if best == nil || p < estimate.probabilities[best!]! - 1e-12 { best = i }
    }
    guard let best else { return nil }
    return Choice(
      action: .reveal(row: best / view.columns, column: best % view.columns),
      mineProbability: estimate.probabilities[best]!, exact: estimate.exact)
  }

  public func mineProbabilities(_ view: MinesweeperView) -> Estimate {
    let n = view.rows * view.columns
    let unknown = (0..<n).filter { view.cells[$0] == .hidden || view.cells[$0] == .flagged }
    let anyRevealed = view.cells.contains { if case .number = $0 { return true }; return $0 == .mine }
    guard anyRevealed else {
      // Before the opening every cell is safe by rule; the centre is the one to pick.
      var probs = [Double?](repeating: nil, count: n)
      for i in unknown { probs[i] = 0 }
      return Estimate(probabilities: probs, exact: true)
    }
    let knownMines = view.cells.filter { $0 == .mine }.count
    let remaining = view.mines - knownMines
    // Constraints: each revealed number over its hidden neighbours, less the revealed mines beside it.
    var constraints: [(cells: [Int], target: Int)] = []
    var isFrontier = [Bool](repeating: false, count: n)
    for i in 0..<n {
      guard case .number(let k) = view.cells[i] else { continue }
      var cells: [Int] = []
      var seenMines = 0
      for j in neighbours(i, view) {
        switch view.cells[j] {
        case .hidden, .flagged: cells.append(j)
        case .mine: seenMines += 1
        case .number: break
        }
      }
      if !cells.isEmpty {
        constraints.append((cells, k - seenMines))
        for j in cells { isFrontier[j] = true }
      }
    }
    if let exact = enumerate(view, unknown: unknown, constraints: constraints, isFrontier: isFrontier, remaining: remaining) {
      return Estimate(probabilities: exact, exact: true)
    }
    // Heuristic fallback.
    var probs = [Double?](repeating: nil, count: n)
    let density = unknown.isEmpty ? 0 : Double(remaining) / Double(unknown.count)
    for i in unknown { probs[i] = isFrontier[i] ? 0 : density }
    for c in constraints {
      let local = Double(c.target) / Double(c.cells.count)
      for j in c.cells { probs[j] = max(probs[j]!, local) }
    }
    return Estimate(probabilities: probs, exact: false)
  }

  private func neighbours(_ cell: Int, _ view: MinesweeperView) -> [Int] {
    let r = cell / view.columns, c = cell % view.columns
    var out: [Int] = []
    for dr in -1...1 {
      for dc in -1...1 where dr != 0 || dc != 0 {
        let nr = r + dr, nc = c + dc
        if nr >= 0, nr < view.rows, nc >= 0, nc < view.columns { out.append(nr * view.columns + nc) }
      }
    }
    return out
  }

  /// The exact posterior, or nil past the node budget (or for a board no layout fits).
  private func enumerate(
    _ view: MinesweeperView, unknown: [Int], constraints: [(cells: [Int], target: Int)], isFrontier: [Bool],
    remaining: Int
  ) -> [Double?]? {
    let n = view.rows * view.columns
    let frontier = unknown.filter { isFrontier[$0] }
    let rest = unknown.count - frontier.count
    // Components: frontier cells joined by a shared constraint (union-find).
    var parent = [Int](0..<n)
    func find(_ x: Int) -> Int {
      var x = x
      while parent[x] != x { parent[x] = parent[parent[x]]; x = parent[x] }
      return x
    }
    for c in constraints { for j in c.cells.dropFirst() { parent[find(j)] = find(c.cells[0]) } }
    var groups: [Int: [Int]] = [:]
    for f in frontier { groups[find(f), default: []].append(f) }
    var nodes = 0
    // Per component: solutions by mine count, and per cell the solutions in which it is a mine.
    var tallies: [(cells: [Int], counts: [Double], cellCounts: [[Double]])] = []
    for root in groups.keys.sorted() {
      let cells = groups[root]!
      guard let tally = enumerateComponent(cells, constraints, remaining: remaining, nodes: &nodes) else { return nil }
      tallies.append(tally)
    }
    func convolve(_ a: [Double], _ b: [Double]) -> [Double] {
      var out = [Double](repeating: 0, count: a.count + b.count - 1)
      for (i, x) in a.enumerated() where x != 0 { for (j, y) in b.enumerated() where y != 0 { out[i + j] += x * y } }
      return out
    }
    let total = tallies.reduce([1.0]) { convolve($0, $1.counts) }
    func restWays(_ mines: Int) -> Double { binomial(rest, remaining - mines) }
    var weight = 0.0
    for (k, ways) in total.enumerated() { weight += ways * restWays(k) }
    guard weight > 0 else { return nil }
    var probs = [Double?](repeating: nil, count: n)
    for (j, tally) in tallies.enumerated() {
      let others = tallies.enumerated().filter { $0.offset != j }.reduce([1.0]) { convolve($0, $1.element.counts) }
      for (local, cell) in tally.cells.enumerated() {
        var mass = 0.0
        for k in 0..<tally.counts.count where tally.cellCounts[k][local] != 0 {
          var ways = 0.0
          for (k2, w) in others.enumerated() { ways += w * restWays(k + k2) }
          mass += tally.cellCounts[k][local] * ways
        }
        probs[cell] = mass / weight
      }
    }
    if rest > 0 {
      var mass = 0.0
      for (k, ways) in total.enumerated() where remaining - k > 0 {
        mass += ways * restWays(k) * Double(remaining - k) / Double(rest)
      }
      let p = mass / weight
      for i in unknown where !isFrontier[i] { probs[i] = p }
    }
    return probs
  }

  private func enumerateComponent(
    _ cells: [Int], _ allConstraints: [(cells: [Int], target: Int)], remaining: Int, nodes: inout Int
  ) -> (cells: [Int], counts: [Double], cellCounts: [[Double]])? {
    let index = Dictionary(uniqueKeysWithValues: cells.enumerated().map { ($1, $0) })
    let constraints = allConstraints.filter { index[$0.cells[0]] != nil }
    // Order cells so each one shares constraints with those before it (breadth first), for early pruning.
    var byCell = [[Int]](repeating: [], count: cells.count)
    for (ci, c) in constraints.enumerated() { for j in c.cells { byCell[index[j]!].append(ci) } }
    var order: [Int] = []
    var placed = [Bool](repeating: false, count: cells.count)
    for seed in 0..<cells.count where !placed[seed] {
      var queue = [seed]
      placed[seed] = true
      var head = 0
      while head < queue.count {
        let x = queue[head]
        head += 1
        order.append(x)
        for ci in byCell[x] {
          for j in constraints[ci].cells where !placed[index[j]!] {
            placed[index[j]!] = true
            queue.append(index[j]!)
          }
        }
      }
    }
    var sums = [Int](repeating: 0, count: constraints.count)
    var open = constraints.map { $0.cells.count }
    var assignment = [Bool](repeating: false, count: cells.count)
    let maxMines = min(remaining, cells.count)
    var counts = [Double](repeating: 0, count: maxMines + 1)
    var cellCounts = [[Double]](repeating: [Double](repeating: 0, count: cells.count), count: maxMines + 1)
    var exceeded = false
    func search(_ depth: Int, _ mines: Int) {
      if exceeded { return }
      nodes += 1
      if nodes > nodeBudget { exceeded = true; return }
      if depth == order.count {
        counts[mines] += 1
        for i in 0..<cells.count where assignment[i] { cellCounts[mines][i] += 1 }
        return
      }
      let x = order[depth]
      for value in [false, true] {
        if value && mines + 1 > maxMines { continue }
        var ok = true
        for ci in byCell[x] {
          open[ci] -= 1
          if value { sums[ci] += 1 }
          if sums[ci] > constraints[ci].target || sums[ci] + open[ci] < constraints[ci].target { ok = false }
        }
        if ok {
          assignment[x] = value
          search(depth + 1, mines + (value ? 1 : 0))
          assignment[x] = false
        }
        for ci in byCell[x] {
          open[ci] += 1
          if value { sums[ci] -= 1 }
        }
      }
    }
    search(0, 0)
    return exceeded ? nil : (cells, counts, cellCounts)
  }
}

/// C(n, k) as a double (0 outside 0 ≤ k ≤ n).
func binomial(_ n: Int, _ k: Int) -> Double {
  guard k >= 0, k <= n else { return 0 }
  let k = min(k, n - k)
  var result = 1.0
  if k > 0 { for i in 1...k { result = result * Double(n - k + i) / Double(i) } }
  return result
}

extension Minesweeper {
  /// Plays an episode with the reference player from `reset(seed:)` until it ends (or `maxSteps`); the
  /// last step's result.
  public mutating func playReference(seed: UInt64, player: MinesweeperPlayer = MinesweeperPlayer(), maxSteps: Int = 10_000)
    -> StepResult?
  {
    _ = reset(seed: seed)
    var last: StepResult?
    for _ in 0..<maxSteps {
      guard let choice = player.choose(view) else { break }
      let result = step(choice.action)
      last = result
      if result.isDone { break }
    }
    return last
  }
}
