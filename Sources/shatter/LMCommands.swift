import ArgumentParser
import Foundation
import LM
import Torch

/// The tokenizer of a checkpoint directory, with errors that name what is missing.
func loadTokenizer(_ path: String) throws -> any TextTokenizer {
  if isGGUF(path) { return try GGUFCheckpoint(url: URL(fileURLWithPath: path)).tokenizer() }
  var isDir: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
    throw UserError("\(path): not a directory (expected a Hugging Face checkpoint directory or a .gguf file)")
  }
  let directory = URL(fileURLWithPath: path)
  guard FileManager.default.fileExists(atPath: directory.appendingPathComponent("tokenizer.json").path) else {
    throw UserError("\(path): no tokenizer.json (the model commands need the checkpoint's tokenizer)")
  }
  return try BPETokenizer(directory: directory)
}

/// `--device`: where the model runs, as PyTorch spells it.
extension Device: ExpressibleByArgument {
  public init?(argument: String) { self.init(argument) }
  public var defaultValueDescription: String { description }
}

/// A clear error for a CUDA device this binary or machine does not have.
func checkAvailable(_ device: Device) throws {
  guard case .cuda(let i) = device else { return }
  guard Torch.cudaAvailable else {
    throw UserError("--device \(device): this libtorch (\(Torch.version)) sees no CUDA device; "
      + "build against a CUDA libtorch (LIBTORCH=…, scripts/device-check) and run where a GPU is visible")
  }
  guard i < Torch.cudaDeviceCount else {
    throw UserError("--device \(device): only \(Torch.cudaDeviceCount) CUDA device(s) are visible")
  }
}

/// A `--model` value naming a GGUF file rather than a checkpoint directory.
func isGGUF(_ path: String) -> Bool { path.lowercased().hasSuffix(".gguf") }

/// A checkpoint directory (or a GGUF file, converted in memory) with its tokenizer, as the model
/// commands load it.
struct LoadedModel {
  /// The checkpoint directory; for a `.gguf`, a temporary one holding its tokenizer files.
  private(set) var directory: URL
  let model: any CausalLM
  let tokenizer: any TextTokenizer
  /// The base checkpoint as given (the path an adapter trained on it records as its base).
  let source: String

  /// `path`: a checkpoint directory, a `.gguf` file, or a PEFT adapter directory (its base is the
  /// `base_model_name_or_path` it names). `adapter`: a PEFT adapter directory applied on top.
  init(_ path: String, adapter: String? = nil, device: Device = .cpu) throws {
    try checkAvailable(device)
    var path = path, adapter = adapter
    if adapter == nil, let base = try Checkpoint.adapterBase(URL(fileURLWithPath: path)) {
      adapter = path
      path = base.path
    }
    directory = URL(fileURLWithPath: path)
    if isGGUF(path) {
      let gguf = try GGUFCheckpoint(url: URL(fileURLWithPath: path))
      tokenizer = try gguf.tokenizer()
      model = try gguf.loadModel()
      model.move(to: device)
      // Commands that save a derived model copy the tokenizer files from `directory`.
      let companions = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-gguf-\(getpid())")
      try gguf.writeTokenizerFiles(to: companions)
      directory = companions
    } else {
      tokenizer = try loadTokenizer(path)
      model = try Checkpoint.loadModel(from: directory)
      model.move(to: device)
    }
    source = path
    if let adapter {
      guard FileManager.default.fileExists(atPath: adapter) else { throw UserError("--adapter \(adapter) does not exist") }
      try Adapter.load(from: URL(fileURLWithPath: adapter), into: model)
    }
  }

  /// Ids of `text` as the tokenizer specifies (post-processor included), checked against the context.
  func encodeForContext(_ text: String, reserve: Int = 0) throws -> [Int] {
    let ids = tokenizer.encode(text, addSpecialTokens: true)
    if ids.isEmpty { throw UserError("the text encodes to no tokens") }
    let limit = model.config.maxPositions
    if ids.count + reserve > limit {
      throw UserError("the prompt has \(ids.count) tokens\(reserve > 0 ? " + \(reserve) new" : ""), more than the "
        + "model's context of \(limit) (max_position_embeddings / n_positions in config.json)")
    }
    return ids
  }
}

/// `--adapter DIR`: a LoRA adapter in PEFT's layout applied to the model for this command.
struct AdapterOption: ParsableArguments {
  @Option(help: "A LoRA adapter directory in PEFT's layout (adapter_config.json, adapter_model.safetensors) to apply to --model.")
  var adapter: String?
}

