import Alignment
import ArgumentParser
import Foundation
import LM
import NN
import Torch

extension ScheduleKind: ExpressibleByArgument {}
extension DType: ExpressibleByArgument {
  public init?(argument: String) { self.init(name: argument) }
}
extension ModelFamily: ExpressibleByArgument {}

/// `shatter train NAME` for every method in `MethodRegistry.all`, each generated from its declaration.
struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train", abstract: "Fine-tune a model with one of Shatter's objectives.",
    subcommands: MethodRegistry.all.map { methodCommand($0) })

  static func methodCommand<M: MethodDefinition>(_ method: M.Type) -> ParsableCommand.Type { MethodCommand<M>.self }
}

/// Where the model comes from: a checkpoint directory, or a fresh one of a family and size.
struct ModelSourceOptions: ParsableArguments {
  @Option(help: "Start from this Hugging Face checkpoint directory (or a .gguf file, or a PEFT adapter directory, which trains on).")
  var model: String?
  @Option(name: .customLong("init"), help: "Start from a freshly initialised model of this family instead: gpt2, llama or qwen2.")
  var initFamily: ModelFamily?
  @Option(help: "Tokenizer directory for --init (default: a byte-level tokenizer, 257 tokens).")
  var tokenizer: String?
  @Option(help: "Layers of a fresh model.") var layers = 2
  @Option(help: "Hidden size of a fresh model.") var dModel = 64
  @Option(help: "Attention heads of a fresh model.") var heads = 4
  @Option(help: "Key/value heads of a fresh Llama/Qwen2 model (default: --heads).") var kvHeads: Int?
  @Option(help: "Context length of a fresh model.") var maxPositions = 256
  @Option(help: "Where the model trains: cpu, cuda or cuda:N (a CUDA build of libtorch).") var device: Device = .cpu
  @Option(help: "Cast the model's floating-point weights to float32, float64, bfloat16 or float16 (default: as loaded).")
  var dtype: DType?

  mutating func validate() throws {
    guard (model == nil) != (initFamily == nil) else {
      throw ValidationError("give exactly one of --model DIR and --init gpt2|llama|qwen2")
    }
  }

  /// The model, its tokenizer, the directory whose tokenizer files the output should carry, and the base
  /// checkpoint's path (what a LoRA adapter trained on it records).
  func load(seed: UInt64, adapter: String? = nil) throws -> (any CausalLM, any TextTokenizer, URL, String?) {
    if let model {
      let loaded = try LoadedModel(model, adapter: adapter, device: device)
      if let dtype { loaded.model.move(to: device, dtype: dtype) }
      return (loaded.model, loaded.tokenizer, loaded.directory, loaded.source)
    }
    if adapter != nil { throw ValidationError("--adapter needs --model (the base it was trained on)") }
    try checkAvailable(device)
    var tokDir: URL
    if let tokenizer {
      tokDir = URL(fileURLWithPath: tokenizer)
    } else {
      tokDir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-bytes-\(getpid())")
      try ByteVocabulary.write(to: tokDir)
    }
    let tok = try loadTokenizer(tokDir.path)
    let eos = tok.eosTokenId.map { [$0] } ?? []
    let config = ModelConfig(family: initFamily ?? .gpt2, vocabSize: tok.vocabularySize, hiddenSize: dModel, layers: layers,
                             heads: heads, kvHeads: kvHeads, maxPositions: maxPositions, bosTokenId: tok.bosTokenId,
                             eosTokenIds: eos)
    try config.validate(source: "model flags")
    let fresh = Checkpoint.makeModel(config, generator: Generator(seed: seed))
    fresh.move(to: device, dtype: dtype)
    return (fresh, tok, tokDir, nil)
  }
}

/// Parameter-efficient training: a LoRA adapter on the base model's linear layers (only the adapter
/// trains; the run saves the adapter alone, in PEFT's layout).
struct LoRAOptions: ParsableArguments {
  @Option(help: "LoRA rank r: train a low-rank adapter instead of every weight (0: full fine-tuning).") var loraR = 0
  @Option(help: "LoRA α; the update is scaled by α/r.") var loraAlpha = 16.0
  @Option(help: "Dropout on the adapter's input during training.") var loraDropout = 0.0
  @Option(help: "Comma-separated module names to adapt, as PEFT matches them (default: q_proj,v_proj for Llama/Qwen2, c_attn for GPT-2; all-linear for every linear layer).")
  var loraTargets: String?
  @Option(help: "Continue training this LoRA adapter (PEFT layout) on --model.") var adapter: String?

