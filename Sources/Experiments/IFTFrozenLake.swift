import Alignment
import Foundation
import LM
import NN
import Torch
import Worlds

/// IFT's Frozen Lake check (Hua et al. 2024 §5.3; METHODS §4): a small causal LM over trajectories
/// (state and action tokens) starts from a near-uniform policy and is fine-tuned on one optimal
/// trajectory (SFT, IFT) or on the optimal one preferred to a sub-optimal one (DPO, ORPO); the score is the
/// mean squared error between its state→action probability matrix and the optimal one from value
/// iteration. `shatter experiment ift-frozenlake`.
public struct IFTFrozenLakeConfig: Codable, Sendable, Equatable {
  /// The map: exactly one shortest route from S to G and one longer one (checked).
  public var map = IFTFrozenLake.defaultMap
  public var seeds = 5
  /// Steps of SFT on random walks that make the starting policy (near uniform over actions).
  public var pretrainSteps = 300
  /// Fine-tuning steps, shared by every method.
  public var steps = 200
  /// The learning rate every method shares (AdamW, constant): the one at which SFT improves on the
  /// starting policy rather than overwriting it (larger rates drive every state's action to the
  /// demonstration's "right"; see the learning-rate sweep).
  public var learningRate = 1e-4
  /// The four methods are also run at these rates: how the ranking depends on the rate.
  public var sweepLearningRates = [3e-4, 1e-3]
  /// The MSE is measured every this many steps.
  public var evalEvery = 10
  /// IFT's λ and γ (METHODS §4 defaults), DPO's β, ORPO's λ (METHODS §7).
  public var lambda = 0.2
  public var gamma = 0.95
  public var dpoBeta = 0.1
  public var orpoLambda = 0.1
  /// The IFT settings swept beside the default (λ × γ).
  public var sweepLambdas = [0.05, 0.2, 0.5]
  public var sweepGammas = [0.0, 0.5, 0.95]
  /// The discount that makes the shorter route optimal.
  public var discount = 0.9
  /// The policy network: a GPT-2 of this width and depth.
  public var hiddenSize = 32
  public var layers = 1

  public init() {}
}

/// One fine-tuning run: a method (or a sweep point) from one seed's starting policy.
public struct IFTFrozenLakeRun: Codable, Sendable {
  public let method: String
  public let seed: Int
  /// (step, MSE) from step 0 (the starting policy) on.
  public let curve: [[Double]]
  public let finalMSE: Double
  /// π(a | s) at the end, [state][action] over the map's states (terminal ones all zero).
  public let policy: [[Double]]
}

public struct IFTFrozenLakeMethodSummary: Codable, Sendable {
  public let finalMSE: Interval
  public let curve: [Interval]
  public let steps: [Int]
}

public struct IFTFrozenLakeSummary: Codable, Sendable {
  public let methods: [String: IFTFrozenLakeMethodSummary]
  /// The four methods from lowest final MSE to highest (their means).
  public let ranking: [String]
  /// IFT's sweep: final MSE per "λ=…,γ=…".
  public let sweep: [String: Interval]
  /// The four methods' final MSE at the swept learning rates, and their ranking there.
  public let byLearningRate: [String: [String: Interval]]
  /// Each method's final MSE minus SFT's from the same starting policy (per seed, then over seeds): the
  /// paired comparison, tighter than the two intervals side by side.
  public let minusSFT: [String: Interval]
  public let rankingByLearningRate: [String: [String]]
  public let startMSE: Interval
  public let seeds: Int
  public let seconds: Double
}

public enum IFTFrozenLake {
  /// S, a three-step route right along the top row to G, and a seven-step detour round the holes.
  public static let defaultMap = ["SFFG", "FHHF", "FFFF"]
  public static let methods = ["sft", "ift", "dpo", "orpo"]

  // Tokens: BOS, EOS, then one per state, then one per action (left, down, right, up).
  static let bos = 0, eos = 1
  static func stateToken(_ s: Int) -> Int { 2 + s }
  static func actionToken(_ a: Int, states: Int) -> Int { 2 + states + a }

