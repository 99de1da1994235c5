import Foundation
import Testing
import Torch
@testable import LM

/// GGUF reading, dequantisation and conversion, checked against files written by
/// scripts/make_gguf_fixtures.py (the `gguf` package's numpy dequantisation, a plain PyTorch Llama
/// forward, Hugging Face transformers 4.40 and tokenizers 0.19 on the converted directory).
enum GGUFFixtures {
  static let directory = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("gguf")
  static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
  static let converted = repoRoot.appendingPathComponent("models/smollm2-135m-instruct")
  static var ggufFile: URL {
    let cache = ProcessInfo.processInfo.environment["SHATTER_CACHE"]
      ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/shatter").path
    return URL(fileURLWithPath: cache).appendingPathComponent("SmolLM2-135M-Instruct.Q4_1.gguf")
  }

  struct Missing: Error, CustomStringConvertible {
    let description: String
  }

  /// The real model's files, or an error that says how to get them (make test runs `make model` first).
  static func requireModel() throws -> (gguf: URL, converted: URL) {
    let fm = FileManager.default
    guard fm.fileExists(atPath: ggufFile.path), fm.fileExists(atPath: converted.appendingPathComponent("model.safetensors").path)
    else {
      throw Missing(description: "SmolLM2-135M-Instruct is not on this machine (expected \(ggufFile.path) and "
        + "\(converted.path)); run `make model`")
    }
    return (ggufFile, converted)
  }

  static func json<T: Decodable>(_ name: String, as: T.Type) throws -> T {
    try JSONDecoder().decode(T.self, from: Data(contentsOf: directory.appendingPathComponent(name)))
  }
}

// MARK: - numerics

struct QuantTypeExpectation: Decodable {
  let type: String
  let dims: [Int]
  let values: [Double]
}

@Test func everyQuantTypeDequantisesLikeGGUFPy() throws {
  let file = try GGUFFile(url: GGUFFixtures.directory.appendingPathComponent("quant_types.gguf"))
  let expected = try GGUFFixtures.json("quant_types.json", as: [String: QuantTypeExpectation].self)
  #expect(Set(expected.values.map(\.type)) == Set(GGMLType.supported.map(\.description)))
  for (name, e) in expected.sorted(by: { $0.key < $1.key }) {
    let info = try #require(file.info(name), "\(name) is missing")
    #expect(info.type.description == e.type)
    #expect(info.dims == e.dims)
    let values = try file.floats(name)
    #expect(values.count == e.values.count)
    let worst = zip(values, e.values).map { Swift.abs(Double($0) - $1) }.max() ?? 0
    #expect(worst <= 1e-6, "\(name) (\(e.type)): max |Δ| \(worst)")
    let t = try file.tensor(name)
    #expect(t.shape == [e.dims[1], e.dims[0]])
  }
}

@Test func everyMetadataTypeAndTheAlignmentAreRead() throws {
  let file = try GGUFFile(url: GGUFFixtures.directory.appendingPathComponent("quant_types.gguf"))
  #expect(file.version == 3)
  #expect(file.alignment == 64)
  #expect(file.dataOffset % 64 == 0)
  #expect(file.tensors.allSatisfy { $0.offset % 64 == 0 })
  let m = file.metadata
  #expect(m["test.u8"] == .uint8(200))
  #expect(m["test.i8"] == .int8(-100))
  #expect(m["test.u16"] == .uint16(60000))
  #expect(m["test.i16"] == .int16(-30000))
  #expect(m["test.u32"] == .uint32(4_000_000_000))
  #expect(m["test.i32"] == .int32(-2_000_000_000))
  #expect(m["test.u64"] == .uint64(1 << 63 + 5))
  #expect(m["test.i64"] == .int64(-(1 << 62)))
  #expect(m["test.f32"] == .float32(0.25))
  #expect(m["test.f64"] == .float64(-1e100))
  #expect(m["test.bool"] == .bool(true))
  #expect(m["test.string"] == .string("héllo ✓"))
  #expect(m["test.array_i32"] == .array(.int32, [.int32(1), .int32(-2), .int32(3)]))
  #expect(m["test.array_str"] == .array(.string, [.string("a"), .string(""), .string("ü")]))
  #expect(m["test.array_nested"]?.array?.count == 2)
  #expect(m["test.array_nested"]?.array?.first?.array?.compactMap(\.int) == [1, 2])
  #expect(file.keys.first == "general.architecture")
}

