import Foundation

/// A problem with a checkpoint directory or its files; the message names the file and key.
public struct CheckpointError: Error, CustomStringConvertible {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// The model families Shatter reads from Hugging Face `config.json` (`model_type`).
public enum ModelFamily: String, Sendable, CaseIterable {
  case gpt2, llama, qwen2
}

/// The architecture hyper-parameters, read from (and written as) a Hugging Face `config.json`.
public struct ModelConfig: Sendable, Equatable {
  public var family: ModelFamily
  public var vocabSize: Int
  public var hiddenSize: Int
  public var layers: Int
  public var heads: Int
  public var kvHeads: Int
  public var intermediateSize: Int
  public var maxPositions: Int
  public var normEps: Double
  /// RoPE base (Llama/Qwen2).
  public var ropeTheta: Double
  public var tieEmbeddings: Bool
  /// Biases on the q/k/v projections (Qwen2; Llama's `attention_bias`).
  public var qkvBias: Bool
  /// GPT-2's `activation_function` (`gelu_new` is GELU with the tanh approximation).
  public var activation: String
  public var bosTokenId: Int?
  public var eosTokenIds: [Int]
  /// The original file's text, kept so saving writes back every key a loader may rely on.
  public var sourceJSON: String?

  public var headDim: Int { hiddenSize / heads }

  /// Equal architectures, whatever other keys the source files carried.
  public static func == (a: ModelConfig, b: ModelConfig) -> Bool {
    a.family == b.family && a.vocabSize == b.vocabSize && a.hiddenSize == b.hiddenSize && a.layers == b.layers
      && a.heads == b.heads && a.kvHeads == b.kvHeads && a.intermediateSize == b.intermediateSize
      && a.maxPositions == b.maxPositions && a.normEps == b.normEps && a.ropeTheta == b.ropeTheta
      && a.tieEmbeddings == b.tieEmbeddings && a.qkvBias == b.qkvBias && a.activation == b.activation
      && a.bosTokenId == b.bosTokenId && a.eosTokenIds == b.eosTokenIds
  }

  public init(family: ModelFamily, vocabSize: Int, hiddenSize: Int, layers: Int, heads: Int, kvHeads: Int? = nil,
              intermediateSize: Int? = nil, maxPositions: Int = 1024, normEps: Double? = nil, ropeTheta: Double = 10000,
              tieEmbeddings: Bool? = nil, qkvBias: Bool? = nil, activation: String = "gelu_new", bosTokenId: Int? = nil,
              eosTokenIds: [Int] = []) {
    self.family = family
    self.vocabSize = vocabSize
    self.hiddenSize = hiddenSize
    self.layers = layers
    self.heads = heads
    self.kvHeads = kvHeads ?? heads
    self.intermediateSize = intermediateSize ?? (family == .gpt2 ? 4 * hiddenSize : Self.llamaIntermediate(hiddenSize))
    self.maxPositions = maxPositions
    self.normEps = normEps ?? (family == .gpt2 ? 1e-5 : 1e-6)
    self.ropeTheta = ropeTheta
    self.tieEmbeddings = tieEmbeddings ?? (family != .llama)
    self.qkvBias = qkvBias ?? (family == .qwen2)
    self.activation = activation
    self.bosTokenId = bosTokenId
    self.eosTokenIds = eosTokenIds
  }

  /// Llama's SwiGLU width: 8/3·d rounded up to a multiple of 64.
  static func llamaIntermediate(_ d: Int) -> Int { ((8 * d / 3) + 63) / 64 * 64 }

