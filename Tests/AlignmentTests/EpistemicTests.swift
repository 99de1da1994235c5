import Foundation
import Testing
import Torch
@testable import Alignment

struct FixedRNG: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

@Test func epinetWithoutPriorAndWithAZeroTrainablePartReducesToTheBase() {
  let head = Epinet(features: 6, indexDimension: 4, priorScale: 0, generator: Generator(seed: 1))
  let phi = Tensor.randn([5, 6], generator: Generator(seed: 2))
  let z = head.sampleIndices(7, generator: Generator(seed: 3))
  let sigma = head.perturbation(features: phi, indices: z)
  #expect(sigma.shape == [7, 5])
  #expect(sigma.abs().max().item() == 0)
  // With the prior switched on the same head does perturb, and differently for different indices.
  let withPrior = Epinet(features: 6, indexDimension: 4, priorScale: 1, generator: Generator(seed: 1))
  let s2 = withPrior.perturbation(features: phi, indices: z)
  #expect(s2.abs().max().item() > 0)
  #expect(s2.variance(dims: [0]).mean().item() > 0)
  // The prior is frozen; only the trainable part has parameters to train.
  #expect(withPrior.trainableParameters().allSatisfy { $0.name.hasPrefix("train.") })
}

@Test func epinetPerturbationIsLinearInTheIndex() {
  // σ(φ, z) = MLP([z, φ])·z: scaling z by -1 flips the sign only if the MLP ignores z's sign, so check
  // the defining contraction instead: a zero index gives zero.
  let head = Epinet(features: 3, indexDimension: 4, priorScale: 1, generator: Generator(seed: 5))
  let phi = Tensor.randn([2, 3], generator: Generator(seed: 6))
  #expect(head.perturbation(features: phi, indices: Tensor.zeros([1, 4])).abs().max().item() == 0)
}

@Test func ensembleMembersDisagreeAndAnchoringPullsTowardsInitialWeights() {
  let head = EnsembleHead(features: 4, count: 5, priorScale: 1, anchorWeight: 2, generator: Generator(seed: 7))
  let phi = Tensor.randn([3, 4], generator: Generator(seed: 8))
  let all = head.perturbation(features: phi, indices: Tensor([0, 1, 2, 3, 4] as [Int64]))
  #expect(all.shape == [5, 3])
  #expect(all.variance(dims: [0]).min().item() > 0)
  #expect(head.regularizer(dataSize: 10)!.item() == 0)
  withoutGradients { head.members[0].layers[0].weight.add_(1) }
  let w = head.members[0].layers[0].weight.count
  #expect(Swift.abs(head.regularizer(dataSize: 10)!.item() - 2.0 / 10 * Double(w)) < 1e-4)
}

@Test func infomaxPicksThePairWhosePreferenceVariesMost() {
  // Candidates 0 and 1 are always far apart (a certain preference); 2 and 3 swap order across indices.
  let samples: [[Double]] = [[5, 0, 1, -1], [5, 0, -1, 1], [5, 0, 2, -2], [5, 0, -2, 2]]
  var rng = FixedRNG(state: 1)
  let pick = QuerySelection.select(.infomax, samples: samples, rng: &rng)
  #expect(Set(pick) == [2, 3])
}

@Test func doubleThompsonNeverReturnsTheSameCandidateTwice() {
  var rng = FixedRNG(state: 3)
  // Every index agrees on the argmax: the second pick must fall back to another candidate.
  let unanimous: [[Double]] = Array(repeating: [0, 9, 1, 2], count: 8)
  for _ in 0..<50 {
    let p = QuerySelection.select(.doubleThompson, samples: unanimous, rng: &rng)
    #expect(p.count == 2 && p[0] != p[1] && p.contains(1))
  }
  let varied = (0..<8).map { z in (0..<6).map { Double(($0 * 7 + z * 3) % 6) } }
  for _ in 0..<50 {
    let p = QuerySelection.select(.doubleThompson, samples: varied, rng: &rng)
    #expect(Set(p).count == 2)
  }
}

