import Foundation

/// How many of passive querying's questions *any* selection rule still needs, asymptotically, to reach the
/// same `KL(p*‖π)` on this population: a ceiling on what active exploration can buy by reducing *variance*
/// once the model is near p*. It does not bound the early, bias-dominated regime: a model pre-trained on a
/// majority is wrong in a systematic direction, and a rule that asks along that direction (`contrast`,
/// `ts_contrast`) can beat it by far (docs/INCLUSIVE.md, "Where the bias is").
///
/// For a policy with one free logit per response fitted to n pairwise Luce choices drawn from a design ξ
/// (a distribution over pairs), the logit error is ≈ N(0, M(ξ)⁻¹/n) with the information matrix
/// `M(ξ) = Σ_{a,b} ξ_ab c_ab (e_a − e_b)(e_a − e_b)ᵀ`, `c_ab = P(a≻b)(1 − P(a≻b)) ≤ ¼`, and
/// `KL(p*‖π) ≈ ½ δᵀ F δ` with the Fisher matrix `F = diag(p*) − p* p*ᵀ`. The questions needed for a target
/// KL are therefore proportional to `tr(F M⁻¹)` (pseudo-inverse: logits are defined up to a constant).
/// Every design has `tr M ≤ 2·max c = ½`, and over all such matrices `tr(F M⁻¹) ≥ 2 (tr F^½)²`
/// (Cauchy–Schwarz, equality at M ∝ F^½). Passive querying shows two distinct samples of the policy; once
/// the policy is near p* its design gives `tr(F M_passive⁻¹)`. The prompt is drawn uniformly whatever the
/// rule, so over prompts the bound is `Σ_x 2 (tr F_x^½)² / Σ_x tr(F_x M_x⁻¹)`.
///
/// The bound assumes the choices follow Luce on p* (a well-specified model) and is a relaxation (M ∝ F^½
/// need not be a mixture of pair matrices with c = ¼), so real rules can only do worse; a misspecified
/// population (METHODS' mixture of types) makes every rule's asymptote biased besides.
/// `scripts/active_design_ceiling.py` computes the same number with numpy.
public struct QueryDesignBound: Sendable, Codable, Equatable {
  /// The smallest possible ratio (queries of any rule) / (queries of passive) over all prompts.
  public let ratio: Double
  /// The same ratio for each prompt alone.
  public let perPrompt: [Double]
}

extension DidacticPopulation {
  /// The largest response space `queryDesignBound()` handles: it diagonalises an R × R matrix per prompt by
  /// Jacobi rotations, O(R³) per sweep, about 5 s per prompt at R = 512.
  public static let maxDesignBoundResponses = 512

  /// The asymptotic design bound for pairwise questions (see `QueryDesignBound`), or nil when K ≠ 2 or the
  /// response space is larger than `maxDesignBoundResponses`.
  public func queryDesignBound() -> QueryDesignBound? {
    guard config.candidates == 2, responseCount <= Self.maxDesignBoundResponses else { return nil }
    var best = [Double](), passive = [Double]()
    for x in 0..<prompts {
      let (b, p) = Self.designTraces(target(prompt: x))
      best.append(b)
      passive.append(p)
    }
    return QueryDesignBound(ratio: best.reduce(0, +) / passive.reduce(0, +),
                            perPrompt: zip(best, passive).map { $0 / $1 })
  }

  /// (2 (tr F^½)², tr(F M_passive⁺)) for a target distribution p, where passive shows the first two draws
  /// of sampling without replacement from p: P(a then b) = p_a p_b / (1 − p_a).
  static func designTraces(_ p: [Double]) -> (best: Double, passive: Double) {
    let r = p.count
    let f = fisherMatrix(p)
    let best = 2 * pow(symmetricEigenvalues(f, r).reduce(0) { $0 + Swift.max($1, 0).squareRoot() }, 2)
    var passive = [Double](repeating: 0, count: r * r)
    for a in 0..<r { for b in 0..<r where a != b { passive[a * r + b] = p[a] * p[b] / Swift.max(1 - p[a], 1e-300) } }
    return (best, traceOfProductWithInverse(f, spd: informationMatrix(p, pairWeights: passive), r))
  }

