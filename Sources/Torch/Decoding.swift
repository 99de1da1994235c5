import CTorch

extension Tensor {
  /// x·Wᵀ + b with W [out, in], or x·W + b with W [in, out] when `weightInOut` (Hugging Face's `Conv1D`).
  /// A single row (every leading dimension of `x` is 1) is one matrix-vector product, which streams the
  /// weight once where a one-row matrix product packs (copies) it first; without gradients in float32 it is
  /// BLAS's sgemv with nothing else dispatched. Several rows are one matrix product, as `linear`/`affine`.
  public static func rowLinear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, weightInOut: Bool = false) -> Tensor {
    withExtendedLifetime(bias) { wrap(ct_linear_row(x.handle, weight.handle, bias?.handle, weightInOut), "linear_row") }
  }

  /// x / √(mean(x², last dim) + eps) · weight, in float32 at least (Llama's RMSNorm) as one call: without
  /// gradients a float32 input takes one pass after ATen's mean, with the same numbers as the op-by-op form.
  public static func rmsNorm(_ x: Tensor, weight: Tensor, eps: Double) -> Tensor {
    wrap(ct_rms_norm(x.handle, weight.handle, eps), "rms_norm")
  }

  /// One decoding step of attention over a key/value cache, without gradients (float32, CPU).
  ///
  /// - q: [B, 1, heads·d]; k, v: [B, 1, Hkv·d] (slices of one packed projection are fine).
  /// - cos, sin: [B, 1, 1, d] for the rotary embedding of q and k (rotate-half), or nil for none.
  /// - keyCache, valueCache: contiguous [B, Hkv, C, d]; k and v are written at position `past`.
  /// - bias: additive [B or 1, 1, 1, past + 1], or nil.
  /// Returns softmax(q·kᵀ/√d + bias)·v over positions 0...past with the heads merged, [B, 1, heads·d];
  /// query head h reads key/value head h / (heads / Hkv), as grouped-query attention does.
  public static func decodeAttention(q: Tensor, k: Tensor, v: Tensor, cos: Tensor?, sin: Tensor?, keyCache: Tensor,
                                     valueCache: Tensor, past: Int, heads: Int, bias: Tensor?) -> Tensor {
    withExtendedLifetime((cos, sin, bias)) {
      wrap(ct_decode_attention(q.handle, k.handle, v.handle, cos?.handle, sin?.handle, keyCache.handle,
                               valueCache.handle, Int64(past), Int64(heads), bias?.handle), "decode_attention")
    }
  }
}
