import CTorch

/// An n-dimensional array on libtorch with autograd. One instance owns one C handle, released in
/// `deinit`; several instances may view the same storage (e.g. results of `reshaped` or `alias`).
///
/// Operations on tensors whose shapes or dtypes do not fit are programming errors inside the library
/// and trap with libtorch's message. Code that handles user input validates it before calling in.
public final class Tensor: @unchecked Sendable {
  let handle: OpaquePointer

  init(owning handle: OpaquePointer) { self.handle = handle }
  deinit { ct_free(handle) }

  // MARK: metadata

  public var rank: Int { Int(ct_ndim(handle)) }
  public var shape: [Int] {
    var dims = [Int64](repeating: 0, count: 8)
    let n = Int(ct_sizes(handle, &dims, 8))
    if n > 8 {
      dims = [Int64](repeating: 0, count: n)
      _ = ct_sizes(handle, &dims, Int32(n))
    }
    return dims.prefix(n).map { Int($0) }
  }
  public func size(_ dim: Int) -> Int {
    let s = shape
    return s[dim < 0 ? dim + s.count : dim]
  }
  public var count: Int { Int(ct_numel(handle)) }
  public var dtype: DType { DType(rawValue: ct_dtype_of(handle)).unsafelyUnwrapped }
  public var device: Device { Device(code: ct_device_of(handle)) }
  public var isContiguous: Bool { ct_is_contiguous(handle) }

  /// A second Swift handle to the same tensor: same storage, same autograd identity.
  public func alias() -> Tensor { wrap(ct_alias(handle), "alias") }
}

// MARK: - error plumbing

/// The last libtorch error on this thread, cleared once read.
func takeTorchError() -> String {
  let message = ct_last_error().map { String(cString: $0) } ?? "unknown libtorch error"
  ct_clear_error()
  return message
}

@inline(__always)
func wrap(_ handle: OpaquePointer?, _ op: StaticString) -> Tensor {
  guard let handle else { fatalError("libtorch \(op): \(takeTorchError())") }
  return Tensor(owning: handle)
}

@inline(__always)
func check(_ status: Int32, _ op: StaticString) {
  if status != 0 { fatalError("libtorch \(op): \(takeTorchError())") }
}

/// An error from libtorch surfaced to a caller that can recover (e.g. while reading user files).
public struct TorchError: Error, CustomStringConvertible {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

@inline(__always)
func withShape<R>(_ shape: [Int], _ body: (UnsafePointer<Int64>, Int32) -> R) -> R {
  let dims = shape.map { Int64($0) }
  return dims.withUnsafeBufferPointer { body($0.baseAddress ?? UnsafePointer(bitPattern: 8)!, Int32($0.count)) }
}

@inline(__always)
func withHandles<R>(_ tensors: [Tensor], _ body: (UnsafePointer<OpaquePointer?>, Int32) -> R) -> R {
  let handles: [OpaquePointer?] = tensors.map { $0.handle }
  return withExtendedLifetime(tensors) {
    handles.withUnsafeBufferPointer { body($0.baseAddress!, Int32($0.count)) }
  }
}

// MARK: - creation

extension Tensor {
  public static func empty(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) -> Tensor {
    withShape(shape) { wrap(ct_empty($0, $1, dtype.rawValue, device.code), "empty") }
  }
  public static func full(_ shape: [Int], _ value: Double, dtype: DType = .float32, device: Device = .cpu) -> Tensor {
    withShape(shape) { wrap(ct_full($0, $1, value, dtype.rawValue, device.code), "full") }
  }
  public static func zeros(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) -> Tensor {
    full(shape, 0, dtype: dtype, device: device)
  }
  public static func ones(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) -> Tensor {
    full(shape, 1, dtype: dtype, device: device)
  }
  public static func zeros(like t: Tensor) -> Tensor { zeros(t.shape, dtype: t.dtype, device: t.device) }
  public static func ones(like t: Tensor) -> Tensor { ones(t.shape, dtype: t.dtype, device: t.device) }
  /// A 0-dimensional tensor.
  public static func scalar(_ value: Double, dtype: DType = .float32, device: Device = .cpu) -> Tensor {
    full([], value, dtype: dtype, device: device)
  }
  /// Values 0, 1, … below end.
  public static func arange(_ end: Double, dtype: DType = .int64, device: Device = .cpu) -> Tensor {
    arange(0, end, dtype: dtype, device: device)
  }
  /// Values start, start+step, … below end.
  public static func arange(_ start: Double, _ end: Double, step: Double = 1, dtype: DType = .int64,
                            device: Device = .cpu) -> Tensor {
    wrap(ct_arange(start, end, step, dtype.rawValue, device.code), "arange")
  }
  /// Standard normal samples.
  public static func randn(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu,
                           generator: Generator? = nil) -> Tensor {
    withShape(shape) { wrap(ct_randn($0, $1, dtype.rawValue, device.code, generator?.handle), "randn") }
  }
  /// Uniform samples in [0, 1).
  public static func rand(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu,
                          generator: Generator? = nil) -> Tensor {
    withShape(shape) { wrap(ct_rand($0, $1, dtype.rawValue, device.code, generator?.handle), "rand") }
  }
  /// Integers uniform in [low, high).
  public static func randint(_ low: Int, _ high: Int, _ shape: [Int], dtype: DType = .int64, device: Device = .cpu,
                             generator: Generator? = nil) -> Tensor {
    withShape(shape) {
      wrap(ct_randint(Int64(low), Int64(high), $0, $1, dtype.rawValue, device.code, generator?.handle), "randint")
    }
  }
  /// A random permutation of 0..<n.
  public static func randperm(_ n: Int, device: Device = .cpu, generator: Generator? = nil) -> Tensor {
    wrap(ct_randperm(Int64(n), device.code, generator?.handle), "randperm")
  }

