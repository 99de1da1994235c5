import Foundation
import LM
import NN
import Torch

/// The learning-rate schedule's shape, chosen by name on the command line.
public enum ScheduleKind: String, Sendable, CaseIterable {
  case constant, linear, cosine

  public func schedule(warmup: Int, total: Int) -> LRSchedule {
    switch self {
    case .constant: return warmup > 0 ? .warmupConstant(warmup: warmup) : .constant
    case .linear: return .warmupLinear(warmup: warmup, total: total)
    case .cosine: return .warmupCosine(warmup: warmup, total: total)
    }
  }
}

public struct TrainerOptions: Sendable {
  /// Examples per micro-batch (offline), or prompts per rollout (online).
  public var batchSize = 8
  public var accumulation = 1
  /// Trainer steps: optimizer steps (offline), or rollouts each followed by their updates (online).
  public var steps = 100
  public var learningRate = 3e-4
  public var warmup = 0
  public var schedule = ScheduleKind.cosine
  public var weightDecay = 0.0
  public var clipNorm: Double? = 1.0
  public var seed: UInt64 = 0
  /// Write a resumable checkpoint every this many steps (0: only at the end).
  public var saveEvery = 0
  /// Evaluate on the held-out examples every this many steps (0: only at the end, if any).
  public var evalEvery = 0
  /// Offline runs: when set, `steps` becomes this many passes over the examples (rounded up).
  public var epochs: Double? = nil
  /// Also write each step's metrics as TensorBoard event files under `<out>/tensorboard/`.
  public var tensorBoard = false
  /// Mixed precision: the loss's forward passes run under libtorch's autocast to this dtype (bfloat16; on
  /// CUDA float16 too), so matrix products run in it while the weights, their gradients, the logits (the
  /// model returns them in float32), the loss and the optimizer update stay float32. Nil: no autocast.
  /// Rollouts (sampling) run unchanged.
  public var mixedPrecision: DType? = nil
  public init() {}
}

/// One micro-batch's loss — the mean over its own items — and how much it counts in its window.
public struct MicroBatchLoss {
  public let loss: Tensor
  public let metrics: [String: Tensor]
  public let tokens: Int
  public init(loss: Tensor, metrics: [String: Tensor] = [:], tokens: Int) {
    self.loss = loss
    self.metrics = metrics
    self.tokens = tokens
  }
}

/// A training objective as the trainer sees it: how much each example counts when micro-batches are
/// accumulated (tokens for token-level losses, 1 for pairwise ones), and the loss of a micro-batch.
public protocol TrainingMethod: AnyObject {
  associatedtype Example
  var name: String { get }
  func weight(of example: Example) -> Double
  func loss(_ batch: [Example], model: any CausalLM, step: Int) -> MicroBatchLoss
  /// The loss on held-out examples. It must not draw from the method's training streams, so that
  /// evaluating never changes the training trajectory; the default is `loss` (for deterministic methods).
  func evaluationLoss(_ batch: [Example], model: any CausalLM, step: Int) -> MicroBatchLoss
  /// Parameters the method owns beside the model (a reward or value head), trained and checkpointed
  /// with it.
  var extraParameters: [(name: String, tensor: Tensor)] { get }
  /// The random streams the method draws from in training, saved in checkpoints so resume is exact.
  var generators: [(name: String, generator: Generator)] { get }
}

extension TrainingMethod {
  public func evaluationLoss(_ batch: [Example], model: any CausalLM, step: Int) -> MicroBatchLoss {
    loss(batch, model: model, step: step)
  }
  public var extraParameters: [(name: String, tensor: Tensor)] { [] }
  public var generators: [(name: String, generator: Generator)] { [] }
}

/// What a rollout produced: the examples to optimise on and what to log about them.
public struct Rollout<Example> {
  public let examples: [Example]
  public let metrics: [String: Double]
  public init(examples: [Example], metrics: [String: Double]) {
    self.examples = examples
    self.metrics = metrics
  }
}

