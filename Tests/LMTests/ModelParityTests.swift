import Foundation
import Testing
import Torch
@testable import LM

/// Reference outputs written by scripts/make_model_fixtures.py with Hugging Face transformers 4.40.
struct Expected: Decodable {
  struct LeftPadded: Decodable {
    let input_ids: [[Int]]
    let attention_mask: [[Int]]
    let position_ids: [[Int]]
    let logprobs: [[Double]]
  }
  let sequences: [[Int]]
  let logprobs: [[Double]]
  let logsumexp: [[Double]]
  let last_hidden_mean: [[Double]]
  let batched_left_padded: LeftPadded
  let greedy_prompt: [Int]
  let greedy: [Int]
  let param_count: Int
  let keys: [String]
}

func fixtureDirectory(_ name: String) -> URL {
  Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("models/\(name)")
}

func expected(_ name: String) throws -> Expected {
  try JSONDecoder().decode(Expected.self, from: Data(contentsOf: fixtureDirectory(name).appendingPathComponent("expected.json")))
}

func maxAbsDiff(_ a: [Double], _ b: [Double]) -> Double {
  precondition(a.count == b.count, "lengths \(a.count) vs \(b.count)")
  return zip(a, b).map { Swift.abs($0 - $1) }.max() ?? 0
}

let families = ["gpt2", "llama", "qwen2"]

@Test(arguments: families)
func logProbsMatchTransformers(_ name: String) throws {
  let model = try Checkpoint.loadModel(from: fixtureDirectory(name))
  let ref = try expected(name)
  #expect(model.parameterCount == ref.param_count)
  let scored = withoutGradients { model.score(PaddedBatch(ref.sequences, padId: 0)) }
  let lp = scored.tokenLogProbs.toArray(Double.self)
  let lse = scored.logSumExp.toArray(Double.self)
  let hiddenMean = scored.hidden.to(.float64).mean(dim: -1).toArray(Double.self)
  for row in 0..<2 {
    #expect(maxAbsDiff(Array(lp[(row * 11)..<(row * 11 + 11)]), ref.logprobs[row]) < 1e-4, "\(name) row \(row)")
    #expect(maxAbsDiff(Array(lse[(row * 12)..<(row * 12 + 12)]), ref.logsumexp[row]) < 1e-4)
    #expect(maxAbsDiff(Array(hiddenMean[(row * 12)..<(row * 12 + 12)]), ref.last_hidden_mean[row]) < 1e-4)
  }
}

@Test(arguments: families)
func leftPaddedBatchMatchesTransformers(_ name: String) throws {
  let model = try Checkpoint.loadModel(from: fixtureDirectory(name))
  let ref = try expected(name).batched_left_padded
  let rows = zip(ref.input_ids, ref.attention_mask).map { ids, mask in zip(ids, mask).filter { $0.1 == 1 }.map(\.0) }
  let batch = PaddedBatch(rows, padId: 2, side: .left)
  #expect(batch.tokens.toArray(Int.self) == ref.input_ids.flatMap { $0 })
  #expect(batch.positions.toArray(Int.self) == ref.position_ids.flatMap { $0 })
  let scored = withoutGradients { model.score(batch) }
  let lp = scored.tokenLogProbs.toArray(Double.self), mask = scored.targetMask.toArray(Double.self)
  let width = ref.input_ids[0].count - 1
  for row in 0..<2 {
    let real = (0..<width).filter { mask[row * width + $0] == 1 }.map { lp[row * width + $0] }
    #expect(maxAbsDiff(real, ref.logprobs[row]) < 1e-4, "\(name) row \(row)")
  }
}

@Test(arguments: families)
func greedyContinuationMatchesTransformers(_ name: String) throws {
  let model = try Checkpoint.loadModel(from: fixtureDirectory(name))
  let ref = try expected(name)
  let cached = model.generate([ref.greedy_prompt], options: SamplingOptions(maxNewTokens: 20))[0]
  #expect(cached == ref.greedy)
  let uncached = model.generate([ref.greedy_prompt], options: SamplingOptions(maxNewTokens: 20, useCache: false))[0]
  #expect(uncached == ref.greedy)
}

