import Foundation
import NN
import Torch

/// Hugging Face checkpoint directories: `config.json` plus `model.safetensors` or shards named by
/// `model.safetensors.index.json`; tokenizer and generation files travel alongside.
public enum Checkpoint {
  /// Files copied unchanged from a source checkpoint when saving a model derived from it.
  public static let companionFiles = [
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "vocab.json", "merges.txt",
  ]

  /// A freshly initialised model of the config's family.
  public static func makeModel(_ config: ModelConfig, dtype: DType = .float32, generator: Generator? = nil) -> any CausalLM {
    switch config.family {
    case .gpt2: return GPT2LM(config, dtype: dtype, generator: generator)
    case .llama, .qwen2: return LlamaLM(config, dtype: dtype, generator: generator)
    }
  }

  /// Reads the model in `directory` (or a `.gguf` file, converted in memory, so every option that names
  /// a model accepts one); every problem is an error naming the file and key.
  ///
  /// A PEFT adapter directory (an `adapter_config.json` and no `config.json`) loads its
  /// `base_model_name_or_path` with the adapter attached.
  public static func loadModel(from directory: URL, dtype: DType = .float32) throws -> any CausalLM {
    if directory.pathExtension.lowercased() == "gguf" { return try GGUFCheckpoint(url: directory).loadModel(dtype: dtype) }
    if let base = try adapterBase(directory) {
      let model = try loadModel(from: base, dtype: dtype)
      try Adapter.load(from: directory, into: model)
      return model
    }
    let config = try ModelConfig(contentsOf: directory.appendingPathComponent("config.json"))
    let model = makeModel(config, dtype: dtype)
    let tensors = try loadTensors(from: directory)
    try assign(tensors, to: model, source: directory.path)
    return model
  }

  /// All tensors of a single-file or sharded checkpoint, each with the file it came from.
  public static func loadTensors(from directory: URL) throws -> [String: (tensor: Tensor, file: String)] {
    let fm = FileManager.default
    let single = directory.appendingPathComponent("model.safetensors")
    let index = directory.appendingPathComponent("model.safetensors.index.json")
    var files: [URL]
    if fm.fileExists(atPath: single.path) {
      files = [single]
    } else if fm.fileExists(atPath: index.path) {
      guard let data = fm.contents(atPath: index.path),
        let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        let map = obj["weight_map"] as? [String: String]
      else { throw CheckpointError("\(index.path): expected a JSON object with a 'weight_map' of tensor → file") }
      files = Set(map.values).sorted().map { directory.appendingPathComponent($0) }
      for f in files where !fm.fileExists(atPath: f.path) {
        throw CheckpointError("\(index.path): names shard '\(f.lastPathComponent)', which does not exist")
      }
    } else {
      throw CheckpointError("\(directory.path): no model.safetensors or model.safetensors.index.json")
    }
    var out: [String: (Tensor, String)] = [:]
    for f in files {
      for (name, t) in try Safetensors.load(f) { out[name] = (t, f.lastPathComponent) }
    }
    return out
  }

  /// Maps checkpoint keys onto the model's parameters (GPT-2 files saved without the `transformer.`
  /// prefix are accepted; attention-mask buffers and a tied head's copy are ignored) and copies them in.
  public static func assign(_ tensors: [String: (tensor: Tensor, file: String)], to model: any CausalLM, source: String) throws {
    var byKey = tensors
    if model.config.family == .gpt2 {
      for (k, v) in tensors where !k.hasPrefix("transformer.") && k != "lm_head.weight" {
        byKey.removeValue(forKey: k)
        byKey["transformer." + k] = v
      }
      for k in byKey.keys where k.hasSuffix(".attn.bias") || k.hasSuffix(".attn.masked_bias") { byKey.removeValue(forKey: k) }
    }
    if model.config.tieEmbeddings { byKey.removeValue(forKey: "lm_head.weight") }
    for k in byKey.keys where k.hasSuffix("rotary_emb.inv_freq") { byKey.removeValue(forKey: k) }

    var problems: [String] = []
    let params = Adapter.baseParameters(model)
    for (name, p) in params {
      guard let (t, file) = byKey[name] else {
        problems.append("missing tensor '\(name)'")
        continue
      }
      if t.shape != p.shape {
        problems.append("\(file): tensor '\(name)' has shape \(t.shape) but config.json implies \(p.shape)")
      }
    }
    let expected = Set(params.map(\.name))
    for k in byKey.keys.sorted() where !expected.contains(k) {
      problems.append("\(byKey[k]!.file): unexpected tensor '\(k)' for a \(model.config.family.rawValue) model")
    }
    guard problems.isEmpty else {
      let shown = problems.prefix(5).joined(separator: "; ")
      throw CheckpointError("\(source): \(shown)\(problems.count > 5 ? " (and \(problems.count - 5) more)" : "")")
    }
    withoutGradients { for (name, p) in params { p.copy_(byKey[name]!.tensor) } }
  }

