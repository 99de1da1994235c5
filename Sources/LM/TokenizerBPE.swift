import Foundation
import Torch

/// A byte-level BPE tokenizer read from a Hugging Face `tokenizer.json` (GPT-2, Llama-3, Qwen2 and the
/// many models shaped like them), giving the same ids and decoded text as the Python `tokenizers` library.
///
/// Encoding follows the library's pipeline: added tokens are cut out of the raw text (those marked
/// `normalized` are looked for after normalization instead), each remaining stretch is normalized,
/// pre-tokenized (regex splits), mapped to bytes and merged by BPE; with `addSpecialTokens` the
/// post-processor's template adds its tokens (e.g. `<|begin_of_text|>`). `truncation` and `padding` in
/// the file are ignored: callers decide lengths.
///
/// Supported components (anything else is rejected when loading, naming the key and type):
/// model `BPE` (`vocab`, `merges` as "a b" strings or [a, b] pairs, `ignore_merges`, `unk_token`,
/// `fuse_unk`); normalizer null, `NFC` or a `Sequence` of those; pre-tokenizer `ByteLevel`, `Split`
/// (regex or string pattern, `Isolated`, not inverted), `Digits` or a `Sequence` of those, which must include
/// `ByteLevel`; post-processor null, `ByteLevel`, `TemplateProcessing` or a `Sequence` of those; decoder
/// null or `ByteLevel`.
public struct BPETokenizer: TextTokenizer {
  let model: BPEMergeModel
  let rawAddedTokens: AddedTokenMatcher
  let normalizedAddedTokens: AddedTokenMatcher
  let normalizers: [TextNormalizer]
  let preTokenizer: [PreTokenizerStep]
  /// Each template is the `single` sequence of one `TemplateProcessing`: nil marks where the text goes.
  let templates: [[[Int]?]]
  let byteLevelDecoder: Bool
  /// Vocabulary strings by id (added tokens override the model's), nil for unused ids.
  let tokens: [String?]
  let ids: [String: Int]
  /// What each id decodes to under the ByteLevel decoder, as ranges into `decodedBytes`.
  let decodedBytes: [UInt8]
  let decodedRanges: [Range<Int>]
  let isSpecial: [Bool]

  public let vocabularySize: Int
  public let bosTokenId: Int?
  public let eosTokenId: Int?
  public let padTokenId: Int?
  /// `chat_template` from `tokenizer_config.json` (or `chat_template.jinja`), as written.
  public let chatTemplateSource: String?
  /// The rendering chosen from `chatTemplateSource` (see `ChatTemplate`).
  public let chatTemplate: ChatTemplate

  /// Reads `tokenizer.json` and, when present, `tokenizer_config.json` (special-token names and the chat
  /// template) and `chat_template.jinja` from a Hugging Face model directory.
  public init(directory: URL) throws {
    let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
    let json = try Self.readFile(tokenizerURL, required: true)!
    let configURL = directory.appendingPathComponent("tokenizer_config.json")
    let config = try Self.readFile(configURL, required: false)
    let templateURL = directory.appendingPathComponent("chat_template.jinja")
    let templateFile = try Self.readFile(templateURL, required: false).map { String(decoding: $0, as: UTF8.self) }
    try self.init(tokenizerJSON: json, config: config, tokenizerName: tokenizerURL.path,
                  configName: configURL.path, chatTemplateFallback: templateFile)
  }

  /// Builds a tokenizer from the bytes of a `tokenizer.json` and optionally of a `tokenizer_config.json`.
  public init(tokenizerJSON: Data, config: Data? = nil) throws {
    try self.init(tokenizerJSON: tokenizerJSON, config: config, tokenizerName: "tokenizer.json",
                  configName: "tokenizer_config.json", chatTemplateFallback: nil)
  }

  private static func readFile(_ url: URL, required: Bool) throws -> Data? {
    guard FileManager.default.fileExists(atPath: url.path) else {
      if required { throw TokenizerError("\(url.path): file not found") }
      return nil
    }
    do {
      return try Data(contentsOf: url)
    } catch {
      throw TokenizerError("\(url.path): cannot be read: \(fileErrorReason(error))")
    }
  }

  init(tokenizerJSON: Data, config: Data?, tokenizerName: String, configName: String,
       chatTemplateFallback: String?) throws {
    let spec = try TokenizerSpec(json: tokenizerJSON, file: tokenizerName)
    model = spec.model
    rawAddedTokens = spec.rawAddedTokens
    normalizedAddedTokens = spec.normalizedAddedTokens
    normalizers = spec.normalizers
    preTokenizer = spec.preTokenizer
    templates = spec.templates
    byteLevelDecoder = spec.byteLevelDecoder
    tokens = spec.tokens
    ids = spec.ids
    vocabularySize = spec.tokens.count

    var bytes: [UInt8] = []
    var ranges: [Range<Int>] = []
    ranges.reserveCapacity(tokens.count)
    for token in tokens {
      let start = bytes.count
      if let token {
        // The ByteLevel decoder maps a token through the byte table only if every character is in it;
        // otherwise (e.g. an added token containing a space) the token's own UTF-8 is used.
        bytes.append(contentsOf: ByteLevelTable.bytes(of: token) ?? Array(token.utf8))
      }
      ranges.append(start..<bytes.count)
    }
    decodedBytes = bytes
    decodedRanges = ranges
    isSpecial = tokens.map { $0.map { spec.specialContents.contains($0) } ?? false }

    var settings = TokenizerConfigSettings()
    if let config { settings = try TokenizerConfigSettings(json: config, file: configName) }
    func resolve(_ name: String?, key: String) throws -> Int? {
      guard let name else { return nil }
      guard let id = spec.ids[name] else {
        throw TokenizerError("\(configName): \(key) '\(name)' is not a token of \(tokenizerName)")
      }
      return id
    }
    bosTokenId = try resolve(settings.bosToken, key: "bos_token")
    eosTokenId = try resolve(settings.eosToken, key: "eos_token")
    padTokenId = try resolve(settings.padToken, key: "pad_token")
    chatTemplateSource = settings.chatTemplate ?? chatTemplateFallback
    chatTemplate = ChatTemplate(templateSource: chatTemplateSource)
  }

