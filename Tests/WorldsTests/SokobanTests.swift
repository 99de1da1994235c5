import Foundation
import Testing
@testable import Worlds

/// Sokoban against TextArena 0.7.4's Sokoban-v0 episodes (scripts/make_world_fixtures.py), the XSB and
/// Boxoban formats, reverse-play rooms and the push-optimal solver.
@Suite struct SokobanTests {
  let fixture: SokobanFixture

  init() throws { fixture = try WorldFixtures.load("sokoban.json", as: SokobanFixture.self) }

  @Test func recordedEpisodesReplayAsTextArena() throws {
    var kinds = Set<String>()
    for e in fixture.episodes {
      kinds.insert(e.kind)
      let level = try SokobanLevel(xsb: e.level.joined(separator: "\n"))
      #expect(level.boxes.count == e.boxes && level.rows == e.dim[0] && level.columns == e.dim[1])
      var game = try Sokoban(level: level, maxTurns: e.maxTurns)
      #expect(game.reset(seed: 0).board == e.initialBoard)
      for (i, s) in e.steps.enumerated() {
        let r = game.step(text: s.action)
        let label = "\(e.envID) seed \(e.seed) \(e.kind) step \(i) \(s.action)"
        #expect(game.render() == s.board, "\(label)")
        #expect(r.isDone == s.done, "\(label)")
        #expect(game.errorCount == s.errorCount && game.turn == s.turn, "\(label)")
        if s.done {
          #expect(r.reward == s.reward!, "\(label)")
          #expect(r.truncated == (s.reason?.hasPrefix("The turn limit") ?? false), "\(label)")
        }
      }
      if e.kind == "solve" { #expect(game.isSolved) }
    }
    #expect(kinds == ["random", "solve", "limit", "double-invalid"])
  }

  @Test func solverBeatsOrTiesTheFixtureBFSPlans() throws {
    let solver = SokobanSolver(timeLimit: 5)
    for e in fixture.episodes where e.kind == "solve" {
      let level = try SokobanLevel(xsb: e.level.joined(separator: "\n"))
      let result = solver.solve(level)
      let plan = try #require(result.plan)
      #expect(plan.provenOptimal)
      #expect(level.playing(plan.moves)?.isSolved == true)
      // The fixture's plan is shortest in moves; a push-optimal plan pushes no more than it does.
      var bfs = level
      var bfsPushes = 0
      for s in e.steps {
        let action = try Sokoban(level: bfs).parseAction(s.action).get()
        let before = Set(bfs.boxes)
        bfs = try #require(bfs.playing([action]))
        if Set(bfs.boxes) != before { bfsPushes += 1 }
      }
      #expect(bfs.isSolved && plan.pushes <= bfsPushes)
    }
  }

  @Test func xsbAndBoxobanFormats() throws {
    let text = "  #####\n###   #\n#.@$  #\n### $.#\n#.##$ #\n# # . ##\n#$ *$$.#\n#   .  #\n########"
    let level = try SokobanLevel(xsb: text)
    #expect(level.rows == 9 && level.columns == 8)
    #expect(level.boxes.count == 7 && level.goals.filter { $0 }.count == 7)
    #expect(try SokobanLevel(xsb: level.xsb) == level)
    #expect(level.xsb.split(separator: "\n")[0] == "  ##### ")
    #expect(throws: WorldsError.self) { try SokobanLevel(xsb: "#####\n#@$x#\n#####") }
    #expect(throws: WorldsError.self) { try SokobanLevel(xsb: "#####\n#@$ #\n#####") }
    #expect(throws: WorldsError.self) { try SokobanLevel(xsb: "######\n#@$.@#\n######") }
    let file = "; 0\n#####\n#@$.#\n#####\n\n; 1\n######\n#+$ $#\n#   .#\n######\n"
    let levels = try SokobanLevel.boxoban(file)
    #expect(levels.map(\.id) == [0, 1] && levels[1].level.boxes.count == 2)
    #expect(throws: WorldsError.self) { try SokobanLevel.boxoban("; x\n###\n") }
    #expect(throws: WorldsError.self) { try SokobanLevel.boxoban("; 3\n#@$.#\n; 4\n#@$#\n") }
  }

  @Test func boxobanFileParsesAndItsFirstLevelsSolveOptimally() throws {
    guard let url = WorldFixtures.boxobanFile else { return }
    let levels = try SokobanLevel.boxoban(contentsOf: url)
    #expect(levels.count == 1000)
    #expect(levels.allSatisfy { $0.level.rows == 10 && $0.level.columns == 10 && $0.level.boxes.count == 4 })
    #expect(levels.map(\.id) == Array(0..<1000))
    let solver = SokobanSolver(timeLimit: 5)
    for (id, level) in levels.prefix(8) {
      let result = solver.solve(level)
      let plan = try #require(result.plan, "level \(id)")
      #expect(plan.provenOptimal && level.playing(plan.moves)?.isSolved == true, "level \(id)")
      // Uniform-cost search on pushes (no bound) agrees on the number of pushes: the bound is admissible.
      let search = try #require(SokobanSearch(level))
      let ucs = search.run(weight: 0, deadline: 30, maxExpansions: 2_000_000, elapsed: { 0 })
      #expect(ucs.pushes?.count == plan.pushes, "level \(id)")
    }
  }

  @Test func generatedRoomsAreSolvedAndReplay() throws {
    let solver = SokobanSolver(timeLimit: 5)
    var count = 0
    for generator in [SokobanGenerator.textArena, SokobanGenerator(rows: 7, columns: 7, boxes: 2), .textArenaMedium,
                      SokobanGenerator(rows: 9, columns: 8, boxes: 3)] {
      for seed in UInt64(0)..<6 {
        let level = try generator.generate(seed: seed)
        #expect(level.rows == generator.rows && level.columns == generator.columns)
        #expect(level.boxes.count == generator.boxes && !level.boxes.contains { level.goals[$0] })
        #expect(try generator.generate(seed: seed) == level)
        let result = solver.solve(level)
        #expect(result.status == .solved, "\(generator.rows)×\(generator.columns) seed \(seed):\n\(level.xsb)")
        if let plan = result.plan {
          #expect(level.playing(plan.moves)?.isSolved == true)
          #expect(plan.lurd.count == plan.moves.count && plan.lurd.filter(\.isUppercase).count == plan.pushes)
          // The plan played through the game wins it.
          var game = try Sokoban(level: level, maxTurns: plan.moves.count + 1)
          _ = game.reset(seed: 0)
          var last: StepResult?
          for m in plan.moves { last = game.step(m) }
          #expect(last?.terminated == true && last?.reward == 1)
        }
        count += 1
      }
    }
    #expect(count == 24)
    #expect(try SokobanGenerator.textArena.generate(seed: 1) != SokobanGenerator.textArena.generate(seed: 2))
  }

  @Test func deadlocksAreRecognised() throws {
    let solver = SokobanSolver(timeLimit: 2)
    // A box in a corner.
    let corner = try SokobanLevel(xsb: "#####\n#$  #\n#  .#\n# @ #\n#####")
    #expect(solver.deadlock(in: corner) == .deadSquare(6))
    #expect(solver.solve(corner).status == .unsolvable)
    // A box against a wall with no goal along it.
    let wall = try SokobanLevel(xsb: "######\n#    #\n#    #\n#.@  #\n# $  #\n######")
    // (row 4 is along the bottom wall, where there is no goal)
    #expect(solver.deadlock(in: wall) == .deadSquare(4 * 6 + 2))
    // A 2×2 block of boxes, one off its goal, in open floor.
    let block = try SokobanLevel(xsb: "#######\n#     #\n# $$  #\n# $*  #\n#  .. #\n# @ . #\n#######")
    #expect(solver.deadlock(in: block) != nil)
    if case .freeze = solver.deadlock(in: block)! {} else { Issue.record("expected a freeze") }
    #expect(solver.solve(block).status == .unsolvable)
    // Two boxes side by side against a wall, neither on a goal: frozen.
    let pair = try SokobanLevel(xsb: "#######\n#  $$ #\n#     #\n# ..@ #\n#######")
    #expect(solver.deadlock(in: pair) != nil)
    // The same shapes on goals are no deadlock, and solved.
    let onGoals = try SokobanLevel(xsb: "######\n#**  #\n#**  #\n#  @ #\n######")
    #expect(solver.deadlock(in: onGoals) == nil)
    #expect(solver.solve(onGoals).plan?.pushes == 0)
    // A live position has none.
    let live = try SokobanLevel(xsb: "#####\n#   #\n# $ #\n# .@#\n#####")
    #expect(solver.deadlock(in: live) == nil)
    let plan = try #require(solver.solve(live).plan)
    #expect(plan.pushes == 1 && plan.lurd == "uulD")
  }

  @Test func budgetLabelsPlansAndRulesDiffer() throws {
    guard let url = WorldFixtures.boxobanFile else { return }
    let level = try SokobanLevel.boxoban(contentsOf: url)[892].level
    // No time for the optimal search: the weighted fallback's plan is labelled as not proven optimal.
    let hurried = SokobanSolver(timeLimit: 30, maxExpansions: 400, optimalShare: 0.01, fallbackWeight: 5)
    let result = hurried.solve(level)
    if let plan = result.plan {
      #expect(!plan.provenOptimal && level.playing(plan.moves)?.isSolved == true)
    } else {
      #expect(result.status == .budgetExhausted)
    }
    // Sparse rules: a blocked move uses a turn and pays nothing; lenient syntax takes bare words.
    var game = try Sokoban(level: try SokobanLevel(xsb: "#####\n#@$.#\n#####"), maxTurns: 5, rules: .sparse)
    _ = game.reset(seed: 0)
    let bump = game.step(text: "up")
    #expect(bump.info.invalidAction == nil && game.turn == 1 && !bump.isDone)
    #expect(game.step(text: "gibberish").info.invalidAction != nil && game.turn == 1)
    let win = game.step(text: "d")
    #expect(win.terminated && win.reward == 1)
    #expect(game.legalActions.isEmpty)
  }
}

/// The acceptance benchmark (README "Worlds: text games"): the first 100 Boxoban unfiltered test levels,
/// 10 s each. Off by default; run with `SHATTER_BOXOBAN=1 swift test -c release --filter BoxobanBenchmark`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["SHATTER_BOXOBAN"] == "1"))
struct BoxobanBenchmark {
  @Test func firstHundredUnfilteredTestLevels() throws {
    let url = try #require(WorldFixtures.boxobanFile)
    let levels = try SokobanLevel.boxoban(contentsOf: url).prefix(100)
    let solver = SokobanSolver(timeLimit: 10)
    var solved = 0, optimal = 0
    var times: [Double] = []
    for (_, level) in levels {
      let r = solver.solve(level)
      times.append(r.seconds)
      if let plan = r.plan, level.playing(plan.moves)?.isSolved == true, r.seconds <= 10 {
        solved += 1
        if plan.provenOptimal { optimal += 1 }
      }
    }
    times.sort()
    let median = (times[49] + times[50]) / 2
    print("Boxoban unfiltered test 0-99: solved \(solved)/100 (\(optimal) proven push-optimal), median \(String(format: "%.2f", median * 1000)) ms, max \(String(format: "%.2f", times.last! * 1000)) ms")
    #expect(solved >= 95)
  }
}
