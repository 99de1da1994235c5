import Foundation
import Torch

/// A network component. Its parameters are found by reflection: every stored `Tensor` property is a
/// parameter, every stored `Module` (or array of modules, or array of tensors) is a child, and names are
/// joined with dots (`h.0.attn.c_attn.weight`): properties carry their checkpoint names, so loading a
/// Hugging Face checkpoint is a straight mapping.
///
/// Parameters are updated in place (optimizers, `load`), so modules hold them as `let`.
public protocol Module: AnyObject {}

/// A module whose parameters are named as its parent's own (`q_proj.lora_A.weight`, not
/// `q_proj.lora.lora_A.weight`): an add-on to a layer that keeps the names another tool saves it under.
public protocol FlattenedModule: Module {}

/// Modules whose behaviour differs between training and evaluation (dropout).
public protocol TrainingModeAware: AnyObject {
  var training: Bool { get set }
}

extension Module {
  /// Calls `visit` for every parameter in declaration order with its dotted name.
  public func visitParameters(_ visit: (String, Tensor) -> Void) {
    walk(prefix: "", visitParameter: visit, visitModule: { _, _ in })
  }

  /// Every parameter (trainable or frozen) with its dotted name, in declaration order.
  public func namedParameters() -> [(name: String, tensor: Tensor)] {
    var out: [(String, Tensor)] = []
    visitParameters { out.append(($0, $1)) }
    return out
  }

  /// The parameters an optimizer should update: those that require gradients.
  public func trainableParameters() -> [(name: String, tensor: Tensor)] {
    namedParameters().filter { $0.tensor.requiresGrad }
  }

  public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }

  /// Every module in the tree (this one first) with its dotted name ("" for this one, `model.layers.0.mlp`).
  public func namedModules() -> [(name: String, module: any Module)] {
    var out: [(String, any Module)] = []
    walk(prefix: "", visitParameter: { _, _ in }, visitModule: { out.append(($0, $1)) })
    return out
  }

  /// Switches every `TrainingModeAware` module in the tree.
  public func setTraining(_ on: Bool) {
    walk(prefix: "", visitParameter: { _, _ in }, visitModule: { ($1 as? TrainingModeAware)?.training = on })
  }

  /// Freezes (or unfreezes) every parameter.
  public func setRequiresGrad(_ on: Bool) { visitParameters { $1.requiresGrad = on } }

  /// Zeroes every parameter's gradient in place. It never drops a gradient tensor: an optimizer's flat
  /// buffers (AdamW) are views that the parameters' `.grad` must keep pointing into.
  public func zeroGrad() { visitParameters { $1.zeroGrad(setToNone: false) } }

  /// Visits this module (named by `prefix` without its final dot), then its parameters and children.
  func walk(prefix: String, visitParameter: (String, Tensor) -> Void, visitModule: (String, any Module) -> Void) {
    visitModule(prefix.hasSuffix(".") ? String(prefix.dropLast()) : prefix, self)
    var mirror: Mirror? = Mirror(reflecting: self)
    var levels: [Mirror] = []
    while let m = mirror {
      levels.append(m)
      mirror = m.superclassMirror
    }
    for level in levels.reversed() {
      for child in level.children {
        guard let label = child.label else { continue }
        Self.visitValue(child.value, prefix: prefix, label: label, visitParameter: visitParameter, visitModule: visitModule)
      }
    }
  }

  static func visitValue(_ value: Any, prefix: String, label: String, visitParameter: (String, Tensor) -> Void,
                         visitModule: (String, any Module) -> Void) {
    let name = prefix + label
    if let t = value as? Tensor {
      visitParameter(name, t)
    } else if let m = value as? any Module {
      m.walk(prefix: m is any FlattenedModule ? prefix : name + ".", visitParameter: visitParameter, visitModule: visitModule)
    } else if let ms = value as? [any Module] {
      for (i, m) in ms.enumerated() {
        m.walk(prefix: "\(name).\(i).", visitParameter: visitParameter, visitModule: visitModule)
      }
    } else if let ts = value as? [Tensor] {
      for (i, t) in ts.enumerated() { visitParameter("\(name).\(i)", t) }
    }
  }
}

extension Module {
  /// Where the parameters live (the first parameter's device; the CPU for a module without any).
  public var device: Device {
    var found: Device?
    visitParameters { _, p in if found == nil { found = p.device } }
    return found ?? .cpu
  }

  /// Moves every parameter to `device` and, when `dtype` is given, casts the floating-point ones to it.
  /// Each parameter keeps its identity (`set_data`, like PyTorch's `module.to`), so do this before an
  /// optimizer is made over them. Integer tensors (token tables) keep their type.
  public func move(to device: Device, dtype: DType? = nil) {
    withoutGradients {
      visitParameters { _, p in
        let target = dtype.flatMap { p.dtype.isFloatingPoint ? $0 : nil } ?? p.dtype
        if p.device != device || p.dtype != target { p.setData(p.to(target, device)) }
      }
    }
  }
}

/// A problem with saved state that does not fit the module or optimizer it is loaded into.
public struct StateError: Error, CustomStringConvertible {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

extension Module {
  /// Parameter values by dotted name (shared storage: clone before mutating if needed).
  public func stateDict() -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    visitParameters { out[$0] = $1 }
    return out
  }

  /// Copies values into the parameters. With `strict`, a missing or unexpected key is an error; a
  /// shape mismatch always is. Nothing is changed unless every entry fits.
  public func load(stateDict: [String: Tensor], strict: Bool = true) throws {
    let params = namedParameters()
    var problems: [String] = []
    for (name, p) in params {
      guard let v = stateDict[name] else {
        if strict { problems.append("missing key '\(name)'") }
        continue
      }
      if v.shape != p.shape { problems.append("key '\(name)': shape \(v.shape) where the model has \(p.shape)") }
    }
    if strict {
      let known = Set(params.map(\.name))
      for k in stateDict.keys.sorted() where !known.contains(k) { problems.append("unexpected key '\(k)'") }
    }
    guard problems.isEmpty else { throw StateError(problems.joined(separator: "; ")) }
    withoutGradients {
      for (name, p) in params { if let v = stateDict[name] { p.copy_(v) } }
    }
  }

  /// Writes the parameters as a safetensors file (atomically).
  public func save(to url: URL, metadata: [String: String] = [:]) throws {
    try Safetensors.save(stateDict(), metadata: metadata, to: url)
  }

  /// Reads parameters from a safetensors file written by `save` (or any file with the same keys).
  public func load(from url: URL, strict: Bool = true) throws {
    do {
      try load(stateDict: Safetensors.load(url), strict: strict)
    } catch let e as StateError {
      throw StateError("\(url.path): \(e.message)")
    }
  }
}