  /// For an adapter directory (no `config.json`, an `adapter_config.json`): the base checkpoint it names,
  /// as given or relative to the adapter's parent directory. Nil for any other directory.
  public static func adapterBase(_ directory: URL) throws -> URL? {
    let fm = FileManager.default
    guard Adapter.isAdapter(directory), !fm.fileExists(atPath: directory.appendingPathComponent("config.json").path) else {
      return nil
    }
    guard let base = try Adapter.readConfig(directory).baseModel, !base.isEmpty else {
      throw CheckpointError("\(directory.appendingPathComponent(Adapter.configFile).path): key 'base_model_name_or_path' "
        + "is empty; give the base with --model and the adapter with --adapter")
    }
    let candidates = [URL(fileURLWithPath: base), directory.deletingLastPathComponent().appendingPathComponent(base)]
    guard let found = candidates.first(where: { fm.fileExists(atPath: $0.path) }) else {
      throw CheckpointError("\(directory.appendingPathComponent(Adapter.configFile).path): key 'base_model_name_or_path': "
        + "'\(base)' is not a directory or file here; give the base with --model and the adapter with --adapter")
    }
    return found
  }

  /// A frozen copy of `model` as it computes now (adapters folded into the copy's weights): a reference
  /// policy that later updates of `model` leave alone.
  public static func frozenCopy(of model: any CausalLM) -> any CausalLM {
    let copy = makeModel(model.config, dtype: model.dtype)
    copy.move(to: model.device)
    let own = Dictionary(uniqueKeysWithValues: Adapter.baseParameters(model))
    withoutGradients { for (name, p) in copy.namedParameters() { p.copy_(own[name]!) } }
    let adapters = Dictionary(uniqueKeysWithValues: Adapter.adapted(model))
    for (name, host) in Adapter.hosts(of: copy) {
      if let lora = adapters[name], lora.enabled { host.fold(lora) }
    }
    copy.setRequiresGrad(false)
    return copy
  }

  /// Writes `config.json` and `model.safetensors` (each atomically) so `transformers` loads the result;
  /// companion files (tokenizer, generation config) are copied from `companionsFrom` when given. A model
  /// that carries a LoRA adapter is saved as the adapter alone (PEFT's layout, `Adapter.save`), recording
  /// `baseModel` as its base.
  public static func save(_ model: any CausalLM, to directory: URL, companionsFrom source: URL? = nil,
                          baseModel: String? = nil) throws {
    let fm = FileManager.default
    try fm.createDirectory(at: directory, withIntermediateDirectories: true)
    if Adapter.isAttached(model) {
      try Adapter.save(model, to: directory, baseModel: baseModel)
    } else {
      let config = try JSONSerialization.data(withJSONObject: model.config.jsonObject(), options: [.prettyPrinted, .sortedKeys])
      try writeAtomically(config, to: directory.appendingPathComponent("config.json"))
      try model.save(to: directory.appendingPathComponent("model.safetensors"), metadata: ["format": "pt"])
    }
    if let source, source.standardizedFileURL != directory.standardizedFileURL {
      for name in companionFiles {
        let from = source.appendingPathComponent(name)
        guard let data = fm.contents(atPath: from.path) else { continue }
        try writeAtomically(data, to: directory.appendingPathComponent(name))
      }
    }
  }

  /// Loads a checkpoint written by `save` back into the same model: its adapter when it carries one, else
  /// every weight.
  public static func restore(_ model: any CausalLM, from directory: URL) throws {
    if Adapter.isAttached(model) {
      try Adapter.restore(from: directory, into: model)
    } else {
      try assign(loadTensors(from: directory), to: model, source: directory.path)
    }
  }

  static func writeAtomically(_ data: Data, to url: URL) throws {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
    try data.write(to: tmp)
    if rename(tmp.path, url.path) != 0 {
      try? FileManager.default.removeItem(at: tmp)
      throw CheckpointError("\(url.path): could not replace the file (errno \(errno))")
    }
  }
}