  func validate() throws {
    guard loraR >= 0 else { throw ValidationError("--lora-r must be ≥ 0") }
    guard loraAlpha > 0 else { throw ValidationError("--lora-alpha must be positive") }
    guard (0..<1).contains(loraDropout) else { throw ValidationError("--lora-dropout must be in [0, 1)") }
    if adapter != nil && loraR > 0 { throw ValidationError("give --lora-r for a new adapter or --adapter to continue one, not both") }
    if loraR == 0 && loraTargets != nil { throw ValidationError("--lora-targets needs --lora-r") }
  }

  /// Attaches a fresh adapter when --lora-r is given; returns a line describing it.
  func apply(to model: any CausalLM, seed: UInt64) throws -> String? {
    guard loraR > 0 else { return nil }
    let targets = loraTargets.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
    let config = LoRAConfig(rank: loraR, alpha: loraAlpha, dropout: loraDropout, targets: targets, family: model.config.family)
    do {
      let layers = try Adapter.attach(config, to: model, seed: seed)
      return "LoRA r \(loraR), α \(loraAlpha) on \(layers.count) layers (\(config.targets.joined(separator: ",")))"
    } catch let e as CheckpointError {
      throw UserError("--lora-targets: \(e.message)")
    }
  }
}

/// Optimisation flags shared by every method; each default (and its help) comes from the method's
/// `trainerDefaults`, so PPO's constant 1e-4 and SFT's cosine 3e-4 are declared once, in their files.
struct OptimizationOptions<M: MethodDefinition>: ParsableArguments {
  static var defaults: TrainerOptions { M.trainerDefaults }
  static func shown(_ value: Double) -> String { String(describing: value) }

  @Option(help: "Examples per micro-batch (online methods: prompts per rollout; default \(Self.defaults.batchSize)).")
  var batchSize: Int?
  @Option(help: "Micro-batches per optimizer step (gradient accumulation; default \(Self.defaults.accumulation)).")
  var gradAccum: Int?
  @Option(help: "Tokens per sequence; longer examples keep their first tokens.") var seqLen = 256
  @Option(help: "Trainer steps: optimizer steps, or rollouts for online methods (default: --epochs over the data; \(Self.defaults.steps) for online methods).")
  var steps: Int?
  @Option(help: "Passes over the data (offline methods, used when --steps is not given).") var epochs = 1.0
  @Option(help: "Peak learning rate (AdamW, betas 0.9/0.95; default \(shown(Self.defaults.learningRate))).") var lr: Double?
  @Option(help: "Learning-rate schedule after warm-up: constant, linear (to 0) or cosine (to 0) (default \(Self.defaults.schedule.rawValue)).")
  var schedule: ScheduleKind?
  @Option(help: "Linear warm-up steps.") var warmup = 0
  @Option(help: "Decoupled weight decay on matrices (not on biases or norms).") var weightDecay = 0.0
  @Option(help: "Clip the global gradient norm to this (0: off).") var clip = 1.0
  @Option(help: "Seed for initialisation, data order, sampling and every method's own random stream.") var seed: UInt64 = 0
  @Option(help: "Write a resumable checkpoint under --out every N steps (0: only the final model).")
  var saveEvery = 0
  @Option(help: "Evaluate on --eval-data every N steps (0: once at the end).") var evalEvery = 0
  @Flag(help: "Continue from the latest checkpoint under --out: weights, optimizer, schedule, every RNG stream and data position.")
  var resume = false
  @Option(help: "Where metrics go beside metrics.jsonl: tensorboard (event files under --out/tensorboard/) or none.")
  var reportTo = "none"
  @Option(help: "A YAML file of option values (e.g. `lr: 3e-4`); flags on the command line override it.")
  var config: String?
  @Option(help: "Data parallel (WORLD_SIZE > 1, as torchrun or `shatter launch` sets it): seconds to wait for the other ranks at start and at each collective before stopping with an error.")
  var distTimeout = 300.0
  @Option(help: "Refuse to start when the memory plan printed before step 1 exceeds this (e.g. 8G, 512M; default: the memory the machine has available now).")
  var maxMemory: String?
  @Option(help: "Mixed precision: no; bf16 (the forward passes autocast to bfloat16, as torch.autocast: weights, gradients, logits, loss and update stay float32; about 1.7× the tokens/s on CPUs with AVX512-BF16); or fp16 (CUDA only).")
  var mixedPrecision = "no"

