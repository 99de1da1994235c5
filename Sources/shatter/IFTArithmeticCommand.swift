import ArgumentParser
import Experiments
import Foundation
import LM

/// `shatter experiment ift-arithmetic`: every default is `IFTArithmeticConfig`'s own.
struct IFTArithmeticCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ift-arithmetic",
    abstract: "IFT against SFT → DPO on the real model with LoRA: held-out exact match on arithmetic word problems (Hua et al. 2024).",
    discussion: """
      Each seed draws its training problems (an addition or subtraction told as a story; the demonstration is the \
      calculation, e.g. "12 - 5 = 7", and a pair's rejected reply the other operation's) and trains a fresh LoRA adapter three ways \
      with the same steps and examples: SFT and IFT on the chosen answers, and SFT on the chosen answers followed \
      by DPO on the pairs (--sft-share of the steps SFT, then DPO at --dpo-lr with the SFT model as reference). Every run and the untrained \
      model are scored by greedy exact match of the reply's last number on the same held-out problems. Finished runs under --out are kept and \
      skipped. Writes metrics.jsonl, summary.json, report.md and accuracy.svg.
      """)
  static let d = IFTArithmeticConfig()

  @Option(help: "The base model: a checkpoint directory or .gguf file (the real model by default; `make model` fetches it).")
  var model = d.model
  @Option(help: "Directory for the runs and the report.") var out = "out/ift-arithmetic"
  @Option(help: "Seeds (each its own training problems and adapter initialisation).") var seeds = d.seeds
  @Option(help: "Training problems per seed.") var trainProblems = d.trainProblems
  @Option(help: "Held-out problems every run is scored on.") var evalProblems = d.evalProblems
  @Option(help: "Optimizer steps of every method (SFT → DPO splits them).") var steps = d.steps
  @Option(help: "Sequences (DPO: pairs) per step.") var batchSize = d.batchSize
  @Option(help: "AdamW learning rate (constant after a warm-up of a tenth of the steps).") var lr = d.learningRate
  @Option(help: "DPO's learning rate in SFT → DPO (DPO runs far below SFT's rate).") var dpoLr = d.dpoLearningRate
  @Option(help: "LoRA rank.") var loraR = d.loraRank
  @Option(help: "LoRA α (scaling α/r).") var loraAlpha = d.loraAlpha
  @Option(help: "IFT's λ.") var lambda = d.lambda
  @Option(help: "IFT's γ.") var gamma = d.gamma
  @Option(help: "IFT: ramp λ linearly from 0 over this many steps (0: none).") var lambdaWarmup = d.lambdaWarmup
  @Option(help: "Comma-separated methods to run: sft, ift, sft→dpo (or sft-dpo).") var methods = d.methods.joined(separator: ",")
  @Option(help: "DPO's β.") var beta = d.dpoBeta
  @Option(help: "SFT → DPO: the share of the steps that is SFT.") var sftShare = d.sftShare
  @Option(help: "Tokens generated per held-out answer.") var maxNewTokens = d.maxNewTokens
  @Flag(help: "Print summary.json's content as one JSON object on stdout (progress goes to stderr).") var json = false

  func validate() throws {
    guard seeds >= 1, trainProblems >= 2, evalProblems >= 1, steps >= 2, batchSize >= 1, loraR >= 1, maxNewTokens >= 1 else {
      throw ValidationError("--seeds, --eval-problems, --batch-size, --lora-r and --max-new-tokens must be at least 1, --steps and --train-problems at least 2")
    }
    guard lr > 0, dpoLr > 0, beta > 0, loraAlpha > 0 else { throw ValidationError("--lr, --dpo-lr, --beta and --lora-alpha must be positive") }
    guard lambdaWarmup >= 0 else { throw ValidationError("--lambda-warmup must be at least 0") }
    for m in methods.split(separator: ",") where !["sft", "ift", "sft→dpo", "sft-dpo"].contains(m) {
      throw ValidationError("--methods: unknown method '\(m)' (sft, ift, sft→dpo)")
    }
    guard (0...1).contains(lambda), (0...1).contains(gamma), sftShare > 0, sftShare < 1 else {
      throw ValidationError("--lambda and --gamma must be in [0, 1], --sft-share in (0, 1)")
    }
  }

  func run() throws {
    var c = IFTArithmeticConfig()
    c.model = model
    c.seeds = seeds
    c.trainProblems = trainProblems
    c.evalProblems = evalProblems
    c.steps = steps
    c.batchSize = batchSize
    c.learningRate = lr
    c.dpoLearningRate = dpoLr
    c.loraRank = loraR
    c.loraAlpha = loraAlpha
    c.lambda = lambda
    c.gamma = gamma
    c.lambdaWarmup = lambdaWarmup
    c.methods = methods.split(separator: ",").map { $0 == "sft-dpo" ? "sft→dpo" : String($0) }
    c.dpoBeta = beta
    c.sftShare = sftShare
    c.maxNewTokens = maxNewTokens
    guard FileManager.default.fileExists(atPath: model) else {
      throw UserError("--model \(model) does not exist" + (model == Self.d.model ? " (run `make model`, or give --model)" : ""))
    }
    let loaded = try LoadedModel(model)
    let chat = ChatModel(model: loaded.model, tokenizer: loaded.tokenizer, template: chatTemplate(of: loaded.tokenizer))
    try runExperiment(json: json, out: out, { try IFTArithmetic.run(c, chat: chat, out: URL(fileURLWithPath: out), progress: progressLines()) },
                      table: IFTArithmetic.table)
  }
}
