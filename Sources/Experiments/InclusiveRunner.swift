import Alignment
import Foundation
import LM
import Torch
import Worlds

extension InclusiveExperiment: @unchecked Sendable {}

/// What each rule (and the classic pipeline) achieved over the seeds.
public struct RuleSummary: Codable, Sendable {
  public let finalKL: Double
  public let finalKLCI95: [Double]
  /// Mean over seeds of the first query count at which KL ≤ target (seeds that never reach it count as
  /// the budget, and `reached` says how many did).
  public let queriesToTarget: Double
  public let ci95: [Double]
  public let reached: Int
  public let seeds: Int
  public let meanCurve: [CurvePoint]
  public let klLow: [Double]
  public let klHigh: [Double]
}

public struct InclusiveSummary: Codable, Sendable {
  public let targetKL: Double
  public let priorKL: Double
  public let pretrainedKL: Double
  public let budget: Int
  public let rules: [String: RuleSummary]
  public let baseline: RuleSummary
  /// The smallest ratio of queries (any rule / passive) the world allows asymptotically by reducing variance
  /// alone (not bias); nil when it is not computed (K ≠ 2 or a large response space). See `QueryDesignBound`.
  public let designBound: QueryDesignBound?
  /// The world in a sentence or two (the report's opening).
  public var world: String = ""
}

/// Runs every (rule, seed) of the experiment — in parallel on the available cores, resumably (finished
/// runs are kept under `out/runs/` and skipped) — and writes metrics.jsonl, summary.json, report.md and
/// SVG plots.
public enum InclusiveRunner {
  /// With `chat`, the natural-language world on that model (`config.model` names it in the report).
  public static func run(_ config: InclusiveConfig, chat: ChatModel? = nil, out: URL,
                         progress: @escaping @Sendable (String) -> Void = { _ in }) throws -> InclusiveSummary
  {
    // Passive always runs: it is the reference every rule is compared with, and the default target.
    var config = config
    if !config.rules.contains(.passive) { config.rules.insert(.passive, at: 0) }
    let experiment = try InclusiveExperiment(config: config, chat: chat)
    let fm = FileManager.default
    let runs = out.appendingPathComponent("runs")
    try fm.createDirectory(at: runs, withIntermediateDirectories: true)
    try ExperimentFiles.claim(out, config: config)

    // Pre-train once (every rule and seed starts from the same model) with the process's thread settings, then
    // run every job on its own thread with one libtorch and one OpenBLAS thread each (two pools per job would
    // fight over the same cores); a shared real model runs its jobs one at a time with the process's settings.
    let (torchThreads, blasThreads) = (Torch.threads, BLAS.threads)
    func threads(single: Bool) {
      Torch.threads = single ? 1 : torchThreads
      if let blasThreads { BLAS.threads = single ? 1 : blasThreads }
    }
    let perJob = experiment.concurrentRuns
    threads(single: perJob)
    defer { threads(single: false) }
    let seeds = Array(0..<config.seeds)
    /// Pre-trained weights kept under runs/ as `name`, made (on every core) the first time; empty when the
    /// world's model is its own starting point.
    func pretrained(_ name: String, baseline: Bool) throws -> (weights: [String: Tensor], made: Bool) {
      let file = runs.appendingPathComponent(name)
      if let w = try? Safetensors.load(file) { return (w, false) }
      threads(single: false)
      let w = experiment.pretrained(seed: 0, baseline: baseline)
      threads(single: perJob)
      guard let w else { return ([:], true) }
      try Safetensors.save(w, to: file)
      return (w, true)
    }
    let (weights, made) = try pretrained("pretrained.safetensors", baseline: false)
    if made {
      progress(String(format: "%@ (KL(p*‖π_pre) %.4f)", weights.isEmpty ? "the model as it is" : "pre-trained on p_0",
                      try experiment.meanKL(weights)))
    }
    let baselineWeights = experiment.baselineHasOwnLayout
      ? try pretrained("pretrained-baseline.safetensors", baseline: true).weights : weights
    let jobs: [(rule: SelectionRule?, seed: Int)] = seeds.flatMap { s in config.rules.map { ($0, s) } + [(nil, s)] }
    let results = Locked([RunResult]())
    let failure = Locked<Error?>(nil)
    let decoder = JSONDecoder()
    @Sendable func job(_ j: Int) {
      let (rule, seed) = jobs[j]
      let name = "\(rule?.rawValue ?? "baseline_rm_policy")-seed\(seed)"
      let file = runs.appendingPathComponent(name + ".json")
      if let data = fm.contents(atPath: file.path), let r = try? decoder.decode(RunResult.self, from: data) {
        results.mutate { $0.append(r) }
        return
      }
      do {
        let r = try rule.map { try experiment.run(rule: $0, seed: seed, pretrained: weights) }
          ?? experiment.runBaseline(seed: seed, pretrained: baselineWeights)
        try JSONEncoder().encode(r).write(to: file, options: .atomic)
        results.mutate { $0.append(r) }
        progress(String(format: "%@: KL %.4f → %.4f", name, r.curve.first!.kl, r.curve.last!.kl))
      } catch {
        failure.mutate { $0 = $0 ?? error }
      }
    }
    if experiment.concurrentRuns {
      DispatchQueue.concurrentPerform(iterations: jobs.count) { job($0) }
    } else {
      for j in jobs.indices where failure.value == nil { job(j) }
    }
    if let error = failure.value { throw error }
    let summary = summarize(results.value, config: config, experiment: experiment)
    try write(summary, results: results.value, config: config, to: out)
    return summary
  }

