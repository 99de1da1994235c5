import Foundation
import Testing
@testable import Worlds

/// Minesweeper against TextArena 0.7.4's Minesweeper-v0 episodes (scripts/make_world_fixtures.py), and
/// the reference player against exhaustive enumeration.
@Suite struct MinesweeperTests {
  let fixture: MinesweeperFixture

  init() throws { fixture = try WorldFixtures.load("minesweeper.json", as: MinesweeperFixture.self) }

  @Test func recordedEpisodesReplayAsTextArena() throws {
    #expect(fixture.episodes.count >= 14)
    var kinds = Set<String>()
    for e in fixture.episodes {
      kinds.insert(e.kind)
      var game = try Minesweeper(rows: e.rows, columns: e.cols, layout: e.layout, maxTurns: e.maxTurns)
      #expect(game.mineCount == e.mines)
      _ = game.reset(seed: 0)
      for (i, s) in e.steps.enumerated() {
        let r = game.step(text: s.action)
        let label = "\(e.envID) seed \(e.seed) \(e.kind) step \(i) \(s.action)"
        #expect(game.render() == s.board, "\(label)")
        #expect(r.isDone == s.done, "\(label)")
        #expect(game.errorCount == s.errorCount && game.turn == s.turn, "\(label)")
        if s.done {
          #expect(r.reward == s.reward!, "\(label)")
          // TextArena's end: a win or a second invalid move terminates, the turn limit truncates.
          #expect(r.truncated == (s.reason?.hasPrefix("The turn limit") ?? false), "\(label)")
        } else {
          #expect(r.reward == 0)
        }
      }
    }
    #expect(kinds == ["random", "win", "double-mine", "limit"])
  }

