import Foundation
import NN
import Torch

/// An epistemic head (METHODS §2): an index-dependent perturbation σ(sg[φ], z) of the LM-as-reward score,
/// r(x, y, z) = r_θ(x, y) + σ(φ(x, y), z), whose spread over z is the model's epistemic uncertainty.
public protocol EpistemicHead: Module {
  /// Draws `count` indices: Gaussian vectors [count, D] for an epinet, member ids [count] for an ensemble.
  func sampleIndices(_ count: Int, generator: Generator) -> Tensor
  /// σ(φ, z) [Z, N] for stop-gradient features φ [N, F] and indices from `sampleIndices`.
  func perturbation(features: Tensor, indices: Tensor) -> Tensor
  /// A penalty added to the training loss (the ensemble's anchoring), or nil.
  func regularizer(dataSize: Int) -> Tensor?
}

/// Osband et al.'s epinet: σ(φ, z) = σ_train(φ, z) + β·σ_prior(φ, z), each an MLP of [z, φ] whose D
/// outputs are dotted with z; the prior part is frozen at its random initialisation.
public final class Epinet: EpistemicHead {
  public let train: MLP
  public let prior: MLP
  public let indexDimension: Int
  public let priorScale: Double

  public init(features: Int, indexDimension: Int = 8, hidden: Int = 32, priorScale: Double = 1, generator: Generator) {
    self.indexDimension = indexDimension
    self.priorScale = priorScale
    train = MLP([indexDimension + features, hidden, indexDimension], activation: .relu, generator: generator)
    prior = MLP([indexDimension + features, hidden, indexDimension], activation: .relu, generator: generator)
    prior.setRequiresGrad(false)
    // The trainable part starts at zero so the untrained head is the prior alone.
    withoutGradients {
      train.layers.last!.weight.zero_()
      train.layers.last!.bias?.zero_()
    }
  }

  public func sampleIndices(_ count: Int, generator: Generator) -> Tensor {
    Tensor.randn([count, indexDimension], generator: generator)
  }

  func apply(_ net: MLP, _ phi: Tensor, _ z: Tensor) -> Tensor {
    let (zc, n) = (z.size(0), phi.size(0))
    let input = Tensor.cat([z.unsqueezed(dim: 1).expanded(to: [zc, n, indexDimension]),
                            phi.unsqueezed(dim: 0).expanded(to: [zc, n, phi.size(1)])], dim: 2)
    return (net(input) * z.unsqueezed(dim: 1)).sum(dim: -1)  // [Z, N]
  }

  public func perturbation(features: Tensor, indices: Tensor) -> Tensor {
    let phi = features.detached().to(.float32), z = indices.to(.float32)
    let out = apply(train, phi, z)
    return priorScale == 0 ? out : out + withoutGradients { apply(prior, phi, z) } * priorScale
  }

  public func regularizer(dataSize: Int) -> Tensor? { nil }
}

/// An ensemble of K heads, each a trainable MLP plus a frozen random prior MLP scaled by β, anchored to
/// its own initial weights with weight λ/(number of queries) **(choice, METHODS §2)**.
public final class EnsembleHead: EpistemicHead {
  public let members: [MLP]
  public let priors: [MLP]
  let anchors: [[Tensor]]
  public let priorScale: Double
  public let anchorWeight: Double

  public init(features: Int, count: Int = 8, hidden: Int = 32, priorScale: Double = 1, anchorWeight: Double = 1,
              generator: Generator) {
    members = (0..<count).map { _ in MLP([features, hidden, 1], activation: .relu, generator: generator) }
    priors = (0..<count).map { _ in MLP([features, hidden, 1], activation: .relu, generator: generator) }
    for p in priors { p.setRequiresGrad(false) }
    anchors = members.map { m in m.namedParameters().map { $0.tensor.detached().clone() } }
    self.priorScale = priorScale
    self.anchorWeight = anchorWeight
  }

  public func sampleIndices(_ count: Int, generator: Generator) -> Tensor {
    Tensor.randint(0, members.count, [count], generator: generator)
  }

