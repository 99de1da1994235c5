import ArgumentParser
import Experiments
import Foundation

/// `shatter experiment rlp`: every default is `RLPExperimentConfig`'s own.
struct RLPExperimentCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rlp",
    abstract: "Reward Learning on Policy: RLP-UML and RLP-SPG against PPO, best-of-n and SFT (METHODS §6; Lang et al. 2024).",
    discussion: """
      A simulated annotator (a gold reward — the reply's final number is the sum, plus a length bias — with \
      Bradley–Terry noise) stands in for people on "a+b=" problems. Per seed a small GPT-2 over characters is \
      fine-tuned on demonstrations with slips (SFT); a reward model from SFT learns the annotator's labels of pairs of \
      SFT samples; PPO optimises it; then the PPO policy's samples retrain the reward model from SFT, with the \
      multi-view term (RLP-UML) or on human + synthetic self-consistency pairs (RLP-SPG), and PPO runs again from SFT \
      with each. Reports the annotator's win rate against SFT, the gold reward, accuracy and KL on held-out problems, \
      each reward model's accuracy on pairs of policy samples, and gold reward against KL along the PPO runs. \
      Finished seeds under --out are kept and skipped. Writes metrics.jsonl, summary.json, report.md, win-rate.svg and \
      gold-vs-kl.svg.
      """)
  static let d = RLPExperimentConfig()

  @Option(help: "Directory for the runs and the report.") var out = "out/rlp"
  @Option(help: "Seeds (each its own data, models and samples).") var seeds = d.seeds
  @Option(help: "Largest operand of a problem.") var maxOperand = d.maxOperand
  @Option(help: "Training problems: PPO's prompts, and the demonstrations' and annotated pairs' in turn.") var trainProblems = d.trainProblems
  @Option(help: "SFT demonstrations, over the training problems in turn.") var demonstrations = d.demonstrations
  @Option(help: "Fraction of demonstrations with a slip (the sum off by ±1 or ±10).") var slipRate = d.slipRate
  @Option(help: "Annotated pairs of two SFT samples (the human preferences).") var humanPairs = d.humanPairs
  @Option(help: "Training prompts whose policy samples retrain the reward model.") var policyPrompts = d.policyPrompts
  @Option(help: "Held-out problems to evaluate on.") var evalProblems = d.evalProblems
  @Option(help: "Replies per held-out problem in the evaluation.") var evalSamples = d.evalSamples
  @Option(help: "The gold reward's length bias: the most it adds for a long reply.") var lengthBias = d.annotator.lengthBias
  @Option(help: "Characters at which the length bias is reached.") var lengthCap = d.annotator.lengthCap
  @Option(help: "The annotator's Bradley–Terry temperature (its noise).") var annotatorTemperature = d.annotator.temperature
  @Option(help: "Width of the GPT-2.") var hiddenSize = d.hiddenSize
  @Option(help: "Transformer layers.") var layers = d.layers
  @Option(help: "SFT steps.") var sftSteps = d.sftSteps
  @Option(help: "SFT learning rate (AdamW, cosine).") var sftLr = d.sftLearningRate
  @Option(help: "Steps of each reward model.") var rmSteps = d.rmSteps
  @Option(help: "Reward-model learning rate (AdamW, cosine).") var rmLr = d.rmLearningRate
  @Option(help: "RLP-UML: λ, the weight of the multi-view term.") var lambdaMv = d.lambdaMV
  @Option(help: "RLP-UML: policy samples (views) per prompt.") var views = d.views
  @Option(help: "RLP-SPG: samples per prompt.") var spgSamples = d.spgSamples
  @Option(help: "RLP-SPG: confidence threshold γ (largest cluster's share).") var spgGamma = d.spgGamma
  @Option(help: "Rollouts of each PPO run.") var ppoSteps = d.ppoSteps
  @Option(help: "Prompts per PPO rollout.") var ppoBatch = d.ppoBatch
  @Option(help: "PPO learning rate (constant).") var ppoLr = d.ppoLearningRate
  @Option(help: "PPO's KL coefficient β.") var beta = d.klCoef
  @Option(help: "Longest reply, in characters.") var responseLength = d.responseLength
  @Option(help: "Record gold reward and KL every this many PPO rollouts.") var curveEvery = d.curveEvery
  @Option(help: "Best-of-n's n.") var bestOfN = d.bestOfN
  @Option(help: "Sampling temperature everywhere.") var temperature = d.temperature
  @Flag(help: "Print summary.json's content as one JSON object on stdout (progress goes to stderr).") var json = false

  func validate() throws {
    guard seeds >= 1, trainProblems >= 2, demonstrations >= 1, humanPairs >= 2, policyPrompts >= 2, evalProblems >= 1, evalSamples >= 1, layers >= 1,
          sftSteps >= 1, rmSteps >= 1, ppoSteps >= 1, ppoBatch >= 1, curveEvery >= 1, bestOfN >= 1, maxOperand >= 1, responseLength >= 1
    else {
      throw ValidationError("counts and steps must be at least 1 (--train-problems, --human-pairs and --policy-prompts at least 2)")
    }
    guard views >= 2, spgSamples >= 2 else { throw ValidationError("--views and --spg-samples must be at least 2") }
    guard (0...1).contains(slipRate), (0...1).contains(spgGamma) else { throw ValidationError("--slip-rate and --spg-gamma must be in [0, 1]") }
    guard sftLr > 0, rmLr > 0, ppoLr > 0, temperature > 0, annotatorTemperature > 0, lengthCap >= 1, lengthBias >= 0, lambdaMv >= 0, beta >= 0 else {
      throw ValidationError("learning rates and temperatures must be positive; --length-cap at least 1; --length-bias, --lambda-mv and --beta at least 0")
    }
    guard hiddenSize >= 2, hiddenSize % 2 == 0 else { throw ValidationError("--hidden-size must be even (two attention heads)") }
  }

  func run() throws {
    var c = RLPExperimentConfig()
    c.seeds = seeds
    c.maxOperand = maxOperand
    c.trainProblems = trainProblems
    c.demonstrations = demonstrations
    c.slipRate = slipRate
    c.humanPairs = humanPairs
    c.policyPrompts = policyPrompts
    c.evalProblems = evalProblems
    c.evalSamples = evalSamples
    c.annotator.lengthBias = lengthBias
    c.annotator.lengthCap = lengthCap
    c.annotator.temperature = annotatorTemperature
    c.hiddenSize = hiddenSize
    c.layers = layers
    c.sftSteps = sftSteps
    c.sftLearningRate = sftLr
    c.rmSteps = rmSteps
    c.rmLearningRate = rmLr
    c.lambdaMV = lambdaMv
    c.views = views
    c.spgSamples = spgSamples
    c.spgGamma = spgGamma
    c.ppoSteps = ppoSteps
    c.ppoBatch = ppoBatch
    c.ppoLearningRate = ppoLr
    c.klCoef = beta
    c.responseLength = responseLength
    c.curveEvery = curveEvery
    c.bestOfN = bestOfN
    c.temperature = temperature
    try runExperiment(json: json, out: out, { try RLPExperiment.run(c, out: URL(fileURLWithPath: out), progress: progressLines()) },
                      table: RLPExperiment.table)
  }
}
