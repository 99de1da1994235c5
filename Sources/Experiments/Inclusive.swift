import Alignment
import Foundation
import LM
import NN
import Torch
import Worlds

/// The configuration of `shatter experiment inclusive`; every field has a default that runs on two
/// cores in minutes.
public struct InclusiveConfig: Codable, Sendable, Equatable {
  public var population = PopulationConfig()
  /// The small transformer that is at once policy, reward and transition function.
  public var layers = 2
  public var dModel = 32
  public var heads = 4
  /// Pre-training on p_0 by exact expected log-likelihood.
  public var pretrainSteps = 300
  public var pretrainLearningRate = 1e-2
  /// Queries per run, and queries gathered between updates.
  public var budget = 240
  public var batchSize = 20
  /// Candidates sampled from the policy per query, before the rule picks K of them.
  public var candidates = 8
  /// Optimizer steps after each batch, on every query gathered so far.
  public var updateSteps = 20
  public var learningRate = 3e-3
  /// Epistemic head: "epinet" or "ensemble"; index samples per example and per selection.
  public var epistemic = "epinet"
  public var indexSamples = 16
  public var priorScale = 1.0
  public var rules: [SelectionRule] = SelectionRule.allCases
  public var seeds = 5
  /// Held-out population choices for the choice log-loss.
  public var heldOutQueries = 200
  /// The classic pipeline's KL-regularised policy update: π ∝ π_pre · exp(r / β).
  public var baselineBeta = 1.0
  /// The KL to reach; the passive rule's final KL when nil.
  public var targetKL: Double? = nil

  public init() {}

  public func validate() throws {
    try population.validate()
    func need(_ ok: Bool, _ what: String) throws { if !ok { throw ExperimentError("config: \(what)") } }
    try need(budget > 0 && batchSize > 0 && budget % batchSize == 0, "budget must be a positive multiple of batch_size")
    try need(candidates >= population.candidates, "candidates must be at least population.candidates")
    try need(["epinet", "ensemble"].contains(epistemic), "epistemic must be 'epinet' or 'ensemble'")
    try need(seeds > 0 && indexSamples > 1 && !rules.isEmpty, "seeds, index_samples (>1) and rules must be non-empty")
    try need(layers > 0 && dModel > 0 && heads > 0 && dModel % heads == 0, "model sizes must be positive, d_model divisible by heads")
  }
}

public struct ExperimentError: Error, CustomStringConvertible {
  public let description: String
  public init(_ message: String) { description = message }
}

/// One recorded point of a run.
public struct CurvePoint: Codable, Sendable {
  public let queries: Int
  public let kl: Double
  public let heldOutLogLoss: Double
}

/// One (rule, seed) run's curve.
public struct RunResult: Codable, Sendable {
  public let rule: String
  public let seed: Int
  public let curve: [CurvePoint]
}

/// The shared world and model plumbing of the experiment: token layout, the exact policy table, scores.
struct InclusiveWorld {
  let population: DidacticPopulation
  let config: InclusiveConfig
  /// All prompt+response sequences [P·R, L+1]: the prompt token (V + x) then the response tokens.
  let allSequences: Tensor

  init(_ config: InclusiveConfig) throws {
    self.config = config
    population = try DidacticPopulation(config.population)
    let (p, r) = (config.population.prompts, population.responseCount)
    var ids: [Int64] = []
    for x in 0..<p {
      for y in 0..<r { ids += [Int64(config.population.vocabulary + x)] + population.response(y).map { Int64($0) } }
    }
    allSequences = Tensor(ids, shape: [p * r, config.population.length + 1])
  }

  var vocabulary: Int { config.population.vocabulary }

  func makeModel(seed: UInt64) -> any CausalLM {
    let mc = ModelConfig(family: .gpt2, vocabSize: vocabulary + config.population.prompts, hiddenSize: config.dModel,
                         layers: config.layers, heads: config.heads, maxPositions: config.population.length + 1)
    return Checkpoint.makeModel(mc, generator: Generator(seed: seed))
  }