/// A method that learns from the live policy's own samples (PPO, GRPO, RLOO, online DPO, CEL's game
/// training): each trainer step draws prompts, `rollout` samples and scores them with the current
/// weights, then the trainer runs `passes` shuffled passes over the rollout in optimizer steps of
/// `miniBatch(promptsPerStep:)` examples.
public protocol OnlineMethod: TrainingMethod {
  associatedtype Prompt
  func rollout(_ prompts: [Prompt], model: any CausalLM, step: Int) throws -> Rollout<Example>
  /// Metrics of the current policy on held-out prompts, from streams of its own (never the training ones).
  func evaluate(_ prompts: [Prompt], model: any CausalLM, step: Int) throws -> [String: Double]
  var passes: Int { get }
  /// Examples per optimizer step when each rollout samples `promptsPerStep` prompts (`--batch-size`).
  func miniBatch(promptsPerStep: Int) -> Int
}

/// What the trainer reports after each step.
public struct StepLog: Sendable {
  public let step: Int
  public let totalSteps: Int
  public let loss: Double
  public let learningRate: Double
  public let gradNorm: Double
  public let tokensPerSecond: Double
  public let elapsed: Double
  public let metrics: [String: Double]
  public var eta: Double { elapsed / Double(Swift.max(1, step - firstStep + 1)) * Double(totalSteps - step) }
  var firstStep = 1
}

public struct TrainingSummary: Sendable {
  public let steps: Int
  public let finalLoss: Double
  public let lossHistory: [Double]
  public let tokensPerSecond: Double
  public let metrics: [String: Double]
  /// Every step's metrics, in order (the run's metrics.jsonl, for summaries such as a reward curve).
  public let metricHistory: [[String: Double]]
}

/// Training stopped because a number went NaN or infinite; names the step and the metric.
public struct NonFiniteError: Error, CustomStringConvertible {
  public let step: Int
  public let metric: String
  public let value: Double
  public init(step: Int, metric: String, value: Double) {
    self.step = step
    self.metric = metric
    self.value = value
  }
  public var description: String {
    "step \(step): \(metric) is \(value); training stopped before applying that update (the last checkpoint is kept)"
  }
}

/// The one trainer every method runs in. Offline methods draw examples (seeded shuffling each epoch),
/// online ones draw prompts and roll them out on the live weights; then gradient accumulation normalised
/// over the whole window, AdamW with decay on matrices only, the schedule with warm-up, global grad-norm
/// clipping, NaN/Inf detection, periodic evaluation, metrics as JSONL with one device sync per optimizer
/// step, and atomic checkpoints from which `resume` continues exactly (weights, optimizer, schedule
/// position, every RNG stream — the trainer's and the method's — and the data position).
public final class Trainer<Method: TrainingMethod> {
  public let model: any CausalLM
  public let method: Method
  public let options: TrainerOptions
  public let optimizer: AdamW
  /// Whether the run rolls out the live policy (online) rather than reading examples.
  public let online: Bool
  let generator: Generator
  /// Where checkpoints and metrics.jsonl go (nil: nowhere).
  let outputDirectory: URL?
  /// How many things (examples or prompts) the data order runs over.
  public let sourceCount: Int
  /// Items drawn from the data order per step.
  let drawn: Int
  /// The step's examples from the drawn items, with metrics of their making (a rollout's).
  let collect: (_ indices: [Int], _ step: Int) throws -> Rollout<Method.Example>
  let evaluator: (_ step: Int) throws -> [String: Double]
  /// Passes over each step's examples, and examples per optimizer step (nil: all, in one step).
  let passes: Int
  let updateSize: Int?
  var order: [Int] = []
  var cursor = 0
  var step = 0
  var history: [Double] = []
  /// Data parallel (`distribute(over:)`): this process's group; nil for a single process.
  public internal(set) var group: ProcessGroup?
  /// Whether this process writes checkpoints and metrics (rank 0, or the only process).
  public var isLeader: Bool { (group?.rank ?? 0) == 0 }
  /// The thread plan sampling runs under (rollouts and online evaluation), when it differs from the one the
  /// updates run under (`ThreadPlan.training` moves the cores to the intra-op pool; decoding is faster on
  /// OpenBLAS's). Nil: whatever is current.
  public var samplingThreads: ThreadPlan?

