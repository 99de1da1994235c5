import Foundation
import Testing
@testable import LM

/// Inputs `make fuzz` found that crashed a parser, each kept as a fixture (Fixtures/*/fuzz/) and now
/// refused with an error that names the key.
enum FuzzFixtures {
  static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  static func data(_ path: String) throws -> Data { try Data(contentsOf: root.appendingPathComponent(path)) }
}

/// gguf: a llama file whose block count is far beyond its tensor table made the loader build a name map
/// for every claimed layer and run out of memory.
@Test func aGGUFBlockCountTheTensorTableCannotHoldIsRefused() throws {
  let url = FuzzFixtures.root.appendingPathComponent("gguf/fuzz/huge-block-count.gguf")
  let file = try GGUFFile(data: try Data(contentsOf: url), url: url)
  do {
    _ = try GGUFCheckpoint(file: file)
    Issue.record("the fuzzer's file was accepted")
  } catch {
    #expect("\(error)".contains("block_count") && "\(error)".contains("tensors"), "\(error)")
  }
}

/// tokenizer: an added token with an id in the trillions made the reader allocate an id table that long.
/// (The harness's input is tokenizer.json, NUL, text, NUL, tokenizer_config.json.)
@Test func aTokenIdFarBeyondTheVocabularyIsRefused() throws {
  let parts = try FuzzFixtures.data("tokenizers/fuzz/huge-token-id.bin").split(separator: 0, maxSplits: 2,
                                                                               omittingEmptySubsequences: false)
  do {
    _ = try BPETokenizer(tokenizerJSON: Data(parts[0]), config: parts.count > 2 ? Data(parts[2]) : nil)
    Issue.record("the fuzzer's tokenizer was accepted")
  } catch {
    #expect("\(error)".contains("token id") && "\(error)".contains("far beyond"), "\(error)")
  }
}

/// config: `num_attention_heads: 0` beside a `head_dim` divided by zero before the sizes were checked.
@Test func zeroAttentionHeadsWithAHeadDimIsRefused() throws {
  do {
    _ = try ModelConfig(json: try FuzzFixtures.data("models/fuzz/zero-heads-with-head-dim.json"))
    Issue.record("the fuzzer's config was accepted")
  } catch {
    #expect("\(error)".contains("sizes must be positive"), "\(error)")
  }
}

/// config: an integer beyond what a Double holds exactly (`"n_embd": 3.3e37`) trapped converting to Int.
@Test func anIntegerTooLargeForAnyModelIsRefusedByKey() throws {
  do {
    _ = try ModelConfig(json: try FuzzFixtures.data("models/fuzz/huge-integer.json"))
    Issue.record("the fuzzer's config was accepted")
  } catch {
    #expect("\(error)".contains("should be an integer (at most 2^53"), "\(error)")
  }
}
