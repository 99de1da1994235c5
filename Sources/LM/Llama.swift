import NN
import Torch

/// `linear` for one row as a matrix-vector product (`Tensor.rowLinear`). Decoding one token at a time is
/// memory-bound, and libtorch's `linear` on a single row still runs a general matrix product whose BLAS call
/// packs (copies) the whole weight first; `mv` streams it once. Measured on SmolLM2-135M (2 cores, OpenBLAS):
/// the tied 49152×576 head takes 9.5 ms instead of 20 ms, a 1536×576 projection 0.08 ms instead of 0.35 ms.
/// Several rows (prompts, scoring, training) keep `linear`.
func rowwise(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor { Tensor.rowLinear(x, weight: weight, bias: bias) }

func rowwise(_ layer: Linear, _ x: Tensor) -> Tensor { layer.rows(x) }

public final class LlamaAttention: Module {
  let q_proj: Linear, k_proj: Linear, v_proj: Linear, o_proj: Linear
  let heads: Int, kvHeads: Int

  init(_ c: ModelConfig, dtype: DType, generator: Generator?) {
    heads = c.heads
    kvHeads = c.kvHeads
    let d = c.hiddenSize, kv = c.kvHeads * c.headDim
    q_proj = LlamaLM.linear(d, d, bias: c.qkvBias, dtype: dtype, generator: generator)
    k_proj = LlamaLM.linear(d, kv, bias: c.qkvBias, dtype: dtype, generator: generator)
    v_proj = LlamaLM.linear(d, kv, bias: c.qkvBias, dtype: dtype, generator: generator)
    o_proj = LlamaLM.linear(d, d, bias: false, dtype: dtype, generator: generator)
  }

  func callAsFunction(_ x: Tensor, layer: Int, cos: Tensor, sin: Tensor, bias: Tensor?, cache: KVCache?) -> Tensor {
    let (qx, kx, vx) = (rowwise(q_proj, x), rowwise(k_proj, x), rowwise(v_proj, x))
    if let cache, cache.decodesInOneCall(x) {
      // A decoding step: rotary, cache write and grouped attention in one call.
      return rowwise(o_proj, cache.decodeAttention(layer: layer, q: qx, k: kx, v: vx, cos: cos, sin: sin, heads: heads,
                                                   bias: bias))
    }
    let q = Rotary.apply(Attention.splitHeads(qx, heads: heads), cos: cos, sin: sin)
    var k = Rotary.apply(Attention.splitHeads(kx, heads: kvHeads), cos: cos, sin: sin)
    var v = Attention.splitHeads(vx, heads: kvHeads)
    if let cache { (k, v) = cache.append(layer: layer, keys: k, values: v) }
    return rowwise(o_proj, Attention.mergeHeads(Attention.attend(q: q, k: k, v: v, bias: bias, causal: true)))
  }
}

/// SwiGLU: down(silu(gate(x)) · up(x)).
public final class LlamaMLP: Module {
  let gate_proj: Linear, up_proj: Linear, down_proj: Linear

  init(_ c: ModelConfig, dtype: DType, generator: Generator?) {
    gate_proj = LlamaLM.linear(c.hiddenSize, c.intermediateSize, bias: false, dtype: dtype, generator: generator)
    up_proj = LlamaLM.linear(c.hiddenSize, c.intermediateSize, bias: false, dtype: dtype, generator: generator)
    down_proj = LlamaLM.linear(c.intermediateSize, c.hiddenSize, bias: false, dtype: dtype, generator: generator)
  }

  func callAsFunction(_ x: Tensor) -> Tensor {
    rowwise(down_proj, rowwise(gate_proj, x).silu() * rowwise(up_proj, x))
  }
}

public final class LlamaDecoderLayer: Module {
  let input_layernorm: RMSNorm
  let self_attn: LlamaAttention
  let post_attention_layernorm: RMSNorm
  let mlp: LlamaMLP

  init(_ c: ModelConfig, dtype: DType, generator: Generator?) {
    input_layernorm = RMSNorm(c.hiddenSize, eps: c.normEps, dtype: dtype)
    self_attn = LlamaAttention(c, dtype: dtype, generator: generator)
    post_attention_layernorm = RMSNorm(c.hiddenSize, eps: c.normEps, dtype: dtype)
    mlp = LlamaMLP(c, dtype: dtype, generator: generator)
  }
}

public final class LlamaBody: Module {
  let embed_tokens: Embedding
  let layers: [LlamaDecoderLayer]
  let norm: RMSNorm

  init(_ c: ModelConfig, dtype: DType, generator: Generator?) {
    embed_tokens = Embedding(c.vocabSize, c.hiddenSize, std: 0.02, dtype: dtype, generator: generator)
    layers = (0..<c.layers).map { _ in LlamaDecoderLayer(c, dtype: dtype, generator: generator) }
    norm = RMSNorm(c.hiddenSize, eps: c.normEps, dtype: dtype)
  }
}

/// Llama (`LlamaForCausalLM`) and Qwen2 (`Qwen2ForCausalLM`, the same with q/k/v biases): RMSNorm,
/// rotary positions with `rope_theta`, grouped-query attention, SwiGLU, optionally tied head.
/// Parameter names equal the checkpoint's keys.
public final class LlamaLM: CausalLM {
  public let config: ModelConfig
  let model: LlamaBody
  let lm_head: Linear?
  let rotary: Rotary

  public init(_ config: ModelConfig, dtype: DType = .float32, generator: Generator? = nil) {
    self.config = config
    model = LlamaBody(config, dtype: dtype, generator: generator)
    lm_head = config.tieEmbeddings ? nil : LlamaLM.linear(config.hiddenSize, config.vocabSize, bias: false, dtype: dtype,
                                                          generator: generator)
    rotary = Rotary(headDim: config.headDim, theta: config.ropeTheta)
  }

  /// Linear layers initialised N(0, 0.02²) with zero bias, as Hugging Face initialises Llama.
  static func linear(_ i: Int, _ o: Int, bias: Bool, dtype: DType, generator: Generator?) -> Linear {
    let l = Linear(i, o, bias: bias, dtype: dtype, generator: generator)
    withoutGradients {
      l.weight.copy_(Tensor.randn(l.weight.shape, dtype: dtype, generator: generator) * 0.02)
      l.bias?.zero_()
    }
    return l
  }

  public var embeddingWeight: Tensor { model.embed_tokens.weight }

  public func hiddenStates(embeddings: Tensor, positions: Tensor, attentionBias: Tensor?, cache: KVCache?) -> Tensor {
    var x = embeddings
    let (cos, sin) = rotary.cosSin(positions: positions, dtype: x.dtype)
    for (i, layer) in model.layers.enumerated() {
      x = x + layer.self_attn(layer.input_layernorm(x), layer: i, cos: cos, sin: sin, bias: attentionBias, cache: cache)
      x = x + layer.mlp(layer.post_attention_layernorm(x))
    }
    return model.norm(x)
  }

  public func outputLogits(_ hidden: Tensor) -> Tensor {
    (lm_head.map { rowwise($0, hidden) } ?? rowwise(hidden, weight: model.embed_tokens.weight, bias: nil)).float32UnderAutocast
  }
}