  func sampling<R>(_ body: () throws -> R) rethrows -> R { try (samplingThreads ?? .current).during(body) }

  init(model: any CausalLM, method: Method, sourceCount: Int, drawn: Int, passes: Int, updateSize: Int?,
       options: TrainerOptions, outputDirectory: URL?,
       collect: @escaping (_ indices: [Int], _ step: Int) throws -> Rollout<Method.Example>,
       evaluator: @escaping (_ step: Int) throws -> [String: Double]) {
    precondition(sourceCount > 0, "no training examples")
    self.model = model
    self.method = method
    online = updateSize != nil
    var options = options
    if let epochs = options.epochs, !online {
      options.steps = Swift.max(1, Int((epochs * Double(sourceCount) / Double(options.batchSize * options.accumulation)).rounded(.up)))
    }
    self.options = options
    self.outputDirectory = outputDirectory
    self.sourceCount = sourceCount
    self.drawn = drawn
    self.passes = passes
    self.updateSize = updateSize
    self.collect = collect
    self.evaluator = evaluator
    generator = Generator(seed: options.seed)
    optimizer = AdamW(ParameterGroup.decayMatricesOnly(model.trainableParameters() + method.extraParameters,
                                                       weightDecay: options.weightDecay),
                      learningRate: options.learningRate, betas: (0.9, 0.95))
  }

  /// An offline run over `examples`: each step is one optimizer step over `accumulation` micro-batches.
  public convenience init(model: any CausalLM, method: Method, examples: [Method.Example],
                          evalExamples: [Method.Example] = [], options: TrainerOptions, outputDirectory: URL? = nil) {
    let evaluate = { (step: Int) in
      try Self.evaluate(method, model: model, examples: evalExamples, batchSize: options.batchSize, step: step,
                        autocast: options.mixedPrecision)
    }
    self.init(model: model, method: method, sourceCount: examples.count, drawn: options.batchSize * options.accumulation,
              passes: 1, updateSize: nil, options: options, outputDirectory: outputDirectory,
              collect: { indices, _ in Rollout(examples: indices.map { examples[$0] }, metrics: [:]) }, evaluator: evaluate)
  }

  /// Mean loss and metrics over held-out examples, without gradients.
  static func evaluate(_ method: Method, model: any CausalLM, examples: [Method.Example], batchSize: Int, step: Int,
                       autocast: DType? = nil) throws -> [String: Double]
  {
    guard !examples.isEmpty else { return [:] }
    model.setTraining(false)
    defer { model.setTraining(true) }
    return try withoutGradients {
      var sums: [String: Tensor] = [:]
      var total = 0.0
      for start in stride(from: 0, to: examples.count, by: batchSize) {
        let batch = Array(examples[start..<Swift.min(start + batchSize, examples.count)])
        let w = batch.reduce(0) { $0 + method.weight(of: $1) }
        let r = try withAutocast(autocast, device: model.device) {
          method.evaluationLoss(batch, model: model, step: step)
        }
        accumulate(&sums, ["loss": r.loss], weight: w)
        accumulate(&sums, r.metrics, weight: w)
        total += w
      }
      return Dictionary(uniqueKeysWithValues: readScalars(sums).map { ("eval/" + $0.key, $0.value / Swift.max(total, 1e-12)) })
    }
  }

  /// sums[k] += weight·v, in float64 (the same arithmetic as adding the numbers one by one).
  static func accumulate(_ sums: inout [String: Tensor], _ values: [String: Tensor], weight: Double) {
    for (k, v) in values {
      let term = v.detached().to(.float64) * weight
      sums[k] = sums[k].map { $0 + term } ?? term
    }
  }

  /// The next `count` indices of the data order, reshuffled with the trainer's generator at each epoch.
  func draw(_ count: Int) -> [Int] {
    var out: [Int] = []
    while out.count < count {
      if cursor >= order.count {
        order = Tensor.randperm(sourceCount, generator: generator).toArray(Int.self)
        cursor = 0
      }
      out.append(order[cursor])
      cursor += 1
    }
    return out
  }

