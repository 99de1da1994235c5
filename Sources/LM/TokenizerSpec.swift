import Foundation

/// A parsed `tokenizer.json`: every component checked and turned into the pieces `BPETokenizer` runs.
/// Errors name the file, the key path and what was found.
struct TokenizerSpec {
  /// How far past the number of defined tokens the largest id may reach (real files leave small gaps, e.g.
  /// reserved ids between the vocabulary and the added tokens).
  static let idSlack = 1 << 16
  var model: BPEMergeModel
  var rawAddedTokens: AddedTokenMatcher
  var normalizedAddedTokens: AddedTokenMatcher
  var normalizers: [TextNormalizer] = []
  var preTokenizer: [PreTokenizerStep] = []
  var templates: [[[Int]?]] = []
  var byteLevelDecoder = false
  var tokens: [String?]
  var ids: [String: Int]
  var specialContents: Set<String>

  private let file: String

  init(json: Data, file: String) throws {
    self.file = file
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: json, options: [])
    } catch {
      throw TokenizerError("\(file): not valid JSON: \(error.localizedDescription)")
    }
    guard let root = object as? [String: Any] else { throw TokenizerError("\(file): expected a JSON object") }

    // Model vocabulary and merges.
    guard let modelObject = root["model"] as? [String: Any] else {
      throw TokenizerError("\(file): missing object 'model'")
    }
    if let type = modelObject["type"], (type as? String) != "BPE" {
      throw TokenizerError("\(file): model type '\(type)' is not supported (expected 'BPE')")
    }
    guard let vocab = modelObject["vocab"] as? [String: Any] else {
      throw TokenizerError("\(file): model.vocab must be an object of token → id")
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
      if let value = modelObject[key] as? String, !value.isEmpty {
        throw TokenizerError("\(file): model.\(key) '\(value)' is not supported (byte-level BPE only)")
      }
    }
    if let dropout = modelObject["dropout"] as? Double, dropout > 0 {
      throw TokenizerError("\(file): model.dropout \(dropout) is not supported")
    }

    var vocabIds: [String: Int] = [:]
    vocabIds.reserveCapacity(vocab.count)
    var maxId = -1
    for (token, value) in vocab {
      guard let id = value as? Int, id >= 0 else {
        throw TokenizerError("\(file): model.vocab['\(token)'] must be a non-negative integer id")
      }
      vocabIds[token] = id
      maxId = max(maxId, id)
    }

    // Added tokens.
    struct Added {
      let content: String
      let id: Int
      let special: Bool
      let normalized: Bool
      let entry: AddedTokenMatcher.Entry
    }
    var added: [Added] = []
    if let list = root["added_tokens"], !(list is NSNull) {
      guard let items = list as? [[String: Any]] else {
        throw TokenizerError("\(file): added_tokens must be a list of objects")
      }
      for (i, item) in items.enumerated() {
        guard let content = item["content"] as? String, let id = item["id"] as? Int, id >= 0 else {
          throw TokenizerError("\(file): added_tokens[\(i)] needs a string 'content' and an integer 'id'")
        }
        let special = item["special"] as? Bool ?? false
        let entry = AddedTokenMatcher.Entry(
          bytes: Array(content.utf8), id: id, lstrip: item["lstrip"] as? Bool ?? false,
          rstrip: item["rstrip"] as? Bool ?? false, singleWord: item["single_word"] as? Bool ?? false)
        added.append(Added(content: content, id: id, special: special,
                           normalized: item["normalized"] as? Bool ?? !special, entry: entry))
        maxId = max(maxId, id)
      }
    }

    // Ids index a table as long as the largest id: one far beyond the entries is a malformed file, refused
    // before that table is allocated for it (found by `make fuzz`).
    let entries = vocabIds.count + added.count
    guard maxId < entries + Self.idSlack else {
      throw TokenizerError("\(file): token id \(maxId) is far beyond the \(entries) tokens the file defines "
        + "(ids should run from 0 without gaps of more than \(Self.idSlack))")
    }
    var tokens = [String?](repeating: nil, count: maxId + 1)
    for (token, id) in vocabIds { tokens[id] = token }
    var ids = vocabIds
    for a in added {
      tokens[a.id] = a.content
      ids[a.content] = a.id
    }
    self.tokens = tokens
    self.ids = ids
    specialContents = Set(added.filter(\.special).map(\.content))
    rawAddedTokens = AddedTokenMatcher(added.filter { !$0.normalized }.map(\.entry))

    // Merges: "a b" strings (tokenizers < 0.20) or [a, b] pairs.
    var merges: [UInt64: UInt64] = [:]
    let mergeList = modelObject["merges"] as? [Any] ?? []
    merges.reserveCapacity(mergeList.count)
    for (rank, item) in mergeList.enumerated() {
      let parts: [String]
      if let line = item as? String {
        parts = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
      } else if let pair = item as? [String] {
        parts = pair
      } else {
        throw TokenizerError("\(file): model.merges[\(rank)] must be \"a b\" or [\"a\", \"b\"]")
      }
      guard parts.count == 2 else {
        throw TokenizerError("\(file): model.merges[\(rank)] must name exactly two tokens")
      }
      guard let left = vocabIds[parts[0]], let right = vocabIds[parts[1]] else {
        throw TokenizerError("\(file): model.merges[\(rank)] uses a token missing from model.vocab")
      }
      guard let merged = vocabIds[parts[0] + parts[1]] else {
        throw TokenizerError("\(file): model.merges[\(rank)]: merged token '\(parts[0] + parts[1])' is missing from model.vocab")
      }
      let key = BPEMergeModel.pairKey(Int32(left), Int32(right))
      if merges[key] == nil { merges[key] = UInt64(rank) << 32 | UInt64(merged) }
    }

    var byteIds = [Int32](repeating: -1, count: 256)
    for b in 0..<256 {
      if let id = vocabIds[String(Character(ByteLevelTable.byteToScalar[b]))] { byteIds[b] = Int32(id) }
    }
    let ignoreMerges = modelObject["ignore_merges"] as? Bool ?? false
    var wholeTokens: [[UInt8]: Int32] = [:]
    if ignoreMerges {
      wholeTokens.reserveCapacity(vocabIds.count)
      for (token, id) in vocabIds {
        if let bytes = ByteLevelTable.bytes(of: token) { wholeTokens[bytes] = Int32(id) }
      }
    }
    var unknownId: Int32?
    if let unk = modelObject["unk_token"] as? String {
      guard let id = vocabIds[unk] else {
        throw TokenizerError("\(file): model.unk_token '\(unk)' is missing from model.vocab")
      }
      unknownId = Int32(id)
    }
    model = BPEMergeModel(byteIds: byteIds, merges: merges, wholeTokens: wholeTokens, ignoreMerges: ignoreMerges,
                          unknownId: unknownId, fuseUnknown: modelObject["fuse_unk"] as? Bool ?? false)

    // Normalizer (normalized added tokens are matched on normalized text, so they are built after it).
    normalizedAddedTokens = AddedTokenMatcher([])
    normalizers = try parseNormalizer(root["normalizer"], key: "normalizer")
    normalizedAddedTokens = AddedTokenMatcher(added.filter(\.normalized).map { a in
      var content = a.content
      for n in normalizers { content = n.apply(content) }
      return AddedTokenMatcher.Entry(bytes: Array(content.utf8), id: a.id, lstrip: a.entry.lstrip,
                                     rstrip: a.entry.rstrip, singleWord: a.entry.singleWord)
    })

    preTokenizer = try parsePreTokenizer(root["pre_tokenizer"], key: "pre_tokenizer")
    let hasByteLevel = preTokenizer.contains { if case .byteLevel = $0 { true } else { false } }
    if !hasByteLevel {
      throw TokenizerError("\(file): pre_tokenizer has no ByteLevel step; only byte-level BPE is supported")
    }
    templates = try parsePostProcessor(root["post_processor"], key: "post_processor")
    byteLevelDecoder = try parseDecoder(root["decoder"], key: "decoder")
  }

  private func type(of value: Any, key: String) throws -> (String, [String: Any]) {
    guard let object = value as? [String: Any], let type = object["type"] as? String else {
      throw TokenizerError("\(file): \(key) must be null or an object with a string 'type'")
    }
    return (type, object)
  }

  private func unsupported(_ key: String, _ type: String) -> TokenizerError {
    TokenizerError("\(file): \(key) type '\(type)' is not supported")
  }

  private func list(_ object: [String: Any], _ field: String, key: String) throws -> [Any] {
    guard let items = object[field] as? [Any] else {
      throw TokenizerError("\(file): \(key).\(field) must be a list")
    }
    return items
  }

  private func parseNormalizer(_ value: Any?, key: String) throws -> [TextNormalizer] {
    guard let value, !(value is NSNull) else { return [] }
    let (type, object) = try type(of: value, key: key)
    switch type {
    case "NFC": return [.nfc]
    case "Sequence":
      return try list(object, "normalizers", key: key).enumerated().flatMap { i, item in
        try parseNormalizer(item, key: "\(key).normalizers[\(i)]")
      }
    default: throw unsupported(key, type)
    }
  }

  private func parsePreTokenizer(_ value: Any?, key: String) throws -> [PreTokenizerStep] {
    guard let value, !(value is NSNull) else { return [] }
    let (type, object) = try type(of: value, key: key)
    switch type {
    case "ByteLevel":
      let useRegex = object["use_regex"] as? Bool ?? true
      let regex = try useRegex ? TokenizerRegex(pattern: TokenizerRegex.gpt2Pattern, context: "\(file): \(key)") : nil
      return [.byteLevel(addPrefixSpace: object["add_prefix_space"] as? Bool ?? true, regex: regex)]
    case "Split":
      let behavior = object["behavior"] as? String ?? "Isolated"
      guard behavior == "Isolated" else {
        throw TokenizerError("\(file): \(key) Split behavior '\(behavior)' is not supported (expected 'Isolated')")
      }
      if object["invert"] as? Bool ?? false {
        throw TokenizerError("\(file): \(key) Split with invert true is not supported")
      }
      guard let pattern = object["pattern"] as? [String: Any] else {
        throw TokenizerError("\(file): \(key).pattern must be {\"Regex\": …} or {\"String\": …}")
      }
      if let regex = pattern["Regex"] as? String {
        return [.split(try TokenizerRegex(pattern: regex, context: "\(file): \(key).pattern"))]
      }
      if let literal = pattern["String"] as? String {
        let escaped = NSRegularExpression.escapedPattern(for: literal)
        return [.split(try TokenizerRegex(pattern: escaped, context: "\(file): \(key).pattern"))]
      }
      throw TokenizerError("\(file): \(key).pattern must be {\"Regex\": …} or {\"String\": …}")
    case "Digits":
      return [.digits(individual: object["individual_digits"] as? Bool ?? false)]
    case "Sequence":
      return try list(object, "pretokenizers", key: key).enumerated().flatMap { i, item in
        try parsePreTokenizer(item, key: "\(key).pretokenizers[\(i)]")
      }
    default: throw unsupported(key, type)
    }
  }

  private func parsePostProcessor(_ value: Any?, key: String) throws -> [[[Int]?]] {
    guard let value, !(value is NSNull) else { return [] }
    let (type, object) = try type(of: value, key: key)
    switch type {
    case "ByteLevel":
      return []  // only adjusts offsets
    case "TemplateProcessing":
      guard let single = object["single"] as? [[String: Any]] else {
        throw TokenizerError("\(file): \(key).single must be a list")
      }
      let specials = object["special_tokens"] as? [String: Any] ?? [:]
      var template: [[Int]?] = []
      for (i, piece) in single.enumerated() {
        if let sequence = piece["Sequence"] as? [String: Any] {
          guard (sequence["id"] as? String) == "A" else {
            throw TokenizerError("\(file): \(key).single[\(i)]: only sequence A can appear in a single template")
          }
          template.append(nil)
        } else if let special = piece["SpecialToken"] as? [String: Any], let name = special["id"] as? String {
          guard let entry = specials[name] as? [String: Any], let ids = entry["ids"] as? [Int] else {
            throw TokenizerError("\(file): \(key).special_tokens has no ids for '\(name)'")
          }
          template.append(ids)
        } else {
          throw TokenizerError("\(file): \(key).single[\(i)] must be a Sequence or a SpecialToken")
        }
      }
      return [template]
    case "Sequence":
      return try list(object, "processors", key: key).enumerated().flatMap { i, item in
        try parsePostProcessor(item, key: "\(key).processors[\(i)]")
      }
    default: throw unsupported(key, type)
    }
  }

  private func parseDecoder(_ value: Any?, key: String) throws -> Bool {
    guard let value, !(value is NSNull) else { return false }
    let (type, _) = try type(of: value, key: key)
    guard type == "ByteLevel" else { throw unsupported(key, type) }
    return true
  }
}
