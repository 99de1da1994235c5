import Foundation
import Torch

/// A GGUF file that cannot be read, naming the file, the metadata key or tensor at fault, and why.
public struct GGUFError: Error, CustomStringConvertible, LocalizedError {
  public let path: String
  /// "key 'x'" or "tensor 'y'" when one is at fault.
  public let subject: String?
  public let message: String

  public init(path: String, subject: String? = nil, _ message: String) {
    self.path = path
    self.subject = subject
    self.message = message
  }

  public var description: String {
    if let subject { return "\(path): \(subject): \(message)" }
    return "\(path): \(message)"
  }
  public var errorDescription: String? { description }
}

/// One metadata value. Arrays keep their element type so an empty array still says what it would hold.
public indirect enum GGUFValue: Sendable, Equatable {
  case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
  case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
  case array(GGUFValueType, [GGUFValue])

  /// Any integer type as an Int (nil for other types or a uint64 beyond Int.max), since writers differ
  /// in which width they use for the same key.
  public var int: Int? {
    switch self {
    case .uint8(let v): return Int(v)
    case .int8(let v): return Int(v)
    case .uint16(let v): return Int(v)
    case .int16(let v): return Int(v)
    case .uint32(let v): return Int(v)
    case .int32(let v): return Int(v)
    case .uint64(let v): return v <= UInt64(Int.max) ? Int(v) : nil
    case .int64(let v): return Int(v)
    default: return nil
    }
  }

  public var double: Double? {
    switch self {
    case .float32(let v): return Double(v)
    case .float64(let v): return v
    default: return int.map(Double.init)
    }
  }

  public var string: String? { if case .string(let s) = self { s } else { nil } }
  public var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
  public var array: [GGUFValue]? { if case .array(_, let a) = self { a } else { nil } }
}

/// The metadata value type codes of the GGUF specification.
public enum GGUFValueType: UInt32, Sendable, CustomStringConvertible {
  case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7, string = 8
  case array = 9, uint64 = 10, int64 = 11, float64 = 12

  /// Smallest encoded size, used to refuse array counts that could not fit in the rest of the file
  /// before allocating anything for them.
  var minimumSize: Int {
    switch self {
    case .uint8, .int8, .bool: 1
    case .uint16, .int16: 2
    case .uint32, .int32, .float32: 4
    case .uint64, .int64, .float64, .string: 8
    case .array: 12
    }
  }

  public var description: String {
    switch self {
    case .uint8: "UINT8"
    case .int8: "INT8"
    case .uint16: "UINT16"
    case .int16: "INT16"
    case .uint32: "UINT32"
    case .int32: "INT32"
    case .float32: "FLOAT32"
    case .bool: "BOOL"
    case .string: "STRING"
    case .array: "ARRAY"
    case .uint64: "UINT64"
    case .int64: "INT64"
    case .float64: "FLOAT64"
    }
  }
}

/// One tensor's entry in the file's table. `dims` are in GGUF order (fastest-varying first); `shape` is
/// the row-major (PyTorch) order, the reverse.
public struct GGUFTensorInfo: Sendable {
  public let name: String
  public let dims: [Int]
  public let type: GGMLType
  /// Byte offset from the start of the data section.
  public let offset: Int
  public let byteCount: Int
  public var shape: [Int] { dims.reversed() }
  public var elementCount: Int { dims.reduce(1, *) }
}

/// A memory-mapped GGUF file (llama.cpp's container: header, typed metadata, tensor table, aligned data)
/// whose header and tensor table are fully validated on open, so that dequantising a listed tensor
/// afterwards cannot read outside the file.
///
/// Versions 2 and 3 are read (v1 used 32-bit counts and is long obsolete); little-endian only, as every
/// published file is.
public final class GGUFFile: @unchecked Sendable {
  public static let defaultAlignment = 32
  /// A GGML tensor has at most four dimensions.
  public static let maxDimensions = 4
  /// Arrays nested deeper than this are refused so hostile input cannot exhaust the stack.
  static let maxArrayDepth = 8

  public let url: URL
  public let version: Int
  public let alignment: Int
  /// Metadata keys in file order.
  public let keys: [String]
  public let metadata: [String: GGUFValue]
  /// Tensors in file order.
  public let tensors: [GGUFTensorInfo]
  /// Absolute offset of the data section.
  public let dataOffset: Int

  private let data: Data
  private let byName: [String: Int]

  var path: String { url.relativePath }

  public convenience init(url: URL) throws {
    let data: Data
    do {
      data = try Data(contentsOf: url, options: .alwaysMapped)
    } catch {
      throw GGUFError(path: url.relativePath, "cannot read the file: \(fileErrorReason(error))")
    }
    try self.init(data: data, url: url)
  }

