import ArgumentParser
import Foundation
import LM
import NN
import Torch

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Time training workloads; `make bench` runs these beside the same workloads in PyTorch.",
    subcommands: [MLPBench.self, TrainBench.self, GenerateBench.self, ModelGenerateBench.self, SgemmBench.self, SokobanBench.self,
                  DeviceBench.self]
  )
}

struct MLPBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "mlp",
    abstract: "Time one MLP training step: forward, cross-entropy, backward, grad-norm clip 1.0, AdamW.",
    discussion: "bench/mlp_step.py runs the identical step in PyTorch from Python for comparison.")

  @Option(help: "Examples per batch.") var batch = 64
  @Option(help: "Input features.") var inputs = 128
  @Option(help: "Hidden width of each hidden layer.") var hidden = 256
  @Option(help: "Number of hidden layers.") var layers = 2
  @Option(help: "Output classes.") var classes = 10
  @Option(help: "Timed steps.") var steps = 300
  @Option(help: "Untimed warm-up steps.") var warmup = 20
  @Option(help: "libtorch intra-op threads (0 keeps libtorch's default).") var threads = 0
  @Option(help: "Seed for initialisation and data.") var seed: UInt64 = 0

  func validate() throws {
    guard batch > 0, inputs > 0, hidden > 0, layers >= 0, classes > 1, steps > 0, warmup >= 0 else {
      throw ValidationError("sizes and steps must be positive (classes at least 2)")
    }
  }

  func run() throws {
    if threads > 0 { Torch.threads = threads }
    let gen = Generator(seed: seed)
    let model = MLP([inputs] + Array(repeating: hidden, count: layers) + [classes], activation: .relu, generator: gen)
    let params = model.trainableParameters()
    let opt = AdamW(params, learningRate: 1e-3, weightDecay: 0.01)
    let x = Tensor.randn([batch, inputs], generator: gen)
    let y = Tensor.randint(0, classes, [batch], generator: gen)
    let (seconds, loss) = timeTrainingSteps(opt, warmup: warmup, steps: steps) {
      Tensor.crossEntropy(logits: model(x), targets: y)
    }
    printJSON([
      "impl": "shatter", "steps_per_second": Double(steps) / seconds, "ms_per_step": seconds * 1000 / Double(steps),
      "final_loss": loss, "threads": Torch.threads,
    ])
  }
}

/// Runs `warmup` untimed then `steps` timed optimizer steps (zero grad, loss, backward, clip 1.0, step)
/// and returns the timed seconds and the last loss.
func timeTrainingSteps(_ opt: Optimizer, warmup: Int, steps: Int, loss: () -> Tensor) -> (Double, Double) {
  var last = 0.0
  func step() {
    opt.zeroGrad()
    let l = loss()
    l.backward()
    _ = opt.clipGradients(maxNorm: 1)
    opt.step()
    last = l.item()
  }
  for _ in 0..<warmup { step() }
  let start = DispatchTime.now().uptimeNanoseconds
  for _ in 0..<steps { step() }
  return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, last)
}

/// Peak resident memory of this process so far, in MiB.
func peakMemoryMiB() -> Double {
  var usage = rusage()
  getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
  return Double(usage.ru_maxrss) / 1024
}

