import Alignment
import Foundation
import LM
import NN
import Torch
import Worlds

/// The configuration of `shatter experiment inclusive`; every field has a default that runs on two
/// cores in minutes.
/// Which epistemic head scores the model's features (METHODS §2).
public enum EpistemicKind: String, Codable, Sendable, CaseIterable { case epinet, ensemble }

/// How the model explains a person's choice (docs/INCLUSIVE.md).
public enum ChoiceModelKind: String, Codable, Sendable, CaseIterable {
  /// One Luce rule on log π_θ(y|x): misspecified for a population of several types.
  case luce
  /// A mixture of latent types: the response begins with a type token the model itself predicts, each type
  /// picks by its own Luce rule on log π_θ(y|x, m), weighted by π_θ(m|x); the policy is the marginal
  /// π_θ(y|x) = Σ_m π_θ(m|x) π_θ(y|x, m). Fitted to K ≥ 3-way choices its optimum is p*.
  case mixture
}

public struct InclusiveConfig: Codable, Sendable, Equatable {
  /// The default world is small enough that a few hundred pairwise choices carry real information
  /// **(choice)**: 2 prompts, responses of 2 tokens over 4 symbols (16 per prompt), 3 types of sharpness
  /// 1.5. Larger response spaces or sharper types need many more queries, because a single Luce model
  /// fitted to a mixture of types is misspecified (see docs/INCLUSIVE.md).
  public var population = PopulationConfig(prompts: 2, vocabulary: 4, length: 2, sharpness: 1.5)
  /// The choice model, and its number of latent types (mixture only).
  public var choiceModel = ChoiceModelKind.luce
  public var modelTypes = 3
  /// The small transformer that is at once policy, reward and transition function.
  public var layers = 2
  public var dModel = 32
  public var heads = 4
  /// Pre-training on p_0 by exact expected log-likelihood.
  public var pretrainSteps = 1000
  public var pretrainLearningRate = 1e-2
  /// Queries per run, and queries gathered between updates.
  public var budget = 240
  public var batchSize = 20
  /// Candidates sampled from the policy per query, before the rule picks K of them.
  public var candidates = 8
  /// Optimizer steps after each batch, on every query gathered so far.
  public var updateSteps = 20
  public var learningRate = 1e-3
  /// Every `holdOutEvery`-th answered query is kept out of the fit as validation **(choice)**: each update
  /// keeps the step (0 to `updateSteps`) whose choice log-loss on them is lowest, early stopping as a
  /// practitioner would with a validation split. 0: none (every query is fitted for `updateSteps` steps).
  public var holdOutEvery = 0
  /// μ, the weight of the prior term `μ · KL(π_pre ‖ π_θ)` in units of queries **(choice)**: the loss is
  /// `[Σ_i −log P_θ(choice_i) + μ · KL(π_pre‖π_θ)] / n`, a Bayesian prior centred on the pre-trained
  /// policy whose pull fades as the n recorded choices accumulate (METHODS §1.1's "μ · SFT on reference
  /// text" with the pre-trained model's own distribution as the reference, computed exactly).
  public var priorStrength = 50.0
  /// Epistemic head; index samples per example and per selection.
  public var epistemic = EpistemicKind.epinet
  public var indexSamples = 16
  public var priorScale = 1.0
  public var rules: [SelectionRule] = SelectionRule.allCases
  /// Seeds per rule: 20 by default, because queries-to-target is a noisy statistic. With 5 seeds the demo
  /// measured double TS at 0.72 of passive's queries; with 20 it measured 1.04 (docs/INCLUSIVE.md).
  public var seeds = 20
  /// Held-out population choices for the choice log-loss.
  public var heldOutQueries = 200
  /// The classic pipeline's KL-regularised policy update: π ∝ π_pre · exp(r / β).
  public var baselineBeta = 1.0
  /// The KL to reach; the passive rule's final KL when nil.
  public var targetKL: Double? = nil
  /// The natural-language world on a real chat model (`TextWorld`): the model's path, its LoRA adapter, and β of
  /// its length-normalised likelihood. Nil: the didactic world.
  public var model: String? = nil
  public var loraRank = 8
  public var loraAlpha = 16.0
  /// The adapter sits on the last `loraLayers` blocks (0: every block).
  public var loraLayers = 6
  public var textScale = 2.0