  public func perturbation(features: Tensor, indices: Tensor) -> Tensor {
    let phi = features.detached().to(.float32)
    let all = Tensor.stack(zip(members, priors).map { m, p in
      m(phi).squeezed(dim: -1) + withoutGradients { p(phi).squeezed(dim: -1) } * priorScale
    })  // [K, N]
    return all.indexSelect(dim: 0, index: indices)
  }

  public func regularizer(dataSize: Int) -> Tensor? {
    guard anchorWeight > 0 else { return nil }
    var total: Tensor? = nil
    for (m, a) in zip(members, anchors) {
      for ((_, p), p0) in zip(m.namedParameters(), a) {
        let d = (p - p0).square().sum()
        total = total.map { $0 + d } ?? d
      }
    }
    return total.map { $0 * (anchorWeight / Double(Swift.max(1, dataSize))) }
  }
}

/// How to choose which K candidates to show a person (METHODS §3).
public enum SelectionRule: String, Sendable, CaseIterable, Codable {
  case passive, boltzmann, infomax
  case doubleThompson = "double_ts"
  /// (choice, beyond METHODS §3) best against worst: the pair the model ranks furthest apart.
  case contrast
  /// (choice, beyond METHODS §3) contrastive Thompson sampling: the best under one index, the worst under another.
  case thompsonContrast = "ts_contrast"
  /// (choice, beyond METHODS §3) information-directed for the metric: the K candidates whose answer most reduces
  /// the expected KL(p_z‖π) over the head's posterior samples p_z, under a one-observation Laplace update.
  case expectedKL = "expected_kl"
}

/// The head's posterior samples over a prompt's whole response space, for `SelectionRule.expectedKL`:
/// `scores` [Z][R] = log π(y|x) + σ(φ(x, y), z), `policy` [R] = log π(y|x), and the rows of the candidates.
public struct ResponseSpaceSamples: Sendable {
  public let scores: [[Double]]
  public let policy: [Double]
  public let candidates: [Int]
  public init(scores: [[Double]], policy: [Double], candidates: [Int]) {
    (self.scores, self.policy, self.candidates) = (scores, policy, candidates)
  }
}