@Test(arguments: families)
func batchedGenerationOfUnequalPromptsMatchesSingleRuns(_ name: String) throws {
  let model = try Checkpoint.loadModel(from: fixtureDirectory(name))
  let ref = try expected(name)
  let prompts = [ref.greedy_prompt, Array(ref.sequences[1].prefix(3)), Array(ref.sequences[1].prefix(8))]
  let together = model.generate(prompts, options: SamplingOptions(maxNewTokens: 12), padId: 2)
  for (i, p) in prompts.enumerated() {
    #expect(together[i] == model.generate([p], options: SamplingOptions(maxNewTokens: 12))[0], "\(name) prompt \(i)")
  }
}

@Test(arguments: families)
func savedCheckpointHasTheReferenceKeysAndReloadsIdentically(_ name: String) throws {
  let model = try Checkpoint.loadModel(from: fixtureDirectory(name))
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-ckpt-\(UUID())")
  defer { try? FileManager.default.removeItem(at: dir) }
  try Checkpoint.save(model, to: dir, companionsFrom: fixtureDirectory(name))
  let file = try SafetensorsFile(url: dir.appendingPathComponent("model.safetensors"))
  #expect(file.names == (try expected(name)).keys)
  #expect(file.metadata["format"] == "pt")
  #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("generation_config.json").path))
  let again = try Checkpoint.loadModel(from: dir)
  #expect(again.config == model.config)
  for ((n1, a), (n2, b)) in zip(model.namedParameters(), again.namedParameters()) {
    #expect(n1 == n2 && a.allClose(b, rtol: 0, atol: 0))
  }
}

@Test func sampledGenerationIsSeededAndRespectsTopK() throws {
  let model = try Checkpoint.loadModel(from: fixtureDirectory("llama"))
  let opts = SamplingOptions(maxNewTokens: 15, temperature: 1.0, topK: 5)
  let a = model.generate([[5, 6, 7]], options: opts, generator: Generator(seed: 3))
  let b = model.generate([[5, 6, 7]], options: opts, generator: Generator(seed: 3))
  let c = model.generate([[5, 6, 7]], options: opts, generator: Generator(seed: 4))
  #expect(a == b)
  #expect(a != c)
  // With top-k 1 sampling is greedy whatever the temperature.
  let greedy = model.generate([[5, 6, 7]], options: SamplingOptions(maxNewTokens: 15))
  let k1 = model.generate([[5, 6, 7]], options: SamplingOptions(maxNewTokens: 15, temperature: 2, topK: 1),
                          generator: Generator(seed: 9))
  #expect(k1 == greedy)
  // A tiny top-p keeps only the most likely token: greedy again.
  let p = model.generate([[5, 6, 7]], options: SamplingOptions(maxNewTokens: 15, temperature: 1.5, topP: 1e-6),
                         generator: Generator(seed: 9))
  #expect(p == greedy)
}

@Test func generationStopsAtAStopToken() throws {
  let model = try Checkpoint.loadModel(from: fixtureDirectory("llama"))
  let ref = try expected("llama")
  let stop = ref.greedy[3]
  let out = model.generate([ref.greedy_prompt], options: SamplingOptions(maxNewTokens: 20, stopTokens: [stop]))[0]
  #expect(out == Array(ref.greedy.prefix(through: ref.greedy.firstIndex(of: stop)!)))
}

