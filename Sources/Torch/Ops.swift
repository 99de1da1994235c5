import CTorch

// MARK: - elementwise

extension Tensor {
  @inline(__always) func unary(_ op: ct_unary_op, _ name: StaticString) -> Tensor {
    wrap(ct_unary(Int32(op.rawValue), handle), name)
  }
  @inline(__always) func binary(_ op: ct_binary_op, _ other: Tensor, _ name: StaticString) -> Tensor {
    wrap(ct_binary(Int32(op.rawValue), handle, other.handle), name)
  }
  @inline(__always) func binary(_ op: ct_binary_op, _ s: Double, _ name: StaticString) -> Tensor {
    wrap(ct_binary_scalar(Int32(op.rawValue), handle, s), name)
  }

  public func exp() -> Tensor { unary(CT_EXP, "exp") }
  public func log() -> Tensor { unary(CT_LOG, "log") }
  public func log1p() -> Tensor { unary(CT_LOG1P, "log1p") }
  public func expm1() -> Tensor { unary(CT_EXPM1, "expm1") }
  public func sqrt() -> Tensor { unary(CT_SQRT, "sqrt") }
  public func rsqrt() -> Tensor { unary(CT_RSQRT, "rsqrt") }
  public func abs() -> Tensor { unary(CT_ABS, "abs") }
  public func square() -> Tensor { unary(CT_SQUARE, "square") }
  public func reciprocal() -> Tensor { unary(CT_RECIPROCAL, "reciprocal") }
  public func sin() -> Tensor { unary(CT_SIN, "sin") }
  public func cos() -> Tensor { unary(CT_COS, "cos") }
  public func tanh() -> Tensor { unary(CT_TANH, "tanh") }
  public func sigmoid() -> Tensor { unary(CT_SIGMOID, "sigmoid") }
  public func relu() -> Tensor { unary(CT_RELU, "relu") }
  /// GELU, exact (erf) or with the tanh approximation GPT-2 uses.
  public func gelu(approximate: Bool = false) -> Tensor {
    approximate ? unary(CT_GELU_TANH, "gelu_tanh") : unary(CT_GELU, "gelu")
  }
  public func silu() -> Tensor { unary(CT_SILU, "silu") }
  public func softplus() -> Tensor { unary(CT_SOFTPLUS, "softplus") }
  public func logSigmoid() -> Tensor { unary(CT_LOGSIGMOID, "log_sigmoid") }
  public func floor() -> Tensor { unary(CT_FLOOR, "floor") }
  public func ceil() -> Tensor { unary(CT_CEIL, "ceil") }
  public func rounded() -> Tensor { unary(CT_ROUND, "round") }
  public func sign() -> Tensor { unary(CT_SIGN, "sign") }
  public func logicalNot() -> Tensor { unary(CT_LOGICAL_NOT, "logical_not") }
  public func isNaN() -> Tensor { unary(CT_ISNAN, "isnan") }
  public func isInfinite() -> Tensor { unary(CT_ISINF, "isinf") }
  public func isFinite() -> Tensor { unary(CT_ISFINITE, "isfinite") }

  public func pow(_ exponent: Double) -> Tensor { binary(CT_POW, exponent, "pow") }
  public func pow(_ exponent: Tensor) -> Tensor { binary(CT_POW, exponent, "pow") }
  public func maximum(_ other: Tensor) -> Tensor { binary(CT_MAXIMUM, other, "maximum") }
  public func minimum(_ other: Tensor) -> Tensor { binary(CT_MINIMUM, other, "minimum") }
  public func remainder(_ s: Double) -> Tensor { binary(CT_REMAINDER, s, "remainder") }
  public func floorDivide(_ s: Double) -> Tensor { binary(CT_FLOOR_DIVIDE, s, "floor_divide") }