  /// The optimal state→action probabilities: uniform over the actions whose Q (value iteration with
  /// `discount`) is within 1e-9 of the best; zero rows for holes and the goal.
  public static func optimalPolicy(_ game: FrozenLake, discount: Double) -> [[Double]] {
    let v = game.valueIteration(discount: discount, tolerance: 1e-12).values
    return (0..<game.map.stateCount).map { s in
      guard !isTerminal(game, s) else { return [0, 0, 0, 0] }
      let q = (0..<4).map { a in game.transitions[s][a].reduce(0) { $0 + $1.probability * ($1.reward + (($1.terminated) ? 0 : discount * v[$1.next])) } }
      let best = q.max()!
      let ties = q.map { $0 >= best - 1e-9 }
      let n = Double(ties.filter { $0 }.count)
      return ties.map { $0 ? 1 / n : 0 }
    }
  }

  static func isTerminal(_ game: FrozenLake, _ s: Int) -> Bool { "HG".contains(game.map.tiles[s]) }

  /// Mean of (π(a|s) − π*(a|s))² over the non-terminal states and the four actions.
  public static func mse(_ policy: [[Double]], _ optimal: [[Double]], game: FrozenLake) -> Double {
    var total = 0.0, n = 0
    for s in 0..<game.map.stateCount where !isTerminal(game, s) {
      for a in 0..<4 { total += (policy[s][a] - optimal[s][a]) * (policy[s][a] - optimal[s][a]); n += 1 }
    }
    return total / Double(max(n, 1))
  }

  /// Where each state's action is read: the prefix of the optimal trajectory that ends at it when it lies
  /// on the optimal route, else the sub-optimal trajectory's, else [BOS, s] (a start there); nil for holes
  /// and the goal.
  static func contexts(_ game: FrozenLake, optimal: TokenSequence, suboptimal: TokenSequence) -> [[Int]?] {
    func prefixes(_ t: TokenSequence) -> [Int: [Int]] {
      var out: [Int: [Int]] = [:]
      let tokens = t.tokens
      for i in 1..<tokens.count where tokens[i] >= 2 && tokens[i] < 2 + game.map.stateCount {
        let s = tokens[i] - 2
        if out[s] == nil { out[s] = Array(tokens[...i]) }
      }
      return out
    }
    let a = prefixes(optimal), b = prefixes(suboptimal)
    return (0..<game.map.stateCount).map { s in isTerminal(game, s) ? nil : (a[s] ?? b[s] ?? [bos, stateToken(s)]) }
  }

  /// The policy network's π(a | s): its next-token distribution after the state's context, renormalised
  /// over the four action tokens.
  static func policy(_ model: any CausalLM, contexts: [[Int]?], states: Int) -> [[Double]] {
    let actions = Tensor((0..<4).map { actionToken($0, states: states) })
    return contexts.map { c in
      guard let c else { return [0, 0, 0, 0] }
      let logits = withoutGradients { model(Tensor(c, shape: [1, c.count])).select(dim: 1, index: c.count - 1).to(.float64) }
      return logits.indexSelect(dim: 1, index: actions).softmax(dim: -1).toArray(Double.self)
    }
  }

  /// The trajectory of `actions` from the start as a sequence: [BOS, s0] then (action, state)… then EOS.
  static func trajectory(_ actions: [FrozenLake.Action], game: FrozenLake) -> TokenSequence {
    var g = game
    _ = g.reset(seed: 0)
    let states = game.map.stateCount
    var response: [Int] = []
    let start = g.state
    for a in actions {
      _ = g.step(a)
      response += [actionToken(a.rawValue, states: states), stateToken(g.state)]
    }
    return TokenSequence(prompt: [bos, stateToken(start)], response: response + [eos])
  }