  public func tokenId(_ token: String) -> Int? { ids[token] }

  /// The vocabulary string of an id (byte-level spelling, e.g. "Ġthe"), if the id is used.
  public func token(forId id: Int) -> String? {
    id >= 0 && id < tokens.count ? tokens[id] : nil
  }

  public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
    var out: [Int] = []
    out.reserveCapacity(text.utf8.count / 3 + 4)
    let raw = Array(text.utf8)
    for segment in rawAddedTokens.split(raw) {
      switch segment {
      case .token(let id):
        out.append(id)
      case .text(let range):
        var piece = String(decoding: raw[range], as: UTF8.self)
        for normalizer in normalizers { piece = normalizer.apply(piece) }
        if normalizedAddedTokens.isEmpty {
          encodeStretch(piece, into: &out)
          continue
        }
        let normalized = Array(piece.utf8)
        for inner in normalizedAddedTokens.split(normalized) {
          switch inner {
          case .token(let id): out.append(id)
          case .text(let r): encodeStretch(String(decoding: normalized[r], as: UTF8.self), into: &out)
          }
        }
      }
    }
    if addSpecialTokens {
      for template in templates {
        var wrapped: [Int] = []
        wrapped.reserveCapacity(out.count + 4)
        for item in template {
          if let special = item { wrapped.append(contentsOf: special) } else { wrapped.append(contentsOf: out) }
        }
        out = wrapped
      }
    }
    return out
  }

  /// Pre-tokenizes and BPE-encodes text that contains no added tokens.
  private func encodeStretch(_ text: String, into out: inout [Int]) {
    if text.isEmpty { return }
    var pieces = [ArraySlice(Array(text.utf16))]
    for step in preTokenizer { pieces = step.apply(pieces) }
    for piece in pieces { model.encode(utf8Bytes(of: piece), into: &out) }
  }

  public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
    if !byteLevelDecoder {
      // Without a decoder `tokenizers` joins the token strings with spaces.
      return ids.compactMap { id -> String? in
        guard id >= 0, id < tokens.count, !(skipSpecialTokens && isSpecial[id]) else { return nil }
        return tokens[id]
      }.joined(separator: " ")
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(ids.count * 4)
    for id in ids where id >= 0 && id < tokens.count && tokens[id] != nil {
      if skipSpecialTokens && isSpecial[id] { continue }
      bytes.append(contentsOf: decodedBytes[decodedRanges[id]])
    }
    // Invalid UTF-8 (e.g. a multi-byte character cut between tokens) becomes U+FFFD per maximal invalid
    // subsequence, as Rust's `String::from_utf8_lossy` does.
    return String(decoding: bytes, as: UTF8.self)
  }
}

/// The special-token names and chat template from a `tokenizer_config.json`.
struct TokenizerConfigSettings {
  var bosToken: String?
  var eosToken: String?
  var padToken: String?
  var chatTemplate: String?

  init() {}

  init(json: Data, file: String) throws {
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: json, options: [.fragmentsAllowed])
    } catch {
      throw TokenizerError("\(file): not valid JSON: \(error.localizedDescription)")
    }
    guard let root = object as? [String: Any] else { throw TokenizerError("\(file): expected a JSON object") }
    // A token is written either as its string or as {"content": "...", ...} (an AddedToken).
    func tokenName(_ key: String) throws -> String? {
      switch root[key] {
      case nil, is NSNull: return nil
      case let s as String: return s
      case let d as [String: Any]:
        guard let content = d["content"] as? String else {
          throw TokenizerError("\(file): \(key) is an object without a string 'content'")
        }
        return content
      default: throw TokenizerError("\(file): \(key) must be a string, an object with 'content', or null")
      }
    }
    bosToken = try tokenName("bos_token")
    eosToken = try tokenName("eos_token")
    padToken = try tokenName("pad_token")
    switch root["chat_template"] {
    case nil, is NSNull: chatTemplate = nil
    case let s as String: chatTemplate = s
    case let list as [[String: Any]]:
      // Several named templates: use "default", else the first.
      let chosen = list.first { ($0["name"] as? String) == "default" } ?? list.first
      chatTemplate = chosen?["template"] as? String
    default: throw TokenizerError("\(file): chat_template must be a string or a list of {name, template}")
    }
  }
}