  public func eq(_ o: Tensor) -> Tensor { binary(CT_EQ, o, "eq") }
  public func ne(_ o: Tensor) -> Tensor { binary(CT_NE, o, "ne") }
  public func lt(_ o: Tensor) -> Tensor { binary(CT_LT, o, "lt") }
  public func le(_ o: Tensor) -> Tensor { binary(CT_LE, o, "le") }
  public func gt(_ o: Tensor) -> Tensor { binary(CT_GT, o, "gt") }
  public func ge(_ o: Tensor) -> Tensor { binary(CT_GE, o, "ge") }
  public func eq(_ s: Double) -> Tensor { binary(CT_EQ, s, "eq") }
  public func ne(_ s: Double) -> Tensor { binary(CT_NE, s, "ne") }
  public func lt(_ s: Double) -> Tensor { binary(CT_LT, s, "lt") }
  public func le(_ s: Double) -> Tensor { binary(CT_LE, s, "le") }
  public func gt(_ s: Double) -> Tensor { binary(CT_GT, s, "gt") }
  public func ge(_ s: Double) -> Tensor { binary(CT_GE, s, "ge") }
  public func logicalAnd(_ o: Tensor) -> Tensor { binary(CT_LOGICAL_AND, o, "logical_and") }
  public func logicalOr(_ o: Tensor) -> Tensor { binary(CT_LOGICAL_OR, o, "logical_or") }

  public func clamp(min: Double? = nil, max: Double? = nil) -> Tensor {
    wrap(ct_clamp(handle, min ?? 0, max ?? 0, min != nil, max != nil), "clamp")
  }
  /// Elements of `a` where `condition` holds, else of `b` (broadcasting).
  public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
    wrap(ct_where(condition.handle, a.handle, b.handle), "where")
  }
  /// A copy with `value` wherever `mask` is true.
  public func maskedFill(_ mask: Tensor, _ value: Double) -> Tensor {
    wrap(ct_masked_fill(handle, mask.handle, value), "masked_fill")
  }

  public static func + (a: Tensor, b: Tensor) -> Tensor { a.binary(CT_ADD, b, "add") }
  public static func - (a: Tensor, b: Tensor) -> Tensor { a.binary(CT_SUB, b, "sub") }
  public static func * (a: Tensor, b: Tensor) -> Tensor { a.binary(CT_MUL, b, "mul") }
  public static func / (a: Tensor, b: Tensor) -> Tensor { a.binary(CT_DIV, b, "div") }
  public static func + (a: Tensor, s: Double) -> Tensor { a.binary(CT_ADD, s, "add") }
  public static func - (a: Tensor, s: Double) -> Tensor { a.binary(CT_SUB, s, "sub") }
  public static func * (a: Tensor, s: Double) -> Tensor { a.binary(CT_MUL, s, "mul") }
  public static func / (a: Tensor, s: Double) -> Tensor { a.binary(CT_DIV, s, "div") }
  public static func + (s: Double, a: Tensor) -> Tensor { a.binary(CT_ADD, s, "add") }
  public static func - (s: Double, a: Tensor) -> Tensor {
    wrap(ct_rbinary_scalar(Int32(CT_SUB.rawValue), s, a.handle), "rsub")
  }
  public static func * (s: Double, a: Tensor) -> Tensor { a.binary(CT_MUL, s, "mul") }
  public static func / (s: Double, a: Tensor) -> Tensor {
    wrap(ct_rbinary_scalar(Int32(CT_DIV.rawValue), s, a.handle), "rdiv")
  }
  public static prefix func - (a: Tensor) -> Tensor { a.unary(CT_NEG, "neg") }
}

// MARK: - in place (for optimizers and buffers; not differentiable through)

extension Tensor {
  public func add_(_ other: Tensor, alpha: Double = 1) { check(ct_add_scaled_(handle, other.handle, alpha), "add_") }
  public func sub_(_ other: Tensor) { check(ct_binary_(Int32(CT_SUB.rawValue), handle, other.handle), "sub_") }
  public func mul_(_ other: Tensor) { check(ct_binary_(Int32(CT_MUL.rawValue), handle, other.handle), "mul_") }
  public func div_(_ other: Tensor) { check(ct_binary_(Int32(CT_DIV.rawValue), handle, other.handle), "div_") }
  public func add_(_ s: Double) { check(ct_binary_scalar_(Int32(CT_ADD.rawValue), handle, s), "add_") }
  public func mul_(_ s: Double) { check(ct_binary_scalar_(Int32(CT_MUL.rawValue), handle, s), "mul_") }
  public func div_(_ s: Double) { check(ct_binary_scalar_(Int32(CT_DIV.rawValue), handle, s), "div_") }
  /// self += value · a · b
  public func addcmul_(_ a: Tensor, _ b: Tensor, value: Double = 1) {
    check(ct_addcmul_(handle, a.handle, b.handle, value), "addcmul_")
  }
  /// self += value · a / b
  public func addcdiv_(_ a: Tensor, _ b: Tensor, value: Double = 1) {
    check(ct_addcdiv_(handle, a.handle, b.handle, value), "addcdiv_")
  }
  /// Copies `source` (broadcast, converted) into this tensor's storage.
  public func copy_(_ source: Tensor) { check(ct_copy_(handle, source.handle), "copy_") }
  public func fill_(_ value: Double) { check(ct_fill_(handle, value), "fill_") }
  public func zero_() { fill_(0) }
}

