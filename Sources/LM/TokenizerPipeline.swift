import Foundation

/// A regular expression from a `tokenizer.json` (a `Split` pattern or the GPT-2 `ByteLevel` one), run
/// by ICU through `NSRegularExpression`. ICU and Oniguruma (what `tokenizers` uses) agree on the
/// constructs these files use: `(?i:…)`, `\p{L}`/`\p{N}`, bounded repeats and `(?!\S)` lookahead.
struct TokenizerRegex: @unchecked Sendable {
  // NSRegularExpression is immutable after creation and documented as safe to share between threads.
  let pattern: String
  private let regex: NSRegularExpression

  /// GPT-2's pre-tokenization pattern, which `ByteLevel` uses when `use_regex` is true.
  static let gpt2Pattern =
    #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

  init(pattern: String, context: String) throws {
    self.pattern = pattern
    do {
      regex = try NSRegularExpression(pattern: pattern, options: [])
    } catch {
      throw TokenizerError("\(context): regex \(pattern.debugDescription) does not compile: \(error)")
    }
  }

  /// The pieces of `units` under `Isolated` behaviour: every match is a piece and so is every stretch
  /// between matches; empty pieces are dropped.
  func splitIsolated(_ units: ArraySlice<UInt16>) -> [ArraySlice<UInt16>] {
    if units.isEmpty { return [] }
    let text = String(decoding: units, as: UTF16.self)
    let base = units.startIndex
    var pieces: [ArraySlice<UInt16>] = []
    var last = 0
    regex.enumerateMatches(in: text, options: [], range: NSRange(location: 0, length: units.count)) { match, _, _ in
      guard let range = match?.range, range.length > 0 else { return }
      if range.location > last { pieces.append(units[(base + last)..<(base + range.location)]) }
      pieces.append(units[(base + range.location)..<(base + range.location + range.length)])
      last = range.location + range.length
    }
    if last < units.count { pieces.append(units[(base + last)..<(base + units.count)]) }
    return pieces
  }
}

/// Text normalizers applied to the stretches of input between added tokens.
enum TextNormalizer: Sendable {
  case nfc

  func apply(_ text: String) -> String {
    switch self {
    case .nfc:
      // ASCII is already in NFC; skip the Foundation call for it.
      if text.utf8.allSatisfy({ $0 < 0x80 }) { return text }
      return text.precomposedStringWithCanonicalMapping
    }
  }
}

/// One step of pre-tokenization. Pieces are UTF-16 so regex offsets can be used directly.
enum PreTokenizerStep: Sendable {
  /// `Split` with behaviour `Isolated` and `invert` false.
  case split(TokenizerRegex)
  /// `ByteLevel`: optionally a leading space, optionally GPT-2's regex split. The byte mapping itself is
  /// implicit: pieces are turned into UTF-8 bytes at the end and BPE works on bytes.
  case byteLevel(addPrefixSpace: Bool, regex: TokenizerRegex?)
  /// `Digits`: numeric characters (Rust's `char::is_numeric`, general categories Nd, Nl, No) become
  /// pieces of their own — each one alone with `individualDigits`, else each run of them — so numbers
  /// are never merged with the letters around them (SmolLM's tokenizer).
  case digits(individual: Bool)

  func apply(_ pieces: [ArraySlice<UInt16>]) -> [ArraySlice<UInt16>] {
    switch self {
    case .digits(let individual):
      return pieces.flatMap { Self.splitDigits($0, individual: individual) }
    case .split(let regex):
      return pieces.flatMap { regex.splitIsolated($0) }
    case .byteLevel(let addPrefixSpace, let regex):
      var spaced = pieces
      if addPrefixSpace {
        spaced = pieces.map { piece in
          if piece.first == 0x20 { return piece }
          return ArraySlice([0x20] + piece)
        }
      }
      guard let regex else { return spaced }
      return spaced.flatMap { regex.splitIsolated($0) }
    }
  }

  static func isNumeric(_ scalar: Unicode.Scalar) -> Bool {
    if scalar.isASCII { return scalar.value >= 0x30 && scalar.value <= 0x39 }
    switch scalar.properties.generalCategory {
    case .decimalNumber, .letterNumber, .otherNumber: return true
    default: return false
    }
  }

  static func splitDigits(_ units: ArraySlice<UInt16>, individual: Bool) -> [ArraySlice<UInt16>] {
    var pieces: [ArraySlice<UInt16>] = []
    var start = units.startIndex  // start of the current piece
    var runIsNumeric = false
    var i = units.startIndex
    while i < units.endIndex {
      var width = 1
      var value = UInt32(units[i])
      if value >= 0xD800, value < 0xDC00, i + 1 < units.endIndex, units[i + 1] >= 0xDC00, units[i + 1] < 0xE000 {
        value = 0x10000 + ((value - 0xD800) << 10) + (UInt32(units[i + 1]) - 0xDC00)
        width = 2
      }
      let numeric = Unicode.Scalar(value).map(isNumeric) ?? false
      if numeric && individual {
        if i > start { pieces.append(units[start..<i]) }
        pieces.append(units[i..<(i + width)])
        start = i + width
      } else if i > start && numeric != runIsNumeric {
        pieces.append(units[start..<i])
        start = i
      }
      runIsNumeric = numeric
      i += width
    }
    if start < units.endIndex { pieces.append(units[start..<units.endIndex]) }
    return pieces
  }
}

