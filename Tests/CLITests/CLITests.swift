import Foundation
import Testing
import Torch

/// Runs the built `shatter` binary (it sits beside the test bundle) and captures its output.
struct Run {
  let status: Int32
  let stdout: String
  let stderr: String
  var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] ?? [:] }
}

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func shatter(_ args: [String], environment: [String: String]? = nil) throws -> Run {
  let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("shatter")
  let binary = FileManager.default.isExecutableFile(atPath: exe.path)
    ? exe : repoRoot.appendingPathComponent(".build/debug/shatter")
  let p = Process()
  p.executableURL = binary
  p.arguments = args
  if let environment { p.environment = environment }
  let out = Pipe(), err = Pipe()
  p.standardOutput = out
  p.standardError = err
  try p.run()
  let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  #expect(p.terminationReason == .exit, "shatter \(args) was killed by a signal: \(String(decoding: e, as: UTF8.self))")
  return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

let sftFixture = repoRoot.appendingPathComponent("Tests/LMTests/Fixtures/sft_roundtrip/gpt2").path

func temporary(_ name: String) -> URL {
  FileManager.default.temporaryDirectory.appendingPathComponent("shatter-cli-\(UUID())-\(name)")
}

@Test func versionReportsLibtorch() throws {
  let r = try shatter(["version", "--json"])
  #expect(r.status == 0)
  #expect(r.json["libtorch"] as? String == "1.13.0" || (r.json["libtorch"] as? String)?.hasPrefix("2.") == true)
  #expect((r.json["threads"] as? Int ?? 0) >= 1)
}

@Test func helpExplainsEveryCommand() throws {
  let r = try shatter(["--help"])
  for c in ["tokenize", "score", "generate", "train", "bench", "version", "convert"] { #expect(r.stdout.contains(c)) }
  let sft = try shatter(["train", "sft", "--help"])
  for flag in ["--data", "--out", "--init", "--lr", "--schedule", "--warmup", "--grad-accum", "--seed", "--steps"] {
    #expect(sft.stdout.contains(flag), "train sft --help lacks \(flag)")
  }
}

@Test func tokenizeScoreAndGeneratePrintOneJSONObject() throws {
  let tok = try shatter(["tokenize", "--model", sftFixture, "--text", "12+7=19", "--json"])
  #expect(tok.status == 0)
  #expect(tok.json["tokens"] as? [Int] == [49, 50, 43, 55, 61, 49, 57])

  let score = try shatter(["score", "--model", sftFixture, "--text", "12+7=19", "--json"])
  #expect(score.status == 0)
  let lp = score.json["logprobs"] as? [Double] ?? []
  struct Ref: Decodable { let logprobs: [Double] }
  let ref = try JSONDecoder().decode(Ref.self, from: Data(contentsOf: URL(fileURLWithPath: sftFixture + "/transformers_logprobs.json")))
  #expect(lp.count == ref.logprobs.count)
  for (a, b) in zip(lp, ref.logprobs) { #expect(Swift.abs(a - b) < 1e-4) }
  #expect(Swift.abs((score.json["total"] as? Double ?? 0) - lp.reduce(0, +)) < 1e-9)

  let gen = try shatter(["generate", "--model", sftFixture, "--prompt", "3+3=", "--max-new-tokens", "5", "--temperature", "0", "--json"])
  #expect(gen.status == 0)
  let ids = gen.json["tokens"] as? [Int] ?? []
  #expect(!ids.isEmpty && ids.count <= 5)
  #expect(gen.json["text"] is String)
  #expect(gen.stdout.split(separator: "\n").count == 1)
}

@Test func trainSFTFromScratchLowersTheLossAndWritesALoadableCheckpoint() throws {
  let data = temporary("data.jsonl"), out = temporary("out")
  defer { try? FileManager.default.removeItem(at: data); try? FileManager.default.removeItem(at: out) }
  let lines = (1...24).map { #"{"prompt": "\#($0)*2=", "completion": "\#($0 * 2)"}"# }
  try Data(lines.joined(separator: "\n").utf8).write(to: data)
  let r = try shatter(["train", "sft", "--init", "qwen2", "--layers", "1", "--d-model", "32", "--heads", "4", "--kv-heads", "2",
                       "--max-positions", "32", "--data", data.path, "--out", out.path, "--steps", "25", "--batch-size", "8",
                       "--lr", "3e-3", "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  let history = r.json["loss_history"] as? [Double] ?? []
  #expect(history.count == 25)
  #expect((history.last ?? 99) < (history.first ?? 0) * 0.8)
  #expect(r.json["method"] as? String == "sft")
  #expect(r.stderr.contains("step 25/25"))
  let score = try shatter(["score", "--model", out.path, "--text", "3*2=6", "--json"])
  #expect(score.status == 0)
}

@Test func malformedInputsGiveOneClearErrorLineAndANonZeroExit() throws {
  let bad = temporary("bad.jsonl"), out = temporary("out"), noTok = temporary("notok"), mismatch = temporary("mismatch")
  defer { for u in [bad, out, noTok, mismatch] { try? FileManager.default.removeItem(at: u) } }
  try Data("{\"prompt\": \"a\", \"completion\": \"b\"}\n{oops\n".utf8).write(to: bad)
  var r = try shatter(["train", "sft", "--model", sftFixture, "--data", bad.path, "--out", out.path, "--steps", "1"])
  #expect(r.status != 0)
  #expect(r.stderr.contains("\(bad.path):2: not valid JSON"), "\(r.stderr)")
  #expect(!FileManager.default.fileExists(atPath: out.path))

  try FileManager.default.createDirectory(at: noTok, withIntermediateDirectories: true)
  r = try shatter(["score", "--model", noTok.path, "--text", "hi"])
  #expect(r.status != 0 && r.stderr.contains("no tokenizer.json"))

  try FileManager.default.copyItem(at: URL(fileURLWithPath: sftFixture), to: mismatch)
  let cfg = mismatch.appendingPathComponent("config.json")
  let text = try String(contentsOf: cfg, encoding: .utf8).replacingOccurrences(of: "\"n_embd\" : 32", with: "\"n_embd\" : 16")
  try Data(text.utf8).write(to: cfg)
  r = try shatter(["score", "--model", mismatch.path, "--text", "hi"])
  #expect(r.status != 0 && r.stderr.contains("has shape"), "\(r.stderr)")

  let long = String(repeating: "x", count: 40)
  r = try shatter(["generate", "--model", sftFixture, "--prompt", long, "--max-new-tokens", "4"])
  #expect(r.status != 0 && r.stderr.contains("more than the model's context of 32"), "\(r.stderr)")
  for run in [r] { #expect(run.stderr.split(separator: "\n").count <= 2) }
}

/// Starts `shatter` and returns the running process (output discarded).
func launch(_ args: [String]) throws -> Process {
  let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("shatter")
  let p = Process()
  p.executableURL = FileManager.default.isExecutableFile(atPath: exe.path) ? exe : repoRoot.appendingPathComponent(".build/debug/shatter")
  p.arguments = args
  p.standardOutput = FileHandle.nullDevice
  p.standardError = FileHandle.nullDevice
  try p.run()
  return p
}

/// Runs `common` into `killed`, kills it (SIGKILL) once `checkpoints` mid-run checkpoints exist, checks each
/// is complete, and resumes it to the end; returns the resumed run.
func killThenResume(_ common: [String], into killed: URL, saveEvery: Int, checkpoints: Int = 2,
                    sourceLocation: SourceLocation = #_sourceLocation) throws -> Run {
  let p = try launch(common + ["--out", killed.path, "--save-every", "\(saveEvery)"])
  let deadline = Date().addingTimeInterval(120)
  func completedCheckpoints() -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: killed.path)) ?? []).filter { $0.hasPrefix("checkpoint-") }
  }
  while completedCheckpoints().count < checkpoints && p.isRunning && Date() < deadline { usleep(5_000) }
  #expect(p.isRunning, "the run finished before it could be killed; make it longer", sourceLocation: sourceLocation)
  kill(p.processIdentifier, SIGKILL)
  p.waitUntilExit()
  #expect(p.terminationReason == .uncaughtSignal, sourceLocation: sourceLocation)
  for name in completedCheckpoints() {
    for file in ["model.safetensors", "optimizer.safetensors", "trainer_state.json", "rng.safetensors", "config.json"] {
      #expect(FileManager.default.fileExists(atPath: killed.appendingPathComponent("\(name)/\(file)").path), "\(name) lacks \(file)",
              sourceLocation: sourceLocation)
    }
  }
  let b = try shatter(common + ["--out", killed.path, "--save-every", "\(saveEvery)", "--resume", "--json"])
  #expect(b.status == 0, "\(b.stderr)", sourceLocation: sourceLocation)
  #expect(b.stderr.contains("resuming from step"), sourceLocation: sourceLocation)
  return b
}

/// Whether two runs' final weights are equal to the bit.
func expectSameWeights(_ a: URL, _ b: URL, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
  let wa = try Safetensors.load(a.appendingPathComponent("model.safetensors"))
  let wb = try Safetensors.load(b.appendingPathComponent("model.safetensors"))
  #expect(wa.keys.sorted() == wb.keys.sorted(), sourceLocation: sourceLocation)
  for (k, t) in wa {
    let same = t.bytes() == wb[k]?.bytes()
    #expect(same, "\(what): \(k) differs", sourceLocation: sourceLocation)
  }
}

@Test func killedAndResumedRunEndsWithTheSameWeightsAsAnUninterruptedOne() throws {
  let data = temporary("data.jsonl"), straight = temporary("straight"), killed = temporary("killed")
  defer { for u in [data, straight, killed] { try? FileManager.default.removeItem(at: u) } }
  try Data((1...40).map { #"{"prompt": "\#($0)+1=", "completion": "\#($0 + 1)"}"# }.joined(separator: "\n").utf8).write(to: data)
  let common = ["train", "sft", "--init", "gpt2", "--layers", "1", "--d-model", "32", "--heads", "2", "--max-positions", "16",
                "--data", data.path, "--steps", "300", "--batch-size", "4", "--lr", "1e-3", "--warmup", "10", "--seed", "3"]

  let a = try shatter(common + ["--out", straight.path, "--json"])
  #expect(a.status == 0, "\(a.stderr)")

  // Kill (SIGKILL) once a mid-run checkpoint exists, then resume to the end.
  _ = try killThenResume(common, into: killed, saveEvery: 25)
  try expectSameWeights(straight, killed, "sft")
  // The metrics log reads as one run: one line per step, in order.
  let steps = try String(contentsOf: killed.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
    .split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    .compactMap { $0["step"] as? Int }
  #expect(steps == Array(1...300))
}

@Test func configFileValuesAreOverriddenByFlags() throws {
  let data = temporary("data.jsonl"), out = temporary("out"), cfg = temporary("run.yaml")
  defer { for u in [data, out, cfg] { try? FileManager.default.removeItem(at: u) } }
  try Data(#"{"text": "hello world"}"#.utf8).write(to: data)
  try Data("init: llama\nlayers: 1\nd_model: 16\nheads: 2\nsteps: 7\nbatch-size: 2\njson: true\n".utf8).write(to: cfg)
  let r = try shatter(["train", "sft", "--config", cfg.path, "--steps", "3", "--data", data.path, "--out", out.path])
  #expect(r.status == 0, "\(r.stderr)")
  #expect((r.json["loss_history"] as? [Double])?.count == 3)
  let bad = try shatter(["train", "sft", "--config", "/nonexistent.yaml"])
  #expect(bad.status != 0 && bad.stderr.contains("/nonexistent.yaml"))
  // Found by `make fuzz` (run-config): a list as a mapping key trapped inside the YAML library's constructor.
  let fuzzed = repoRoot.appendingPathComponent("Tests/CLITests/Fixtures/fuzz/non-scalar-key.yaml").path
  let trap = try shatter(["train", "sft", "--config", fuzzed, "--data", data.path, "--out", out.path])
  #expect(trap.status != 0 && trap.stderr.contains("non-scalar-key.yaml: key 'data'"), "\(trap.stderr)")
  // Found by `make fuzz` (run-config): an overflowing base-60 integer (`666666:6`) trapped in the YAML library.
  let sexagesimal = repoRoot.appendingPathComponent("Tests/CLITests/Fixtures/fuzz/sexagesimal-overflow.yaml").path
  let overflow = try shatter(["train", "sft", "--config", sexagesimal, "--data", data.path, "--out", out.path])
  #expect(overflow.status != 0 && overflow.stderr.contains("Error"), "\(overflow.stderr)")
  // Every scalar type still becomes its flag; null, lists and mappings name the key.
  try Data("init: gpt2\nlayers: 1\nd_model: 16\nheads: 2\nsteps: 2\nlr: 1.5e-3\nschedule: 'constant'\njson: yes\n".utf8).write(to: cfg)
  let typed = try shatter(["train", "sft", "--config", cfg.path, "--data", data.path, "--out", out.path])
  #expect(typed.status == 0 && (typed.json["metrics"] as? [String: Double])?["learning_rate"] == 1.5e-3, "\(typed.stderr)")
  for value in ["~", "[1, 2]", "{a: 1}"] {
    try Data("steps: \(value)\n".utf8).write(to: cfg)
    let r = try shatter(["train", "sft", "--config", cfg.path, "--data", data.path, "--out", out.path])
    #expect(r.status != 0 && r.stderr.contains("key 'steps' should be a number, a string or a boolean"), "\(value): \(r.stderr)")
  }
}

@Test func everyMethodTrainsFromTheCommandLineAndLowersItsLoss() throws {
  let demos = temporary("demos.jsonl"), pairs = temporary("pairs.jsonl"), choices = temporary("choices.jsonl")
  let labelled = temporary("labelled.jsonl")
  var outs: [URL] = []
  defer { for u in [demos, pairs, choices, labelled] + outs { try? FileManager.default.removeItem(at: u) } }
  try Data((0..<40).map { #"{"prompt": "q\#($0)?", "completion": "\#($0 % 2 == 0 ? "yes" : "no")", "label": \#($0 % 2 == 0)}"# }
    .joined(separator: "\n").utf8).write(to: labelled)
  try Data((0..<40).map { #"{"prompt": "q\#($0)?", "completion": "yes"}"# }.joined(separator: "\n").utf8).write(to: demos)
  try Data((0..<40).map { #"{"prompt": "q\#($0)?", "chosen": "yes", "rejected": "no"}"# }.joined(separator: "\n").utf8)
    .write(to: pairs)
  try Data((0..<40).map { #"{"prompt": "q\#($0)?", "candidates": ["no", "yes", "maybe"], "choice": 1}"# }
    .joined(separator: "\n").utf8).write(to: choices)
  let model = ["--init", "gpt2", "--layers", "1", "--d-model", "32", "--heads", "2", "--max-positions", "32"]
  let runs: [(String, URL, [String])] = [
    ("sft", demos, []), ("ift", demos, ["--lambda", "0.2", "--gamma", "0.95"]), ("iqlearn", demos, ["--lambda", "0.1"]),
    ("iqlearn", demos, ["--lambda", "0.1", "--alpha", "0.25"]), ("choice", choices, ["--mu", "0.1"]), ("rm", pairs, []),
    ("dpo", pairs, ["--beta", "0.1"]), ("orpo", pairs, ["--lambda", "0.1"]), ("kto", pairs, ["--beta", "0.5"]),
    ("kto", labelled, ["--beta", "0.5", "--undesirable-weight", "1.2"]),
  ]
  for (method, data, flags) in runs {
    let out = temporary(method)
    outs.append(out)
    let r = try shatter(["train", method] + model + flags + ["--data", data.path, "--out", out.path, "--steps", "30",
                                                            "--batch-size", "8", "--lr", "5e-3", "--schedule", "constant", "--json"])
    #expect(r.status == 0, "\(method): \(r.stderr)")
    let h = r.json["loss_history"] as? [Double] ?? []
    #expect(h.count == 30, "\(method)")
    let first = h.prefix(3).reduce(0, +) / 3, last = h.suffix(3).reduce(0, +) / 3
    #expect(last < first * 0.7, "\(method) \(flags): loss \(first) → \(last)")
    #expect(r.json["method"] as? String == method)
    #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("metrics.jsonl").path))
  }
  #expect(FileManager.default.fileExists(atPath: outs[5].appendingPathComponent("reward_head.safetensors").path))
}

@Test func grpoRaisesACommandRewardAndABadCommandNamesThePrompt() throws {
  let prompts = temporary("grpo-prompts.jsonl"), out = temporary("grpo")
  defer { for u in [prompts, out] { try? FileManager.default.removeItem(at: u) } }
  try Data((0..<32).map { #"{"prompt": "\#($0)+\#($0)=", "answer": "\#($0 + $0)"}"# }.joined(separator: "\n").utf8).write(to: prompts)
  let model = ["--init", "gpt2", "--layers", "1", "--d-model", "32", "--heads", "2", "--max-positions", "32"]
  // The reward: the share of 7s in the completion, computed by a Python program reading JSONL.
  let share = #"python3 -c 'import sys, json; [print(c.count("7") / max(1, len(c))) for c in (json.loads(l)["completion"] for l in sys.stdin)]'"#
  let r = try shatter(["train", "grpo"] + model + ["--data", prompts.path, "--out", out.path, "--reward-command", share,
                                                   "--num-generations", "8", "--max-completion-length", "8", "--steps", "30",
                                                   "--batch-size", "4", "--lr", "1e-2", "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  let rewards = r.json["reward_history"] as? [Double] ?? []
  #expect(rewards.count == 30)
  let before = rewards.prefix(5).reduce(0, +) / 5, after = rewards.suffix(5).reduce(0, +) / 5
  #expect(after > before + 0.3, "reward \(before) → \(after)")
  let metrics = r.json["metrics"] as? [String: Double] ?? [:]
  for key in ["reward_std", "frac_reward_zero_std", "rewards/command/mean", "completions/mean_length", "entropy",
              "clip_ratio/region_mean"] {
    #expect(metrics[key] != nil, "\(key) missing from \(metrics.keys.sorted())")
  }
  let bad = try shatter(["train", "grpo"] + model + ["--data", prompts.path, "--out", temporary("grpo-bad").path,
                                                     "--reward-command", "echo nope", "--num-generations", "2",
                                                     "--max-completion-length", "4", "--steps", "1", "--batch-size", "2"])
  #expect(bad.status != 0 && bad.stderr.contains("wrote 1 lines for 4 completions") && bad.stderr.contains("grpo-prompts.jsonl:"),
          "\(bad.stderr)")
  let none = try shatter(["train", "grpo"] + model + ["--data", prompts.path, "--out", temporary("grpo-none").path])
  #expect(none.status != 0 && none.stderr.contains("at least one reward"), "\(none.stderr)")
}

@Test func ppoRaisesAProgrammaticRewardAndReportsKL() throws {
  let prompts = temporary("prompts.jsonl"), out = temporary("ppo")
  defer { for u in [prompts, out] { try? FileManager.default.removeItem(at: u) } }
  try Data((0..<32).map { #"{"prompt": "\#($0)+\#($0)="}"# }.joined(separator: "\n").utf8).write(to: prompts)
  let r = try shatter(["train", "ppo", "--init", "gpt2", "--layers", "1", "--d-model", "32", "--heads", "2",
                       "--max-positions", "32", "--data", prompts.path, "--out", out.path, "--reward-token-fraction", "7",
                       "--steps", "30", "--batch-size", "16", "--response-length", "8", "--lr", "3e-3", "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  let rewards = r.json["reward_history"] as? [Double] ?? []
  #expect(rewards.count == 30)
  let before = rewards.prefix(5).reduce(0, +) / 5, after = rewards.suffix(5).reduce(0, +) / 5
  #expect(after > before + 0.1, "reward \(before) → \(after)")
  let metrics = r.json["metrics"] as? [String: Double] ?? [:]
  for key in ["kl", "clip_ratio", "entropy", "reward/mean", "reward/std", "grad_norm"] { #expect(metrics[key] != nil, "\(key)") }
  #expect(r.stderr.contains("kl"))
}

@Test func ppoTakesItsRewardFromARewardModelTrainedByTheCLI() throws {
  let pairs = temporary("pairs.jsonl"), prompts = temporary("prompts.jsonl"), rm = temporary("rm"), out = temporary("ppo-rm")
  defer { for u in [pairs, prompts, rm, out] { try? FileManager.default.removeItem(at: u) } }
  try Data((0..<24).map { #"{"prompt": "q\#($0)?", "chosen": "yes", "rejected": "no"}"# }.joined(separator: "\n").utf8).write(to: pairs)
  try Data((0..<8).map { #"{"prompt": "q\#($0)?"}"# }.joined(separator: "\n").utf8).write(to: prompts)
  let model = ["--init", "llama", "--layers", "1", "--d-model", "32", "--heads", "2", "--max-positions", "32"]
  let a = try shatter(["train", "rm"] + model + ["--data", pairs.path, "--out", rm.path, "--steps", "10", "--json"])
  #expect(a.status == 0, "\(a.stderr)")
  let b = try shatter(["train", "ppo"] + model + ["--data", prompts.path, "--out", out.path, "--reward-model", rm.path,
                                                   "--steps", "3", "--batch-size", "4", "--response-length", "4", "--json"])
  #expect(b.status == 0, "\(b.stderr)")
  #expect((b.json["reward_history"] as? [Double])?.count == 3)
  let bad = try shatter(["train", "ppo"] + model + ["--data", prompts.path, "--out", out.path, "--reward-model", out.path])
  #expect(bad.status != 0 && bad.stderr.contains("reward_head.safetensors"), "\(bad.stderr)")
}

@Test func rlpUMLTrainsARewardModelWithTheMultiViewTermFromTheCommandLine() throws {
  let pairs = temporary("uml-pairs.jsonl"), views = temporary("uml-views.jsonl"), rm = temporary("uml-rm")
  defer { for u in [pairs, views, rm] { try? FileManager.default.removeItem(at: u) } }
  try Data((0..<24).map { #"{"prompt": "q\#($0)?", "chosen": "yes", "rejected": "no"}"# }.joined(separator: "\n").utf8).write(to: pairs)
  try Data((0..<12).map { #"{"prompt": "p\#($0)?", "responses": ["a\#($0)", "b\#($0)", "c"]}"# }.joined(separator: "\n").utf8).write(to: views)
  let model = ["--init", "llama", "--layers", "1", "--d-model", "32", "--heads", "2", "--max-positions", "32"]
  let r = try shatter(["train", "rm"] + model + ["--data", pairs.path, "--multi-view-data", views.path, "--lambda-mv", "0.5",
                                                  "--out", rm.path, "--steps", "6", "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  let lines = try String(contentsOf: rm.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
  let last = (try JSONSerialization.jsonObject(with: Data(lines.last!.utf8)) as? [String: Any])?["data"] as? [String: Any] ?? [:]
  #expect(last["multiview/mi_jsd"] is Double && last["multiview/skl"] is Double && last["bt_loss"] is Double, "\(last.keys.sorted())")
  #expect(FileManager.default.fileExists(atPath: rm.appendingPathComponent("reward_head.safetensors").path))
  try Data(#"{"prompt": "p", "responses": ["only one"]}"#.utf8).write(to: views)
  let bad = try shatter(["train", "rm"] + model + ["--data", pairs.path, "--multi-view-data", views.path, "--out", rm.path])
  #expect(bad.status != 0 && bad.stderr.contains(views.path + ":1: 'responses'"), "\(bad.stderr)")
}

@Test func rlpSPGWritesSelfConsistencyPairsFromThePolicysSamples() throws {
  let pairs = temporary("spg-rm-pairs.jsonl"), prompts = temporary("spg-prompts.jsonl"), rm = temporary("spg-rm")
  let policy = temporary("spg-policy"), out = temporary("spg-pairs.jsonl"), demos = temporary("spg-demos.jsonl")
  defer { for u in [pairs, prompts, rm, policy, out, demos] { try? FileManager.default.removeItem(at: u) } }
  try Data((0..<16).map { #"{"prompt": "q\#($0)?", "completion": "yes"}"# }.joined(separator: "\n").utf8).write(to: demos)
  try Data((0..<16).map { #"{"prompt": "q\#($0)?", "chosen": "yes", "rejected": "no"}"# }.joined(separator: "\n").utf8).write(to: pairs)
  try Data((0..<5).map { #"{"prompt": "What is \#($0) + 1?"}"# }.joined(separator: "\n").utf8).write(to: prompts)
  let model = ["--init", "llama", "--layers", "1", "--d-model", "32", "--heads", "2", "--max-positions", "48"]
  #expect(try shatter(["train", "rm"] + model + ["--data", pairs.path, "--out", rm.path, "--steps", "2"]).status == 0)
  #expect(try shatter(["train", "sft"] + model + ["--data", demos.path, "--out", policy.path, "--steps", "2"]).status == 0)
  // An external judge that puts samples 1, 3 in one cluster and 2, 4 in another: confidence 0.5 on every prompt.
  let r = try shatter(["rlp", "spg", "--policy", policy.path, "--reward-model", rm.path, "--prompts", prompts.path, "--out", out.path,
                       "--samples", "4", "--max-new-tokens", "4", "--equivalence-command", "awk '{print NR % 2}'", "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  #expect(r.json["pairs"] as? Int == 5 && r.json["mean_confidence"] as? Double == 0.5, "\(r.stdout)")
  let lines = try String(contentsOf: out, encoding: .utf8).split(separator: "\n")
  #expect(lines.count == 5)
  let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any]
  #expect(first?["prompt"] as? String == "What is 0 + 1?" && first?["chosen"] is String && first?["rejected"] is String)
  // γ above every prompt's confidence keeps none; a judge writing too few lines is named.
  let none = try shatter(["rlp", "spg", "--policy", policy.path, "--reward-model", rm.path, "--prompts", prompts.path, "--out", out.path,
                          "--samples", "4", "--max-new-tokens", "4", "--gamma", "0.9", "--equivalence-command", "awk '{print NR % 2}'", "--json"])
  #expect(none.json["pairs"] as? Int == 0 && none.json["skipped_low_confidence"] as? Int == 5, "\(none.stdout) \(none.stderr)")
  let bad = try shatter(["rlp", "spg", "--policy", policy.path, "--reward-model", rm.path, "--prompts", prompts.path, "--out", out.path,
                         "--samples", "4", "--max-new-tokens", "4", "--equivalence-command", "head -n 1"])
  #expect(bad.status != 0 && bad.stderr.contains("--equivalence-command 'head -n 1' wrote 1 lines for 4 completions"), "\(bad.stderr)")
}

@Test func experimentInclusivePrintsTheSummaryWithItsDesignBound() throws {
  let out = temporary("inclusive")
  defer { try? FileManager.default.removeItem(at: out) }
  let r = try shatter(["experiment", "inclusive", "--out", out.path, "--seeds", "1", "--budget", "20", "--rules",
                       "passive,ts_contrast", "--pretrain-steps", "50", "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  let rules = try #require(r.json["rules"] as? [String: [String: Any]])
  #expect(Set(rules.keys) == ["passive", "ts_contrast"])
  // The default world's bound (0.727 over both prompts; QueryDesignBoundTests pins the per-prompt values).
  let bound = try #require(r.json["design_bound"] as? [String: Any])
  #expect(abs((bound["ratio"] as? Double ?? 0) - 0.727) < 0.001)
  #expect((bound["per_prompt"] as? [Double])?.count == 2)
  let text = try shatter(["experiment", "inclusive", "--out", out.path, "--seeds", "1", "--budget", "20", "--rules",
                          "passive,ts_contrast", "--pretrain-steps", "50"])
  #expect(text.stdout.contains("| ts_contrast |") && text.stdout.contains("Variance bound: once the model is near p*"))
  // --world-seed moves the types' preference centres: another world (the default's KL(p*‖p₀) is 0.4425, seed 1's 0.4270).
  let other = temporary("inclusive-world")
  defer { try? FileManager.default.removeItem(at: other) }
  let moved = try shatter(["experiment", "inclusive", "--out", other.path, "--seeds", "1", "--budget", "20", "--rules",
                           "passive", "--pretrain-steps", "50", "--world-seed", "1", "--json"])
  #expect(abs((moved.json["prior_kl"] as? Double ?? 0) - 0.4270) < 0.0005, "\(moved.stderr)")
  #expect(abs((r.json["prior_kl"] as? Double ?? 0) - 0.4425) < 0.0005)
  let bad = try shatter(["experiment", "inclusive", "--out", out.path, "--rules", "passive,contrasts"])
  #expect(bad.status != 0 && bad.stderr.contains("unknown rule 'contrasts'") && bad.stderr.contains("ts_contrast"), "\(bad.stderr)")
}

@Test func experimentRLPPrintsThePapersTableAndRefusesBadFlags() throws {
  let out = temporary("rlp")
  defer { try? FileManager.default.removeItem(at: out) }
  let tiny = ["--seeds", "1", "--max-operand", "9", "--train-problems", "30", "--demonstrations", "60", "--human-pairs", "16",
              "--policy-prompts", "6", "--eval-problems", "4", "--hidden-size", "16", "--layers", "1", "--sft-steps", "10",
              "--rm-steps", "2", "--views", "2", "--spg-samples", "3", "--ppo-steps", "2", "--ppo-batch", "4", "--best-of-n", "2",
              "--response-length", "6"]
  let r = try shatter(["experiment", "rlp", "--out", out.path, "--json"] + tiny)
  #expect(r.status == 0, "\(r.stderr)")
  #expect(r.json["order"] as? [String] == ["sft", "ppo", "best-of-n", "rlp-uml", "rlp-spg"], "\(r.stdout)")
  let rms = try #require(r.json["reward_models"] as? [String: [String: Any]])
  #expect(Set(rms.keys) == ["rm", "rm-uml", "rm-spg"] && rms["rm"]?["on_policy_accuracy"] != nil)
  // Resumed from the saved seed: the table, without training again.
  let text = try shatter(["experiment", "rlp", "--out", out.path] + tiny)
  #expect(text.stdout.contains("| RLP-UML |") && text.stdout.contains("accuracy on policy-sample pairs") && !text.stderr.contains("SFT done"))
  let bad = try shatter(["experiment", "rlp", "--out", out.path, "--views", "1"])
  #expect(bad.status != 0 && bad.stderr.contains("--views and --spg-samples must be at least 2"), "\(bad.stderr)")
}

// MARK: - the real model (SmolLM2-135M-Instruct; `make model` puts it in place, `make test` runs that first)

let realModel = repoRoot.appendingPathComponent("models/smollm2-135m-instruct")
var realGGUF: URL {
  let cache = ProcessInfo.processInfo.environment["SHATTER_CACHE"]
    ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/shatter").path
  return URL(fileURLWithPath: cache).appendingPathComponent("SmolLM2-135M-Instruct.Q4_1.gguf")
}

func requireRealModel() throws {
  struct Missing: Error, CustomStringConvertible { let description: String }
  let fm = FileManager.default
  guard fm.fileExists(atPath: realModel.appendingPathComponent("model.safetensors").path), fm.fileExists(atPath: realGGUF.path) else {
    throw Missing(description: "SmolLM2-135M-Instruct is not on this machine (expected \(realModel.path) and "
      + "\(realGGUF.path)); run `make model`")
  }
}

@Test func greedyGenerationOnTheRealModelKnowsTheCapitalOfFrance() throws {
  try requireRealModel()
  let r = try shatter(["generate", "--model", realModel.path, "--prompt", "The capital of France is", "--max-new-tokens", "4",
                       "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  let text = r.json["text"] as? String ?? ""
  #expect(text.hasPrefix(" Paris"), "continued with \(text.debugDescription)")
}

@Test func convertWritesADirectoryAndModelOptionsAcceptAGGUFFile() throws {
  try requireRealModel()
  let out = temporary("converted")
  defer { try? FileManager.default.removeItem(at: out) }
  let r = try shatter(["convert", "--gguf", realGGUF.path, "--out", out.path, "--dtype", "bf16", "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  #expect(r.json["architecture"] as? String == "llama")
  #expect(r.json["tensors"] as? Int == 272)
  for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
    #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(name).path), "\(name) missing")
  }
  let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any]
  #expect(config?["torch_dtype"] as? String == "bfloat16")
  #expect(config?["tie_word_embeddings"] as? Bool == true)
  let tokConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("tokenizer_config.json"))) as? [String: Any]
  #expect(tokConfig?["eos_token"] as? String == "<|im_end|>")
  #expect((tokConfig?["chat_template"] as? String)?.contains("<|im_start|>") == true)

  // The same text scores alike from the GGUF file (converted in memory) and from the f32 directory.
  let fromGGUF = try shatter(["score", "--model", realGGUF.path, "--text", "Paris is a city.", "--json"])
  let fromDir = try shatter(["score", "--model", realModel.path, "--text", "Paris is a city.", "--json"])
  #expect(fromGGUF.status == 0 && fromDir.status == 0, "\(fromGGUF.stderr)\(fromDir.stderr)")
  let a = fromGGUF.json["logprobs"] as? [Double] ?? [], b = fromDir.json["logprobs"] as? [Double] ?? []
  #expect(a.count == b.count && !a.isEmpty)
  #expect(zip(a, b).allSatisfy { Swift.abs($0 - $1) < 1e-5 })
}

@Test func convertRefusesAFileThatIsNotGGUF() throws {
  let bad = temporary("bad.gguf")
  defer { try? FileManager.default.removeItem(at: bad) }
  try Data("not a gguf file at all".utf8).write(to: bad)
  let r = try shatter(["convert", "--gguf", bad.path, "--out", temporary("never").path])
  #expect(r.status != 0)
  #expect(r.stderr.contains("bad magic"), "\(r.stderr)")
  let g = try shatter(["generate", "--model", bad.path, "--prompt", "x"])
  #expect(g.status != 0 && g.stderr.contains("bad magic"))
}