  /// F = diag(p) − ppᵀ (row-major), the Fisher matrix of the logits of a softmax at p.
  static func fisherMatrix(_ p: [Double]) -> [Double] {
    let r = p.count
    var f = [Double](repeating: 0, count: r * r)
    for i in 0..<r { for j in 0..<r { f[i * r + j] = (i == j ? p[i] : 0) - p[i] * p[j] } }
    return f
  }

  /// M + 11ᵀ/r for the design ξ ∝ `pairWeights` (r × r, entry a·r + b the weight of showing a and b):
  /// `M = Σ ξ_ab c_ab (e_a − e_b)(e_a − e_b)ᵀ` with Luce's c_ab on p. The null direction of M (a constant
  /// shift of every logit) is filled in so that tr(F (M + 11ᵀ/r)⁻¹) = tr(F M⁺), because F·1 = 0.
  static func informationMatrix(_ p: [Double], pairWeights: [Double]) -> [Double] {
    let r = p.count
    let total = pairWeights.reduce(0, +)
    var m = [Double](repeating: 1 / Double(r), count: r * r)
    for a in 0..<r {
      for b in 0..<r where a != b && pairWeights[a * r + b] > 0 {
        let luce = p[a] / (p[a] + p[b])
        let w = pairWeights[a * r + b] / total * luce * (1 - luce)
        m[a * r + a] += w
        m[b * r + b] += w
        m[a * r + b] -= w
        m[b * r + a] -= w
      }
    }
    return m
  }

  /// Eigenvalues of a symmetric r × r matrix (row-major) by cyclic Jacobi rotations.
  static func symmetricEigenvalues(_ matrix: [Double], _ r: Int) -> [Double] {
    var a = matrix
    for _ in 0..<100 {
      var off = 0.0
      for i in 0..<r { for j in (i + 1)..<r { off += a[i * r + j] * a[i * r + j] } }
      if off < 1e-30 { break }
      for p in 0..<r {
        for q in (p + 1)..<r where abs(a[p * r + q]) > 1e-300 {
          let theta = (a[q * r + q] - a[p * r + p]) / (2 * a[p * r + q])
          let t = (theta >= 0 ? 1 : -1) / (abs(theta) + (theta * theta + 1).squareRoot())
          let c = 1 / (t * t + 1).squareRoot(), s = t * c
          for k in 0..<r {
            let (akp, akq) = (a[k * r + p], a[k * r + q])
            a[k * r + p] = c * akp - s * akq
            a[k * r + q] = s * akp + c * akq
          }
          for k in 0..<r {
            let (apk, aqk) = (a[p * r + k], a[q * r + k])
            a[p * r + k] = c * apk - s * aqk
            a[q * r + k] = s * apk + c * aqk
          }
        }
      }
    }
    return (0..<r).map { a[$0 * r + $0] }
  }

  /// tr(F S⁻¹) for a symmetric positive-definite S, by Cholesky (S = L Lᵀ): tr(F S⁻¹) = Σ_j (S⁻¹ F)_jj.
  static func traceOfProductWithInverse(_ f: [Double], spd s: [Double], _ r: Int) -> Double {
    var l = [Double](repeating: 0, count: r * r)
    for i in 0..<r {
      for j in 0...i {
        var sum = s[i * r + j]
        for k in 0..<j { sum -= l[i * r + k] * l[j * r + k] }
        l[i * r + j] = i == j ? Swift.max(sum, 1e-300).squareRoot() : sum / l[j * r + j]
      }
    }
    var trace = 0.0
    for col in 0..<r {
      // Solve L y = F[:, col], then Lᵀ x = y; add x[col].
      var y = [Double](repeating: 0, count: r)
      for i in 0..<r {
        var sum = f[i * r + col]
        for k in 0..<i { sum -= l[i * r + k] * y[k] }
        y[i] = sum / l[i * r + i]
      }
      var x = [Double](repeating: 0, count: r)
      for i in stride(from: r - 1, through: 0, by: -1) {
        var sum = y[i]
        for k in (i + 1)..<r { sum -= l[k * r + i] * x[k] }
        x[i] = sum / l[i * r + i]
      }
      trace += x[col]
    }
    return trace
  }
}
