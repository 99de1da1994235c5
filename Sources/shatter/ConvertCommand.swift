import ArgumentParser
import Foundation
import LM
import Torch

struct ConvertCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "convert",
    abstract: "Convert a GGUF file (llama, qwen2) into a Hugging Face checkpoint directory.",
    discussion: """
      Writes config.json, model.safetensors (dequantised), tokenizer.json, tokenizer_config.json (with the \
      chat template) and generation_config.json, which transformers loads. Every --model option also \
      accepts a .gguf file directly.
      """)

  @Option(help: "The GGUF file to read.") var gguf: String
  @Option(help: "Directory to write (created if missing; files in it are replaced).") var out: String
  @Option(help: "Weight dtype of model.safetensors: f32 or bf16.") var dtype = "f32"
  @Flag(help: "Print one JSON object describing the result and nothing else on stdout.") var json = false

  func validate() throws {
    guard ["f32", "bf16"].contains(dtype) else { throw ValidationError("--dtype must be f32 or bf16") }
  }

  func run() throws {
    let start = DispatchTime.now().uptimeNanoseconds
    let checkpoint = try GGUFCheckpoint(url: URL(fileURLWithPath: gguf))
    try checkpoint.write(to: URL(fileURLWithPath: out), dtype: dtype == "bf16" ? .bfloat16 : .float32)
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let c = checkpoint.config
    let types = Dictionary(grouping: checkpoint.file.tensors, by: { $0.type.description }).mapValues(\.count)
    if json {
      printJSON(["out": out, "architecture": checkpoint.architecture, "tensors": checkpoint.nameMap.count,
                 "tensor_types": types, "layers": c.layers, "hidden_size": c.hiddenSize, "vocab_size": c.vocabSize,
                 "dtype": dtype, "seconds": seconds])
    } else {
      let typeList = types.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
      print("\(gguf): \(checkpoint.architecture), \(c.layers) layers, hidden \(c.hiddenSize), vocabulary \(c.vocabSize); "
        + "\(checkpoint.nameMap.count) tensors (\(typeList))")
      print("wrote \(out) (\(dtype)) in \(String(format: "%.1f", seconds)) s")
    }
  }
}

struct MergeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "merge",
    abstract: "Fold a LoRA adapter into its base model's weights: a plain Hugging Face checkpoint.",
    discussion: """
      W ← W + (α/r)·B·A for every adapted layer (transposed for GPT-2's Conv1D), as PEFT's \
      merge_and_unload. The result scores exactly as the base with the adapter, and loads in transformers \
      or any Shatter command without --adapter.
      """)

  @Option(help: "The base checkpoint directory or .gguf file (default: the adapter's base_model_name_or_path).")
  var model: String?
  @Option(help: "The LoRA adapter directory (PEFT layout).") var adapter: String
  @Option(help: "Directory to write (created if missing; files in it are replaced).") var out: String
  @Flag(help: "Print one JSON object describing the result and nothing else on stdout.") var json = false

  func run() throws {
    let loaded = try model.map { try LoadedModel($0, adapter: adapter) } ?? LoadedModel(adapter)
    let layers = Adapter.adapted(loaded.model).count
    guard let config = Adapter.config(of: loaded.model) else { throw UserError("\(adapter): carries no LoRA layers") }
    Adapter.merge(loaded.model)
    try Checkpoint.save(loaded.model, to: URL(fileURLWithPath: out), companionsFrom: loaded.directory)
    if json {
      printJSON(["out": out, "base": loaded.source, "adapter": adapter, "layers": layers, "r": config.rank,
                 "lora_alpha": config.alpha, "parameters": loaded.model.parameterCount])
    } else {
      print("merged \(adapter) (r \(config.rank), α \(config.alpha), \(layers) layers) into \(loaded.source); wrote \(out)")
    }
  }
}
