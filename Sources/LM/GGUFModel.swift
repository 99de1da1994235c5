import Foundation
import NN
import Torch

/// A GGUF model seen as a Hugging Face checkpoint: `config.json` fields from the metadata, tensors under
/// the names the model families load (llama.cpp's Q/K row permutation undone for Llama), and the
/// tokenizer files rebuilt from `tokenizer.ggml.*`. Everything is checked when this is built, so a file
/// Shatter cannot run is refused before any tensor is dequantised.
public struct GGUFCheckpoint {
  public let file: GGUFFile
  public let config: ModelConfig
  /// `general.architecture`: `llama` or `qwen2`.
  public let architecture: String
  /// GGUF tensor name → Hugging Face name, for every tensor the model needs.
  public let nameMap: [(gguf: String, hf: String)]

  var path: String { file.path }

  public init(url: URL) throws { try self.init(file: GGUFFile(url: url)) }

  public init(file: GGUFFile) throws {
    self.file = file
    let path = file.path
    guard let arch = try file.optionalString("general.architecture") else {
      throw GGUFError(path: path, subject: "key 'general.architecture'", "missing")
    }
    guard arch == "llama" || arch == "qwen2" else {
      throw GGUFError(path: path, subject: "key 'general.architecture'",
                      "architecture '\(arch)' is not supported (supported: llama, qwen2)")
    }
    architecture = arch
    func key(_ k: String) -> String { "\(arch).\(k)" }
    for unsupported in ["rope.scaling.type", "rope.scaling.factor"] {
      if let v = file.metadata[key(unsupported)], v.string != "none", v.double != 1 {
        throw GGUFError(path: path, subject: "key '\(key(unsupported))'", "RoPE scaling is not supported yet")
      }
    }
    if file.info("rope_freqs.weight") != nil {
      throw GGUFError(path: path, subject: "tensor 'rope_freqs.weight'",
                      "per-frequency RoPE scaling (Llama 3.1 style) is not supported yet")
    }
    let hidden = try file.requireInt(key("embedding_length"))
    let heads = try file.requireInt(key("attention.head_count"))
    let layers = try file.requireInt(key("block_count"))
    let tokens = file.metadata["tokenizer.ggml.tokens"]?.array
    guard let vocab = try file.optionalInt(key("vocab_size")) ?? tokens?.count
      ?? file.info("token_embd.weight")?.shape.first else {
      throw GGUFError(path: path, subject: "key '\(key("vocab_size"))'", "missing, and no tokenizer.ggml.tokens to count")
    }
    let tied = file.info("output.weight") == nil
    var eos: [Int] = []
    if let e = try file.optionalInt("tokenizer.ggml.eos_token_id") { eos = [e] }
    var config = ModelConfig(
      family: arch == "llama" ? .llama : .qwen2, vocabSize: vocab, hiddenSize: hidden, layers: layers, heads: heads,
      kvHeads: try file.optionalInt(key("attention.head_count_kv")) ?? heads,
      intermediateSize: try file.requireInt(key("feed_forward_length")),
      maxPositions: try file.optionalInt(key("context_length")) ?? 2048,
      normEps: try file.optionalDouble(key("attention.layer_norm_rms_epsilon")) ?? 1e-6,
      ropeTheta: try file.optionalDouble(key("rope.freq_base")) ?? 10000, tieEmbeddings: tied,
      qkvBias: file.info("blk.0.attn_q.bias") != nil,
      bosTokenId: try file.optionalInt("tokenizer.ggml.bos_token_id"), eosTokenIds: eos)
    // The metadata stores float32; write the decimal a person would have written (1e-05, not 9.99e-06).
    config.normEps = Double(String(Float(config.normEps))) ?? config.normEps
    config.ropeTheta = Double(String(Float(config.ropeTheta))) ?? config.ropeTheta
    try config.validate(source: path)
    if let rope = try file.optionalInt(key("rope.dimension_count")), rope != config.headDim {
      throw GGUFError(path: path, subject: "key '\(key("rope.dimension_count"))'",
                      "partial rotary (\(rope) of \(config.headDim) dimensions) is not supported")
    }
    self.config = config

    var map: [(String, String)] = [("token_embd.weight", "model.embed_tokens.weight"),
                                   ("output_norm.weight", "model.norm.weight")]
    if !tied { map.append(("output.weight", "lm_head.weight")) }
    let perLayer = [
      ("attn_norm.weight", "input_layernorm.weight"), ("ffn_norm.weight", "post_attention_layernorm.weight"),
      ("attn_q.weight", "self_attn.q_proj.weight"), ("attn_k.weight", "self_attn.k_proj.weight"),
      ("attn_v.weight", "self_attn.v_proj.weight"), ("attn_output.weight", "self_attn.o_proj.weight"),
      ("ffn_gate.weight", "mlp.gate_proj.weight"), ("ffn_up.weight", "mlp.up_proj.weight"),
      ("ffn_down.weight", "mlp.down_proj.weight"),
    ]
    let biases = [("attn_q.bias", "self_attn.q_proj.bias"), ("attn_k.bias", "self_attn.k_proj.bias"),
                  ("attn_v.bias", "self_attn.v_proj.bias")]
    // Every layer needs its tensors in the table: a block count beyond what the table can hold is refused
    // before the name map is built for it (a crafted count would otherwise make that map enormous).
    let needed = perLayer.count + (config.qkvBias ? biases.count : 0)
    guard layers <= (file.tensors.count - map.count) / needed else {
      throw GGUFError(path: path, subject: "key '\(key("block_count"))'",
                      "\(layers) layers need \(needed) tensors each, but the file lists \(file.tensors.count) tensors in all")
    }
    for l in 0..<layers {
      for (g, h) in perLayer + (config.qkvBias ? biases : []) { map.append(("blk.\(l).\(g)", "model.layers.\(l).\(h)")) }
    }
    let known = Set(map.map(\.0))
    for (g, _) in map where file.info(g) == nil {
      throw GGUFError(path: path, subject: "tensor '\(g)'", "missing (a \(arch) model with \(layers) layers needs it)")
    }
    for t in file.tensors where !known.contains(t.name) {
      throw GGUFError(path: path, subject: "tensor '\(t.name)'", "unexpected for a \(arch) model")
    }
    nameMap = map.map { (gguf: $0.0, hf: $0.1) }
  }

