import Foundation
import Testing
import Torch

/// `withAutocast` is libtorch's autocast: products in bfloat16 inside, float32 weights and gradients, the
/// previous state back afterwards (nested or not), and a clear error for a dtype the CPU cannot autocast to.
@Test func autocastRunsProductsInBFloat16AndRestoresTheStateAfterwards() throws {
  let gen = Generator(seed: 1)
  let x = Tensor.randn([8, 32], generator: gen), w = Tensor.randn([16, 32], generator: gen).requiringGrad()
  let y = try withAutocast(.bfloat16) { () throws -> Tensor in
    try withAutocast(.bfloat16) {}  // an inner exit leaves the outer autocast on
    let y = Tensor.linear(x, weight: w)
    #expect(y.float32UnderAutocast.dtype == .float32)
    return y
  }
  #expect(y.dtype == .bfloat16)
  #expect(w.dtype == .float32)
  #expect(Tensor.linear(x, weight: w).dtype == .float32)
  #expect(y.float32UnderAutocast.dtype == .bfloat16, "no upcast outside autocast")
  #expect(try withAutocast(nil) { Tensor.linear(x, weight: w) }.dtype == .float32)

  // The gradient reaches the float32 weight in float32, equal to the float32 one up to bfloat16 rounding.
  y.to(.float32).sum().backward()
  let mixed = w.grad!
  #expect(mixed.dtype == .float32)
  w.zeroGrad()
  Tensor.linear(x, weight: w).sum().backward()
  let exact = w.grad!
  #expect(mixed.allClose(exact, rtol: 1e-2, atol: 2e-2))
  #expect(!mixed.allClose(exact, rtol: 0, atol: 1e-7), "the products ran in float32: autocast did nothing")

  #expect(throws: TorchError.self) { try withAutocast(.float16) { Tensor.linear(x, weight: w) } }
  do {
    _ = try withAutocast(.float32) {}
    Issue.record("float32 is not an autocast dtype")
  } catch let e as TorchError {
    #expect(e.description.contains("bfloat16"), "\(e)")
  }
  #expect(Tensor.linear(x, weight: w).dtype == .float32, "a refused autocast leaves it off")
}

/// The training thread plan routes float32 linear layers and attention's batched products to oneDNN's sgemm
/// (several intra-op threads): values and gradients equal OpenBLAS's path (one intra-op thread) up to float32
/// summation order, for weights stored [out, in] (`linear`) and [in, out] (`affine`, GPT-2), with and without a
/// bias, and for packed causal self-attention with and without an additive mask.
@Test func oneDNNLinearLayersMatchTheOpenBLASPath() throws {
  #expect(ThreadPlan.training(on: .cpu).intraOp > 1 || ProcessInfo.processInfo.activeProcessorCount == 1,
          "Debian's libtorch carries oneDNN: the plan should give the intra-op pool the cores")
  final class Box: @unchecked Sendable { var values: [[Float]] = [] }
  func run(threads: Int) -> [[Float]] {
    let box = Box(), done = DispatchSemaphore(value: 0)
    // A thread of its own: libtorch's thread count is per OS thread once set, so other tests keep theirs.
    Thread {
      let previous = Torch.threads
      Torch.threads = threads
      defer { Torch.threads = previous; done.signal() }
      let gen = Generator(seed: 7)
      let x = Tensor.randn([8, 16, 384], generator: gen).requiringGrad()
      let wOutIn = Tensor.randn([48, 384], generator: gen).requiringGrad()
      let wInOut = Tensor.randn([384, 48], generator: gen).requiringGrad()
      let b = Tensor.randn([48], generator: gen).requiringGrad()
      let g = Tensor.randn([8, 16, 48], generator: gen)
      let ys = [Tensor.linear(x, weight: wOutIn, bias: b), Tensor.linear(x, weight: wOutIn),
                Tensor.affine(x, weight: wInOut, bias: b), Tensor.affine(x, weight: wInOut)]
      // Attention over q, k, v packed as [B, T, 3·48] (4 heads), causal and with a random additive mask.
      let qkv = Tensor.randn([8, 16, 144], generator: gen).requiringGrad()
      let mask = Tensor.randn([8, 1, 16, 16], generator: gen)
      let attention = [Tensor.packedSelfAttention(qkv, heads: 4), Tensor.packedSelfAttention(qkv, heads: 4, bias: mask)]
      (ys + attention).map { ($0 * g).sum() }.reduce(Tensor.scalar(0.0, dtype: .float32), +).backward()
      box.values = (ys + attention).map { $0.toArray(Float.self) }
        + [x, wOutIn, wInOut, b, qkv].map { $0.grad!.toArray(Float.self) }
    }.start()
    done.wait()
    return box.values
  }
  let blas = run(threads: 1), onednn = run(threads: 2)
  #expect(onednn.count == 11 && blas.count == 11)
  #expect(zip(onednn, blas).contains { $0 != $1 }, "bit-identical: both runs took the same path")
  for (a, b) in zip(onednn, blas) {
    #expect(a.count == b.count)
    for (u, v) in zip(a, b) { #expect(Swift.abs(u - v) <= 1e-4 * Swift.max(1, Swift.abs(v)), "\(u) vs \(v)") }
  }
}
