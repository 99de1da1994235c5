// Gradient checks: every differentiable op's backward, as reached through the Swift API, against
// central finite differences in float64.
//
// For inputs x₁…xₖ and an op f, the scalar L = Σ f(x) ⊙ W uses a fixed random W (seeded Generator)
// so that every output element contributes with a distinct weight; the analytic ∂L/∂xᵢ comes from
// autograd, the numeric one from (L(x + ε eⱼ) − L(x − ε eⱼ)) / 2ε evaluated under `withoutGradients`.

import Foundation
import Testing
@testable import Torch

// MARK: - the checker

/// What one gradient check saw: per input, the analytic and the numeric gradient (row-major).
private struct GradCheckReport {
  let analytic: [[Double]]
  let numeric: [[Double]]
  let output: Tensor
  let weight: Tensor
}

private let gradEps = 1e-6
private let gradAtol = 1e-6
private let gradRtol = 1e-5

/// Checks autograd's gradient of `Σ f(inputs) ⊙ W` with respect to every input against central
/// finite differences. Inputs must be float64 and tiny (≤ 12 elements each).
@discardableResult
private func checkGradients(
  _ inputs: [Tensor], seed: UInt64 = 0x5EED, requireNonZero: Bool = true,
  sourceLocation: SourceLocation = #_sourceLocation,
  _ f: ([Tensor]) -> Tensor
) -> GradCheckReport {
  let values = inputs.map { $0.toArray(Double.self) }
  let shapes = inputs.map(\.shape)
  for (i, x) in inputs.enumerated() {
    #expect(x.dtype == .float64, "input \(i) must be float64", sourceLocation: sourceLocation)
    #expect(x.count <= 12, "input \(i) too large for a finite-difference check", sourceLocation: sourceLocation)
  }

  // Analytic.
  let leaves = zip(values, shapes).map { Tensor($0, shape: $1).requiringGrad() }
  let output = f(leaves)
  #expect(output.requiresGrad, "the op's output does not record gradients", sourceLocation: sourceLocation)
  #expect(output.dtype == .float64, "the op's output is \(output.dtype)", sourceLocation: sourceLocation)
  let weight = Tensor.randn(output.shape, dtype: .float64, generator: Generator(seed: seed))
  (output * weight).sum().backward()
  var analytic: [[Double]] = []
  for (i, leaf) in leaves.enumerated() {
    if let g = leaf.grad {
      #expect(g.shape == shapes[i], "gradient \(i) has shape \(g.shape), input \(shapes[i])",
              sourceLocation: sourceLocation)
      analytic.append(g.toArray(Double.self))
    } else {
      Issue.record("no gradient reached input \(i)", sourceLocation: sourceLocation)
      analytic.append([Double](repeating: .nan, count: values[i].count))
    }
  }

  // Numeric.
  let numeric: [[Double]] = withoutGradients {
    var result: [[Double]] = []
    for i in values.indices {
      var row: [Double] = []
      for j in values[i].indices {
        var v = values
        v[i][j] = values[i][j] + gradEps
        let xsPlus = zip(v, shapes).map { Tensor($0, shape: $1) }
        let plus = (f(xsPlus) * weight).sum().item()
        v[i][j] = values[i][j] - gradEps
        let xsMinus = zip(v, shapes).map { Tensor($0, shape: $1) }
        let minus = (f(xsMinus) * weight).sum().item()
        row.append((plus - minus) / (2 * gradEps))
      }
      result.append(row)
    }
    return result
  }

  var mismatches: [String] = []
  for i in values.indices {
    for j in values[i].indices {
      let a = analytic[i][j], n = numeric[i][j]
      if !(Swift.abs(a - n) <= gradAtol + gradRtol * Swift.abs(n)) {
        mismatches.append("input \(i)[\(j)]: analytic \(a), numeric \(n)")
      }
    }
  }
  if !mismatches.isEmpty {
    let detail = mismatches.prefix(12).joined(separator: "\n")
    Issue.record("gradient mismatch (\(mismatches.count)):\n\(detail)", sourceLocation: sourceLocation)
  }
  if requireNonZero {
    let largest = numeric.joined().map { Swift.abs($0) }.max() ?? 0
    #expect(largest > 1e-3, "degenerate check: the loss does not depend on the inputs",
            sourceLocation: sourceLocation)
  }
  return GradCheckReport(analytic: analytic, numeric: numeric, output: output, weight: weight)
}

// MARK: - inputs

/// n smooth, distinct values in about [-1.5, 1.5] (the phase k gives different inputs).
private func waveValues(_ n: Int, _ k: Double = 0) -> [Double] {
  (0..<n).map { 1.5 * sin(1.3 * Double($0) + 0.7 + k) }
}