struct TensorStats: Decodable {
  struct Entry: Decodable {
    let name: String
    let type: String
    let dims: [Int]
    let count: Int
    let sum: Double
    let sum_squares: Double
    let indices: [Int]
    let values: [Double]
  }
  let tensors: [Entry]
}

@Test func everySmolLM2TensorDequantisesLikeGGUFPy() throws {
  let (url, _) = try GGUFFixtures.requireModel()
  let file = try GGUFFile(url: url)
  let stats = try GGUFFixtures.json("smollm2_tensors.json", as: TensorStats.self)
  #expect(stats.tensors.count == file.tensors.count)
  #expect(file.tensors.count == 272)
  for e in stats.tensors {
    let info = try #require(file.info(e.name))
    #expect(info.type.description == e.type && info.dims == e.dims, "\(e.name)")
    let v = try file.floats(e.name)
    #expect(v.count == e.count)
    var sum = 0.0, squares = 0.0
    for x in v {
      sum += Double(x)
      squares += Double(x) * Double(x)
    }
    #expect(Swift.abs(sum - e.sum) <= 1e-6 * Swift.max(1, Swift.abs(e.sum)), "\(e.name): sum \(sum) vs \(e.sum)")
    #expect(Swift.abs(squares - e.sum_squares) <= 1e-6 * Swift.max(1, e.sum_squares), "\(e.name): sum of squares")
    for (i, want) in zip(e.indices, e.values) {
      #expect(Swift.abs(Double(v[i]) - want) <= 1e-6, "\(e.name)[\(i)] = \(v[i]), gguf-py \(want)")
    }
  }
}

@Test func dequantisingTheWholeModelIsQuick() throws {
  let (url, _) = try GGUFFixtures.requireModel()
  let file = try GGUFFile(url: url)
  let start = DispatchTime.now().uptimeNanoseconds
  var total = 0
  for t in file.tensors { total += try file.floats(t.name).count }
  let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
  print("dequantised \(total) values of \(file.tensors.count) tensors in \(String(format: "%.2f", seconds)) s")
  #expect(total > 130_000_000)
  // A debug build is an order of magnitude slower than release; both stay well inside this bound.
  #expect(seconds < 30)
}

struct LogProbFixture: Decodable {
  let texts: [String]
  let ids: [[Int]]
  let plain_torch_float64: [[Double]]
  let transformers_4_40: [[Double]]
}

@Test func scoresMatchAPlainLlamaForwardOnTheGGUFWeights() throws {
  let (url, _) = try GGUFFixtures.requireModel()
  let fixture = try GGUFFixtures.json("smollm2_logprobs.json", as: LogProbFixture.self)
  let model = try GGUFCheckpoint(url: url).loadModel()
  for (ids, want) in zip(fixture.ids, fixture.plain_torch_float64) {
    let got = withoutGradients { model.score(PaddedBatch([ids], padId: 0)).tokenLogProbs }.toArray(Double.self)
    #expect(maxAbsDiff(got, want) < 1e-4, "max |Δ log p| \(maxAbsDiff(got, want))")
  }
}

@Test func theConvertedDirectoryScoresLikeTransformers() throws {
  let (_, dir) = try GGUFFixtures.requireModel()
  let fixture = try GGUFFixtures.json("smollm2_logprobs.json", as: LogProbFixture.self)
  let model = try Checkpoint.loadModel(from: dir)
  #expect(model.config.family == .llama && model.config.layers == 30 && model.config.tieEmbeddings)
  #expect(model.config.heads == 9 && model.config.kvHeads == 3 && model.config.ropeTheta == 100_000)
  let tokenizer = try BPETokenizer(directory: dir)
  for (text, (ids, want)) in zip(fixture.texts, zip(fixture.ids, fixture.transformers_4_40)) {
    #expect(tokenizer.encode(text, addSpecialTokens: true) == ids)
    let got = withoutGradients { model.score(PaddedBatch([ids], padId: 0)).tokenLogProbs }.toArray(Double.self)
    #expect(maxAbsDiff(got, want) < 1e-4, "max |Δ log p| \(maxAbsDiff(got, want))")
  }
}

struct TokenizerCorpus: Decodable {
  let texts: [String]
  let ids: [[Int]]
}

