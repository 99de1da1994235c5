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
  @Option(help: "Seeds per rule.") var seeds: Int?
  @Option(help: "Queries per run.") var budget: Int?
  @Option(help: "Queries between model updates.") var batchSize: Int?
  @Option(help: "Epistemic head: epinet or ensemble.") var epistemic: String?
  @Option(help: "Comma-separated rules among passive, boltzmann, infomax, double_ts.") var rules: String?
  @Option(help: "Target KL (default: the passive rule's final KL).") var targetKl: Double?
  @Option(help: "Optimizer steps after each batch of queries.") var updateSteps: Int?
  @Option(help: "Transformer layers.") var layers: Int?
  @Option(help: "A YAML file of these options (e.g. `seeds: 5`); flags override it.") var config: String?
  @Flag(help: "Print summary.json's content as one JSON object on stdout (progress goes to stderr).") var json = false

  func run() throws {
    var c = InclusiveConfig()
    if let updateSteps { c.updateSteps = updateSteps }
    if let layers { c.layers = layers }
    if let seeds { c.seeds = seeds }
    if let budget { c.budget = budget }
    if let batchSize { c.batchSize = batchSize }
    if let epistemic { c.epistemic = epistemic }
    if let targetKl { c.targetKL = targetKl }
    if let rules {
      c.rules = try rules.split(separator: ",").map { name in
        guard let r = SelectionRule(rawValue: String(name)) else {
          throw UserError("--rules: unknown rule '\(name)' (passive, boltzmann, infomax, double_ts)")
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
      print("report: \(out)/report.md")
    }
  }
}