  public init() {}

  /// The METHODS-size world (V = 8, L = 3: 512 responses per prompt, 4 prompts) with the well-specified fit:
  /// a mixture of three types on three-way choices.
  public static var methods: InclusiveConfig {
    var c = InclusiveConfig()
    c.population = PopulationConfig(prompts: 4, vocabulary: 8, length: 3, sharpness: 2.0)
    c.population.candidates = 3
    c.choiceModel = .mixture
    c.holdOutEvery = 5
    return c
  }

  /// The natural-language world on the chat model at `model`: 4 questions × 8 answers, pairwise questions, a
  /// budget a real model fits in minutes on two cores.
  public static func text(model: String) -> InclusiveConfig {
    var c = InclusiveConfig()
    c.model = model
    c.population.candidates = 2
    c.budget = 20
    c.batchSize = 5
    c.updateSteps = 3
    c.learningRate = 1e-3
    c.priorStrength = 10
    c.seeds = 2
    c.heldOutQueries = 100
    c.rules = [.passive, .contrast, .expectedKL, .doubleThompson]
    return c
  }

  public func validate() throws {
    try population.validate()
    func need(_ ok: Bool, _ what: String) throws { if !ok { throw ExperimentError("config: \(what)") } }
    try need(budget > 0 && batchSize > 0 && budget % batchSize == 0, "budget must be a positive multiple of batch_size")
    try need(candidates >= population.candidates, "candidates must be at least population.candidates")
    try need(seeds > 0 && indexSamples > 1 && !rules.isEmpty, "seeds, index_samples (>1) and rules must be non-empty")
    try need(layers > 0 && dModel > 0 && heads > 0 && dModel % heads == 0, "model sizes must be positive, d_model divisible by heads")
    try need(modelTypes >= 1, "model_types must be at least 1")
    try need(holdOutEvery == 0 || (holdOutEvery >= 2 && batchSize >= holdOutEvery), "hold_out_every must be 0, or 2 to batch_size")
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
  /// The same held-out choices under the epistemic head's posterior predictive (rules only).
  public var heldOutPredictiveLogLoss: Double? = nil
}

/// One (rule, seed) run's curve.
public struct RunResult: Codable, Sendable {
  public let rule: String
  public let seed: Int
  public let curve: [CurvePoint]
}

/// The model one run fine-tunes: its trainable parameters, and what to do when the run ends.
struct RunModel {
  let model: any CausalLM
  let trainable: [(name: String, tensor: Tensor)]
  let end: () -> Void
}

/// What the feedback loop needs from a world: the population that answers, and the model's exact policy over
/// every prompt's finite response set. `InclusiveWorld` (METHODS' didactic tokens on a small transformer) and
/// `TextWorld` (natural-language answers on a real chat model) are the two.
protocol FeedbackWorld: AnyObject {
  var population: any ChoicePopulation { get }
  /// Latent types of the choice model (1: one Luce rule).
  var types: Int { get }
  /// The width of the features the epistemic head reads.
  var featureSize: Int { get }
  /// Whether runs may go on at once, one thread each (a shared real model runs one at a time).
  var concurrentRuns: Bool { get }
  /// Weights to start every run from, made once (nil: the world's model is its own starting point).
  func pretrain(seed: UInt64) -> [String: Tensor]?
  /// The model for one run, from `pretrained` (ignored when `pretrain` gave nil).
  func runModel(seed: UInt64, pretrained: [String: Tensor]) throws -> RunModel
  /// Per-type log π(y|x, m) [P, M, R], log π(m|x) [P, M] and the policy's marginal log π(y|x) [P, R].
  func tables(_ model: any CausalLM) -> (perType: Tensor, typeLog: Tensor, marginal: Tensor)
  /// The features of every response [P·R, D] (with gradients: the classic pipeline's reward head reads them).
  func features(_ model: any CausalLM) -> Tensor
  /// The tables and the features together (one pass where the world can).
  func snapshot(_ model: any CausalLM) -> Snapshot
  /// The world in a sentence or two, for the report.
  var summary: String { get }
  /// KL(p*‖p_0) of a pre-training prior; nil when the model itself is the prior.
  var priorKL: Double? { get }
  /// The asymptotic query-design bound, where the world has one.
  var designBound: QueryDesignBound? { get }
}

/// A model's tables and features at one moment (`FeedbackWorld.snapshot`).
struct Snapshot {
  let perType: Tensor, typeLog: Tensor, marginal: Tensor, features: Tensor
}

extension FeedbackWorld {
  /// The exact policy table log π(·|x) [P, R].
  func policyTable(_ model: any CausalLM) -> Tensor { tables(model).marginal }

