// The decoding kernels (Sources/Torch/Decoding.swift) against the op-by-op definitions they stand for.
import Testing
import Torch

private func maxDiff(_ a: Tensor, _ b: Tensor) -> Double {
  (a.to(.float64) - b.to(.float64)).abs().max().item()
}

@Test(arguments: [[1, 1, 16], [3, 5, 16], [1, 7]])
func rmsNormIsTheOpByOpDefinition(_ shape: [Int]) {
  let gen = Generator(seed: 1)
  let x = Tensor.randn(shape, generator: gen), w = Tensor.randn([shape.last!], generator: gen)
  let reference = w * (x * (x.square().mean(dim: -1, keepDim: true) + 1e-6).rsqrt())
  withoutGradients { #expect(maxDiff(Tensor.rmsNorm(x, weight: w, eps: 1e-6), reference) < 1e-6) }
  // With autograd: the same values and the gradients of the definition.
  let xg = x.requiringGrad(), wg = w.requiringGrad()
  (Tensor.rmsNorm(xg, weight: wg, eps: 1e-6) * Tensor.arange(Double(shape.reduce(1, *)), dtype: .float32).reshaped(shape)).sum().backward()
  let xr = x.requiringGrad(), wr = w.requiringGrad()
  ((wr * (xr * (xr.square().mean(dim: -1, keepDim: true) + 1e-6).rsqrt())) * Tensor.arange(Double(shape.reduce(1, *)), dtype: .float32).reshaped(shape)).sum().backward()
  #expect(maxDiff(xg.grad!, xr.grad!) < 1e-4 && maxDiff(wg.grad!, wr.grad!) < 1e-4)
  // A float64 input stays float64 and is exact to rounding.
  let x64 = x.to(.float64), w64 = w.to(.float64)
  let r64 = w64 * (x64 * (x64.square().mean(dim: -1, keepDim: true) + 1e-6).rsqrt())
  #expect(Tensor.rmsNorm(x64, weight: w64, eps: 1e-6).dtype == .float64)
  #expect(maxDiff(Tensor.rmsNorm(x64, weight: w64, eps: 1e-6), r64) < 1e-12)
}

@Test(arguments: [(rows: [1, 1], bias: true), (rows: [1], bias: false), (rows: [2, 3], bias: true), (rows: [4], bias: false)])
func rowLinearIsLinearInBothLayouts(_ rows: [Int], _ bias: Bool) {
  let gen = Generator(seed: 2)
  let (inF, outF) = (24, 40)
  let x = Tensor.randn(rows + [inF], generator: gen)
  let w = Tensor.randn([outF, inF], generator: gen), b = bias ? Tensor.randn([outF], generator: gen) : nil
  let reference = Tensor.linear(x, weight: w, bias: b)
  withoutGradients {
    let y = Tensor.rowLinear(x, weight: w, bias: b)
    #expect(y.shape == rows + [outF])
    #expect(maxDiff(y, reference) < 1e-5)
    // [in, out] storage (Hugging Face's Conv1D) gives the same product.
    #expect(maxDiff(Tensor.rowLinear(x, weight: w.transposed(0, 1).contiguous(), bias: b, weightInOut: true), reference) < 1e-5)
  }
  // With autograd the gradient reaches x, the weight and the bias as through linear.
  let xg = x.requiringGrad(), wg = w.requiringGrad(), bg = b?.requiringGrad()
  Tensor.rowLinear(xg, weight: wg, bias: bg).square().sum().backward()
  let xr = x.requiringGrad(), wr = w.requiringGrad(), br = b?.requiringGrad()
  Tensor.linear(xr, weight: wr, bias: br).square().sum().backward()
  #expect(maxDiff(xg.grad!, xr.grad!) < 1e-3 && maxDiff(wg.grad!, wr.grad!) < 1e-3)
  if let bg, let br { #expect(maxDiff(bg.grad!, br.grad!) < 1e-3) }
}

@Test func decodeAttentionOverOnePositionIsItsValueWrittenToTheCache() {
  let gen = Generator(seed: 3)
  let q = Tensor.randn([1, 1, 8], generator: gen), k = Tensor.randn([1, 1, 8], generator: gen)
  let cache = Tensor.zeros([1, 1, 4, 8]), values = Tensor.zeros([1, 1, 4, 8])
  withoutGradients {
    let ok = Tensor.decodeAttention(q: q, k: k, v: k, cos: nil, sin: nil, keyCache: cache, valueCache: values, past: 0,
                                    heads: 1, bias: nil)
    // One position: softmax over one key is 1, so the output is that position's value.
    #expect(maxDiff(ok, k) < 1e-7)
    // The new key and value were written at position 0.
    #expect(maxDiff(cache.narrow(dim: 2, start: 0, length: 1).reshaped([1, 1, 8]), k) == 0)
  }
}
