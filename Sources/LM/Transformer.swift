import Foundation
import NN
import Torch

/// A causal language model: token ids in, next-token logits and final hidden states out.
public protocol CausalLM: Module {
  var config: ModelConfig { get }

  /// - tokens: [B, T] int64.
  /// - positions: [B, T] int64 position of each token (restarting after left padding).
  /// - attentionBias: additive [B or 1, 1, T, past+T] mask (0 allowed, very negative blocked), or nil
  ///   for plain causal attention over unpadded sequences.
  /// - cache: keys/values of earlier positions; extended in place with this call's.
  /// Returns logits [B, T, V] and the final (normalised) hidden states [B, T, D].
  func forward(_ tokens: Tensor, positions: Tensor, attentionBias: Tensor?, cache: KVCache?) -> (logits: Tensor, hidden: Tensor)

  /// The same pass from input embeddings [B, T, D] instead of token ids (IFT mixes embeddings).
  func forward(embeddings: Tensor, positions: Tensor, attentionBias: Tensor?, cache: KVCache?) -> (logits: Tensor, hidden: Tensor)

  /// The token-embedding table [V, D] (tied to the output head when `tieEmbeddings`).
  var embeddingWeight: Tensor { get }

  /// Logits [B, T, V] for unpadded sequences without a cache (positions 0..<T).
  func callAsFunction(_ tokens: Tensor) -> Tensor
}

extension CausalLM {
  public func forward(_ tokens: Tensor, positions: Tensor, attentionBias: Tensor?, cache: KVCache?)
    -> (logits: Tensor, hidden: Tensor)
  {
    forward(embeddings: Tensor.embedding(tokens, weight: embeddingWeight), positions: positions,
            attentionBias: attentionBias, cache: cache)
  }

  /// Logits for unpadded sequences without a cache.
  public func callAsFunction(_ tokens: Tensor) -> Tensor {
    let (b, t) = (tokens.size(0), tokens.size(1))
    let positions = Tensor.arange(0, Double(t), device: tokens.device).unsqueezed(dim: 0).expanded(to: [b, t])
    return forward(tokens, positions: positions, attentionBias: nil, cache: nil).logits
  }

  /// The parameters' dtype, read off the embedding table (no walk of the module tree).
  public var dtype: DType { embeddingWeight.dtype }
}

/// Keys and values of past positions for each layer, [B, H_kv, S, D], grown by concatenation.
public final class KVCache {
  var keys: [Tensor?]
  var values: [Tensor?]
  public init(layers: Int) {
    keys = Array(repeating: nil, count: layers)
    values = Array(repeating: nil, count: layers)
  }
  /// Number of cached positions.
  public var length: Int { keys[0]?.size(2) ?? 0 }

  func append(layer: Int, keys k: Tensor, values v: Tensor) -> (Tensor, Tensor) {
    let kAll = keys[layer].map { Tensor.cat([$0, k], dim: 2) } ?? k
    let vAll = values[layer].map { Tensor.cat([$0, v], dim: 2) } ?? v
    keys[layer] = kAll
    values[layer] = vAll
    return (kAll, vAll)
  }

  /// Keeps only the given batch rows (e.g. after some sequences finished).
  public func select(rows: Tensor) {
    keys = keys.map { $0?.indexSelect(dim: 0, index: rows) }
    values = values.map { $0?.indexSelect(dim: 0, index: rows) }
  }
}

enum Attention {
  /// The value used for blocked positions: very negative but finite so fully blocked rows stay finite.
  static func blockedValue(_ dtype: DType) -> Double { dtype == .float16 ? -65504 : -1e30 }

  /// Additive mask [B, 1, T, P+T] for T new queries after P cached positions; `keyMask` [B, P+T] marks real
  /// (non-padding) tokens with 1.
  static func bias(keyMask: Tensor?, queries t: Int, past p: Int, dtype: DType) -> Tensor {
    let s = p + t
    let device = keyMask?.device ?? .cpu
    let q = Tensor.arange(Double(p), Double(s), device: device).unsqueezed(dim: 1)
    let k = Tensor.arange(0, Double(s), device: device).unsqueezed(dim: 0)
    var allowed = k.le(q).unsqueezed(dim: 0).unsqueezed(dim: 0)  // [1,1,T,S]
    if let keyMask { allowed = allowed.logicalAnd(keyMask.ne(0).unsqueezed(dim: 1).unsqueezed(dim: 1)) }
    return Tensor.zeros(allowed.shape, dtype: dtype, device: device).maskedFill(allowed.logicalNot(), blockedValue(dtype))
  }

  /// softmax(q·kᵀ/√d + bias)·v with grouped-query heads: q [B,H,T,D], k/v [B,Hkv,S,D].
  static func attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor?, causal: Bool) -> Tensor {
    let (b, h, t, d) = (q.size(0), q.size(1), q.size(2), q.size(3))
    let hkv = k.size(1), s = k.size(2)
    var k = k, v = v
    if hkv != h {
      let rep = h / hkv
      k = k.unsqueezed(dim: 2).expanded(to: [b, hkv, rep, s, d]).reshaped([b, h, s, d])
      v = v.unsqueezed(dim: 2).expanded(to: [b, hkv, rep, s, d]).reshaped([b, h, s, d])
    }
    var scores = q.matmul(k.transposed(2, 3)) * (1 / Double(d).squareRoot())
    if let bias {
      scores = scores + bias
    } else if causal && t > 1 {
      let mask = Tensor.ones([t, s], dtype: .bool, device: q.device).triu(s - t + 1)
      scores = scores.maskedFill(mask, -Double.infinity)
    }
    return scores.softmax(dim: -1).matmul(v)
  }

  /// [B,T,H·D] → [B,H,T,D]
  static func splitHeads(_ x: Tensor, heads: Int) -> Tensor {
    let (b, t, hd) = (x.size(0), x.size(1), x.size(2))
    return x.view([b, t, heads, hd / heads]).transposed(1, 2)
  }

  /// [B,H,T,D] → [B,T,H·D]
  static func mergeHeads(_ x: Tensor) -> Tensor {
    let (b, h, t, d) = (x.size(0), x.size(1), x.size(2), x.size(3))
    return x.transposed(1, 2).reshaped([b, t, h * d])
  }
}

/// Rotary position embedding as in Hugging Face Llama (rotate-half convention), computed in float32.
struct Rotary {
  let invFreq: Tensor  // [D/2]

  init(headDim: Int, theta: Double) {
    let exponents = Tensor.arange(0, Double(headDim), step: 2, dtype: .int64).to(.float32) / Double(headDim)
    invFreq = 1 / Tensor.full([headDim / 2], theta).pow(exponents)
  }

  /// cos and sin [B,1,T,D] for positions [B,T].
  func cosSin(positions: Tensor, dtype: DType) -> (Tensor, Tensor) {
    // invFreq is not a parameter (a struct's tensor, which Module.move does not see): follow the positions.
    let freqs = positions.to(.float32).unsqueezed(dim: -1) * invFreq.to(positions.device)  // [B,T,D/2]
    let emb = Tensor.cat([freqs, freqs], dim: -1).unsqueezed(dim: 1)
    return (emb.cos().to(dtype), emb.sin().to(dtype))
  }

  static func apply(_ x: Tensor, cos: Tensor, sin: Tensor) -> Tensor {
    let half = x.size(-1) / 2
    let parts = x.split(sizes: [half, half], dim: -1)
    let rotated = Tensor.cat([-parts[1], parts[0]], dim: -1)
    return x * cos + rotated * sin
  }
}
