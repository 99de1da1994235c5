import Foundation
import Testing
@testable import Torch

// MARK: - helpers

private func makeTempDir() throws -> URL {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-safetensors-\(UUID().uuidString)")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  return dir
}

private func withTempDir<R>(_ body: (URL) throws -> R) throws -> R {
  let dir = try makeTempDir()
  defer { try? FileManager.default.removeItem(at: dir) }
  return try body(dir)
}

private func fixtureURL(_ ext: String) throws -> URL {
  try #require(Bundle.module.url(forResource: "reference_all_dtypes", withExtension: ext, subdirectory: "Fixtures"))
}

private struct Reference: Decodable {
  struct Entry: Decodable {
    let dtype: String
    let shape: [Int]
    let values: [Double]
  }
  let metadata: [String: String]
  let tensors: [String: Entry]
}

private func loadReference() throws -> Reference {
  try JSONDecoder().decode(Reference.self, from: Data(contentsOf: fixtureURL("json")))
}

/// Twelve distinct values per dtype, with negatives and halves where the dtype allows.
private func sample(_ dtype: DType) -> Tensor {
  let base = Tensor.arange(0, 12, dtype: .float64)
  switch dtype {
  case .bool: return base.remainder(3).eq(0).reshaped([3, 4])
  case .uint8: return (base * 20).to(.uint8).reshaped([3, 4])
  case .int8, .int16, .int32, .int64: return (base - 5).to(dtype).reshaped([3, 4])
  case .float32, .float64, .bfloat16, .float16: return ((base - 5) * 0.5).to(dtype).reshaped([3, 4])
  }
}

private func le64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

/// A file of the 8-byte length prefix (the header's length unless given), the header, then `data`.
private func writeRaw(_ dir: URL, header: [UInt8], data: [UInt8] = [], declaredLength: UInt64? = nil,
                      name: String = "bad.safetensors") throws -> URL {
  let url = dir.appendingPathComponent(name)
  try Data(le64(declaredLength ?? UInt64(header.count)) + header + data).write(to: url)
  return url
}

private func expectBytesEqual(_ a: Tensor, _ b: Tensor, _ name: String) {
  #expect(a.dtype == b.dtype, "\(name)")
  #expect(a.shape == b.shape, "\(name)")
  #expect(a.bytes() == b.bytes(), "\(name)")
}

// MARK: - round trips

@Test(arguments: DType.allCases)
func safetensorsRoundTripPreservesBytes(dtype: DType) throws {
  try withTempDir { dir in
    let url = dir.appendingPathComponent("one.safetensors")
    let t = sample(dtype)
    try Safetensors.save(["x": t], to: url)
    let file = try SafetensorsFile(url: url)
    #expect(file.names == ["x"])
    #expect(file.metadata.isEmpty)
    #expect(file.info("x")?.dtype == dtype)
    #expect(file.info("x")?.shape == [3, 4])
    expectBytesEqual(try file.tensor("x"), t, "x")
  }
}

@Test func safetensorsRoundTripManyTensorsWithMetadata() throws {
  try withTempDir { dir in
    var tensors: [String: Tensor] = [:]
    for d in DType.allCases { tensors["layer.\(d)"] = sample(d) }
    let transposed = sample(.float32).transposed(0, 1)
    #expect(!transposed.isContiguous)
    tensors["transposed"] = transposed
    tensors["empty"] = Tensor.zeros([0, 5], dtype: .int32)
    tensors["scalar"] = Tensor.scalar(-3.25, dtype: .float64)
    tensors["ünï \"quoted\"\n"] = Tensor([1, 2, 3] as [Int16])
    let metadata = ["format": "pt", "note": "tab\there \"q\" \\ ü \u{1}"]

    let url = dir.appendingPathComponent("many.safetensors")
    try Safetensors.save(tensors, metadata: metadata, to: url)
    let file = try SafetensorsFile(url: url)
    #expect(file.names == tensors.keys.sorted())
    #expect(file.metadata == metadata)
    let loaded = try Safetensors.load(url)
    #expect(Set(loaded.keys) == Set(tensors.keys))
    for (name, t) in tensors {
      let back = try #require(loaded[name], "\(name)")
      expectBytesEqual(back, t, name)
    }
    #expect(loaded["transposed"]?.shape == [4, 3])
    #expect(loaded["transposed"]?.toArray(Float.self) == transposed.contiguous().toArray(Float.self))
    #expect(loaded["scalar"]?.shape == [])
    #expect(loaded["scalar"]?.item() == -3.25)
  }
}

