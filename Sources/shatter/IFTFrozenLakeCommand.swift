import ArgumentParser
import Experiments
import Foundation

/// `shatter experiment ift-frozenlake`: every default is `IFTFrozenLakeConfig`'s own.
struct IFTFrozenLakeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ift-frozenlake",
    abstract: "IFT's Frozen Lake check: SFT, IFT, DPO and ORPO against the optimal policy (METHODS §4; Hua et al. §5.3).",
    discussion: """
      A small GPT-2 over trajectories is pre-trained on random walks (a near-uniform policy), then fine-tuned per \
      method and seed on the one optimal trajectory (SFT, IFT) or optimal ≻ sub-optimal (DPO, ORPO), with IFT's \
      λ × γ sweep beside; the score is the MSE between its state→action matrix and value iteration's. Finished \
      runs under --out are kept and skipped. Writes metrics.jsonl, summary.json, report.md, mse.svg and \
      policies.svg.
      """)
  static let d = IFTFrozenLakeConfig()

  @Option(help: "Directory for the runs and the report.") var out = "out/ift-frozenlake"
  @Option(help: "The map's rows, comma-separated (one shortest and one longer route from S to G).")
  var map = d.map.joined(separator: ",")
  @Option(help: "Seeds (each its own starting policy).") var seeds = d.seeds
  @Option(help: "Pre-training steps on random walks.") var pretrainSteps = d.pretrainSteps
  @Option(help: "Fine-tuning steps, shared by every method.") var steps = d.steps
  @Option(help: "Learning rate shared by every method (AdamW, constant).") var lr = d.learningRate
  @Option(help: "Measure the MSE every N steps.") var evalEvery = d.evalEvery
  @Option(help: "IFT's λ.") var lambda = d.lambda
  @Option(help: "IFT's γ.") var gamma = d.gamma
  @Option(help: "DPO's β.") var beta = d.dpoBeta
  @Option(help: "ORPO's λ.") var orpoLambda = d.orpoLambda
  @Option(help: "IFT sweep: comma-separated λ values (empty: no sweep).")
  var sweepLambdas = d.sweepLambdas.map { "\($0)" }.joined(separator: ",")
  @Option(help: "IFT sweep: comma-separated γ values.") var sweepGammas = d.sweepGammas.map { "\($0)" }.joined(separator: ",")
  @Option(help: "The four methods also run at these learning rates (comma-separated; empty: none).")
  var sweepLrs = d.sweepLearningRates.map { "\($0)" }.joined(separator: ",")
  @Option(help: "The discount of value iteration (below 1, so the shorter route is the optimal one).") var discount = d.discount
  @Flag(help: "Print summary.json's content as one JSON object on stdout (progress goes to stderr).") var json = false

  func validate() throws {
    guard seeds >= 1, pretrainSteps >= 1, steps >= 1, evalEvery >= 1 else {
      throw ValidationError("--seeds, --pretrain-steps, --steps and --eval-every must be at least 1")
    }
    guard lr > 0, beta > 0, orpoLambda >= 0 else { throw ValidationError("--lr and --beta must be positive, --orpo-lambda at least 0") }
    guard (0...1).contains(lambda), (0...1).contains(gamma) else { throw ValidationError("--lambda and --gamma must be in [0, 1]") }
    guard discount > 0, discount < 1 else { throw ValidationError("--discount must be in (0, 1)") }
    guard try numberList(sweepLrs, "--sweep-lrs").allSatisfy({ $0 > 0 }) else { throw ValidationError("--sweep-lrs must be positive") }
    for v in try numberList(sweepLambdas, "--sweep-lambdas") + numberList(sweepGammas, "--sweep-gammas") where !(0...1).contains(v) {
      throw ValidationError("sweep values must be in [0, 1] (got \(v))")
    }
  }

  func run() throws {
    var c = IFTFrozenLakeConfig()
    c.map = map.split(separator: ",").map(String.init)
    c.seeds = seeds
    c.pretrainSteps = pretrainSteps
    c.steps = steps
    c.learningRate = lr
    c.evalEvery = evalEvery
    c.lambda = lambda
    c.gamma = gamma
    c.dpoBeta = beta
    c.orpoLambda = orpoLambda
    c.sweepLambdas = try numberList(sweepLambdas, "--sweep-lambdas")
    c.sweepGammas = try numberList(sweepGammas, "--sweep-gammas")
    c.discount = discount
    c.sweepLearningRates = try numberList(sweepLrs, "--sweep-lrs")
    try runExperiment(json: json, out: out, { try IFTFrozenLake.run(c, out: URL(fileURLWithPath: out), progress: progressLines()) }) {
      IFTFrozenLake.table($0, config: c) + "\nranking (lowest MSE first): \($0.ranking.joined(separator: " < "))"
    }
  }
}