  /// One optimizer step on `examples`, in micro-batches of `batchSize`; returns its metrics (read in one sync).
  ///
  /// Data parallel: each rank runs its shard of every micro-batch, each shard's loss weighted by its share of
  /// the whole window's weight, so the gradients summed over the ranks are exactly the single-process ones.
  func optimizerStep(_ examples: [Method.Example], step: Int, tokens: inout Int) throws -> [String: Double] {
    optimizer.zeroGrad()
    let (micro, windowWeight) = try microBatches(examples)
    var sums: [String: Tensor] = [:]
    var stepTokens = 0
    for batch in micro where !batch.isEmpty {
      let w = batch.reduce(0) { $0 + method.weight(of: $1) }
      let r = try withAutocast(options.mixedPrecision, device: model.device) { method.loss(batch, model: model, step: step) }
      let share = w / windowWeight
      let scaled = r.loss * share
      scaled.backward()
      Self.accumulate(&sums, ["loss": scaled], weight: 1)
      Self.accumulate(&sums, r.metrics, weight: share)
      stepTokens += r.tokens
    }
    if let group { stepTokens = try reduceAcrossRanks(group, sums: &sums, tokens: stepTokens) }
    tokens += stepTokens
    sums["grad_norm"] = optimizer.clipGradientNorm(maxNorm: options.clipNorm)
    let values = readScalars(sums)
    for key in ["loss", "grad_norm"] where !(values[key] ?? .nan).isFinite {
      throw NonFiniteError(step: step, metric: key, value: values[key] ?? .nan)
    }
    optimizer.step()
    return values
  }

  public func train(progress: (StepLog) -> Void = { _ in }) throws -> TrainingSummary {
    let schedule = options.schedule.schedule(warmup: options.warmup, total: options.steps)
    let metricsLog = try (isLeader ? outputDirectory : nil).map {
      try MetricsLog(url: $0.appendingPathComponent("metrics.jsonl"), truncateAfter: step)
    }
    // A dtype the device cannot autocast to (float16 on the CPU) fails here, before anything is written.
    try withAutocast(options.mixedPrecision, device: model.device) {}
    if let group { try broadcastParameters(group) }
    var tokens = 0
    let board = try (isLeader && options.tensorBoard ? outputDirectory : nil).map {
      try TensorBoardWriter(directory: $0.appendingPathComponent("tensorboard"))
    }
    var metricHistory = metricsLog?.kept ?? []
    let start = Date()
    let firstStep = step + 1
    model.setTraining(true)
    while step < options.steps {
      let current = step + 1
      optimizer.learningRate = schedule.learningRate(at: current - 1, peak: options.learningRate)
      let rollout = try sampling { try collectShard(draw(drawn), step: current) }
      model.setTraining(true)
      let examples = rollout.examples
      var sums: [String: Double] = [:]
      var updates = 0
      for _ in 0..<passes {
        let sequence = updateSize == nil ? Array(examples.indices)
          : Tensor.randperm(examples.count, generator: generator).toArray(Int.self)
        let size = updateSize.map { Swift.max(1, $0 / (group?.worldSize ?? 1)) } ?? Swift.max(1, examples.count)
        for s in stride(from: 0, to: sequence.count, by: size) {
          let window = sequence[s..<Swift.min(s + size, sequence.count)].map { examples[$0] }
          for (k, v) in try optimizerStep(window, step: current, tokens: &tokens) { sums[k, default: 0] += v }
          updates += 1
        }
      }
      step = current
      var metrics = rollout.metrics
      for (k, v) in sums { metrics[k] = v / Double(Swift.max(1, updates)) }
      let total = metrics["loss"] ?? .nan
      history.append(total)
      metrics["learning_rate"] = optimizer.learningRate
      let evaluate = { [step] in try self.online ? self.sampling { try self.evaluator(step) } : self.evaluator(step) }
      if options.evalEvery > 0, step % options.evalEvery == 0 { metrics.merge(try evaluate()) { $1 } }
      if step == options.steps, options.evalEvery == 0 { metrics.merge(try evaluate()) { $1 } }
      try metricsLog?.append(step: step, metrics)
      try board?.scalars(step: step, metrics)
      metricHistory.append(metrics)
      let elapsed = Date().timeIntervalSince(start)
      var log = StepLog(step: step, totalSteps: options.steps, loss: total, learningRate: optimizer.learningRate,
                        gradNorm: metrics["grad_norm"] ?? .nan, tokensPerSecond: Double(tokens) / Swift.max(elapsed, 1e-9),
                        elapsed: elapsed, metrics: metrics)
      log.firstStep = firstStep
      progress(log)
      if let dir = outputDirectory, isLeader, options.saveEvery > 0, step % options.saveEvery == 0, step < options.steps {
        do {
          try saveCheckpoint(in: dir)
        } catch {
          // The partial directory is never renamed into place, so the checkpoints before it stand.
          let last = (try? Self.checkpoints(in: dir).last)?.map { "\($0.url.lastPathComponent) (step \($0.step)) is intact; "
            + "--resume continues from it" } ?? "there is no earlier checkpoint"
          throw CheckpointError("the checkpoint at step \(step) could not be written: \(error); \(last)")
        }
      }
    }
    let elapsed = Date().timeIntervalSince(start)
    return TrainingSummary(steps: step, finalLoss: history.last ?? .nan, lossHistory: history,
                           tokensPerSecond: Double(tokens) / Swift.max(elapsed, 1e-9), metrics: metricHistory.last ?? [:],
                           metricHistory: metricHistory)
  }

