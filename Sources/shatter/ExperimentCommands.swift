import Alignment
import ArgumentParser
import Experiments
import Foundation

struct ExperimentCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "experiment", abstract: "Run a paper's experiment as a named, seeded, resumable run with a report.",
    subcommands: [InclusiveCommand.self])
}

struct InclusiveCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inclusive",
    abstract: "Inclusive fine-tuning with active exploration on the didactic population (METHODS §1–§3).",
    discussion: """
      Pre-trains a small transformer on a prior biased towards the majority type, then for every query-selection \
      rule and seed fits the model's own likelihood to simulated people's choices, jointly with an epistemic head, \
      and records KL(p*‖π) after each batch; the classic pipeline (separate reward model, then an exact \
      KL-regularised policy update) runs on passive queries as the baseline. Finished runs under --out are kept \
      and skipped, so an interrupted experiment continues where it stopped. Writes metrics.jsonl, summary.json, \
      report.md and SVG plots.
      """)

  @Option(help: "Directory for the runs and the report.") var out = "out/inclusive"
  @Option(help: "Prompts of the didactic population (default 2).") var prompts: Int?
  @Option(help: "Symbols per response position, V (default 4).") var vocabulary: Int?
  @Option(help: "Tokens per response, L; the response space has V^L elements (default 2).") var length: Int?
  @Option(help: "Comma-separated weights of the person types, one per type (default 0.5,0.3,0.2).") var weights: String?
  @Option(help: "How peaked each type's preferences are (default 1.5).") var sharpness: Double?
  @Option(help: "Share of the majority type in the pre-training prior p_0, the rest uniform (default 0.9).") var priorMix: Double?
  @Option(help: "Seed of the population itself: where each type's preferences are centred (default 0; --seeds are the runs' seeds).") var worldSeed: UInt64?
  @Option(help: "K, responses shown per query (default 2).") var shown: Int?
  @Option(help: "Seeds per rule (default 20; fewer make the queries-to-target comparison mostly noise).") var seeds: Int?
  @Option(help: "Queries per run (default 240).") var budget: Int?
  @Option(help: "Queries between model updates (default 20).") var batchSize: Int?
  @Option(help: "Candidates sampled from the policy per query, from which the rule picks K (default 8).") var candidates: Int?
  @Option(help: "Epistemic head: epinet or ensemble (default epinet).") var epistemic: String?
  @Option(help: "Index samples z per example and per selection (ensemble size for ensemble; default 16).") var indexSamples: Int?
  @Option(help: "β, the scale of the epistemic head's frozen prior network (default 1).") var priorScale: Double?
  @Option(help: "Comma-separated selection rules (default all; passive is always run): passive (uniform), boltzmann (∝ exp(mean score)), infomax (the pair whose preference varies most over indices), double_ts (argmax under two indices), contrast (best against worst by mean score), ts_contrast (best under one index against worst under another).") var rules: String?
  @Option(help: "Target KL (default: the passive rule's final KL).") var targetKl: Double?
  @Option(help: "Optimizer steps after each batch of queries, on every query so far (default 20).") var updateSteps: Int?
  @Option(help: "AdamW learning rate of the feedback updates (default 1e-3).") var learningRate: Double?
  @Option(help: "μ: weight of KL(π_pre‖π) in units of queries; its pull fades as 1/queries (default 50).") var priorStrength: Double?
  @Option(help: "Pre-training steps on p_0 (default 1000).") var pretrainSteps: Int?
  @Option(help: "β of the baseline's KL-regularised policy update π ∝ π_pre·exp(r/β) (default 1).") var baselineBeta: Double?
  @Option(help: "Transformer layers (default 2).") var layers: Int?
  @Option(help: "A YAML file of these options (e.g. `seeds: 5`); flags override it.") var config: String?
  @Flag(help: "Print summary.json's content as one JSON object on stdout (progress goes to stderr).") var json = false

  func run() throws {
    var c = InclusiveConfig()
    func set<T>(_ value: T?, _ key: WritableKeyPath<InclusiveConfig, T>) { if let value { c[keyPath: key] = value } }
    set(seeds, \.seeds); set(budget, \.budget); set(batchSize, \.batchSize); set(candidates, \.candidates)
    set(epistemic, \.epistemic); set(indexSamples, \.indexSamples); set(priorScale, \.priorScale)
    set(updateSteps, \.updateSteps); set(learningRate, \.learningRate); set(priorStrength, \.priorStrength)
    set(pretrainSteps, \.pretrainSteps); set(baselineBeta, \.baselineBeta); set(layers, \.layers)
    set(prompts, \.population.prompts); set(vocabulary, \.population.vocabulary); set(length, \.population.length)
    set(sharpness, \.population.sharpness); set(priorMix, \.population.priorMix); set(worldSeed, \.population.seed); set(shown, \.population.candidates)
    if let weights {
      c.population.weights = try weights.split(separator: ",").map {
        guard let w = Double($0.trimmingCharacters(in: .whitespaces)) else { throw UserError("--weights: '\($0)' is not a number") }
        return w
      }
      c.population.types = c.population.weights.count
    }
    if let targetKl { c.targetKL = targetKl }
    if let rules {
      c.rules = try rules.split(separator: ",").map { name in
        guard let r = SelectionRule(rawValue: String(name)) else {
          throw UserError("--rules: unknown rule '\(name)' (\(SelectionRule.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return r
      }
      if !c.rules.contains(.passive) { c.rules.insert(.passive, at: 0) }
    }
    let started = Date()
    let summary = try InclusiveRunner.run(c, out: URL(fileURLWithPath: out)) { line in
      FileHandle.standardError.write(Data(String(format: "[%5.0fs] %@\n", Date().timeIntervalSince(started), line).utf8))
    }
    if json {
      printJSON(InclusiveRunner.summaryJSON(summary))
    } else {
      print(InclusiveRunner.table(summary))
      if let line = InclusiveRunner.designBoundLine(summary) { print(line + "\n") }
      print("report: \(out)/report.md")
    }
  }
}