  /// log π(y|x) for sequences [N, L+1], with the next-token distribution restricted to response tokens
  /// **(choice)** so that π sums to one over the enumerable response space; and the features φ = final
  /// hidden state at the last token [N, D].
  func score(_ model: any CausalLM, _ sequences: Tensor) -> (logProbs: Tensor, features: Tensor) {
    let l = config.population.length
    let (logits, hidden) = model.forward(sequences, positions: Tensor.arange(Double(l + 1)).unsqueezed(dim: 0)
      .expanded(to: [sequences.size(0), l + 1]), attentionBias: nil, cache: nil)
    let responseLogits = logits.narrow(dim: 1, start: 0, length: l).narrow(dim: 2, start: 0, length: vocabulary)
    let targets = sequences.narrow(dim: 1, start: 1, length: l)
    let lp = responseLogits.logSoftmax(dim: -1).gather(dim: 2, index: targets.unsqueezed(dim: -1)).squeezed(dim: -1).sum(dim: 1)
    return (lp, hidden.select(dim: 1, index: l))
  }

  func sequences(prompts: [Int], responses: [Int]) -> Tensor {
    let r = population.responseCount
    return allSequences.indexSelect(dim: 0, index: Tensor(zip(prompts, responses).map { Int64($0 * r + $1) }))
  }

  /// The exact policy table log π(·|x) [P, R].
  func policyTable(_ model: any CausalLM) -> Tensor {
    score(model, allSequences).logProbs.reshaped([config.population.prompts, population.responseCount])
  }

  func meanKL(_ logTable: Tensor) -> Double {
    population.meanKL(model: (0..<config.population.prompts).map { logTable[$0].exp().toArray(Double.self) })
  }

  /// Pre-trains on the prior p_0 by minimising the exact expected negative log-likelihood.
  func pretrain(_ model: any CausalLM) {
    let p0 = Tensor((0..<config.population.prompts).flatMap { population.prior(prompt: $0).map { Float($0) } },
                    shape: [config.population.prompts, population.responseCount])
    let opt = AdamW(model.trainableParameters(), learningRate: config.pretrainLearningRate, weightDecay: 0)
    for _ in 0..<config.pretrainSteps {
      opt.zeroGrad()
      (-(p0 * policyTable(model)).sum(dim: 1).mean()).backward()
      opt.step()
    }
  }
}

/// A query a person answered: the prompt, the K responses shown, and the index picked.
struct Query {
  let prompt: Int
  let shown: [Int]
  let choice: Int
}

/// Inclusive fine-tuning with active exploration (METHODS §1–§3) on the didactic population: the
/// model's own likelihood is fitted to people's K-way choices, jointly with an epistemic head whose
/// disagreement chooses the next questions; compared with passive querying and with the classic
/// pipeline (a separate reward model, then an exact KL-regularised policy update).
public final class InclusiveExperiment {
  public let config: InclusiveConfig
  let world: InclusiveWorld

  public init(config: InclusiveConfig) throws {
    try config.validate()
    self.config = config
    world = try InclusiveWorld(config)
  }

  /// Population choices on uniformly drawn candidate sets, for the held-out log-loss.
  func heldOut(seed: UInt64) -> [Query] {
    var rng = SplitMix64(seed: seed &+ 0xBEEF)
    let pop = world.population
    return (0..<config.heldOutQueries).map { _ in
      let x = Int(rng.next() % UInt64(config.population.prompts))
      var shown: [Int] = []
      while shown.count < config.population.candidates {
        let y = Int(rng.next() % UInt64(pop.responseCount))
        if !shown.contains(y) { shown.append(y) }
      }
      return Query(prompt: x, shown: shown, choice: pop.answer(prompt: x, candidates: shown, rng: &rng).choice)
    }
  }

