import LM
import Torch

/// Supervised fine-tuning: token cross-entropy on the response (METHODS §7).
public enum SFTLoss {
  /// Σ −log π(y_t|s_t) over target positions, divided by `normalizer` (the number of target tokens in
  /// the whole accumulation window, so accumulated micro-batches equal one large batch).
  public static func loss(_ scored: Scored, labelMask: Tensor, normalizer: Double) -> Tensor {
    -(scored.tokenLogProbs * labelMask).sum() / normalizer
  }
}

/// A right-padded batch of SFT examples with its [B, T-1] label mask (1 where token i+1 is a target).
public struct SFTBatch {
  public let padded: PaddedBatch
  public let labelMask: Tensor
  public let targetCount: Int
  public let tokenCount: Int

  public init(_ examples: [SFTExample], padId: Int) {
    padded = PaddedBatch(examples.map(\.tokens), padId: padId, side: .right)
    let width = padded.tokens.size(1)
    var mask: [Float] = []
    mask.reserveCapacity(examples.count * (width - 1))
    for e in examples {
      for i in 1..<width { mask.append(i < e.targets.count && e.targets[i] ? 1 : 0) }
    }
    labelMask = Tensor(mask, shape: [examples.count, width - 1])
    targetCount = examples.reduce(0) { $0 + $1.targetCount }
    tokenCount = examples.reduce(0) { $0 + $1.tokens.count }
  }
}

/// SFT as a trainer method: examples weigh their target-token count, so accumulated micro-batches
/// reproduce one large batch's token mean.
public final class SFTMethod: TrainingMethod {
  public let padId: Int
  public init(padId: Int) { self.padId = padId }
  public var name: String { "sft" }
  public func weight(of example: SFTExample) -> Double { Double(example.targetCount) }
  public func loss(_ batch: [SFTExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let b = SFTBatch(batch, padId: padId)
    let loss = SFTLoss.loss(model.score(b.padded), labelMask: b.labelMask, normalizer: Double(Swift.max(1, b.targetCount)))
    return MicroBatchLoss(loss: loss, tokens: b.tokenCount)
  }
}
