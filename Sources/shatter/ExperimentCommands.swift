import Alignment
import ArgumentParser
import Experiments
import Foundation

extension SelectionRule: ExpressibleByArgument {}
extension EpistemicKind: ExpressibleByArgument {}

struct ExperimentCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "experiment", abstract: "Run a paper's experiment as a named, seeded, resumable run with a report.",
    subcommands: [InclusiveCommand.self])
}

/// Every flag's default is `InclusiveConfig`'s own (shown by --help), so the defaults live in one place.
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
  static let d = InclusiveConfig()

  @Option(help: "Directory for the runs and the report.") var out = "out/inclusive"
  @Option(help: "Prompts of the didactic population.") var prompts = d.population.prompts
  @Option(help: "Symbols per response position, V.") var vocabulary = d.population.vocabulary
  @Option(help: "Tokens per response, L; the response space has V^L elements.") var length = d.population.length
  @Option(help: "Comma-separated weights of the person types, one per type.")
  var weights = d.population.weights.map { String(describing: $0) }.joined(separator: ",")
  @Option(help: "How peaked each type's preferences are.") var sharpness = d.population.sharpness
  @Option(help: "Share of the majority type in the pre-training prior p_0, the rest uniform.") var priorMix = d.population.priorMix
  @Option(help: "Seed of the population itself: where each type's preferences are centred (--seeds are the runs' seeds).")
  var worldSeed = d.population.seed
  @Option(help: "K, responses shown per query.") var shown = d.population.candidates
  @Option(help: "Seeds per rule (fewer make the queries-to-target comparison mostly noise).") var seeds = d.seeds
  @Option(help: "Queries per run.") var budget = d.budget
  @Option(help: "Queries between model updates.") var batchSize = d.batchSize
  @Option(help: "Candidates sampled from the policy per query, from which the rule picks K.") var candidates = d.candidates
  @Option(help: "Epistemic head: epinet or ensemble.") var epistemic = d.epistemic
  @Option(help: "Index samples z per example and per selection (ensemble size for ensemble).") var indexSamples = d.indexSamples
  @Option(help: "β, the scale of the epistemic head's frozen prior network.") var priorScale = d.priorScale
  @Option(help: "Comma-separated selection rules (passive is always run): passive (uniform), boltzmann (∝ exp(mean score)), infomax (the pair whose preference varies most over indices), double_ts (argmax under two indices), contrast (best against worst by mean score), ts_contrast (best under one index against worst under another).")
  var rules = d.rules.map(\.rawValue).joined(separator: ",")
  @Option(help: "Target KL (default: the passive rule's final KL).") var targetKl: Double?
  @Option(help: "Optimizer steps after each batch of queries, on every query so far.") var updateSteps = d.updateSteps
  @Option(help: "AdamW learning rate of the feedback updates.") var learningRate = d.learningRate
  @Option(help: "μ: weight of KL(π_pre‖π) in units of queries; its pull fades as 1/queries.") var priorStrength = d.priorStrength
  @Option(help: "Pre-training steps on p_0.") var pretrainSteps = d.pretrainSteps
  @Option(help: "β of the baseline's KL-regularised policy update π ∝ π_pre·exp(r/β).") var baselineBeta = d.baselineBeta
  @Option(help: "Transformer layers.") var layers = d.layers
  @Option(help: "A YAML file of these options (e.g. `seeds: 5`); flags override it.") var config: String?
  @Flag(help: "Print summary.json's content as one JSON object on stdout (progress goes to stderr).") var json = false

  func run() throws {
    var c = InclusiveConfig()
    c.seeds = seeds; c.budget = budget; c.batchSize = batchSize; c.candidates = candidates; c.epistemic = epistemic
    c.indexSamples = indexSamples; c.priorScale = priorScale; c.updateSteps = updateSteps; c.learningRate = learningRate
    c.priorStrength = priorStrength; c.pretrainSteps = pretrainSteps; c.baselineBeta = baselineBeta; c.layers = layers
    c.population.prompts = prompts; c.population.vocabulary = vocabulary; c.population.length = length
    c.population.sharpness = sharpness; c.population.priorMix = priorMix; c.population.seed = worldSeed
    c.population.candidates = shown
    c.population.weights = try weights.split(separator: ",").map {
      guard let w = Double($0.trimmingCharacters(in: .whitespaces)) else { throw UserError("--weights: '\($0)' is not a number") }
      return w
    }
    c.population.types = c.population.weights.count
    c.targetKL = targetKl
    c.rules = try rules.split(separator: ",").map { name in
      guard let r = SelectionRule(rawValue: String(name)) else {
        throw UserError("--rules: unknown rule '\(name)' (\(SelectionRule.allCases.map(\.rawValue).joined(separator: ", ")))")
      }
      return r
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
