import Foundation
import LM
import NN
import Torch

/// A run that cannot be split over the given ranks.
public struct DataParallelError: Error, CustomStringConvertible {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// Data parallel on c10d, for every method the trainer runs.
///
/// Every rank holds the whole data order (the same seed draws the same indices), so `--batch-size` stays the
/// global batch and checkpoints stay rank-free: a run resumes on any world size that divides the batch.
/// Offline, each rank takes a contiguous shard of every micro-batch and weights its loss by its share of
/// the whole window's weight (tokens or pairs), so the summed gradients equal one process's exactly, up to
/// the order of floating-point additions. Online, each rank rolls out its shard of the prompts from its own
/// sampling stream and the window weight is summed over ranks before the backward passes.
///
/// Gradients are summed in place in buckets of about 25 MB of the optimizer's flat buffer, all started
/// before any is waited for, after the last backward pass of the step (libtorch runs a backward pass as one
/// call, so overlapping communication with it would need per-parameter hooks; on CPU the compute and the
/// all-reduce compete for the same cores anyway). Clipping, the NaN check and the update then see the
/// global gradient; metrics and token counts are summed the same way, so every rank logs the same numbers
/// and only rank 0 writes them.
extension Trainer {
  /// Bytes per all-reduce bucket (PyTorch DDP's default bucket size).
  static var bucketBytes: Int { 25 << 20 }

  /// Splits the run over `group`'s ranks. The batch (and, online, the mini-batch) must divide evenly.
  public func distribute(over group: ProcessGroup) throws {
    let world = group.worldSize
    guard options.batchSize % world == 0 else {
      throw DataParallelError("--batch-size \(options.batchSize) is not divisible by the world size \(world)")
    }
    if let updateSize, updateSize % world != 0 {
      throw DataParallelError("the mini-batch of \(updateSize) is not divisible by the world size \(world)")
    }
    self.group = group
    if online, group.rank > 0 {
      // Each rank samples its own prompts; the same stream on every rank would correlate their samples.
      for (i, (_, g)) in method.generators.enumerated() {
        g.reseed(options.seed &+ UInt64(group.rank) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(i))
      }
    }
  }

  /// The step's micro-batches as this rank runs them, and the weight of the whole window they belong to.
  func microBatches(_ examples: [Method.Example]) throws -> ([[Method.Example]], Double) {
    let world = group?.worldSize ?? 1, rank = group?.rank ?? 0
    if online {
      // `examples` are this rank's rollout; the window spans every rank's.
      let size = Swift.max(1, options.batchSize / world)
      let micro = stride(from: 0, to: examples.count, by: size).map { Array(examples[$0..<Swift.min($0 + size, examples.count)]) }
      var weight = examples.reduce(0) { $0 + method.weight(of: $1) }
      if let group {
        let t = Tensor([weight], shape: [1])
        try group.allReduceSum([t])
        weight = t.toArray(Double.self)[0]
      }
      return (micro, Swift.max(weight, 1e-12))
    }
    let global = stride(from: 0, to: examples.count, by: options.batchSize).map {
      Array(examples[$0..<Swift.min($0 + options.batchSize, examples.count)])
    }
    let weight = Swift.max(examples.reduce(0) { $0 + method.weight(of: $1) }, 1e-12)
    guard world > 1 else { return (global, weight) }
    let shards = global.map { batch -> [Method.Example] in
      let per = (batch.count + world - 1) / world
      let start = Swift.min(rank * per, batch.count)
      return Array(batch[start..<Swift.min(start + per, batch.count)])
    }
    return (shards, weight)
  }

  /// Sums the gradients, the step's metric sums and its token count over the ranks.
  func reduceAcrossRanks(_ group: ProcessGroup, sums: inout [String: Tensor], tokens: Int) throws -> Int {
    var buckets: [Tensor] = []
    for buffer in optimizer.gradientBuffers {
      let flat = buffer.reshaped([-1])
      let per = Swift.max(1, Self.bucketBytes / buffer.dtype.elementSize)
      for start in stride(from: 0, to: flat.count, by: per) {
        buckets.append(flat.narrow(dim: 0, start: start, length: Swift.min(per, flat.count - start)))
      }
    }
    // Every rank has the same metric names (the same method on the same kind of batch).
    let keys = sums.keys.sorted()
    let packed = withoutGradients {
      Tensor.cat(keys.map { sums[$0]!.to(.float64, .cpu).reshaped([1]) } + [Tensor([Double(tokens)], shape: [1])])
    }
    try group.allReduceSum(buckets + [packed])
    let values = packed.toArray(Double.self)
    for (i, k) in keys.enumerated() { sums[k] = Tensor.scalar(values[i], dtype: .float64) }
    return Int(values[keys.count].rounded())
  }

  /// Rank 0's parameters (the model's and the method's) on every rank, before the first step.
  func broadcastParameters(_ group: ProcessGroup) throws {
    let tensors = model.namedParameters().map(\.tensor) + method.extraParameters.map(\.tensor)
    try withoutGradients { try group.broadcast(tensors, root: 0) }
  }

  /// The step's examples: offline every rank materialises the whole window (cheap: indices into the data);
  /// online each rank rolls out its contiguous shard of the drawn prompts, and rollout metrics are averaged.
  func collectShard(_ indices: [Int], step: Int) throws -> Rollout<Method.Example> {
    guard online, let group, group.worldSize > 1 else { return try collect(indices, step) }
    let per = indices.count / group.worldSize
    let mine = Array(indices[(group.rank * per)..<((group.rank + 1) * per)])
    let rollout = try collect(mine, step)
    let keys = rollout.metrics.keys.sorted()
    guard !keys.isEmpty else { return rollout }
    let t = Tensor(keys.map { rollout.metrics[$0]! }, shape: [keys.count])
    try group.allReduceSum([t])
    let mean = t.toArray(Double.self).map { $0 / Double(group.worldSize) }
    return Rollout(examples: rollout.examples, metrics: Dictionary(uniqueKeysWithValues: zip(keys, mean)))
  }
}
