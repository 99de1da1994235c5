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
}

public enum QuerySelection {
  /// Picks `k` distinct candidates from score samples `samples` [Z][N] (r(x, y_n, z) for each index z).
  /// - passive: uniformly at random;
  /// - boltzmann: without replacement ∝ exp(mean_z r / τ);
  /// - infomax: (k = 2) the pair maximising Var_z[σ(r_z(y) − r_z(y'))], the variance of the predicted preference;
  /// - double Thompson sampling: the argmax under one index, then the argmax under further indices until it
  ///   differs (at most Z tries), else a random other candidate;
  /// - contrast (choice): the argmax and the argmin of mean_z r, "best-of-N against worst-of-N";
  /// - contrastive Thompson sampling (choice): the argmax under one index and the argmin of the others under a
  ///   second index (the same index when Z = 1).
  /// Why the two contrast rules: a model pre-trained on a majority is over-confident, its likelihood ratios too
  /// extreme; the error in KL(p*‖π) is then mostly bias along the model's own ranking, and a question between the
  /// two ends of that ranking measures it most directly (docs/INCLUSIVE.md, "Where the bias is").
  public static func select<R: RandomNumberGenerator>(_ rule: SelectionRule, samples: [[Double]], k: Int = 2,
                                                      temperature: Double = 1, rng: inout R) -> [Int] {
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
      return k == 2 ? [top, bottom] : [top, bottom] + randomDistinct(excluding: [top, bottom])
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
    }
  }
}
