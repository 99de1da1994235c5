import Foundation
import Testing
@testable import Worlds

/// The asymptotic design bound (what active query selection can buy at most) against closed forms, the
/// inequality it claims, and the numpy reference in scripts/active_design_ceiling.py.
@Suite struct QueryDesignBoundTests {
  /// The experiment's default world.
  static let experimentWorld = PopulationConfig(prompts: 2, vocabulary: 4, length: 2, sharpness: 1.5)

  @Test func matchesTheNumpyReference() throws {
    // Printed by `design_bound` of scripts/active_design_ceiling.py for these worlds.
    let bound = try #require(try DidacticPopulation(Self.experimentWorld).queryDesignBound())
    #expect(abs(bound.perPrompt[0] - 0.7332838869635656) < 1e-6)
    #expect(abs(bound.perPrompt[1] - 0.7209054751663186) < 1e-6)
    let longer = try #require(try DidacticPopulation(PopulationConfig(prompts: 2, vocabulary: 4, length: 4, sharpness: 1.5))
      .queryDesignBound())
    #expect(abs(longer.perPrompt[0] - 0.35500674274671484) < 1e-6)
    #expect(abs(longer.perPrompt[1] - 0.35878476013668864) < 1e-6)
    // The whole-world ratio lies between the per-prompt ones (a ratio of sums).
    #expect(bound.ratio > bound.perPrompt.min()! && bound.ratio < bound.perPrompt.max()!)
  }

  @Test func uniformPreferencesLeaveNothingToGain() throws {
    // Sharpness 0: p* is uniform, passive's design is already ∝ F^½, so the bound is exactly 1.
    let bound = try #require(try DidacticPopulation(PopulationConfig(prompts: 1, vocabulary: 3, length: 2, sharpness: 0))
      .queryDesignBound())
    #expect(abs(bound.ratio - 1) < 1e-7)  // √ of a zero eigenvalue computed as ~1e-18 contributes ~1e-9
  }

  @Test func noPairDesignBeatsTheBound() throws {
    // For random designs ξ over pairs, tr(F M_ξ⁺) must never fall below 2 (tr F^½)², the bound's numerator.
    let p = try DidacticPopulation(Self.experimentWorld).target(prompt: 0)
    let r = p.count
    let f = DidacticPopulation.fisherMatrix(p)
    let (best, passive) = DidacticPopulation.designTraces(p)
    #expect(best < passive)
    var rng = SplitMix64(seed: 3)
    for trial in 0..<50 {
      var weights = [Double](repeating: 0, count: r * r)
      for a in 0..<r { for b in (a + 1)..<r { weights[a * r + b] = pow(rng.uniform(), trial % 2 == 0 ? 1 : 8) } }
      let m = DidacticPopulation.informationMatrix(p, pairWeights: weights)
      #expect(DidacticPopulation.traceOfProductWithInverse(f, spd: m, r) >= best * (1 - 1e-9))
    }
  }

  @Test func linearAlgebraMatchesClosedForms() {
    // diag(p) − ppᵀ for p = (a, b) is ab·[[1, −1], [−1, 1]]: eigenvalues 0 and 2ab.
    let (a, b) = (0.3, 0.7)
    let eig = DidacticPopulation.symmetricEigenvalues([a - a * a, -a * b, -a * b, b - b * b], 2).sorted()
    #expect(abs(eig[0]) < 1e-12 && abs(eig[1] - 2 * a * b) < 1e-12)
    // A 3×3 with known spectrum {1, 2, 4}: Q diag Qᵀ for a rotation Q about z by 30°.
    let (c, s) = (cos(Double.pi / 6), sin(Double.pi / 6))
    let m = [c * c * 1 + s * s * 2, c * s * (2 - 1), 0, c * s * (2 - 1), s * s * 1 + c * c * 2, 0, 0, 0, 4]
    let e3 = DidacticPopulation.symmetricEigenvalues(m, 3).sorted()
    #expect(zip(e3, [1.0, 2, 4]).allSatisfy { abs($0 - $1) < 1e-12 })
    // tr(F S⁻¹) with S = [[2, 1], [1, 2]] (inverse [[2, −1], [−1, 2]]/3) and F = [[1, 0], [0, 3]]: (2 + 6)/3.
    #expect(abs(DidacticPopulation.traceOfProductWithInverse([1, 0, 0, 3], spd: [2, 1, 1, 2], 2) - 8.0 / 3) < 1e-12)
  }

  @Test func onlyPairwiseQuestionsOfModestSpacesAreBounded() throws {
    #expect(try DidacticPopulation(PopulationConfig(prompts: 1, vocabulary: 4, length: 2, candidates: 3)).queryDesignBound() == nil)
    #expect(try DidacticPopulation(PopulationConfig(prompts: 1, vocabulary: 8, length: 4)).queryDesignBound() == nil)
  }
}