  func validate() throws {
    let checks: [(Bool, String)] = [
      ((batchSize ?? 1) > 0, "--batch-size must be positive"), ((gradAccum ?? 1) > 0, "--grad-accum must be positive"),
      (seqLen > 1, "--seq-len must be at least 2"), (epochs > 0, "--epochs must be positive"),
      ((lr ?? 1) > 0 && (lr ?? 1).isFinite, "--lr must be positive (got \(lr ?? 0))"), (warmup >= 0, "--warmup must be ≥ 0"),
      (clip >= 0, "--clip must be ≥ 0 (0: off)"), (weightDecay >= 0, "--weight-decay must be ≥ 0"),
      (saveEvery >= 0, "--save-every must be ≥ 0"), (evalEvery >= 0, "--eval-every must be ≥ 0"),
      (distTimeout > 0, "--dist-timeout must be positive"),
      (["no", "bf16", "fp16"].contains(mixedPrecision), "--mixed-precision \(mixedPrecision): expected no, bf16 or fp16"),
    ]
    if let (_, message) = checks.first(where: { !$0.0 }) { throw ValidationError(message) }
    if let steps, steps <= 0 { throw ValidationError("--steps must be positive") }
    if let maxMemory, MemoryPlan.parseSize(maxMemory) == nil {
      throw ValidationError("--max-memory \(maxMemory): expected a size such as 8G, 512M or 1073741824")
    }
    guard ["none", "tensorboard"].contains(reportTo) else { throw ValidationError("--report-to \(reportTo): expected tensorboard or none") }
  }

  var trainerOptions: TrainerOptions {
    var o = Self.defaults
    o.batchSize = batchSize ?? o.batchSize
    o.accumulation = gradAccum ?? o.accumulation
    o.steps = steps ?? o.steps
    o.epochs = steps == nil ? epochs : nil
    o.learningRate = lr ?? o.learningRate
    o.warmup = warmup
    o.schedule = schedule ?? o.schedule
    o.weightDecay = weightDecay
    o.clipNorm = clip > 0 ? clip : nil
    o.seed = seed
    o.saveEvery = saveEvery
    o.evalEvery = evalEvery
    o.tensorBoard = reportTo == "tensorboard"
    o.mixedPrecision = ["bf16": DType.bfloat16, "fp16": .float16][mixedPrecision]
    return o
  }
}

/// Flags every training command shares beside the model and optimisation groups.
struct DataOptions: ParsableArguments {
  @Option(help: "Training data (JSONL).") var data: String
  @Option(help: "Held-out data (JSONL, same format) for eval/* metrics.") var evalData: String?
  @Option(help: "Write the checkpoint (Hugging Face layout), metrics.jsonl and resumable checkpoints here.")
  var out: String
  @Flag(help: "Print one JSON summary object and nothing else on stdout (progress goes to stderr).") var json = false
}

/// One method's `shatter train NAME`: the shared groups, plus the method's own options as declared in its
/// file (listed under the command's help and parsed against that declaration).
struct MethodCommand<M: MethodDefinition>: ParsableCommand {
  static var configuration: CommandConfiguration {
    CommandConfiguration(commandName: M.commandName, abstract: M.abstract, discussion: discussion)
  }

