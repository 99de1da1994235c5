import Foundation
import NN
import Testing
import Torch
@testable import LM

/// PEFT's log-probs for an adapter fixture (scripts/make_lora_fixtures.py, peft 0.10.0 on transformers 4.40).
struct AdapterExpected: Decodable {
  let tokens: [Int]
  let logprobs: [Double]
  let merged_logprobs: [Double]?
}

func adapterFixture(_ name: String) -> URL {
  Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("adapters/\(name)")
}

func adapterExpected(_ name: String) throws -> AdapterExpected {
  try JSONDecoder().decode(AdapterExpected.self, from: Data(contentsOf: adapterFixture(name).appendingPathComponent("expected.json")))
}

func logProbs(_ model: any CausalLM, _ tokens: [Int]) -> [Double] {
  withoutGradients { model.score(PaddedBatch([tokens], padId: 0)).tokenLogProbs.toArray(Double.self) }
}

/// Gives every adapter's B seeded non-zero values, so the adapter changes the outputs.
func randomizeB(_ model: any CausalLM, seed: UInt64) {
  let g = Generator(seed: seed)
  withoutGradients {
    for (_, l) in Adapter.adapted(model) { l.lora_B.weight.copy_(Tensor.randn(l.lora_B.weight.shape, generator: g) * 0.3) }
  }
}

let probe = [5, 17, 33, 2, 60, 71, 8, 9, 40, 41, 90, 3]

@Suite struct LoRATests {
  @Test(arguments: ["gpt2", "llama"])
  func aFreshAdapterLeavesEveryOutputUnchanged(_ name: String) throws {
    let model = try Checkpoint.loadModel(from: fixtureDirectory(name))
    let before = logProbs(model, probe)
    let adapted = try Adapter.attach(LoRAConfig(rank: 4, alpha: 8, targets: ["all-linear"]), to: model)
    #expect(adapted.count == (name == "gpt2" ? 8 : 14))
    #expect(maxAbsDiff(logProbs(model, probe), before) == 0)
    // Only the adapters train: A [r, in] and B [out, r], named as PEFT names them.
    let trainable = model.trainableParameters()
    #expect(trainable.count == 2 * adapted.count)
    #expect(trainable.allSatisfy { Adapter.isAdapterParameter($0.name) })
    #expect(Adapter.adapted(model).allSatisfy { $0.lora.lora_A.weight.abs().sum().item() > 0 })
  }

  @Test(arguments: ["gpt2", "llama"])
  func mergedWeightsScoreExactlyAsBasePlusAdapter(_ name: String) throws {
    let model = try Checkpoint.loadModel(from: fixtureDirectory(name))
    let base = logProbs(model, probe)
    try Adapter.attach(LoRAConfig(rank: 3, alpha: 5, family: model.config.family), to: model, seed: 7)
    randomizeB(model, seed: 8)
    let adapted = logProbs(model, probe)
    #expect(maxAbsDiff(adapted, base) > 1e-2)
    let copy = Checkpoint.frozenCopy(of: model)
    #expect(maxAbsDiff(logProbs(copy, probe), adapted) < 1e-5)
    Adapter.setEnabled(false, in: model)
    #expect(maxAbsDiff(logProbs(model, probe), base) == 0)
    Adapter.setEnabled(true, in: model)
    Adapter.merge(model)
    #expect(!Adapter.isAttached(model))
    #expect(maxAbsDiff(logProbs(model, probe), adapted) < 1e-5)
  }

  @Test(arguments: ["gpt2", "llama"])
  func anAdapterWrittenByPEFTLoadsAndGivesPEFTsLogProbs(_ name: String) throws {
    let ref = try adapterExpected("\(name)-peft")
    // Through the adapter directory alone: its base_model_name_or_path names the base.
    let model = try Checkpoint.loadModel(from: adapterFixture("\(name)-peft"))
    #expect(Adapter.isAttached(model))
    #expect(maxAbsDiff(logProbs(model, ref.tokens), ref.logprobs) < 1e-4)
    Adapter.merge(model)
    #expect(maxAbsDiff(logProbs(model, ref.tokens), try #require(ref.merged_logprobs)) < 1e-4)
  }

