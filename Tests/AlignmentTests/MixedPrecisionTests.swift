import Foundation
import Testing
import Torch
@testable import Alignment
@testable import LM

/// SFT under bf16 mixed precision follows the float32 run within bfloat16's rounding, for GPT-2 and Llama, and
/// leaves the weights in float32; the losses differ from float32's (autocast was on) but not by much.
@Test(arguments: [ModelFamily.gpt2, .llama])
func mixedPrecisionTrainingTracksFloat32AndKeepsFloat32Weights(family: ModelFamily) throws {
  let config = ModelConfig(family: family, vocabSize: 24, hiddenSize: 32, layers: 2, heads: 4, maxPositions: 16)
  let examples = (0..<8).map { i in
    TokenSequence(tokens: [1, 2 + i % 5, 3 + i % 7, 4 + i % 3, 5, 6 + i % 4], targets: [false, false, true, true, true, true])
  }
  func run(_ precision: DType?) throws -> ([Double], any CausalLM) {
    let model = Checkpoint.makeModel(config, generator: Generator(seed: 3))
    var o = TrainerOptions()
    o.batchSize = 4
    o.steps = 8
    o.learningRate = 1e-2
    o.seed = 5
    o.mixedPrecision = precision
    let s = try Trainer(model: model, method: SFTMethod(padId: 0), examples: examples, options: o).train()
    return (s.lossHistory, model)
  }
  let (exact, _) = try run(nil)
  let (mixed, model) = try run(.bfloat16)
  #expect(mixed.count == exact.count)
  for (a, b) in zip(mixed, exact) { #expect(Swift.abs(a - b) <= 0.02 * b, "\(mixed) vs \(exact)") }
  #expect(zip(mixed, exact).contains { Swift.abs($0 - $1) > 1e-6 }, "identical to float32: autocast was not applied")
  #expect(mixed.last! < mixed.first! * 0.8)
  #expect(model.namedParameters().allSatisfy { $0.tensor.dtype == .float32 })

  // float16 cannot autocast on the CPU: the run stops before step 1 with the reason.
  let model16 = Checkpoint.makeModel(config, generator: Generator(seed: 3))
  var o = TrainerOptions()
  o.steps = 1
  o.mixedPrecision = .float16
  #expect(throws: TorchError.self) { try Trainer(model: model16, method: SFTMethod(padId: 0), examples: examples, options: o).train() }
}
