import Foundation
import NN
import Testing
import Torch
import Worlds
@testable import Alignment

/// The infinite-data optimum of a choice fit on the enumerable default world (2 prompts, 4 symbols, length
/// 2: 16 responses, three types 0.5/0.3/0.2): every K-subset of responses as a query, answered with the
/// population's exact choice probabilities, and a tabular model (type weights and per-type scores per
/// prompt) fitted by AdamW to the expected log-likelihood. Returns KL(p*‖π) and max |π − p*| of the
/// policy the fit implies, π = Σ_m w_m softmax(r_m).
private func infiniteDataFit(types: Int, k: Int, steps: Int) -> (kl: Double, maxError: Double) {
  let population = try! DidacticPopulation(PopulationConfig(prompts: 2, vocabulary: 4, length: 2, sharpness: 1.5))
  let (p, r) = (population.prompts, population.responseCount)
  func subsets(_ n: Int, _ k: Int) -> [[Int]] {
    k == 0 ? [[]] : (0..<n).flatMap { first in subsets(n, k - 1).filter { ($0.first ?? n) > first }.map { [first] + $0 } }
  }
  let sets = subsets(r, k)
  var rows: [Int64] = [], targets: [Double] = [], prompts: [Int64] = []
  for x in 0..<p {
    for c in sets {
      rows += c.map { Int64(x * r + $0) }
      targets += population.populationChoiceProbabilities(prompt: x, candidates: c)
      prompts.append(Int64(x))
    }
  }
  let n = p * sets.count
  let index = Tensor(rows), target = Tensor(targets, shape: [n, k]), promptIndex = Tensor(prompts)
  // Start from the prior, each type perturbed so the types can separate.
  let g = Generator(seed: 7)
  let prior = Tensor((0..<p).flatMap { population.prior(prompt: $0) }, shape: [1, p * r]).log()
  let scores = (prior.expanded(to: [types, p * r]) + Tensor.randn([types, p * r], dtype: .float64, generator: g)).requiringGrad()
  let typeLogits = Tensor.zeros([p, types], dtype: .float64).requiringGrad()
  let opt = AdamW([("scores", scores), ("types", typeLogits)], learningRate: 0.05, betas: (0.9, 0.999), weightDecay: 0)
  for _ in 0..<steps {
    opt.zeroGrad()
    let shown = scores.indexSelect(dim: 1, index: index).reshaped([types, n, k]).permuted([1, 0, 2])  // [N, M, K]
    let logW = typeLogits.logSoftmax(dim: 1).indexSelect(dim: 0, index: promptIndex)  // [N, M]
    let logP = ChoiceLoss.logProbabilities(typeLogWeights: logW, scores: shown)
    (-(target * logP).sum() / Double(n)).backward()
    opt.step()
  }
  return withoutGradients {
    let w = typeLogits.softmax(dim: 1)  // [P, M]
    let perType = scores.reshaped([types, p, r]).logSoftmax(dim: 2).exp()  // [M, P, R]
    let pi = (w.transposed(0, 1).unsqueezed(dim: 2) * perType).sum(dim: 0).toArray(Double.self)
    let model = (0..<p).map { Array(pi[($0 * r)..<(($0 + 1) * r)]) }
    let error = (0..<p).flatMap { x in zip(model[x], population.target(prompt: x)).map { abs($0 - $1) } }.max()!
    return (population.meanKL(model: model), error)
  }
}

/// Three-way choices fitted with a mixture of three types recover the population: π = p* to 1e-3.
@Test func aMixtureOfTypesFittedToThreeWayChoicesRecoversThePopulation() {
  let fit = infiniteDataFit(types: 3, k: 3, steps: 6000)
  #expect(fit.maxError < 1e-3 && fit.kl < 1e-5, "max |π − p*| \(fit.maxError), KL \(fit.kl)")
}

/// The single Luce model on the same infinite data is misspecified: its optimum stays far from p*
/// (scripts/luce_limit.py; docs/INCLUSIVE.md).
@Test func aSingleLuceFitToTheSameChoicesDoesNot() {
  let fit = infiniteDataFit(types: 1, k: 3, steps: 2000)
  #expect(fit.kl > 0.05, "KL \(fit.kl)")
}
