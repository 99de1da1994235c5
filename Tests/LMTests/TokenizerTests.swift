import Foundation
import Testing
@testable import LM

/// Reference outputs written by scripts/make_tokenizer_fixtures.py with the Python `tokenizers` library.
struct TokenizerFixtureFile: Decodable {
  struct Case: Decodable {
    let text: String
    let ids: [Int]
    let ids_no_special: [Int]
    let decoded: String
    let decoded_skip_special: String
  }

  struct DecodeCase: Decodable {
    let ids: [Int]
    let decoded: String
  }

  struct Family: Decodable {
    let cases: [Case]
    let decode_cases: [DecodeCase]
  }

  let gpt2: Family
  let llama3: Family
  let qwen2: Family

  func family(_ name: String) -> Family {
    switch name {
    case "gpt2": gpt2
    case "llama3": llama3
    default: qwen2
    }
  }
}

enum TokenizerFixtures {
  static let families = ["gpt2", "llama3", "qwen2"]

  static let root: URL? = Bundle.module.url(forResource: "tokenizers", withExtension: nil, subdirectory: "Fixtures")

  static let file: TokenizerFixtureFile? = {
    guard let root, let data = try? Data(contentsOf: root.appendingPathComponent("cases.json")) else { return nil }
    return try? JSONDecoder().decode(TokenizerFixtureFile.self, from: data)
  }()

  static let tokenizers: [String: BPETokenizer] = {
    guard let root else { return [:] }
    var out: [String: BPETokenizer] = [:]
    for name in families {
      out[name] = try? BPETokenizer(directory: root.appendingPathComponent(name))
    }
    return out
  }()

  /// Texts containing special-token markers; the round trip is checked on the others.
  static let specialMarkers = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|end_of_text|>",
                               "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

  static var encodeCases: [EncodeCase] {
    guard let file else { return [] }
    return families.flatMap { name in
      file.family(name).cases.enumerated().map { EncodeCase(family: name, index: $0.offset, text: $0.element.text) }
    }
  }

  static var decodeCases: [DecodeOnlyCase] {
    guard let file else { return [] }
    return families.flatMap { name in
      file.family(name).decode_cases.indices.map { DecodeOnlyCase(family: name, index: $0) }
    }
  }
}

struct EncodeCase: Sendable, CustomTestStringConvertible {
  let family: String
  let index: Int
  let text: String
  var testDescription: String { "\(family)[\(index)] \(text.debugDescription.prefix(40))" }
  var reference: TokenizerFixtureFile.Case { TokenizerFixtures.file!.family(family).cases[index] }
}

struct DecodeOnlyCase: Sendable, CustomTestStringConvertible {
  let family: String
  let index: Int
  var testDescription: String { "\(family) decode[\(index)]" }
  var reference: TokenizerFixtureFile.DecodeCase { TokenizerFixtures.file!.family(family).decode_cases[index] }
}

/// Exact comparison: Swift's `==` on strings is canonical equivalence, which would hide NFC differences.
private func sameScalars(_ a: String, _ b: String) -> Bool { Array(a.unicodeScalars) == Array(b.unicodeScalars) }

@Suite struct TokenizerTests {
  @Test func fixturesLoad() throws {
    let root = try #require(TokenizerFixtures.root, "Fixtures/tokenizers missing from the test bundle")
    #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("cases.json").path))
    #expect(TokenizerFixtures.file != nil)
    for name in TokenizerFixtures.families {
      _ = try BPETokenizer(directory: root.appendingPathComponent(name))
    }
    #expect(TokenizerFixtures.encodeCases.count >= 3 * 25)
    #expect(TokenizerFixtures.decodeCases.count >= 3 * 10)
  }

  @Test(arguments: TokenizerFixtures.encodeCases)
  func encodeMatchesReference(_ c: EncodeCase) throws {
    let tok = try #require(TokenizerFixtures.tokenizers[c.family])
    let ref = c.reference
    #expect(tok.encode(c.text, addSpecialTokens: true) == ref.ids)
    #expect(tok.encode(c.text, addSpecialTokens: false) == ref.ids_no_special)
  }

