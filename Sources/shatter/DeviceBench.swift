import ArgumentParser
import Foundation
import LM
import NN
import Torch

/// The CUDA check that scripts/device-check runs on a lent GPU machine: the model fixtures' per-token
/// log-probs on the GPU against the same model on the CPU (float32 and bfloat16), then GPT-2-124M-shaped
/// training speed with model FLOPs utilisation.
struct DeviceBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "device",
    abstract: "CUDA parity of the fixture models against the CPU, and GPT-2-124M-shaped training tokens/s with MFU.",
    discussion: """
      Parity: every directory under --fixtures holding config.json, model.safetensors and expected.json \
      (sequences scored by Hugging Face) is scored on the CPU in float32, then on --device in float32 and \
      bfloat16; the largest per-token log-prob differences are printed. Speed: AdamW steps of a GPT-2 model \
      of the given shape on random tokens, with bfloat16 weights and with float32 weights under bfloat16 \
      autocast (--mixed-precision bf16); MFU counts 6·N + 12·L·D·T FLOPs per token against \
      --peak-tflops. Without a CUDA device it says so and exits 0.
      """)

  @Option(help: "The device to check: cuda or cuda:N (cpu runs the same code on the CPU, a dry run).")
  var device = "cuda"
  @Option(help: "Folder of model fixtures (Hugging Face layout plus expected.json).")
  var fixtures = "Tests/LMTests/Fixtures/models"
  @Option(help: "GPT-2 layers for the speed run.") var layers = 12
  @Option(help: "GPT-2 hidden size.") var dModel = 768
  @Option(help: "GPT-2 attention heads.") var heads = 12
  @Option(help: "Vocabulary size.") var vocab = 50257
  @Option(help: "Sequence length.") var seq = 1024
  @Option(help: "Sequences per batch.") var batch = 8
  @Option(help: "Timed steps.") var steps = 10
  @Option(help: "Untimed warm-up steps.") var warmup = 3
  @Option(help: "The device's dense bfloat16 peak in TFLOP/s (H200: 989).") var peakTflops = 989.0
  @Flag(help: "Print one JSON object instead of text.") var json = false

  func run() throws {
    guard let target = Device(device) else { throw ValidationError("--device must be cuda, cuda:N or cpu") }
    guard target == .cpu || Torch.cudaAvailable else {
      if json { printJSON(["cuda": false]) } else { print("no CUDA device is visible: nothing to check") }
      return
    }
    var report: [String: Any] = ["cuda": target != .cpu, "device": target.description, "libtorch": Torch.version]
    var parity: [[String: Any]] = []
    for dir in try fixtureDirectories() {
      parity.append(try checkParity(dir, on: target))
    }
    report["parity"] = parity
    report["training"] = trainingSpeed(on: target, mixed: false)
    report["training_mixed_precision"] = trainingSpeed(on: target, mixed: true)
    if json { printJSON(report); return }
    print("parity: max |log p(device) − log p(cpu)| per token, same dtype on both sides (tolerances 1e-5 float32, 1e-3 bfloat16)")
    for p in parity {
      let name = (p["model"] as! String).padding(toLength: 6, withPad: " ", startingAt: 0)
      print(String(format: "  \(name) float32 %.2e  bfloat16 %.2e  (bfloat16 on the device vs float32 on the CPU %.2e; "
                   + "CPU float32 vs Hugging Face %.2e)", p["float32"] as! Double, p["bfloat16"] as! Double,
                   p["bfloat16_vs_float32"] as! Double, p["cpu_vs_hf"] as! Double))
    }
    for (key, what) in [("training", "bfloat16 weights"), ("training_mixed_precision", "float32 weights, bf16 autocast")] {
      let t = report[key] as! [String: Any]
      print(String(format: "training: GPT-2 %d layers, d=%d, T=%d, B=%d, %@: %.0f tokens/s, MFU %.1f%% of %.0f TFLOP/s",
                   layers, dModel, seq, batch, what, t["tokens_per_second"] as! Double, 100 * (t["mfu"] as! Double),
                   peakTflops))
    }
  }

  private func fixtureDirectories() throws -> [URL] {
    let root = URL(fileURLWithPath: fixtures)
    let names = try FileManager.default.contentsOfDirectory(atPath: root.path).sorted()
    return names.map { root.appendingPathComponent($0) }
      .filter { FileManager.default.fileExists(atPath: $0.appendingPathComponent("expected.json").path) }
  }

  private struct Expected: Decodable {
    let sequences: [[Int]]
    let logprobs: [[Double]]
  }

  private func checkParity(_ dir: URL, on target: Device) throws -> [String: Any] {
    let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json")))
    let batch = PaddedBatch(expected.sequences, padId: 0)
    func logProbs(_ device: Device, _ dtype: DType) throws -> Tensor {
      let model = try Checkpoint.loadModel(from: dir)
      model.move(to: device, dtype: dtype)
      return withoutGradients { model.score(batch).tokenLogProbs.to(.float64, .cpu) }
    }
    let cpu32 = try logProbs(.cpu, .float32), cpu16 = try logProbs(.cpu, .bfloat16)
    let f32 = try logProbs(target, .float32), bf16 = try logProbs(target, .bfloat16)
    let hf = Tensor(expected.logprobs.flatMap { $0 }, shape: [expected.logprobs.count, expected.logprobs[0].count])
    func maxDiff(_ a: Tensor, _ b: Tensor) -> Double { (a - b).abs().max().item() }
    return ["model": dir.lastPathComponent, "float32": maxDiff(f32, cpu32), "bfloat16": maxDiff(bf16, cpu16),
            "bfloat16_vs_float32": maxDiff(bf16, cpu32), "cpu_vs_hf": maxDiff(cpu32, hf)]
  }

  /// Training speed with bfloat16 weights, or (`mixed`) float32 weights under bfloat16 autocast.
  private func trainingSpeed(on target: Device, mixed: Bool) -> [String: Any] {
    let gen = Generator(seed: 0)
    let config = ModelConfig(family: .gpt2, vocabSize: vocab, hiddenSize: dModel, layers: layers, heads: heads,
                             intermediateSize: 4 * dModel, maxPositions: seq, tieEmbeddings: true)
    let model = Checkpoint.makeModel(config, generator: gen)
    model.move(to: target, dtype: mixed ? .float32 : .bfloat16)
    let opt = AdamW(ParameterGroup.decayMatricesOnly(model.trainableParameters(), weightDecay: 0.1), learningRate: 3e-4)
    let tokens = Tensor.randint(0, vocab, [batch, seq + 1], generator: gen).to(target)
    let input = tokens.narrow(dim: 1, start: 0, length: seq), target = tokens.narrow(dim: 1, start: 1, length: seq)
    let autocast: DType? = mixed ? .bfloat16 : nil
    ThreadPlan.training(on: model.device).apply()
    let (seconds, loss) = timeTrainingSteps(opt, warmup: warmup, steps: steps) {
      let logits = try! withAutocast(autocast, device: model.device) { model(input) }
      return Tensor.crossEntropy(logits: logits.reshaped([-1, vocab]).to(.float32), targets: target.reshaped([-1]))
    }
    let tokensPerSecond = Double(batch * seq * steps) / seconds
    let flopsPerToken = 6 * Double(model.parameterCount) + 12 * Double(layers * dModel * seq)
    return ["tokens_per_second": tokensPerSecond, "mfu": tokensPerSecond * flopsPerToken / (peakTflops * 1e12),
            "final_loss": loss, "parameters": model.parameterCount]
  }
}