  /// The map's two simple routes from S to G, shortest first; an error unless there are exactly two.
  static func routes(_ game: FrozenLake) throws -> [[FrozenLake.Action]] {
    let start = game.map.tiles.firstIndex(of: "S")!
    var found: [[FrozenLake.Action]] = []
    func walk(_ s: Int, _ path: [FrozenLake.Action], _ seen: Set<Int>) {
      if game.map.tiles[s] == "G" { found.append(path); return }
      if game.map.tiles[s] == "H" { return }
      for a in FrozenLake.Action.allCases {
        let next = game.transitions[s][a.rawValue][0].next
        if !seen.contains(next) { walk(next, path + [a], seen.union([next])) }
      }
    }
    walk(start, [], [start])
    let sorted = found.sorted { $0.count < $1.count }
    guard sorted.count == 2, sorted[0].count < sorted[1].count else {
      throw ExperimentError("the map needs exactly one shortest and one longer route from S to G without revisits "
        + "(it has \(sorted.count): lengths \(sorted.map(\.count)))")
    }
    return sorted
  }

  /// Random walks from every non-terminal start state (random actions until a hole, the goal or 12 steps):
  /// the pre-training data, whose action distribution is uniform.
  static func randomWalks(_ game: FrozenLake, count: Int, seed: UInt64) -> [TokenSequence] {
    var rng = SplitMix64(seed: seed ^ 0x1F7)
    let states = game.map.stateCount
    let starts = (0..<states).filter { !isTerminal(game, $0) }
    return (0..<count).map { i in
      var s = starts[i % starts.count]
      var response: [Int] = []
      for _ in 0..<12 {
        let a = Int(rng.next() % 4)
        let t = game.transitions[s][a][0]
        response += [actionToken(a, states: states), stateToken(t.next)]
        s = t.next
        if t.terminated { break }
      }
      return TokenSequence(prompt: [bos, stateToken(starts[i % starts.count])], response: response + [eos])
    }
  }

  static func makeModel(_ c: IFTFrozenLakeConfig, states: Int, seed: UInt64) -> any CausalLM {
    Checkpoint.makeModel(ModelConfig(family: .gpt2, vocabSize: 2 + states + 4, hiddenSize: c.hiddenSize, layers: c.layers,
                                     heads: 2, maxPositions: 32), generator: Generator(seed: seed &+ 0x5EED))
  }

  static func copy(_ model: any CausalLM) -> any CausalLM {
    let c = Checkpoint.frozenCopy(of: model)
    c.setRequiresGrad(true)
    return c
  }