@Test func contrastShowsTheBestAgainstTheWorstOfTheMeanScore() {
  // Mean scores over the two indices: [1, 4, -2, 0.5]; index 1 alone would rank candidate 3 last.
  let samples: [[Double]] = [[1, 3, -1, -3], [1, 5, -3, 4]]
  var rng = FixedRNG(state: 5)
  #expect(QuerySelection.select(.contrast, samples: samples, rng: &rng) == [1, 2])
  let three = QuerySelection.select(.contrast, samples: samples, k: 3, rng: &rng)
  #expect(Array(three.prefix(2)) == [1, 2] && Set(three).count == 3)
  // K = 3 of seven: the ends, then the middle of the five between them (candidate 0, score 3, of 5 4 3 2 1).
  let seven: [[Double]] = [[3, 6, 0, 5, 1, 4, 2]]
  #expect(QuerySelection.select(.contrast, samples: seven, k: 3, rng: &rng) == [1, 2, 0])
  #expect(Set(QuerySelection.select(.contrast, samples: seven, k: 7, rng: &rng)).count == 7)
  // Ties everywhere: still two different candidates.
  #expect(Set(QuerySelection.select(.contrast, samples: [[0, 0, 0]], rng: &rng)).count == 2)
}

@Test func thompsonContrastTakesTheTopOfOneIndexAndTheBottomOfAnother() {
  var rng = FixedRNG(state: 11)
  // The indices disagree on the best candidate (0 or 1) and agree that 3 is the worst: the pick is the top of
  // whichever index is drawn first against 3; with 2 the worst under the second index, it would be 2.
  let samples: [[Double]] = [[9, 1, 0, -9], [1, 9, 0, -9]]
  var seen = Set<[Int]>()
  for _ in 0..<40 {
    let p = QuerySelection.select(.thompsonContrast, samples: samples, rng: &rng)
    #expect(p == [0, 3] || p == [1, 3])
    seen.insert(p)
  }
  // The bottom comes from the second index: here index 1 ranks 2 last, index 0 ranks 3 last.
  for _ in 0..<20 {
    let p = QuerySelection.select(.thompsonContrast, samples: [[9, 1, 0, -9], [9, 1, -9, 0]], rng: &rng)
    #expect(p == [0, 3] || p == [0, 2])
  }
  #expect(seen.count == 2)  // both orders of the indices occur: the rule is randomised by the index draw
  // One index (Z = 1): best against the worst of the rest, as contrast.
  #expect(QuerySelection.select(.thompsonContrast, samples: [[2, 7, 7, 1]], rng: &rng) == [1, 3])
}

