import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A safetensors file that cannot be read or written, with the file, the tensor when one is at fault, and why.
public struct SafetensorsError: Error, CustomStringConvertible {
  public let path: String
  public let tensor: String?
  public let message: String

  public init(path: String, tensor: String? = nil, _ message: String) {
    self.path = path
    self.tensor = tensor
    self.message = message
  }

  public var description: String {
    if let tensor { return "\(path): tensor '\(tensor)': \(message)" }
    return "\(path): \(message)"
  }
}

/// A memory-mapped safetensors file whose header has been fully validated on open, so that reading any
/// listed tensor afterwards can only fail if the file changes underneath.
///
/// Layout: 8-byte little-endian header length N, N bytes of JSON header, then the data section. Each header
/// entry gives a tensor's dtype, shape and `data_offsets` [begin, end) relative to the data section.
public final class SafetensorsFile: @unchecked Sendable {
  /// Same bound as the reference implementation: a larger header is corrupt or hostile.
  public static let maxHeaderLength = 100_000_000

  public let url: URL
  /// Tensor names, sorted.
  public let names: [String]
  public let metadata: [String: String]

  private let data: Data
  private let dataStart: Int
  private let entries: [String: Entry]

  struct Entry {
    let dtype: DType
    let shape: [Int]
    let begin: Int
    let end: Int
  }

  public convenience init(url: URL) throws {
    let data: Data
    do {
      data = try Data(contentsOf: url, options: .alwaysMapped)
    } catch {
      throw SafetensorsError(path: url.relativePath, "cannot read the file: \(fileErrorReason(error))")
    }
    try self.init(data: data, url: url)
  }

