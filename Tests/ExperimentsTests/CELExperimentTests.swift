import Agents
import LM
import Torch
import Foundation
import Testing
import Worlds
@testable import Experiments

/// A model whose replies depend on the prompt alone (so a resumed run can be compared with an uninterrupted
/// one): it values every move Medium except [right] High, writes rules that name the episode's outcome, and
/// acts [down].
private func model() -> ScriptedChatBackend {
  ScriptedChatBackend { messages, _ in
    let prompt = messages.last!.content
    if prompt.contains("Rewrite the rules") { return "Holes end the game. \(prompt.contains("you won") ? "Won." : "Lost.") Holes end the game." }
    if prompt.contains("Rewrite your strategy") { return "Go right first. Go right first." }
    if prompt.contains("Predict what happens") { return "Next state: (same)" }
    if prompt.contains("How good is that outcome") { return prompt.contains("If you take [right]") ? "High" : "Medium" }
    return "[down]"
  }
}

private func config(seeds: Int = 2, episodes: Int = 2) throws -> CELConfig {
  var settings = CELConfig.defaultSettings
  settings.maxSteps = 8
  return CELConfig(games: [.frozenLake(map: "4x4", size: 4, frozenProbability: 0.8, slippery: false, mapSeed: 0),
                           .sokoban(rows: 6, columns: 6, boxes: 1, maxTurns: 8, levelFile: nil)],
                   agents: [.cel, .zeroShot, .random, .solver], seeds: seeds, episodes: episodes, settings: settings,
                   prompts: try CELPrompts.load(), backend: "scripted")
}

private func folder(_ name: String) -> URL {
  let url = FileManager.default.temporaryDirectory.appendingPathComponent("cel-\(name)-\(UUID().uuidString)")
  try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
  return url
}

@Test func celExperimentWritesItsReportAndTheSolverIsTheCeiling() async throws {
  let out = folder("report")
  let c = try config()
  let s = try await CELRunner.run(c, backend: model(), out: out)
  for file in ["config.json", "metrics.jsonl", "summary.json", "report.md", "knowledge.md", "success_frozenlake.svg",
               "return_frozenlake.svg", "success_sokoban.svg", "return_sokoban.svg"] {
    #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "\(file)")
  }
  // One metrics line per episode: 2 games × 4 agents × 2 seeds × 2 episodes.
  let lines = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
  #expect(lines.count == 32)
  #expect(s.games["frozenlake"]?["solver"]?.success.mean == 1 && s.games["sokoban"]?["solver"]?.success.mean == 1)
  // [down] then the first legal move: zero-shot walks down column 0 into the hole at row 2 every time.
  #expect(s.games["frozenlake"]?["zero-shot"]?.success.mean == 0)
  #expect(s.games["frozenlake"]?["cel"]?.successByEpisode.count == 2)
  // The model-free agents make no calls; CEL's reflections are condensed and fed into knowledge.md.
  #expect(s.games["frozenlake"]?["random"]?.modelCalls == 0 && (s.games["frozenlake"]?["cel"]?.modelCalls ?? 0) > 0)
  let knowledge = try String(contentsOf: out.appendingPathComponent("knowledge.md"), encoding: .utf8)
  #expect(knowledge.contains("> Holes end the game. Lost.") && !knowledge.contains("Lost. Holes end the game."))
  #expect(knowledge.contains("Go right first.") && !knowledge.contains("first. Go right"))
  let report = try String(contentsOf: out.appendingPathComponent("report.md"), encoding: .utf8)
  #expect(report.contains("| solver | 1.00 (0.51–1.00) | 2/2 |"), "\(report)")
  // Transcripts: one per model-driven run.
  let transcripts = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("transcripts").path)
  #expect(Set(transcripts) == Set(["frozenlake", "sokoban"].flatMap { g in ["cel", "zero-shot"].flatMap { a in
    (0..<2).map { "\(g)-\(a)-seed\($0).jsonl" } } }))
}