public enum QuerySelection {
  /// Picks `k` distinct candidates from score samples `samples` [Z][N] (r(x, y_n, z) for each index z).
  /// - passive: uniformly at random;
  /// - boltzmann: without replacement ∝ exp(mean_z r / τ);
  /// - infomax: (k = 2) the pair maximising Var_z[σ(r_z(y) − r_z(y'))], the variance of the predicted preference;
  /// - double Thompson sampling: the argmax under one index, then the argmax under further indices until it
  ///   differs (at most Z tries), else a random other candidate;
  /// - contrast (choice): the argmax and the argmin of mean_z r, "best-of-N against worst-of-N" (for K > 2, the
  ///   rest spread evenly down the ranking between them);
  /// - contrastive Thompson sampling (choice): the argmax under one index and the argmin of the others under a
  ///   second index (the same index when Z = 1).
  /// Why the two contrast rules: a model pre-trained on a majority is over-confident, its likelihood ratios too
  /// extreme; the error in KL(p*‖π) is then mostly bias along the model's own ranking, and a question between the
  /// two ends of that ranking measures it most directly (docs/INCLUSIVE.md, "Where the bias is").
  /// - expected KL (choice): needs `space`; see `expectedKLReduction`.
  public static func select<R: RandomNumberGenerator>(_ rule: SelectionRule, samples: [[Double]], k: Int = 2,
                                                      temperature: Double = 1, space: ResponseSpaceSamples? = nil,
                                                      rng: inout R) -> [Int] {
    let n = samples.first?.count ?? 0
    precondition(n >= k && k >= 1, "need at least \(k) candidates")
    func randomDistinct(excluding: [Int] = []) -> [Int] {
      var pool = (0..<n).filter { !excluding.contains($0) }
      pool.shuffle(using: &rng)
      return Array(pool.prefix(k - excluding.count))
    }
    func meanScores() -> [Double] { (0..<n).map { i in samples.map { $0[i] }.reduce(0, +) / Double(samples.count) } }
    func argmax(_ row: [Double]) -> Int { row.indices.max { row[$0] < row[$1] }! }
    switch rule {
    case .passive:
      return randomDistinct()
    case .boltzmann:
      let mean = meanScores()
      var chosen: [Int] = []
      while chosen.count < k {
        let open = (0..<n).filter { !chosen.contains($0) }
        let top = open.map { mean[$0] / temperature }.max()!
        let w = open.map { Foundation.exp(mean[$0] / temperature - top) }
        var u = Double.random(in: 0..<w.reduce(0, +), using: &rng)
        var pick = open.last!
        for (j, wj) in zip(open, w) {
          if u < wj { pick = j; break }
          u -= wj
        }
        chosen.append(pick)
      }
      return chosen
    case .infomax:
      var best = (0, 1), bestVar = -1.0
      for i in 0..<n {
        for j in (i + 1)..<n {
          let p = samples.map { 1 / (1 + Foundation.exp(-($0[i] - $0[j]))) }
          let m = p.reduce(0, +) / Double(p.count)
          let v = p.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(p.count)
          if v > bestVar { (best, bestVar) = ((i, j), v) }
        }
      }
      return k == 2 ? [best.0, best.1] : [best.0, best.1] + randomDistinct(excluding: [best.0, best.1])
    case .contrast, .thompsonContrast:
      let best: [Double], worst: [Double]
      if rule == .contrast {
        best = meanScores()
        worst = best
      } else {
        let order = samples.indices.shuffled(using: &rng)
        (best, worst) = (samples[order[0]], samples[order[Swift.min(1, order.count - 1)]])
      }
      let top = argmax(best)
      let bottom = (0..<n).filter { $0 != top }.min { worst[$0] < worst[$1] }!
      guard k > 2 else { return [top, bottom] }
      // K > 2: the rest spread evenly down the ranking between the two ends (K = 3: the middle candidate).
      let rest = (0..<n).filter { $0 != top && $0 != bottom }.sorted { best[$0] > best[$1] }
      var picks = [top, bottom]
      for j in 1...(k - 2) {
        let at = Swift.min(Swift.max(j * (rest.count + 1) / (k - 1) - 1, 0), rest.count - 1)
        picks.append(rest.first { !picks.contains($0) && rest.firstIndex(of: $0)! >= at } ?? rest.first { !picks.contains($0) }!)
      }
      return picks
    case .doubleThompson:
      var order = Array(samples.indices)
      order.shuffle(using: &rng)
      let first = argmax(samples[order[0]])
      var picks = [first]
      for z in order.dropFirst() where picks.count < k {
        let a = argmax(samples[z])
        if !picks.contains(a) { picks.append(a) }
      }
      return picks.count == k ? picks : picks + randomDistinct(excluding: picks)
    case .expectedKL:
      guard let space else { preconditionFailure("expected_kl needs the posterior samples of the whole response space") }
      precondition(space.candidates.count == n, "expected_kl: \(space.candidates.count) candidate rows for \(n) candidates")
      var best = Array(0..<k), value = -Double.infinity
      for subset in combinations(n, k) {
        let v = expectedKLReduction(space, shown: subset.map { space.candidates[$0] })
        if v > value { (best, value) = (subset, v) }
      }
      return best
    }
  }

  /// Every k-subset of 0..<n, in lexicographic order.
  static func combinations(_ n: Int, _ k: Int) -> [[Int]] {
    guard k > 0 else { return [[]] }
    guard n >= k else { return [] }
    return combinations(n - 1, k - 1).map { $0 + [n - 1] } + combinations(n - 1, k)
  }