@Test func safetensorsWriterLayout() throws {
  try withTempDir { dir in
    let url = dir.appendingPathComponent("layout.safetensors")
    try Safetensors.save(["b": Tensor([1, 2, 3] as [Int8]), "a": Tensor([1.5] as [Float])], to: url)
    let bytes = [UInt8](try Data(contentsOf: url))
    let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
    #expect((8 + n) % 8 == 0)
    #expect(bytes.count == 8 + n + 4 + 3)
    let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
    #expect(header == #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
      + #""b":{"dtype":"I8","shape":[3],"data_offsets":[4,7]}}"# + String(repeating: " ", count: n - 106))
    #expect(Array(bytes[(8 + n)...]) == [0x00, 0x00, 0xC0, 0x3F, 1, 2, 3])
  }
}

// MARK: - interoperability with the Python package

@Test func safetensorsReadsPythonReference() throws {
  let reference = try loadReference()
  let file = try SafetensorsFile(url: fixtureURL("safetensors"))
  #expect(file.names == reference.tensors.keys.sorted())
  #expect(file.metadata == reference.metadata)
  #expect(Set(file.names.compactMap { file.info($0)?.dtype }) == Set(DType.allCases))
  for (name, expected) in reference.tensors {
    let info = try #require(file.info(name), "\(name)")
    #expect(info.dtype.safetensorsName == expected.dtype, "\(name)")
    #expect(info.shape == expected.shape, "\(name)")
    let t = try file.tensor(name)
    #expect(t.dtype == info.dtype && t.shape == expected.shape, "\(name)")
    #expect(t.toArray(Double.self) == expected.values, "\(name)")
  }
}

@Test func safetensorsSwiftWriterReproducesPythonTensors() throws {
  let reference = try SafetensorsFile(url: fixtureURL("safetensors"))
  let tensors = try reference.loadAll()
  try withTempDir { dir in
    let url = dir.appendingPathComponent("rewritten.safetensors")
    try Safetensors.save(tensors, metadata: reference.metadata, to: url)
    let again = try SafetensorsFile(url: url)
    #expect(again.names == reference.names)
    #expect(again.metadata == reference.metadata)
    for name in reference.names { expectBytesEqual(try again.tensor(name), try reference.tensor(name), name) }
    // Same data section size as the Python file; only the order of tensors within it differs.
    let bytes = [UInt8](try Data(contentsOf: url))
    let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
    #expect(bytes.count - 8 - n == 187)
  }
}

// MARK: - malformed files

private func expectSafetensorsError(_ url: URL, tensor: String? = nil, mentions fragments: [String],
                                    sourceLocation: SourceLocation = #_sourceLocation) {
  let error = #expect(throws: SafetensorsError.self, sourceLocation: sourceLocation) {
    _ = try SafetensorsFile(url: url)
  }
  guard let error else { return }
  #expect(error.tensor == tensor, "\(error)", sourceLocation: sourceLocation)
  #expect(error.path == url.relativePath, sourceLocation: sourceLocation)
  for f in fragments {
    #expect(error.description.contains(f), "'\(f)' not in: \(error)", sourceLocation: sourceLocation)
  }
}

struct MalformedHeader: Sendable, CustomTestStringConvertible {
  let label: String
  let header: String
  let data: Int
  let tensor: String?
  let fragments: [String]
  var testDescription: String { label }
}

