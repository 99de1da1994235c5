import Foundation

/// A population of person types with known preferences over a finite response set per prompt, who answer
/// K-way questions by the Luce rule of their own type: what the inclusive experiment asks and measures
/// against. `DidacticPopulation` (METHODS §1.2's tokens) and `TextPopulation` (natural-language answers)
/// are the two.
public protocol ChoicePopulation: Sendable {
  var prompts: Int { get }
  /// Responses per prompt.
  var responseCount: Int { get }
  var types: Int { get }
  /// The type weights, summing to 1.
  var weights: [Double] { get }
  /// log p_m(y|x).
  func logProbability(type: Int, prompt: Int, response index: Int) -> Double
  /// The population's choice share p*(·|x) = Σ_m w_m p_m(·|x): what an inclusive model should match.
  func target(prompt: Int) -> [Double]
}

extension ChoicePopulation {
  /// The Luce rule for type m: P(pick candidates[i]) = p_m(y_i|x) / Σ_k p_m(y_k|x), computed in log space.
  public func choiceProbabilities(type: Int, prompt: Int, candidates: [Int]) -> [Double] {
    precondition(!candidates.isEmpty, "a query needs at least one candidate")
    let logs = candidates.map { logProbability(type: type, prompt: prompt, response: $0) }
    let top = logs.max()!
    let e = logs.map { exp($0 - top) }
    let sum = e.reduce(0, +)
    return e.map { $0 / sum }
  }

  /// What a random person picks: Σ_m w_m · Luce_m(candidates).
  public func populationChoiceProbabilities(prompt: Int, candidates: [Int]) -> [Double] {
    var total = [Double](repeating: 0, count: candidates.count)
    for type in 0..<types {
      let p = choiceProbabilities(type: type, prompt: prompt, candidates: candidates)
      for i in 0..<p.count { total[i] += weights[type] * p[i] }
    }
    return total
  }

  /// A random person (type m ~ w) answers the query: `choice` is an index into `candidates`.
  public func answer(prompt: Int, candidates: [Int], rng: inout SplitMix64) -> (type: Int, choice: Int) {
    let type = rng.categorical(weights)
    let choice = rng.categorical(choiceProbabilities(type: type, prompt: prompt, candidates: candidates))
    return (type, choice)
  }

  /// KL(p ‖ q) = Σ_i p_i log(p_i / q_i) in nats; terms with p_i = 0 contribute 0 and q is floored at 1e-300,
  /// so a model that rules out a target response gets a large finite penalty rather than infinity.
  public static func kl(_ p: [Double], _ q: [Double]) -> Double {
    precondition(p.count == q.count, "kl: distributions of \(p.count) and \(q.count) entries")
    var sum = 0.0
    for i in 0..<p.count where p[i] > 0 {
      sum += p[i] * (log(p[i]) - log(max(q[i], 1e-300)))
    }
    return sum
  }

  /// The inclusiveness metric (METHODS.md §1.1): mean over prompts of KL(p*(·|x) ‖ model[x]).
  public func meanKL(model: [[Double]]) -> Double {
    precondition(model.count == prompts, "meanKL: \(model.count) model distributions for \(prompts) prompts")
    var sum = 0.0
    for x in 0..<prompts { sum += Self.kl(target(prompt: x), model[x]) }
    return sum / Double(prompts)
  }
}