private func f64(_ values: [Double], _ shape: [Int]) -> Tensor { Tensor(values, shape: shape) }

/// Twelve distinct values, all at least 0.45 away from 0 and from each other by at least 0.05.
private let distinct12: [Double] = [0.7, -1.3, 1.9, 0.45, -0.8, 1.15, -1.6, 0.95, 1.4, -0.55, 0.6, -1.05]
/// Six real values away from 0 and from the clamp bounds used below (-0.5, 1.0).
private let real6: [Double] = [-1.7, -0.9, -0.35, 0.4, 0.8, 1.3]
/// Six positive values.
private let positive6: [Double] = [0.3, 0.7, 1.1, 1.6, 2.2, 2.9]

private func i64(_ values: [Int64], _ shape: [Int]? = nil) -> Tensor { Tensor(values, shape: shape) }

/// A named op with its inputs, for the parametrised checks.
struct GradCase: Sendable, CustomTestStringConvertible {
  let name: String
  let inputs: [GradInput]
  let f: @Sendable ([Tensor]) -> Tensor
  init(_ name: String, _ inputs: [GradInput], _ f: @escaping @Sendable ([Tensor]) -> Tensor) {
    self.name = name
    self.inputs = inputs
    self.f = f
  }
  var testDescription: String { name }
  func tensors() -> [Tensor] { inputs.map { Tensor($0.values, shape: $0.shape) } }
}

struct GradInput: Sendable {
  let values: [Double]
  let shape: [Int]
  init(_ values: [Double], _ shape: [Int]) {
    precondition(values.count == shape.reduce(1, *))
    self.values = values
    self.shape = shape
  }
  static func wave(_ shape: [Int], _ k: Double = 0) -> GradInput {
    GradInput(waveValues(shape.reduce(1, *), k), shape)
  }
}

// MARK: - elementwise

/// Unary ops on `real6` (no zeros, no clamp bounds) or `positive6`.
let gcUnaryCases: [GradCase] = {
  let r = GradInput(real6, [2, 3]), p = GradInput(positive6, [2, 3])
  return [
    GradCase("neg", [r]) { -$0[0] },
    GradCase("exp", [r]) { $0[0].exp() },
    GradCase("log", [p]) { $0[0].log() },
    GradCase("log1p", [p]) { $0[0].log1p() },
    GradCase("expm1", [r]) { $0[0].expm1() },
    GradCase("sqrt", [p]) { $0[0].sqrt() },
    GradCase("rsqrt", [p]) { $0[0].rsqrt() },
    GradCase("pow(3)", [r]) { $0[0].pow(3) },
    GradCase("pow(2.5)", [p]) { $0[0].pow(2.5) },
    GradCase("pow(-1.5)", [p]) { $0[0].pow(-1.5) },
    GradCase("abs", [r]) { $0[0].abs() },
    GradCase("square", [r]) { $0[0].square() },
    GradCase("reciprocal", [r]) { $0[0].reciprocal() },
    GradCase("sin", [r]) { $0[0].sin() },
    GradCase("cos", [r]) { $0[0].cos() },
    GradCase("tanh", [r]) { $0[0].tanh() },
    GradCase("sigmoid", [r]) { $0[0].sigmoid() },
    GradCase("relu", [r]) { $0[0].relu() },
    GradCase("gelu", [r]) { $0[0].gelu() },
    GradCase("gelu(approximate)", [r]) { $0[0].gelu(approximate: true) },
    GradCase("silu", [r]) { $0[0].silu() },
    GradCase("softplus", [r]) { $0[0].softplus() },
    GradCase("logSigmoid", [r]) { $0[0].logSigmoid() },
    GradCase("clamp(-0.5, 1)", [r]) { $0[0].clamp(min: -0.5, max: 1.0) },
    GradCase("clamp(min: -0.5)", [r]) { $0[0].clamp(min: -0.5) },
    GradCase("clamp(max: 1)", [r]) { $0[0].clamp(max: 1.0) },
    GradCase("x + 2", [r]) { $0[0] + 2 },
    GradCase("x - 2", [r]) { $0[0] - 2 },
    GradCase("x * 3", [r]) { $0[0] * 3 },
    GradCase("x / 4", [r]) { $0[0] / 4 },
    GradCase("2 + x", [r]) { 2 + $0[0] },
    GradCase("2 - x", [r]) { 2 - $0[0] },
    GradCase("3 * x", [r]) { 3 * $0[0] },
    GradCase("2 / x", [r]) { 2 / $0[0] },
    GradCase("0.5 / x", [p]) { 0.5 / $0[0] },
  ]
}()

