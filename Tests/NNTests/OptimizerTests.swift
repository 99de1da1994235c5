import Foundation
import Testing
import Torch
@testable import NN

/// Drives an optimizer with prescribed gradients (loss = Σ p·g makes ∂loss/∂p = g) and returns the
/// parameter after each step.
func trajectory(_ start: [Double], grads: [[Double]], make: ([(name: String, tensor: Tensor)]) -> Optimizer)
  -> [[Double]]
{
  let p = Tensor(start).requiringGrad()
  let opt = make([("p", p)])
  var out: [[Double]] = []
  for g in grads {
    opt.zeroGrad()
    (p * Tensor(g)).sum().backward()
    opt.step()
    out.append(p.toArray(Double.self))
  }
  return out
}

let gradSequence: [[Double]] = [[0.5, -1.0, 2.0], [0.25, 0.5, -3.0], [-1.0, 0.0, 1.5]]
let startValues: [Double] = [1.0, -2.0, 0.5]

func expectClose(_ a: [[Double]], _ b: [[Double]], tol: Double = 1e-12, sourceLocation: SourceLocation = #_sourceLocation) {
  #expect(a.count == b.count, sourceLocation: sourceLocation)
  for (x, y) in zip(a, b) {
    for (u, v) in zip(x, y) {
      #expect(Swift.abs(u - v) <= tol * Swift.max(1, Swift.abs(v)), "\(u) vs \(v)", sourceLocation: sourceLocation)
    }
  }
}

@Test func adamWMatchesHandComputedUpdates() {
  let (lr, b1, b2, eps, wd) = (0.1, 0.9, 0.999, 1e-8, 0.01)
  var p = startValues, m = [0.0, 0, 0], v = [0.0, 0, 0]
  var expected: [[Double]] = []
  for (t, g) in gradSequence.enumerated() {
    let step = Double(t + 1)
    for i in 0..<3 {
      p[i] *= 1 - lr * wd
      m[i] = b1 * m[i] + (1 - b1) * g[i]
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
      let mHat = m[i] / (1 - pow(b1, step))
      let denom = (v[i].squareRoot() / (1 - pow(b2, step)).squareRoot()) + eps
      p[i] -= lr * mHat / denom
    }
    expected.append(p)
  }
  let got = trajectory(startValues, grads: gradSequence) {
    AdamW($0, learningRate: lr, betas: (b1, b2), eps: eps, weightDecay: wd)
  }
  expectClose(got, expected)
}

@Test(arguments: [false, true])
func sgdMomentumMatchesHandComputedUpdates(nesterov: Bool) {
  let (lr, mu, damp, wd) = (0.05, 0.9, nesterov ? 0.0 : 0.1, 0.02)
  var p = startValues
  var buf: [Double]? = nil
  var expected: [[Double]] = []
  for g in gradSequence {
    let d = (0..<3).map { g[$0] + wd * p[$0] }
    if let b = buf { buf = (0..<3).map { mu * b[$0] + (1 - damp) * d[$0] } } else { buf = d }
    let step = nesterov ? (0..<3).map { d[$0] + mu * buf![$0] } : buf!
    p = (0..<3).map { p[$0] - lr * step[$0] }
    expected.append(p)
  }
  let got = trajectory(startValues, grads: gradSequence) {
    SGD($0, learningRate: lr, momentum: mu, dampening: damp, nesterov: nesterov, weightDecay: wd)
  }
  expectClose(got, expected)
}

@Test func plainSGDIsGradientDescent() {
  let got = trajectory([1, 2, 3], grads: [[1, -1, 0.5]]) { SGD($0, learningRate: 0.5) }
  expectClose(got, [[0.5, 2.5, 2.75]])
}

@Test(arguments: [0.0, 0.8])
func rmspropMatchesHandComputedUpdates(momentum: Double) {
  let (lr, alpha, eps, wd) = (0.01, 0.99, 1e-8, 0.1)
  var p = startValues, v = [0.0, 0, 0], buf = [0.0, 0, 0]
  var expected: [[Double]] = []
  for g0 in gradSequence {
    for i in 0..<3 {
      let g = g0[i] + wd * p[i]
      v[i] = alpha * v[i] + (1 - alpha) * g * g
      let avg = v[i].squareRoot() + eps
      if momentum > 0 {
        buf[i] = momentum * buf[i] + g / avg
        p[i] -= lr * buf[i]
      } else {
        p[i] -= lr * g / avg
      }
    }
    expected.append(p)
  }
  let got = trajectory(startValues, grads: gradSequence) {
    RMSprop($0, learningRate: lr, alpha: alpha, eps: eps, momentum: momentum, weightDecay: wd)
  }
  expectClose(got, expected)
}

@Test func parameterGroupsSkipDecayWhereAsked() {
  let w = Tensor([1.0, 1.0, 1.0, 1.0], shape: [2, 2]).requiringGrad()
  let b = Tensor([1.0, 1.0]).requiringGrad()
  let groups = ParameterGroup.decayMatricesOnly([("w", w), ("b", b)], weightDecay: 0.5)
  let opt = AdamW(groups, learningRate: 0.1)
  // Zero gradients: only decoupled weight decay moves anything.
  (w.sum() * 0 + b.sum() * 0).backward()
  opt.step()
  #expect(w.toArray(Double.self) == [0.95, 0.95, 0.95, 0.95])
  #expect(b.toArray(Double.self) == [1.0, 1.0])
}

@Test func parametersWithoutGradientsAreLeftAlone() {
  let a = Tensor([1.0]).requiringGrad(), b = Tensor([2.0]).requiringGrad()
  let opt = SGD([("a", a), ("b", b)], learningRate: 1)
  (a * 3).sum().backward()
  opt.step()
  #expect(a.toArray(Double.self) == [-2.0])
  #expect(b.toArray(Double.self) == [2.0])
}

