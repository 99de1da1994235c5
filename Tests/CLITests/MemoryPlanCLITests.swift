import Foundation
import Testing

/// Completions longer than 128 byte tokens, so every micro-batch is B × 128 tokens after truncation.
private func longData(_ name: String) throws -> URL {
  let url = temporary(name)
  let lines = (0..<16).map { #"{"prompt": "Story \#($0):", "completion": "\#(String(repeating: " once upon a time", count: 20))"}"# }
  try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
  return url
}

private let gpt2L4D256 = ["train", "sft", "--init", "gpt2", "--layers", "4", "--d-model", "256", "--heads", "4",
                          "--seq-len", "128", "--batch-size", "8"]

/// The plan printed before step 1 is within 25% of the peak resident memory the run then reaches (the
/// summary's `peak_resident_bytes`, the kernel's VmHWM), on the GPT-2 L4 D256 shape at batch 8 × 128 tokens.
/// The same comparison on SmolLM2-135M is a row of `make bench` (it needs 5 GiB and a minute).
@Test func theMemoryPlanIsWithinAQuarterOfThePeakResidentMemory() throws {
  let data = try longData("long.jsonl"), out = temporary("plan")
  let r = try shatter(gpt2L4D256 + ["--data", data.path, "--steps", "2", "--out", out.path, "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  for term in ["parameters", "gradients", "optimizer state", "activations", "total"] {
    #expect(r.stderr.contains("  \(term) "), "the printed plan lacks \(term): \(r.stderr)")
  }
  let plan = try #require((r.json["memory_plan"] as? [String: Int])?["total"])
  let peak = try #require(r.json["peak_resident_bytes"] as? Int)
  let ratio = Double(plan) / Double(peak)
  #expect(ratio > 0.75 && ratio < 1.25, "plan \(plan) B against a peak of \(peak) B (\(ratio))")
}

/// A run whose plan exceeds --max-memory stops before its first step, naming the limit and the biggest
/// term, and writes nothing under --out; a malformed size names the flag.
@Test func aRunOverMaxMemoryRefusesBeforeAllocatingNamingTheBiggestTerm() throws {
  let data = try longData("long.jsonl"), out = temporary("refused")
  let r = try shatter(gpt2L4D256 + ["--data", data.path, "--steps", "2", "--out", out.path, "--max-memory", "300M"])
  #expect(r.status != 0)
  #expect(r.stderr.contains("more than 300 MiB (--max-memory 300M)"), "\(r.stderr)")
  #expect(r.stderr.contains("biggest term is runtime and data") || r.stderr.contains("biggest term is activations"), "\(r.stderr)")
  #expect(!r.stderr.contains("step 1/"), "a step ran: \(r.stderr)")
  #expect(!FileManager.default.fileExists(atPath: out.path))
  // With the activations the biggest term, the advice is about the batch.
  let big = try shatter(gpt2L4D256 + ["--data", data.path, "--batch-size", "64", "--out", out.path, "--max-memory", "500M"])
  #expect(big.status != 0 && big.stderr.contains("biggest term is activations") && big.stderr.contains("--batch-size"),
          "\(big.stderr)")
  let bad = try shatter(gpt2L4D256 + ["--data", data.path, "--out", out.path, "--max-memory", "lots"])
  #expect(bad.status != 0 && bad.stderr.contains("--max-memory lots"), "\(bad.stderr)")
}