/// Tensor-tensor ops, with and without broadcasting.
let gcBinaryCases: [GradCase] = [
  GradCase("a + b", [.wave([2, 3]), .wave([2, 3], 1)]) { $0[0] + $0[1] },
  GradCase("a + b[3]", [.wave([2, 3]), .wave([3], 1)]) { $0[0] + $0[1] },
  GradCase("a[2,1] + b[1,3]", [.wave([2, 1]), .wave([1, 3], 1)]) { $0[0] + $0[1] },
  GradCase("a - b[2,1]", [.wave([2, 3]), .wave([2, 1], 1)]) { $0[0] - $0[1] },
  GradCase("a[3] - b", [.wave([3]), .wave([2, 3], 1)]) { $0[0] - $0[1] },
  GradCase("a * b", [.wave([2, 3]), .wave([2, 3], 1)]) { $0[0] * $0[1] },
  GradCase("a * b[3]", [.wave([2, 3]), .wave([3], 1)]) { $0[0] * $0[1] },
  GradCase("a[] * b", [.wave([]), .wave([2, 3], 1)]) { $0[0] * $0[1] },
  GradCase("a / b", [.wave([2, 3]), GradInput(positive6, [2, 3])]) { $0[0] / $0[1] },
  GradCase("a / b[2,1]", [.wave([2, 3]), GradInput([0.8, 1.7], [2, 1])]) { $0[0] / $0[1] },
  GradCase("a[3] / b", [.wave([3]), GradInput(real6, [2, 3])]) { $0[0] / $0[1] },
  GradCase("pow(a, b)", [GradInput(positive6, [2, 3]), .wave([2, 3], 1)]) { $0[0].pow($0[1]) },
  GradCase("pow(a, b[3])", [GradInput(positive6, [2, 3]), .wave([3], 1)]) { $0[0].pow($0[1]) },
  GradCase("maximum", [GradInput(real6, [2, 3]), GradInput([-1.2, -1.1, 0.2, 0.1, 1.4, 0.9], [2, 3])]) {
    $0[0].maximum($0[1])
  },
  GradCase("minimum", [GradInput(real6, [2, 3]), GradInput([-1.2, -1.1, 0.2, 0.1, 1.4, 0.9], [2, 3])]) {
    $0[0].minimum($0[1])
  },
  GradCase("maximum broadcast", [GradInput(real6, [2, 3]), GradInput([0.1, -0.6, 0.9], [3])]) {
    $0[0].maximum($0[1])
  },
  GradCase("minimum broadcast", [GradInput(real6, [2, 3]), GradInput([0.1, -0.6, 0.9], [3])]) {
    $0[0].minimum($0[1])
  },
]

// MARK: - linear algebra

let gcMatmulCases: [GradCase] = [
  GradCase("matmul [2,3]x[3,2]", [.wave([2, 3]), .wave([3, 2], 1)]) { $0[0].matmul($0[1]) },
  GradCase("matmul [2,2,3]x[3,2]", [.wave([2, 2, 3]), .wave([3, 2], 1)]) { $0[0].matmul($0[1]) },
  GradCase("matmul [3]x[3,2]", [.wave([3]), .wave([3, 2], 1)]) { $0[0].matmul($0[1]) },
  GradCase("matmul [2,3]x[3]", [.wave([2, 3]), .wave([3], 1)]) { $0[0].matmul($0[1]) },
  GradCase("matmul [3]x[3]", [.wave([3]), .wave([3], 1)]) { $0[0].matmul($0[1]) },
  GradCase("bmm", [.wave([2, 2, 3]), .wave([2, 3, 2], 1)]) { $0[0].bmm($0[1]) },
  GradCase("linear", [.wave([2, 3]), .wave([4, 3], 1), .wave([4], 2)]) {
    Tensor.linear($0[0], weight: $0[1], bias: $0[2])
  },
  GradCase("linear no bias", [.wave([2, 3]), .wave([4, 3], 1)]) { Tensor.linear($0[0], weight: $0[1]) },
  GradCase("linear 3-d", [.wave([2, 2, 3]), .wave([2, 3], 1), .wave([2], 2)]) {
    Tensor.linear($0[0], weight: $0[1], bias: $0[2])
  },
  GradCase("affine", [.wave([2, 3]), .wave([3, 4], 1), .wave([4], 2)]) {
    Tensor.affine($0[0], weight: $0[1], bias: $0[2])
  },
  GradCase("affine no bias", [.wave([2, 3]), .wave([3, 4], 1)]) { Tensor.affine($0[0], weight: $0[1]) },
  GradCase("affine 3-d", [.wave([2, 2, 3]), .wave([3, 2], 1), .wave([2], 2)]) {
    Tensor.affine($0[0], weight: $0[1], bias: $0[2])
  },
  GradCase("affine of a transposed input", [.wave([3, 2]), .wave([3, 4], 1), .wave([4], 2)]) {
    Tensor.affine($0[0].transposed(0, 1), weight: $0[1], bias: $0[2])
  },
]

