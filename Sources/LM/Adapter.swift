import Foundation
import NN
import Torch

/// A LoRA adapter's shape: which layers carry one, its rank, α and dropout (PEFT's `LoraConfig`).
public struct LoRAConfig: Sendable, Equatable {
  public var rank: Int
  public var alpha: Double
  public var dropout: Double
  /// Layer names as PEFT matches them: a layer is adapted when its dotted name equals one or ends with
  /// `.<name>`; `["all-linear"]` adapts every linear layer but the output head.
  public var targets: [String]
  /// α/√r instead of α/r (PEFT's `use_rslora`).
  public var rankStabilized: Bool

  public init(rank: Int = 8, alpha: Double = 16, dropout: Double = 0, targets: [String]? = nil,
              family: ModelFamily = .llama, rankStabilized: Bool = false) {
    self.rank = rank
    self.alpha = alpha
    self.dropout = dropout
    self.targets = targets ?? Self.defaultTargets(family)
    self.rankStabilized = rankStabilized
  }

  /// PEFT's defaults per architecture: the query and value projections.
  public static func defaultTargets(_ family: ModelFamily) -> [String] {
    switch family {
    case .gpt2: return ["c_attn"]
    case .llama, .qwen2: return ["q_proj", "v_proj"]
    }
  }

  public func validate() throws {
    guard rank > 0 else { throw CheckpointError("LoRA rank r must be positive (got \(rank))") }
    guard alpha > 0, alpha.isFinite else { throw CheckpointError("lora_alpha must be positive (got \(alpha))") }
    guard (0..<1).contains(dropout) else { throw CheckpointError("lora_dropout must be in [0, 1) (got \(dropout))") }
    guard !targets.isEmpty else { throw CheckpointError("LoRA needs at least one target module") }
  }

  func matches(_ name: String) -> Bool {
    if targets == ["all-linear"] { return true }
    return targets.contains { name == $0 || name.hasSuffix("." + $0) }
  }
}

/// LoRA adapters on a causal LM in PEFT's layout: `adapter_config.json` plus `adapter_model.safetensors`
/// with `base_model.model.<layer>.lora_A.weight` [r, in] and `…lora_B.weight` [out, r], which `peft`
/// loads onto the same base (`PeftModel.from_pretrained`) and Shatter loads onto its own.
public enum Adapter {
  public static let configFile = "adapter_config.json"
  public static let weightsFile = "adapter_model.safetensors"
  static let keyPrefix = "base_model.model."

  /// The layers that can carry an adapter, with their dotted names (the output head and the adapters' own
  /// factors excluded).
  public static func hosts(of model: any CausalLM) -> [(name: String, host: any LoRAHost)] {
    model.namedModules().compactMap { name, module in
      guard let host = module as? any LoRAHost, name != "lm_head", !name.hasSuffix(".lora_A"), !name.hasSuffix(".lora_B")
      else { return nil }
      return (name, host)
    }
  }

  /// The adapted layers.
  public static func adapted(_ model: any CausalLM) -> [(name: String, lora: LoRA)] {
    hosts(of: model).compactMap { n, h in h.lora.map { (n, $0) } }
  }

  public static func isAttached(_ model: any CausalLM) -> Bool { !adapted(model).isEmpty }

  /// Whether a parameter name is an adapter's (PEFT's names).
  public static func isAdapterParameter(_ name: String) -> Bool {
    name.hasSuffix(".lora_A.weight") || name.hasSuffix(".lora_B.weight")
  }

  /// The model's own parameters, without any adapter's.
  public static func baseParameters(_ model: any CausalLM) -> [(name: String, tensor: Tensor)] {
    model.namedParameters().filter { !isAdapterParameter($0.name) }
  }

  /// Freezes every base parameter and attaches a fresh adapter (B = 0: outputs unchanged) to each target
  /// layer; returns the adapted layers' names. A target that matches no layer is an error naming the
  /// layers there are.
  @discardableResult
  public static func attach(_ config: LoRAConfig, to model: any CausalLM, seed: UInt64 = 0) throws -> [String] {
    try config.validate()
    if isAttached(model) { throw CheckpointError("the model already carries a LoRA adapter (merge it first)") }
    let chosen = try targets(config, in: model)
    let device = model.device
    model.setRequiresGrad(false)
    let generator = Generator(seed: seed &+ 0x10A)
    for (_, host) in chosen {
      let lora = LoRA(inFeatures: host.inFeatures, outFeatures: host.outFeatures, rank: config.rank, alpha: config.alpha,
                      dropout: config.dropout, rankStabilized: config.rankStabilized, dtype: host.dtype, generator: generator)
      lora.move(to: device)
      host.lora = lora
    }
    return chosen.map(\.name)
  }