@Test func aResumedExperimentEndsAsAnUninterruptedOne() async throws {
  let c = try config(seeds: 1, episodes: 3)
  let whole = folder("whole"), cut = folder("cut")
  _ = try await CELRunner.run(c, backend: model(), out: whole)
  _ = try await CELRunner.run(c, backend: model(), out: cut)
  // Interrupt CEL after its first episode, with half a line written, and lose the summary.
  let run = cut.appendingPathComponent("runs/frozenlake-cel-seed0.jsonl")
  let first = try String(contentsOf: run, encoding: .utf8).split(separator: "\n")[0]
  try Data((first + "\n{\"agent\": \"ce").utf8).write(to: run)
  try FileManager.default.removeItem(at: cut.appendingPathComponent("summary.json"))
  let calls = model()
  _ = try await CELRunner.run(c, backend: calls, out: cut)
  // Only CEL's two missing episodes were played again, starting from the rules episode 1 ended with.
  #expect(!calls.received.isEmpty)
  #expect(calls.received.allSatisfy { !$0.last!.content.contains("(nothing yet: you only know the actions)") })
  for file in ["metrics.jsonl", "runs/frozenlake-cel-seed0.jsonl", "knowledge.md"] {
    #expect(try Data(contentsOf: whole.appendingPathComponent(file)) == Data(contentsOf: cut.appendingPathComponent(file)), "\(file)")
  }
  // A finished experiment is read back without a call.
  let idle = model()
  _ = try await CELRunner.run(c, backend: idle, out: cut)
  #expect(idle.received.isEmpty)
  // Another configuration under the same folder is refused.
  var other = c
  other.episodes = 4
  await #expect(throws: ExperimentError.self) { try await CELRunner.run(other, backend: model(), out: cut) }
}

@Test func wilsonIntervalsMatchTheirClosedForm() {
  let none = Interval.wilson(successes: 0, trials: 9)
  #expect(none.mean == 0 && none.low == 0 && abs(none.high - 3.8416 / 12.8416) < 1e-12)
  let all = Interval.wilson(successes: 9, trials: 9)
  #expect(all.high == 1 && abs(all.low - 9 / 12.8416) < 1e-12)
  let half = Interval.wilson(successes: 5, trials: 10)
  #expect(abs(half.low - 0.2366) < 1e-4 && abs(half.high - 0.7634) < 1e-4)
}

/// `--train grpo` on a tiny random local model: the trained arm runs after the others with a fresh LoRA
/// adapter, reports beside its untrained arm, starts from the same draws (its first episode, before any
/// update, is the untrained arm's), logs one GRPO step per episode and leaves the model without adapter.
@Test func celTrainingAddsATrainedArmOnTheSameSeeds() async throws {
  let out = folder("train")
  let tokenizerDir = folder("bytes")
  try ByteVocabulary.write(to: tokenizerDir)
  let tokenizer = try BPETokenizer(directory: tokenizerDir)
  let lm = Checkpoint.makeModel(ModelConfig(family: .llama, vocabSize: tokenizer.vocabularySize, hiddenSize: 32, layers: 1,
                                            heads: 2, maxPositions: 4096, eosTokenIds: tokenizer.eosTokenId.map { [$0] } ?? []),
                                generator: Generator(seed: 5))
  let backend = LocalChatBackend(ChatModel(model: lm, tokenizer: tokenizer, template: .plain), name: "local:tiny")
  var settings = CELConfig.defaultSettings
  settings.maxSteps = 4
  settings.maxTokens = 6
  settings.temperature = 0
  var training = CELTraining()
  training.group = 2
  training.callsPerPlay = 2
  let c = CELConfig(games: [.frozenLake(map: "4x4", size: 4, frozenProbability: 0.8, slippery: false, mapSeed: 0)],
                    agents: [.zeroShot], seeds: 1, episodes: 2, settings: settings, prompts: try CELPrompts.load(),
                    backend: backend.name, train: training)
  let s = try await CELRunner.run(c, backend: backend, out: out)
  let plain = try #require(s.games["frozenlake"]?["zero-shot"]), trained = try #require(s.games["frozenlake"]?["zero-shot+grpo"])
  #expect(plain.episodes == 2 && trained.episodes == 2)
  let runs = out.appendingPathComponent("runs")
  let a = CELRunner.readRecords(runs.appendingPathComponent("frozenlake-zero-shot-seed0.jsonl"))
  let b = CELRunner.readRecords(runs.appendingPathComponent("frozenlake-zero-shot+grpo-seed0.jsonl"))
  #expect(a.count == 2 && b.count == 2)
  #expect(a[0].seed == b[0].seed && a[0].steps == b[0].steps && a[0].reward == b[0].reward && a[0].modelCalls == b[0].modelCalls)
  let steps = try String(contentsOf: out.appendingPathComponent("train/frozenlake-zero-shot+grpo-seed0/metrics.jsonl"),
                         encoding: .utf8).split(separator: "\n")
  #expect(steps.count == 2)
  #expect(steps.allSatisfy { $0.contains("\"completions\":") && $0.contains("\"grad_norm\":") })
  #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("adapters/frozenlake-zero-shot+grpo-seed0/adapter_model.safetensors").path))
  #expect(!Adapter.isAttached(lm))
  let report = try String(contentsOf: out.appendingPathComponent("report.md"), encoding: .utf8)
  #expect(report.contains("| zero-shot+grpo |") && report.contains("Trained arms"))
  // Resuming keeps the finished trained run.
  let again = try await CELRunner.run(c, backend: backend, out: out)
  #expect(again.games["frozenlake"]?["zero-shot+grpo"]?.episodes == 2)
}
