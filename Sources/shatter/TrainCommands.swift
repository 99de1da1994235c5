import Alignment
import ArgumentParser
import Foundation
import LM
import NN
import Torch

struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train", abstract: "Fine-tune a model with one of Shatter's objectives.",
    subcommands: [
      SFTCommand.self, IFTCommand.self, IQLearnCommand.self, ChoiceCommand.self, RewardModelCommand.self, DPOCommand.self,
      ORPOCommand.self, PPOCommand.self,
    ])
}

/// Where the model comes from: a checkpoint directory, or a fresh one of a family and size.
struct ModelSourceOptions: ParsableArguments {
  @Option(help: "Start from this Hugging Face checkpoint directory.") var model: String?
  @Option(name: .customLong("init"), help: "Start from a freshly initialised model of this family instead: gpt2, llama or qwen2.")
  var initFamily: String?
  @Option(help: "Tokenizer directory for --init (default: a byte-level tokenizer, 257 tokens).")
  var tokenizer: String?
  @Option(help: "Layers of a fresh model.") var layers = 2
  @Option(help: "Hidden size of a fresh model.") var dModel = 64
  @Option(help: "Attention heads of a fresh model.") var heads = 4
  @Option(help: "Key/value heads of a fresh Llama/Qwen2 model (default: --heads).") var kvHeads: Int?
  @Option(help: "Context length of a fresh model.") var maxPositions = 256

  mutating func validate() throws {
    guard (model == nil) != (initFamily == nil) else {
      throw ValidationError("give exactly one of --model DIR and --init gpt2|llama|qwen2")
    }
    if let f = initFamily, ModelFamily(rawValue: f) == nil {
      throw ValidationError("--init must be one of gpt2, llama, qwen2 (got '\(f)')")
    }
  }

  /// The model, its tokenizer, and the directory whose tokenizer files the output should carry.
  func load(seed: UInt64) throws -> (any CausalLM, any TextTokenizer, URL) {
    if let model {
      let loaded = try LoadedModel(model)
      return (loaded.model, loaded.tokenizer, loaded.directory)
    }
    var tokDir: URL
    if let tokenizer {
      tokDir = URL(fileURLWithPath: tokenizer)
    } else {
      tokDir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-bytes-\(getpid())")
      try ByteVocabulary.write(to: tokDir)
    }
    let tok = try loadTokenizer(tokDir.path)
    let eos = tok.eosTokenId.map { [$0] } ?? []
    let config = ModelConfig(family: ModelFamily(rawValue: initFamily!)!, vocabSize: tok.vocabularySize, hiddenSize: dModel,
                             layers: layers, heads: heads, kvHeads: kvHeads, maxPositions: maxPositions,
                             bosTokenId: tok.bosTokenId, eosTokenIds: eos)
    try config.validate(source: "model flags")
    return (Checkpoint.makeModel(config, generator: Generator(seed: seed)), tok, tokDir)
  }
}

/// Optimisation flags shared by every training method.
struct OptimizationOptions: ParsableArguments {
  @Option(help: "Examples per micro-batch.") var batchSize = 8
  @Option(help: "Micro-batches per optimizer step (gradient accumulation).") var gradAccum = 1
  @Option(help: "Tokens per sequence; longer examples keep their first tokens.") var seqLen = 256
  @Option(help: "Optimizer steps.") var steps: Int?
  @Option(help: "Passes over the data (used when --steps is not given).") var epochs = 1.0
  @Option(help: "Peak learning rate (AdamW, betas 0.9/0.95).") var lr = 3e-4
  @Option(help: "Learning-rate schedule after warm-up: constant, linear (to 0) or cosine (to 0).")
  var schedule = "cosine"
  @Option(help: "Linear warm-up steps.") var warmup = 0
  @Option(help: "Decoupled weight decay on matrices (not on biases or norms).") var weightDecay = 0.0
  @Option(help: "Clip the global gradient norm to this (0: off).") var clip = 1.0
  @Option(help: "Seed for initialisation, data order and sampling.") var seed: UInt64 = 0
  @Option(help: "Write a resumable checkpoint under --out every N steps (0: only the final model).")
  var saveEvery = 0
  @Option(help: "Evaluate on --eval-data every N steps (0: once at the end).") var evalEvery = 0
  @Flag(help: "Continue from the latest checkpoint under --out: weights, optimizer, schedule, RNG and data position.")
  var resume = false
  @Option(help: "A YAML file of option values (e.g. `lr: 3e-4`); flags on the command line override it.")
  var config: String?

