import ArgumentParser
import Foundation
import NN
import Torch

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Time training workloads; `make bench` runs these beside the same workloads in PyTorch.",
    subcommands: [MLPBench.self]
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
    let tensors = params.map(\.tensor)
    var loss = 0.0
    func step() {
      opt.zeroGrad()
      let l = Tensor.crossEntropy(logits: model(x), targets: y)
      l.backward()
      clipGradNorm(tensors, maxNorm: 1)
      opt.step()
      loss = l.item()
    }
    for _ in 0..<warmup { step() }
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<steps { step() }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    printJSON([
      "impl": "shatter", "steps_per_second": Double(steps) / seconds, "ms_per_step": seconds * 1000 / Double(steps),
      "final_loss": loss, "threads": Torch.threads,
    ])
  }
}
