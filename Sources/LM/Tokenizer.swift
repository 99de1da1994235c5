import Foundation

/// Text ↔ token ids, the one interface the rest of the library needs from a tokenizer.
///
/// `encode` never fails: every string has an encoding (byte-level BPE covers all bytes; `CharTokenizer`
/// documents what it does with characters outside its alphabet). `decode` ignores ids it does not know.
public protocol TextTokenizer: Sendable {
  /// Token ids of `text`. `addSpecialTokens` adds what the tokenizer's post-processor adds (for example
  /// Llama-3's `<|begin_of_text|>`); special-token strings inside `text` are always recognised.
  func encode(_ text: String, addSpecialTokens: Bool) -> [Int]
  func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String
  /// One more than the largest id the tokenizer can produce (the embedding table needs at least this many rows).
  var vocabularySize: Int { get }
  var bosTokenId: Int? { get }
  var eosTokenId: Int? { get }
  var padTokenId: Int? { get }
  /// The id of one token given by its exact vocabulary string (e.g. `"<|im_end|>"`), if there is one.
  func tokenId(_ token: String) -> Int?
}

extension TextTokenizer {
  /// Encodes with special tokens, as Hugging Face's `encode` does by default.
  public func encode(_ text: String) -> [Int] { encode(text, addSpecialTokens: true) }
  public func decode(_ ids: [Int]) -> String { decode(ids, skipSpecialTokens: false) }
}

/// A tokenizer file that cannot be used: missing, not JSON, or using a component this library lacks.
/// The message names the file, the JSON key and what was expected.
public struct TokenizerError: Error, CustomStringConvertible, LocalizedError {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
  public var errorDescription: String? { message }
}

/// GPT-2's reversible byte ↔ character table: printable Latin-1 bytes stand for themselves, the other 68
/// bytes are moved to U+0100 onwards in byte order, so every byte string has a printable spelling.
enum ByteLevelTable {
  static let byteToScalar: [Unicode.Scalar] = {
    var printable = Set<Int>()
    for b in 0x21...0x7E { printable.insert(b) }
    for b in 0xA1...0xAC { printable.insert(b) }
    for b in 0xAE...0xFF { printable.insert(b) }
    var table = [Unicode.Scalar](repeating: " ", count: 256)
    var next = 256
    for b in 0..<256 {
      if printable.contains(b) {
        table[b] = Unicode.Scalar(UInt32(b))!
      } else {
        table[b] = Unicode.Scalar(UInt32(next))!
        next += 1
      }
    }
    return table
  }()

  static let scalarToByte: [UInt32: UInt8] = {
    var map: [UInt32: UInt8] = [:]
    for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
    return map
  }()

  /// The bytes a byte-level token string stands for, or nil if some character is outside the table.
  static func bytes(of token: String) -> [UInt8]? {
    var out: [UInt8] = []
    out.reserveCapacity(token.unicodeScalars.count)
    for s in token.unicodeScalars {
      guard let b = scalarToByte[s.value] else { return nil }
      out.append(b)
    }
    return out
  }
}

extension CausalLM {
  /// The ids that end a generated response: `config.json`'s EOS ids and the tokenizer's EOS.
  public func stopTokens(tokenizer: any TextTokenizer) -> Set<Int> {
    var stops = Set(config.eosTokenIds)
    if let eos = tokenizer.eosTokenId { stops.insert(eos) }
    return stops
  }
}