  /// Reads a file already in memory; `url` names it in errors.
  public init(data: Data, url: URL) throws {
    let path = url.relativePath
    func failure(_ message: String, tensor: String? = nil) -> SafetensorsError {
      SafetensorsError(path: path, tensor: tensor, message)
    }

    guard data.count >= 8 else {
      throw failure("file is \(data.count) bytes, too short to hold the 8-byte header length")
    }
    let headerLength: UInt64 = data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
      var v: UInt64 = 0
      for k in 0..<8 { v |= UInt64(raw[k]) << (8 * UInt64(k)) }
      return v
    }
    let afterPrefix = data.count - 8
    guard headerLength <= UInt64(afterPrefix) else {
      throw failure("header length \(headerLength) exceeds the \(afterPrefix) bytes that follow it "
        + "(file truncated, or not a safetensors file)")
    }
    guard headerLength <= UInt64(Self.maxHeaderLength) else {
      throw failure("header length \(headerLength) exceeds the limit of \(Self.maxHeaderLength) bytes")
    }
    let n = Int(headerLength)
    let headerBytes: [UInt8] = data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
      Array(UnsafeRawBufferPointer(rebasing: raw[8..<(8 + n)]))
    }
    guard String(validating: headerBytes, as: UTF8.self) != nil else {
      throw failure("header is not valid UTF-8")
    }
    let header: HeaderJSON
    do {
      header = try HeaderParser.parse(headerBytes)
    } catch {
      throw failure("header is not valid JSON: \(error.message)")
    }
    guard case .object(let members) = header else {
      throw failure("header is a JSON \(header.kind), expected an object")
    }

    let dataSize = afterPrefix - n
    var metadata: [String: String] = [:]
    var entries: [String: Entry] = [:]
    for (name, value) in members {
      if name == "__metadata__" {
        metadata = try Self.metadata(from: value, failure)
        continue
      }
      let entry = try Self.entry(from: value) { failure($0, tensor: name) }
      guard entry.end <= dataSize else {
        throw failure("data_offsets [\(entry.begin), \(entry.end)] exceed the data section (\(dataSize) bytes)",
                      tensor: name)
      }
      entries[name] = entry
    }

    // Zero-byte tensors occupy no bytes, so they cannot overlap anything.
    let occupied = entries.filter { $0.value.begin < $0.value.end }
      .sorted { ($0.value.begin, $0.key) < ($1.value.begin, $1.key) }
    var furthest: (name: String, entry: Entry)?
    for (name, entry) in occupied {
      if let f = furthest, entry.begin < f.entry.end {
        throw failure("data_offsets [\(entry.begin), \(entry.end)] overlap tensor '\(f.name)' at "
          + "[\(f.entry.begin), \(f.entry.end)]", tensor: name)
      }
      if furthest.map({ entry.end > $0.entry.end }) ?? true { furthest = (name, entry) }
    }

    self.url = url
    self.data = data
    self.dataStart = 8 + n
    self.entries = entries
    self.metadata = metadata
    self.names = entries.keys.sorted()
  }

  public func info(_ name: String) -> (dtype: DType, shape: [Int])? {
    entries[name].map { ($0.dtype, $0.shape) }
  }

  /// A new CPU tensor holding a copy of the named tensor's bytes.
  public func tensor(_ name: String) throws -> Tensor {
    guard let e = entries[name] else {
      throw SafetensorsError(path: url.relativePath, tensor: name, "no such tensor in the file")
    }
    return try data.withUnsafeBytes { raw in
      let bytes = UnsafeRawBufferPointer(rebasing: raw[(dataStart + e.begin)..<(dataStart + e.end)])
      do {
        return try Tensor(bytes: bytes, shape: e.shape, dtype: e.dtype)
      } catch {
        throw SafetensorsError(path: url.relativePath, tensor: name, "\(error)")
      }
    }
  }

  public func loadAll() throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for name in names { out[name] = try tensor(name) }
    return out
  }

  // MARK: header validation

  private static func metadata(from value: HeaderJSON,
                               _ failure: (String, String?) -> SafetensorsError) throws -> [String: String] {
    switch value {
    case .null:
      return [:]
    case .object(let members):
      var out: [String: String] = [:]
      for (key, v) in members {
        guard case .string(let s) = v else {
          throw failure("__metadata__ value for '\(key)' is a JSON \(v.kind), expected a string", nil)
        }
        out[key] = s
      }
      return out
    default:
      throw failure("__metadata__ is a JSON \(value.kind), expected an object of strings", nil)
    }
  }

  private static func entry(from value: HeaderJSON, _ failure: (String) -> SafetensorsError) throws -> Entry {
    guard case .object(let members) = value else {
      throw failure("entry is a JSON \(value.kind), expected an object")
    }
    func field(_ key: String) throws -> HeaderJSON {
      guard let v = members.first(where: { $0.key == key })?.value else { throw failure("missing '\(key)'") }
      return v
    }
    func nonNegativeInt(_ v: HeaderJSON, _ what: String) throws -> Int {
      guard case .number(let text) = v else {
        throw failure("\(what) is a JSON \(v.kind), expected a non-negative integer")
      }
      if text.hasPrefix("-") { throw failure("\(what) is \(text), must not be negative") }
      if text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) {
        throw failure("\(what) is \(text), expected an integer")
      }
      guard let i = Int(text) else { throw failure("\(what) is \(text), too large") }
      return i
    }
    func intArray(_ key: String) throws -> [Int] {
      let v = try field(key)
      guard case .array(let items) = v else { throw failure("'\(key)' is a JSON \(v.kind), expected an array") }
      return try items.enumerated().map { try nonNegativeInt($1, "\(key)[\($0)]") }
    }

    let dtypeValue = try field("dtype")
    guard case .string(let dtypeName) = dtypeValue else {
      throw failure("'dtype' is a JSON \(dtypeValue.kind), expected a string")
    }
    guard let dtype = DType(safetensorsName: dtypeName) else {
      let known = DType.allCases.map(\.safetensorsName).joined(separator: ", ")
      throw failure("unsupported dtype '\(dtypeName)' (supported: \(known))")
    }
    let shape = try intArray("shape")
    let offsets = try intArray("data_offsets")
    guard offsets.count == 2 else {
      throw failure("data_offsets has \(offsets.count) elements, expected [begin, end]")
    }
    let (begin, end) = (offsets[0], offsets[1])
    guard begin <= end else { throw failure("data_offsets [\(begin), \(end)]: begin is after end") }

    var need = dtype.elementSize
    for d in shape {
      let (product, overflow) = need.multipliedReportingOverflow(by: d)
      guard !overflow else { throw failure("shape \(shape) of \(dtypeName) is too large") }
      need = product
    }
    guard end - begin == need else {
      throw failure("data_offsets [\(begin), \(end)] span \(end - begin) bytes, but shape \(shape) of "
        + "\(dtypeName) needs \(need)")
    }
    return Entry(dtype: dtype, shape: shape, begin: begin, end: end)
  }
}

/// Reading and writing whole safetensors files.
public enum Safetensors {
  public static func load(_ url: URL) throws -> [String: Tensor] {
    try SafetensorsFile(url: url).loadAll()
  }

