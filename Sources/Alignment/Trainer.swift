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
  public var batchSize = 8
  public var accumulation = 1
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
  public init() {}
}

/// One micro-batch's loss — the mean over its own items — and how much it counts in its window.
public struct MicroBatchLoss {
  public let loss: Tensor
  public let metrics: [String: Double]
  public let tokens: Int
  public init(loss: Tensor, metrics: [String: Double] = [:], tokens: Int) {
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
  /// Parameters the method owns beside the model (a reward or value head), trained and checkpointed
  /// with it.
  var extraParameters: [(name: String, tensor: Tensor)] { get }
}

extension TrainingMethod {
  public var extraParameters: [(name: String, tensor: Tensor)] { [] }
}

/// What the trainer reports after each optimizer step.
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

/// The trainer shared by every method: seeded shuffling each epoch, gradient accumulation normalised
/// over the whole window, AdamW with decay on matrices only, the schedule with warm-up, global
/// grad-norm clipping, NaN/Inf detection, periodic evaluation, metrics as JSONL, and atomic checkpoints
/// from which `resume` continues exactly (weights, optimizer, schedule position, RNG, data position).
public final class Trainer<Method: TrainingMethod> {
  public let model: any CausalLM
  public let method: Method
  let examples: [Method.Example]
  let evalExamples: [Method.Example]
  public let options: TrainerOptions
  public let optimizer: AdamW
  let generator: Generator
  /// Where checkpoints and metrics.jsonl go (nil: nowhere).
  let outputDirectory: URL?
  var order: [Int] = []
  var cursor = 0
  var step = 0
  var history: [Double] = []

  public init(model: any CausalLM, method: Method, examples: [Method.Example], evalExamples: [Method.Example] = [],
              options: TrainerOptions, outputDirectory: URL? = nil) {
    precondition(!examples.isEmpty, "no training examples")
    self.model = model
    self.method = method
    self.examples = examples
    self.evalExamples = evalExamples
    self.options = options
    self.outputDirectory = outputDirectory
    generator = Generator(seed: options.seed)
    optimizer = AdamW(ParameterGroup.decayMatricesOnly(model.trainableParameters() + method.extraParameters,
                                                       weightDecay: options.weightDecay),
                      learningRate: options.learningRate, betas: (0.9, 0.95))
  }

  func nextBatch() -> [Method.Example] {
    var batch: [Method.Example] = []
    while batch.count < options.batchSize {
      if cursor >= order.count {
        order = Tensor.randperm(examples.count, generator: generator).toArray(Int.self)
        cursor = 0
      }
      batch.append(examples[order[cursor]])
      cursor += 1
    }
    return batch
  }

  /// Mean loss and metrics over the held-out examples, without gradients.
  public func evaluate() -> [String: Double] {
    guard !evalExamples.isEmpty else { return [:] }
    model.setTraining(false)
    defer { model.setTraining(true) }
    return withoutGradients {
      var sums: [String: Double] = [:]
      var total = 0.0
      for start in stride(from: 0, to: evalExamples.count, by: options.batchSize) {
        let batch = Array(evalExamples[start..<Swift.min(start + options.batchSize, evalExamples.count)])
        let w = batch.reduce(0) { $0 + method.weight(of: $1) }
        let r = method.loss(batch, model: model, step: step)
        sums["loss", default: 0] += r.loss.item() * w
        for (k, v) in r.metrics { sums[k, default: 0] += v * w }
        total += w
      }
      return Dictionary(uniqueKeysWithValues: sums.map { ("eval/" + $0.key, $0.value / Swift.max(total, 1e-12)) })
    }
  }