  static var discussion: String {
    guard !M.options.isEmpty else { return M.discussion }
    // Wrapped here with a hanging indent (as ArgumentParser lays out OPTIONS), so no line needs rewrapping.
    let indent = 28, width = 78
    let rows = M.options.map { o -> String in
      let flag = "  --\(o.name)" + (o.kind == .flag ? "" : " <\(o.kind == .string ? "value" : "n")>")
      let words = (o.help + (o.defaultValue.map { " (default: \($0))" } ?? "")).split(separator: " ")
      var lines: [String] = []
      var line = flag.count + 2 <= indent ? flag.padding(toLength: indent, withPad: " ", startingAt: 0) : flag
      if line.count > indent {
        lines.append(line)
        line = String(repeating: " ", count: indent)
      }
      for w in words {
        if line.count + w.count + 1 > width, line.count > indent {
          lines.append(line)
          line = String(repeating: " ", count: indent)
        }
        line += (line.count > indent ? " " : "") + w
      }
      return (lines + [line]).joined(separator: "\n")
    }
    return M.discussion + "\n\nMETHOD OPTIONS:\n" + rows.joined(separator: "\n")
  }

  @OptionGroup var source: ModelSourceOptions
  @OptionGroup(title: "LoRA") var lora: LoRAOptions
  @OptionGroup var optimization: OptimizationOptions<M>
  @OptionGroup var data: DataOptions
  @Argument(parsing: .allUnrecognized, help: .hidden) var methodFlags: [String] = []

  func validate() throws {
    do { _ = try MethodArguments(parsing: methodFlags, options: M.options) } catch let e as MethodOptionError {
      throw ValidationError(e.description)
    }
  }

  func run() throws {
    let (model, tokenizer, companions, base) = try source.load(seed: optimization.seed, adapter: lora.adapter)
    let adapterLine = try lora.apply(to: model, seed: optimization.seed)
    var setup = MethodSetup(model: model, tokenizer: tokenizer, companions: companions, seed: optimization.seed,
                            maxLength: optimization.seqLen)
    setup.baseModel = base
    let method: M
    do { method = try M.make(try MethodArguments(parsing: methodFlags, options: M.options), setup) } catch let e as MethodOptionError {
      throw UserError(e.description)
    }
    let plan = try checkMemory(model: model, method: method, setup: setup)
    let outURL = URL(fileURLWithPath: data.out)
    let dataURL = URL(fileURLWithPath: data.data), evalURL = data.evalData.map { URL(fileURLWithPath: $0) }
    // The data is read (and checked) before anything is written under --out.
    let trainer = try method.trainer(data: dataURL, evalData: evalURL, setup: setup, options: optimization.trainerOptions, out: outURL)
    let options = trainer.options
    try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
    // Data parallel when a launcher (torchrun's variables) says so; only rank 0 prints and writes.
    let env = try DistributedEnvironment.current()
    // Updates on every core of the intra-op pool, sampling on OpenBLAS's (see ThreadPlan).
    trainer.samplingThreads = .current
    ThreadPlan.training(on: source.device, processes: env?.localWorldSize ?? 1).apply()
    if let env, env.worldSize > 1 {
      let backend = source.device == .cpu ? "gloo" : "nccl"
      let group = try ProcessGroup(env, backend: backend, timeout: optimization.distTimeout)
      do { try trainer.distribute(over: group) } catch let e as DataParallelError { throw UserError(e.message) }
    }
    let progress = ProgressLine(total: options.steps, metrics: M.progressMetrics, silent: !trainer.isLeader)
    if optimization.resume {
      if let step = try trainer.resume(from: outURL) {
        progress.note("\(method.name): resuming from step \(step) of \(options.steps)")
      } else {
        progress.note("\(method.name): no checkpoint under \(data.out) to resume from; starting at step 0")
      }
    }
    if let adapterLine { progress.note(adapterLine) }
    let trainable = model.trainableParameters().reduce(0) { $0 + $1.tensor.count }
    progress.note("\(method.name): \(trainer.sourceCount) \(trainer.online ? "prompts" : "examples"), "
      + "\(model.parameterCount) parameters" + (trainable < model.parameterCount ? " (\(trainable) trained)" : "")
      + ", \(options.steps) steps"
      + (trainer.group.map { ", data parallel over \($0.worldSize) ranks (\($0.backend))" } ?? ""))
    let summary = try trainer.train { progress.update($0) }
    progress.finish()
    guard trainer.isLeader else { return }
    try method.save(to: outURL, setup: setup)
    report(summary, method: M.self, out: data.out, json: data.json, plan: plan)
  }