// MARK: - reductions

extension Tensor {
  @inline(__always) func reduce(_ op: ct_reduce_op, _ dims: [Int], _ keepDim: Bool, _ name: StaticString) -> Tensor {
    withShape(dims) { wrap(ct_reduce(Int32(op.rawValue), handle, $0, $1, keepDim), name) }
  }
  /// Sum over `dims` (all when empty).
  public func sum(dims: [Int] = [], keepDim: Bool = false) -> Tensor { reduce(CT_SUM, dims, keepDim, "sum") }
  public func sum(dim: Int, keepDim: Bool = false) -> Tensor { reduce(CT_SUM, [dim], keepDim, "sum") }
  public func mean(dims: [Int] = [], keepDim: Bool = false) -> Tensor { reduce(CT_MEAN, dims, keepDim, "mean") }
  public func mean(dim: Int, keepDim: Bool = false) -> Tensor { reduce(CT_MEAN, [dim], keepDim, "mean") }
  public func logSumExp(dims: [Int] = [], keepDim: Bool = false) -> Tensor {
    reduce(CT_LOGSUMEXP, dims, keepDim, "logsumexp")
  }
  public func logSumExp(dim: Int, keepDim: Bool = false) -> Tensor { reduce(CT_LOGSUMEXP, [dim], keepDim, "logsumexp") }
  public func max(dims: [Int] = [], keepDim: Bool = false) -> Tensor { reduce(CT_AMAX, dims, keepDim, "amax") }
  public func min(dims: [Int] = [], keepDim: Bool = false) -> Tensor { reduce(CT_AMIN, dims, keepDim, "amin") }
  public func prod(dims: [Int] = [], keepDim: Bool = false) -> Tensor { reduce(CT_PROD, dims, keepDim, "prod") }
  public func any(dims: [Int] = [], keepDim: Bool = false) -> Tensor { reduce(CT_ANY, dims, keepDim, "any") }
  public func all(dims: [Int] = [], keepDim: Bool = false) -> Tensor { reduce(CT_ALL, dims, keepDim, "all") }
  /// Variance over `dims` (all when empty), Bessel-corrected when `unbiased`.
  public func variance(dims: [Int] = [], unbiased: Bool = true, keepDim: Bool = false) -> Tensor {
    withShape(dims) { wrap(ct_var(handle, $0, $1, unbiased, keepDim), "var") }
  }
  /// The p-norm of all elements.
  public func norm(_ p: Double = 2) -> Tensor { wrap(ct_norm(handle, p), "norm") }

  /// Largest values along `dim` and where they are.
  public func max(dim: Int, keepDim: Bool = false) -> (values: Tensor, indices: Tensor) {
    var idx: OpaquePointer? = nil
    let v = wrap(ct_max_dim(handle, Int64(dim), keepDim, &idx), "max")
    return (v, wrap(idx, "max"))
  }
  public func min(dim: Int, keepDim: Bool = false) -> (values: Tensor, indices: Tensor) {
    var idx: OpaquePointer? = nil
    let v = wrap(ct_min_dim(handle, Int64(dim), keepDim, &idx), "min")
    return (v, wrap(idx, "min"))
  }
  public func argmax(dim: Int, keepDim: Bool = false) -> Tensor {
    wrap(ct_argmax(handle, Int64(dim), keepDim), "argmax")
  }
  public func topK(_ k: Int, dim: Int = -1, largest: Bool = true, sorted: Bool = true) -> (values: Tensor, indices: Tensor) {
    var idx: OpaquePointer? = nil
    let v = wrap(ct_topk(handle, Int64(k), Int64(dim), largest, sorted, &idx), "topk")
    return (v, wrap(idx, "topk"))
  }
  public func sorted(dim: Int = -1, descending: Bool = false) -> (values: Tensor, indices: Tensor) {
    var idx: OpaquePointer? = nil
    let v = wrap(ct_sort(handle, Int64(dim), descending, &idx), "sort")
    return (v, wrap(idx, "sort"))
  }
  public func cumsum(dim: Int) -> Tensor { wrap(ct_cumsum(handle, Int64(dim)), "cumsum") }
  public func softmax(dim: Int) -> Tensor { wrap(ct_softmax(handle, Int64(dim)), "softmax") }
  public func logSoftmax(dim: Int) -> Tensor { wrap(ct_log_softmax(handle, Int64(dim)), "log_softmax") }
}