  /// Runs every method and sweep point for every seed (each run saved under runs/ as it finishes, so an
  /// interrupted experiment resumes with the runs it has) and writes metrics.jsonl, summary.json,
  /// report.md, mse.svg and policies.svg.
  public static func run(_ config: IFTFrozenLakeConfig, out: URL, progress: @escaping (String) -> Void = { _ in })
    throws -> IFTFrozenLakeSummary
  {
    let started = Date()
    let game = try FrozenLake(map: try FrozenLakeMap(config.map), isSlippery: false, stepLimit: .unlimited)
    let (best, worse) = try { let r = try routes(game); return (r[0], r[1]) }()
    let optimal = optimalPolicy(game, discount: config.discount)
    let fm = FileManager.default
    let runsDir = out.appendingPathComponent("runs")
    try fm.createDirectory(at: runsDir, withIntermediateDirectories: true)
    // Run files keep Swift's key names (decoded back on resume); reports use snake case.
    let runCoder = (JSONEncoder(), JSONDecoder())
    runCoder.0.outputFormatting = [.sortedKeys]
    try ExperimentFiles.claim(out, config: config)

    let chosen = trajectory(best, game: game), rejected = trajectory(worse, game: game)
    let reads = contexts(game, optimal: chosen, suboptimal: rejected)
    let n = game.map.stateCount
    let sweep = config.sweepLambdas.flatMap { l in config.sweepGammas.map { g in (l, g) } }
    func sweepName(_ l: Double, _ g: Double) -> String { "ift(λ=\(l),γ=\(g))" }
    let names = methods + sweep.map { sweepName($0.0, $0.1) }
      + config.sweepLearningRates.flatMap { lr in methods.map { "\($0)@lr=\(lr)" } }
    var runs: [IFTFrozenLakeRun] = []
    for seed in 0..<config.seeds {
      let pending = names.filter { !fm.fileExists(atPath: runsDir.appendingPathComponent("\($0)-seed\(seed).json").path) }
      for name in names where !pending.contains(name) {
        runs.append(try runCoder.1.decode(IFTFrozenLakeRun.self,
                                       from: Data(contentsOf: runsDir.appendingPathComponent("\(name)-seed\(seed).json"))))
      }
      guard !pending.isEmpty else { continue }
      // The seed's starting policy: SFT on random walks from a seeded initialisation.
      let start = makeModel(config, states: game.map.stateCount, seed: UInt64(seed))
      var pre = TrainerOptions()
      pre.steps = config.pretrainSteps
      pre.batchSize = 32
      pre.learningRate = 3e-3
      pre.schedule = .constant
      pre.seed = UInt64(seed)
      _ = try Trainer(model: start, method: SFTMethod(padId: eos), examples: randomWalks(game, count: 512, seed: UInt64(seed)),
                      options: pre).train()
      for full in pending {
        let parts = full.split(separator: "@")
        let name = String(parts[0])
        let lr = parts.count > 1 ? Double(parts[1].dropFirst(3))! : config.learningRate
        let model = copy(start)
        var o = TrainerOptions()
        o.steps = config.steps
        o.batchSize = 1
        o.learningRate = lr
        o.schedule = .constant
        o.seed = UInt64(seed) &+ 0x77
        var curve: [[Double]] = [[0, mse(policy(model, contexts: reads, states: n), optimal, game: game)]]
        let record = { (log: StepLog) in
          if log.step % config.evalEvery == 0 || log.step == config.steps {
            curve.append([Double(log.step), mse(policy(model, contexts: reads, states: n), optimal, game: game)])
          }
        }
        switch name {
        case "sft": _ = try Trainer(model: model, method: SFTMethod(padId: eos), examples: [chosen], options: o).train(progress: record)
        case "ift":
          _ = try Trainer(model: model, method: IFTMethod(padId: eos, lambda: config.lambda, gamma: config.gamma, seed: UInt64(seed)),
                          examples: [chosen], options: o).train(progress: record)
        case "dpo":
          let pairs = ReferencedPair.precompute([PairExample(chosen: chosen, rejected: rejected)], reference: start, padId: eos)
          _ = try Trainer(model: model, method: DPOMethod(padId: eos, beta: config.dpoBeta), examples: pairs, options: o)
            .train(progress: record)
        case "orpo":
          _ = try Trainer(model: model, method: ORPOMethod(padId: eos, lambda: config.orpoLambda),
                          examples: [PairExample(chosen: chosen, rejected: rejected)], options: o).train(progress: record)
        default:
          let (l, g) = sweep.first { sweepName($0.0, $0.1) == name }!
          _ = try Trainer(model: model, method: IFTMethod(padId: eos, lambda: l, gamma: g, seed: UInt64(seed)), examples: [chosen],
                          options: o).train(progress: record)
        }
        let final = policy(model, contexts: reads, states: n)
        let r = IFTFrozenLakeRun(method: full, seed: seed, curve: curve, finalMSE: mse(final, optimal, game: game), policy: final)
        try runCoder.0.encode(r).write(to: runsDir.appendingPathComponent("\(full)-seed\(seed).json"), options: .atomic)
        runs.append(r)
        progress(String(format: "seed %d %@: MSE %.4f → %.4f", seed, full, curve[0][1], r.finalMSE))
      }
    }
    let summary = summarize(runs, config: config, names: names, seconds: Date().timeIntervalSince(started))
    try write(summary, runs: runs, config: config, game: game, optimal: optimal, routes: (best, worse), to: out)
    return summary
  }

