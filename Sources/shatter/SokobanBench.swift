import ArgumentParser
import Foundation
import Worlds

/// The Sokoban solver on real levels: the share of a Boxoban file's first levels solved within a time limit.
struct SokobanBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sokoban",
    abstract: "Run the Sokoban solver on the first levels of a Boxoban file; print the solved share and times.")

  @Option(help: "A Boxoban level file (`; id` then the level's rows).")
  var levels = "../shared/data/boxoban/unfiltered-test-000.txt"
  @Option(help: "Levels from the start of the file.") var count = 100
  @Option(help: "Seconds the solver may spend on one level.") var timeLimit: Double = 10
  @Flag(help: "Print one JSON object.") var json = false

  func validate() throws {
    guard count >= 1, timeLimit > 0 else { throw ValidationError("--count must be at least 1 and --time-limit positive") }
  }

  func run() throws {
    guard FileManager.default.fileExists(atPath: levels) else { throw UserError("--levels \(levels) does not exist") }
    let all = try SokobanLevel.boxoban(contentsOf: URL(fileURLWithPath: levels))
    let chosen = Array(all.prefix(count))
    let solver = SokobanSolver(timeLimit: timeLimit)
    var times: [Double] = [], solved = 0, optimal = 0, replayed = 0
    for (i, (id, level)) in chosen.enumerated() {
      let r = solver.solve(level)
      times.append(r.seconds)
      if let plan = r.plan {
        solved += 1
        if plan.provenOptimal { optimal += 1 }
        if level.playing(plan.moves)?.isSolved == true { replayed += 1 }
      }
      if !json {
        FileHandle.standardError.write(Data(String(format: "\rlevel %d (%d/%d): %d solved", id, i + 1, chosen.count, solved).utf8))
      }
    }
    let sorted = times.sorted()
    let median = sorted[sorted.count / 2]
    let facts: [String: Any] = [
      "levels": chosen.count, "solved": solved, "solved_share": Double(solved) / Double(chosen.count),
      "proven_optimal": optimal, "plans_replay_to_solved": replayed, "median_seconds": median,
      "max_seconds": sorted.last!, "time_limit": timeLimit,
    ]
    if json { printJSON(facts); return }
    FileHandle.standardError.write(Data("\n".utf8))
    print(String(format: "Sokoban solver on the first %d levels of %@: %d solved (%.0f%%), %d proven optimal in pushes, "
      + "%d plans replay to solved; median %.2f s, max %.2f s (limit %.0f s)", chosen.count,
      URL(fileURLWithPath: levels).lastPathComponent, solved, 100 * Double(solved) / Double(chosen.count), optimal, replayed,
      median, sorted.last!, timeLimit))
  }
}