@Test func malformedCheckpointsGiveErrorsNamingTheProblem() throws {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-bad-\(UUID())")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: dir) }
  let src = fixtureDirectory("llama")
  func write(_ name: String, _ text: String) throws { try Data(text.utf8).write(to: dir.appendingPathComponent(name)) }
  func expectError(_ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
      _ = try Checkpoint.loadModel(from: dir)
      Issue.record("expected an error containing \(fragment)", sourceLocation: sourceLocation)
    } catch {
      #expect(String(describing: error).contains(fragment), "\(error)", sourceLocation: sourceLocation)
    }
  }
  expectError("config.json: file not found")
  try write("config.json", #"{"model_type": "mamba", "vocab_size": 4}"#)
  expectError("model_type 'mamba' is not supported")
  try write("config.json", #"{"model_type": "llama", "vocab_size": 96, "hidden_size": 32}"#)
  expectError("missing key 'num_attention_heads'")
  // A config that disagrees with the weights: the tensor, its shape and the file are named.
  var config = try String(contentsOf: src.appendingPathComponent("config.json"), encoding: .utf8)
  config = config.replacingOccurrences(of: "\"intermediate_size\": 64", with: "\"intermediate_size\": 48")
  try write("config.json", config)
  expectError("no model.safetensors")
  try FileManager.default.copyItem(at: src.appendingPathComponent("model.safetensors"),
                                   to: dir.appendingPathComponent("model.safetensors"))
  expectError("model.safetensors: tensor 'model.layers.0.mlp.down_proj.weight' has shape [32, 64] but config.json implies [32, 48]")
}

/// Checkpoints written by `shatter train sft` (scripts/make_sft_roundtrip_fixtures.sh), scored by transformers.
@Test(arguments: ["gpt2", "llama"])
func checkpointsWrittenByShatterGiveTransformersLogProbs(_ family: String) throws {
  struct LogProbs: Decodable { let logprobs: [Double] }
  struct Tokens: Decodable { let tokens: [Int] }
  let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent("sft_roundtrip")
  let dir = root.appendingPathComponent(family)
  let tokens = try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: root.appendingPathComponent("tokens.json"))).tokens
  let ref = try JSONDecoder().decode(LogProbs.self, from: Data(contentsOf: dir.appendingPathComponent("transformers_logprobs.json")))
  let model = try Checkpoint.loadModel(from: dir)
  let lp = withoutGradients { model.score(PaddedBatch([tokens], padId: 0)).tokenLogProbs }.toArray(Double.self)
  #expect(maxAbsDiff(lp, ref.logprobs) < 1e-4)
  let tokenizer = try BPETokenizer(directory: dir)
  #expect(tokenizer.encode("12+7=19", addSpecialTokens: true) == tokens)
}

@Test func shardedCheckpointsLoadThroughTheirIndex() throws {
  let src = fixtureDirectory("llama")
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-shards-\(UUID())")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: dir) }
  try FileManager.default.copyItem(at: src.appendingPathComponent("config.json"), to: dir.appendingPathComponent("config.json"))
  let all = try Safetensors.load(src.appendingPathComponent("model.safetensors"))
  let names = all.keys.sorted()
  let half = names.count / 2
  var map: [String: String] = [:]
  for (i, part) in [Array(names[..<half]), Array(names[half...])].enumerated() {
    let file = "model-0000\(i + 1)-of-00002.safetensors"
    try Safetensors.save(Dictionary(uniqueKeysWithValues: part.map { ($0, all[$0]!) }), metadata: ["format": "pt"],
                         to: dir.appendingPathComponent(file))
    for n in part { map[n] = file }
  }
  let index = try JSONSerialization.data(withJSONObject: ["metadata": [String: Any](), "weight_map": map])
  try index.write(to: dir.appendingPathComponent("model.safetensors.index.json"))
  let sharded = try Checkpoint.loadModel(from: dir)
  let single = try Checkpoint.loadModel(from: src)
  for ((n, a), (_, b)) in zip(sharded.namedParameters(), single.namedParameters()) {
    #expect(a.allClose(b, rtol: 0, atol: 0), "\(n)")
  }
  try FileManager.default.removeItem(at: dir.appendingPathComponent("model-00002-of-00002.safetensors"))
  #expect(throws: CheckpointError.self) { _ = try Checkpoint.loadModel(from: dir) }
}
