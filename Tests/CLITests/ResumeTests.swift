import Foundation
import Testing
import Torch

/// Exact resume for the methods with random streams of their own, and evaluation that never touches them.
@Suite(.serialized) struct ResumeTests {
  static let tiny = ["--init", "gpt2", "--layers", "1", "--d-model", "32", "--heads", "2", "--max-positions", "32", "--seed", "5"]

  static func demos() throws -> URL {
    let url = temporary("demos.jsonl")
    try Data((0..<24).map { #"{"prompt": "q\#($0)=", "completion": "\#($0 * 3)"}"# }.joined(separator: "\n").utf8).write(to: url)
    return url
  }

  /// An uninterrupted run and a SIGKILLed-then-resumed one end with the same weights, bit for bit.
  func expectExactResume(_ method: [String], saveEvery: Int, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let straight = temporary("straight"), killed = temporary("killed")
    defer { for u in [straight, killed] { try? FileManager.default.removeItem(at: u) } }
    let a = try shatter(method + ["--out", straight.path, "--json"])
    #expect(a.status == 0, "\(a.stderr)", sourceLocation: sourceLocation)
    let b = try killThenResume(method, into: killed, saveEvery: saveEvery, sourceLocation: sourceLocation)
    try expectSameWeights(straight, killed, method[1], sourceLocation: sourceLocation)
    #expect(a.json["loss_history"] as? [Double] == b.json["loss_history"] as? [Double], sourceLocation: sourceLocation)
  }

  @Test func ppoKilledAndResumedIsBitIdentical() throws {
    let prompts = temporary("prompts.jsonl")
    defer { try? FileManager.default.removeItem(at: prompts) }
    try Data((0..<16).map { #"{"prompt": "\#($0)+\#($0)="}"# }.joined(separator: "\n").utf8).write(to: prompts)
    try expectExactResume(["train", "ppo"] + Self.tiny + ["--data", prompts.path, "--reward-token-fraction", "7", "--steps", "60",
                                                          "--batch-size", "8", "--response-length", "6", "--lr", "3e-3"],
                          saveEvery: 5)
  }

  @Test func iftWithLambdaNoiseAndEvaluationResumesBitIdentically() throws {
    let data = try Self.demos()
    defer { try? FileManager.default.removeItem(at: data) }
    try expectExactResume(["train", "ift"] + Self.tiny + ["--data", data.path, "--eval-data", data.path, "--lambda-noise", "0.1",
                                                          "--eval-every", "2", "--steps", "200", "--batch-size", "4"],
                          saveEvery: 20)
  }

  @Test func iqlearnWithOnlineSamplesResumesBitIdentically() throws {
    let data = try Self.demos()
    defer { try? FileManager.default.removeItem(at: data) }
    try expectExactResume(["train", "iqlearn"] + Self.tiny + ["--data", data.path, "--alpha", "0.25", "--steps", "120",
                                                              "--batch-size", "4"],
                          saveEvery: 10)
  }

  /// Evaluating every step (IFT's noisy λ, IQLearn's and PPO's sampling) leaves training exactly as without it.
  @Test func evaluatingEveryStepLeavesTheTrajectoryUnchanged() throws {
    let data = try Self.demos(), prompts = temporary("prompts.jsonl")
    defer { try? FileManager.default.removeItem(at: data); try? FileManager.default.removeItem(at: prompts) }
    try Data((0..<8).map { #"{"prompt": "\#($0)+\#($0)="}"# }.joined(separator: "\n").utf8).write(to: prompts)
    let runs: [(String, [String], URL)] = [
      ("ift", ["--lambda-noise", "0.1", "--steps", "12"], data), ("iqlearn", ["--alpha", "0.5", "--steps", "12"], data),
      ("ppo", ["--reward-token-fraction", "7", "--steps", "4", "--response-length", "4"], prompts),
    ]
    for (method, flags, file) in runs {
      let plain = temporary("plain"), evaluated = temporary("evaluated")
      defer { for u in [plain, evaluated] { try? FileManager.default.removeItem(at: u) } }
      let common = ["train", method] + Self.tiny + flags + ["--data", file.path, "--batch-size", "4", "--json"]
      let a = try shatter(common + ["--out", plain.path])
      let b = try shatter(common + ["--out", evaluated.path, "--eval-data", file.path, "--eval-every", "1"])
      #expect(a.status == 0 && b.status == 0, "\(method): \(a.stderr) \(b.stderr)")
      #expect((b.json["metrics"] as? [String: Double])?.keys.contains { $0.hasPrefix("eval/") } == true, "\(method) did not evaluate")
      #expect(a.json["loss_history"] as? [Double] == b.json["loss_history"] as? [Double], "\(method)")
      try expectSameWeights(plain, evaluated, method)
    }
  }
}