// MARK: - shape and indexing

extension Tensor {
  /// Same elements, new shape (one dimension may be -1); copies only when the layout requires it.
  public func reshaped(_ shape: [Int]) -> Tensor { withShape(shape) { wrap(ct_reshape(handle, $0, $1), "reshape") } }
  /// Same storage, new shape; the layout must allow it.
  public func view(_ shape: [Int]) -> Tensor { withShape(shape) { wrap(ct_view(handle, $0, $1), "view") } }
  public func permuted(_ dims: [Int]) -> Tensor { withShape(dims) { wrap(ct_permute(handle, $0, $1), "permute") } }
  public func transposed(_ d0: Int, _ d1: Int) -> Tensor { wrap(ct_transpose(handle, Int64(d0), Int64(d1)), "transpose") }
  /// Broadcast to `shape` without copying (-1 keeps a dimension).
  public func expanded(to shape: [Int]) -> Tensor { withShape(shape) { wrap(ct_expand(handle, $0, $1), "expand") } }
  public func squeezed(dim: Int? = nil) -> Tensor {
    wrap(ct_squeeze(handle, Int64(dim ?? 0), dim == nil), "squeeze")
  }
  public func unsqueezed(dim: Int) -> Tensor { wrap(ct_unsqueeze(handle, Int64(dim)), "unsqueeze") }
  /// `length` entries from `start` along `dim` (a view).
  public func narrow(dim: Int, start: Int, length: Int) -> Tensor {
    wrap(ct_narrow(handle, Int64(dim), Int64(start), Int64(length)), "narrow")
  }
  /// The slice at `index` along `dim`, with that dimension removed (a view).
  public func select(dim: Int, index: Int) -> Tensor { wrap(ct_select(handle, Int64(dim), Int64(index)), "select") }
  public subscript(_ index: Int) -> Tensor { select(dim: 0, index: index) }

  public static func cat(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
    withHandles(tensors) { wrap(ct_cat($0, $1, Int64(dim)), "cat") }
  }
  public static func stack(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
    withHandles(tensors) { wrap(ct_stack($0, $1, Int64(dim)), "stack") }
  }
  /// Pieces of the given sizes along `dim` (views).
  public func split(sizes: [Int], dim: Int = 0) -> [Tensor] {
    var out = [OpaquePointer?](repeating: nil, count: sizes.count)
    withShape(sizes) { check(ct_split(handle, $0, $1, Int64(dim), &out), "split") }
    return out.map { Tensor(owning: $0!) }
  }
  /// `chunks` nearly equal pieces along `dim` (the last may be smaller), like torch.chunk.
  public func chunk(_ chunks: Int, dim: Int = 0) -> [Tensor] {
    let n = size(dim)
    if n == 0 { return split(sizes: Array(repeating: 0, count: chunks), dim: dim) }
    let step = (n + chunks - 1) / chunks
    var sizes: [Int] = []
    var left = n
    while left > 0 {
      sizes.append(Swift.min(step, left))
      left -= step
    }
    return split(sizes: sizes, dim: dim)
  }
  public func indexSelect(dim: Int, index: Tensor) -> Tensor {
    wrap(ct_index_select(handle, Int64(dim), index.handle), "index_select")
  }
  public func gather(dim: Int, index: Tensor) -> Tensor { wrap(ct_gather(handle, Int64(dim), index.handle), "gather") }
  /// A copy with `source` added at `index` along `dim`.
  public func scatterAdd(dim: Int, index: Tensor, source: Tensor) -> Tensor {
    wrap(ct_scatter_add(handle, Int64(dim), index.handle, source.handle), "scatter_add")
  }
  public func tril(_ k: Int = 0) -> Tensor { wrap(ct_tril(handle, Int64(k)), "tril") }
  public func triu(_ k: Int = 0) -> Tensor { wrap(ct_triu(handle, Int64(k)), "triu") }
}

// MARK: - linear algebra and network primitives