  /// Reads a file already in memory; `url` names it in errors.
  public init(data: Data, url: URL) throws {
    let path = url.relativePath
    let parsed = try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> Parsed in
      var reader = GGUFHeaderReader(bytes: raw, path: path)
      return try reader.parse()
    }
    self.url = url
    self.data = data
    version = parsed.version
    alignment = parsed.alignment
    keys = parsed.keys
    metadata = parsed.metadata
    tensors = parsed.tensors
    dataOffset = parsed.dataOffset
    var index: [String: Int] = [:]
    for (i, t) in parsed.tensors.enumerated() { index[t.name] = i }
    byName = index
  }

  struct Parsed {
    var version: Int
    var alignment: Int
    var keys: [String]
    var metadata: [String: GGUFValue]
    var tensors: [GGUFTensorInfo]
    var dataOffset: Int
  }

  public func info(_ name: String) -> GGUFTensorInfo? { byName[name].map { tensors[$0] } }

  /// A metadata value that must be present with an integer type.
  public func requireInt(_ key: String) throws -> Int {
    guard let i = try optionalInt(key) else { throw GGUFError(path: path, subject: "key '\(key)'", "missing") }
    return i
  }

  /// A metadata value that, when present, must be of the type asked for; absent gives nil.
  func optional<T>(_ key: String, _ expected: String, _ extract: (GGUFValue) -> T?) throws -> T? {
    guard let value = metadata[key] else { return nil }
    guard let v = extract(value) else {
      throw GGUFError(path: path, subject: "key '\(key)'", "expected \(expected), found \(value.typeName)")
    }
    return v
  }

  public func optionalInt(_ key: String) throws -> Int? { try optional(key, "an integer") { $0.int } }
  public func optionalDouble(_ key: String) throws -> Double? { try optional(key, "a number") { $0.double } }
  public func optionalString(_ key: String) throws -> String? { try optional(key, "a string") { $0.string } }
  public func optionalBool(_ key: String) throws -> Bool? { try optional(key, "a boolean") { $0.bool } }

  /// The raw bytes of a tensor, handed to `body` without copying.
  public func withBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer, GGUFTensorInfo) throws -> R) throws -> R {
    guard let i = byName[name] else { throw GGUFError(path: path, subject: "tensor '\(name)'", "no such tensor in the file") }
    let t = tensors[i]
    return try data.withUnsafeBytes { raw in
      try body(UnsafeRawBufferPointer(rebasing: raw[(dataOffset + t.offset)..<(dataOffset + t.offset + t.byteCount)]), t)
    }
  }

  /// The tensor dequantised to float32 values in row-major order.
  public func floats(_ name: String) throws -> [Float] {
    try withBytes(of: name) { bytes, t in
      [Float](unsafeUninitializedCapacity: t.elementCount) { out, initialized in
        guard let base = out.baseAddress, t.elementCount > 0 else { return }
        GGMLDequantizer.dequantize(t.type, from: bytes, into: base, count: t.elementCount)
        initialized = t.elementCount
      }
    }
  }

  /// A new float32 CPU tensor of the dequantised values, in the row-major shape (GGUF dims reversed).
  public func tensor(_ name: String) throws -> Tensor {
    let values = try floats(name)
    let shape = info(name)?.shape ?? [values.count]
    return try values.withUnsafeBytes { raw in
      do {
        return try Tensor(bytes: raw, shape: shape, dtype: .float32)
      } catch {
        throw GGUFError(path: path, subject: "tensor '\(name)'", "\(error)")
      }
    }
  }
}

extension GGUFValue {
  /// The value's type tag in the file.
  var valueType: GGUFValueType {
    switch self {
    case .uint8: .uint8
    case .int8: .int8
    case .uint16: .uint16
    case .int16: .int16
    case .uint32: .uint32
    case .int32: .int32
    case .uint64: .uint64
    case .int64: .int64
    case .float32: .float32
    case .float64: .float64
    case .bool: .bool
    case .string: .string
    case .array: .array
    }
  }

  /// The type's name as errors show it (`ARRAY of STRING` for arrays), from `GGUFValueType.description`.
  var typeName: String {
    if case .array(let t, _) = self { return "ARRAY of \(t)" }
    return valueType.description
  }
}

/// A bounds-checked little-endian cursor over the file's header. Every read checks the remaining length
/// first, so a truncated or lying file ends in an error naming what was being read.
struct GGUFHeaderReader {
  let bytes: UnsafeRawBufferPointer
  let path: String
  var position = 0

  init(bytes: UnsafeRawBufferPointer, path: String) {
    self.bytes = bytes
    self.path = path
  }

  func fail(_ subject: String?, _ message: String) -> GGUFError { GGUFError(path: path, subject: subject, message) }