  static func summarize(_ results: [RunResult], config: InclusiveConfig, experiment: InclusiveExperiment) -> InclusiveSummary {
    func curves(_ rule: String) -> [[CurvePoint]] {
      results.filter { $0.rule == rule }.sorted { $0.seed < $1.seed }.map(\.curve)
    }
    let passiveFinal = Interval(curves(SelectionRule.passive.rawValue).map { $0.last!.kl }).mean
    let target = config.targetKL ?? passiveFinal
    func summary(_ rule: String) -> RuleSummary {
      let cs = curves(rule)
      let points = cs[0].count
      let mean = (0..<points).map { i in
        let predictive = cs.compactMap { $0[i].heldOutPredictiveLogLoss }
        return CurvePoint(queries: cs[0][i].queries, kl: Interval(cs.map { $0[i].kl }).mean,
                          heldOutLogLoss: Interval(cs.map { $0[i].heldOutLogLoss }).mean,
                          heldOutPredictiveLogLoss: predictive.count == cs.count ? Interval(predictive).mean : nil)
      }
      let bands = (0..<points).map { i in Interval(cs.map { $0[i].kl }) }
      let toTarget = cs.map { c in Double(c.first { $0.kl <= target }?.queries ?? config.budget) }
      let reached = cs.filter { c in c.contains { $0.kl <= target } }.count
      let finals = Interval(cs.map { $0.last!.kl }), q = Interval(toTarget)
      return RuleSummary(finalKL: finals.mean, finalKLCI95: [finals.low, finals.high], queriesToTarget: q.mean,
                         ci95: [q.low, q.high], reached: reached, seeds: cs.count, meanCurve: mean,
                         klLow: bands.map(\.low), klHigh: bands.map(\.high))
    }
    let pretrainedKL = Interval(curves(SelectionRule.passive.rawValue).map { $0[0].kl }).mean
    return InclusiveSummary(targetKL: target, priorKL: experiment.priorKL ?? pretrainedKL, pretrainedKL: pretrainedKL, budget: config.budget,
                            rules: Dictionary(uniqueKeysWithValues: config.rules.map { ($0.rawValue, summary($0.rawValue)) }),
                            baseline: summary("baseline_rm_policy"), designBound: experiment.designBound,
                            world: experiment.worldSummary)
  }

  /// The `--json` object: summary.json's content.
  public static func summaryJSON(_ s: InclusiveSummary) -> [String: Any] {
    func rule(_ r: RuleSummary) -> [String: Any] {
      ["final_kl": r.finalKL, "final_kl_ci95": r.finalKLCI95, "queries_to_target": r.queriesToTarget, "ci95": r.ci95,
       "reached": r.reached, "seeds": r.seeds]
    }
    var json: [String: Any] = ["target_kl": s.targetKL, "prior_kl": s.priorKL, "pretrained_kl": s.pretrainedKL,
                               "budget": s.budget, "rules": s.rules.mapValues(rule), "baseline_rm_policy": rule(s.baseline)]
    if let b = s.designBound { json["design_bound"] = ["ratio": b.ratio, "per_prompt": b.perPrompt] }
    return json
  }

