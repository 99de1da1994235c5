import Torch

/// Which side padding goes on when sequences of different lengths share a batch.
public enum PaddingSide: String, Sendable { case left, right }

/// Token sequences padded into one batch: ids [B, T] (int64) and a mask [B, T] (1 real, 0 padding).
public struct PaddedBatch {
  public let tokens: Tensor
  public let mask: Tensor
  public let lengths: [Int]
  public let side: PaddingSide

  public init(_ sequences: [[Int]], padId: Int, side: PaddingSide = .right) {
    let width = sequences.map(\.count).max() ?? 0
    var ids: [Int64] = [], mask: [Int64] = []
    ids.reserveCapacity(sequences.count * width)
    for s in sequences {
      let pad = width - s.count
      let padIds = [Int64](repeating: Int64(padId), count: pad), zeros = [Int64](repeating: 0, count: pad)
      let real = s.map { Int64($0) }, ones = [Int64](repeating: 1, count: s.count)
      ids += side == .left ? padIds + real : real + padIds
      mask += side == .left ? zeros + ones : ones + zeros
    }
    tokens = Tensor(ids, shape: [sequences.count, width])
    self.mask = Tensor(mask, shape: [sequences.count, width])
    lengths = sequences.map(\.count)
    self.side = side
  }

  public var hasPadding: Bool { lengths.contains { $0 != lengths.first } }

  /// Positions counting real tokens only, so left-padded rows start at 0 (as Hugging Face does).
  public var positions: Tensor { (mask.cumsum(dim: 1) - 1).clamp(min: 0) }

  /// The same batch with its tensors on `device` (the model's: batches are built on the host).
  public func on(_ device: Device) -> PaddedBatch {
    tokens.device == device ? self : PaddedBatch(tokens: tokens.to(device), mask: mask.to(device), lengths: lengths, side: side)
  }

  private init(tokens: Tensor, mask: Tensor, lengths: [Int], side: PaddingSide) {
    (self.tokens, self.mask, self.lengths, self.side) = (tokens, mask, lengths, side)
  }
}

/// The teacher-forced view of a batch that every objective consumes.
public struct Scored {
  /// [B, T, V] next-token logits.
  public let logits: Tensor
  /// [B, T-1] float32: log p(tokens[:, i+1] | tokens[:, …i]).
  public let tokenLogProbs: Tensor
  /// [B, T] float32: logsumexp of the logits at each position (the soft value V(s) of METHODS §5).
  public let logSumExp: Tensor
  /// [B, T, D] final hidden states.
  public let hidden: Tensor
  /// [B, T-1] float32: 1 where the predicted token and the token before it are real (not padding).
  public let targetMask: Tensor
}

extension CausalLM {
  /// One teacher-forced pass over a (possibly padded) batch. Reductions are done in float32.
  /// `inputEmbeddings` [B, T, D] replaces the embedding lookup of the batch's tokens (IFT); the tokens
  /// still define the targets.
  public func score(_ batch: PaddedBatch, inputEmbeddings: Tensor? = nil) -> Scored {
    let batch = batch.on(embeddingWeight.device)
    let t = batch.tokens.size(1)
    let bias = batch.hasPadding
      ? Attention.bias(keyMask: batch.mask, queries: t, past: 0, dtype: dtype) : nil
    let (logits, hidden) = forward(
      embeddings: inputEmbeddings ?? Tensor.embedding(batch.tokens, weight: embeddingWeight), positions: batch.positions,
      attentionBias: bias, cache: nil)
    let wide = logits.dtype == .float64 ? logits : logits.to(.float32)  // float32 or wider
    let lse = wide.logSumExp(dim: -1)
    let targets = batch.tokens.narrow(dim: 1, start: 1, length: t - 1)
    let picked = wide.narrow(dim: 1, start: 0, length: t - 1).gather(dim: 2, index: targets.unsqueezed(dim: -1)).squeezed(dim: -1)
    let logProbs = picked - lse.narrow(dim: 1, start: 0, length: t - 1)
    // A prediction counts when both its context token and its target are real.
    let targetMask = (batch.mask.narrow(dim: 1, start: 1, length: t - 1) * batch.mask.narrow(dim: 1, start: 0, length: t - 1))
      .to(.float32)
    return Scored(logits: logits, tokenLogProbs: logProbs * targetMask, logSumExp: lse, hidden: hidden,
                  targetMask: targetMask)
  }
}