  /// One tensor dequantised to float32 under its Hugging Face name's layout.
  public func tensor(gguf name: String) throws -> Tensor {
    var t = try file.tensor(name)
    if architecture == "llama" {
      // convert_hf_to_gguf reorders each head's q/k rows from rotate-half pairs (i, i + d/2) to adjacent
      // pairs (2i, 2i + 1), GGML's RoPE layout; Shatter's RoPE is Hugging Face's, so put them back.
      if name.hasSuffix("attn_q.weight") || name.hasSuffix("attn_q.bias") {
        t = Self.unpermute(t, heads: config.heads)
      } else if name.hasSuffix("attn_k.weight") || name.hasSuffix("attn_k.bias") {
        t = Self.unpermute(t, heads: config.kvHeads)
      }
    }
    return t
  }

  /// Rows (h, d/2, 2) → (h, 2, d/2): the inverse of llama.cpp's `permute`.
  static func unpermute(_ w: Tensor, heads: Int) -> Tensor {
    let rows = w.size(0)
    let rest = Array(w.shape.dropFirst())
    return w.view([heads, rows / heads / 2, 2] + rest).transposed(1, 2).reshaped(w.shape)
  }

  /// Every tensor under its Hugging Face name (float32, or converted to `dtype`).
  public func tensors(dtype: DType = .float32) throws -> [String: Tensor] {
    var out: [String: Tensor] = [:]
    for (g, h) in nameMap {
      let t = try tensor(gguf: g)
      out[h] = dtype == .float32 ? t : t.to(dtype)
    }
    return out
  }

  /// The model with the file's weights, without writing anything to disk.
  public func loadModel(dtype: DType = .float32) throws -> any CausalLM {
    let model = Checkpoint.makeModel(config, dtype: dtype)
    let tensors = try tensors(dtype: dtype).mapValues { (tensor: $0, file: file.url.lastPathComponent) }
    try Checkpoint.assign(tensors, to: model, source: path)
    return model
  }

  public func tokenizer() throws -> BPETokenizer {
    try BPETokenizer(tokenizerJSON: tokenizerJSON(), config: tokenizerConfigJSON())
  }