/// Packed self-attention on qkv [B, T, 3·H·d] (at most 12 elements: T·3·H·d ≤ 12).
let gcAttentionCases: [GradCase] = [
  GradCase("causal, 1 head of width 2, T=2", [.wave([1, 2, 6])]) { Tensor.packedSelfAttention($0[0], heads: 1) },
  GradCase("causal, 2 heads of width 1, T=2", [.wave([1, 2, 6])]) { Tensor.packedSelfAttention($0[0], heads: 2) },
  GradCase("causal, T=4", [.wave([1, 4, 3])]) { Tensor.packedSelfAttention($0[0], heads: 1) },
  GradCase("causal, batch of 2", [.wave([2, 2, 3])]) { Tensor.packedSelfAttention($0[0], heads: 1) },
  GradCase("additive bias [1,1,T,T]", [.wave([1, 2, 6])]) {
    Tensor.packedSelfAttention($0[0], heads: 2, bias: Tensor([0, -0.7, 0.3, 0.1], shape: [1, 1, 2, 2]).to(.float64))
  },
  GradCase("padding bias [B,1,T,T]", [.wave([2, 2, 3])]) {
    // Sequence 0 attends to both keys; sequence 1's second query does not see the first key.
    let bias = Tensor([0, 0, 0, 0, 0, -1e30, -1e30, 0], shape: [2, 1, 2, 2]).to(.float64)
    return Tensor.packedSelfAttention($0[0], heads: 1, bias: bias)
  },
]

// MARK: - shape and indexing