  /// Checks the relations the model code relies on.
  public func validate(source: String = "config") throws {
    func need(_ ok: Bool, _ what: String) throws { if !ok { throw CheckpointError("\(source): \(what)") } }
    try need(vocabSize > 0 && hiddenSize > 0 && layers > 0 && heads > 0 && maxPositions > 0 && intermediateSize > 0,
             "sizes must be positive")
    try need(hiddenSize % heads == 0, "hidden size \(hiddenSize) is not divisible by \(heads) attention heads")
    try need(kvHeads > 0 && heads % kvHeads == 0, "\(heads) attention heads are not a multiple of \(kvHeads) key/value heads")
    if family != .gpt2 { try need(headDim % 2 == 0, "RoPE needs an even head dimension, got \(headDim)") }
    if family == .gpt2 {
      try need(["gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "silu"].contains(activation),
               "activation_function '\(activation)' is not supported (gelu_new, gelu, relu, silu)")
    }
  }
}

// MARK: - config.json

extension ModelConfig {
  /// Reads `config.json`; a missing key, a wrong type or an unknown `model_type` is an error naming it.
  public init(contentsOf url: URL) throws {
    guard let data = FileManager.default.contents(atPath: url.path) else {
      throw CheckpointError("\(url.path): file not found")
    }
    try self.init(json: data, source: url.path)
  }

  public init(json data: Data, source: String = "config.json") throws {
    guard let any = try? JSONSerialization.jsonObject(with: data), let obj = any as? [String: Any] else {
      throw CheckpointError("\(source): not a JSON object")
    }
    let r = JSONReader(obj: obj, source: source)
    let typeName: String = try r.require("model_type")
    guard let family = ModelFamily(rawValue: typeName) else {
      throw CheckpointError("\(source): model_type '\(typeName)' is not supported (supported: "
        + ModelFamily.allCases.map(\.rawValue).joined(separator: ", ") + ")")
    }
    let eos: [Int]
    if let list: [Int] = try r.optional("eos_token_id") { eos = list } else if let one: Int = try r.optional("eos_token_id") {
      eos = [one]
    } else { eos = [] }
    let bos: Int? = try r.optional("bos_token_id")
    switch family {
    case .gpt2:
      let d: Int = try r.require("n_embd")
      self.init(family: .gpt2, vocabSize: try r.require("vocab_size"), hiddenSize: d, layers: try r.require("n_layer"),
                heads: try r.require("n_head"), intermediateSize: try r.optional("n_inner") ?? 4 * d,
                maxPositions: try r.require("n_positions"), normEps: try r.optional("layer_norm_epsilon") ?? 1e-5,
                tieEmbeddings: try r.optional("tie_word_embeddings") ?? true,
                activation: try r.optional("activation_function") ?? "gelu_new", bosTokenId: bos, eosTokenIds: eos)
    case .llama, .qwen2:
      let act: String = try r.optional("hidden_act") ?? "silu"
      guard act == "silu" else { throw CheckpointError("\(source): hidden_act '\(act)' is not supported (silu)") }
      if let scaling = obj["rope_scaling"], !(scaling is NSNull) {
        throw CheckpointError("\(source): rope_scaling is not supported yet (found \(scaling))")
      }
      if family == .qwen2, let sliding: Bool = try r.optional("use_sliding_window"), sliding {
        throw CheckpointError("\(source): use_sliding_window=true is not supported")
      }
      let heads: Int = try r.require("num_attention_heads")
      self.init(family: family, vocabSize: try r.require("vocab_size"), hiddenSize: try r.require("hidden_size"),
                layers: try r.require("num_hidden_layers"), heads: heads,
                kvHeads: try r.optional("num_key_value_heads") ?? heads,
                intermediateSize: try r.require("intermediate_size"),
                maxPositions: try r.optional("max_position_embeddings") ?? 2048,
                normEps: try r.optional("rms_norm_eps") ?? 1e-6, ropeTheta: try r.optional("rope_theta") ?? 10000,
                tieEmbeddings: try r.optional("tie_word_embeddings") ?? (family == .qwen2 ? false : false),
                qkvBias: family == .qwen2 ? true : (try r.optional("attention_bias") ?? false),
                bosTokenId: bos, eosTokenIds: eos)
      if let headDim: Int = try r.optional("head_dim"), heads > 0, headDim != hiddenSize / heads {
        throw CheckpointError("\(source): head_dim \(headDim) differs from hidden_size/num_attention_heads")
      }
    }
    sourceJSON = String(decoding: data, as: UTF8.self)
    try validate(source: source)
  }

