import Foundation
import Testing

/// The share of 7s in a completion, from a Python program reading JSONL on stdin (the reward-command protocol).
private let share = #"python3 -c 'import sys, json; [print(c.count("7") / max(1, len(c))) for c in (json.loads(l)["completion"] for l in sys.stdin)]'"#
private let tinyModel = ["--init", "gpt2", "--layers", "1", "--d-model", "32", "--heads", "2", "--max-positions", "32"]

private func prompts(_ name: String) throws -> URL {
  let url = temporary(name)
  try Data((0..<32).map { #"{"prompt": "\#($0)+\#($0)=", "answer": "\#($0 + $0)"}"# }.joined(separator: "\n").utf8).write(to: url)
  return url
}

@Test(arguments: [
  ("rloo", ["--num-generations", "4", "--beta", "0.01"]),
  ("online-dpo", ["--beta", "0.1"]),
])
func onlineMethodsRaiseACommandReward(_ method: String, _ flags: [String]) throws {
  let data = try prompts("\(method)-prompts.jsonl"), out = temporary(method)
  defer { for u in [data, out] { try? FileManager.default.removeItem(at: u) } }
  let r = try shatter(["train", method] + tinyModel + flags + [
    "--data", data.path, "--eval-data", data.path, "--out", out.path, "--reward-command", share, "--max-completion-length", "8",
    "--steps", "30", "--batch-size", "8", "--lr", "1e-2", "--json",
  ])
  #expect(r.status == 0, "\(r.stderr)")
  let rewards = r.json["reward_history"] as? [Double] ?? []
  #expect(rewards.count == 30)
  let before = rewards.prefix(5).reduce(0, +) / 5, after = rewards.suffix(5).reduce(0, +) / 5
  #expect(after > before + 0.25, "\(method): reward \(before) → \(after)")
  let metrics = r.json["metrics"] as? [String: Double] ?? [:]
  let keys = method == "rloo"
    ? ["objective/kl", "objective/rlhf_reward", "objective/entropy", "policy/clipfrac_avg", "rewards/command/mean", "eval/reward"]
    : ["objective/scores_margin", "rewards/accuracies", "rewards/margins", "logps/chosen", "frac_ties", "eval/reward"]
  for key in keys { #expect(metrics[key] != nil, "\(method): \(key) missing from \(metrics.keys.sorted())") }
}

/// LoRA from the CLI: only the adapter trains and is saved (PEFT layout, naming its base); scoring
/// through --adapter, through the adapter directory alone and through `shatter merge`'s output agree;
/// a resumed LoRA run continues from the adapter checkpoint.
@Test func loraTrainsSavesScoresMergesAndResumes() throws {
  let base = temporary("lora-base"), lora = temporary("lora-run"), merged = temporary("lora-merged"), data = temporary("lora.jsonl")
  defer { for u in [base, lora, merged, data] { try? FileManager.default.removeItem(at: u) } }
  try Data((0..<64).map { #"{"prompt": "\#($0 % 10)+\#($0 % 7)=", "completion": "\#($0 % 10 + $0 % 7)"}"# }
    .joined(separator: "\n").utf8).write(to: data)
  let fresh = try shatter(["train", "sft", "--init", "llama", "--layers", "2", "--d-model", "32", "--heads", "4",
                           "--max-positions", "32", "--data", data.path, "--out", base.path, "--steps", "30", "--lr", "1e-2", "--json"])
  #expect(fresh.status == 0, "\(fresh.stderr)")
  let r = try shatter(["train", "sft", "--model", base.path, "--lora-r", "4", "--lora-alpha", "8", "--lora-targets",
                       "q_proj,v_proj,down_proj", "--data", data.path, "--out", lora.path, "--steps", "20", "--lr", "1e-2",
                       "--batch-size", "64", "--schedule", "constant", "--save-every", "10", "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  #expect(r.stderr.contains("LoRA r 4") && r.stderr.contains("trained)"), "\(r.stderr)")
  let h = r.json["loss_history"] as? [Double] ?? []
  // Whole-data batches: the loss falls step by step (about 1.8 → 1.6 on this nearly random base).
  #expect((h.last ?? 9) < (h.first ?? 0) - 0.1, "loss \(h)")
  let fm = FileManager.default
  #expect(fm.fileExists(atPath: lora.appendingPathComponent("adapter_model.safetensors").path))
  #expect(!fm.fileExists(atPath: lora.appendingPathComponent("model.safetensors").path), "only the adapter is saved")
  let config = try JSONSerialization.jsonObject(with: Data(contentsOf: lora.appendingPathComponent("adapter_config.json"))) as? [String: Any]
  #expect(config?["base_model_name_or_path"] as? String == base.path && config?["r"] as? Int == 4)
  #expect(config?["target_modules"] as? [String] == ["down_proj", "q_proj", "v_proj"])

  let text = "3+4=7"
  func total(_ args: [String]) throws -> Double {
    let s = try shatter(["score"] + args + ["--text", text, "--json"])
    #expect(s.status == 0, "\(s.stderr)")
    return s.json["total"] as? Double ?? .nan
  }
  let plain = try total(["--model", base.path])
  let withAdapter = try total(["--model", base.path, "--adapter", lora.path])
  #expect(Swift.abs(withAdapter - plain) > 1e-3, "the adapter changes the scores")
  #expect(Swift.abs(try total(["--model", lora.path]) - withAdapter) < 1e-5)
  let m = try shatter(["merge", "--adapter", lora.path, "--out", merged.path, "--json"])
  #expect(m.status == 0, "\(m.stderr)")
  #expect(m.json["layers"] as? Int == 6)
  #expect(Swift.abs(try total(["--model", merged.path]) - withAdapter) < 1e-4)

  // Resume from the step-10 adapter checkpoint (an adapter too): the same final loss as the uninterrupted run.
  #expect(fm.fileExists(atPath: lora.appendingPathComponent("checkpoint-000010/adapter_model.safetensors").path))
  let again = try shatter(["train", "sft", "--model", base.path, "--lora-r", "4", "--lora-alpha", "8", "--lora-targets",
                           "q_proj,v_proj,down_proj", "--data", data.path, "--out", lora.path, "--steps", "20", "--lr", "1e-2",
                           "--batch-size", "64", "--schedule", "constant", "--save-every", "10", "--resume", "--json"])
  #expect(again.status == 0, "\(again.stderr)")
  #expect(again.stderr.contains("resuming from step 10"), "\(again.stderr)")
  #expect(Swift.abs((again.json["final_loss"] as? Double ?? 0) - (r.json["final_loss"] as? Double ?? 1)) < 1e-5)

  let bad = try shatter(["train", "sft", "--model", base.path, "--lora-r", "4", "--lora-targets", "c_attn", "--data", data.path,
                         "--out", temporary("lora-bad").path, "--steps", "1"])
  #expect(bad.status != 0 && bad.stderr.contains("'c_attn' matches no layer"), "\(bad.stderr)")
}

/// Bad values name their flag, and a directory that cannot be made is one line naming it and the reason.
@Test func badNumbersAndUnwritableOutputsAreOneLineNamingTheFlagOrPath() throws {
  let data = try prompts("gaps.jsonl")
  defer { try? FileManager.default.removeItem(at: data) }
  let common = tinyModel + ["--data", data.path, "--steps", "1"]
  let lr = try shatter(["train", "grpo"] + common + ["--out", temporary("gap-lr").path, "--lr=-1", "--reward-funcs", "exact-match"])
  #expect(lr.status != 0 && lr.stderr.contains("--lr must be positive"), "\(lr.stderr)")
  let beta = try shatter(["train", "online-dpo"] + common + ["--out", temporary("gap-beta").path, "--beta=-1", "--reward-funcs", "exact-match"])
  #expect(beta.status != 0 && beta.stderr.contains("--beta must be positive"), "\(beta.stderr)")
  let out = try shatter(["train", "grpo"] + common + ["--out", "/proc/shatter-cannot-write-here", "--reward-funcs", "exact-match"])
  #expect(out.status != 0 && out.stderr.contains("Error: /proc/shatter-cannot-write-here: ") && !out.stderr.contains("NSCocoaErrorDomain"),
          "\(out.stderr)")
}

/// Runs shatter under `ulimit -f BLOCKS` (512-byte blocks): writes past it fail with EFBIG, a full disk's error.
private func shatterLimited(fileBlocks: Int, _ args: [String]) throws -> Run {
  let binary = repoRoot.appendingPathComponent(".build/debug/shatter").path
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/bin/sh")
  p.arguments = ["-c", "ulimit -f \(fileBlocks); exec \"$0\" \"$@\"", binary] + args
  let out = Pipe(), err = Pipe()
  (p.standardOutput, p.standardError) = (out, err)
  try p.run()
  let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  #expect(p.terminationReason == .exit, "killed by a signal: \(String(decoding: e, as: UTF8.self))")
  return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// A checkpoint that cannot be written (the disk full, here a file-size limit) and a process killed in the
/// middle of writing one both leave the previous checkpoint whole; --resume continues from it and ends
/// where an uninterrupted run ends.
@Test func aFailedOrKilledCheckpointWriteLeavesThePreviousOne() throws {
  let out = temporary("faults"), straight = temporary("faults-straight")
  defer { for u in [out, straight] { try? FileManager.default.removeItem(at: u) } }
  let common = ["train", "sft", "--init", "gpt2", "--layers", "2", "--d-model", "64", "--heads", "2", "--max-positions", "32",
                "--data", repoRoot.appendingPathComponent("examples/addition.jsonl").path, "--save-every", "2", "--batch-size", "8",
                "--schedule", "constant",
                "--json"]
  let reference = try shatter(common + ["--out", straight.path, "--steps", "8"])
  #expect(reference.status == 0, "\(reference.stderr)")
  #expect(try shatter(common + ["--out", out.path, "--steps", "4"]).status == 0)
  // Disk full at the step-4 checkpoint: the run stops saying so and names what survives.
  let full = try shatterLimited(fileBlocks: 200, common + ["--out", out.path, "--steps", "8", "--resume"])
  #expect(full.status != 0)
  #expect(full.stderr.contains("the checkpoint at step 4 could not be written") && full.stderr.contains("File too large")
    && full.stderr.contains("checkpoint-000002 (step 2) is intact"), "\(full.stderr)")
  let names = try FileManager.default.contentsOfDirectory(atPath: out.path)
  #expect(names.filter { $0.hasPrefix("checkpoint-") } == ["checkpoint-000002"])
  // Killed while writing the step-4 checkpoint (as soon as its partial directory appears).
  let p = Process()
  p.executableURL = repoRoot.appendingPathComponent(".build/debug/shatter")
  p.arguments = common + ["--out", out.path, "--steps", "8", "--resume"]
  (p.standardOutput, p.standardError) = (FileHandle.nullDevice, FileHandle.nullDevice)
  try p.run()
  let partial = out.appendingPathComponent(".checkpoint-000004.partial/model.safetensors").path
  let deadline = Date().addingTimeInterval(60)
  while p.isRunning && !FileManager.default.fileExists(atPath: partial) && Date() < deadline { usleep(500) }
  kill(p.processIdentifier, SIGKILL)
  p.waitUntilExit()
  let after = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasPrefix("checkpoint-") }.sorted()
  #expect(after.first == "checkpoint-000002")
  // Resume picks the last complete checkpoint and ends as the uninterrupted run does (a constant rate, so a
  // 4-step run continued to 8 is the 8-step run).
  let resumed = try shatter(common + ["--out", out.path, "--steps", "8", "--resume"])
  #expect(resumed.status == 0, "\(resumed.stderr)")
  #expect(resumed.stderr.contains("resuming from step \(after.count > 1 ? 4 : 2)"), "\(resumed.stderr)")
  #expect(resumed.json["final_loss"] as? Double == reference.json["final_loss"] as? Double)
}