@Test func theConvertedTokenizerEncodesLikeHuggingFaceTokenizers() throws {
  let (url, dir) = try GGUFFixtures.requireModel()
  let corpus = try GGUFFixtures.json("smollm2_tokenizer.json", as: TokenizerCorpus.self)
  let fromDirectory = try BPETokenizer(directory: dir)
  let fromGGUF = try GGUFCheckpoint(url: url).tokenizer()
  #expect(fromDirectory.bosTokenId == 1 && fromDirectory.eosTokenId == 2 && fromDirectory.padTokenId == 2)
  // SmolLM2's template opens with its own system turn when the conversation has none (ChatTemplateTests).
  #expect(fromDirectory.chatTemplate == .chatMLWithDefaultSystem("You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
  for (text, ids) in zip(corpus.texts, corpus.ids) {
    #expect(fromDirectory.encode(text, addSpecialTokens: true) == ids, "\(text.debugDescription)")
    #expect(fromGGUF.encode(text, addSpecialTokens: true) == ids, "\(text.debugDescription)")
    if !text.isEmpty { #expect(fromDirectory.decode(ids) == text, "round trip of \(text.debugDescription)") }
  }
}

@Test func digitsPreTokenizerIsolatesEveryNumericCharacter() {
  func pieces(_ s: String, individual: Bool) -> [String] {
    PreTokenizerStep.splitDigits(ArraySlice(Array(s.utf16)), individual: individual)
      .map { String(decoding: $0, as: UTF16.self) }
  }
  #expect(pieces("ab12c٣½", individual: true) == ["ab", "1", "2", "c", "٣", "½"])
  #expect(pieces("ab12c٣½😀9", individual: false) == ["ab", "12", "c", "٣½", "😀", "9"])
  #expect(pieces("", individual: true) == [])
}

@Test func unpermuteInvertsLlamaCppsPermutation() {
  // llama.cpp: rows (h, 2, d/2) → (h, d/2, 2).
  let heads = 3, d = 4, cols = 2
  let original = Tensor((0..<(heads * d * cols)).map { Float($0) }, shape: [heads * d, cols])
  let permuted = original.view([heads, 2, d / 2, cols]).transposed(1, 2).reshaped([heads * d, cols])
  #expect(GGUFCheckpoint.unpermute(permuted, heads: heads).toArray(Float.self) == original.toArray(Float.self))
}

// MARK: - malformed files

/// Builds GGUF bytes by hand so each test can break exactly one thing.
struct GGUFBuilder {
  var magic = Array("GGUF".utf8)
  var version: UInt32 = 3
  var kv: [(String, UInt32, [UInt8])] = []
  var tensors: [(name: String, dims: [UInt64], type: UInt32, offset: UInt64)] = []
  var data: [UInt8] = []
  var tensorCountOverride: UInt64?
  var kvCountOverride: UInt64?
  var alignment = 32

  static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
  static func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }

  mutating func add(_ key: String, uint32 v: UInt32) { kv.append((key, 4, Self.le(v))) }
  mutating func add(_ key: String, string v: String) { kv.append((key, 8, Self.str(v))) }

  var bytes: [UInt8] {
    var out = magic + Self.le(version) + Self.le(tensorCountOverride ?? UInt64(tensors.count))
      + Self.le(kvCountOverride ?? UInt64(kv.count))
    for (k, t, v) in kv { out += Self.str(k) + Self.le(t) + v }
    for t in tensors {
      out += Self.str(t.name) + Self.le(UInt32(t.dims.count))
      for d in t.dims { out += Self.le(d) }
      out += Self.le(t.type) + Self.le(t.offset)
    }
    while out.count % alignment != 0 { out.append(0) }
    return out + data
  }

  /// A valid file: one metadata string and one 8×2 F32 tensor.
  static func valid() -> GGUFBuilder {
    var b = GGUFBuilder()
    b.add("general.architecture", string: "llama")
    b.tensors = [("w", [8, 2], 0, 0)]
    b.data = (0..<16).flatMap { le(Float($0).bitPattern) }
    return b
  }
}

func openGGUF(_ bytes: [UInt8]) throws -> GGUFFile {
  try GGUFFile(data: Data(bytes), url: URL(fileURLWithPath: "test.gguf"))
}

func ggufError(_ bytes: [UInt8]) -> String? {
  do {
    _ = try openGGUF(bytes)
    return nil
  } catch {
    return "\(error)"
  }
}

@Test func aHandBuiltFileReads() throws {
  let file = try openGGUF(GGUFBuilder.valid().bytes)
  #expect(file.tensors.map(\.name) == ["w"])
  #expect(try file.tensor("w").shape == [2, 8])
  #expect(try file.floats("w") == (0..<16).map(Float.init))
  #expect(try file.optionalString("general.architecture") == "llama")
}

