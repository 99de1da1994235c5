import CTorch

/// A seeded random-number generator. Passing one to every random call (init, data order, dropout,
/// sampling) is what makes a run reproducible; its state can be saved and restored for resume.
public final class Generator: @unchecked Sendable {
  let handle: OpaquePointer

  public init(seed: UInt64, device: Device = .cpu) {
    guard let h = ct_generator_new(seed, device.code) else { fatalError("libtorch generator: \(takeTorchError())") }
    handle = h
  }
  deinit { ct_generator_free(handle) }

  public func reseed(_ seed: UInt64) { check(ct_generator_set_seed(handle, seed), "generator_set_seed") }

  /// The full internal state as a uint8 tensor.
  public var state: Tensor {
    wrap(ct_generator_get_state(handle), "generator_get_state")
  }

  /// Restores a state previously read from `state`; a wrong-sized state is a thrown error.
  public func setState(_ state: Tensor) throws {
    if ct_generator_set_state(handle, state.handle) != 0 { throw TorchError(takeTorchError()) }
  }
}