  static func summarize(_ runs: [IFTFrozenLakeRun], config: IFTFrozenLakeConfig, names: [String], seconds: Double)
    -> IFTFrozenLakeSummary
  {
    var methods: [String: IFTFrozenLakeMethodSummary] = [:], sweep: [String: Interval] = [:]
    var byRate: [String: [String: Interval]] = [:]
    for name in names {
      let mine = runs.filter { $0.method == name }.sorted { $0.seed < $1.seed }
      guard let first = mine.first else { continue }
      let steps = first.curve.map { Int($0[0]) }
      let curve = steps.indices.map { i in Interval(mine.map { $0.curve[i][1] }) }
      if self.methods.contains(name) {
        methods[name] = IFTFrozenLakeMethodSummary(finalMSE: Interval(mine.map(\.finalMSE)), curve: curve, steps: steps)
      } else if let at = name.range(of: "@lr=") {
        byRate[String(name[at.upperBound...]), default: [:]][String(name[..<at.lowerBound])] = Interval(mine.map(\.finalMSE))
      } else {
        sweep[name] = Interval(mine.map(\.finalMSE))
      }
    }
    let ranking = self.methods.filter { methods[$0] != nil }.sorted { methods[$0]!.finalMSE.mean < methods[$1]!.finalMSE.mean }
    var byRateRanking = byRate.mapValues { m in m.keys.sorted { m[$0]!.mean < m[$1]!.mean } }
    byRate["\(config.learningRate)"] = methods.mapValues(\.finalMSE)
    byRateRanking["\(config.learningRate)"] = ranking
    let start = Interval(runs.filter { $0.method == "sft" }.map { $0.curve[0][1] })
    let sft = Dictionary(uniqueKeysWithValues: runs.filter { $0.method == "sft" }.map { ($0.seed, $0.finalMSE) })
    var minusSFT: [String: Interval] = [:]
    for m in self.methods where m != "sft" {
      let d = runs.filter { $0.method == m }.compactMap { r in sft[r.seed].map { r.finalMSE - $0 } }
      if !d.isEmpty { minusSFT[m] = Interval(d) }
    }
    return IFTFrozenLakeSummary(methods: methods, ranking: ranking, sweep: sweep, byLearningRate: byRate, minusSFT: minusSFT,
                                rankingByLearningRate: byRateRanking, startMSE: start, seeds: config.seeds, seconds: seconds)
  }

  static func write(_ s: IFTFrozenLakeSummary, runs: [IFTFrozenLakeRun], config: IFTFrozenLakeConfig, game: FrozenLake,
                    optimal: [[Double]], routes: ([FrozenLake.Action], [FrozenLake.Action]), to out: URL) throws {
    try ExperimentFiles.writeMetrics(runs.sorted(by: { ($0.method, $0.seed) < ($1.method, $1.seed) }).flatMap { r in
      r.curve.map { ["method": r.method, "seed": r.seed, "step": Int($0[0]), "mse": $0[1]] as [String: Any] }
    }, to: out)
    try ExperimentFiles.writeSummary(s, to: out)
    let series = methods.compactMap { m in
      s.methods[m].map { Plots.Series(name: m, x: $0.steps.map(Double.init), mean: $0.curve.map(\.mean), low: $0.curve.map(\.low),
                                      high: $0.curve.map(\.high)) }
    }
    try Data(Plots.bands(title: "Frozen Lake: MSE to the optimal policy vs fine-tuning step (mean, 95% band over \(s.seeds) seeds)",
                         xLabel: "fine-tuning step", yLabel: "MSE(π, π*)", series, yFormat: "%.3f").utf8)
      .write(to: out.appendingPathComponent("mse.svg"), options: .atomic)
    var panels: [(String, [[Double]])] = [("optimal π*", optimal)]
    for m in methods {
      let mine = runs.filter { $0.method == m }
      guard !mine.isEmpty else { continue }
      panels.append((m, (0..<game.map.stateCount).map { st in (0..<4).map { a in mine.map { $0.policy[st][a] }.reduce(0, +) / Double(mine.count) } }))
    }
    try Data(Plots.policyGrids(title: "Final policies on the map (mean over seeds): P(optimal action) as colour, the likeliest action as an arrow",
                               rows: game.map.rowCount, columns: game.map.columnCount, tiles: game.map.tiles, optimal: optimal,
                               panels: panels).utf8)
      .write(to: out.appendingPathComponent("policies.svg"), options: .atomic)
    try Data(report(s, config: config, routes: routes).utf8).write(to: out.appendingPathComponent("report.md"), options: .atomic)
  }

