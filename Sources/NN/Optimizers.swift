import Foundation
import Torch

/// A set of parameters sharing optimisation settings (e.g. norms and biases without weight decay).
public struct ParameterGroup {
  public var parameters: [(name: String, tensor: Tensor)]
  public var weightDecay: Double
  public init(_ parameters: [(name: String, tensor: Tensor)], weightDecay: Double) {
    self.parameters = parameters
    self.weightDecay = weightDecay
  }

  /// The usual split: matrices and embeddings decay, 1-D tensors (biases, norm gains) do not.
  public static func decayMatricesOnly(_ parameters: [(name: String, tensor: Tensor)], weightDecay: Double)
    -> [ParameterGroup]
  {
    [ParameterGroup(parameters.filter { $0.tensor.rank >= 2 }, weightDecay: weightDecay),
     ParameterGroup(parameters.filter { $0.tensor.rank < 2 }, weightDecay: 0)]
  }
}

/// One update rule over parameter groups. `step()` reads each parameter's `.grad` (parameters without
/// one are skipped) and updates it in place; the state round-trips through `stateDict`.
public protocol Optimizer: AnyObject {
  var learningRate: Double { get set }
  var groups: [ParameterGroup] { get }
  /// Number of `step()` calls so far.
  var stepCount: Int { get }
  func step()
  /// Per-parameter state tensors keyed `<param>.<slot>`, plus metadata (kind, step count).
  func stateDict() -> (tensors: [String: Tensor], metadata: [String: String])
  func load(tensors: [String: Tensor], metadata: [String: String]) throws
}

extension Optimizer {
  public func zeroGrad() {
    for g in groups { for p in g.parameters { p.tensor.zeroGrad() } }
  }

  public func save(to url: URL) throws {
    let (t, m) = stateDict()
    try Safetensors.save(t, metadata: m, to: url)
  }

  public func load(from url: URL) throws {
    let file = try SafetensorsFile(url: url)
    do {
      try load(tensors: file.loadAll(), metadata: file.metadata)
    } catch let e as StateError {
      throw StateError("\(url.path): \(e.message)")
    }
  }
}

/// Holds named state slots for each parameter, created lazily, and their (de)serialisation.
final class SlotStore {
  let kind: String
  let slotNames: [String]
  var slots: [ObjectIdentifier: [Tensor]] = [:]
  var step = 0

  init(kind: String, slotNames: [String]) {
    self.kind = kind
    self.slotNames = slotNames
  }

  func slots(for p: Tensor, initial: (Int) -> Tensor) -> [Tensor] {
    if let s = slots[ObjectIdentifier(p)] { return s }
    let s = slotNames.indices.map(initial)
    slots[ObjectIdentifier(p)] = s
    return s
  }

  func stateDict(groups: [ParameterGroup], extra: [String: String] = [:]) -> ([String: Tensor], [String: String]) {
    var tensors: [String: Tensor] = [:]
    for g in groups {
      for (name, p) in g.parameters {
        guard let s = slots[ObjectIdentifier(p)] else { continue }
        for (slot, t) in zip(slotNames, s) { tensors["\(name).\(slot)"] = t }
      }
    }
    var meta = extra
    meta["optimizer"] = kind
    meta["step"] = String(step)
    return (tensors, meta)
  }

  func load(groups: [ParameterGroup], tensors: [String: Tensor], metadata: [String: String]) throws {
    guard metadata["optimizer"] == kind else {
      throw StateError("optimizer state is for '\(metadata["optimizer"] ?? "?")', not '\(kind)'")
    }
    guard let s = metadata["step"], let n = Int(s), n >= 0 else { throw StateError("optimizer state lacks a valid 'step'") }
    var restored: [ObjectIdentifier: [Tensor]] = [:]
    for g in groups {
      for (name, p) in g.parameters {
        let found = slotNames.map { tensors["\(name).\($0)"] }
        if found.allSatisfy({ $0 == nil }) { continue }
        var values: [Tensor] = []
        for (slot, t) in zip(slotNames, found) {
          guard let t else { throw StateError("missing optimizer slot '\(name).\(slot)'") }
          guard t.shape == p.shape else {
            throw StateError("optimizer slot '\(name).\(slot)' has shape \(t.shape), parameter has \(p.shape)")
          }
          values.append(t.to(p.dtype).clone())
        }
        restored[ObjectIdentifier(p)] = values
      }
    }
    slots = restored
    step = n
  }
}

