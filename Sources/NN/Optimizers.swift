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
  /// Clears every parameter's gradient.
  func zeroGrad()
  /// The global L2 norm of all gradients, after scaling them down to `maxNorm` when given.
  func clipGradients(maxNorm: Double?) -> Double
  /// The same as a float64 0-dim tensor, without a device sync (the trainer reads it with its metrics).
  func clipGradientNorm(maxNorm: Double?) -> Tensor
}

extension Optimizer {
  public func zeroGrad() {
    for g in groups { for p in g.parameters { p.tensor.zeroGrad() } }
  }

  public func clipGradients(maxNorm: Double?) -> Double {
    clipOrMeasureNow(groups.flatMap { $0.parameters.compactMap(\.tensor.grad) }, maxNorm: maxNorm)
  }

  public func clipGradientNorm(maxNorm: Double?) -> Tensor {
    clipOrMeasure(groups.flatMap { $0.parameters.compactMap(\.tensor.grad) }, maxNorm: maxNorm)
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
          values.append(t.to(p.dtype))
        }
        restored[ObjectIdentifier(p)] = values
      }
    }
    // Slots that already exist (views into flat buffers) are filled in place; others are replaced.
    for (id, values) in restored {
      if let existing = slots[id] {
        withoutGradients { for (e, v) in zip(existing, values) { e.copy_(v) } }
      } else {
        slots[id] = values.map { $0.clone() }
      }
    }
    for id in slots.keys where restored[id] == nil { withoutGradients { slots[id]?.forEach { $0.zero_() } } }
    step = n
  }
}

/// Parameters laid out contiguously: the parameters, their gradients and the optimizer's moments are views
/// into flat buffers, so one update is a handful of tensor operations however many tensors the model has
/// (the per-tensor loop costs a dispatch per operation per tensor). Built only when every parameter shares
/// dtype and device; gradients then accumulate into the flat buffer in place.
final class FlatGroup {
  let params: Tensor, grads: Tensor, m: Tensor, v: Tensor
  let weightDecay: Double

  init(params: Tensor, grads: Tensor, m: Tensor, v: Tensor, weightDecay: Double) {
    (self.params, self.grads, self.m, self.v, self.weightDecay) = (params, grads, m, v, weightDecay)
  }

  convenience init?(_ group: ParameterGroup, store: SlotStore) {
    guard let layout = FlatLayout([group], store: store) else { return nil }
    self.init(params: layout.whole.params, grads: layout.whole.grads, m: layout.whole.m, v: layout.whole.v,
              weightDecay: group.weightDecay)
  }

  /// `length` elements from `start` of each buffer.
  func slice(start: Int, length: Int, weightDecay: Double) -> FlatGroup {
    func cut(_ t: Tensor) -> Tensor { t.narrow(dim: 0, start: start, length: length) }
    return FlatGroup(params: cut(params), grads: cut(grads), m: cut(m), v: cut(v), weightDecay: weightDecay)
  }
}

/// Every group of an optimizer in one set of flat buffers (`whole`), each group a contiguous slice of it, so
/// an update runs each operation once for the whole model and only weight decay per group.
final class FlatLayout {
  let whole: FlatGroup
  /// Per group, its slice (nil for an empty group).
  let groups: [FlatGroup?]

  init?(_ groups: [ParameterGroup], store: SlotStore) {
    let tensors = groups.flatMap { $0.parameters.map(\.tensor) }
    guard let first = tensors.first,
      tensors.allSatisfy({ $0.dtype == first.dtype && $0.device == first.device })
    else { return nil }
    let total = tensors.reduce(0) { $0 + $1.count }
    let (params, grads, m, v) = withoutGradients {
      let flat = Tensor.cat(tensors.map { $0.detached().reshaped([-1]) })
      return (flat, Tensor.zeros([total], dtype: first.dtype, device: first.device),
              Tensor.zeros([total], dtype: first.dtype, device: first.device),
              Tensor.zeros([total], dtype: first.dtype, device: first.device))
    }
    whole = FlatGroup(params: params, grads: grads, m: m, v: v, weightDecay: 0)
    var offset = 0
    var slices: [FlatGroup?] = []
    for g in groups {
      let start = offset
      for p in g.parameters.map(\.tensor) {
        let n = p.count, shape = p.shape
        func slice(_ t: Tensor) -> Tensor { t.narrow(dim: 0, start: offset, length: n).view(shape) }
        p.setData(slice(params))
        p.grad = slice(grads)
        store.slots[ObjectIdentifier(p)] = [slice(m), slice(v)]
        offset += n
      }
      slices.append(offset > start ? whole.slice(start: start, length: offset - start, weightDecay: g.weightDecay) : nil)
    }
    self.groups = slices
  }
}

/// AdamW (Loshchilov & Hutter): Adam with weight decay applied to the weights directly, with bias
/// correction; the same arithmetic as `torch.optim.AdamW`. Groups are flattened (see `FlatGroup`) unless
/// `flatten` is false; then, as in PyTorch, parameters without a gradient are skipped.
public final class AdamW: Optimizer {
  public var learningRate: Double
  public let groups: [ParameterGroup]
  public let beta1: Double, beta2: Double, eps: Double
  let store = SlotStore(kind: "adamw", slotNames: ["exp_avg", "exp_avg_sq"])
  /// All groups in one set of buffers when every parameter shares dtype and device.
  let layout: FlatLayout?
  /// Per group, its flat buffers (a slice of `layout`'s), or nil where the group is updated tensor by tensor.
  let flat: [FlatGroup?]
  public var stepCount: Int { store.step }