  /// Writes a Hugging Face directory: config.json, model.safetensors, tokenizer.json,
  /// tokenizer_config.json and generation_config.json, each atomically.
  public func write(to directory: URL, dtype: DType = .float32) throws {
    guard dtype == .float32 || dtype == .bfloat16 || dtype == .float16 else {
      throw CheckpointError("convert: dtype \(dtype) is not a floating-point checkpoint type")
    }
    let fm = FileManager.default
    try fm.createDirectory(at: directory, withIntermediateDirectories: true)
    var configObject = config.jsonObject()
    configObject["torch_dtype"] = dtype == .float32 ? "float32" : dtype == .bfloat16 ? "bfloat16" : "float16"
    if let pad = try file.optionalInt("tokenizer.ggml.padding_token_id") { configObject["pad_token_id"] = pad }
    if config.family == .llama { configObject["mlp_bias"] = false }
    try Checkpoint.writeAtomically(try JSONSerialization.data(withJSONObject: configObject, options: [.prettyPrinted, .sortedKeys]),
                                   to: directory.appendingPathComponent("config.json"))
    try Safetensors.save(try tensors(dtype: dtype), metadata: ["format": "pt"],
                         to: directory.appendingPathComponent("model.safetensors"))
    try writeTokenizerFiles(to: directory)
  }

  /// The tokenizer and generation files alone, for a model derived from this file to carry (training
  /// from a `.gguf` saves checkpoints with the companions of the directory it came from).
  public func writeTokenizerFiles(to directory: URL) throws {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    try Checkpoint.writeAtomically(try tokenizerJSON(), to: directory.appendingPathComponent("tokenizer.json"))
    try Checkpoint.writeAtomically(try tokenizerConfigJSON(), to: directory.appendingPathComponent("tokenizer_config.json"))
    try Checkpoint.writeAtomically(try generationConfigJSON(), to: directory.appendingPathComponent("generation_config.json"))
  }

  // MARK: tokenizer

  /// The vocabulary strings and their GGML token types (1 normal, 2 unknown, 3 control, 4 user-defined,
  /// 5 unused, 6 byte).
  func vocabulary() throws -> (tokens: [String], types: [Int]) {
    let key = "tokenizer.ggml.tokens"
    guard let value = file.metadata[key] else { throw GGUFError(path: path, subject: "key '\(key)'", "missing") }
    guard case .array(.string, let items) = value else {
      throw GGUFError(path: path, subject: "key '\(key)'", "expected an ARRAY of STRING, found \(value.typeName)")
    }
    let tokens = items.compactMap(\.string)
    var types = [Int](repeating: 1, count: tokens.count)
    if let t = file.metadata["tokenizer.ggml.token_type"] {
      guard let list = t.array, list.count == tokens.count, list.allSatisfy({ $0.int != nil }) else {
        throw GGUFError(path: path, subject: "key 'tokenizer.ggml.token_type'",
                        "expected \(tokens.count) integers, one per token")
      }
      types = list.map { $0.int ?? 1 }
    }
    return (tokens, types)
  }

  func tokenId(_ key: String, count: Int) throws -> Int? {
    guard let id = try file.optionalInt(key) else { return nil }
    guard id >= 0, id < count else {
      throw GGUFError(path: path, subject: "key '\(key)'", "token id \(id) is outside the vocabulary of \(count)")
    }
    return id
  }

  /// Split patterns of the `tokenizer.ggml.pre` names whose Hugging Face form is Split + ByteLevel.
  static let splitPatterns: [String: String] = [
    "llama-bpe": #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
    "qwen2": #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
  ]

