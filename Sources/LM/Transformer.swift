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

  /// The final (normalised) hidden states [B, T, D] from input embeddings [B, T, D]: the pass without its
  /// output head, for callers that need logits at a few positions only (a prefill needs the last one).
  func hiddenStates(embeddings: Tensor, positions: Tensor, attentionBias: Tensor?, cache: KVCache?) -> Tensor

  /// The output head: logits [..., V] of hidden states [..., D].
  func outputLogits(_ hidden: Tensor) -> Tensor

  /// The token-embedding table [V, D] (tied to the output head when `tieEmbeddings`).
  var embeddingWeight: Tensor { get }

  /// Logits [B, T, V] for unpadded sequences without a cache (positions 0..<T).
  func callAsFunction(_ tokens: Tensor) -> Tensor
}

extension CausalLM {
  /// The same pass from input embeddings [B, T, D] instead of token ids (IFT mixes embeddings).
  public func forward(embeddings: Tensor, positions: Tensor, attentionBias: Tensor?, cache: KVCache?)
    -> (logits: Tensor, hidden: Tensor)
  {
    let hidden = hiddenStates(embeddings: embeddings, positions: positions, attentionBias: attentionBias, cache: cache)
    return (outputLogits(hidden), hidden)
  }

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

/// Keys and values of past positions for each layer, [B, H_kv, S, D], kept in buffers with room to grow:
/// a step writes its keys/values in place after the cached ones, where concatenating would copy the whole
/// cache of every layer on every token (O(S²) copying over a generation). Room is doubled when it runs out.
public final class KVCache {
  /// Per layer [B, H_kv, capacity, D]; positions 0..<lengths[l] hold keys/values.
  var keyBuffers: [Tensor?]
  var valueBuffers: [Tensor?]
  var lengths: [Int]
  /// Positions a buffer is first made with room for (a generation that knows its total length).
  let reserve: Int

  public init(layers: Int, reserve: Int = 0) {
    keyBuffers = Array(repeating: nil, count: layers)
    valueBuffers = Array(repeating: nil, count: layers)
    lengths = Array(repeating: 0, count: layers)
    self.reserve = reserve
  }
  /// Number of cached positions.
  public var length: Int { lengths[0] }
  var layerCount: Int { lengths.count }

  /// Layer `l`'s cached keys [B, H_kv, S, D] (a view into its buffer), nil before the first append.
  func keys(_ l: Int) -> Tensor? { keyBuffers[l]?.narrow(dim: 2, start: 0, length: lengths[l]) }
  func values(_ l: Int) -> Tensor? { valueBuffers[l]?.narrow(dim: 2, start: 0, length: lengths[l]) }

  /// Writes `k`, `v` [B, H_kv, T, D] after layer `layer`'s cached positions; returns all its keys and values.
  func append(layer: Int, keys k: Tensor, values v: Tensor) -> (Tensor, Tensor) {
    let shape = k.shape
    let t = shape[2], start = lengths[layer], end = start + t
    makeRoom(layer, positions: end, rows: shape[0], heads: shape[1], dim: shape[3], like: k)
    let kb = keyBuffers[layer].unsafelyUnwrapped, vb = valueBuffers[layer].unsafelyUnwrapped
    kb.narrow(dim: 2, start: start, length: t).copy_(k)
    vb.narrow(dim: 2, start: start, length: t).copy_(v)
    lengths[layer] = end
    return (kb.narrow(dim: 2, start: 0, length: end), vb.narrow(dim: 2, start: 0, length: end))
  }

  /// Whether decoding steps may take `Tensor.decodeAttention` (one call per layer) instead of the op-by-op
  /// path; the two give the same logits, and tests compare them.
  public var fusedDecoding = true

  /// Whether `x` [B, T, D], the input of a layer, can take `decodeAttention`: one new position per row,
  /// float32 on the CPU, without gradients.
  func decodesInOneCall(_ x: Tensor) -> Bool {
    fusedDecoding && x.size(1) == 1 && x.dtype == .float32 && x.device == .cpu && !gradientsEnabled
  }

  /// Attention of one new position per row over layer `layer`'s cache, the new keys/values appended:
  /// q [B, 1, heads·d], k/v [B, 1, Hkv·d], rotary cos/sin [B, 1, 1, d] or nil. Returns [B, 1, heads·d].
  func decodeAttention(layer: Int, q: Tensor, k: Tensor, v: Tensor, cos: Tensor?, sin: Tensor?, heads: Int,
                       bias: Tensor?) -> Tensor {
    let past = lengths[layer]
    let d = q.size(2) / heads
    makeRoom(layer, positions: past + 1, rows: k.size(0), heads: k.size(2) / d, dim: d, like: k)
    let out = Tensor.decodeAttention(q: q, k: k, v: v, cos: cos, sin: sin, keyCache: keyBuffers[layer].unsafelyUnwrapped,
                                     valueCache: valueBuffers[layer].unsafelyUnwrapped, past: past, heads: heads, bias: bias)
    lengths[layer] = past + 1
    return out
  }