  func validate() throws {
    guard batchSize > 0, gradAccum > 0, seqLen > 1, epochs > 0, lr > 0, warmup >= 0, clip >= 0 else {
      throw ValidationError("batch size, accumulation, epochs and learning rate must be positive; seq-len > 1")
    }
    if let steps, steps <= 0 { throw ValidationError("--steps must be positive") }
    guard ScheduleKind(rawValue: schedule) != nil else {
      throw ValidationError("--schedule must be constant, linear or cosine (got '\(schedule)')")
    }
  }

  func trainerOptions(examples: Int) -> TrainerOptions {
    var o = TrainerOptions()
    o.batchSize = batchSize
    o.accumulation = gradAccum
    o.steps = steps ?? Swift.max(1, Int((epochs * Double(examples) / Double(batchSize * gradAccum)).rounded(.up)))
    o.learningRate = lr
    o.warmup = warmup
    o.schedule = ScheduleKind(rawValue: schedule)!
    o.weightDecay = weightDecay
    o.clipNorm = clip > 0 ? clip : nil
    o.seed = seed
    o.saveEvery = saveEvery
    o.evalEvery = evalEvery
    return o
  }
}

struct SFTCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sft", abstract: "Supervised fine-tuning: token cross-entropy on completions.",
    discussion: """
      Data: JSONL with {"text"}, {"prompt","completion"} or {"messages":[{"role","content"}…]} per line. \
      The loss covers the completion (the last message for chat data) and its final EOS token, never the \
      prompt; the boundary comes from the data, not from chat-template markup.
      """)

  @OptionGroup var source: ModelSourceOptions
  @OptionGroup var optimization: OptimizationOptions
  @OptionGroup var data: DataOptions

  func run() throws {
    let r = try MethodRun(source, optimization)
    let s = try r.run(SFTMethod(padId: r.padId), try r.demonstrations(data.data), try data.evalData.map(r.demonstrations) ?? [],
                      optimization, data)
    report(s, method: "sft", out: data.out, json: data.json)
  }
}

/// Runs a method with the shared trainer: progress on stderr, checkpoints and metrics.jsonl under `out`,
/// `--resume` from the latest checkpoint there, and the final model saved in Hugging Face layout.
func runTraining<M: TrainingMethod>(model: any CausalLM, method: M, examples: [M.Example], evalExamples: [M.Example],
                                    options: TrainerOptions, out: String, resume: Bool, companions: URL?) throws
  -> TrainingSummary
{
  let outURL = URL(fileURLWithPath: out)
  try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
  let trainer = Trainer(model: model, method: method, examples: examples, evalExamples: evalExamples, options: options,
                        outputDirectory: outURL)
  let progress = ProgressLine(total: options.steps)
  if resume {
    if let step = try trainer.resume(from: outURL) {
      progress.note("\(method.name): resuming from step \(step) of \(options.steps)")
    } else {
      progress.note("\(method.name): no checkpoint under \(out) to resume from; starting at step 0")
    }
  }
  progress.note("\(method.name): \(examples.count) examples, \(model.parameterCount) parameters, \(options.steps) steps")
  let summary = try trainer.train { progress.update($0) }
  progress.finish()
  try Checkpoint.save(model, to: outURL, companionsFrom: companions)
  return summary
}

/// The one summary object (`--json`) or line a training command prints.
func report(_ summary: TrainingSummary, method: String, out: String, json: Bool) {
  if json {
    printJSON(["method": method, "steps": summary.steps, "final_loss": summary.finalLoss,
               "loss_history": summary.lossHistory, "tokens_per_second": summary.tokensPerSecond,
               "metrics": summary.metrics.filter { $0.value.isFinite }])
  } else {
    print(String(format: "%@: %d steps, final loss %.4f, %.0f tokens/s; saved %@", method, summary.steps,
                 summary.finalLoss, summary.tokensPerSecond, out))
  }
}

/// One progress line on stderr, rewritten in place on a terminal and printed every tenth of the run otherwise.
final class ProgressLine {
  let total: Int
  let interactive = isatty(STDERR_FILENO) != 0

  init(total: Int) { self.total = total }

  func note(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

  func update(_ log: StepLog) {
    let line = String(format: "step %d/%d  loss %.4f  lr %.2e  grad %.3f  %.0f tok/s  eta %@", log.step, log.totalSteps,
                      log.loss, log.learningRate, log.gradNorm, log.tokensPerSecond, Self.clock(log.eta) as NSString)
    if interactive {
      FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    } else if log.step == 1 || log.step == total || log.step % Swift.max(1, total / 10) == 0 {
      note(line)
    }
  }

  func finish() { if interactive { FileHandle.standardError.write(Data("\n".utf8)) } }

  static func clock(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return String(format: "%d:%02d", s / 60, s % 60)
  }
}