  /// The layers `config` adapts; a target that matches no layer is an error naming the layers there are.
  static func targets(_ config: LoRAConfig, in model: any CausalLM) throws -> [(name: String, host: any LoRAHost)] {
    let hosts = hosts(of: model)
    if config.targets != ["all-linear"] {
      let leafNames = Set(hosts.map { String($0.name.split(separator: ".").last ?? "") })
      for t in config.targets where !hosts.contains(where: { $0.name == t || $0.name.hasSuffix("." + t) }) {
        throw CheckpointError("LoRA target '\(t)' matches no layer of this \(model.config.family.rawValue) model "
          + "(its linear layers: \(leafNames.sorted().joined(separator: ", ")))")
      }
    }
    return hosts.filter { config.matches($0.name) }
  }

  /// The adapter's config as the model carries it (nil: no adapter).
  public static func config(of model: any CausalLM) -> LoRAConfig? {
    let layers = adapted(model)
    guard let first = layers.first?.lora else { return nil }
    let all = hosts(of: model).map(\.name)
    let names = layers.map(\.name)
    // The shortest description PEFT matches back to the same layers: the leaf names, when every layer
    // with such a leaf is adapted; the full names otherwise.
    let leaves = Array(Set(names.map { String($0.split(separator: ".").last ?? "") })).sorted()
    let byLeaf = all.filter { n in leaves.contains { n == $0 || n.hasSuffix("." + $0) } }
    return LoRAConfig(rank: first.rank, alpha: first.alpha, dropout: first.dropout,
                      targets: byLeaf == names ? leaves : names, family: model.config.family,
                      rankStabilized: first.rankStabilized)
  }

  /// Turns every adapter off (the base model) or back on.
  public static func setEnabled(_ on: Bool, in model: any CausalLM) {
    for (_, l) in adapted(model) { l.enabled = on }
  }

  /// Folds every adapter into its layer's weight (W += (α/r)·B·A) and removes it; the base parameters
  /// then train again if they did before `attach`.
  public static func merge(_ model: any CausalLM) {
    for (_, host) in hosts(of: model) { host.mergeAdapter() }
  }

  /// Takes every adapter off without folding it in: the model computes as its base again.
  public static func detach(_ model: any CausalLM) {
    for (_, host) in hosts(of: model) { host.lora = nil }
  }

  // MARK: - Files

  /// Writes `adapter_config.json` and `adapter_model.safetensors` (each atomically) in `directory`.
  /// `baseModel` is what `base_model_name_or_path` records (the base checkpoint's path).
  public static func save(_ model: any CausalLM, to directory: URL, baseModel: String?) throws {
    guard let config = config(of: model) else { throw CheckpointError("the model carries no LoRA adapter to save") }
    let fm = FileManager.default
    try fm.createDirectory(at: directory, withIntermediateDirectories: true)
    let json: [String: Any] = [
      "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.rank, "lora_alpha": config.alpha,
      "lora_dropout": config.dropout, "target_modules": config.targets, "bias": "none",
      "fan_in_fan_out": model.config.family == .gpt2, "base_model_name_or_path": baseModel ?? NSNull(),
      "inference_mode": true, "init_lora_weights": true, "use_rslora": config.rankStabilized, "use_dora": false,
      "modules_to_save": NSNull(), "layers_to_transform": NSNull(), "layers_pattern": NSNull(),
      "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](), "revision": NSNull(),
    ]
    let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    try Checkpoint.writeAtomically(data, to: directory.appendingPathComponent(configFile))
    var tensors: [String: Tensor] = [:]
    for (name, lora) in adapted(model) {
      tensors[keyPrefix + name + ".lora_A.weight"] = lora.lora_A.weight
      tensors[keyPrefix + name + ".lora_B.weight"] = lora.lora_B.weight
    }
    try Safetensors.save(tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent(weightsFile))
  }

  /// Whether `directory` holds an adapter (its `adapter_config.json`).
  public static func isAdapter(_ directory: URL) -> Bool {
    FileManager.default.fileExists(atPath: directory.appendingPathComponent(configFile).path)
  }