  /// The memory plan of this run, printed (rank 0) before anything is read or allocated for training; throws
  /// when it exceeds --max-memory (default: what the machine has available now, plus what this process holds).
  func checkMemory(model: any CausalLM, method: M, setup: MethodSetup) throws -> MemoryPlan {
    let env = try? DistributedEnvironment.current()
    let world = env?.worldSize ?? 1
    let perRank = (optimization.trainerOptions.batchSize + world - 1) / world
    let resident = ProcessMemory.resident ?? 0
    let plan = MemoryPlan.training(model: model, extraTrainable: method.extraParameters.reduce(0) { $0 + $1.tensor.count },
                                   sequences: perRank * M.sequencesPerExample, tokens: setup.maxLength, resident: resident)
    let limit: Int?, source: String
    if let text = optimization.maxMemory {
      (limit, source) = (MemoryPlan.parseSize(text), "--max-memory \(text)")
    } else {
      (limit, source) = (ProcessMemory.available.map { $0 + resident }, "the memory available now; set --max-memory to override")
    }
    if (env?.rank ?? 0) == 0 {
      FileHandle.standardError.write(Data((plan.lines(limit: limit).joined(separator: "\n") + "\n").utf8))
    }
    if let limit { try plan.check(limit: limit, source: source) }
    return plan
  }
}

/// The one summary object (`--json`) or line a training command prints.
func report<M: MethodDefinition>(_ summary: TrainingSummary, method: M.Type, out: String, json: Bool, plan: MemoryPlan? = nil) {
  if json {
    var object: [String: Any] = [
      "method": M.commandName, "steps": summary.steps, "final_loss": summary.finalLoss, "loss_history": summary.lossHistory,
      "tokens_per_second": summary.tokensPerSecond, "metrics": summary.metrics.filter { $0.value.isFinite },
    ]
    if let plan {
      // The estimate beside what the process really reached, so the plan can be checked run by run.
      object["memory_plan"] = Dictionary(uniqueKeysWithValues: plan.terms.map { ($0.name.replacingOccurrences(of: " ", with: "_"), $0.bytes) } + [("total", plan.total)])
      object["peak_resident_bytes"] = ProcessMemory.peakResident ?? 0
    }
    for (metric, key) in M.summaryHistories { object[key] = summary.metricHistory.map { $0[metric] ?? .nan } }
    printJSON(object)
  } else {
    var line = String(format: "%@: %d steps, final loss %.4f, %.0f tokens/s", M.commandName, summary.steps, summary.finalLoss,
                      summary.tokensPerSecond)
    for (metric, _) in M.summaryHistories {
      let h = summary.metricHistory.compactMap { $0[metric] }
      line += String(format: ", %@ %.4f → %.4f", metric, h.first ?? .nan, h.last ?? .nan)
    }
    print(line + "; saved \(out)")
  }
}

/// One progress line on stderr, rewritten in place on a terminal and printed every tenth of the run otherwise.
final class ProgressLine {
  let total: Int
  let metrics: [String]
  let interactive = isatty(STDERR_FILENO) != 0

  /// Ranks other than 0 of a data-parallel run print nothing.
  let silent: Bool

  init(total: Int, metrics: [String] = [], silent: Bool = false) {
    self.total = total
    self.metrics = metrics
    self.silent = silent
  }

  func note(_ s: String) { if !silent { FileHandle.standardError.write(Data((s + "\n").utf8)) } }

  func update(_ log: StepLog) {
    if silent { return }
    var line = String(format: "step %d/%d  loss %.4f  lr %.2e  grad %.3f  %.0f tok/s  eta %@", log.step, log.totalSteps,
                      log.loss, log.learningRate, log.gradNorm, log.tokensPerSecond, Self.clock(log.eta) as NSString)
    for m in metrics { line += String(format: "  %@ %.4f", m, log.metrics[m] ?? .nan) }
    if interactive {
      FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    } else if log.step == 1 || log.step == total || log.step % Swift.max(1, total / 10) == 0 {
      note(line)
    }
  }

  func finish() { if interactive && !silent { FileHandle.standardError.write(Data("\n".utf8)) } }

  static func clock(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return String(format: "%d:%02d", s / 60, s % 60)
  }
}
