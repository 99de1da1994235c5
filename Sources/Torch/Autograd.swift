import CTorch

extension Tensor {
  /// Whether operations on this tensor are recorded for `backward`.
  public var requiresGrad: Bool {
    get { ct_requires_grad(handle) }
    set { check(ct_set_requires_grad(handle, newValue), "requires_grad_") }
  }

  /// Marks this tensor as a leaf that accumulates gradients, and returns it.
  @discardableResult
  public func requiringGrad(_ flag: Bool = true) -> Tensor {
    requiresGrad = flag
    return self
  }

  /// Back-propagates from this tensor (a scalar unless `gradient` is given) into every leaf that
  /// requires gradients; gradients accumulate until zeroed.
  public func backward(_ gradient: Tensor? = nil, retainGraph: Bool = false) {
    withExtendedLifetime(gradient) { check(ct_backward(handle, gradient?.handle, retainGraph), "backward") }
  }

  /// The accumulated gradient, or nil before any backward pass reached this tensor. Setting a buffer
  /// makes later backward passes accumulate into it in place.
  public var grad: Tensor? {
    get {
      guard let h = ct_grad(handle) else {
        if ct_last_error() != nil { fatalError("libtorch grad: \(takeTorchError())") }
        return nil
      }
      return Tensor(owning: h)
    }
    set {
      if let newValue { check(ct_set_grad(handle, newValue.handle), "set_grad") } else { zeroGrad(setToNone: true) }
    }
  }

  /// Points this tensor at `source`'s storage, keeping its identity and autograd flags (like
  /// `param.data = source` in PyTorch); used to lay parameters out in one flat buffer.
  public func setData(_ source: Tensor) { check(ct_set_data(handle, source.handle), "set_data") }

  /// Drops the accumulated gradient (or fills it with zeros when `setToNone` is false).
  public func zeroGrad(setToNone: Bool = true) { check(ct_zero_grad(handle, setToNone), "zero_grad") }

  /// The same values, cut from the autograd graph (shares storage).
  public func detached() -> Tensor { wrap(ct_detach(handle), "detach") }
}

/// Runs `body` with gradient recording off on this thread (restored afterwards, even on throw).
public func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
  let previous = ct_set_grad_enabled(false)
  defer { _ = ct_set_grad_enabled(previous) }
  return try body()
}

/// Whether gradient recording is on for this thread.
public var gradientsEnabled: Bool { ct_is_grad_enabled() }

/// Runs `body` with libtorch's autocast on for `device`'s kind on this thread (restored afterwards, even on
/// throw), as `torch.autocast` does: matrix products run in `dtype` (bfloat16 on the CPU; bfloat16 or float16
/// on CUDA) while reductions and the weights themselves stay in float32, and gradients reach the float32
/// weights in float32. A nil `dtype` runs `body` unchanged. Throws for a dtype the device cannot autocast to.
public func withAutocast<R>(_ dtype: DType?, device: Device = .cpu, _ body: () throws -> R) throws -> R {
  guard let dtype else { return try body() }
  var previous = false
  var previousType: Int32 = DType.bfloat16.rawValue
  guard ct_autocast_enter(device.code, dtype.rawValue, &previous, &previousType) == 0 else {
    throw TorchError("mixed precision: \(takeTorchError())")
  }
  defer { check(ct_autocast_exit(device.code, previous, previousType), "autocast exit") }
  return try body()
}

extension Tensor {
  /// This tensor in float32 when autocast is on for its device, else itself: a model's logits, so that the
  /// log-softmax and the losses after it run in float32 (as `logits.float()` in Hugging Face's models).
  public var float32UnderAutocast: Tensor {
    dtype != .float32 && dtype.isFloatingPoint && ct_autocast_is_enabled(device.code) ? to(.float32) : self
  }
}