  /// Grows layer `l`'s buffers, keeping what they hold, when they have room for fewer than `positions`:
  /// to at least the reserve and twice the old capacity.
  private func makeRoom(_ l: Int, positions: Int, rows: Int, heads: Int, dim: Int, like model: Tensor) {
    let capacity = keyBuffers[l]?.size(2) ?? 0
    guard capacity < positions else { return }
    let room = Swift.max(positions, reserve, 2 * capacity)
    store(l, keys: keys(l), values: values(l), shape: [rows, heads, room, dim], like: model)
  }

  /// Makes layer `l`'s buffers [B, H_kv, capacity, D] (`shape`, dtype and device of `like`) holding `k`, `v`
  /// (or nothing) at the front.
  private func store(_ l: Int, keys k: Tensor?, values v: Tensor?, shape: [Int], like model: Tensor) {
    let n = k?.size(2) ?? 0
    let kb = Tensor.empty(shape, dtype: model.dtype, device: model.device)
    let vb = Tensor.empty(shape, dtype: model.dtype, device: model.device)
    if let k, let v, n > 0 {
      kb.narrow(dim: 2, start: 0, length: n).copy_(k)
      vb.narrow(dim: 2, start: 0, length: n).copy_(v)
    }
    keyBuffers[l] = kb
    valueBuffers[l] = vb
    lengths[l] = n
  }

  /// Replaces every layer's keys and values by `transform(keys)`, `transform(values)`.
  func rebuild(_ transform: (Tensor) -> Tensor) {
    for l in 0..<layerCount {
      guard let k = keys(l), let v = values(l) else { continue }
      rebuildLayer(l, keys: transform(k), values: transform(v))
    }
  }

  /// Makes layer `l` hold `k`, `v` [B, H_kv, S, D] in fresh buffers with room to grow.
  func rebuildLayer(_ l: Int, keys k: Tensor, values v: Tensor) {
    let s = k.shape
    store(l, keys: k, values: v, shape: [s[0], s[1], Swift.max(2 * s[2], s[2] + 16, reserve), s[3]], like: k)
  }

  /// Keeps only the given batch rows (e.g. after some sequences finished).
  public func select(rows: Tensor) {
    for l in 0..<layerCount {
      keyBuffers[l] = keyBuffers[l]?.indexSelect(dim: 0, index: rows)
      valueBuffers[l] = valueBuffers[l]?.indexSelect(dim: 0, index: rows)
    }
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
  ///
  /// The H/Hkv query heads that share a key/value head (heads g·rep ..< (g+1)·rep, as Hugging Face's
  /// `repeat_kv` pairs them) are stacked as the rows of one product [B, Hkv, rep·T, D]·[B, Hkv, D, S],
  /// so keys and values are read in place (a view of the cache) instead of being copied rep times.
  static func attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor?, causal: Bool) -> Tensor {
    let qs = q.shape, ks = k.shape
    let (b, h, t, d) = (qs[0], qs[1], qs[2], qs[3])
    let hkv = ks[1], s = ks[2]
    let rep = h / hkv
    let grouped = rep == 1 ? q : q.reshaped([b, hkv, rep * t, d])
    var scores = grouped.matmul(k.transposed(2, 3)) * (1 / Double(d).squareRoot())
    if rep != 1 { scores = scores.view([b, h, t, s]) }
    if let bias {
      scores = scores + bias
    } else if causal && t > 1 {
      let mask = Tensor.ones([t, s], dtype: .bool, device: q.device).triu(s - t + 1)
      scores = scores.maskedFill(mask, -Double.infinity)
    }
    let probs = scores.softmax(dim: -1)
    if rep == 1 { return probs.matmul(v) }
    return probs.view([b, hkv, rep * t, s]).matmul(v).view([b, h, t, d])
  }

  /// [B,T,H·D] → [B,H,T,D]
  static func splitHeads(_ x: Tensor, heads: Int) -> Tensor {
    let s = x.shape
    return x.view([s[0], s[1], heads, s[2] / heads]).transposed(1, 2)
  }

  /// [B,H,T,D] → [B,T,H·D]
  static func mergeHeads(_ x: Tensor) -> Tensor {
    let s = x.shape
    return x.transposed(1, 2).reshaped([s[0], s[2], s[1] * s[3]])
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