  @Test(arguments: TokenizerFixtures.encodeCases)
  func decodeMatchesReference(_ c: EncodeCase) throws {
    let tok = try #require(TokenizerFixtures.tokenizers[c.family])
    let ref = c.reference
    let decoded = tok.decode(ref.ids, skipSpecialTokens: false)
    #expect(sameScalars(decoded, ref.decoded), "\(decoded.debugDescription) vs \(ref.decoded.debugDescription)")
    let skipped = tok.decode(ref.ids, skipSpecialTokens: true)
    #expect(sameScalars(skipped, ref.decoded_skip_special),
            "\(skipped.debugDescription) vs \(ref.decoded_skip_special.debugDescription)")
  }

  @Test(arguments: TokenizerFixtures.encodeCases.filter { c in
    !TokenizerFixtures.specialMarkers.contains { c.text.contains($0) }
  })
  func roundTrip(_ c: EncodeCase) throws {
    let tok = try #require(TokenizerFixtures.tokenizers[c.family])
    let decoded = tok.decode(tok.encode(c.text, addSpecialTokens: false), skipSpecialTokens: false)
    // Qwen2 normalizes to NFC, so its round trip gives the NFC form of the text.
    let expected = c.family == "qwen2" ? c.text.precomposedStringWithCanonicalMapping : c.text
    #expect(sameScalars(decoded, expected), "\(decoded.debugDescription)")
    #expect(tok.decode(tok.encode(c.text, addSpecialTokens: true), skipSpecialTokens: true) == decoded)
  }

  @Test(arguments: TokenizerFixtures.decodeCases)
  func decodeInvalidUTF8AndUnknownIds(_ c: DecodeOnlyCase) throws {
    let tok = try #require(TokenizerFixtures.tokenizers[c.family])
    let decoded = tok.decode(c.reference.ids, skipSpecialTokens: false)
    #expect(sameScalars(decoded, c.reference.decoded), "\(decoded.debugDescription) vs \(c.reference.decoded.debugDescription)")
  }

  @Test func specialTokenIdsFromConfig() throws {
    let tokenizers = TokenizerFixtures.tokenizers
    let gpt2 = try #require(tokenizers["gpt2"])
    #expect(gpt2.bosTokenId == gpt2.tokenId("<|endoftext|>"))
    #expect(gpt2.eosTokenId == gpt2.tokenId("<|endoftext|>"))
    #expect(gpt2.padTokenId == nil)
    #expect(gpt2.chatTemplate == .plain)
    let llama = try #require(tokenizers["llama3"])
    #expect(llama.bosTokenId != nil && llama.bosTokenId == llama.tokenId("<|begin_of_text|>"))
    #expect(llama.eosTokenId == llama.tokenId("<|eot_id|>"))
    #expect(llama.chatTemplate == .llama3)
    let qwen = try #require(tokenizers["qwen2"])
    #expect(qwen.bosTokenId == nil)
    #expect(qwen.eosTokenId != nil && qwen.eosTokenId == qwen.tokenId("<|im_end|>"))
    #expect(qwen.padTokenId == qwen.tokenId("<|endoftext|>"))
    #expect(qwen.chatTemplate == .chatML)
    #expect(qwen.vocabularySize == 501)
    #expect(qwen.token(forId: qwen.tokenId("<|im_start|>")!) == "<|im_start|>")
  }

  @Test func longRunsUseTheSameMergeOrder() throws {
    // Words past the heap threshold take the heap path; it must agree with the quadratic scan.
    let tok = try #require(TokenizerFixtures.tokenizers["qwen2"])
    for text in [String(repeating: " ", count: 500), String(repeating: "=-", count: 300),
                 String(repeating: "ab", count: 200), String(repeating: "😀", count: 40)] {
      var bytes = Array(text.utf8).map { Int32(tok.model.byteIds[Int($0)]) }
      let viaHeap = tok.model.mergeWithHeap(bytes)
      tok.model.mergeByScan(&bytes)
      #expect(viaHeap == bytes)
      #expect(tok.decode(tok.encode(text, addSpecialTokens: false), skipSpecialTokens: false) == text)
    }
  }

  @Test func longTextEncodesConsistently() throws {
    // Encoding a long document equals encoding its paragraphs when each paragraph starts a new
    // pre-token (they are separated by newlines, which every pattern splits on).
    let tok = try #require(TokenizerFixtures.tokenizers["gpt2"])
    let paragraph = "The quick brown fox, 12345 times; naïve café 😀 \u{65e5}\u{672c}.\n"
    let long = String(repeating: paragraph, count: 2000)
    let ids = tok.encode(long, addSpecialTokens: false)
    let one = tok.encode(paragraph, addSpecialTokens: false)
    #expect(ids.count == one.count * 2000)
    #expect(tok.decode(ids, skipSpecialTokens: false) == long)
  }

  // MARK: Errors

  @Test func missingFileNamesThePath() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("no-tokenizer-\(UUID().uuidString)")
    let error = try #require(throws: TokenizerError.self) { try BPETokenizer(directory: dir) }
    #expect(error.message.contains(dir.appendingPathComponent("tokenizer.json").path))
    #expect(error.message.contains("not found"))
  }

  @Test func invalidJSONIsReported() throws {
    let error = try #require(throws: TokenizerError.self) {
      try BPETokenizer(tokenizerJSON: Data("{\"model\": [1, 2".utf8), config: nil)
    }
    #expect(error.message.hasPrefix("tokenizer.json: not valid JSON"))
    let configError = try #require(throws: TokenizerError.self) {
      try BPETokenizer(tokenizerJSON: Self.minimalJSON(preTokenizer: #"{"type": "ByteLevel"}"#), config: Data("nope".utf8))
    }
    #expect(configError.message.hasPrefix("tokenizer_config.json: not valid JSON"))
  }

  @Test func unsupportedComponentsAreNamed() throws {
    let metaspace = #"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}"#
    let error = try #require(throws: TokenizerError.self) {
      try BPETokenizer(tokenizerJSON: Self.minimalJSON(preTokenizer: metaspace), config: nil)
    }
    #expect(error.message == "tokenizer.json: pre_tokenizer type 'Metaspace' is not supported")

    let nested = #"{"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Punctuation"}]}"#
    let nestedError = try #require(throws: TokenizerError.self) {
      try BPETokenizer(tokenizerJSON: Self.minimalJSON(preTokenizer: nested), config: nil)
    }
    #expect(nestedError.message == "tokenizer.json: pre_tokenizer.pretokenizers[1] type 'Punctuation' is not supported")

    let wordPiece = Data(#"{"model": {"type": "WordPiece", "vocab": {}}}"#.utf8)
    let modelError = try #require(throws: TokenizerError.self) { try BPETokenizer(tokenizerJSON: wordPiece, config: nil) }
    #expect(modelError.message.contains("model type 'WordPiece' is not supported"))

    let nfkc = Self.minimalJSON(preTokenizer: #"{"type": "ByteLevel"}"#, normalizer: #"{"type": "NFKC"}"#)
    let normError = try #require(throws: TokenizerError.self) { try BPETokenizer(tokenizerJSON: nfkc, config: nil) }
    #expect(normError.message == "tokenizer.json: normalizer type 'NFKC' is not supported")

    // The minimal file itself is fine and tokenizes byte by byte.
    let ok = try BPETokenizer(tokenizerJSON: Self.minimalJSON(preTokenizer: #"{"type": "ByteLevel", "add_prefix_space": false}"#))
    #expect(ok.encode("ab a", addSpecialTokens: true) == [0, 1, 2, 0])
    #expect(ok.decode([0, 1, 2, 0]) == "ab a")
  }

  /// A tiny byte-level file: vocabulary "a", "b", "Ġ" and no merges.
  static func minimalJSON(preTokenizer: String, normalizer: String = "null") -> Data {
    Data("""
    {"version": "1.0", "added_tokens": [], "normalizer": \(normalizer), "pre_tokenizer": \(preTokenizer),
     "post_processor": null, "decoder": {"type": "ByteLevel"},
     "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "Ġ": 2}, "merges": []}}
    """.utf8)
  }

  // MARK: CharTokenizer

  @Test func charTokenizerRoundTrip() {
    let tok = CharTokenizer(alphabet: Array("abcdefghijklmnopqrstuvwxyz 0123456789+=é"))
    #expect(tok.vocabularySize == 3 + 40)
    #expect(tok.padTokenId == 0 && tok.bosTokenId == 1 && tok.eosTokenId == 2)
    let text = "12+34=46 café"
    let ids = tok.encode(text, addSpecialTokens: true)
    #expect(ids.first == 1)
    #expect(ids.count == text.count + 1)
    #expect(tok.decode(ids, skipSpecialTokens: true) == text)
    #expect(tok.decode(ids, skipSpecialTokens: false) == "<bos>" + text)
    #expect(tok.encode("a<eos>", addSpecialTokens: false) == [tok.tokenId("a")!, 2])
    // Unknown characters are skipped without <unk>, mapped to it with one.
    #expect(tok.encode("aXb", addSpecialTokens: false) == [tok.tokenId("a")!, tok.tokenId("b")!])
    let withUnk = CharTokenizer(alphabet: ["a", "b"], specials: ["<pad>", "<unk>"])
    #expect(withUnk.encode("aXb", addSpecialTokens: true) == [2, 1, 3])
    #expect(withUnk.bosTokenId == nil)
    #expect(withUnk.decode([2, 1, 3, 99, -1], skipSpecialTokens: false) == "a<unk>b")
  }

  // MARK: Chat templates

  static let conversation = [
    ChatMessage(role: "user", content: "What is 2+2?"),
    ChatMessage(role: "assistant", content: "4"),
  ]

  @Test func chatMLRendering() {
    let template = ChatTemplate(templateSource: "{% for message in messages %}{{'<|im_start|>' + message['role'] }}")
    #expect(template == .chatML)
    #expect(template.render(Self.conversation, addGenerationPrompt: false)
      == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n")
    #expect(template.render(Self.conversation, addGenerationPrompt: true)
      == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>assistant\n")
  }

  @Test func llama3Rendering() {
    let template = ChatTemplate(templateSource: "{{ '<|start_header_id|>' + message['role'] }}")
    #expect(template == .llama3)
    #expect(template.render(Self.conversation, addGenerationPrompt: true)
      == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
      + "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
      + "<|start_header_id|>assistant<|end_header_id|>\n\n")
  }

  @Test func plainRendering() {
    #expect(ChatTemplate(templateSource: nil) == .plain)
    let template = ChatTemplate(templateSource: "{{ messages }}")
    #expect(template == .plain)
    #expect(template.render(Self.conversation, addGenerationPrompt: false) == "user: What is 2+2?\nassistant: 4\n")
    #expect(template.render(Self.conversation, addGenerationPrompt: true)
      == "user: What is 2+2?\nassistant: 4\nassistant: ")
  }

  @Test func renderedChatTokenizesWithSpecialTokens() throws {
    let qwen = try #require(TokenizerFixtures.tokenizers["qwen2"])
    let prompt = qwen.chatTemplate.render(Self.conversation, addGenerationPrompt: true)
    let ids = qwen.encode(prompt, addSpecialTokens: false)
    let imStart = try #require(qwen.tokenId("<|im_start|>"))
    #expect(ids.filter { $0 == imStart }.count == 3)
    #expect(qwen.decode(ids, skipSpecialTokens: false) == prompt)
    let llama = try #require(TokenizerFixtures.tokenizers["llama3"])
    let llamaIds = llama.encode(llama.chatTemplate.render(Self.conversation, addGenerationPrompt: false),
                                addSpecialTokens: false)
    #expect(llamaIds.first == llama.bosTokenId)
    #expect(llamaIds.last == llama.eosTokenId)
  }

  @Test func messagesDecodeFromJSON() throws {
    let json = Data(#"[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]"#.utf8)
    let messages = try JSONDecoder().decode([ChatMessage].self, from: json)
    #expect(messages == [ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: "Hi")])
  }
}