struct TrainBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Time language-model training steps on random tokens (bench/gpt2_step.py is the PyTorch peer).",
    discussion: "Dropout 0, tied embeddings, AdamW (lr 3e-4, weight decay 0.1), grad-norm clip 1.0; warm-up steps are not timed.")

  @Option(help: "Architecture: gpt2, llama or qwen2.") var arch = "gpt2"
  @Option(help: "Transformer layers.") var layers = 4
  @Option(help: "Hidden size.") var dModel = 256
  @Option(help: "Attention heads.") var heads = 4
  @Option(help: "Vocabulary size.") var vocab = 2048
  @Option(help: "Sequence length.") var seq = 128
  @Option(help: "Sequences per batch.") var batch = 8
  @Option(help: "Timed steps.") var steps = 10
  @Option(help: "Untimed warm-up steps.") var warmup = 3
  @Option(help: "libtorch intra-op threads (0: the training thread plan `shatter train` uses, every core to the intra-op pool and oneDNN's products when libtorch has oneDNN; N: N threads, OpenBLAS's pool left as it is).")
  var threads = 0
  @Option(help: "Seed.") var seed: UInt64 = 0
  @Option(help: "Mixed precision: no, or bf16 (autocast the forward pass to bfloat16; float32 weights, loss and update).")
  var mixedPrecision = "no"

  func validate() throws {
    guard ["no", "bf16"].contains(mixedPrecision) else { throw ValidationError("--mixed-precision must be no or bf16") }
    guard ModelFamily(rawValue: arch) != nil else { throw ValidationError("--arch must be gpt2, llama or qwen2") }
    guard layers > 0, dModel > 0, heads > 0, dModel % heads == 0, vocab > 1, seq > 1, batch > 0, steps > 0 else {
      throw ValidationError("sizes must be positive and --d-model divisible by --heads")
    }
  }

  func run() throws {
    if threads > 0 { Torch.threads = threads }
    let gen = Generator(seed: seed)
    let config = ModelConfig(family: ModelFamily(rawValue: arch)!, vocabSize: vocab, hiddenSize: dModel, layers: layers,
                             heads: heads, intermediateSize: 4 * dModel, maxPositions: seq, tieEmbeddings: true)
    let model = Checkpoint.makeModel(config, generator: gen)
    let params = model.trainableParameters()
    let opt = AdamW(ParameterGroup.decayMatricesOnly(params, weightDecay: 0.1), learningRate: 3e-4)
    let tokens = Tensor.randint(0, vocab, [batch, seq + 1], generator: gen)
    let input = tokens.narrow(dim: 1, start: 0, length: seq), target = tokens.narrow(dim: 1, start: 1, length: seq)
    let autocast: DType? = mixedPrecision == "bf16" ? .bfloat16 : nil
    if threads == 0 { ThreadPlan.training(on: .cpu).apply() }
    let (seconds, loss) = timeTrainingSteps(opt, warmup: warmup, steps: steps) {
      let logits = try! withAutocast(autocast) { model(input) }  // float32 logits either way
      return Tensor.crossEntropy(logits: logits.reshaped([-1, vocab]), targets: target.reshaped([-1]))
    }
    printJSON(["impl": "shatter", "tokens_per_second": Double(batch * seq * steps) / seconds, "final_loss": loss,
               "peak_rss_mib": peakMemoryMiB(), "threads": Torch.threads, "parameters": model.parameterCount])
  }
}

struct GenerateBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "generate",
    abstract: "Time greedy generation with and without the KV cache on a random GPT-2.",
    discussion: "bench/hf_generate.py --arch gpt2 times Hugging Face `generate` on a random model of the same shape.")

  @Option(help: "Transformer layers.") var layers = 4
  @Option(help: "Hidden size.") var dModel = 256
  @Option(help: "Attention heads.") var heads = 4
  @Option(help: "Vocabulary size.") var vocab = 2048
  @Option(help: "Prompt tokens.") var prompt = 32
  @Option(help: "New tokens per sequence.") var newTokens = 96
  @Option(help: "Sequences generated together.") var batch = 4
  @Option(help: "Timed runs with the cache (the median is reported).") var repeats = 3
  @Option(help: "libtorch intra-op threads (0 keeps libtorch's default).") var threads = 0

  func validate() throws {
    guard layers > 0, dModel > 0, heads > 0, dModel % heads == 0, vocab > 1, prompt > 0, newTokens > 0, batch > 0,
          repeats > 0 else {
      throw ValidationError("sizes, tokens, batch and repeats must be positive and --d-model divisible by --heads")
    }
  }

  func run() throws {
    if threads > 0 { Torch.threads = threads }
    let gen = Generator(seed: 0)
    let config = ModelConfig(family: .gpt2, vocabSize: vocab, hiddenSize: dModel, layers: layers, heads: heads,
                             maxPositions: prompt + newTokens)
    let model = Checkpoint.makeModel(config, generator: gen)
    let prompts = (0..<batch).map { _ in Tensor.randint(0, vocab, [prompt], generator: gen).toArray(Int.self) }
    func timed(_ cache: Bool, _ n: Int) -> (Double, [[Int]]) {
      let start = DispatchTime.now().uptimeNanoseconds
      let out = model.generate(prompts, options: SamplingOptions(maxNewTokens: n, useCache: cache))
      return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, out)
    }
    _ = timed(true, 8)  // warm-up
    let cachedRuns = (0..<repeats).map { _ in timed(true, newTokens) }
    let cached = cachedRuns.map(\.0).sorted()[repeats / 2]
    let (uncached, uncachedOut) = timed(false, newTokens)
    let tokens = Double(batch * newTokens)
    printJSON(["impl": "shatter", "batch": batch, "tokens_per_second": tokens / cached,
               "cached_tokens_per_second": tokens / cached, "uncached_tokens_per_second": tokens / uncached,
               "speedup": uncached / cached, "identical_outputs": cachedRuns[0].1 == uncachedOut,
               "threads": Torch.threads])
  }
}