  /// The results as Markdown: the four methods, then IFT's sweep.
  public static func table(_ s: IFTFrozenLakeSummary, config: IFTFrozenLakeConfig) -> String {
    var t = "| method | final MSE (95% CI) | minus SFT's, paired by seed (95% CI) | rank |\n|---|---|---|---|\n"
    t += String(format: "| starting policy | %.4f (%.4f–%.4f) | | |\n", s.startMSE.mean, s.startMSE.low, s.startMSE.high)
    for m in methods {
      guard let r = s.methods[m] else { continue }
      let paired = s.minusSFT[m].map { String(format: "%+.4f (%+.4f…%+.4f)", $0.mean, $0.low, $0.high) } ?? ""
      t += String(format: "| %@ | %.4f (%.4f–%.4f) | %@ | %d |\n", m, r.finalMSE.mean, r.finalMSE.low, r.finalMSE.high,
                  paired, (s.ranking.firstIndex(of: m) ?? 0) + 1)
    }
    let rates = ([config.learningRate] + config.sweepLearningRates).map { "\($0)" }.filter { s.byLearningRate[$0] != nil }
    if rates.count > 1 {
      t += "\nBy learning rate (final MSE; ranking lowest first):\n\n| learning rate |" + methods.map { " \($0) |" }.joined()
        + " ranking |\n|---|" + methods.map { _ in "---|" }.joined() + "---|\n"
      for r in rates {
        t += "| \(r) |"
        for m in methods { t += s.byLearningRate[r]?[m].map { String(format: " %.4f (%.4f–%.4f) |", $0.mean, $0.low, $0.high) } ?? " |" }
        t += " \((s.rankingByLearningRate[r] ?? []).joined(separator: " < ")) |\n"
      }
    }
    if !s.sweep.isEmpty {
      t += "\nIFT's sweep (final MSE, 95% CI):\n\n| λ \\ γ |" + config.sweepGammas.map { " \($0) |" }.joined() + "\n|---|"
        + config.sweepGammas.map { _ in "---|" }.joined() + "\n"
      for l in config.sweepLambdas {
        t += "| \(l) |"
        for g in config.sweepGammas {
          if let r = s.sweep["ift(λ=\(l),γ=\(g))"] { t += String(format: " %.4f (%.4f–%.4f) |", r.mean, r.low, r.high) } else { t += " |" }
        }
        t += "\n"
      }
    }
    return t
  }

  static func report(_ s: IFTFrozenLakeSummary, config: IFTFrozenLakeConfig, routes: ([FrozenLake.Action], [FrozenLake.Action])) -> String {
    """
    # IFT's Frozen Lake check: SFT, IFT, DPO and ORPO against the optimal policy

    Map (\(config.map.joined(separator: " / "))), deterministic; the optimal route \(routes.0.map(\.name).joined(separator: ", ")) \
    (\(routes.0.count) steps) and the sub-optimal one \(routes.1.map(\.name).joined(separator: ", ")) (\(routes.1.count) steps). \
    π* is uniform over the actions optimal under value iteration with discount \(config.discount). The policy is a \
    \(config.layers)-layer GPT-2 (width \(config.hiddenSize)) over trajectories as tokens, pre-trained for \
    \(config.pretrainSteps) steps on random walks (a near-uniform policy), then fine-tuned for \(config.steps) steps at \
    learning rate \(config.learningRate) (shared): SFT and IFT (λ \(config.lambda), γ \(config.gamma)) on the optimal \
    trajectory, DPO (β \(config.dpoBeta)) and ORPO (λ \(config.orpoLambda)) on optimal ≻ sub-optimal. π(a|s) is the \
    model's next-token distribution after the state, renormalised over the four actions, read where the \
    demonstrations put the state (the prefix of the optimal trajectory ending at it, else the sub-optimal one's: \
    every non-terminal state of the default map lies on one of the two routes); the score is the mean of \
    (π − π*)² over the non-terminal states and actions. \(s.seeds) seeds; intervals are 95% over seeds. Ranking \
    (lowest MSE first): \(s.ranking.joined(separator: " < ")). The paper reports DPO ≥ IFT > ORPO > SFT. Ran in \
    \(Int(s.seconds)) s.

    \(table(s, config: config))
    ![MSE vs step](mse.svg)

    ![Final policies](policies.svg)

    """
  }
}