let gcShapeCases: [GradCase] = [
  GradCase("reshaped", [.wave([2, 3])]) { $0[0].reshaped([3, 2]) },
  GradCase("reshaped -1", [.wave([2, 3, 2])]) { $0[0].reshaped([-1, 4]) },
  GradCase("reshaped of transposed", [.wave([2, 3])]) { $0[0].transposed(0, 1).reshaped([6]) },
  GradCase("view", [.wave([2, 3])]) { $0[0].view([6]) },
  GradCase("view [3,-1]", [.wave([2, 3])]) { $0[0].view([3, -1]) },
  GradCase("permuted", [.wave([2, 3, 2])]) { $0[0].permuted([2, 0, 1]) },
  GradCase("transposed", [.wave([2, 3])]) { $0[0].transposed(0, 1) },
  GradCase("transposed(0,2)", [.wave([2, 3, 2])]) { $0[0].transposed(0, 2) },
  GradCase("transposed(-1,-2)", [.wave([2, 3, 2])]) { $0[0].transposed(-1, -2) },
  GradCase("contiguous", [.wave([2, 3])]) { $0[0].transposed(0, 1).contiguous() },
  GradCase("expanded", [.wave([3, 1])]) { $0[0].expanded(to: [3, 4]) },
  GradCase("expanded new dim", [.wave([3, 1])]) { $0[0].expanded(to: [2, 3, 4]) },
  GradCase("expanded -1", [.wave([1, 3])]) { $0[0].expanded(to: [4, -1]) },
  GradCase("squeezed", [.wave([1, 3, 1])]) { $0[0].squeezed() },
  GradCase("squeezed(dim:)", [.wave([1, 3, 1])]) { $0[0].squeezed(dim: 2) },
  GradCase("unsqueezed(0)", [.wave([2, 3])]) { $0[0].unsqueezed(dim: 0) },
  GradCase("unsqueezed(-1)", [.wave([2, 3])]) { $0[0].unsqueezed(dim: -1) },
  GradCase("narrow", [.wave([3, 4])]) { $0[0].narrow(dim: 1, start: 1, length: 2) },
  GradCase("narrow dim 0", [.wave([3, 4])]) { $0[0].narrow(dim: 0, start: 2, length: 1) },
  GradCase("select", [.wave([3, 4])]) { $0[0].select(dim: 1, index: 2) },
  GradCase("select -1", [.wave([3, 4])]) { $0[0].select(dim: 0, index: -1) },
  GradCase("subscript", [.wave([3, 4])]) { $0[0][1] },
  GradCase("split piece 0", [.wave([2, 3])]) { $0[0].split(sizes: [1, 2], dim: 1)[0] },
  GradCase("split piece 1", [.wave([2, 3])]) { $0[0].split(sizes: [1, 2], dim: 1)[1] },
  GradCase("split pieces recombined", [.wave([4, 3])]) {
    let p = $0[0].split(sizes: [1, 3], dim: 0)
    return Tensor.cat([p[1].square(), p[0] * 3], dim: 0)
  },
  GradCase("chunk pieces", [.wave([5, 2])]) {
    let c = $0[0].chunk(3, dim: 0)
    return Tensor.cat([c[0] * 2, c[1].square(), c[2].exp()], dim: 0)
  },
  GradCase("chunk dim 1", [.wave([2, 5])]) {
    let c = $0[0].chunk(2, dim: 1)
    return Tensor.cat([c[1].sin(), c[0]], dim: 1)
  },
  GradCase("cat dim 0", [.wave([2, 3]), .wave([1, 3], 1)]) { Tensor.cat([$0[0], $0[1]], dim: 0) },
  GradCase("cat dim 1", [.wave([2, 3]), .wave([2, 2], 1)]) { Tensor.cat([$0[0], $0[1]], dim: 1) },
  GradCase("cat same tensor twice", [.wave([2, 3])]) { Tensor.cat([$0[0], $0[0].square()], dim: -1) },
  GradCase("stack dim 0", [.wave([2, 3]), .wave([2, 3], 1)]) { Tensor.stack([$0[0], $0[1]], dim: 0) },
  GradCase("stack dim 1", [.wave([2, 3]), .wave([2, 3], 1)]) { Tensor.stack([$0[0], $0[1]], dim: 1) },
  GradCase("stack dim 2", [.wave([2, 3]), .wave([2, 3], 1)]) { Tensor.stack([$0[0], $0[1]], dim: 2) },
  GradCase("indexSelect dim 0", [.wave([3, 4])]) { $0[0].indexSelect(dim: 0, index: i64([2, 0, 2])) },
  GradCase("indexSelect dim 1", [.wave([3, 4])]) { $0[0].indexSelect(dim: 1, index: i64([1, 1, 3])) },
  GradCase("gather dim 1", [.wave([2, 4])]) {
    $0[0].gather(dim: 1, index: i64([0, 0, 2, 1, 3, 3], [2, 3]))
  },
  GradCase("gather dim 0", [.wave([3, 2])]) {
    $0[0].gather(dim: 0, index: i64([2, 0, 2, 2], [2, 2]))
  },
  GradCase("scatterAdd dim 1 (self, source)", [.wave([2, 4]), .wave([2, 3], 1)]) {
    $0[0].scatterAdd(dim: 1, index: i64([0, 1, 0, 3, 3, 2], [2, 3]), source: $0[1])
  },
  GradCase("scatterAdd dim 0 (self, source)", [.wave([3, 2]), .wave([2, 2], 1)]) {
    $0[0].scatterAdd(dim: 0, index: i64([2, 0, 2, 2], [2, 2]), source: $0[1])
  },
  GradCase("scatterAdd into a product", [.wave([2, 4]), .wave([2, 3], 1)]) {
    ($0[0] * $0[0]).scatterAdd(dim: 1, index: i64([0, 1, 0, 3, 3, 2], [2, 3]), source: $0[1].exp())
  },
  GradCase("maskedFill", [.wave([2, 3])]) {
    $0[0].maskedFill(Tensor([true, false, false, true, true, false], shape: [2, 3]), -7)
  },
  GradCase("maskedFill broadcast mask", [.wave([2, 3])]) {
    $0[0].maskedFill(Tensor([false, true, false], shape: [3]), 2.5)
  },
  GradCase("where (both branches)", [.wave([2, 3]), .wave([2, 3], 1)]) {
    Tensor.where(Tensor([true, false, true, false, false, true], shape: [2, 3]), $0[0], $0[1])
  },
  GradCase("where broadcast branch", [.wave([2, 3]), .wave([3], 1)]) {
    Tensor.where(Tensor([true, false, true, false, false, true], shape: [2, 3]), $0[0], $0[1])
  },
  GradCase("tril", [.wave([3, 4])]) { $0[0].tril() },
  GradCase("tril(1)", [.wave([3, 4])]) { $0[0].tril(1) },
  GradCase("tril(-1)", [.wave([3, 4])]) { $0[0].tril(-1) },
  GradCase("triu", [.wave([3, 4])]) { $0[0].triu() },
  GradCase("triu(1)", [.wave([3, 4])]) { $0[0].triu(1) },
  GradCase("triu(-1)", [.wave([3, 4])]) { $0[0].triu(-1) },
]