  /// The `config.json` object: the original file's keys with the architecture keys set from this config.
  public func jsonObject() -> [String: Any] {
    var obj: [String: Any] = [:]
    if let s = sourceJSON, let o = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] { obj = o }
    obj["model_type"] = family.rawValue
    obj["vocab_size"] = vocabSize
    obj["tie_word_embeddings"] = tieEmbeddings
    if let bos = bosTokenId { obj["bos_token_id"] = bos }
    if !eosTokenIds.isEmpty { obj["eos_token_id"] = eosTokenIds.count == 1 ? eosTokenIds[0] as Any : eosTokenIds }
    obj["torch_dtype"] = obj["torch_dtype"] ?? "float32"
    switch family {
    case .gpt2:
      obj["architectures"] = ["GPT2LMHeadModel"]
      obj["n_embd"] = hiddenSize
      obj["n_layer"] = layers
      obj["n_head"] = heads
      obj["n_inner"] = intermediateSize
      obj["n_positions"] = maxPositions
      obj["n_ctx"] = maxPositions
      obj["layer_norm_epsilon"] = normEps
      obj["activation_function"] = activation
      for k in ["resid_pdrop", "embd_pdrop", "attn_pdrop"] where obj[k] == nil { obj[k] = 0.0 }
    case .llama, .qwen2:
      obj["architectures"] = [family == .llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM"]
      obj["hidden_size"] = hiddenSize
      obj["num_hidden_layers"] = layers
      obj["num_attention_heads"] = heads
      obj["num_key_value_heads"] = kvHeads
      obj["intermediate_size"] = intermediateSize
      obj["max_position_embeddings"] = maxPositions
      obj["rms_norm_eps"] = normEps
      obj["rope_theta"] = ropeTheta
      obj["hidden_act"] = "silu"
      if family == .llama { obj["attention_bias"] = qkvBias }
      if family == .qwen2 { obj["use_sliding_window"] = false }
    }
    return obj
  }
}

/// Typed access to a JSON object with errors that name the file and key.
struct JSONReader {
  let obj: [String: Any]
  let source: String

  func optional<T>(_ key: String) throws -> T? {
    guard let v = obj[key], !(v is NSNull) else { return nil }
    if T.self == Int.self {
      guard let n = v as? NSNumber, let i = Self.integer(n) else {
        throw CheckpointError("\(source): key '\(key)' should be an integer (at most 2^53 in size), found \(v)")
      }
      return (i as! T)
    }
    if T.self == Double.self {
      guard let n = v as? NSNumber else { throw CheckpointError("\(source): key '\(key)' should be a number, found \(v)") }
      return (n.doubleValue as! T)
    }
    if T.self == [Int].self {
      guard let a = v as? [NSNumber] else { return nil }
      let ints = a.compactMap(Self.integer)
      guard ints.count == a.count else { throw CheckpointError("\(source): key '\(key)' should be a list of integers, found \(v)") }
      return (ints as! T)
    }
    guard let t = v as? T else { throw CheckpointError("\(source): key '\(key)' has the wrong type (found \(v))") }
    return t
  }

  /// A JSON number as an Int when it is a whole number JSON can hold exactly (|n| ≤ 2^53); a larger one
  /// would trap in the conversion (found by `make fuzz`), and no size of a model comes near it.
  static func integer(_ n: NSNumber) -> Int? {
    let d = n.doubleValue
    guard d == d.rounded(), abs(d) <= 9_007_199_254_740_992 else { return nil }
    return Int(d)
  }

  func require<T>(_ key: String) throws -> T {
    guard let v: T = try optional(key) else { throw CheckpointError("\(source): missing key '\(key)'") }
    return v
  }
}
