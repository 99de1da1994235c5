import Foundation

/// A byte-level tokenizer with no merges — 256 byte tokens plus `<|endoftext|>` — written as a Hugging
/// Face `tokenizer.json`, for models initialised from scratch when no tokenizer is given. Every text
/// encodes (one token per UTF-8 byte) and the file loads in Hugging Face `tokenizers` unchanged.
public enum ByteVocabulary {
  public static let endOfText = "<|endoftext|>"
  public static var size: Int { 257 }

  /// GPT-2's reversible byte → printable character table.
  public static let byteToUnicode: [Character] = {
    var table = [Character](repeating: " ", count: 256)
    var next = 256
    for b in 0..<256 {
      let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
      let scalar = printable ? b : { defer { next += 1 }; return next }()
      table[b] = Character(Unicode.Scalar(UInt32(scalar))!)
    }
    return table
  }()

  /// Writes tokenizer.json and tokenizer_config.json into `directory`.
  public static func write(to directory: URL) throws {
    var vocab: [String: Int] = [:]
    for (i, c) in byteToUnicode.enumerated() { vocab[String(c)] = i }
    let eos = 256
    let tokenizer: [String: Any] = [
      "version": "1.0",
      "truncation": NSNull(), "padding": NSNull(),
      "added_tokens": [[
        "id": eos, "content": endOfText, "single_word": false, "lstrip": false, "rstrip": false,
        "normalized": false, "special": true,
      ]],
      "normalizer": NSNull(),
      "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
      "post_processor": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
      "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
      "model": [
        "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
        "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
        "vocab": vocab, "merges": [String](),
      ],
    ]
    let config: [String: Any] = [
      "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": endOfText, "bos_token": endOfText,
      "pad_token": endOfText, "model_max_length": 1_000_000,
    ]
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: tokenizer, options: [.sortedKeys])
      .write(to: directory.appendingPathComponent("tokenizer.json"), options: .atomic)
    try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys, .prettyPrinted])
      .write(to: directory.appendingPathComponent("tokenizer_config.json"), options: .atomic)
  }
}
