import Foundation
import FuzzSupport
import LM

/// A `tokenizer.json` from memory, then text through it. The input is split at NUL bytes (which JSON text
/// cannot contain): `tokenizer.json`, then optionally the text to encode, then optionally a
/// `tokenizer_config.json`.
func check(_ input: UnsafeRawBufferPointer) {
  let parts = input.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false).map { Data($0) }
  let config = parts.count > 2 ? parts[2] : nil
  guard let tokenizer = try? BPETokenizer(tokenizerJSON: parts[0], config: config) else { return }
  let text = parts.count > 1 ? String(decoding: parts[1], as: UTF8.self) : "Hello, world! It's 2024: naïve café 🙂\n\t  x"
  let ids = tokenizer.encode(text, addSpecialTokens: true)
  _ = tokenizer.decode(ids, skipSpecialTokens: true)
  _ = tokenizer.decode(ids + [-1, tokenizer.vocabularySize, Int.max, Int.min], skipSpecialTokens: false)
  _ = tokenizer.decode(Array(0..<min(tokenizer.vocabularySize, 512)), skipSpecialTokens: false)
  _ = tokenizer.chatTemplate.render([ChatMessage(role: "user", content: text)], addGenerationPrompt: true)
}

@main enum Harness { static func main() { fuzz(check) } }