/// Greedy decoding on a real checkpoint, the workload of `shatter chat` (batch 1) and `shatter serve`
/// (several streams decoded together); bench/hf_generate.py times Hugging Face `generate` on the same
/// directory and prompts.
struct ModelGenerateBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "model-generate",
    abstract: "Time greedy generation (no stop tokens) on a checkpoint directory or .gguf file.",
    discussion: """
      Each --prompt is one row; several are decoded together (left-padded, the decode loop of `shatter serve`). \
      time to first token = prompt pass + first pick; tokens/s = new tokens of all rows over the whole call.
      """)

  @Option(help: "Checkpoint directory or .gguf file.") var model = "models/smollm2-135m-instruct"
  @Option(help: "A prompt text; repeat for a batch (one row each).") var prompt: [String] = ["The capital of France is"]
  @Option(help: "New tokens per row per timed run.") var newTokens = 128
  @Option(help: "Timed runs (the median is reported).") var repeats = 3
  @Option(help: "libtorch intra-op threads (0 keeps libtorch's default).") var threads = 0

  func validate() throws {
    guard newTokens > 1, repeats > 0 else { throw ValidationError("--new-tokens must be > 1 and --repeats > 0") }
  }

  func run() throws {
    if threads > 0 { Torch.threads = threads }
    let loaded = try LoadedModel(model)
    let ids = try prompt.map { try loaded.encodeForContext($0, reserve: newTokens) }
    let padId = loaded.tokenizer.padTokenId ?? 0
    func timed(_ n: Int) -> (Double, [[Int]]) {
      let start = DispatchTime.now().uptimeNanoseconds
      let out = loaded.model.generate(ids, options: SamplingOptions(maxNewTokens: n), padId: padId)
      return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, out)
    }
    _ = timed(8)  // warm-up: first-call allocations and libtorch's lazy initialisation
    var first: [Double] = [], whole: [Double] = []
    var tokens: [[Int]] = []
    for _ in 0..<repeats {
      first.append(timed(1).0)
      let (seconds, out) = timed(newTokens)
      whole.append(seconds)
      tokens = out
    }
    let median = { (xs: [Double]) in xs.sorted()[xs.count / 2] }
    let (ttft, total) = (median(first), median(whole))
    let count = tokens.map(\.count).reduce(0, +)
    printJSON(["impl": "shatter", "batch": ids.count, "prompt_tokens": ids.map(\.count), "new_tokens": count,
               "tokens_per_second": Double(count) / total, "ttft_ms": ttft * 1000,
               "decode_tokens_per_second": Double(count - ids.count) / Swift.max(total - ttft, 1e-9),
               "tokens": tokens, "threads": Torch.threads, "peak_rss_mib": peakMemoryMiB()])
  }
}