// MARK: - reductions

enum GCReduction: String, Sendable, CaseIterable, CustomTestStringConvertible {
  case sum, mean, varianceUnbiased, varianceBiased, logSumExp, prod, amax, amin
  var testDescription: String { rawValue }

  func apply(_ x: Tensor, dims: [Int], keepDim: Bool) -> Tensor {
    switch self {
    case .sum: return x.sum(dims: dims, keepDim: keepDim)
    case .mean: return x.mean(dims: dims, keepDim: keepDim)
    case .varianceUnbiased: return x.variance(dims: dims, unbiased: true, keepDim: keepDim)
    case .varianceBiased: return x.variance(dims: dims, unbiased: false, keepDim: keepDim)
    case .logSumExp: return x.logSumExp(dims: dims, keepDim: keepDim)
    case .prod: return x.prod(dims: dims, keepDim: keepDim)
    case .amax: return x.max(dims: dims, keepDim: keepDim)
    case .amin: return x.min(dims: dims, keepDim: keepDim)
    }
  }
}

struct GCDimSpec: Sendable, CustomTestStringConvertible {
  let dims: [Int]
  let keepDim: Bool
  var testDescription: String { "dims \(dims) keepDim \(keepDim)" }
}

let gcReductionDims: [GCDimSpec] = [[], [0], [1], [-1], [0, 2], [2, 0], [0, 1, 2]].flatMap {
  [GCDimSpec(dims: $0, keepDim: false), GCDimSpec(dims: $0, keepDim: true)]
}

/// The shape a reduction over `dims` of `shape` must have.
private func reducedShape(_ shape: [Int], dims: [Int], keepDim: Bool) -> [Int] {
  let all = dims.isEmpty ? Set(shape.indices) : Set(dims.map { $0 < 0 ? $0 + shape.count : $0 })
  if keepDim { return shape.indices.map { all.contains($0) ? 1 : shape[$0] } }
  return shape.indices.filter { !all.contains($0) }.map { shape[$0] }
}

@Suite struct GradientCheckTests {
  @Test(arguments: gcUnaryCases)
  func unary(_ c: GradCase) {
    checkGradients(c.tensors(), c.f)
  }

  @Test(arguments: gcBinaryCases)
  func binary(_ c: GradCase) {
    checkGradients(c.tensors(), c.f)
  }

  @Test(arguments: gcMatmulCases)
  func linearAlgebra(_ c: GradCase) {
    checkGradients(c.tensors(), c.f)
  }

  @Test(arguments: gcAttentionCases)
  func packedSelfAttention(_ c: GradCase) {
    checkGradients(c.tensors(), c.f)
  }

  @Test(arguments: gcShapeCases)
  func shapeAndIndexing(_ c: GradCase) {
    checkGradients(c.tensors(), c.f)
  }

  @Test(arguments: GCReduction.allCases, gcReductionDims)
  func reduction(_ op: GCReduction, _ spec: GCDimSpec) {
    let x = f64(distinct12, [2, 3, 2])
    let report = checkGradients([x]) { op.apply($0[0], dims: spec.dims, keepDim: spec.keepDim) }
    #expect(report.output.shape == reducedShape([2, 3, 2], dims: spec.dims, keepDim: spec.keepDim))
  }

  @Test func singleDimReductionOverloads() {
    let x = f64(distinct12, [2, 3, 2])
    checkGradients([x]) { $0[0].sum(dim: 1) }
    checkGradients([x]) { $0[0].sum(dim: -1, keepDim: true) }
    checkGradients([x]) { $0[0].mean(dim: 0) }
    checkGradients([x]) { $0[0].mean(dim: 2, keepDim: true) }
    checkGradients([x]) { $0[0].logSumExp(dim: 1) }
    checkGradients([x]) { $0[0].logSumExp(dim: 0, keepDim: true) }
  }

  @Test(arguments: [0, 1, 2, -1])
  func cumsum(_ dim: Int) {
    checkGradients([f64(distinct12, [2, 3, 2])]) { $0[0].cumsum(dim: dim) }
  }

  @Test(arguments: [0, 1, 2], [false, true])
  func maxAndMinAlongDim(_ dim: Int, _ keepDim: Bool) {
    let x = f64(distinct12, [2, 3, 2])
    let mx = checkGradients([x]) { $0[0].max(dim: dim, keepDim: keepDim).values }
    // Only the arg-max entries receive gradient.
    #expect(mx.analytic[0].filter { $0 != 0 }.count == 12 / [2, 3, 2][dim])
    checkGradients([x]) { $0[0].min(dim: dim, keepDim: keepDim).values }
  }

