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