  func meanKL(_ logTable: Tensor) -> Double {
    population.meanKL(model: (0..<population.prompts).map { logTable[$0].exp().toArray(Double.self) })
  }

  func snapshot(_ model: any CausalLM) -> Snapshot {
    let t = tables(model)
    return Snapshot(perType: t.perType, typeLog: t.typeLog, marginal: t.marginal, features: features(model))
  }
}

/// The shared world and model plumbing of the experiment: token layout, the exact policy table, scores.
///
/// With the Luce choice model a sequence is the prompt token (V + x) then the response tokens. With the
/// mixture, a type token (V + P + m) sits between them: the model predicts π(m|x) at the prompt and
/// π(y|x, m) after the type token, and its policy is the marginal over m.
final class InclusiveWorld: FeedbackWorld {
  let didactic: DidacticPopulation
  var population: any ChoicePopulation { didactic }
  let config: InclusiveConfig
  /// Latent types the model represents (1 for the Luce choice model).
  let types: Int
  /// All sequences [P·M·R, L+1+(M>1)], prompt-major, then type, then response.
  let allSequences: Tensor
  /// Every context that precedes a response's last token [P·M·V^(L−1), L+(M>1)]: one forward pass over these
  /// gives every response's log-probability, V times fewer rows (and one position fewer) than `allSequences`.
  let contexts: Tensor

  init(_ config: InclusiveConfig) throws {
    self.config = config
    didactic = try DidacticPopulation(config.population)
    let population = didactic
    types = config.choiceModel == .mixture ? config.modelTypes : 1
    let (p, r, v) = (config.population.prompts, population.responseCount, config.population.vocabulary)
    var ids: [Int64] = [], context: [Int64] = []
    for x in 0..<p {
      for m in 0..<types {
        let head = [Int64(v + x)] + (types > 1 ? [Int64(v + p + m)] : [])
        for y in 0..<r {
          let tokens = population.response(y).map { Int64($0) }
          ids += head + tokens
          if y % v == 0 { context += head + tokens.dropLast() }
        }
      }
    }
    allSequences = Tensor(ids, shape: [p * types * r, ids.count / (p * types * r)])
    contexts = Tensor(context, shape: [p * types * r / v, context.count / (p * types * r / v)])
  }

  var vocabulary: Int { config.population.vocabulary }
  /// Tokens before the response: the prompt, and the type token of a mixture.
  var prefix: Int { types > 1 ? 2 : 1 }

  func makeModel(seed: UInt64) -> any CausalLM {
    let extra = types > 1 ? types : 0
    let mc = ModelConfig(family: .gpt2, vocabSize: vocabulary + config.population.prompts + extra, hiddenSize: config.dModel,
                         layers: config.layers, heads: config.heads, maxPositions: config.population.length + prefix)
    return Checkpoint.makeModel(mc, generator: Generator(seed: seed))
  }

  func positions(_ n: Int, _ width: Int) -> Tensor {
    Tensor.arange(Double(width)).unsqueezed(dim: 0).expanded(to: [n, width])
  }

  /// The final hidden state at the last token of each sequence [N, prefix+L] → [N, D]: the features φ(x, y)
  /// the epistemic head and the classic pipeline's reward head read.
  func lastHidden(_ model: any CausalLM, _ sequences: Tensor) -> Tensor {
    let (n, width) = (sequences.size(0), sequences.size(1))
    return model.forward(sequences, positions: positions(n, width), attentionBias: nil, cache: nil).hidden
      .select(dim: 1, index: width - 1)
  }