  @Test(arguments: [1.0, 2.0, 3.0, 0.5])
  func norm(_ p: Double) {
    checkGradients([f64(distinct12, [3, 4])]) { $0[0].norm(p) }
  }

  @Test func normDefaultIsEuclidean() {
    let r = checkGradients([f64(real6, [2, 3])]) { $0[0].norm() }
    // d‖x‖/dx = x/‖x‖, times the scalar weight.
    let n = real6.map { $0 * $0 }.reduce(0, +).squareRoot()
    let w = r.weight.item()
    for (g, x) in zip(r.analytic[0], real6) { #expect(Swift.abs(g - w * x / n) < 1e-12) }
  }

  @Test(arguments: [-1, 0, 1], [true, false])
  func topKValues(_ dim: Int, _ largest: Bool) {
    let x = f64(distinct12, [3, 4])
    checkGradients([x]) { $0[0].topK(2, dim: dim, largest: largest).values }
  }

  @Test(arguments: [0, 1, -1], [false, true])
  func sortedValues(_ dim: Int, _ descending: Bool) {
    checkGradients([f64(distinct12, [3, 4])]) { $0[0].sorted(dim: dim, descending: descending).values }
  }

  @Test(arguments: [0, 1, 2, -1])
  func softmax(_ dim: Int) {
    checkGradients([f64(distinct12, [2, 3, 2])]) { $0[0].softmax(dim: dim) }
  }

  @Test(arguments: [0, 1, 2, -1])
  func logSoftmax(_ dim: Int) {
    checkGradients([f64(distinct12, [2, 3, 2])]) { $0[0].logSoftmax(dim: dim) }
  }

  // MARK: network primitives

  @Test(arguments: [Tensor.Reduction.mean, .sum, .none])
  func crossEntropyWithIgnoredRow(_ reduction: Tensor.Reduction) {
    let targets = i64([0, 2, -100, 1])
    let r = checkGradients([f64(distinct12, [4, 3])]) {
      Tensor.crossEntropy(logits: $0[0], targets: targets, reduction: reduction)
    }
    // The ignored row (2) gets exactly zero gradient; every other row gets some.
    #expect(Array(r.analytic[0][6..<9]) == [0, 0, 0])
    for row in [0, 1, 3] {
      #expect(r.analytic[0][(3 * row)..<(3 * row + 3)].contains { $0 != 0 }, "row \(row)")
    }
    // Rows of a softmax-cross-entropy gradient sum to zero.
    for row in 0..<4 {
      #expect(Swift.abs(r.analytic[0][(3 * row)..<(3 * row + 3)].reduce(0, +)) < 1e-12, "row \(row)")
    }
    if reduction == .none {
      #expect(r.output.shape == [4])
      #expect(r.output.toArray(Double.self)[2] == 0)
    } else {
      #expect(r.output.shape == [])
    }
  }

  @Test func crossEntropyMeanExcludesIgnoredRowsFromDenominator() {
    let targets = i64([0, 2, -100, 1])
    let x = f64(distinct12, [4, 3])
    let mean = checkGradients([x], seed: 3) { Tensor.crossEntropy(logits: $0[0], targets: targets) }
    let sum = checkGradients([x], seed: 3) {
      Tensor.crossEntropy(logits: $0[0], targets: targets, reduction: .sum)
    }
    // Same scalar weight for both (same seed, same shape []): mean = sum / 3 live rows, not / 4.
    #expect(Swift.abs(mean.output.item() - sum.output.item() / 3) < 1e-12)
    for (gm, gs) in zip(mean.analytic[0], sum.analytic[0]) {
      #expect(Swift.abs(gm * 3 - gs) < 1e-12)
    }
  }

  @Test(arguments: [Tensor.Reduction.mean, .sum, .none])
  func crossEntropyCustomIgnoreIndex(_ reduction: Tensor.Reduction) {
    let targets = i64([0, 1, 2, 1])
    let r = checkGradients([f64(distinct12, [4, 3])]) {
      Tensor.crossEntropy(logits: $0[0], targets: targets, ignoreIndex: 1, reduction: reduction)
    }
    #expect(Array(r.analytic[0][3..<6]) == [0, 0, 0])
    #expect(Array(r.analytic[0][9..<12]) == [0, 0, 0])
  }

  @Test(arguments: [Tensor.Reduction.mean, .sum, .none])
  func crossEntropyWithLabelSmoothing(_ reduction: Tensor.Reduction) {
    let targets = i64([0, 2, -100, 1])
    let r = checkGradients([f64(distinct12, [4, 3])]) {
      Tensor.crossEntropy(logits: $0[0], targets: targets, reduction: reduction, labelSmoothing: 0.1)
    }
    #expect(Array(r.analytic[0][6..<9]) == [0, 0, 0])
  }

  @Test func embeddingWithRespectToWeight() {
    let indices = i64([0, 2, 2, 3], [2, 2])
    let r = checkGradients([f64(waveValues(12), [4, 3])]) { Tensor.embedding(indices, weight: $0[0]) }
    #expect(r.output.shape == [2, 2, 3])
    #expect(Array(r.analytic[0][3..<6]) == [0, 0, 0])  // row 1 is never looked up
  }

  @Test func layerNormWithRespectToInputWeightAndBias() {
    let x = f64(waveValues(8), [2, 4]), w = f64(waveValues(4, 1), [4]), b = f64(waveValues(4, 2), [4])
    checkGradients([x, w, b]) { Tensor.layerNorm($0[0], normalizedShape: [4], weight: $0[1], bias: $0[2]) }
  }

  @Test func layerNormWithoutAffine() {
    checkGradients([f64(waveValues(8), [2, 4])]) {
      Tensor.layerNorm($0[0], normalizedShape: [4], weight: nil, bias: nil)
    }
  }

  @Test func layerNormOverTwoDims() {
    let x = f64(waveValues(12), [2, 2, 3]), w = f64(waveValues(6, 1), [2, 3]), b = f64(waveValues(6, 2), [2, 3])
    checkGradients([x, w, b]) { Tensor.layerNorm($0[0], normalizedShape: [2, 3], weight: $0[1], bias: $0[2]) }
  }

  @Test(arguments: [0.25, 0.5])
  func dropoutWithSeededMask(_ p: Double) {
    let x = f64(waveValues(12), [3, 4])
    // A fresh generator with the same seed for every call: the same mask in every evaluation.
    let r = checkGradients([x]) { $0[0].dropout(p: p, training: true, generator: Generator(seed: 11)) }
    let out = r.output.toArray(Double.self)
    let dropped = out.filter { $0 == 0 }.count
    #expect(dropped > 0 && dropped < 12, "the mask should drop some but not all of 12 elements")
    let w = r.weight.toArray(Double.self)
    for j in 0..<12 {
      let expected = out[j] == 0 ? 0 : w[j] / (1 - p)
      #expect(Swift.abs(r.analytic[0][j] - expected) < 1e-12, "element \(j)")
    }
  }

  @Test func dropoutInEvalModeIsIdentity() {
    let r = checkGradients([f64(waveValues(6), [2, 3])]) { $0[0].dropout(p: 0.5, training: false) * 1 }
    #expect(r.analytic[0] == r.weight.toArray(Double.self))
  }

  // MARK: compositions

  @Test func attentionLikeComposition() {
    // q kᵀ / √d, causal mask, softmax, · v: many ops chained, all inputs get gradients.
    let q = f64(waveValues(6), [1, 2, 3]), k = f64(waveValues(6, 1), [1, 2, 3]), v = f64(waveValues(6, 2), [1, 2, 3])
    checkGradients([q, k, v]) {
      let scores = $0[0].bmm($0[1].transposed(1, 2)) / 3.0.squareRoot()
      let mask = Tensor.ones([2, 2], dtype: .bool).triu(1)
      return scores.maskedFill(mask, -.infinity).softmax(dim: -1).bmm($0[2])
    }
  }

  @Test func mlpLikeComposition() {
    let x = f64(waveValues(6), [2, 3]), w1 = f64(waveValues(12, 1), [4, 3]), b1 = f64(waveValues(4, 2), [4])
    let w2 = f64(waveValues(8, 3), [2, 4])
    checkGradients([x, w1, b1, w2]) {
      let h = Tensor.linear($0[0], weight: $0[1], bias: $0[2]).gelu(approximate: true)
      return Tensor.crossEntropy(logits: Tensor.linear(h, weight: $0[3]), targets: i64([1, 0]))
    }
  }

  // MARK: the checker itself

  @Test func checkerNoticesAWrongGradient() {
    // A custom op whose backward is deliberately wrong: x·detached(x) has value x² but gradient x.
    // Run under a known-issue scope: the checker must report the mismatch.
    withKnownIssue("x * x.detached() has the value of x² but half its gradient") {
      checkGradients([f64(real6, [2, 3])]) { $0[0] * $0[0].detached() }
    }
  }
}
