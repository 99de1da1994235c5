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
  public init() {}
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
  public var eta: Double { elapsed / Double(step) * Double(totalSteps - step) }
}

public struct TrainingSummary: Sendable {
  public let steps: Int
  public let finalLoss: Double
  public let lossHistory: [Double]
  public let tokensPerSecond: Double
}

/// Training stopped because a number went NaN or infinite; names the step and the metric.
public struct NonFiniteError: Error, CustomStringConvertible {
  public let step: Int
  public let metric: String
  public let value: Double
  public var description: String { "step \(step): \(metric) is \(value); stopped (the last checkpoint is kept)" }
}

/// Supervised fine-tuning loop: seeded shuffling each epoch, gradient accumulation, AdamW with decay on
/// matrices only, the chosen schedule with warm-up, global grad-norm clipping, NaN detection.
public final class SFTTrainer {
  public let model: any CausalLM
  let examples: [SFTExample]
  let padId: Int
  public let options: TrainerOptions
  public let optimizer: AdamW
  let generator: Generator
  var order: [Int] = []
  var cursor = 0

  public init(model: any CausalLM, examples: [SFTExample], padId: Int, options: TrainerOptions) {
    precondition(!examples.isEmpty)
    self.model = model
    self.examples = examples
    self.padId = padId
    self.options = options
    generator = Generator(seed: options.seed)
    optimizer = AdamW(ParameterGroup.decayMatricesOnly(model.trainableParameters(), weightDecay: options.weightDecay),
                      learningRate: options.learningRate, betas: (0.9, 0.95))
  }

  func nextBatch() -> [SFTExample] {
    var batch: [SFTExample] = []
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

  public func train(progress: (StepLog) -> Void = { _ in }) throws -> TrainingSummary {
    let schedule = options.schedule.schedule(warmup: options.warmup, total: options.steps)
    let params = model.trainableParameters().map(\.tensor)
    var history: [Double] = []
    var tokens = 0
    let start = Date()
    model.setTraining(true)
    for step in 1...options.steps {
      optimizer.learningRate = schedule.learningRate(at: step - 1, peak: options.learningRate)
      optimizer.zeroGrad()
      let batches = (0..<options.accumulation).map { _ in SFTBatch(nextBatch(), padId: padId) }
      let normalizer = Double(Swift.max(1, batches.reduce(0) { $0 + $1.targetCount }))
      var total = 0.0
      for b in batches {
        let loss = SFTLoss.loss(model.score(b.padded), labelMask: b.labelMask, normalizer: normalizer)
        loss.backward()
        total += loss.item()
        tokens += b.tokenCount
      }
      guard total.isFinite else { throw NonFiniteError(step: step, metric: "loss", value: total) }
      let norm = options.clipNorm.map { clipGradNorm(params, maxNorm: $0) } ?? 0
      guard norm.isFinite else { throw NonFiniteError(step: step, metric: "grad_norm", value: norm) }
      optimizer.step()
      history.append(total)
      let elapsed = Date().timeIntervalSince(start)
      progress(StepLog(step: step, totalSteps: options.steps, loss: total, learningRate: optimizer.learningRate,
                       gradNorm: norm, tokensPerSecond: Double(tokens) / Swift.max(elapsed, 1e-9), elapsed: elapsed))
    }
    let elapsed = Date().timeIntervalSince(start)
    return TrainingSummary(steps: options.steps, finalLoss: history.last ?? .nan, lossHistory: history,
                           tokensPerSecond: Double(tokens) / Swift.max(elapsed, 1e-9))
  }
}