/// AdamW (Loshchilov & Hutter): Adam with weight decay applied to the weights directly, with bias
/// correction; the same arithmetic as `torch.optim.AdamW`.
public final class AdamW: Optimizer {
  public var learningRate: Double
  public let groups: [ParameterGroup]
  public let beta1: Double, beta2: Double, eps: Double
  let store = SlotStore(kind: "adamw", slotNames: ["exp_avg", "exp_avg_sq"])
  public var stepCount: Int { store.step }

  public init(_ groups: [ParameterGroup], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
              eps: Double = 1e-8) {
    self.groups = groups
    self.learningRate = learningRate
    (beta1, beta2) = betas
    self.eps = eps
  }

  public convenience init(_ parameters: [(name: String, tensor: Tensor)], learningRate: Double = 1e-3,
                          betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8, weightDecay: Double = 0.01) {
    self.init([ParameterGroup(parameters, weightDecay: weightDecay)], learningRate: learningRate, betas: betas, eps: eps)
  }

  public func step() {
    store.step += 1
    let t = Double(store.step)
    let bc1 = 1 - Foundation.pow(beta1, t)
    let bc2Sqrt = (1 - Foundation.pow(beta2, t)).squareRoot()
    let stepSize = learningRate / bc1
    withoutGradients {
      for g in groups {
        for (_, p) in g.parameters {
          guard let grad = p.grad else { continue }
          let s = store.slots(for: p) { _ in Tensor.zeros(like: p) }
          let (m, v) = (s[0], s[1])
          if g.weightDecay != 0 { p.mul_(1 - learningRate * g.weightDecay) }
          m.mul_(beta1)
          m.add_(grad, alpha: 1 - beta1)
          v.mul_(beta2)
          v.addcmul_(grad, grad, value: 1 - beta2)
          let denom = v.sqrt()
          denom.div_(bc2Sqrt)
          denom.add_(eps)
          p.addcdiv_(m, denom, value: -stepSize)
        }
      }
    }
  }

  public func stateDict() -> (tensors: [String: Tensor], metadata: [String: String]) { store.stateDict(groups: groups) }
  public func load(tensors: [String: Tensor], metadata: [String: String]) throws {
    try store.load(groups: groups, tensors: tensors, metadata: metadata)
  }
}

/// Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay, as `torch.optim.SGD`.
public final class SGD: Optimizer {
  public var learningRate: Double
  public let groups: [ParameterGroup]
  public let momentum: Double, dampening: Double, nesterov: Bool
  let store = SlotStore(kind: "sgd", slotNames: ["momentum_buffer"])
  public var stepCount: Int { store.step }

  public init(_ groups: [ParameterGroup], learningRate: Double, momentum: Double = 0, dampening: Double = 0,
              nesterov: Bool = false) {
    self.groups = groups
    self.learningRate = learningRate
    self.momentum = momentum
    self.dampening = dampening
    self.nesterov = nesterov
  }

  public convenience init(_ parameters: [(name: String, tensor: Tensor)], learningRate: Double, momentum: Double = 0,
                          dampening: Double = 0, nesterov: Bool = false, weightDecay: Double = 0) {
    self.init([ParameterGroup(parameters, weightDecay: weightDecay)], learningRate: learningRate, momentum: momentum,
              dampening: dampening, nesterov: nesterov)
  }