extension Tensor {
  public func matmul(_ other: Tensor) -> Tensor { wrap(ct_matmul(handle, other.handle), "matmul") }
  public func bmm(_ other: Tensor) -> Tensor { wrap(ct_bmm(handle, other.handle), "bmm") }

  /// x · Wᵀ + b.
  public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    withExtendedLifetime(bias) { wrap(ct_linear(x.handle, weight.handle, bias?.handle), "linear") }
  }
  /// x · W + b with W stored [in, out] (Hugging Face's `Conv1D` layout), as one matrix product over all
  /// leading dimensions of `x`.
  public static func affine(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    withExtendedLifetime(bias) { wrap(ct_affine(x.handle, weight.handle, bias?.handle), "affine") }
  }

  /// Multi-head self-attention from packed projections: `qkv` [B, T, 3·H·d] holds q, k and v side by side
  /// (each H heads of width d); returns softmax(q·kᵀ/√d + bias)·v with the heads merged, [B, T, H·d].
  /// `bias` is an additive mask [B or 1, 1 or H, T, T]; nil means causal. One autograd node with its own
  /// backward, so small models pay for far fewer ops than the composition of views, products and masks.
  public static func packedSelfAttention(_ qkv: Tensor, heads: Int, bias: Tensor? = nil) -> Tensor {
    withExtendedLifetime(bias) {
      wrap(ct_packed_self_attention(qkv.handle, Int64(heads), bias?.handle), "packed_self_attention")
    }
  }

  /// Rows of `weight` picked by integer `indices`.
  public static func embedding(_ indices: Tensor, weight: Tensor) -> Tensor {
    wrap(ct_embedding(weight.handle, indices.handle), "embedding")
  }
  public static func layerNorm(_ x: Tensor, normalizedShape: [Int], weight: Tensor?, bias: Tensor?,
                               eps: Double = 1e-5) -> Tensor {
    withExtendedLifetime((weight, bias)) {
      withShape(normalizedShape) {
        wrap(ct_layer_norm(x.handle, $0, $1, weight?.handle, bias?.handle, eps), "layer_norm")
      }
    }
  }

  public enum Reduction: Int32, Sendable { case none = 0, mean = 1, sum = 2 }

  /// Cross-entropy of `logits` [N, C] against class indices `targets` [N]; entries equal to
  /// `ignoreIndex` contribute nothing and are excluded from the mean's denominator.
  public static func crossEntropy(logits: Tensor, targets: Tensor, ignoreIndex: Int = -100,
                                  reduction: Reduction = .mean, labelSmoothing: Double = 0) -> Tensor {
    wrap(ct_cross_entropy(logits.handle, targets.handle, Int64(ignoreIndex), reduction.rawValue, labelSmoothing),
         "cross_entropy")
  }

  /// Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p).
  /// Identity when not training or p == 0. The mask is drawn from `generator` so runs reproduce.
  public func dropout(p: Double, training: Bool, generator: Generator? = nil) -> Tensor {
    guard training, p > 0 else { return self }
    if p >= 1 { return self * 0 }
    let keep = withoutGradients { Tensor.full(shape, 1 - p, dtype: dtype, device: device).bernoulli(generator: generator) }
    return self * keep / (1 - p)
  }

  /// Samples 0/1 with the probabilities held in this tensor.
  public func bernoulli(generator: Generator? = nil) -> Tensor {
    wrap(ct_bernoulli(handle, generator?.handle), "bernoulli")
  }
  /// Indices drawn from the (unnormalised) non-negative weights in each row.
  public func multinomial(_ numSamples: Int, replacement: Bool = false, generator: Generator? = nil) -> Tensor {
    wrap(ct_multinomial(handle, Int64(numSamples), replacement, generator?.handle), "multinomial")
  }

  /// Elementwise |a-b| <= atol + rtol·|b| or a == b (and equal shapes), like torch.allclose.
  public func allClose(_ other: Tensor, rtol: Double = 1e-5, atol: Double = 1e-8) -> Bool {
    guard shape == other.shape else { return false }
    let a = to(.float64), b = other.to(.float64)
    // As torch.isclose: non-finite values are close only when equal.
    let finite = a.isFinite().logicalAnd(b.isFinite())
    let near = finite.logicalAnd((a - b).abs().le(b.abs() * rtol + atol))
    return a.eq(b).logicalOr(near).all().item() != 0
  }
}
