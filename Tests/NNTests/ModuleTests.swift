import Foundation
import Testing
import Torch
@testable import NN

final class Block: Module {
  let c_attn = Linear(4, 12, generator: Generator(seed: 1))
  let ln_1 = LayerNorm(4)
  let norm = RMSNorm(4)
}

final class TinyNet: Module {
  let wte = Embedding(10, 4, generator: Generator(seed: 2))
  let h = [Block(), Block()]
  let head: Linear? = Linear(4, 3, bias: false, generator: Generator(seed: 3))
  let missing: Linear? = nil
  let drop = Dropout(0.5)
}

@Test func parametersAreFoundWithDottedCheckpointNames() {
  let names = TinyNet().namedParameters().map(\.name)
  #expect(names == [
    "wte.weight",
    "h.0.c_attn.weight", "h.0.c_attn.bias", "h.0.ln_1.weight", "h.0.ln_1.bias", "h.0.norm.weight",
    "h.1.c_attn.weight", "h.1.c_attn.bias", "h.1.ln_1.weight", "h.1.ln_1.bias", "h.1.norm.weight",
    "head.weight",
  ])
  #expect(TinyNet().parameterCount == 40 + 2 * (48 + 12 + 4 + 4 + 4) + 12)
}

@Test func trainingModeReachesNestedModules() {
  let net = TinyNet()
  net.setTraining(false)
  #expect(net.drop.training == false)
  let x = Tensor.ones([1000])
  #expect(net.drop(x).allClose(x))
  net.setTraining(true)
  #expect(net.drop(x).eq(0).sum().item() > 300)
}

@Test func freezingRemovesParametersFromTheTrainableSet() {
  let net = TinyNet()
  net.h[0].setRequiresGrad(false)
  #expect(net.trainableParameters().count == 12 - 5)
}

@Test func layersComputeTheirDefinitions() {
  let lin = Linear(3, 2, dtype: .float64, generator: Generator(seed: 0))
  let x = Tensor([1.0, 2.0, 3.0, -1.0, 0.0, 0.5], shape: [2, 3])
  #expect(lin(x).allClose(x.matmul(lin.weight.transposed(0, 1)) + lin.bias!))
  let bound = 1 / 3.0.squareRoot()
  #expect(lin.weight.abs().max().item() <= bound)

  let rms = RMSNorm(3, eps: 0, dtype: .float64)
  let y = rms(x).toArray(Double.self)
  let r0 = ((1.0 + 4 + 9) / 3).squareRoot()
  #expect(Swift.abs(y[2] - 3 / r0) < 1e-12)

  let ln = LayerNorm(3, eps: 0, dtype: .float64)
  let z = ln(x).toArray(Double.self)
  let sd = (2.0 / 3).squareRoot()
  #expect(Swift.abs(z[0] - (-1 / sd)) < 1e-12)

  let mlp = MLP([3, 5, 2], activation: .relu, dtype: .float64, generator: Generator(seed: 4))
  let manual = mlp.layers[1](mlp.layers[0](x).relu())
  #expect(mlp(x).allClose(manual))
}

@Test func moduleStateRoundTripsThroughSafetensors() throws {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-nn-\(UUID())")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: dir) }
  let a = TinyNet(), b = TinyNet()
  withoutGradients { a.wte.weight.mul_(3) }
  #expect(!a.wte.weight.allClose(b.wte.weight))
  let file = dir.appendingPathComponent("model.safetensors")
  try a.save(to: file)
  try b.load(from: file)
  for ((n1, t1), (n2, t2)) in zip(a.namedParameters(), b.namedParameters()) {
    #expect(n1 == n2)
    #expect(t1.allClose(t2, rtol: 0, atol: 0))
  }
}

@Test func loadingRejectsMissingUnexpectedAndMisshapenKeysWithoutChangingAnything() {
  let net = TinyNet()
  var state = net.stateDict().mapValues { $0.clone() }
  let before = net.wte.weight.clone()
  state["wte.weight"] = Tensor.zeros([10, 4])
  state["h.0.ln_1.weight"] = Tensor.zeros([5])
  state["extra.weight"] = Tensor.zeros([1])
  state.removeValue(forKey: "head.weight")
  do {
    try net.load(stateDict: state)
    Issue.record("expected an error")
  } catch let e as StateError {
    #expect(e.message.contains("missing key 'head.weight'"))
    #expect(e.message.contains("unexpected key 'extra.weight'"))
    #expect(e.message.contains("h.0.ln_1.weight"))
  } catch { Issue.record("wrong error \(error)") }
  #expect(net.wte.weight.allClose(before, rtol: 0, atol: 0))
}

@Test func optimizerStateRoundTripsAndContinuesIdentically() throws {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-opt-\(UUID())")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: dir) }

  func makeRun() -> (MLP, AdamW) {
    let m = MLP([3, 4, 2], dtype: .float64, generator: Generator(seed: 9))
    return (m, AdamW(m.trainableParameters(), learningRate: 0.05))
  }
  let x = Tensor.randn([5, 3], dtype: .float64, generator: Generator(seed: 1))
  func step(_ m: MLP, _ o: AdamW) {
    o.zeroGrad()
    m(x).square().mean().backward()
    o.step()
  }
  let (m1, o1) = makeRun()
  for _ in 0..<3 { step(m1, o1) }
  try m1.save(to: dir.appendingPathComponent("m.safetensors"))
  try o1.save(to: dir.appendingPathComponent("o.safetensors"))
  for _ in 0..<2 { step(m1, o1) }

  let (m2, o2) = makeRun()
  try m2.load(from: dir.appendingPathComponent("m.safetensors"))
  try o2.load(from: dir.appendingPathComponent("o.safetensors"))
  #expect(o2.stepCount == 3)
  for _ in 0..<2 { step(m2, o2) }
  for ((_, a), (_, b)) in zip(m1.namedParameters(), m2.namedParameters()) {
    #expect(a.allClose(b, rtol: 0, atol: 0))
  }

  let sgd = SGD(m2.trainableParameters(), learningRate: 0.1)
  #expect(throws: StateError.self) { try sgd.load(from: dir.appendingPathComponent("o.safetensors")) }
}

@Test func movingAModuleCastsItsParametersInPlaceAndKeepsTheirIdentity() {
  let layer = Linear(3, 2, generator: Generator(seed: 4))
  let weight = layer.weight
  let before = layer.weight.toArray(Double.self)
  layer.move(to: .cpu, dtype: .float64)
  #expect(layer.weight === weight)
  #expect(layer.weight.dtype == .float64 && layer.bias!.dtype == .float64)
  #expect(layer.weight.requiresGrad)
  #expect(layer.weight.toArray(Double.self) == before)  // float32 → float64 is exact
  #expect(layer.device == .cpu)
  let y = layer(Tensor.ones([1, 3], dtype: .float64))
  #expect(y.dtype == .float64)
}