  public func step() {
    store.step += 1
    withoutGradients {
      for g in groups {
        for (_, p) in g.parameters {
          guard let grad = p.grad else { continue }
          var d = g.weightDecay != 0 ? grad + p * g.weightDecay : grad
          if momentum != 0 {
            let buf: Tensor
            if let existing = store.slots[ObjectIdentifier(p)]?[0] {
              buf = existing
              buf.mul_(momentum)
              buf.add_(d, alpha: 1 - dampening)
            } else {
              buf = d.clone()
              store.slots[ObjectIdentifier(p)] = [buf]
            }
            d = nesterov ? d + buf * momentum : buf
          }
          p.add_(d, alpha: -learningRate)
        }
      }
    }
  }

  public func stateDict() -> (tensors: [String: Tensor], metadata: [String: String]) { store.stateDict(groups: groups) }
  public func load(tensors: [String: Tensor], metadata: [String: String]) throws {
    try store.load(groups: groups, tensors: tensors, metadata: metadata)
  }
}

/// RMSprop as `torch.optim.RMSprop` (non-centred): v = αv + (1-α)g², p -= lr·g/(√v + eps),
/// with optional momentum on the normalised step.
public final class RMSprop: Optimizer {
  public var learningRate: Double
  public let groups: [ParameterGroup]
  public let alpha: Double, eps: Double, momentum: Double
  let store: SlotStore
  public var stepCount: Int { store.step }

  public init(_ groups: [ParameterGroup], learningRate: Double = 1e-2, alpha: Double = 0.99, eps: Double = 1e-8,
              momentum: Double = 0) {
    self.groups = groups
    self.learningRate = learningRate
    self.alpha = alpha
    self.eps = eps
    self.momentum = momentum
    store = SlotStore(kind: "rmsprop", slotNames: momentum != 0 ? ["square_avg", "momentum_buffer"] : ["square_avg"])
  }

  public convenience init(_ parameters: [(name: String, tensor: Tensor)], learningRate: Double = 1e-2,
                          alpha: Double = 0.99, eps: Double = 1e-8, momentum: Double = 0, weightDecay: Double = 0) {
    self.init([ParameterGroup(parameters, weightDecay: weightDecay)], learningRate: learningRate, alpha: alpha, eps: eps,
              momentum: momentum)
  }

  public func step() {
    store.step += 1
    withoutGradients {
      for g in groups {
        for (_, p) in g.parameters {
          guard let grad0 = p.grad else { continue }
          let grad = g.weightDecay != 0 ? grad0 + p * g.weightDecay : grad0
          let s = store.slots(for: p) { _ in Tensor.zeros(like: p) }
          let v = s[0]
          v.mul_(alpha)
          v.addcmul_(grad, grad, value: 1 - alpha)
          let avg = v.sqrt()
          avg.add_(eps)
          if momentum != 0 {
            let buf = s[1]
            buf.mul_(momentum)
            buf.addcdiv_(grad, avg)
            p.add_(buf, alpha: -learningRate)
          } else {
            p.addcdiv_(grad, avg, value: -learningRate)
          }
        }
      }
    }
  }

  public func stateDict() -> (tensors: [String: Tensor], metadata: [String: String]) { store.stateDict(groups: groups) }
  public func load(tensors: [String: Tensor], metadata: [String: String]) throws {
    try store.load(groups: groups, tensors: tensors, metadata: metadata)
  }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm` (as `clip_grad_norm_`, with the
/// same 1e-6 guard); returns the norm before clipping. Parameters without gradients are ignored.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Double) -> Double {
  withoutGradients {
    let grads = parameters.compactMap(\.grad)
    guard !grads.isEmpty else { return 0 }
    let total = Tensor.stack(grads.map { $0.norm(2).to(.float32) }).norm(2).item()
    let coef = maxNorm / (total + 1e-6)
    if coef < 1 { for g in grads { g.mul_(coef) } }
    return total
  }
}