  /// A CPU tensor holding a copy of `values` (row-major).
  public convenience init<T: TensorElement>(_ values: [T], shape: [Int]? = nil) {
    let shape = shape ?? [values.count]
    precondition(shape.reduce(1, *) == values.count, "Tensor(\(values.count) values, shape: \(shape))")
    let h = values.withUnsafeBytes { bytes in
      withShape(shape) { ct_from_data(bytes.baseAddress, bytes.count, $0, $1, T.dtype.rawValue) }
    }
    guard let h else { fatalError("libtorch from_data: \(takeTorchError())") }
    self.init(owning: h)
  }

  /// A CPU tensor holding a copy of raw little-endian bytes of the given dtype.
  public convenience init(bytes: UnsafeRawBufferPointer, shape: [Int], dtype: DType) throws {
    let need = shape.reduce(1, *) * dtype.elementSize
    guard need == bytes.count else {
      throw TorchError("\(bytes.count) bytes given for a \(dtype) tensor of shape \(shape), which needs \(need)")
    }
    let h = withShape(shape) { ct_from_data(bytes.baseAddress, bytes.count, $0, $1, dtype.rawValue) }
    guard let h else { throw TorchError(takeTorchError()) }
    self.init(owning: h)
  }

  /// Copies the elements (converted to `T`'s dtype if needed) into a Swift array.
  public func toArray<T: TensorElement>(_ type: T.Type = T.self) -> [T] {
    let src = dtype == T.dtype ? self : to(T.dtype)
    let n = src.count
    return [T](unsafeUninitializedCapacity: n) { buf, initialized in
      check(ct_copy_to_host(src.handle, buf.baseAddress, n * MemoryLayout<T>.stride), "copy_to_host")
      initialized = n
    }
  }

  /// The raw bytes of the tensor's elements, row-major, in its own dtype.
  public func bytes() -> [UInt8] {
    let n = count * dtype.elementSize
    return [UInt8](unsafeUninitializedCapacity: n) { buf, initialized in
      check(ct_copy_to_host(handle, buf.baseAddress, n), "copy_to_host")
      initialized = n
    }
  }

  /// The single value of a one-element tensor.
  public func item() -> Double {
    ct_clear_error()
    let v = ct_item_double(handle)
    if v.isNaN, let e = ct_last_error() { fatalError("libtorch item: \(String(cString: e))") }
    return v
  }
  public func itemInt() -> Int {
    ct_clear_error()
    let v = ct_item_int64(handle)
    if let e = ct_last_error() { fatalError("libtorch item: \(String(cString: e))") }
    return Int(v)
  }

  // MARK: conversion

  public func to(_ dtype: DType) -> Tensor { wrap(ct_to(handle, dtype.rawValue, device.code), "to") }
  public func to(_ device: Device) -> Tensor { wrap(ct_to(handle, dtype.rawValue, device.code), "to") }
  public func to(_ dtype: DType, _ device: Device) -> Tensor { wrap(ct_to(handle, dtype.rawValue, device.code), "to") }
  public func contiguous() -> Tensor { wrap(ct_contiguous(handle), "contiguous") }
  public func clone() -> Tensor { wrap(ct_clone(handle), "clone") }
}

extension Tensor: CustomStringConvertible {
  public var description: String {
    let values: [Double] = count <= 16 ? toArray(Double.self) : []
    let body = count <= 16 ? values.map { String($0) }.joined(separator: ", ") : "…"
    return "Tensor(\(dtype), shape: \(shape), [\(body)])"
  }
}