@Test func clipGradNormScalesToTheLimitAndReportsTheNorm() {
  let a = Tensor([0.0, 0.0]).requiringGrad(), b = Tensor([0.0]).requiringGrad()
  ((a * Tensor([3.0, 0.0])).sum() + (b * Tensor([4.0])).sum()).backward()
  let norm = clipGradNorm([a, b], maxNorm: 1)
  #expect(Swift.abs(norm - 5) < 1e-12)
  let ga = a.grad!.toArray(Double.self), gb = b.grad!.toArray(Double.self)
  #expect(Swift.abs(ga[0] - 3 / (5 + 1e-6)) < 1e-12)
  #expect(Swift.abs(gb[0] - 4 / (5 + 1e-6)) < 1e-12)
  // Under the limit nothing changes.
  let n2 = clipGradNorm([a, b], maxNorm: 10)
  #expect(Swift.abs(n2 - 1) < 1e-5)
  #expect(a.grad!.toArray(Double.self) == ga)
}

@Test func schedulesHitTheirKnots() {
  #expect(LRSchedule.constant.factor(at: 0) == 1)
  #expect(LRSchedule.constant.factor(at: 1000) == 1)

  let wc = LRSchedule.warmupConstant(warmup: 10)
  #expect(wc.factor(at: 0) == 0)
  #expect(wc.factor(at: 5) == 0.5)
  #expect(wc.factor(at: 10) == 1)
  #expect(wc.factor(at: 50) == 1)

  let wl = LRSchedule.warmupLinear(warmup: 10, total: 110)
  #expect(wl.factor(at: 0) == 0)
  #expect(wl.factor(at: 10) == 1)
  #expect(wl.factor(at: 60) == 0.5)
  #expect(wl.factor(at: 110) == 0)
  #expect(wl.factor(at: 200) == 0)

  let cos = LRSchedule.warmupCosine(warmup: 10, total: 110)
  #expect(cos.factor(at: 5) == 0.5)
  #expect(cos.factor(at: 10) == 1)
  #expect(Swift.abs(cos.factor(at: 60) - 0.5) < 1e-12)
  #expect(Swift.abs(cos.factor(at: 110)) < 1e-12)
  #expect(Swift.abs(cos.factor(at: 500)) < 1e-12)

  let floor = LRSchedule.warmupCosine(warmup: 0, total: 100, minRatio: 0.1)
  #expect(floor.factor(at: 0) == 1)
  #expect(Swift.abs(floor.factor(at: 50) - 0.55) < 1e-12)
  #expect(Swift.abs(floor.factor(at: 100) - 0.1) < 1e-12)
  #expect(floor.learningRate(at: 100, peak: 3e-4) == 3e-4 * floor.factor(at: 100))
}

@Test func flattenedAdamWMatchesThePerTensorLoopAndKeepsParametersLive() {
  func run(flatten: Bool) -> (MLP, AdamW) {
    let m = MLP([3, 5, 2], dtype: .float64, generator: Generator(seed: 11))
    let opt = AdamW(ParameterGroup.decayMatricesOnly(m.trainableParameters(), weightDecay: 0.1), learningRate: 0.01,
                    flatten: flatten)
    let x = Tensor.randn([4, 3], dtype: .float64, generator: Generator(seed: 12))
    for _ in 0..<5 {
      opt.zeroGrad()
      m(x).square().mean().backward()
      _ = opt.clipGradients(maxNorm: 0.5)
      opt.step()
    }
    return (m, opt)
  }
  let (a, oa) = run(flatten: true), (b, ob) = run(flatten: false)
  for ((n, x), (_, y)) in zip(a.namedParameters(), b.namedParameters()) { #expect(x.allClose(y, rtol: 1e-12, atol: 1e-14), "\(n)") }
  let sa = oa.stateDict().tensors, sb = ob.stateDict().tensors
  #expect(Set(sa.keys) == Set(sb.keys) && !sa.isEmpty)
  for (k, t) in sa { #expect(t.allClose(sb[k]!, rtol: 1e-12, atol: 1e-14), "\(k)") }
  // The module's parameters are views of the flat buffer: loading new values reaches the optimizer's view.
  withoutGradients { a.layers[0].weight.fill_(0) }
  #expect(oa.flat[0]!.params.narrow(dim: 0, start: 0, length: 15).abs().sum().item() == 0)
}

@Test(arguments: [true, false])
func adamWLaysEveryGroupOutInOneBufferEvenWithAnEmptyGroup(_ bias: Bool) {
  // Without biases the no-decay group is empty; with them both groups share one set of flat buffers.
  func run(flatten: Bool) -> (MLP, AdamW) {
    let m = MLP([3, 4, 2], bias: bias, dtype: .float64, generator: Generator(seed: 5))
    let opt = AdamW(ParameterGroup.decayMatricesOnly(m.trainableParameters(), weightDecay: 0.1), learningRate: 0.02,
                    flatten: flatten)
    let x = Tensor.randn([6, 3], dtype: .float64, generator: Generator(seed: 6))
    for _ in 0..<4 {
      opt.zeroGrad()
      m(x).tanh().sum().backward()
      _ = opt.clipGradients(maxNorm: 0.3)
      opt.step()
    }
    return (m, opt)
  }
  let (a, oa) = run(flatten: true), (b, _) = run(flatten: false)
  #expect(oa.layout != nil)
  #expect(oa.layout!.whole.params.count == a.parameterCount)
  #expect((oa.flat[1] == nil) == !bias)
  for ((n, x), (_, y)) in zip(a.namedParameters(), b.namedParameters()) { #expect(x.allClose(y, rtol: 1e-12, atol: 1e-14), "\(n)") }
}
