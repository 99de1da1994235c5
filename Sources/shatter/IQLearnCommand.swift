import ArgumentParser
import Experiments
import Foundation

/// `shatter experiment iqlearn`: every default is `IQLearnExperimentConfig`'s own.
struct IQLearnCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "iqlearn",
    abstract: "IQLearn's performance–diversity claim: MLE, MLE + entropy, offline and online IQLearn (METHODS §5; Wulfmeier et al. 2024).",
    discussion: """
      A small GPT-2 learns the letter-pick task ("write 3 different letters of the prompt's 6, in alphabetical \
      order": 20 correct answers per prompt, an exact checker) from demonstrations that favour the first-listed \
      letters, with MLE, MLE with an entropy bonus (--entropy-bonuses), offline IQLearn (--lambdas) and online \
      IQLearn (--online-alpha), each from the same initialisation per seed. On held-out prompts it measures the task \
      score, Self-BLEU, distinct-1/2, the distinct correct answers per prompt and the per-token entropy of the \
      samples, and the Spearman correlation with the score of IQLearn's extracted reward Σ r_t and of the \
      log-likelihood. Finished runs under --out are kept and skipped. Writes metrics.jsonl, summary.json, report.md \
      and front.svg.
      """)
  static let d = IQLearnExperimentConfig()

  @Option(help: "Directory for the runs and the report.") var out = "out/iqlearn"
  @Option(help: "Seeds (each its own data, initialisation and samples).") var seeds = d.seeds
  @Option(help: "Letters per prompt.") var poolSize = d.poolSize
  @Option(help: "Letters an answer picks.") var pick = d.pick
  @Option(help: "Training prompts, one demonstration each.") var trainPrompts = d.trainPrompts
  @Option(help: "How unevenly the demonstrations cover the answers: answer k is drawn ∝ (k+1)^-zipf.") var zipf = d.zipf
  @Option(help: "Held-out prompts to evaluate on.") var evalPrompts = d.evalPrompts
  @Option(help: "Samples per held-out prompt.") var samples = d.samplesPerPrompt
  @Option(help: "Sampling temperature of the evaluation.") var temperature = d.temperature
  @Option(help: "Training steps, shared by every configuration.") var steps = d.steps
  @Option(help: "Sequences per step.") var batchSize = d.batchSize
  @Option(help: "AdamW learning rate (cosine schedule), shared.") var lr = d.learningRate
  @Option(help: "MLE + entropy: comma-separated bonuses β (loss CE − β·H); empty: none.")
  var entropyBonuses = d.entropyBonuses.map { "\($0)" }.joined(separator: ",")
  @Option(help: "Offline IQLearn: comma-separated λ values; empty: none.") var lambdas = d.lambdas.map { "\($0)" }.joined(separator: ",")
  @Option(help: "γ of every IQLearn run.") var gamma = d.gamma
  @Option(help: "Online IQLearn: the fraction of each batch sampled from the policy (0: no online run).") var onlineAlpha = d.onlineAlpha
  @Option(help: "Online IQLearn's λ.") var onlineLambda = d.onlineLambda
  @Option(help: "Width of the GPT-2.") var hiddenSize = d.hiddenSize
  @Option(help: "Transformer layers.") var layers = d.layers
  @Flag(help: "Print summary.json's content as one JSON object on stdout (progress goes to stderr).") var json = false

  func validate() throws {
    guard seeds >= 1, trainPrompts >= 1, evalPrompts >= 1, samples >= 2, steps >= 1, batchSize >= 1, layers >= 1 else {
      throw ValidationError("--seeds, --train-prompts, --eval-prompts, --steps, --batch-size and --layers must be at least 1, --samples at least 2")
    }
    guard (1...26).contains(poolSize), (1...poolSize).contains(pick) else { throw ValidationError("--pool-size must be in 1…26 and --pick in 1…--pool-size") }
    guard lr > 0, temperature > 0, zipf >= 0 else { throw ValidationError("--lr and --temperature must be positive, --zipf at least 0") }
    guard (0...1).contains(gamma), (0...1).contains(onlineAlpha), onlineLambda >= 0 else {
      throw ValidationError("--gamma and --online-alpha must be in [0, 1], --online-lambda at least 0")
    }
    guard hiddenSize >= 2, hiddenSize % 2 == 0 else { throw ValidationError("--hidden-size must be even (two attention heads)") }
    for v in try numberList(entropyBonuses, "--entropy-bonuses") + numberList(lambdas, "--lambdas") where v < 0 {
      throw ValidationError("--entropy-bonuses and --lambdas must be at least 0 (got \(v))")
    }
  }

  func run() throws {
    var c = IQLearnExperimentConfig()
    c.seeds = seeds
    c.poolSize = poolSize
    c.pick = pick
    c.trainPrompts = trainPrompts
    c.zipf = zipf
    c.evalPrompts = evalPrompts
    c.samplesPerPrompt = samples
    c.temperature = temperature
    c.steps = steps
    c.batchSize = batchSize
    c.learningRate = lr
    c.entropyBonuses = try numberList(entropyBonuses, "--entropy-bonuses")
    c.lambdas = try numberList(lambdas, "--lambdas")
    c.gamma = gamma
    c.onlineAlpha = onlineAlpha
    c.onlineLambda = onlineLambda
    c.hiddenSize = hiddenSize
    c.layers = layers
    try runExperiment(json: json, out: out, { try IQLearnExperiment.run(c, out: URL(fileURLWithPath: out), progress: progressLines()) },
                      table: IQLearnExperiment.table)
  }
}