  func logLoss(_ logTable: Tensor, _ queries: [Query]) -> Double {
    let t = logTable.toArray(Double.self), r = world.population.responseCount
    var total = 0.0
    for q in queries {
      let s = q.shown.map { t[q.prompt * r + $0] }
      let m = s.max()!
      total -= s[q.choice] - (m + Foundation.log(s.map { Foundation.exp($0 - m) }.reduce(0, +)))
    }
    return total / Double(queries.count)
  }

  func makeHead(seed: UInt64) -> any EpistemicHead {
    let g = Generator(seed: seed &+ 0xE9)
    return config.epistemic == "ensemble"
      ? EnsembleHead(features: config.dModel, count: config.indexSamples, priorScale: config.priorScale, generator: g)
      : Epinet(features: config.dModel, priorScale: config.priorScale, generator: g)
  }

  /// One feedback loop: select → a simulated person chooses → update the model with the choice
  /// likelihood jointly with the epistemic head; KL(p*‖π) and held-out log-loss after every batch.
  public func run(rule: SelectionRule, seed: Int, pretrained: [String: Tensor]) throws -> RunResult {
    let s = UInt64(seed)
    let model = world.makeModel(seed: s)
    try model.load(stateDict: pretrained)
    let head = makeHead(seed: s)
    let opt = AdamW(model.trainableParameters() + head.trainableParameters().map { ("head." + $0.name, $0.tensor) },
                    learningRate: config.learningRate, weightDecay: 0)
    let gen = Generator(seed: s &+ 0x5A)
    var rng = SplitMix64(seed: s &* 7919 &+ UInt64(SelectionRule.allCases.firstIndex(of: rule)!))
    let held = heldOut(seed: s)
    var queries: [Query] = []
    var table = withoutGradients { world.policyTable(model) }
    var curve = [CurvePoint(queries: 0, kl: world.meanKL(table), heldOutLogLoss: logLoss(table, held))]
    let pop = world.population
    for _ in 0..<(config.budget / config.batchSize) {
      // Ask a batch of questions chosen by the rule from the current policy's samples.
      let probs = table.exp()
      for _ in 0..<config.batchSize {
        let x = Int(rng.next() % UInt64(config.population.prompts))
        let candidates = probs[x].multinomial(config.candidates, replacement: false, generator: gen).toArray(Int.self)
        let samples: [[Double]] = withoutGradients {
          let (lp, phi) = world.score(model, world.sequences(prompts: Array(repeating: x, count: candidates.count),
                                                             responses: candidates))
          let z = head.sampleIndices(config.indexSamples, generator: gen)
          let r = lp.unsqueezed(dim: 0) + head.perturbation(features: phi, indices: z)
          return (0..<config.indexSamples).map { r[$0].toArray(Double.self) }
        }
        let picked = QuerySelection.select(rule, samples: samples, k: config.population.candidates, rng: &rng)
        let shown = picked.map { candidates[$0] }
        queries.append(Query(prompt: x, shown: shown, choice: pop.answer(prompt: x, candidates: shown, rng: &rng).choice))
      }
      // Fit the model's own likelihood (plus the head's perturbation) to every choice so far.
      let k = config.population.candidates
      let seqs = world.sequences(prompts: queries.flatMap { q in Array(repeating: q.prompt, count: k) },
                                 responses: queries.flatMap(\.shown))
      let chosen = Tensor(queries.map { Int64($0.choice) })
      for _ in 0..<config.updateSteps {
        opt.zeroGrad()
        let (lp, phi) = world.score(model, seqs)
        let z = head.sampleIndices(config.indexSamples, generator: gen)
        let r = lp.unsqueezed(dim: 0) + head.perturbation(features: phi, indices: z)  // [Z, Q·K]
        let scores = r.reshaped([config.indexSamples * queries.count, k])
        let choices = chosen.unsqueezed(dim: 0).expanded(to: [config.indexSamples, queries.count]).reshaped([-1])
        var loss = ChoiceLoss.compute(scores: scores, chosen: choices).loss
        if let reg = head.regularizer(dataSize: queries.count) { loss = loss + reg }
        let value = loss.item()
        guard value.isFinite else { throw NonFiniteError(step: queries.count, metric: "choice loss", value: value) }
        loss.backward()
        _ = opt.clipGradients(maxNorm: 1)
        opt.step()
      }
      table = withoutGradients { world.policyTable(model) }
      curve.append(CurvePoint(queries: queries.count, kl: world.meanKL(table), heldOutLogLoss: logLoss(table, held)))
    }
    return RunResult(rule: rule.rawValue, seed: seed, curve: curve)
  }

