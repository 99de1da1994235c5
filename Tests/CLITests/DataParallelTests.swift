import Foundation
import Testing
import Torch

/// Data parallel through `shatter launch`: two ranks on loopback against one process with the whole batch.
@Suite struct DataParallelTests {
  static let fresh = ["--init", "llama", "--layers", "2", "--d-model", "32", "--heads", "4", "--max-positions", "32",
                      "--dtype", "float64", "--lr", "1e-2", "--seed", "3"]

  func port() -> String { "\(Int.random(in: 20000..<60000))" }

  /// The largest |difference| between two runs' saved weights.
  func maxDifference(_ a: URL, _ b: URL) throws -> Double {
    let wa = try Safetensors.load(a.appendingPathComponent("model.safetensors"))
    let wb = try Safetensors.load(b.appendingPathComponent("model.safetensors"))
    #expect(wa.keys.sorted() == wb.keys.sorted())
    var worst = 0.0
    for (k, t) in wa {
      guard let u = wb[k] else { continue }
      worst = Swift.max(worst, (t.to(.float64) - u.to(.float64)).abs().max().item())
    }
    return worst
  }

  func expectTwoRanksMatchOneProcess(_ method: String, data: String, extra: [String]) throws {
    let one = temporary("dp-one"), two = temporary("dp-two")
    let common = ["train", method] + Self.fresh + ["--data", repoRoot.appendingPathComponent(data).path] + extra
    let a = try shatter(common + ["--out", one.path])
    #expect(a.status == 0, "\(a.stderr)")
    let b = try shatter(["launch", "--nproc", "2", "--master-port", port(), "--"] + common + ["--out", two.path])
    #expect(b.status == 0, "\(b.stderr)")
    #expect(b.stderr.contains("data parallel over 2 ranks (gloo)"), "\(b.stderr)")
    let d = try maxDifference(one, two)
    #expect(d < 1e-6, "\(method): 2 ranks × half the batch differ from 1 process by \(d)")
  }

  @Test func sftOnTwoRanksEndsWithTheWeightsOfOneProcess() throws {
    try expectTwoRanksMatchOneProcess("sft", data: "examples/addition.jsonl",
                                      extra: ["--steps", "4", "--batch-size", "8", "--grad-accum", "2"])
  }

  @Test func dpoOnTwoRanksEndsWithTheWeightsOfOneProcess() throws {
    try expectTwoRanksMatchOneProcess("dpo", data: "examples/addition-pairs.jsonl", extra: ["--steps", "3", "--batch-size", "4"])
  }

  @Test func aTwoRankCheckpointResumesOnOneProcess() throws {
    let straight = temporary("dp-straight"), split = temporary("dp-split")
    let common = ["train", "sft"] + Self.fresh + ["--data", repoRoot.appendingPathComponent("examples/addition.jsonl").path,
                                                  "--steps", "4", "--batch-size", "4"]
    #expect(try shatter(common + ["--out", straight.path]).status == 0)
    let b = try shatter(["launch", "--nproc", "2", "--master-port", port(), "--"] + common + ["--out", split.path, "--save-every", "2"])
    #expect(b.status == 0, "\(b.stderr)")
    #expect(FileManager.default.fileExists(atPath: split.appendingPathComponent("checkpoint-000002/trainer_state.json").path))
    let c = try shatter(common + ["--out", split.path, "--resume"])
    #expect(c.status == 0 && c.stderr.contains("resuming from step 2"), "\(c.stderr)")
    #expect(try maxDifference(straight, split) < 1e-6)
  }

  @Test func aKilledRankEndsTheJobWithAMessageNamingIt() throws {
    let out = temporary("dp-killed")
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("shatter")
    let p = Process()
    p.executableURL = FileManager.default.isExecutableFile(atPath: exe.path) ? exe : repoRoot.appendingPathComponent(".build/debug/shatter")
    p.arguments = ["launch", "--nproc", "2", "--master-port", port(), "--", "train", "sft"] + Self.fresh
      + ["--data", repoRoot.appendingPathComponent("examples/addition.jsonl").path, "--steps", "100000", "--batch-size", "4",
         "--out", out.path, "--dist-timeout", "20"]
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    // Wait until training runs (rank 0 logs its first steps), then kill rank 1.
    let metrics = out.appendingPathComponent("metrics.jsonl")
    let deadline = Date().addingTimeInterval(60)
    while ((try? Data(contentsOf: metrics))?.count ?? 0) == 0 && p.isRunning && Date() < deadline { usleep(20_000) }
    let rank1 = childPIDs(of: p.processIdentifier).first { environment(of: $0)["RANK"] == "1" }
    try #require(rank1 != nil, "rank 1 not found among the launcher's children")
    let killedAt = Date()
    kill(rank1!, SIGKILL)
    let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    #expect(p.terminationStatus != 0)
    #expect(text.contains("rank 1 (pid \(rank1!)) was killed by signal 9"), "\(text.suffix(400))")
    #expect(Date().timeIntervalSince(killedAt) < 20, "the job took too long to stop")
  }

  @Test func aBatchTheRanksCannotShareAndABadRankAreClearErrors() throws {
    let common = ["train", "sft"] + Self.fresh + ["--data", repoRoot.appendingPathComponent("examples/addition.jsonl").path,
                                                  "--steps", "1", "--batch-size", "5", "--out", temporary("dp-bad").path,
                                                  "--dist-timeout", "20"]
    let r = try shatter(["launch", "--nproc", "2", "--master-port", port(), "--"] + common)
    #expect(r.status != 0)
    #expect(r.stderr.contains("--batch-size 5 is not divisible by the world size 2"), "\(r.stderr)")
    #expect(r.stderr.contains("shatter launch: rank "), "\(r.stderr)")
  }
}

/// The pids whose parent is `parent` (Linux /proc).
func childPIDs(of parent: Int32) -> [Int32] {
  let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
  return entries.compactMap(Int32.init).filter { pid in
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return false }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    return fields.count > 2 && Int32(fields[1]) == parent
  }
}

/// A process's environment variables (Linux /proc).
func environment(of pid: Int32) -> [String: String] {
  guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return [:] }
  var out: [String: String] = [:]
  for entry in data.split(separator: 0) {
    let s = String(decoding: entry, as: UTF8.self)
    if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
  }
  return out
}