  // MARK: checkpoints

  struct State: Codable {
    var method: String
    var step: Int
    var cursor: Int
    var order: [Int]
    var lossHistory: [Double]
    var seed: UInt64
  }

  static func checkpointName(_ step: Int) -> String { String(format: "checkpoint-%06d", step) }

  /// Every random stream of the run by name: the trainer's data order and the method's own.
  var streams: [(name: String, generator: Generator)] {
    [("generator", generator)] + method.generators.map { ("method/" + $0.name, $0.generator) }
  }

  /// Writes `checkpoint-NNNNNN/` (model in Hugging Face layout, optimizer, trainer state, RNG) under
  /// `directory`: built as a hidden partial directory and renamed into place, so a kill at any moment
  /// leaves either the whole checkpoint or none. Older checkpoints beyond the last two are removed.
  public func saveCheckpoint(in directory: URL) throws {
    let fm = FileManager.default
    let final = directory.appendingPathComponent(Self.checkpointName(step))
    let partial = directory.appendingPathComponent(".\(Self.checkpointName(step)).partial")
    try? fm.removeItem(at: partial)
    try fm.createDirectory(at: partial, withIntermediateDirectories: true)
    try Checkpoint.save(model, to: partial)
    try optimizer.save(to: partial.appendingPathComponent("optimizer.safetensors"))
    try Safetensors.save(Dictionary(uniqueKeysWithValues: streams.map { ($0.name, $0.generator.state) }),
                         to: partial.appendingPathComponent("rng.safetensors"))
    let extras = method.extraParameters
    if !extras.isEmpty {
      try Safetensors.save(Dictionary(uniqueKeysWithValues: extras.map { ($0.name, $0.tensor) }),
                           to: partial.appendingPathComponent("extras.safetensors"))
    }
    let state = State(method: method.name, step: step, cursor: cursor, order: order, lossHistory: history, seed: options.seed)
    try JSONEncoder().encode(state).write(to: partial.appendingPathComponent("trainer_state.json"))
    try? fm.removeItem(at: final)
    try fm.moveItem(at: partial, to: final)
    let older = try Self.checkpoints(in: directory).dropLast(2)
    for (_, url) in older { try? fm.removeItem(at: url) }
  }

  /// Completed checkpoints under `directory`, oldest first.
  public static func checkpoints(in directory: URL) throws -> [(step: Int, url: URL)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    return names.compactMap { name -> (Int, URL)? in
      guard name.hasPrefix("checkpoint-"), let n = Int(name.dropFirst("checkpoint-".count)) else { return nil }
      return (n, directory.appendingPathComponent(name))
    }.sorted { $0.0 < $1.0 }
  }