  static func write(_ s: InclusiveSummary, results: [RunResult], config: InclusiveConfig, to out: URL) throws {
    try ExperimentFiles.writeMetrics(results.sorted(by: { ($0.rule, $0.seed) < ($1.rule, $1.seed) }).flatMap { r in
      r.curve.map { p in
        var line: [String: Any] = ["rule": r.rule, "seed": r.seed, "queries": p.queries, "kl": p.kl, "held_out_log_loss": p.heldOutLogLoss]
        if let predictive = p.heldOutPredictiveLogLoss { line["held_out_predictive_log_loss"] = predictive }
        return line
      }
    }, to: out)
    try JSONSerialization.data(withJSONObject: summaryJSON(s), options: [.prettyPrinted, .sortedKeys])
      .write(to: out.appendingPathComponent("summary.json"), options: .atomic)
    let all = s.rules.sorted { $0.key < $1.key } + [("baseline_rm_policy", s.baseline)]
    try Data(Plots.klCurves(all, target: s.targetKL).utf8).write(to: out.appendingPathComponent("kl_vs_queries.svg"), options: .atomic)
    let third = s.rules[SelectionRule.passive.rawValue].map { ($0.queriesToTarget / 3, "⅓ of passive") }
    try Data(Plots.queriesToTarget(s.rules.sorted { $0.key < $1.key }, budget: s.budget, mark: third).utf8)
      .write(to: out.appendingPathComponent("queries_to_target.svg"), options: .atomic)
    try Data(report(s, config: config).utf8).write(to: out.appendingPathComponent("report.md"), options: .atomic)
  }

  /// The summary table as Markdown.
  public static func table(_ s: InclusiveSummary) -> String {
    var t = "| rule | final KL(p*‖π) (95% CI) | queries to KL ≤ \(String(format: "%.4f", s.targetKL)) (95% CI) | seeds reaching it |\n"
    t += "|---|---|---|---|\n"
    for (name, r) in s.rules.sorted(by: { $0.key < $1.key }) + [("baseline_rm_policy", s.baseline)] {
      t += String(format: "| %@ | %.4f (%.4f–%.4f) | %.0f (%.0f–%.0f) | %d/%d |\n", name, r.finalKL, r.finalKLCI95[0],
                  r.finalKLCI95[1], r.queriesToTarget, r.ci95[0], r.ci95[1], r.reached, r.seeds)
    }
    return t
  }

  static func report(_ s: InclusiveSummary, config: InclusiveConfig) -> String {
    let passive = s.rules[SelectionRule.passive.rawValue]
    let best = s.rules.filter { $0.key != SelectionRule.passive.rawValue }.min { $0.value.queriesToTarget < $1.value.queriesToTarget }
    var text = """
      # Inclusive fine-tuning with active exploration

      \(s.world) (KL(p*‖p₀) = \(String(format: "%.4f", s.priorKL)); at the start \
      KL(p*‖π) = \(String(format: "%.4f", s.pretrainedKL))) is fine-tuned by fitting its own likelihood to the \
      choices\(config.holdOutEvery > 0 ? " (every \(config.holdOutEvery)th answer held out for early stopping)" : ""), with a\(config.epistemic == .ensemble ? "n ensemble" : "n epinet") head choosing the questions. \
      Budget \(config.budget) queries, \(config.seeds) seeds, updates every \(config.batchSize) queries. The target is \
      \(config.targetKL == nil ? "the passive rule's final KL" : "the configured KL").

      \(table(s))
      ![KL vs queries](kl_vs_queries.svg)

      ![Queries to target](queries_to_target.svg)

      """
    if let passive, let (name, b) = best {
      let ratio = b.queriesToTarget / Swift.max(passive.queriesToTarget, 1)
      text += String(format: """

        The best active rule, %@, reaches the target with %.0f queries on average against passive's %.0f \
        (%.2f of them; the aim is at most one third). The classic pipeline (a separate reward model, then an \
        exact KL-regularised update with β = %.2f) ends at KL %.4f against %.4f for joint learning with passive queries.

        """, name, b.queriesToTarget, passive.queriesToTarget, ratio, config.baselineBeta, s.baseline.finalKL, passive.finalKL)
    }
    if let line = designBoundLine(s) { text += "\n" + line + "\n" }
    return text
  }

  /// One sentence on the world's asymptotic design bound, for the report and the CLI.
  public static func designBoundLine(_ s: InclusiveSummary) -> String? {
    s.designBound.map {
      String(format: "Variance bound: once the model is near p*, no rule can need fewer than %.2f of passive's queries; "
        + "a rule below that gains by correcting the pre-trained model's bias, which the bound does not count. "
        + "A rule driven by the head's uncertainty (infomax, double_ts, expected_kl) cannot: a posterior centred on "
        + "the fit sees its own variance, not that bias (the ideal learner, scripts/active_design_ceiling.py, and "
        + "docs/INCLUSIVE.md).", $0.ratio)
    }
  }
}
