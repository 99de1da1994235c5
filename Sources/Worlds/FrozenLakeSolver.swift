import Foundation

/// The optimal play of a Frozen Lake map, from its transition table: the ground truth an agent's play is
/// measured against. With the default reward schedule a value is a success probability.
public struct FrozenLakeSolution: Sendable {
  /// The optimal value of each state (V*).
  public let values: [Double]
  /// A greedy optimal action for each state; on a tie, the one best under a 0.999 discount (it reaches the
  /// goal soonest, so the policy ends every episode). For a finite horizon, the first step's.
  public let policy: [FrozenLake.Action]
  /// The value from the start tile(s), weighted as `reset` draws them.
  public let startValue: Double
  /// Sweeps run (value iteration) or steps of the horizon (backward induction).
  public let iterations: Int
  /// The horizon solved for, nil for an unlimited episode.
  public let horizon: Int?
}

extension FrozenLake {
  /// Value iteration on `P[s][a]`: `V(s) ← max_a Σ p · (r + γ · V(s′) · [not terminated])` until no value
  /// moves by `tolerance` (undiscounted by default, where V is the probability of reaching the goal).
  public func valueIteration(
    discount: Double = 1, tolerance: Double = 1e-15, maxIterations: Int = 10_000_000
  ) -> FrozenLakeSolution {
    var v = [Double](repeating: 0, count: map.stateCount)
    var sweeps = 0
    while sweeps < maxIterations {
      sweeps += 1
      var next = v
      var change = 0.0
      for s in 0..<map.stateCount {
        next[s] = (0..<4).map { q(s, $0, v, discount) }.max()!
        change = max(change, abs(next[s] - v[s]))
      }
      v = next
      if change < tolerance { break }
    }
    // Undiscounted, many actions tie near the goal's value (every state of the 8×8 map is worth 1) and the
    // first of them may loop forever; among the optimal actions prefer the one that gets there soonest: the
    // best under a slightly discounted value, a proper policy with the same optimal value.
    let tieBreak = discount < 1 ? nil : discountedValues(discount: 0.999, tolerance: 1e-13)
    return FrozenLakeSolution(
      values: v, policy: greedy(v, discount, tieBreak: tieBreak), startValue: startValue(v), iterations: sweeps,
      horizon: nil)
  }

  private func discountedValues(discount: Double, tolerance: Double) -> [Double] {
    var v = [Double](repeating: 0, count: map.stateCount)
    for _ in 0..<1_000_000 {
      let next = (0..<map.stateCount).map { s in (0..<4).map { q(s, $0, v, discount) }.max()! }
      let change = zip(next, v).map { abs($0 - $1) }.max() ?? 0
      v = next
      if change < tolerance { break }
    }
    return v
  }

  /// The best value reachable within `horizon` steps (the step limit by default): backward induction,
  /// `V_k(s) = max_a Σ p · (r + V_{k−1}(s′) · [not terminated])` from `V_0 = 0`.
  public func finiteHorizonValues(horizon: Int? = nil) -> FrozenLakeSolution {
    let h = horizon ?? maxEpisodeSteps ?? 100
    var v = [Double](repeating: 0, count: map.stateCount)
    var previous = v
    for _ in 0..<h {
      previous = v
      v = (0..<map.stateCount).map { s in (0..<4).map { q(s, $0, previous, 1) }.max()! }
    }
    return FrozenLakeSolution(
      values: v, policy: greedy(previous, 1), startValue: startValue(v), iterations: h, horizon: h)
  }

  /// The exact value of a stationary policy: the linear system `(I − T_π) v = r_π` solved by Gaussian
  /// elimination when the policy ends every episode (the system is then regular); otherwise iterative
  /// evaluation to `tolerance` (states that loop forever are worth what they collect on the way: 0).
  public func evaluate(policy: [Action], discount: Double = 1, tolerance: Double = 1e-15) -> [Double] {
    precondition(policy.count == map.stateCount, "evaluate: one action per state expected")
    let n = map.stateCount
    var a = [[Double]](repeating: [Double](repeating: 0, count: n + 1), count: n)
    for s in 0..<n {
      a[s][s] = 1
      for t in transitions[s][policy[s].rawValue] {
        a[s][n] += t.probability * t.reward
        if !t.terminated { a[s][t.next] -= discount * t.probability }
      }
    }
    if let exact = FrozenLake.solve(a) { return exact }
    var v = [Double](repeating: 0, count: n)
    for _ in 0..<10_000_000 {
      let next = (0..<n).map { q($0, policy[$0].rawValue, v, discount) }
      let change = zip(next, v).map { abs($0 - $1) }.max() ?? 0
      v = next
      if change < tolerance { break }
    }
    return v
  }

  private func q(_ s: Int, _ a: Int, _ v: [Double], _ discount: Double) -> Double {
    var total = 0.0
    for t in transitions[s][a] { total += t.probability * (t.reward + (t.terminated ? 0 : discount * v[t.next])) }
    return total
  }

  /// The first best action of each state; with `tieBreak` values, among the actions within 1e-12 of the best,
  /// the best under those values (discount 0.999).
  private func greedy(_ v: [Double], _ discount: Double, tieBreak: [Double]? = nil) -> [Action] {
    (0..<map.stateCount).map { s in
      let qs = (0..<4).map { q(s, $0, v, discount) }
      let top = qs.max()!
      let optimal = (0..<4).filter { qs[$0] >= top - 1e-12 }
      guard let w = tieBreak, optimal.count > 1 else { return Action(rawValue: optimal[0])! }
      let best = optimal.max { q(s, $0, w, 0.999) < q(s, $1, w, 0.999) }!
      return Action(rawValue: best)!
    }
  }

  private func startValue(_ v: [Double]) -> Double {
    let starts = map.tiles.indices.filter { map.tiles[$0] == "S" }
    return starts.map { v[$0] }.reduce(0, +) / Double(starts.count)
  }

  /// Gaussian elimination with partial pivoting on an augmented matrix; nil when it is singular.
  static func solve(_ matrix: [[Double]]) -> [Double]? {
    var a = matrix
    let n = a.count
    for col in 0..<n {
      var pivot = col
      for r in col + 1..<n where abs(a[r][col]) > abs(a[pivot][col]) { pivot = r }
      guard abs(a[pivot][col]) > 1e-12 else { return nil }
      a.swapAt(col, pivot)
      for r in 0..<n where r != col && a[r][col] != 0 {
        let f = a[r][col] / a[col][col]
        for c in col...n { a[r][c] -= f * a[col][c] }
      }
    }
    return (0..<n).map { a[$0][n] / a[$0][$0] }
  }
}