  /// The one-observation Laplace update of the logits [R] after a person picks `answer` among `shown`: with
  /// the posterior covariance Σ of the samples, P the policy's Luce probabilities on the shown responses,
  /// g = e_answer − P and H = diag P − PPᵀ, δ = Σ_{:,S} (I + H Σ_SS)⁻¹ g (the Kalman gain of the Luce
  /// likelihood linearised at the policy; for K = 2 it is Σd·(o − p)/(1 + p(1 − p)·dᵀΣd), d = e_a − e_b).
  /// Returns the update for every possible answer, [K][R].
  static func laplaceUpdates(_ space: ResponseSpaceSamples, shown: [Int]) -> [[Double]] {
    let z = Double(space.scores.count), r = space.policy.count, k = shown.count
    let mean = (0..<r).map { y in space.scores.reduce(0) { $0 + $1[y] } / z }
    // Σ_{:,S} [R][K] from the samples (unbiased), and Σ_SS.
    var cross = [[Double]](repeating: [Double](repeating: 0, count: k), count: r)
    for s in space.scores {
      let cs = shown.map { s[$0] - mean[$0] }
      for y in 0..<r {
        let cy = s[y] - mean[y]
        for j in 0..<k { cross[y][j] += cy * cs[j] }
      }
    }
    let norm = 1 / Swift.max(z - 1, 1)
    for y in 0..<r { for j in 0..<k { cross[y][j] *= norm } }
    let sigmaSS = shown.map { cross[$0] }
    let top = shown.map { space.policy[$0] }.max()!
    let e = shown.map { Foundation.exp(space.policy[$0] - top) }
    let p = e.map { $0 / e.reduce(0, +) }
    // A = I + H Σ_SS, then the gain column for each answer: solve A x = g.
    var a = [[Double]](repeating: [Double](repeating: 0, count: k), count: k)
    for i in 0..<k {
      for j in 0..<k {
        var h = 0.0
        for l in 0..<k { h += ((i == l ? p[i] : 0) - p[i] * p[l]) * sigmaSS[l][j] }
        a[i][j] = (i == j ? 1 : 0) + h
      }
    }
    return (0..<k).map { answer in
      let g = (0..<k).map { (($0 == answer) ? 1 : 0) - p[$0] }
      let x = solve(a, g)
      return (0..<r).map { y in (0..<k).reduce(0) { $0 + cross[y][$1] * x[$1] } }
    }
  }

  /// x with a x = b for a small square system (Gaussian elimination with partial pivoting).
  static func solve(_ a: [[Double]], _ b: [Double]) -> [Double] {
    var m = a, v = b
    let n = b.count
    for c in 0..<n {
      let pivot = (c..<n).max { abs(m[$0][c]) < abs(m[$1][c]) }!
      m.swapAt(c, pivot)
      v.swapAt(c, pivot)
      guard abs(m[c][c]) > 1e-300 else { continue }
      for r in (c + 1)..<n {
        let f = m[r][c] / m[c][c]
        for j in c..<n { m[r][j] -= f * m[c][j] }
        v[r] -= f * v[c]
      }
    }
    var x = [Double](repeating: 0, count: n)
    for r in stride(from: n - 1, through: 0, by: -1) {
      let rest = ((r + 1)..<n).reduce(0) { $0 + m[r][$1] * x[$1] }
      x[r] = abs(m[r][r]) > 1e-300 ? (v[r] - rest) / m[r][r] : 0
    }
    return x
  }

  /// E_z Σ_a P_z(a | shown) [KL(p_z‖π) − KL(p_z‖π_a)]: how much asking about `shown` is expected to reduce
  /// the KL from the head's posterior samples p_z = softmax(scores_z) to the policy, each answer a drawn from
  /// the sample's own Luce rule and π_a the policy after the Laplace update of `laplaceUpdates`. It needs no
  /// p*: the posterior stands in for it, so it values what KL(p*‖π) values only as far as the head's
  /// samples carry the policy's error (docs/INCLUSIVE.md).
  public static func expectedKLReduction(_ space: ResponseSpaceSamples, shown: [Int]) -> Double {
    let r = space.policy.count
    func logSoftmax(_ xs: [Double]) -> [Double] {
      let m = xs.max()!
      let l = m + Foundation.log(xs.reduce(0) { $0 + Foundation.exp($1 - m) })
      return xs.map { $0 - l }
    }
    let base = logSoftmax(space.policy)
    let updated = laplaceUpdates(space, shown: shown).map { d in logSoftmax((0..<r).map { space.policy[$0] + d[$0] }) }
    var total = 0.0
    for s in space.scores {
      let pz = logSoftmax(s).map(Foundation.exp)
      let choice = logSoftmax(shown.map { s[$0] }).map(Foundation.exp)
      for (a, la) in updated.enumerated() {
        var gain = 0.0
        for y in 0..<r { gain += pz[y] * (la[y] - base[y]) }
        total += choice[a] * gain
      }
    }
    return total / Double(space.scores.count)
  }
}