  /// The adapter Shatter writes for this seed is the committed fixture, and PEFT's log-probs for that
  /// fixture (scripts/make_lora_fixtures.py) are Shatter's. SHATTER_WRITE_FIXTURES=1 rewrites the fixture.
  @Test(arguments: ["gpt2", "llama"])
  func anAdapterWrittenByShatterLoadsInPEFTWithTheSameLogProbs(_ name: String) throws {
    let model = try Checkpoint.loadModel(from: fixtureDirectory(name))
    try Adapter.attach(LoRAConfig(rank: 2, alpha: 4, family: model.config.family), to: model, seed: 3)
    randomizeB(model, seed: 4)
    let written = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-lora-\(name)-\(getpid())")
    defer { try? FileManager.default.removeItem(at: written) }
    try Checkpoint.save(model, to: written, baseModel: "../models/\(name)")
    if ProcessInfo.processInfo.environment["SHATTER_WRITE_FIXTURES"] == "1" {
      let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/adapters/\(name)-shatter")
      try Checkpoint.save(model, to: source, baseModel: "../models/\(name)")
      return
    }
    let committed = try Safetensors.load(adapterFixture("\(name)-shatter").appendingPathComponent(Adapter.weightsFile))
    let fresh = try Safetensors.load(written.appendingPathComponent(Adapter.weightsFile))
    #expect(committed.keys.sorted() == fresh.keys.sorted())
    for (k, t) in committed { #expect(t.allClose(fresh[k]!, rtol: 0, atol: 0), "\(k)") }
    let config = try JSONSerialization.jsonObject(with: Data(contentsOf: written.appendingPathComponent(Adapter.configFile))) as! [String: Any]
    #expect(config["peft_type"] as? String == "LORA" && config["task_type"] as? String == "CAUSAL_LM")
    #expect(config["fan_in_fan_out"] as? Bool == (name == "gpt2"))
    #expect(config["target_modules"] as? [String] == LoRAConfig.defaultTargets(model.config.family).sorted())
    let ref = try adapterExpected("\(name)-shatter")
    #expect(maxAbsDiff(logProbs(model, ref.tokens), ref.logprobs) < 1e-4)
    // And it reads back (weights, rank, alpha, targets) as it was written.
    let reread = try Checkpoint.loadModel(from: fixtureDirectory(name))
    try Adapter.load(from: written, into: reread)
    #expect(Adapter.config(of: reread) == Adapter.config(of: model))
    #expect(maxAbsDiff(logProbs(reread, ref.tokens), ref.logprobs) < 1e-4)
  }

  @Test func theGradientOfAnAdaptedLayerMatchesFiniteDifferences() throws {
    let layer = Linear(5, 3, dtype: .float64, generator: Generator(seed: 1))
    layer.lora = LoRA(inFeatures: 5, outFeatures: 3, rank: 2, alpha: 3, dtype: .float64, generator: Generator(seed: 2))
    let b = layer.lora!.lora_B.weight, a = layer.lora!.lora_A.weight
    withoutGradients { b.copy_(Tensor.randn(b.shape, dtype: .float64, generator: Generator(seed: 3))) }
    let x = Tensor.randn([4, 5], dtype: .float64, generator: Generator(seed: 4))
    let loss = { (layer(x).square().sum()) }
    let l = loss()
    l.backward()
    for (p, i) in [(a, 3), (b, 4)] {
      let g = p.grad!.reshaped([-1]).toArray(Double.self)[i]
      let eps = 1e-6
      func at(_ d: Double) -> Double {
        withoutGradients {
          let flat = p.view([-1])
          flat.narrow(dim: 0, start: i, length: 1).add_(d)
          defer { flat.narrow(dim: 0, start: i, length: 1).add_(-d) }
          return loss().item()
        }
      }
      #expect(Swift.abs((at(eps) - at(-eps)) / (2 * eps) - g) < 1e-6)
    }
  }

  @Test func badAdaptersAreErrorsNamingTheKey() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-bad-lora-\(getpid())")
    defer { try? FileManager.default.removeItem(at: dir) }
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let source = adapterFixture("llama-peft")
    try FileManager.default.copyItem(at: source.appendingPathComponent(Adapter.weightsFile),
                                     to: dir.appendingPathComponent(Adapter.weightsFile))
    var config = try JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent(Adapter.configFile))) as! [String: Any]
    func attempt(_ edit: ([String: Any]) -> [String: Any]) throws -> String {
      try JSONSerialization.data(withJSONObject: edit(config)).write(to: dir.appendingPathComponent(Adapter.configFile))
      let model = try Checkpoint.loadModel(from: fixtureDirectory("llama"))
      do {
        try Adapter.load(from: dir, into: model)
        return "loaded"
      } catch {
        #expect(!Adapter.isAttached(model), "a failed load leaves the model as it was")
        return "\(error)"
      }
    }
    #expect(try attempt { $0 } == "loaded")
    #expect(try attempt { var c = $0; c["use_dora"] = true; return c }.contains("key 'use_dora'"))
    #expect(try attempt { var c = $0; c["r"] = 8; return c }.contains("has shape [4, 32] where the model needs [8, 32]"))
    #expect(try attempt { var c = $0; c["target_modules"] = ["q_proj"]; return c }.contains("unexpected tensor 'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight'"))
    #expect(try attempt { var c = $0; c["target_modules"] = ["qq_proj"]; return c }.contains("LoRA target 'qq_proj' matches no layer"))
    config["peft_type"] = "PREFIX_TUNING"
    #expect(try attempt { $0 }.contains("key 'peft_type'"))
  }
}
