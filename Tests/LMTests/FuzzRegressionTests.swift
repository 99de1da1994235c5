import Foundation
import Testing
@testable import LM

/// Inputs `make fuzz` found that crashed a parser, each kept as a fixture (Fixtures/*/fuzz/) and now
/// refused with an error that names the key.
enum FuzzFixtures {
  static let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
  static func data(_ path: String) throws -> Data { try Data(contentsOf: root.appendingPathComponent(path)) }

  /// `read` must throw, and its message must contain every one of `phrases`.
  static func expectRefused(_ phrases: [String], sourceLocation: SourceLocation = #_sourceLocation, _ read: () throws -> Void) {
    do {
      try read()
      Issue.record("the fuzzer's input was accepted", sourceLocation: sourceLocation)
    } catch {
      #expect(phrases.allSatisfy { "\(error)".contains($0) }, "\(error)", sourceLocation: sourceLocation)
    }
  }
}

/// gguf: a llama file whose block count is far beyond its tensor table made the loader build a name map
/// for every claimed layer and run out of memory.
@Test func aGGUFBlockCountTheTensorTableCannotHoldIsRefused() throws {
  let url = FuzzFixtures.root.appendingPathComponent("gguf/fuzz/huge-block-count.gguf")
  let file = try GGUFFile(data: try Data(contentsOf: url), url: url)
  FuzzFixtures.expectRefused(["block_count", "tensors"]) { _ = try GGUFCheckpoint(file: file) }
}

/// tokenizer: an added token with an id in the trillions made the reader allocate an id table that long.
/// (The harness's input is tokenizer.json, NUL, text, NUL, tokenizer_config.json.)
@Test func aTokenIdFarBeyondTheVocabularyIsRefused() throws {
  let parts = try FuzzFixtures.data("tokenizers/fuzz/huge-token-id.bin").split(separator: 0, maxSplits: 2,
                                                                               omittingEmptySubsequences: false)
  FuzzFixtures.expectRefused(["token id", "far beyond"]) {
    _ = try BPETokenizer(tokenizerJSON: Data(parts[0]), config: parts.count > 2 ? Data(parts[2]) : nil)
  }
}

/// config: `num_attention_heads: 0` beside a `head_dim` divided by zero before the sizes were checked.
@Test func zeroAttentionHeadsWithAHeadDimIsRefused() throws {
  let data = try FuzzFixtures.data("models/fuzz/zero-heads-with-head-dim.json")
  FuzzFixtures.expectRefused(["sizes must be positive"]) { _ = try ModelConfig(json: data) }
}

/// config: an integer beyond what a Double holds exactly (`"n_embd": 3.3e37`) trapped converting to Int.
@Test func anIntegerTooLargeForAnyModelIsRefusedByKey() throws {
  let data = try FuzzFixtures.data("models/fuzz/huge-integer.json")
  FuzzFixtures.expectRefused(["should be an integer (at most 2^53"]) { _ = try ModelConfig(json: data) }
}