  /// Continues from the latest checkpoint under `directory`; returns its step (nil when there is none).
  @discardableResult
  public func resume(from directory: URL) throws -> Int? {
    guard let (_, url) = try Self.checkpoints(in: directory).last else { return nil }
    let data = try Data(contentsOf: url.appendingPathComponent("trainer_state.json"))
    guard let state = try? JSONDecoder().decode(State.self, from: data) else {
      throw CheckpointError("\(url.path)/trainer_state.json: not a Shatter trainer state")
    }
    guard state.method == method.name else {
      throw CheckpointError("\(url.path): a '\(state.method)' run cannot be resumed as '\(method.name)'")
    }
    guard state.step <= options.steps else {
      throw CheckpointError("\(url.path): the checkpoint is at step \(state.step), past --steps \(options.steps)")
    }
    try Checkpoint.restore(model, from: url)
    try optimizer.load(from: url.appendingPathComponent("optimizer.safetensors"))
    let rng = try Safetensors.load(url.appendingPathComponent("rng.safetensors"))
    for (name, g) in streams {
      guard let s = rng[name] else { throw CheckpointError("\(url.path)/rng.safetensors: no '\(name)' tensor") }
      try g.setState(s)
    }
    let extras = method.extraParameters
    if !extras.isEmpty {
      let saved = try Safetensors.load(url.appendingPathComponent("extras.safetensors"))
      for (name, t) in extras {
        guard let v = saved[name], v.shape == t.shape else {
          throw CheckpointError("\(url.path)/extras.safetensors: missing or misshapen '\(name)'")
        }
        withoutGradients { t.copy_(v) }
      }
    }
    step = state.step
    cursor = state.cursor
    order = state.order
    history = state.lossHistory
    return step
  }
}

extension Trainer where Method: OnlineMethod {
  /// An online run: each step draws `options.batchSize` prompts, rolls them out on the live policy, then
  /// makes `method.passes` shuffled passes of optimizer steps over `method.miniBatch(promptsPerStep:)`
  /// examples each.
  public convenience init(model: any CausalLM, method: Method, prompts: [Method.Prompt], evalPrompts: [Method.Prompt] = [],
                          options: TrainerOptions, outputDirectory: URL? = nil) {
    self.init(model: model, method: method, sourceCount: prompts.count, drawn: options.batchSize, passes: method.passes,
              updateSize: method.miniBatch(promptsPerStep: options.batchSize), options: options, outputDirectory: outputDirectory,
              collect: { indices, step in
                model.setTraining(false)
                return try method.rollout(indices.map { prompts[$0] }, model: model, step: step)
              },
              evaluator: { step in
                guard !evalPrompts.isEmpty else { return [:] }
                model.setTraining(false)
                defer { model.setTraining(true) }
                return try method.evaluate(evalPrompts, model: model, step: step).reduce(into: [:]) { $0["eval/" + $1.key] = $1.value }
              })
  }
}

/// Appends one `{"step": N, "data": {…}}` object per line; on resume, lines past the resumed step are
/// dropped so the file reads as one uninterrupted run.
public final class MetricsLog {
  let url: URL
  /// The kept lines' metrics, in order (what a resumed run had logged before).
  public private(set) var kept: [[String: Double]] = []

  public init(url: URL, truncateAfter step: Int) throws {
    self.url = url
    let fm = FileManager.default
    if step == 0 || !fm.fileExists(atPath: url.path) {
      try Data().write(to: url)
      return
    }
    let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    var lines: [Substring] = []
    for line in text.split(separator: "\n") {
      guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let s = obj["step"] as? Int, s <= step
      else { continue }
      lines.append(line)
      kept.append(((obj["data"] as? [String: Any]) ?? [:]).mapValues { ($0 as? Double) ?? .nan })
    }
    try Data(lines.map { $0 + "\n" }.joined().utf8).write(to: url)
  }

  public func append(step: Int, _ metrics: [String: Double]) throws {
    let clean = metrics.mapValues { $0.isFinite ? $0 as Any : NSNull() }
    let line = try JSONSerialization.data(withJSONObject: ["step": step, "data": clean], options: [.sortedKeys])
    let handle = try FileHandle(forWritingTo: url)
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: line + Data("\n".utf8))
  }
}