  func preTokenizer() throws -> [String: Any] {
    let pre = try file.optionalString("tokenizer.ggml.pre") ?? "default"
    let byteLevel: [String: Any] = ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true]
    switch pre {
    case "smollm":
      return ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel]]
    case "default", "gpt-2", "gpt2":
      return byteLevel
    default:
      guard let pattern = Self.splitPatterns[pre] else {
        throw GGUFError(path: path, subject: "key 'tokenizer.ggml.pre'", "pre-tokenizer '\(pre)' is not supported "
          + "(supported: smollm, gpt-2, " + Self.splitPatterns.keys.sorted().joined(separator: ", ") + ")")
      }
      var plain = byteLevel
      plain["use_regex"] = false
      return ["type": "Sequence", "pretokenizers": [
        ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false], plain,
      ]]
    }
  }

  /// `tokenizer.json` for byte-level BPE (`tokenizer.ggml.model` = `gpt2`): the vocabulary and merges as
  /// written, control and user-defined tokens as added tokens, the pre-tokenizer named by
  /// `tokenizer.ggml.pre`, and BOS prepended by the post-processor when `add_bos_token` says so.
  public func tokenizerJSON() throws -> Data {
    let model = try file.optionalString("tokenizer.ggml.model") ?? "gpt2"
    guard model == "gpt2" else {
      throw GGUFError(path: path, subject: "key 'tokenizer.ggml.model'",
                      "tokenizer '\(model)' is not supported (byte-level BPE 'gpt2' only)")
    }
    let (tokens, types) = try vocabulary()
    var vocab: [String: Int] = [:]
    vocab.reserveCapacity(tokens.count)
    for (i, t) in tokens.enumerated() where vocab[t] == nil { vocab[t] = i }
    let mergesKey = "tokenizer.ggml.merges"
    guard let mergeValue = file.metadata[mergesKey], case .array(.string, let mergeItems) = mergeValue else {
      throw GGUFError(path: path, subject: "key '\(mergesKey)'", "missing or not an ARRAY of STRING")
    }
    let merges = mergeItems.compactMap(\.string)
    var added: [[String: Any]] = []
    for (i, t) in tokens.enumerated() where types[i] == 3 || types[i] == 4 {
      added.append(["id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": types[i] == 4, "special": types[i] == 3])
    }
    var root: [String: Any] = [
      "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added, "normalizer": NSNull(),
      "pre_tokenizer": try preTokenizer(),
      "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
      "model": [
        "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
        "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
        "vocab": vocab, "merges": merges,
      ] as [String: Any],
    ]
    let byteLevelPost: [String: Any] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true]
    if try file.optionalBool("tokenizer.ggml.add_bos_token") ?? false,
       let bos = try tokenId("tokenizer.ggml.bos_token_id", count: tokens.count) {
      let name = tokens[bos]
      let special: [String: Any] = ["SpecialToken": ["id": name, "type_id": 0]]
      root["post_processor"] = ["type": "Sequence", "processors": [byteLevelPost, [
        "type": "TemplateProcessing",
        "single": [special, ["Sequence": ["id": "A", "type_id": 0]]],
        "pair": [special, ["Sequence": ["id": "A", "type_id": 0]], ["SpecialToken": ["id": name, "type_id": 1]],
                 ["Sequence": ["id": "B", "type_id": 1]]],
        "special_tokens": [name: ["id": name, "ids": [bos], "tokens": [name]]],
      ] as [String: Any]]]
    } else {
      root["post_processor"] = byteLevelPost
    }
    return try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])
  }

  /// `tokenizer_config.json`: special-token strings, the chat template, the context length.
  public func tokenizerConfigJSON() throws -> Data {
    let (tokens, _) = try vocabulary()
    var obj: [String: Any] = [
      "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false,
      "model_max_length": config.maxPositions,
      "add_bos_token": try file.optionalBool("tokenizer.ggml.add_bos_token") ?? false,
      "add_eos_token": try file.optionalBool("tokenizer.ggml.add_eos_token") ?? false,
    ]
    for (name, key) in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("pad_token", "padding_token_id"),
                        ("unk_token", "unknown_token_id")] {
      if let id = try tokenId("tokenizer.ggml.\(key)", count: tokens.count) { obj[name] = tokens[id] }
    }
    if let template = try file.optionalString("tokenizer.chat_template") { obj["chat_template"] = template }
    return try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
  }

  public func generationConfigJSON() throws -> Data {
    var obj: [String: Any] = ["_from_model_config": true]
    if let bos = config.bosTokenId { obj["bos_token_id"] = bos }
    if let eos = config.eosTokenIds.first { obj["eos_token_id"] = eos }
    if let pad = try file.optionalInt("tokenizer.ggml.padding_token_id") { obj["pad_token_id"] = pad }
    return try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
  }
}