  /// Writes `tensors` (from any device, contiguous or not) in name order with data 8-byte aligned. The file
  /// is written beside `url` under a temporary name and renamed over it, so `url` never holds a partial file.
  public static func save(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL) throws {
    let path = url.relativePath
    if tensors["__metadata__"] != nil {
      throw SafetensorsError(path: path, tensor: "__metadata__", "the name is reserved for the header's metadata")
    }
    let names = tensors.keys.sorted()

    var parts: [String] = []
    if !metadata.isEmpty {
      let pairs = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
      parts.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
    }
    var offset = 0
    for name in names {
      let t = tensors[name]!
      let size = t.count * t.dtype.elementSize
      let shape = t.shape.map(String.init).joined(separator: ",")
      parts.append("\(jsonString(name)):{\"dtype\":\"\(t.dtype.safetensorsName)\",\"shape\":[\(shape)],"
        + "\"data_offsets\":[\(offset),\(offset + size)]}")
      offset += size
    }
    var header = Array("{\(parts.joined(separator: ","))}".utf8)
    header += repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8)

    let fm = FileManager.default
    let tmp = url.deletingLastPathComponent()
      .appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
    guard fm.createFile(atPath: tmp.path, contents: nil) else {
      throw SafetensorsError(path: path, "cannot create a temporary file at \(tmp.path)")
    }
    var renamed = false
    defer { if !renamed { try? fm.removeItem(at: tmp) } }
    do {
      let handle = try FileHandle(forWritingTo: tmp)
      defer { try? handle.close() }
      let prefix = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
      try handle.write(contentsOf: prefix + header)
      // One tensor's bytes at a time keeps peak memory at the largest tensor, not the whole file.
      for name in names { try handle.write(contentsOf: tensors[name]!.bytes()) }
      try handle.synchronize()
    } catch {
      throw SafetensorsError(path: path, "cannot write \(tmp.path): \(fileErrorReason(error))")
    }
    guard rename(tmp.path, url.path) == 0 else {
      let reason = String(cString: strerror(errno))
      throw SafetensorsError(path: path, "cannot move \(tmp.path) into place: \(reason)")
    }
    renamed = true
  }

  static func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
          + String(scalar.value, radix: 16)
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}

// MARK: - JSON

/// A parsed JSON value. Numbers keep their text so integers are checked exactly, never via Double; objects
/// keep member order.
enum HeaderJSON {
  case object([(key: String, value: HeaderJSON)])
  case array([HeaderJSON])
  case string(String)
  case number(String)
  case bool(Bool)
  case null

  var kind: String {
    switch self {
    case .object: return "object"
    case .array: return "array"
    case .string: return "string"
    case .number: return "number"
    case .bool: return "boolean"
    case .null: return "null"
    }
  }
}

/// A strict RFC 8259 parser. Written by hand because JSONSerialization cannot tell 1 from 1.0 or true on
/// every platform, and silently keeps one of two duplicate keys.
struct HeaderParser {
  struct Failure: Error { let message: String }

  /// Safetensors headers nest three deep; the bound keeps hostile input from exhausting the stack.
  static let maxDepth = 64

  private let bytes: [UInt8]
  private var i = 0

  private init(_ bytes: [UInt8]) { self.bytes = bytes }

  static func parse(_ bytes: [UInt8]) throws(Failure) -> HeaderJSON {
    var p = HeaderParser(bytes)
    let value = try p.value(depth: 0)
    p.skipWhitespace()
    guard p.i == bytes.count else { throw p.fail("unexpected \(p.describeCurrent()) after the top-level value") }
    return value
  }

  private func fail(_ message: String) -> Failure { Failure(message: "\(message) at byte \(i)") }

