import Foundation
import Testing

@Test func playWithBaselinesNeedsNoModel() throws {
  let solved = try shatter(["play", "--game", "frozenlake", "--no-slippery", "--agent", "solver", "--json"])
  #expect(solved.status == 0, "\(solved.stderr)")
  #expect(solved.json["success_rate"] as? Double == 1)
  let random = try shatter(["play", "--game", "minesweeper", "--agent", "random", "--episodes", "2", "--seed", "3", "--json"])
  #expect(random.status == 0, "\(random.stderr)")
  #expect((random.json["episodes"] as? [[String: Any]])?.count == 2)
  let text = try shatter(["play", "--game", "sokoban", "--agent", "solver", "--rows", "6", "--columns", "6"])
  #expect(text.status == 0 && text.stdout.contains("step 1:") && text.stdout.contains("1/1 won"), "\(text.stdout)\(text.stderr)")
  let bad = try shatter(["play", "--agent", "nope"])
  #expect(bad.status != 0 && bad.stderr.contains("cel-no-lookahead"))
  let both = try shatter(["play", "--model", "x", "--endpoint", "http://127.0.0.1:1/v1"])
  #expect(both.status != 0 && both.stderr.contains("not both"))
}

/// CEL end to end over HTTP: `shatter serve` on the real model, `shatter play --endpoint` against it.
@Test func experimentCELRunsTheBaselinesAndRefusesBadFlags() throws {
  let out = temporary("cel-exp").path
  let r = try shatter(["experiment", "cel", "--agents", "random,solver", "--games", "frozenlake,minesweeper", "--seeds", "2",
                       "--episodes", "2", "--out", out, "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  let games = r.json["games"] as? [String: [String: Any]]
  let solver = (games?["frozenlake"]?["solver"] as? [String: Any])?["success"] as? [String: Double]
  #expect(solver?["mean"] == 1 && Set(games?.keys.map { $0 } ?? []) == ["frozenlake", "minesweeper"], "\(r.stdout)")
  #expect(r.stderr.contains("[16/16] ") && r.stderr.contains("] minesweeper solver seed 1 episode 2: "), "\(r.stderr)")
  #expect(FileManager.default.fileExists(atPath: out + "/report.md"))
  // Run again: every episode is kept, none replayed.
  let again = try shatter(["experiment", "cel", "--agents", "random,solver", "--games", "frozenlake,minesweeper", "--seeds", "2",
                           "--episodes", "2", "--out", out])
  #expect(again.status == 0 && again.stderr.contains("(kept)") && again.stdout.contains("| solver | 1.00"), "\(again.stderr)")
  let bad = try shatter(["experiment", "cel", "--agents", "random,nope", "--out", temporary("cel-bad").path])
  #expect(bad.status != 0 && bad.stderr.contains("unknown agent 'nope'"), "\(bad.stderr)")
  let game = try shatter(["experiment", "cel", "--games", "chess", "--agents", "random", "--out", temporary("cel-bad2").path])
  #expect(game.status != 0 && game.stderr.contains("unknown game 'chess'"), "\(game.stderr)")
}

@Test func celPlaysAgainstShatterServeOverHTTP() throws {
  try requireRealModel()
  let exe = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("shatter")
  let server = Process()
  server.executableURL = FileManager.default.isExecutableFile(atPath: exe.path) ? exe : repoRoot.appendingPathComponent(".build/debug/shatter")
  server.arguments = ["serve", "--model", realModel.path, "--port", "0"]
  let err = Pipe()
  server.standardError = err
  server.standardOutput = FileHandle.nullDevice
  try server.run()
  defer { server.terminate(); server.waitUntilExit() }
  var seen = "", port: String?
  let deadline = Date().addingTimeInterval(120)
  while port == nil && Date() < deadline {
    let data = err.fileHandleForReading.availableData
    if data.isEmpty { Thread.sleep(forTimeInterval: 0.1); continue }
    seen += String(decoding: data, as: UTF8.self)
    if let r = seen.range(of: "listening on http://127.0.0.1:") {
      port = String(seen[r.upperBound...].prefix { $0.isNumber })
    }
  }
  let p = try #require(port, "serve did not start: \(seen)")
  let transcript = temporary("transcript.jsonl")
  defer { try? FileManager.default.removeItem(at: transcript) }
  let r = try shatter(["play", "--game", "frozenlake", "--no-slippery", "--agent", "cel", "--endpoint", "http://127.0.0.1:\(p)/v1",
                       "--max-steps", "2", "--candidates", "2", "--max-tokens", "16", "--reflection-tokens", "32",
                       "--transcript", transcript.path, "--json"])
  #expect(r.status == 0, "\(r.stderr)")
  let episode = try #require((r.json["episodes"] as? [[String: Any]])?.first)
  let calls = episode["modelCalls"] as? Int ?? 0
  #expect(calls >= 2 * 2 + 2, "two look-ahead calls per candidate per step, then rules and playbook")
  let lines = try String(contentsOf: transcript, encoding: .utf8).split(separator: "\n")
  #expect(lines.count == calls)
  #expect(lines.last?.contains("\"call\":\"playbook\"") == true)
}
