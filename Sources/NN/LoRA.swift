import Torch

/// A low-rank adapter on one linear layer (Hu et al. 2021, as PEFT implements it): the layer computes
/// W·x + b + (α/r)·B·A·dropout(x), with A [r, in] Kaiming-uniform (PyTorch's `Linear` initialisation,
/// bound 1/√in) and B [out, r] zero, so a fresh adapter leaves every output unchanged.
///
/// Its tensors are named as PEFT saves them, beside the layer's own: `<layer>.lora_A.weight` and
/// `<layer>.lora_B.weight` (it is a `FlattenedModule`).
public final class LoRA: FlattenedModule {
  public let lora_A: Linear
  public let lora_B: Linear
  let lora_dropout: Dropout?
  public let rank: Int
  public let alpha: Double
  /// α/r, or α/√r with rank-stabilised scaling (PEFT's `use_rslora`).
  public let scaling: Double
  public let rankStabilized: Bool
  /// Off: the layer computes its base output only (the frozen base model, e.g. as a reference policy).
  public var enabled = true

  public init(inFeatures: Int, outFeatures: Int, rank: Int, alpha: Double, dropout: Double = 0,
              rankStabilized: Bool = false, dtype: DType = .float32, generator: Generator? = nil) {
    precondition(rank > 0, "a LoRA rank must be positive")
    self.rank = rank
    self.alpha = alpha
    self.rankStabilized = rankStabilized
    scaling = rankStabilized ? alpha / Double(rank).squareRoot() : alpha / Double(rank)
    lora_A = Linear(inFeatures, rank, bias: false, dtype: dtype, generator: generator)
    let b = Linear(rank, outFeatures, bias: false, dtype: dtype, generator: generator)
    withoutGradients { b.weight.zero_() }
    lora_B = b
    lora_dropout = dropout > 0 ? Dropout(dropout, generator: generator) : nil
  }

  public var inFeatures: Int { lora_A.weight.size(1) }
  public var outFeatures: Int { lora_B.weight.size(0) }
  public var dropout: Double { lora_dropout?.p ?? 0 }

  /// `base` (the layer's own output for `x`) plus the adapter's update, when enabled.
  public func adding(to base: Tensor, input x: Tensor) -> Tensor {
    guard enabled else { return base }
    let h = lora_dropout.map { $0(x) } ?? x
    let a = Tensor.rowLinear(h, weight: lora_A.weight, bias: nil)
    return base + Tensor.rowLinear(a, weight: lora_B.weight, bias: nil) * scaling
  }

  /// ΔW = scaling·B·A, [out, in].
  public var weightDelta: Tensor { lora_B.weight.matmul(lora_A.weight) * scaling }
}

extension Optional where Wrapped == LoRA {
  /// The layer's output with its adapter's update, if it has one.
  @inline(__always)
  public func adding(to base: Tensor, input x: Tensor) -> Tensor {
    switch self {
    case .some(let lora): return lora.adding(to: base, input: x)
    case .none: return base
    }
  }
}

/// A layer a `LoRA` adapter can be attached to (PEFT's "target modules").
public protocol LoRAHost: Module {
  var lora: LoRA? { get set }
  var inFeatures: Int { get }
  var outFeatures: Int { get }
  /// Whether the weight is stored [in, out] (Hugging Face's `Conv1D`; PEFT's `fan_in_fan_out`).
  var weightIsInOut: Bool { get }
  var weight: Tensor { get }
}

extension LoRAHost {
  public var dtype: DType { weight.dtype }

  /// Adds `lora`'s update to this layer's weight (W += ΔW, transposed for [in, out] weights).
  public func fold(_ lora: LoRA) {
    withoutGradients {
      let delta = lora.weightDelta.to(weight.dtype, weight.device)
      weight.add_(weightIsInOut ? delta.transposed(0, 1) : delta)
    }
  }

  /// Folds the adapter into the weight and removes it.
  public func mergeAdapter() {
    guard let lora else { return }
    fold(lora)
    self.lora = nil
  }
}

extension Linear: LoRAHost {
  public var inFeatures: Int { weight.size(1) }
  public var outFeatures: Int { weight.size(0) }
  public var weightIsInOut: Bool { false }
}