/// UTF-16 → UTF-8. The pieces come from Swift strings cut at regex match boundaries (whole code points),
/// so surrogates always come in pairs; a stray one would be written as U+FFFD.
func utf8Bytes(of units: ArraySlice<UInt16>) -> [UInt8] {
  var out: [UInt8] = []
  out.reserveCapacity(units.count)
  var i = units.startIndex
  while i < units.endIndex {
    var scalar = UInt32(units[i])
    i += 1
    if scalar >= 0xD800 && scalar < 0xDC00, i < units.endIndex, units[i] >= 0xDC00, units[i] < 0xE000 {
      scalar = 0x10000 + ((scalar - 0xD800) << 10) + (UInt32(units[i]) - 0xDC00)
      i += 1
    } else if scalar >= 0xD800 && scalar < 0xE000 {
      scalar = 0xFFFD
    }
    switch scalar {
    case ..<0x80:
      out.append(UInt8(scalar))
    case ..<0x800:
      out.append(UInt8(0xC0 | (scalar >> 6)))
      out.append(UInt8(0x80 | (scalar & 0x3F)))
    case ..<0x10000:
      out.append(UInt8(0xE0 | (scalar >> 12)))
      out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
      out.append(UInt8(0x80 | (scalar & 0x3F)))
    default:
      out.append(UInt8(0xF0 | (scalar >> 18)))
      out.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
      out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
      out.append(UInt8(0x80 | (scalar & 0x3F)))
    }
  }
  return out
}

/// Added tokens (`added_tokens` in `tokenizer.json`), found in text before pre-tokenization the way
/// `tokenizers` finds them: leftmost match first, the longest token among those starting there, scanning
/// on after each match; `single_word` discards a match touching word characters, `lstrip`/`rstrip` widen
/// a match over neighbouring whitespace.
struct AddedTokenMatcher: Sendable {
  struct Entry: Sendable {
    let bytes: [UInt8]
    let id: Int
    let lstrip: Bool
    let rstrip: Bool
    let singleWord: Bool
  }

  enum Segment: Equatable {
    case text(Range<Int>)
    case token(Int)
  }

  private let entries: [Entry]
  /// Entry indices by first byte, longest first.
  private let byFirstByte: [[Int]]

  var isEmpty: Bool { entries.isEmpty }

  init(_ entries: [Entry]) {
    let kept = entries.filter { !$0.bytes.isEmpty }
    var table = [[Int]](repeating: [], count: 256)
    for (i, e) in kept.enumerated() { table[Int(e.bytes[0])].append(i) }
    for b in 0..<256 { table[b].sort { kept[$0].bytes.count > kept[$1].bytes.count } }
    self.entries = kept
    byFirstByte = table
  }

  /// Splits `text` (UTF-8) into stretches of text and added tokens.
  func split(_ text: [UInt8]) -> [Segment] {
    if entries.isEmpty || text.isEmpty { return text.isEmpty ? [] : [.text(0..<text.count)] }
    var segments: [Segment] = []
    var emitted = 0  // end of the last segment written
    var i = 0
    while i < text.count {
      guard let entryIndex = longestMatch(in: text, at: i) else {
        i += 1
        continue
      }
      let entry = entries[entryIndex]
      var start = i
      var stop = i + entry.bytes.count
      i = stop
      if entry.singleWord {
        let before = start > 0 && Self.isWordScalar(Self.scalar(endingAt: start, in: text))
        let after = stop < text.count && Self.isWordScalar(Self.scalar(startingAt: stop, in: text))
        if before || after { continue }
      }
      if entry.lstrip {
        var s = start
        while s > emitted, let scalar = Self.scalar(endingAt: s, in: text), scalar.properties.isWhitespace {
          s -= Self.utf8Length(scalar)
        }
        start = max(s, emitted)
      }
      if entry.rstrip {
        while stop < text.count, let scalar = Self.scalar(startingAt: stop, in: text), scalar.properties.isWhitespace {
          stop += Self.utf8Length(scalar)
        }
        i = stop
      }
      if start > emitted { segments.append(.text(emitted..<start)) }
      segments.append(.token(entry.id))
      emitted = stop
    }
    if emitted < text.count { segments.append(.text(emitted..<text.count)) }
    return segments
  }

  private func longestMatch(in text: [UInt8], at i: Int) -> Int? {
    let candidates = byFirstByte[Int(text[i])]
    if candidates.isEmpty { return nil }
    outer: for index in candidates {
      let bytes = entries[index].bytes
      if i + bytes.count > text.count { continue }
      for k in 1..<bytes.count where text[i + k] != bytes[k] { continue outer }
      return index
    }
    return nil
  }

  /// Rust regex's `\w`: alphabetic, marks, decimal digits, connector punctuation, join controls.
  private static func isWordScalar(_ scalar: Unicode.Scalar?) -> Bool {
    guard let scalar else { return false }
    let p = scalar.properties
    if p.isAlphabetic || p.isJoinControl { return true }
    switch p.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
    default: return false
    }
  }

  private static func utf8Length(_ scalar: Unicode.Scalar) -> Int {
    switch scalar.value {
    case ..<0x80: 1
    case ..<0x800: 2
    case ..<0x10000: 3
    default: 4
    }
  }

  private static func scalar(startingAt i: Int, in text: [UInt8]) -> Unicode.Scalar? {
    var end = i + 1
    while end < text.count && text[end] & 0xC0 == 0x80 { end += 1 }
    return String(decoding: text[i..<end], as: UTF8.self).unicodeScalars.first
  }

  private static func scalar(endingAt end: Int, in text: [UInt8]) -> Unicode.Scalar? {
    guard end > 0 else { return nil }
    var start = end - 1
    while start > 0 && text[start] & 0xC0 == 0x80 { start -= 1 }
    return String(decoding: text[start..<end], as: UTF8.self).unicodeScalars.first
  }
}