  var remaining: Int { bytes.count - position }

  mutating func take(_ n: Int, _ what: String, _ subject: String?) throws -> Int {
    guard n >= 0, n <= remaining else {
      throw fail(subject, "file ends at byte \(bytes.count) while reading \(what) at byte \(position) "
        + "(needs \(n) bytes; file truncated?)")
    }
    let start = position
    position += n
    return start
  }

  mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String, _ subject: String?) throws -> T {
    let at = try take(MemoryLayout<T>.size, what, subject)
    return T(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: T.self))
  }

  mutating func readString(_ what: String, _ subject: String?) throws -> String {
    let length = try read(UInt64.self, "the length of \(what)", subject)
    guard length <= UInt64(remaining) else {
      throw fail(subject, "\(what) claims \(length) bytes but only \(remaining) remain in the file")
    }
    let at = try take(Int(length), what, subject)
    let slice = UnsafeRawBufferPointer(rebasing: bytes[at..<(at + Int(length))])
    guard let s = String(validating: slice, as: UTF8.self) else { throw fail(subject, "\(what) is not valid UTF-8") }
    return s
  }

  mutating func readValue(_ type: GGUFValueType, subject: String, depth: Int) throws -> GGUFValue {
    switch type {
    case .uint8: return .uint8(try read(UInt8.self, "a UINT8", subject))
    case .int8: return .int8(try read(Int8.self, "an INT8", subject))
    case .uint16: return .uint16(try read(UInt16.self, "a UINT16", subject))
    case .int16: return .int16(try read(Int16.self, "an INT16", subject))
    case .uint32: return .uint32(try read(UInt32.self, "a UINT32", subject))
    case .int32: return .int32(try read(Int32.self, "an INT32", subject))
    case .uint64: return .uint64(try read(UInt64.self, "a UINT64", subject))
    case .int64: return .int64(try read(Int64.self, "an INT64", subject))
    case .float32: return .float32(Float(bitPattern: try read(UInt32.self, "a FLOAT32", subject)))
    case .float64: return .float64(Double(bitPattern: try read(UInt64.self, "a FLOAT64", subject)))
    case .bool:
      let b = try read(UInt8.self, "a BOOL", subject)
      guard b <= 1 else { throw fail(subject, "BOOL value is \(b), expected 0 or 1") }
      return .bool(b == 1)
    case .string: return .string(try readString("a string value", subject))
    case .array:
      guard depth < GGUFFile.maxArrayDepth else {
        throw fail(subject, "arrays nested deeper than \(GGUFFile.maxArrayDepth) levels")
      }
      let code = try read(UInt32.self, "an array's element type", subject)
      guard let elementType = GGUFValueType(rawValue: code) else {
        throw fail(subject, "unknown array element type \(code) (known: 0…12)")
      }
      let count = try read(UInt64.self, "an array's length", subject)
      guard count <= UInt64(remaining / elementType.minimumSize) else {
        throw fail(subject, "array claims \(count) elements of \(elementType), more than the \(remaining) "
          + "remaining bytes can hold")
      }
      var items: [GGUFValue] = []
      items.reserveCapacity(Int(count))
      for _ in 0..<Int(count) { items.append(try readValue(elementType, subject: subject, depth: depth + 1)) }
      return .array(elementType, items)
    }
  }

  mutating func parse() throws -> GGUFFile.Parsed {
    let magic = try take(4, "the magic number", nil)
    guard Array(UnsafeRawBufferPointer(rebasing: bytes[magic..<(magic + 4)])) == Array("GGUF".utf8) else {
      let found = Array(bytes[magic..<(magic + 4)]).map { String(format: "%02x", $0) }.joined(separator: " ")
      throw fail(nil, "bad magic \(found), expected \"GGUF\" (47 47 55 46): not a GGUF file")
    }
    let rawVersion = try read(UInt32.self, "the version", nil)
    guard rawVersion == 2 || rawVersion == 3 else {
      if rawVersion.byteSwapped == 2 || rawVersion.byteSwapped == 3 {
        throw fail(nil, "big-endian GGUF files are not supported")
      }
      throw fail(nil, "GGUF version \(rawVersion) is not supported (2 or 3)")
    }
    let tensorCount = try read(UInt64.self, "the tensor count", nil)
    let kvCount = try read(UInt64.self, "the metadata count", nil)
    // Each entry takes at least a key length, a type and one byte; each tensor info at least 28 bytes.
    guard kvCount <= UInt64(remaining / 13) else {
      throw fail(nil, "metadata count \(kvCount) cannot fit in the \(remaining) bytes that follow")
    }
    guard tensorCount <= UInt64(remaining / 28) else {
      throw fail(nil, "tensor count \(tensorCount) cannot fit in the \(remaining) bytes that follow")
    }

    var keys: [String] = []
    var metadata: [String: GGUFValue] = [:]
    for i in 0..<Int(kvCount) {
      let key = try readString("metadata key #\(i)", nil)
      let subject = "key '\(key)'"
      guard metadata[key] == nil else { throw fail(subject, "appears twice") }
      let code = try read(UInt32.self, "the value type", subject)
      guard let type = GGUFValueType(rawValue: code) else {
        throw fail(subject, "unknown value type \(code) (known: 0…12)")
      }
      metadata[key] = try readValue(type, subject: subject, depth: 0)
      keys.append(key)
    }

    var alignment = GGUFFile.defaultAlignment
    if let value = metadata["general.alignment"] {
      guard let a = value.int else {
        throw fail("key 'general.alignment'", "expected an integer, found \(value.typeName)")
      }
      guard a > 0, a & (a - 1) == 0, a <= 1 << 20 else {
        throw fail("key 'general.alignment'", "\(a) is not a power of two up to 1 MiB")
      }
      alignment = a
    }

    var infos: [(name: String, dims: [Int], type: GGMLType, offset: Int)] = []
    var names = Set<String>()
    for i in 0..<Int(tensorCount) {
      let name = try readString("the name of tensor #\(i)", nil)
      let subject = "tensor '\(name)'"
      guard names.insert(name).inserted else { throw fail(subject, "appears twice in the tensor table") }
      let nDims = try read(UInt32.self, "the number of dimensions", subject)
      guard nDims >= 1, nDims <= UInt32(GGUFFile.maxDimensions) else {
        throw fail(subject, "has \(nDims) dimensions (1…\(GGUFFile.maxDimensions) allowed)")
      }
      var dims: [Int] = []
      for d in 0..<Int(nDims) {
        let n = try read(UInt64.self, "dimension \(d)", subject)
        guard n <= UInt64(Int32.max) else { throw fail(subject, "dimension \(d) is \(n), too large") }
        dims.append(Int(n))
      }
      let code = try read(UInt32.self, "the tensor type", subject)
      guard let type = GGMLType(rawValue: code) else { throw fail(subject, "unknown tensor type \(code)") }
      let offset = try read(UInt64.self, "the data offset", subject)
      guard offset <= UInt64(Int.max) else { throw fail(subject, "data offset \(offset) is out of range") }
      infos.append((name, dims, type, Int(offset)))
    }

    let dataOffset = (position + alignment - 1) / alignment * alignment
    guard dataOffset <= bytes.count else {
      throw fail(nil, "the data section would start at byte \(dataOffset), past the end of the file (\(bytes.count) bytes)")
    }
    let dataSize = bytes.count - dataOffset
    var tensors: [GGUFTensorInfo] = []
    for info in infos {
      let subject = "tensor '\(info.name)'"
      guard let layout = info.type.layout else {
        throw fail(subject, "type \(info.type) is not supported (supported: "
          + GGMLType.supported.map(\.description).joined(separator: ", ") + ")")
      }
      var count = 1
      for d in info.dims {
        let (p, overflow) = count.multipliedReportingOverflow(by: d)
        guard !overflow, p <= 1 << 40 else { throw fail(subject, "shape \(info.dims) has too many elements") }
        count = p
      }
      guard info.dims[0] % layout.blockElements == 0 else {
        throw fail(subject, "first dimension \(info.dims[0]) is not a multiple of \(info.type)'s block of "
          + "\(layout.blockElements) values")
      }
      let byteCount = count / layout.blockElements * layout.blockBytes
      guard info.offset % alignment == 0 else {
        throw fail(subject, "data offset \(info.offset) is not a multiple of the alignment \(alignment)")
      }
      guard info.offset <= dataSize, byteCount <= dataSize - info.offset else {
        throw fail(subject, "data [\(info.offset), \(info.offset + byteCount)) lies outside the data section "
          + "(\(dataSize) bytes; file truncated?)")
      }
      tensors.append(GGUFTensorInfo(name: info.name, dims: info.dims, type: info.type, offset: info.offset,
                                    byteCount: byteCount))
    }
    let occupied = tensors.filter { $0.byteCount > 0 }.sorted { ($0.offset, $0.name) < ($1.offset, $1.name) }
    for (a, b) in zip(occupied, occupied.dropFirst()) where b.offset < a.offset + a.byteCount {
      throw fail("tensor '\(b.name)'", "data at \(b.offset) overlaps tensor '\(a.name)' at [\(a.offset), "
        + "\(a.offset + a.byteCount))")
    }
    return GGUFFile.Parsed(version: Int(rawVersion), alignment: alignment, keys: keys, metadata: metadata,
                           tensors: tensors, dataOffset: dataOffset)
  }
}
