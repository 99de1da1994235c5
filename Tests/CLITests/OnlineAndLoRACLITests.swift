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