  private func describeCurrent() -> String {
    guard i < bytes.count else { return "end of header" }
    let c = bytes[i]
    return (0x21...0x7E).contains(c) ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16))"
  }

  private mutating func skipWhitespace() {
    while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
  }

  private mutating func expect(_ c: UInt8) throws(Failure) {
    guard i < bytes.count, bytes[i] == c else {
      throw fail("expected '\(Character(Unicode.Scalar(c)))', found \(describeCurrent())")
    }
    i += 1
  }

  private mutating func value(depth: Int) throws(Failure) -> HeaderJSON {
    guard depth < Self.maxDepth else { throw fail("nesting deeper than \(Self.maxDepth) levels") }
    skipWhitespace()
    guard i < bytes.count else { throw fail("unexpected end of header") }
    switch bytes[i] {
    case UInt8(ascii: "{"): return try object(depth: depth)
    case UInt8(ascii: "["): return try array(depth: depth)
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"): try literal("true"); return .bool(true)
    case UInt8(ascii: "f"): try literal("false"); return .bool(false)
    case UInt8(ascii: "n"): try literal("null"); return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
    default: throw fail("unexpected \(describeCurrent())")
    }
  }

  private mutating func literal(_ word: String) throws(Failure) {
    let w = Array(word.utf8)
    guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else {
      throw fail("unexpected \(describeCurrent())")
    }
    i += w.count
  }

  private mutating func object(depth: Int) throws(Failure) -> HeaderJSON {
    i += 1
    var members: [(key: String, value: HeaderJSON)] = []
    var seen = Set<String>()
    skipWhitespace()
    if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
      i += 1
      return .object(members)
    }
    while true {
      skipWhitespace()
      guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else {
        throw fail("expected a string key, found \(describeCurrent())")
      }
      let key = try string()
      guard seen.insert(key).inserted else { throw fail("duplicate key \"\(key)\"") }
      skipWhitespace()
      try expect(UInt8(ascii: ":"))
      members.append((key, try value(depth: depth + 1)))
      skipWhitespace()
      guard i < bytes.count else { throw fail("unexpected end of header inside an object") }
      switch bytes[i] {
      case UInt8(ascii: ","): i += 1
      case UInt8(ascii: "}"): i += 1; return .object(members)
      default: throw fail("expected ',' or '}', found \(describeCurrent())")
      }
    }
  }

  private mutating func array(depth: Int) throws(Failure) -> HeaderJSON {
    i += 1
    var items: [HeaderJSON] = []
    skipWhitespace()
    if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
      i += 1
      return .array(items)
    }
    while true {
      items.append(try value(depth: depth + 1))
      skipWhitespace()
      guard i < bytes.count else { throw fail("unexpected end of header inside an array") }
      switch bytes[i] {
      case UInt8(ascii: ","): i += 1
      case UInt8(ascii: "]"): i += 1; return .array(items)
      default: throw fail("expected ',' or ']', found \(describeCurrent())")
      }
    }
  }

  private mutating func hex4() throws(Failure) -> UInt32 {
    guard i + 4 <= bytes.count else { throw fail("truncated \\u escape") }
    var v: UInt32 = 0
    for _ in 0..<4 {
      let c = bytes[i]
      let digit: UInt8
      switch c {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
      default: throw fail("invalid hex digit in \\u escape")
      }
      v = v << 4 | UInt32(digit)
      i += 1
    }
    return v
  }

  private mutating func string() throws(Failure) -> String {
    i += 1
    var out: [UInt8] = []
    while true {
      guard i < bytes.count else { throw fail("unterminated string") }
      let c = bytes[i]
      i += 1
      switch c {
      case UInt8(ascii: "\""):
        return String(decoding: out, as: UTF8.self)
      case 0..<0x20:
        i -= 1
        throw fail("unescaped control character in a string")
      case UInt8(ascii: "\\"):
        guard i < bytes.count else { throw fail("unterminated string") }
        let e = bytes[i]
        i += 1
        switch e {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
        case UInt8(ascii: "b"): out.append(0x08)
        case UInt8(ascii: "f"): out.append(0x0C)
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "r"): out.append(0x0D)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "u"):
          var scalar = try hex4()
          if (0xD800..<0xDC00).contains(scalar) {
            guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
              throw fail("unpaired surrogate in \\u escape")
            }
            i += 2
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate in \\u escape") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
          } else if (0xDC00..<0xE000).contains(scalar) {
            throw fail("unpaired surrogate in \\u escape")
          }
          out.append(contentsOf: String(Unicode.Scalar(scalar)!).utf8)
        default:
          i -= 1
          throw fail("invalid escape '\\\(Character(Unicode.Scalar(e)))'")
        }
      default:
        out.append(c)
      }
    }
  }

  private mutating func number() throws(Failure) -> HeaderJSON {
    let start = i
    func isDigit(_ k: Int) -> Bool { k < bytes.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[k]) }
    if bytes[i] == UInt8(ascii: "-") { i += 1 }
    guard isDigit(i) else { throw fail("invalid number") }
    if bytes[i] == UInt8(ascii: "0") { i += 1 } else { while isDigit(i) { i += 1 } }
    if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
      i += 1
      guard isDigit(i) else { throw fail("invalid number") }
      while isDigit(i) { i += 1 }
    }
    if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
      i += 1
      if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
      guard isDigit(i) else { throw fail("invalid number") }
      while isDigit(i) { i += 1 }
    }
    return .number(String(decoding: bytes[start..<i], as: UTF8.self))
  }
}

/// The operating system's reason behind a Foundation file error ("File too large", "No space left on
/// device"), which `localizedDescription` hides behind "The operation could not be completed".
public func fileErrorReason(_ error: Error) -> String {
  let e = error as NSError
  if e.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(e.code))) }
  if let posix = e.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
    return String(cString: strerror(Int32(posix.code)))
  }
  return e.localizedDescription
}
