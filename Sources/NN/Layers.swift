import Torch

/// y = x·Wᵀ + b, with W stored [out, in] as PyTorch and Hugging Face do. Initialised like
/// `torch.nn.Linear`: W and b uniform in ±1/√in.
public final class Linear: Module {
  public let weight: Tensor
  public let bias: Tensor?
  /// A low-rank adapter whose update is added to the output (`LoRA`).
  public var lora: LoRA?

  public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, dtype: DType = .float32,
              generator: Generator? = nil) {
    let bound = 1 / Double(inFeatures).squareRoot()
    weight = Init.uniform([outFeatures, inFeatures], bound: bound, dtype: dtype, generator: generator)
    self.bias = bias ? Init.uniform([outFeatures], bound: bound, dtype: dtype, generator: generator) : nil
  }

  public func callAsFunction(_ x: Tensor) -> Tensor { lora.adding(to: Tensor.linear(x, weight: weight, bias: bias), input: x) }

  /// The same, with one row computed as a matrix-vector product (`Tensor.rowLinear`: decoding).
  public func rows(_ x: Tensor) -> Tensor { lora.adding(to: Tensor.rowLinear(x, weight: weight, bias: bias), input: x) }
}

/// A lookup table of `count` vectors of size `dim`, initialised N(0, std²).
public final class Embedding: Module {
  public let weight: Tensor

  public init(_ count: Int, _ dim: Int, std: Double = 1, dtype: DType = .float32, generator: Generator? = nil) {
    weight = (Tensor.randn([count, dim], dtype: dtype, generator: generator) * std).requiringGrad()
  }

  public func callAsFunction(_ indices: Tensor) -> Tensor { Tensor.embedding(indices, weight: weight) }
}

/// Layer normalisation over the last dimension.
public final class LayerNorm: Module {
  public let weight: Tensor?
  public let bias: Tensor?
  public let eps: Double
  let dim: Int

  public init(_ dim: Int, eps: Double = 1e-5, affine: Bool = true, dtype: DType = .float32) {
    self.dim = dim
    self.eps = eps
    weight = affine ? Tensor.ones([dim], dtype: dtype).requiringGrad() : nil
    bias = affine ? Tensor.zeros([dim], dtype: dtype).requiringGrad() : nil
  }

  public func callAsFunction(_ x: Tensor) -> Tensor {
    Tensor.layerNorm(x, normalizedShape: [dim], weight: weight, bias: bias, eps: eps)
  }
}

/// Root-mean-square normalisation (Llama): x / √(mean(x²) + eps) · w, computed in float32 at least.
public final class RMSNorm: Module {
  public let weight: Tensor
  public let eps: Double

  public init(_ dim: Int, eps: Double = 1e-6, dtype: DType = .float32) {
    self.eps = eps
    weight = Tensor.ones([dim], dtype: dtype).requiringGrad()
  }

  /// One call into libtorch (`Tensor.rmsNorm`): the same numbers as the six ops it stands for.
  public func callAsFunction(_ x: Tensor) -> Tensor { Tensor.rmsNorm(x, weight: weight, eps: eps) }
}

/// Inverted dropout whose masks come from the given generator.
public final class Dropout: Module, TrainingModeAware {
  public let p: Double
  public var training = true
  let generator: Generator?

  public init(_ p: Double, generator: Generator? = nil) {
    self.p = p
    self.generator = generator
  }

  public func callAsFunction(_ x: Tensor) -> Tensor { x.dropout(p: p, training: training, generator: generator) }
}

/// The elementwise non-linearities layers can be built with.
public enum Activation: String, Sendable, CaseIterable {
  case relu, gelu, geluTanh = "gelu_tanh", silu, tanh, sigmoid, identity

  public func callAsFunction(_ x: Tensor) -> Tensor {
    switch self {
    case .relu: return x.relu()
    case .gelu: return x.gelu()
    case .geluTanh: return x.gelu(approximate: true)
    case .silu: return x.silu()
    case .tanh: return x.tanh()
    case .sigmoid: return x.sigmoid()
    case .identity: return x
    }
  }
}

/// A stack of Linear layers with an activation between them (none after the last).
public final class MLP: Module {
  public let layers: [Linear]
  public let activation: Activation

  /// `sizes` = [input, hidden…, output].
  public init(_ sizes: [Int], activation: Activation = .relu, bias: Bool = true, dtype: DType = .float32,
              generator: Generator? = nil) {
    precondition(sizes.count >= 2, "an MLP needs an input and an output size")
    layers = zip(sizes, sizes.dropFirst()).map { Linear($0, $1, bias: bias, dtype: dtype, generator: generator) }
    self.activation = activation
  }

  public func callAsFunction(_ x: Tensor) -> Tensor {
    var h = x
    for (i, layer) in layers.enumerated() {
      h = layer(h)
      if i < layers.count - 1 { h = activation(h) }
    }
    return h
  }
}

/// Parameter initialisers. Each returns a leaf that requires gradients.
public enum Init {
  public static func uniform(_ shape: [Int], bound: Double, dtype: DType = .float32, generator: Generator? = nil) -> Tensor {
    ((Tensor.rand(shape, dtype: dtype, generator: generator) * 2 - 1) * bound).requiringGrad()
  }
  public static func normal(_ shape: [Int], std: Double, dtype: DType = .float32, generator: Generator? = nil) -> Tensor {
    (Tensor.randn(shape, dtype: dtype, generator: generator) * std).requiringGrad()
  }
}