  /// The policy from one forward pass over `contexts`: per-type log π(y|x, m) [P, M, R] with the next-token
  /// distribution restricted to response symbols **(choice)**, so that it sums to one over the enumerable
  /// response space; log π(m|x) [P, M] restricted to the type tokens (zeros for Luce); and the marginal
  /// log π(y|x) = logsumexp_m [P, R].
  func tables(_ model: any CausalLM) -> (perType: Tensor, typeLog: Tensor, marginal: Tensor) {
    let (p, r, v, l) = (config.population.prompts, population.responseCount, vocabulary, config.population.length)
    let (n, width) = (contexts.size(0), contexts.size(1))
    let logits = model.forward(contexts, positions: positions(n, width), attentionBias: nil, cache: nil).logits
    let lsm = logits.narrow(dim: 1, start: prefix - 1, length: l).narrow(dim: 2, start: 0, length: v).logSoftmax(dim: -1)
    // log π(y) = Σ_{j<L−1} log q_j(y_j | context) + log q_{L−1}(y_{L−1} | context): the context's tokens, then every last symbol.
    var lp = lsm.select(dim: 1, index: l - 1)
    if l > 1 {
      let known = lsm.narrow(dim: 1, start: 0, length: l - 1)
        .gather(dim: 2, index: contexts.narrow(dim: 1, start: prefix, length: l - 1).unsqueezed(dim: -1)).squeezed(dim: -1)
      lp = lp + known.sum(dim: 1).unsqueezed(dim: 1)
    }
    let perType = lp.reshaped([p, types, r])
    guard types > 1 else { return (perType, Tensor.zeros([p, 1], dtype: lp.dtype), perType.select(dim: 1, index: 0)) }
    // π(m|x) is predicted at the prompt, the same in every context of x: read it from each prompt's first row.
    let first = vocabulary + config.population.prompts
    let firstRows = Tensor((0..<p).map { Int64($0 * n / p) })
    let typeLog = logits.indexSelect(dim: 0, index: firstRows).select(dim: 1, index: 0).narrow(dim: 1, start: first, length: types)
      .logSoftmax(dim: -1)
    return (perType, typeLog, (perType + typeLog.unsqueezed(dim: 2)).logSumExp(dim: 1))
  }

  /// The features of every response, averaged over types [P·R, D] (what the epistemic head reads).
  func features(_ model: any CausalLM) -> Tensor {
    let (p, r) = (config.population.prompts, population.responseCount)
    return lastHidden(model, allSequences).reshaped([p, types, r, -1]).mean(dim: 1).reshaped([p * r, -1])
  }

  var featureSize: Int { config.dModel }
  var concurrentRuns: Bool { true }
  var priorKL: Double? { didactic.meanKL(model: (0..<didactic.prompts).map { didactic.prior(prompt: $0) }) }
  var designBound: QueryDesignBound? { didactic.queryDesignBound() }

  func runModel(seed: UInt64, pretrained: [String: Tensor]) throws -> RunModel {
    let model = makeModel(seed: seed)
    try model.load(stateDict: pretrained)
    return RunModel(model: model, trainable: model.trainableParameters(), end: {})
  }

  func pretrain(seed: UInt64) -> [String: Tensor]? {
    let model = makeModel(seed: seed)
    pretrain(model)
    return model.stateDict().mapValues { $0.detached().clone() }
  }

  var summary: String {
    let c = config.population
    return """
      A population of \(c.types) types (weights \(c.weights.map { String(format: "%.2f", $0) }.joined(separator: ", "))) \
      answers \(c.candidates)-way questions about \(c.prompts) prompts whose responses are \(c.length) tokens over \
      \(c.vocabulary) symbols. A \(config.layers)-layer transformer pre-trained on a prior biased towards the majority \
      type
      """
  }