  @Test func openingIsSafeAndFloodFills() throws {
    for preset in [Minesweeper.Preset.small, .standard, .medium, .hard] {
      for seed in UInt64(0)..<20 {
        var game = try Minesweeper(preset: preset)
        _ = game.reset(seed: seed)
        let r = Int(seed) % preset.rows, c = Int(seed * 7) % preset.columns
        let result = game.step(.reveal(row: r, column: c))
        #expect(result.info.invalidAction == nil)
        #expect(game.mines.filter { $0 }.count == preset.mines)
        for dr in -1...1 {
          for dc in -1...1 {
            let rr = r + dr, cc = c + dc
            guard rr >= 0, rr < preset.rows, cc >= 0, cc < preset.columns else { continue }
            #expect(!game.mines[rr * preset.columns + cc])
            #expect(game.revealed[rr * preset.columns + cc], "the opening 0 reveals its neighbours")
          }
        }
        // Flood fill closure: every revealed 0 has all neighbours revealed, and only safe cells are shown.
        for i in 0..<game.revealed.count where game.revealed[i] {
          #expect(!game.mines[i])
          if game.numbers[i] == 0 { #expect(game.neighbours(i).allSatisfy { game.revealed[$0] }) }
        }
      }
    }
    // The same seed draws the same layout; another seed another.
    var a = try Minesweeper(), b = try Minesweeper()
    _ = a.reset(seed: 5)
    _ = b.reset(seed: 5)
    _ = a.step(.reveal(row: 4, column: 4))
    _ = b.step(.reveal(row: 4, column: 4))
    #expect(a.mines == b.mines)
    _ = b.reset(seed: 6)
    _ = b.step(.reveal(row: 4, column: 4))
    #expect(a.mines != b.mines)
  }

  @Test func sparseRulesAndFlags() throws {
    // Mines at (0, 0) and (2, 0): opening the far side floods all but column 0, where (1, 0) is a 2.
    var game = try Minesweeper(rows: 3, columns: 5, layout: [[0, 0], [2, 0]], maxTurns: 10, rules: .sparse)
    _ = game.reset(seed: 0)
    #expect(game.syntax == .lenient)
    let open = game.step(text: "reveal 2 4")
    #expect(open.info.invalidAction == nil && !open.isDone)
    #expect(game.render() == "    0  1  2  3  4\n 0  .  1  0  0  0 \n 1  .  2  0  0  0 \n 2  .  1  0  0  0 \n")
    let flag = game.step(text: "[flag 0 0]")
    #expect(flag.info.invalidAction == nil && game.flags[0] && game.render().contains(" F "))
    let blocked = game.step(text: "[reveal 0 0]")
    #expect(blocked.info.invalidAction != nil && !blocked.isDone)
    _ = game.step(.flag(row: 0, column: 0))
    let boom = game.step(.reveal(row: 0, column: 0))
    #expect(boom.terminated && boom.reward == 0 && game.render().contains(" * "))
    // Win: reveal the only safe cell left.
    var win = try Minesweeper(rows: 1, columns: 5, layout: [[0, 2]], rules: .sparse)
    _ = win.reset(seed: 0)
    let w = win.step(text: "0 0")
    #expect(!w.terminated)  // (0, 0) is a 0 and floods to (0, 1), a 1
    #expect(win.revealed == [true, true, false, false, false])
    #expect(win.step(text: "[0 4]").terminated && win.isSolved)
    var win2 = try Minesweeper(rows: 2, columns: 2, layout: [], rules: .sparse)
    _ = win2.reset(seed: 0)
    let done = win2.step(.reveal(row: 1, column: 1))
    #expect(done.terminated && done.reward == 1)
    // The sparse turn limit truncates after maxTurns played moves, paying 0.
    var limited = try Minesweeper(rows: 1, columns: 6, layout: [[0, 5]], maxTurns: 2, rules: .sparse)
    _ = limited.reset(seed: 0)
    _ = limited.step(.flag(row: 0, column: 5))
    let cut = limited.step(.flag(row: 0, column: 5))
    #expect(cut.truncated && cut.reward == 0)
  }

  @Test func textArenaSyntaxIsStrict() throws {
    let game = try Minesweeper()
    #expect(try game.parseAction("I pick [3 2] then [4 4]").get() == .reveal(row: 3, column: 2))
    #expect(try game.parseAction("[[5 6]").get() == .reveal(row: 5, column: 6))
    for bad in ["3 2", "[3,2]", "[3  2]", "[reveal 3 2]", "(3 2)"] {
      #expect((try? game.parseAction(bad).get()) == nil, "\(bad)")
    }
    let lenient = try Minesweeper(syntax: .lenient)
    #expect(try lenient.parseAction("3 2").get() == .reveal(row: 3, column: 2))
    #expect(try lenient.parseAction("[Flag 0 1]").get() == .flag(row: 0, column: 1))
    #expect(try lenient.parseAction("reveal 7 7.").get() == .reveal(row: 7, column: 7))
    #expect(throws: WorldsError.self) { try Minesweeper(rows: 3, columns: 3, mines: 1) }
    #expect(throws: WorldsError.self) { try Minesweeper(rows: 3, columns: 3, layout: [[3, 0]]) }
  }

  /// The posterior by brute force: every placement of the mines on hidden cells that fits every number.
  func bruteForce(_ view: MinesweeperView) -> [Double?] {
    let n = view.rows * view.columns
    let hidden = (0..<n).filter { view.cells[$0] == .hidden || view.cells[$0] == .flagged }
    var counts = [Double](repeating: 0, count: n)
    var total = 0.0
    func neighbours(_ i: Int) -> [Int] {
      var out: [Int] = []
      for dr in -1...1 { for dc in -1...1 where dr != 0 || dc != 0 {
        let r = i / view.columns + dr, c = i % view.columns + dc
        if r >= 0, r < view.rows, c >= 0, c < view.columns { out.append(r * view.columns + c) }
      } }
      return out
    }
    var chosen = [Bool](repeating: false, count: n)
    func place(_ k: Int, _ from: Int) {
      if k == 0 {
        for i in 0..<n { if case .number(let v) = view.cells[i], neighbours(i).filter({ chosen[$0] }).count != v { return } }
        total += 1
        for i in 0..<n where chosen[i] { counts[i] += 1 }
        return
      }
      guard from < hidden.count else { return }
      for j in from..<hidden.count {
        chosen[hidden[j]] = true
        place(k - 1, j + 1)
        chosen[hidden[j]] = false
      }
    }
    place(view.mines, 0)
    return (0..<n).map { hidden.contains($0) ? counts[$0] / total : nil }
  }

  @Test func playerProbabilitiesAreExact() throws {
    let player = MinesweeperPlayer()
    var checked = 0
    for seed in UInt64(0)..<12 {
      var game = try Minesweeper(rows: 5, columns: 6, mines: 6, rules: .sparse)
      _ = game.reset(seed: seed)
      while !game.isDone {
        let choice = try #require(player.choose(game.view))
        if game.openingCell != nil {
          let estimate = player.mineProbabilities(game.view)
          #expect(estimate.exact)
          let truth = bruteForce(game.view)
          for i in truth.indices {
            #expect((estimate.probabilities[i] == nil) == (truth[i] == nil))
            if let p = estimate.probabilities[i], let q = truth[i] { #expect(abs(p - q) < 1e-12, "seed \(seed) cell \(i)") }
          }
          #expect(abs(choice.mineProbability - truth.compactMap { $0 }.min()!) < 1e-12)
          checked += 1
        }
        _ = game.step(choice.action)
      }
    }
    #expect(checked > 20)
  }

  @Test func playerWinsMostStandardGames() throws {
    var wins = 0
    let games = 40
    for seed in UInt64(0)..<UInt64(games) {
      var game = try Minesweeper(preset: .standard, rules: .sparse)
      if let last = game.playReference(seed: seed), last.reward == 1 { wins += 1 }
    }
    // Beginner boards with a safe 3×3 opening: a least-probability player wins about nine in ten.
    #expect(Double(wins) / Double(games) >= 0.75, "won \(wins) of \(games)")
  }

  @Test func playerFallsBackToAHeuristicPastItsBudget() throws {
    var game = try Minesweeper(preset: .hard, rules: .sparse)
    _ = game.reset(seed: 1)
    _ = game.step(.reveal(row: 6, column: 6))
    let tiny = MinesweeperPlayer(nodeBudget: 1)
    let estimate = tiny.mineProbabilities(game.view)
    #expect(!estimate.exact)
    #expect(estimate.probabilities.compactMap { $0 }.allSatisfy { $0 >= 0 && $0 <= 1 })
    #expect(tiny.choose(game.view)?.exact == false)
    #expect(MinesweeperPlayer().mineProbabilities(game.view).exact)
  }
}