  /// The classic pipeline on the same kind of (passive) queries: a separate reward model — the same
  /// small transformer with a scalar head, trained with the choice loss — then the exact KL-regularised
  /// policy update π(y|x) ∝ π_pre(y|x)·exp(r(x, y)/β) over the enumerable response space.
  public func runBaseline(seed: Int, pretrained: [String: Tensor]) throws -> RunResult {
    let s = UInt64(seed)
    let policy = world.makeModel(seed: s)
    try policy.load(stateDict: pretrained)
    let preTable = withoutGradients { world.policyTable(policy) }
    let rmLM = world.makeModel(seed: s &+ 101)
    let rm = RewardModel(lm: rmLM, generator: Generator(seed: s &+ 102))
    let opt = AdamW(rmLM.trainableParameters() + [("score.weight", rm.score.weight)], learningRate: config.learningRate,
                    weightDecay: 0)
    let gen = Generator(seed: s &+ 0x5A)
    var rng = SplitMix64(seed: s &* 7919)
    let held = heldOut(seed: s)
    let pop = world.population
    var queries: [Query] = []
    func rewards(_ seqs: Tensor) -> Tensor {
      rm.score(world.score(rmLM, seqs).features).squeezed(dim: -1)
    }
    func policyAfterUpdate() -> Tensor {
      withoutGradients {
        let r = rewards(world.allSequences).reshaped(preTable.shape)
        return (preTable + r / config.baselineBeta).logSoftmax(dim: 1)
      }
    }
    var curve = [CurvePoint(queries: 0, kl: world.meanKL(preTable), heldOutLogLoss: logLoss(preTable, held))]
    let probs = preTable.exp()
    for _ in 0..<(config.budget / config.batchSize) {
      for _ in 0..<config.batchSize {
        let x = Int(rng.next() % UInt64(config.population.prompts))
        let candidates = probs[x].multinomial(config.candidates, replacement: false, generator: gen).toArray(Int.self)
        let shown = Array(candidates.prefix(config.population.candidates))
        queries.append(Query(prompt: x, shown: shown, choice: pop.answer(prompt: x, candidates: shown, rng: &rng).choice))
      }
      let k = config.population.candidates
      let seqs = world.sequences(prompts: queries.flatMap { q in Array(repeating: q.prompt, count: k) },
                                 responses: queries.flatMap(\.shown))
      let chosen = Tensor(queries.map { Int64($0.choice) })
      for _ in 0..<config.updateSteps {
        opt.zeroGrad()
        let loss = ChoiceLoss.compute(scores: rewards(seqs).reshaped([queries.count, k]), chosen: chosen).loss
        loss.backward()
        _ = opt.clipGradients(maxNorm: 1)
        opt.step()
      }
      let table = policyAfterUpdate()
      curve.append(CurvePoint(queries: queries.count, kl: world.meanKL(table), heldOutLogLoss: logLoss(table, held)))
    }
    return RunResult(rule: "baseline_rm_policy", seed: seed, curve: curve)
  }

  /// The pre-trained weights for a seed (pre-training on p_0 is shared by every rule of that seed).
  public func pretrained(seed: Int) -> [String: Tensor] {
    let model = world.makeModel(seed: UInt64(seed))
    world.pretrain(model)
    return model.stateDict().mapValues { $0.detached().clone() }
  }

  public var priorKL: Double {
    let m = (0..<config.population.prompts).map { world.population.prior(prompt: $0) }
    return world.population.meanKL(model: m)
  }
}
