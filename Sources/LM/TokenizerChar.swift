/// A character-level tokenizer for synthetic tasks: the special tokens take ids `0..<specials.count`, then
/// each alphabet character gets the next id in order (repeats are ignored).
///
/// Encoding never fails: special-token strings in the text (e.g. `"<eos>"`) are recognised, longest
/// first; a character outside the alphabet becomes `<unk>` when `<unk>` is among the specials and is
/// skipped otherwise, so `decode(encode(x))` drops characters the alphabet cannot spell. With
/// `addSpecialTokens` only `<bos>` is prepended (if present); appending `<eos>` is left to the data
/// pipeline, as with the BPE tokenizers.
public struct CharTokenizer: TextTokenizer {
  public let specials: [String]
  public let alphabet: [Character]
  private let characterIds: [Character: Int]
  private let specialIds: [String: Int]
  /// Specials sorted longest first, for matching inside text.
  private let specialsByLength: [(text: String, id: Int)]
  private let unknownId: Int?

  public init(alphabet: [Character], specials: [String] = ["<pad>", "<bos>", "<eos>"]) {
    var specialIds: [String: Int] = [:]
    var uniqueSpecials: [String] = []
    for s in specials where specialIds[s] == nil && !s.isEmpty {
      specialIds[s] = uniqueSpecials.count
      uniqueSpecials.append(s)
    }
    var characterIds: [Character: Int] = [:]
    var uniqueAlphabet: [Character] = []
    for c in alphabet where characterIds[c] == nil {
      characterIds[c] = uniqueSpecials.count + uniqueAlphabet.count
      uniqueAlphabet.append(c)
    }
    self.specials = uniqueSpecials
    self.alphabet = uniqueAlphabet
    self.characterIds = characterIds
    self.specialIds = specialIds
    specialsByLength = uniqueSpecials.enumerated().map { (text: $0.element, id: $0.offset) }
      .sorted { $0.text.count > $1.text.count }
    unknownId = specialIds["<unk>"]
  }

  public var vocabularySize: Int { specials.count + alphabet.count }
  public var bosTokenId: Int? { specialIds["<bos>"] }
  public var eosTokenId: Int? { specialIds["<eos>"] }
  public var padTokenId: Int? { specialIds["<pad>"] }

  public func tokenId(_ token: String) -> Int? {
    if let id = specialIds[token] { return id }
    guard token.count == 1, let c = token.first else { return nil }
    return characterIds[c]
  }

  public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
    var out: [Int] = []
    if addSpecialTokens, let bos = bosTokenId { out.append(bos) }
    var rest = Substring(text)
    outer: while let c = rest.first {
      for special in specialsByLength where rest.hasPrefix(special.text) {
        out.append(special.id)
        rest = rest.dropFirst(special.text.count)
        continue outer
      }
      if let id = characterIds[c] {
        out.append(id)
      } else if let unknownId {
        out.append(unknownId)
      }
      rest = rest.dropFirst()
    }
    return out
  }

  public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
    var out = ""
    for id in ids {
      if id >= 0 && id < specials.count {
        if !skipSpecialTokens { out += specials[id] }
      } else if id >= specials.count && id < vocabularySize {
        out.append(alphabet[id - specials.count])
      }
    }
    return out
  }
}