  public func train(progress: (StepLog) -> Void = { _ in }) throws -> TrainingSummary {
    let schedule = options.schedule.schedule(warmup: options.warmup, total: options.steps)
    let metricsLog = try outputDirectory.map { try MetricsLog(url: $0.appendingPathComponent("metrics.jsonl"), truncateAfter: step) }
    var tokens = 0
    var lastMetrics: [String: Double] = [:]
    let start = Date()
    let firstStep = step + 1
    model.setTraining(true)
    while step < options.steps {
      let current = step + 1
      optimizer.learningRate = schedule.learningRate(at: current - 1, peak: options.learningRate)
      optimizer.zeroGrad()
      let batches = (0..<options.accumulation).map { _ in nextBatch() }
      let weights = batches.map { $0.reduce(0) { $0 + method.weight(of: $1) } }
      let windowWeight = Swift.max(weights.reduce(0, +), 1e-12)
      var total = 0.0
      var metrics: [String: Double] = [:]
      for (batch, w) in zip(batches, weights) {
        let r = method.loss(batch, model: model, step: current)
        let share = w / windowWeight
        let scaled = r.loss * share
        let value = scaled.item()
        guard value.isFinite else { throw NonFiniteError(step: current, metric: "loss", value: value) }
        scaled.backward()
        total += value
        tokens += r.tokens
        for (k, v) in r.metrics { metrics[k, default: 0] += v * share }
      }
      let norm = optimizer.clipGradients(maxNorm: options.clipNorm)
      guard norm.isFinite else { throw NonFiniteError(step: current, metric: "grad_norm", value: norm) }
      optimizer.step()
      step = current
      history.append(total)
      metrics["loss"] = total
      metrics["grad_norm"] = norm
      metrics["learning_rate"] = optimizer.learningRate
      if options.evalEvery > 0, step % options.evalEvery == 0 { metrics.merge(evaluate()) { $1 } }
      if step == options.steps, options.evalEvery == 0 { metrics.merge(evaluate()) { $1 } }
      try metricsLog?.append(step: step, metrics)
      lastMetrics = metrics
      let elapsed = Date().timeIntervalSince(start)
      var log = StepLog(step: step, totalSteps: options.steps, loss: total, learningRate: optimizer.learningRate,
                        gradNorm: norm, tokensPerSecond: Double(tokens) / Swift.max(elapsed, 1e-9), elapsed: elapsed,
                        metrics: metrics)
      log.firstStep = firstStep
      progress(log)
      if let dir = outputDirectory, options.saveEvery > 0, step % options.saveEvery == 0, step < options.steps {
        try saveCheckpoint(in: dir)
      }
    }
    let elapsed = Date().timeIntervalSince(start)
    return TrainingSummary(steps: step, finalLoss: history.last ?? .nan, lossHistory: history,
                           tokensPerSecond: Double(tokens) / Swift.max(elapsed, 1e-9), metrics: lastMetrics)
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
    try Safetensors.save(["generator": generator.state], to: partial.appendingPathComponent("rng.safetensors"))
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
    try Checkpoint.assign(Checkpoint.loadTensors(from: url), to: model, source: url.path)
    try optimizer.load(from: url.appendingPathComponent("optimizer.safetensors"))
    guard let rng = try Safetensors.load(url.appendingPathComponent("rng.safetensors"))["generator"] else {
      throw CheckpointError("\(url.path)/rng.safetensors: no 'generator' tensor")
    }
    try generator.setState(rng)
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

/// Appends one `{"step": N, "data": {…}}` object per line; on resume, lines past the resumed step are
/// dropped so the file reads as one uninterrupted run.
public final class MetricsLog {
  let url: URL
  public init(url: URL, truncateAfter step: Int) throws {
    self.url = url
    let fm = FileManager.default
    if step == 0 || !fm.fileExists(atPath: url.path) {
      try Data().write(to: url)
      return
    }
    let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    let kept = text.split(separator: "\n").filter { line in
      guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let s = obj["step"] as? Int
      else { return false }
      return s <= step
    }
    try Data(kept.map { $0 + "\n" }.joined().utf8).write(to: url)
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