@Test func malformedFilesThrowErrorsNamingTheProblem() {
  var b = GGUFBuilder.valid()
  b.magic = Array("GGML".utf8)
  #expect(ggufError(b.bytes)?.contains("bad magic") == true)

  b = .valid(); b.version = 1
  #expect(ggufError(b.bytes)?.contains("version 1") == true)

  b = .valid(); b.version = UInt32(3).byteSwapped
  #expect(ggufError(b.bytes)?.contains("big-endian") == true)

  b = .valid(); b.kv.append(("bad.type", 13, [0]))
  #expect(ggufError(b.bytes)?.contains("key 'bad.type': unknown value type 13") == true)

  b = .valid(); b.kv.append(("bad.bool", 7, [2]))
  #expect(ggufError(b.bytes)?.contains("key 'bad.bool'") == true)

  b = .valid(); b.kv.append(("huge.array", 9, GGUFBuilder.le(UInt32(4)) + GGUFBuilder.le(UInt64.max)))
  #expect(ggufError(b.bytes)?.contains("key 'huge.array': array claims") == true)

  b = .valid(); b.kv.append(("huge.string", 8, GGUFBuilder.le(UInt64(1) << 60)))
  #expect(ggufError(b.bytes)?.contains("key 'huge.string'") == true)

  b = .valid(); b.add("general.architecture", string: "again")
  #expect(ggufError(b.bytes)?.contains("appears twice") == true)

  b = .valid(); b.add("general.alignment", uint32: 24)
  #expect(ggufError(b.bytes)?.contains("general.alignment") == true)

  b = .valid(); b.tensors[0].type = 99
  #expect(ggufError(b.bytes)?.contains("tensor 'w': unknown tensor type 99") == true)

  b = .valid(); b.tensors[0].type = GGMLType.q2_K.rawValue
  #expect(ggufError(b.bytes)?.contains("tensor 'w': type Q2_K is not supported") == true)

  b = .valid(); b.tensors[0].type = GGMLType.q8_0.rawValue
  #expect(ggufError(b.bytes)?.contains("not a multiple of Q8_0's block") == true)

  b = .valid(); b.tensors[0].offset = 32
  #expect(ggufError(b.bytes)?.contains("tensor 'w': data [32, 96) lies outside") == true)

  b = .valid(); b.tensors[0].offset = 4
  #expect(ggufError(b.bytes)?.contains("not a multiple of the alignment") == true)

  b = .valid(); b.tensors[0].offset = UInt64.max
  #expect(ggufError(b.bytes)?.contains("tensor 'w'") == true)

  b = .valid(); b.tensors[0].dims = [8, 2, 1, 1, 1]
  #expect(ggufError(b.bytes)?.contains("5 dimensions") == true)

  b = .valid(); b.tensors[0].dims = [1 << 31, 1 << 31]
  #expect(ggufError(b.bytes)?.contains("tensor 'w'") == true)

  b = .valid(); b.tensors.append(("w", [8], 0, 64))
  #expect(ggufError(b.bytes)?.contains("appears twice in the tensor table") == true)

  b = .valid(); b.tensors.append(("v", [8], 0, 32)); b.data += Array(repeating: 0, count: 32)
  #expect(ggufError(b.bytes)?.contains("overlaps tensor") == true)

  b = .valid(); b.tensorCountOverride = 1 << 40
  #expect(ggufError(b.bytes)?.contains("tensor count") == true)

  b = .valid(); b.kvCountOverride = 1 << 40
  #expect(ggufError(b.bytes)?.contains("metadata count") == true)
}

@Test func everyTruncationOfAFileIsAnErrorNotACrash() {
  let bytes = GGUFBuilder.valid().bytes
  for n in 0..<bytes.count {
    let message = ggufError(Array(bytes.prefix(n)))
    #expect(message != nil, "a file cut to \(n) of \(bytes.count) bytes was accepted")
  }
}

@Test func unsupportedModelsAreRefusedByName() throws {
  var b = GGUFBuilder.valid()
  b.kv = []
  b.add("general.architecture", string: "mamba")
  let file = try openGGUF(b.bytes)
  #expect(throws: GGUFError.self) { try GGUFCheckpoint(file: file) }
  do {
    _ = try GGUFCheckpoint(file: file)
  } catch {
    #expect("\(error)".contains("key 'general.architecture'") && "\(error)".contains("mamba"))
  }
  b.kv = []
  b.add("general.architecture", string: "llama")
  do {
    _ = try GGUFCheckpoint(file: try openGGUF(b.bytes))
    Issue.record("a llama file without hyper-parameters was accepted")
  } catch {
    #expect("\(error)".contains("key 'llama.embedding_length': missing"))
  }
}

