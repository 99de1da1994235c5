import NN
import Torch

/// Hugging Face's `Conv1D`: a linear layer whose weight is stored [in, out].
public final class Conv1D: LoRAHost {
  public let weight: Tensor
  public let bias: Tensor
  public var lora: LoRA?

  init(_ inFeatures: Int, _ outFeatures: Int, std: Double, dtype: DType, generator: Generator?) {
    weight = Init.normal([inFeatures, outFeatures], std: std, dtype: dtype, generator: generator)
    bias = Tensor.zeros([outFeatures], dtype: dtype).requiringGrad()
  }

  /// One row (a decoding step at batch 1) is a matrix-vector product; more rows one matrix product.
  func callAsFunction(_ x: Tensor) -> Tensor {
    lora.adding(to: Tensor.rowLinear(x, weight: weight, bias: bias, weightInOut: true), input: x)
  }

  public var inFeatures: Int { weight.size(0) }
  public var outFeatures: Int { weight.size(1) }
  public var weightIsInOut: Bool { true }
}

public final class GPT2Attention: Module {
  let c_attn: Conv1D
  let c_proj: Conv1D
  let heads: Int

  init(_ c: ModelConfig, dtype: DType, generator: Generator?) {
    heads = c.heads
    c_attn = Conv1D(c.hiddenSize, 3 * c.hiddenSize, std: 0.02, dtype: dtype, generator: generator)
    // GPT-2 scales residual projections by 1/√(2·layers) at initialisation.
    c_proj = Conv1D(c.hiddenSize, c.hiddenSize, std: 0.02 / Double(2 * c.layers).squareRoot(), dtype: dtype,
                    generator: generator)
  }

  func callAsFunction(_ x: Tensor, layer: Int, bias: Tensor?, cache: KVCache?) -> Tensor {
    guard let cache else {
      return c_proj(Tensor.packedSelfAttention(c_attn(x), heads: heads, bias: bias))
    }
    let d = x.size(-1)
    let qkv = c_attn(x).split(sizes: [d, d, d], dim: -1)
    if cache.decodesInOneCall(x) {
      return c_proj(cache.decodeAttention(layer: layer, q: qkv[0], k: qkv[1], v: qkv[2], cos: nil, sin: nil, heads: heads,
                                          bias: bias))
    }
    let q = Attention.splitHeads(qkv[0], heads: heads)
    var k = Attention.splitHeads(qkv[1], heads: heads)
    var v = Attention.splitHeads(qkv[2], heads: heads)
    (k, v) = cache.append(layer: layer, keys: k, values: v)
    return c_proj(Attention.mergeHeads(Attention.attend(q: q, k: k, v: v, bias: bias, causal: true)))
  }
}

public final class GPT2MLP: Module {
  let c_fc: Conv1D
  let c_proj: Conv1D
  let activation: Activation

  init(_ c: ModelConfig, dtype: DType, generator: Generator?) {
    c_fc = Conv1D(c.hiddenSize, c.intermediateSize, std: 0.02, dtype: dtype, generator: generator)
    c_proj = Conv1D(c.intermediateSize, c.hiddenSize, std: 0.02 / Double(2 * c.layers).squareRoot(), dtype: dtype,
                    generator: generator)
    switch c.activation {
    case "gelu": activation = .gelu
    case "relu": activation = .relu
    case "silu": activation = .silu
    default: activation = .geluTanh
    }
  }

  func callAsFunction(_ x: Tensor) -> Tensor { c_proj(activation(c_fc(x))) }
}

public final class GPT2Block: Module {
  let ln_1: LayerNorm
  let attn: GPT2Attention
  let ln_2: LayerNorm
  let mlp: GPT2MLP

  init(_ c: ModelConfig, dtype: DType, generator: Generator?) {
    ln_1 = LayerNorm(c.hiddenSize, eps: c.normEps, dtype: dtype)
    attn = GPT2Attention(c, dtype: dtype, generator: generator)
    ln_2 = LayerNorm(c.hiddenSize, eps: c.normEps, dtype: dtype)
    mlp = GPT2MLP(c, dtype: dtype, generator: generator)
  }

  func callAsFunction(_ x: Tensor, layer: Int, bias: Tensor?, cache: KVCache?) -> Tensor {
    let h = x + attn(ln_1(x), layer: layer, bias: bias, cache: cache)
    return h + mlp(ln_2(h))
  }
}

public final class GPT2Body: Module {
  let wte: Embedding
  let wpe: Embedding
  let h: [GPT2Block]
  let ln_f: LayerNorm

  init(_ c: ModelConfig, dtype: DType, generator: Generator?) {
    wte = Embedding(c.vocabSize, c.hiddenSize, std: 0.02, dtype: dtype, generator: generator)
    wpe = Embedding(c.maxPositions, c.hiddenSize, std: 0.01, dtype: dtype, generator: generator)
    h = (0..<c.layers).map { _ in GPT2Block(c, dtype: dtype, generator: generator) }
    ln_f = LayerNorm(c.hiddenSize, eps: c.normEps, dtype: dtype)
  }
}

/// GPT-2 (`GPT2LMHeadModel`): learned positions, pre-LayerNorm blocks, fused q/k/v `Conv1D`,
/// GELU (tanh approximation by default) and an output head tied to the token embedding unless
/// `tie_word_embeddings` is false. Parameter names equal the checkpoint's keys.
public final class GPT2LM: CausalLM {
  public let config: ModelConfig
  let transformer: GPT2Body
  let lm_head: Linear?

  public init(_ config: ModelConfig, dtype: DType = .float32, generator: Generator? = nil) {
    self.config = config
    transformer = GPT2Body(config, dtype: dtype, generator: generator)
    lm_head = config.tieEmbeddings ? nil : Linear(config.hiddenSize, config.vocabSize, bias: false, dtype: dtype,
                                                  generator: generator)
  }

  public var embeddingWeight: Tensor { transformer.wte.weight }

  public func hiddenStates(embeddings: Tensor, positions: Tensor, attentionBias: Tensor?, cache: KVCache?) -> Tensor {
    run(embeddings + transformer.wpe(positions), attentionBias: attentionBias, cache: cache)
  }

  public func outputLogits(_ hidden: Tensor) -> Tensor {
    (lm_head?(hidden) ?? Tensor.linear(hidden, weight: transformer.wte.weight)).float32UnderAutocast
  }

  /// Positions 0..<T are the first T rows of the position table: added by broadcasting, with no gather
  /// forward or scatter backward.
  public func callAsFunction(_ tokens: Tensor) -> Tensor {
    let t = tokens.size(1)
    let table = transformer.wpe.weight
    let wpe = t == config.maxPositions ? table : table.narrow(dim: 0, start: 0, length: t)
    return outputLogits(run(Tensor.embedding(tokens, weight: embeddingWeight) + wpe, attentionBias: nil, cache: nil))
  }

  func run(_ embedded: Tensor, attentionBias: Tensor?, cache: KVCache?) -> Tensor {
    var x = embedded
    for (i, block) in transformer.h.enumerated() { x = block(x, layer: i, bias: attentionBias, cache: cache) }
    return transformer.ln_f(x)
  }
}