@Test func passiveAndBoltzmannReturnDistinctCandidatesAndBoltzmannFavoursHighScores() {
  var rng = FixedRNG(state: 9)
  var counts = [0, 0, 0]
  for _ in 0..<2000 {
    let p = QuerySelection.select(.boltzmann, samples: [[3, 0, -3]], k: 1, rng: &rng)
    counts[p[0]] += 1
  }
  // ∝ exp(3), exp(0), exp(-3): about 95%, 4.7%, 0.2%.
  #expect(counts[0] > 1800 && counts[2] < 30)
  for _ in 0..<20 { #expect(Set(QuerySelection.select(.passive, samples: [[0, 0, 0, 0]], rng: &rng)).count == 2) }
}

/// Posterior samples of 4 logits around a policy, with correlated noise (so Σ is full and off-diagonal).
private func correlatedSpace(candidates: [Int]) -> ResponseSpaceSamples {
  var rng = FixedRNG(state: 3)
  let policy = [0.5, -0.2, 1.0, -1.5]
  let scores = (0..<40).map { _ -> [Double] in
    let e = (0..<5).map { _ in Double(rng.next() % 10_000) / 5_000 - 1 }
    let a: Double = policy[0] + e[0] + 0.5 * e[4], b: Double = policy[1] + e[1] - 0.3 * e[4]
    return [a, b, policy[2] + 0.4 * e[2], policy[3] + e[3] + e[4]]
  }
  return ResponseSpaceSamples(scores: scores, policy: policy, candidates: candidates)
}

@Test func theLaplaceUpdateOfAPairIsTheClosedFormAndOfThreeTheStationaryPoint() {
  let space = correlatedSpace(candidates: [0, 1, 2, 3])
  let r = 4, z = Double(space.scores.count)
  let mean = (0..<r).map { y in space.scores.reduce(0) { $0 + $1[y] } / z }
  let cov = (0..<r).map { a in (0..<r).map { b in space.scores.reduce(0) { $0 + ($1[a] - mean[a]) * ($1[b] - mean[b]) } / (z - 1) } }
  // K = 2, shown (1, 3), the person picks 1: δ = Σd·(1 − p)/(1 + p(1 − p)·dᵀΣd), d = e₁ − e₃, p = σ(ℓ₁ − ℓ₃).
  let p = 1 / (1 + Foundation.exp(-(space.policy[1] - space.policy[3])))
  let sd = (0..<r).map { cov[$0][1] - cov[$0][3] }
  let dsd = sd[1] - sd[3]
  let pair = QuerySelection.laplaceUpdates(space, shown: [1, 3])
  for y in 0..<r { #expect(abs(pair[0][y] - sd[y] * (1 - p) / (1 + p * (1 - p) * dsd)) < 1e-12) }
  for y in 0..<r { #expect(abs(pair[1][y] - sd[y] * (0 - p) / (1 + p * (1 - p) * dsd)) < 1e-12) }
  // K = 3: δ is the stationary point of the Gaussian prior plus the Luce log-likelihood expanded to second order
  // at the policy, i.e. δ = Σ_{:,S} (g − H δ_S) with g = e_a − P and H = diag P − PPᵀ.
  let shown = [0, 2, 3]
  let e = shown.map { Foundation.exp(space.policy[$0]) }
  let probs = e.map { $0 / e.reduce(0, +) }
  for (answer, delta) in QuerySelection.laplaceUpdates(space, shown: shown).enumerated() {
    let ds = shown.map { delta[$0] }
    let residual = (0..<3).map { (i: Int) -> Double in
      var hd = 0.0
      for j in 0..<3 { hd += ((i == j ? probs[i] : 0) - probs[i] * probs[j]) * ds[j] }
      return (i == answer ? 1.0 : 0.0) - probs[i] - hd
    }
    for y in 0..<r {
      let expected = (0..<3).reduce(0) { $0 + cov[y][shown[$1]] * residual[$1] }
      #expect(abs(delta[y] - expected) < 1e-10, "answer \(answer), logit \(y)")
    }
  }
}

@Test func expectedKLAsksAboutTheResponseThePosteriorIsUnsureOfAndNothingWhenItIsSure() {
  let policy = [1.0, 0.0, -0.5, -1.0, 0.3]
  // No uncertainty: every sample is the policy, so no answer moves it and every question is worth zero.
  let sure = ResponseSpaceSamples(scores: Array(repeating: policy, count: 8), policy: policy, candidates: [0, 1, 2, 3])
  #expect(abs(QuerySelection.expectedKLReduction(sure, shown: [0, 3])) < 1e-15)
  // Uncertain only about response 2's logit (±1.5): the questions without it are worth nothing (Σ_{:,S} = 0),
  // those with it are worth something, and the rule shows it.
  let scores = (0..<8).map { (z: Int) -> [Double] in
    var s = policy
    s[2] += z % 2 == 0 ? 1.5 : -1.5
    return s
  }
  let unsure = ResponseSpaceSamples(scores: scores, policy: policy, candidates: [0, 1, 2, 3])
  #expect(abs(QuerySelection.expectedKLReduction(unsure, shown: [0, 1])) < 1e-15)
  #expect(QuerySelection.expectedKLReduction(unsure, shown: [0, 2]) > 1e-3)
  var rng = FixedRNG(state: 1)
  let samples = scores.map { s in [0, 1, 2, 3].map { s[$0] } }
  #expect(QuerySelection.select(.expectedKL, samples: samples, space: unsure, rng: &rng).contains(2))
  #expect(QuerySelection.select(.expectedKL, samples: samples, k: 3, space: unsure, rng: &rng).contains(2))
  #expect(QuerySelection.combinations(5, 3).count == 10 && Set(QuerySelection.combinations(5, 3)).count == 10)
}