  /// Pre-trains on the prior p_0 by minimising the exact expected negative log-likelihood of the policy
  /// (for a mixture, of its marginal: the types stay free to differ).
  func pretrain(_ model: any CausalLM) {
    let p0 = Tensor((0..<config.population.prompts).flatMap { didactic.prior(prompt: $0).map { Float($0) } },
                    shape: [config.population.prompts, didactic.responseCount])
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
  let world: any FeedbackWorld
  /// The classic pipeline's world: one Luce rule, whatever the choice model of the rules.
  let baselineWorld: any FeedbackWorld

  /// The didactic world, or with `chat` the natural-language one on that model (`TextWorld`).
  public init(config: InclusiveConfig, chat: ChatModel? = nil) throws {
    try config.validate()
    self.config = config
    if let chat {
      world = try TextWorld(chat: chat, config: config)
      baselineWorld = world
      return
    }
    let didactic = try InclusiveWorld(config)
    world = didactic
    var luce = config
    luce.choiceModel = .luce
    baselineWorld = config.choiceModel == .luce ? didactic : try InclusiveWorld(luce)
  }

  var population: any ChoicePopulation { world.population }

  /// Population choices on uniformly drawn candidate sets, for the held-out log-loss.
  func heldOut(seed: UInt64) -> [Query] {
    var rng = SplitMix64(seed: seed &+ 0xBEEF)
    let pop = world.population
    return (0..<config.heldOutQueries).map { _ in
      let x = Int(rng.next() % UInt64(pop.prompts))
      var shown: [Int] = []
      while shown.count < config.population.candidates {
        let y = Int(rng.next() % UInt64(pop.responseCount))
        if !shown.contains(y) { shown.append(y) }
      }
      return ask(x, shown, rng: &rng)
    }
  }

  /// The mean choice log-loss of `queries` under the model's own choice model, without the epistemic head:
  /// `perType` [P, M, R] (or a policy table [P, R]) and `typeLog` [P, M] for a mixture.
  func logLoss(_ perType: Tensor, typeLog: Tensor? = nil, _ queries: [Query]) -> Double {
    choiceLoss(scores: perType.reshaped([1, -1]), typeLog: typeLog, queries: queries).item()
  }

  func makeHead(seed: UInt64) -> any EpistemicHead {
    let g = Generator(seed: seed &+ 0xE9)
    return config.epistemic == .ensemble
      ? EnsembleHead(features: world.featureSize, count: config.indexSamples, priorScale: config.priorScale, generator: g)
      : Epinet(features: world.featureSize, priorScale: config.priorScale, generator: g)
  }

  /// log P(choice) of each query under each index sample [Z, n], where `scores` [Z, P·M·R] are the per-index
  /// scores of every sequence (M types, prompt-major) and `typeLog` [P, M] the types' log-weights (nil, or the
  /// zeros [P, 1] a one-type world's tables carry: the single Luce rule). Every query's candidates are sequences of the enumerable table, so one forward
  /// pass over the table scores all of them at once.
  func choiceLogProbabilities(scores: Tensor, typeLog: Tensor?, queries: [Query]) -> Tensor {
    let k = config.population.candidates, z = scores.size(0), n = queries.count
    let r = population.responseCount, types = typeLog?.size(1) ?? 1
    let index = Tensor(queries.flatMap { q in
      (0..<types).flatMap { m in q.shown.map { Int64((q.prompt * types + m) * r + $0) } }
    })
    let shown = scores.indexSelect(dim: 1, index: index).reshaped([z * n, types, k])
    let chosen = Tensor(queries.map { Int64($0.choice) }).unsqueezed(dim: 0).expanded(to: [z, n]).reshaped([-1])
    let logW = typeLog.map {
      $0.indexSelect(dim: 0, index: Tensor(queries.map { Int64($0.prompt) })).unsqueezed(dim: 0).expanded(to: [z, n, types])
        .reshaped([z * n, types])
    } ?? Tensor.zeros([z * n, 1], dtype: scores.dtype)
    return ChoiceLoss.chosenLogProbabilities(typeLogWeights: logW, scores: shown, chosen: chosen).reshaped([z, n])
  }

  /// −mean log P(choice) of `queries` over index samples (`choiceLogProbabilities`).
  func choiceLoss(scores: Tensor, typeLog: Tensor?, queries: [Query]) -> Tensor {
    -choiceLogProbabilities(scores: scores, typeLog: typeLog, queries: queries).mean()
  }

  /// The per-index scores of every sequence [Z, P·M·R]: each type's log π(y|x, m) plus the head's perturbation of
  /// the response (the same for every type).
  func headScores(_ perType: Tensor, features: Tensor, head: any EpistemicHead, indices: Tensor) -> Tensor {
    let (p, r) = (population.prompts, population.responseCount)
    let perturbation = head.perturbation(features: features, indices: indices).reshaped([-1, p, 1, r])
    return (perType.unsqueezed(dim: 0) + perturbation).reshaped([indices.size(0), -1])
  }

  /// The held-out choice log-loss of the epistemic model's posterior predictive, −mean log E_z P_z(choice): how
  /// well calibrated the head's spread is (below the plain model's log-loss when it is).
  func predictiveLogLoss(_ t: Snapshot, head: any EpistemicHead, queries: [Query], generator: Generator) -> Double {
    withoutGradients {
      let z = head.sampleIndices(config.indexSamples, generator: generator)
      let lp = choiceLogProbabilities(scores: headScores(t.perType, features: t.features, head: head, indices: z),
                                      typeLog: t.typeLog, queries: queries)
      return -(lp.logSumExp(dim: 0) - Foundation.log(Double(z.size(0)))).mean().item()
    }
  }

  /// The choice loss plus the prior term μ/n · KL(π_pre ‖ π) of the implied policy `table` [P, R]
  /// (log-probabilities).
  func feedbackLoss(scores: Tensor, typeLog: Tensor? = nil, table: Tensor, preTable: Tensor, queries: [Query]) -> Tensor {
    let loss = choiceLoss(scores: scores, typeLog: typeLog, queries: queries)
    guard config.priorStrength > 0 else { return loss }
    let kl = (preTable.exp() * (preTable - table)).sum(dim: 1).mean()
    return loss + kl * (config.priorStrength / Double(queries.count))
  }

  /// Runs `updateSteps` optimizer steps of `loss`, stopping on a non-finite value. When `loss` also returns a
  /// validation loss (computed from the same forward pass), the parameters `keep` end at the step, 0 to
  /// `updateSteps`, where it was lowest.
  func fit(_ opt: AdamW, queries: Int, keep: [Tensor] = [], _ loss: () -> (Tensor, validation: Double?)) throws {
    var best = Double.infinity, snapshot: [Tensor]? = nil
    for step in 0..<(config.updateSteps + (keep.isEmpty ? 0 : 1)) {
      opt.zeroGrad()
      let (l, validation) = loss()
      let value = l.item()
      guard value.isFinite else { throw NonFiniteError(step: queries, metric: "choice loss", value: value) }
      if let validation, validation < best {
        best = validation
        snapshot = keep.map { $0.detached().clone() }
      }
      if step == config.updateSteps { break }
      l.backward()
      _ = opt.clipGradients(maxNorm: 1)
      opt.step()
    }
    if let snapshot { withoutGradients { for (p, s) in zip(keep, snapshot) { p.copy_(s) } } }
  }

  /// Files an answer: every `holdOutEvery`-th answered query goes to validation, the rest to the fit.
  func record(_ answer: Query, fit: inout [Query], validation: inout [Query]) {
    let asked = fit.count + validation.count + 1
    if config.holdOutEvery > 0 && asked % config.holdOutEvery == 0 { validation.append(answer) } else { fit.append(answer) }
  }

  /// A simulated person answers a question about prompt x showing `shown`.
  func ask(_ x: Int, _ shown: [Int], rng: inout SplitMix64) -> Query {
    Query(prompt: x, shown: shown, choice: population.answer(prompt: x, candidates: shown, rng: &rng).choice)
  }

  /// One feedback loop: select → a simulated person chooses → update the model with the choice
  /// likelihood jointly with the epistemic head; KL(p*‖π) and held-out log-loss after every batch.
  public func run(rule: SelectionRule, seed: Int, pretrained: [String: Tensor]) throws -> RunResult {
    let s = UInt64(seed)
    let run = try world.runModel(seed: s, pretrained: pretrained)
    defer { run.end() }
    let model = run.model
    let head = makeHead(seed: s)
    let opt = AdamW(run.trainable + head.trainableParameters().map { ("head." + $0.name, $0.tensor) },
                    learningRate: config.learningRate, weightDecay: 0)
    let gen = Generator(seed: s &+ 0x5A)
    var rng = SplitMix64(seed: s &* 7919 &+ UInt64(SelectionRule.allCases.firstIndex(of: rule)!))
    let held = heldOut(seed: s)
    let (p, r) = (population.prompts, population.responseCount)
    var queries: [Query] = [], validation: [Query] = []
    let evaluation = Generator(seed: s &+ 0xCA1)
    func point(_ t: Snapshot, _ asked: Int) -> CurvePoint {
      CurvePoint(queries: asked, kl: world.meanKL(t.marginal), heldOutLogLoss: logLoss(t.perType, typeLog: t.typeLog, held),
                 heldOutPredictiveLogLoss: predictiveLogLoss(t, head: head, queries: held, generator: evaluation))
    }
    // The model's tables and features, taken once after each update: for the curve, and for the next batch's questions.
    var now = withoutGradients { world.snapshot(model) }
    let preTable = now.marginal
    var curve = [point(now, 0)]
    let keep = config.holdOutEvery > 0 ? (run.trainable + head.trainableParameters()).map(\.tensor) : []
    for _ in 0..<(config.budget / config.batchSize) {
      // Ask a batch of questions chosen by the rule among samples of the current policy.
      let (table, phi) = (now.marginal, now.features)
      let probs = table.exp()
      for _ in 0..<config.batchSize {
        let x = Int(rng.next() % UInt64(p))
        let candidates = probs[x].multinomial(config.candidates, replacement: false, generator: gen).toArray(Int.self)
        var space: ResponseSpaceSamples? = nil
        let samples: [[Double]] = withoutGradients {
          let z = head.sampleIndices(config.indexSamples, generator: gen)
          guard rule == .expectedKL else {
            let rows = Tensor(candidates.map { Int64(x * r + $0) })
            let scores = table[x].indexSelect(dim: 0, index: Tensor(candidates.map { Int64($0) })).unsqueezed(dim: 0)
              + head.perturbation(features: phi.indexSelect(dim: 0, index: rows), indices: z)
            return (0..<config.indexSamples).map { scores[$0].toArray(Double.self) }
          }
          // The posterior over the prompt's whole response space: what the expected KL is taken over.
          let all = table[x].unsqueezed(dim: 0) + head.perturbation(features: phi.narrow(dim: 0, start: x * r, length: r), indices: z)
          let rows = (0..<config.indexSamples).map { all[$0].toArray(Double.self) }
          space = ResponseSpaceSamples(scores: rows, policy: table[x].toArray(Double.self), candidates: candidates)
          return rows.map { row in candidates.map { row[$0] } }
        }
        let picked = QuerySelection.select(rule, samples: samples, k: config.population.candidates, space: space, rng: &rng)
        record(ask(x, picked.map { candidates[$0] }, rng: &rng), fit: &queries, validation: &validation)
      }
      // Fit the model's own likelihood (plus the head's perturbation, the same for every type of a response)
      // to every choice so far. The head reads the features of this batch's model: they are stop-gradient,
      // and one full pass per batch instead of one per step keeps each step to the `contexts` pass.
      try fit(opt, queries: queries.count, keep: keep) {
        let t = world.tables(model)
        let scores = headScores(t.perType, features: phi, head: head, indices: head.sampleIndices(config.indexSamples, generator: gen))
        var loss = feedbackLoss(scores: scores, typeLog: t.typeLog, table: t.marginal, preTable: preTable, queries: queries)
        if let reg = head.regularizer(dataSize: queries.count) { loss = loss + reg }
        return (loss, keep.isEmpty ? nil : withoutGradients { logLoss(t.perType, typeLog: t.typeLog, validation) })
      }
      now = withoutGradients { world.snapshot(model) }
      curve.append(point(now, queries.count + validation.count))
    }
    return RunResult(rule: rule.rawValue, seed: seed, curve: curve)
  }

  /// The classic pipeline on passive queries from the pre-trained policy: a separate reward model (the
  /// pre-trained transformer with a zero-initialised scalar head on its last hidden state) trained with
  /// the choice loss and the same prior term on the policy it implies, then the exact KL-regularised
  /// policy update π(y|x) ∝ π_pre(y|x)·exp(r(x, y)/β) over the enumerable response space.
  public func runBaseline(seed: Int, pretrained: [String: Tensor]) throws -> RunResult {
    let s = UInt64(seed), bw = baselineWorld
    let (p, r) = (population.prompts, population.responseCount)
    // The reward model starts as the pre-trained model (its table before any update is π_pre's).
    let run = try bw.runModel(seed: s, pretrained: pretrained)
    defer { run.end() }
    let rmLM = run.model
    let preTable = withoutGradients { bw.policyTable(rmLM) }
    let rm = RewardModel(lm: rmLM)
    withoutGradients { rm.score.weight.zero_() }
    let opt = AdamW(run.trainable + [("score.weight", rm.score.weight)], learningRate: config.learningRate, weightDecay: 0)
    let gen = Generator(seed: s &+ 0x5A)
    var rng = SplitMix64(seed: s &* 7919)
    let held = heldOut(seed: s)
    var queries: [Query] = []
    func rewards() -> Tensor { rm.score(bw.features(rmLM)).reshaped([1, p * r]) }
    func updatedPolicy(_ rewards: Tensor) -> Tensor { (preTable + rewards.reshaped([p, r]) / config.baselineBeta).logSoftmax(dim: 1) }
    var curve = [CurvePoint(queries: 0, kl: bw.meanKL(preTable), heldOutLogLoss: logLoss(preTable, held))]
    let probs = preTable.exp()
    var validation: [Query] = []
    let keep = config.holdOutEvery > 0 ? (run.trainable.map(\.tensor) + [rm.score.weight]) : []
    for _ in 0..<(config.budget / config.batchSize) {
      for _ in 0..<config.batchSize {
        let x = Int(rng.next() % UInt64(p))
        let candidates = probs[x].multinomial(config.candidates, replacement: false, generator: gen).toArray(Int.self)
        record(ask(x, Array(candidates.prefix(config.population.candidates)), rng: &rng), fit: &queries, validation: &validation)
      }
      try fit(opt, queries: queries.count, keep: keep) {
        let r = rewards()
        let policy = updatedPolicy(r)
        return (feedbackLoss(scores: r, table: policy, preTable: preTable, queries: queries),
                keep.isEmpty ? nil : withoutGradients { logLoss(r, validation) })
      }
      let table = withoutGradients { updatedPolicy(rewards()) }
      curve.append(CurvePoint(queries: queries.count + validation.count, kl: bw.meanKL(table), heldOutLogLoss: logLoss(table, held)))
    }
    return RunResult(rule: "baseline_rm_policy", seed: seed, curve: curve)
  }

  /// KL(p*‖π) of the model a run starts from.
  public func meanKL(_ weights: [String: Tensor]) throws -> Double {
    let run = try world.runModel(seed: 0, pretrained: weights)
    defer { run.end() }
    return world.meanKL(withoutGradients { world.policyTable(run.model) })
  }

  /// The weights every rule and seed starts from (pre-training on p_0 is shared); `baseline`: those of the
  /// classic pipeline's single-Luce layout, which differs from the rules' when they fit a mixture. Nil when
  /// the world's model is its own starting point (a real model).
  public func pretrained(seed: Int, baseline: Bool = false) -> [String: Tensor]? {
    (baseline ? baselineWorld : world).pretrain(seed: UInt64(seed))
  }

  /// Whether the classic pipeline needs pre-trained weights of its own (the rules fit a mixture).
  public var baselineHasOwnLayout: Bool { world.types != baselineWorld.types }

  /// Whether runs may go on at once (a shared real model runs them one at a time).
  public var concurrentRuns: Bool { world.concurrentRuns }

  /// KL(p*‖p_0) of the didactic pre-training prior; nil for a real model (its own distribution is the prior).
  public var priorKL: Double? { world.priorKL }

  /// The world's asymptotic query-design bound (the didactic world with K = 2 only).
  var designBound: QueryDesignBound? { world.designBound }

  var worldSummary: String { world.summary }
}