  /// Reads `adapter_config.json`: the adapter's shape and the base checkpoint it names. Settings Shatter
  /// does not implement (DoRA, trained biases, per-layer ranks, extra saved modules) are errors naming
  /// the key.
  public static func readConfig(_ directory: URL) throws -> (config: LoRAConfig, baseModel: String?) {
    let url = directory.appendingPathComponent(configFile)
    guard let data = FileManager.default.contents(atPath: url.path) else {
      throw CheckpointError("\(directory.path): no \(configFile) (not a PEFT adapter directory)")
    }
    guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
      throw CheckpointError("\(url.path): not a JSON object")
    }
    func fail(_ key: String, _ why: String) -> CheckpointError { CheckpointError("\(url.path): key '\(key)': \(why)") }
    let peftType = obj["peft_type"] as? String ?? "LORA"
    guard peftType.uppercased() == "LORA" else { throw fail("peft_type", "'\(peftType)' is not LORA, the only kind Shatter reads") }
    guard let r = (obj["r"] as? NSNumber)?.intValue, r > 0 else { throw fail("r", "expected a positive integer") }
    let alpha = (obj["lora_alpha"] as? NSNumber)?.doubleValue ?? 8
    let dropout = (obj["lora_dropout"] as? NSNumber)?.doubleValue ?? 0
    var targets: [String]
    switch obj["target_modules"] {
    case let list as [String]: targets = list
    case let one as String: targets = [one]
    default: throw fail("target_modules", "expected a list of module names")
    }
    if targets.count == 1, targets[0] != "all-linear", targets[0].contains(where: { "*()[]|\\^$+?".contains($0) }) {
      throw fail("target_modules", "a regular expression ('\(targets[0])') is not supported; list the module names")
    }
    if (obj["use_dora"] as? Bool) == true { throw fail("use_dora", "DoRA adapters are not supported") }
    if let bias = obj["bias"] as? String, bias != "none" { throw fail("bias", "'\(bias)': trained biases are not supported") }
    for key in ["modules_to_save", "layers_to_transform", "layer_replication"] {
      if let v = obj[key], !(v is NSNull) { throw fail(key, "not supported (must be null)") }
    }
    for key in ["rank_pattern", "alpha_pattern"] {
      if let v = obj[key] as? [String: Any], !v.isEmpty { throw fail(key, "per-layer ranks and alphas are not supported") }
    }
    let config = LoRAConfig(rank: r, alpha: alpha, dropout: dropout, targets: targets,
                            rankStabilized: (obj["use_rslora"] as? Bool) ?? false)
    return (config, obj["base_model_name_or_path"] as? String)
  }

  /// Attaches the adapter in `directory` to `model` (which must not carry one) and loads its weights.
  /// Keys may carry PEFT's adapter name (`lora_A.default.weight`); every missing, unexpected or misshapen
  /// tensor is an error naming the file and key, found before anything is attached.
  public static func load(from directory: URL, into model: any CausalLM) throws {
    let (config, _) = try readConfig(directory)
    try config.validate()
    var expected: [String: [Int]] = [:]
    for (name, host) in try targets(config, in: model) {
      expected[name + ".lora_A.weight"] = [config.rank, host.inFeatures]
      expected[name + ".lora_B.weight"] = [host.outFeatures, config.rank]
    }
    let weights = try readWeights(directory, expected: expected)
    try attach(config, to: model)
    copy(weights, into: model)
  }

  /// Loads the weights in `directory` into the adapters `model` already carries (resuming a run).
  public static func restore(from directory: URL, into model: any CausalLM) throws {
    var expected: [String: [Int]] = [:]
    for (name, l) in adapted(model) {
      expected[name + ".lora_A.weight"] = l.lora_A.weight.shape
      expected[name + ".lora_B.weight"] = l.lora_B.weight.shape
    }
    copy(try readWeights(directory, expected: expected), into: model)
  }

  static func copy(_ weights: [String: Tensor], into model: any CausalLM) {
    withoutGradients {
      for (name, p) in model.namedParameters() where isAdapterParameter(name) { p.copy_(weights[name]!) }
    }
  }

  /// `adapter_model.safetensors` by parameter name, checked against the expected names and shapes.
  static func readWeights(_ directory: URL, expected: [String: [Int]]) throws -> [String: Tensor] {
    let file = directory.appendingPathComponent(weightsFile)
    guard FileManager.default.fileExists(atPath: file.path) else { throw CheckpointError("\(directory.path): no \(weightsFile)") }
    var byName: [String: Tensor] = [:]
    for (key, t) in try Safetensors.load(file) {
      let k = (key.hasPrefix(keyPrefix) ? String(key.dropFirst(keyPrefix.count)) : key)
        .replacingOccurrences(of: ".lora_A.default.weight", with: ".lora_A.weight")
        .replacingOccurrences(of: ".lora_B.default.weight", with: ".lora_B.weight")
      byName[k] = t
    }
    var problems: [String] = []
    for (name, shape) in expected.sorted(by: { $0.key < $1.key }) {
      guard let t = byName[name] else { problems.append("missing tensor '\(keyPrefix + name)'"); continue }
      if t.shape != shape { problems.append("tensor '\(keyPrefix + name)' has shape \(t.shape) where the model needs \(shape)") }
    }
    for k in byName.keys.sorted() where expected[k] == nil { problems.append("unexpected tensor '\(keyPrefix + k)'") }
    guard problems.isEmpty else {
      let shown = problems.prefix(5).joined(separator: "; ")
      throw CheckpointError("\(file.path): \(shown)\(problems.count > 5 ? " (and \(problems.count - 5) more)" : "")")
    }
    return byName
  }
}