  public init(_ groups: [ParameterGroup], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
              eps: Double = 1e-8, flatten: Bool = true) {
    self.groups = groups
    self.learningRate = learningRate
    (beta1, beta2) = betas
    self.eps = eps
    let store = self.store
    layout = flatten ? FlatLayout(groups, store: store) : nil
    flat = layout?.groups ?? groups.map { flatten ? FlatGroup($0, store: store) : nil }
  }

  public convenience init(_ parameters: [(name: String, tensor: Tensor)], learningRate: Double = 1e-3,
                          betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8, weightDecay: Double = 0.01,
                          flatten: Bool = true) {
    self.init([ParameterGroup(parameters, weightDecay: weightDecay)], learningRate: learningRate, betas: betas, eps: eps,
              flatten: flatten)
  }

  func update(_ p: Tensor, _ grad: Tensor, _ m: Tensor, _ v: Tensor, weightDecay: Double, stepSize: Double, bc2Sqrt: Double) {
    if weightDecay != 0 { p.mul_(1 - learningRate * weightDecay) }
    m.mul_(beta1)
    m.add_(grad, alpha: 1 - beta1)
    v.mul_(beta2)
    v.addcmul_(grad, grad, value: 1 - beta2)
    let denom = v.sqrt()
    denom.div_(bc2Sqrt)
    denom.add_(eps)
    p.addcdiv_(m, denom, value: -stepSize)
  }

  public func step() {
    store.step += 1
    let t = Double(store.step)
    let bc1 = 1 - Foundation.pow(beta1, t)
    let bc2Sqrt = (1 - Foundation.pow(beta2, t)).squareRoot()
    let stepSize = learningRate / bc1
    withoutGradients {
      if let layout {
        for case let g? in layout.groups where g.weightDecay != 0 { g.params.mul_(1 - learningRate * g.weightDecay) }
        let w = layout.whole
        update(w.params, w.grads, w.m, w.v, weightDecay: 0, stepSize: stepSize, bc2Sqrt: bc2Sqrt)
        return
      }
      for (g, f) in zip(groups, flat) {
        if let f {
          update(f.params, f.grads, f.m, f.v, weightDecay: f.weightDecay, stepSize: stepSize, bc2Sqrt: bc2Sqrt)
          continue
        }
        for (_, p) in g.parameters {
          guard let grad = p.grad else { continue }
          let s = store.slots(for: p) { _ in Tensor.zeros(like: p) }
          update(p, grad, s[0], s[1], weightDecay: g.weightDecay, stepSize: stepSize, bc2Sqrt: bc2Sqrt)
        }
      }
    }
  }

  public func zeroGrad() {
    withoutGradients {
      if let layout { return layout.whole.grads.zero_() }
      for (g, f) in zip(groups, flat) {
        if let f { f.grads.zero_() } else { for p in g.parameters { p.tensor.zeroGrad() } }
      }
    }
  }

  /// The gradient buffers to clip: the flat ones when every group has them, else each parameter's.
  public var gradientBuffers: [Tensor] {
    guard layout != nil || flat.allSatisfy({ $0 != nil }) else { return groups.flatMap { $0.parameters.compactMap(\.tensor.grad) } }
    return layout.map { [$0.whole.grads] } ?? flat.map { $0!.grads }
  }

  public func clipGradientNorm(maxNorm: Double?) -> Tensor { clipOrMeasure(gradientBuffers, maxNorm: maxNorm) }
  public func clipGradients(maxNorm: Double?) -> Double { clipOrMeasureNow(gradientBuffers, maxNorm: maxNorm) }

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

/// The global L2 norm of `grads` as a float64 0-dim tensor.
func globalNorm(_ grads: [Tensor]) -> Tensor {
  guard !grads.isEmpty else { return Tensor.zeros([], dtype: .float64) }
  return grads.count == 1 ? grads[0].norm(2).to(.float64) : Tensor.stack(grads.map { $0.norm(2).to(.float64) }).norm(2)
}

/// The global L2 norm of `grads` (float64, 0-dim), after scaling them by min(1, maxNorm/(norm + 1e-6))
/// when `maxNorm` is given: `clip_grad_norm_`'s arithmetic with no device sync, for callers that read the
/// norm later with their other metrics (the trainer).
func clipOrMeasure(_ grads: [Tensor], maxNorm: Double?) -> Tensor {
  withoutGradients {
    let total = globalNorm(grads)
    if let maxNorm, !grads.isEmpty {
      let coef = (maxNorm / (total + 1e-6)).clamp(max: 1)
      for g in grads { g.mul_(coef) }
    }
    return total
  }
}

/// The same with the norm read now: the gradients are touched only when they are clipped.
func clipOrMeasureNow(_ grads: [Tensor], maxNorm: Double?) -> Double {
  withoutGradients {
    let total = globalNorm(grads).item()
    if let maxNorm {
      let coef = maxNorm / (total + 1e-6)
      if coef < 1 { for g in grads { g.mul_(coef) } }
    }
    return total
  }
}

/// Scales all gradients so their global L2 norm is at most `maxNorm` (as `clip_grad_norm_`, with the
/// same 1e-6 guard); returns the norm before clipping. Parameters without gradients are ignored.
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Double) -> Double {
  clipOrMeasureNow(parameters.compactMap(\.grad), maxNorm: maxNorm)
}