struct TokenizeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tokenize", abstract: "Encode text with a checkpoint's tokenizer.json (post-processor included).")

  @Option(help: "Checkpoint directory containing tokenizer.json.") var model: String
  @Option(help: "The text to encode.") var text: String
  @Flag(help: "Print one JSON object {\"tokens\":[…]} and nothing else on stdout.") var json = false

  func run() throws {
    let tokenizer = try loadTokenizer(model)
    let ids = tokenizer.encode(text, addSpecialTokens: true)
    if json {
      printJSON(["tokens": ids])
    } else {
      for id in ids { print(id, tokenizer.decode([id], skipSpecialTokens: false).debugDescription) }
    }
  }
}

struct ScoreCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "score",
    abstract: "Per-token log-probabilities of a text under a model (teacher forcing).",
    discussion: "logprobs[i] = log p(tokens[i+1] | tokens[0…i]); total is their sum, the text's log-likelihood.")

  @Option(help: "Checkpoint directory (config.json, model.safetensors, tokenizer.json), .gguf file or PEFT adapter directory.")
  var model: String
  @OptionGroup var adapter: AdapterOption
  @Option(help: "Where the model runs: cpu, cuda or cuda:N (a CUDA build of libtorch).") var device: Device = .cpu
  @Option(help: "The text to score.") var text: String
  @Flag(help: "Print one JSON object {\"tokens\",\"logprobs\",\"total\"} and nothing else on stdout.") var json = false

  func run() throws {
    let loaded = try LoadedModel(model, adapter: adapter.adapter, device: device)
    let ids = try loaded.encodeForContext(text)
    guard ids.count >= 2 else { throw UserError("the text has \(ids.count) token; scoring needs at least 2") }
    let logprobs = withoutGradients { loaded.model.score(PaddedBatch([ids], padId: 0)).tokenLogProbs }
      .toArray(Double.self)
    let total = logprobs.reduce(0, +)
    if json {
      printJSON(["tokens": ids, "logprobs": logprobs, "total": total])
    } else {
      for (i, lp) in logprobs.enumerated() {
        let piece = loaded.tokenizer.decode([ids[i + 1]], skipSpecialTokens: false)
        let shown = piece.debugDescription.padding(toLength: Swift.max(12, piece.debugDescription.count), withPad: " ", startingAt: 0)
        print(String(format: "%6d  ", ids[i + 1]) + shown + String(format: " %9.4f", lp))
      }
      print(String(format: "total log-likelihood %.4f over %d tokens", total, logprobs.count))
    }
  }
}

struct GenerateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "generate",
    abstract: "Continue a prompt with the model (KV cache; greedy at temperature 0).",
    discussion: "Stops at max-new-tokens or at an EOS id from config.json or the tokenizer.")

  @Option(help: "Checkpoint directory (config.json, model.safetensors, tokenizer.json), .gguf file or PEFT adapter directory.")
  var model: String
  @OptionGroup var adapter: AdapterOption
  @Option(help: "Where the model runs: cpu, cuda or cuda:N (a CUDA build of libtorch).") var device: Device = .cpu
  @Option(help: "The prompt text.") var prompt: String
  @Option(help: "Largest number of new tokens.") var maxNewTokens = 32
  @Option(help: "Sampling temperature; 0 picks the most likely token (greedy).") var temperature = 0.0
  @Option(help: "Keep only the k most likely tokens before sampling (0: off).") var topK = 0
  @Option(help: "Keep the smallest set of tokens whose probability reaches p (1: off).") var topP = 1.0
  @Option(help: "Seed for sampling.") var seed: UInt64 = 0
  @Flag(help: "Recompute the whole sequence each step instead of using the KV cache (for comparison).")
  var noCache = false
  @Flag(help: "Print one JSON object {\"tokens\":[new ids],\"text\":…} and nothing else on stdout.") var json = false

  func validate() throws {
    guard maxNewTokens > 0 else { throw ValidationError("--max-new-tokens must be positive") }
    guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
    guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
    guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
  }

  func run() throws {
    let loaded = try LoadedModel(model, adapter: adapter.adapter, device: device)
    let ids = try loaded.encodeForContext(prompt, reserve: maxNewTokens)
    let stops = loaded.model.stopTokens(tokenizer: loaded.tokenizer)
    let options = SamplingOptions(maxNewTokens: maxNewTokens, temperature: temperature, topK: topK > 0 ? topK : nil,
                                  topP: topP < 1 ? topP : nil, stopTokens: stops, useCache: !noCache)
    let new = loaded.model.generate([ids], options: options, padId: loaded.tokenizer.padTokenId ?? 0,
                                    generator: Generator(seed: seed))[0]
    let text = loaded.tokenizer.decode(new, skipSpecialTokens: true)
    if json { printJSON(["tokens": new, "text": text]) } else { print(prompt + text) }
  }
}