private let malformedHeaders: [MalformedHeader] = [
  .init(label: "not JSON", header: "this is not json", data: 0, tensor: nil, fragments: ["not valid JSON"]),
  .init(label: "truncated JSON", header: #"{"a":{"dtype":"F32""#, data: 0, tensor: nil,
        fragments: ["not valid JSON", "end of header"]),
  .init(label: "top-level array", header: "[1,2]", data: 0, tensor: nil, fragments: ["array", "expected an object"]),
  .init(label: "trailing garbage", header: "{} x", data: 0, tensor: nil, fragments: ["'x'"]),
  .init(label: "duplicate key", header: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"#
        + #""a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: 1, tensor: nil,
        fragments: ["duplicate key \"a\""]),
  .init(label: "deep nesting", header: String(repeating: "[", count: 100_000), data: 0, tensor: nil,
        fragments: ["nesting"]),
  .init(label: "overlap", header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
        + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: 12, tensor: "b",
        fragments: ["overlap", "'a'", "[4, 12]"]),
  .init(label: "overlap inside a larger range", header: #"{"big":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},"#
        + #""c":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"#
        + #""d":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}}"#, data: 10, tensor: "c",
        fragments: ["overlap", "'big'"]),
  .init(label: "unknown dtype", header: #"{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#, data: 2,
        tensor: "w", fragments: ["unsupported dtype 'F8_E4M3'", "BF16"]),
  .init(label: "dtype not a string", header: #"{"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}"#, data: 8,
        tensor: "w", fragments: ["'dtype'", "number"]),
  .init(label: "missing dtype", header: #"{"w":{"shape":[2],"data_offsets":[0,8]}}"#, data: 8, tensor: "w",
        fragments: ["missing 'dtype'"]),
  .init(label: "size mismatch", header: #"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#, data: 24,
        tensor: "w", fragments: ["20 bytes", "[2, 3]", "24"]),
  .init(label: "negative shape", header: #"{"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,0]}}"#, data: 0,
        tensor: "w", fragments: ["shape[0]", "-1", "negative"]),
  .init(label: "fractional shape", header: #"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: 4,
        tensor: "w", fragments: ["shape[0]", "1.5", "integer"]),
  .init(label: "exponent shape", header: #"{"w":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}"#, data: 4,
        tensor: "w", fragments: ["shape[0]", "1e0", "integer"]),
  .init(label: "string shape", header: #"{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#, data: 8,
        tensor: "w", fragments: ["shape[0]", "string"]),
  .init(label: "huge shape", header: #"{"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
        data: 8, tensor: "w", fragments: ["too large"]),
  .init(label: "offset beyond Int",
        header: #"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999]}}"#, data: 1,
        tensor: "w", fragments: ["data_offsets[1]", "too large"]),
  .init(label: "negative offset", header: #"{"w":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}"#, data: 1,
        tensor: "w", fragments: ["data_offsets[0]", "negative"]),
  .init(label: "reversed offsets", header: #"{"w":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}}"#, data: 4,
        tensor: "w", fragments: ["begin is after end"]),
  .init(label: "three offsets", header: #"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}"#, data: 2,
        tensor: "w", fragments: ["[begin, end]"]),
  .init(label: "offsets past data", header: #"{"w":{"dtype":"F32","shape":[25],"data_offsets":[0,100]}}"#, data: 64,
        tensor: "w", fragments: ["data_offsets [0, 100] exceed the data section (64 bytes)"]),
  .init(label: "entry not an object", header: #"{"w":[1]}"#, data: 0, tensor: "w", fragments: ["array"]),
  .init(label: "metadata not strings", header: #"{"__metadata__":{"epoch":3}}"#, data: 0, tensor: nil,
        fragments: ["__metadata__", "'epoch'", "number"]),
  .init(label: "bad escape", header: #"{"a\q":1}"#, data: 0, tensor: nil, fragments: ["invalid escape"]),
  .init(label: "lone surrogate", header: #"{"\ud800":1}"#, data: 0, tensor: nil, fragments: ["surrogate"]),
]

@Test(arguments: malformedHeaders)
func safetensorsRejectsMalformedHeader(_ c: MalformedHeader) throws {
  try withTempDir { dir in
    let url = try writeRaw(dir, header: Array(c.header.utf8), data: [UInt8](repeating: 7, count: c.data))
    expectSafetensorsError(url, tensor: c.tensor, mentions: c.fragments)
  }
}

@Test func safetensorsAcceptsEdgeCasesOfTheFormat() throws {
  try withTempDir { dir in
    // Escapes in names, whitespace, zero-byte tensors sharing an offset, null metadata, and holes in the data.
    let header = #" { "__metadata__" : null, "\u00e9\ud83d\ude00\n" : {"dtype":"U8","shape":[2],"#
      + #""data_offsets":[1,3]}, "z1":{"dtype":"F32","shape":[0],"data_offsets":[1,1]},"#
      + #" "z2":{"dtype":"BOOL","shape":[3,0],"data_offsets":[1,1]} }  "#
    let url = try writeRaw(dir, header: Array(header.utf8), data: [9, 4, 5, 9])
    let file = try SafetensorsFile(url: url)
    #expect(file.metadata.isEmpty)
    #expect(file.names == ["z1", "z2", "é😀\n"].sorted())
    #expect(try file.tensor("é😀\n").toArray(UInt8.self) == [4, 5])
    #expect(try file.tensor("z2").shape == [3, 0])
  }
}

@Test func safetensorsRejectsBadUTF8() throws {
  try withTempDir { dir in
    let url = try writeRaw(dir, header: Array("{\"".utf8) + [0xFF, 0xFE] + Array("\":1}".utf8))
    expectSafetensorsError(url, mentions: ["UTF-8"])
  }
}

@Test func safetensorsRejectsTruncatedFile() throws {
  let full = try Data(contentsOf: fixtureURL("safetensors"))
  try withTempDir { dir in
    let url = dir.appendingPathComponent("truncated.safetensors")
    try full.prefix(full.count - 10).write(to: url)
    let error = #expect(throws: SafetensorsError.self) { _ = try SafetensorsFile(url: url) }
    #expect(error?.tensor != nil)
    #expect(error?.message.contains("exceed the data section") == true, "\(String(describing: error))")

    // Cut inside the header: the declared length no longer fits.
    try full.prefix(100).write(to: url)
    expectSafetensorsError(url, mentions: ["header length 808", "92 bytes", "truncated"])
  }
}

@Test func safetensorsRejectsTinyFiles() throws {
  try withTempDir { dir in
    for count in [0, 3, 7] {
      let url = dir.appendingPathComponent("tiny\(count).safetensors")
      try Data([UInt8](repeating: 1, count: count)).write(to: url)
      expectSafetensorsError(url, mentions: ["\(count) bytes", "too short"])
    }
    // Exactly the prefix, declaring an empty header: not JSON.
    let url = try writeRaw(dir, header: [])
    expectSafetensorsError(url, mentions: ["not valid JSON"])
  }
}

@Test func safetensorsRejectsHugeHeaderLengths() throws {
  try withTempDir { dir in
    let url = try writeRaw(dir, header: Array("{}".utf8), declaredLength: 1 << 60)
    expectSafetensorsError(url, mentions: ["header length 1152921504606846976", "exceeds"])
    let max = try writeRaw(dir, header: Array("{}".utf8), declaredLength: .max, name: "max.safetensors")
    expectSafetensorsError(max, mentions: ["header length 18446744073709551615"])

    // A header length past the 100 MB limit in a file that is long enough: a sparse file, so it costs no disk.
    let sparse = try writeRaw(dir, header: Array("{}".utf8), declaredLength: 100_000_001, name: "sparse.safetensors")
    let handle = try FileHandle(forWritingTo: sparse)
    try handle.truncate(atOffset: 100_000_100)
    try handle.close()
    expectSafetensorsError(sparse, mentions: ["header length 100000001", "limit"])
  }
}

@Test func safetensorsMissingFileAndTensor() throws {
  try withTempDir { dir in
    expectSafetensorsError(dir.appendingPathComponent("absent.safetensors"), mentions: ["cannot read"])
    let url = dir.appendingPathComponent("ok.safetensors")
    try Safetensors.save(["a": Tensor([1] as [Int32])], to: url)
    let error = #expect(throws: SafetensorsError.self) { _ = try SafetensorsFile(url: url).tensor("b") }
    #expect(error?.tensor == "b")
    #expect(error?.message.contains("no such tensor") == true)
  }
}

// MARK: - atomic save

private func directoryEntries(_ dir: URL) throws -> [String] {
  try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
}

@Test func safetensorsSaveLeavesNoTemporaryFiles() throws {
  try withTempDir { dir in
    let url = dir.appendingPathComponent("model.safetensors")
    try Safetensors.save(["a": sample(.float32)], metadata: ["step": "1"], to: url)
    #expect(try directoryEntries(dir) == ["model.safetensors"])
    // Overwriting replaces the file whole.
    try Safetensors.save(["b": sample(.int64)], metadata: ["step": "2"], to: url)
    #expect(try directoryEntries(dir) == ["model.safetensors"])
    let file = try SafetensorsFile(url: url)
    #expect(file.names == ["b"])
    #expect(file.metadata == ["step": "2"])
  }
}

@Test func safetensorsFailedSaveKeepsTheOldFile() throws {
  try withTempDir { dir in
    let url = dir.appendingPathComponent("model.safetensors")
    try Safetensors.save(["a": sample(.float32)], to: url)
    let before = try Data(contentsOf: url)
    let error = #expect(throws: SafetensorsError.self) {
      try Safetensors.save(["__metadata__": sample(.float32)], to: url)
    }
    #expect(error?.tensor == "__metadata__")
    #expect(try Data(contentsOf: url) == before)
    #expect(try directoryEntries(dir) == ["model.safetensors"])

    let missingDir = dir.appendingPathComponent("no/such/dir/model.safetensors")
    #expect(throws: SafetensorsError.self) { try Safetensors.save(["a": sample(.float32)], to: missingDir) }
    #expect(try directoryEntries(dir) == ["model.safetensors"])
  }
}
