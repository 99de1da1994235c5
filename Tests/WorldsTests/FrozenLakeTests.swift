import Foundation
import Testing
@testable import Worlds

/// Frozen Lake against Gymnasium 1.4.0's FrozenLake-v1 (fixtures from scripts/make_world_fixtures.py).
@Suite struct FrozenLakeTests {
  let fixture: FrozenLakeFixture

  init() throws { fixture = try WorldFixtures.load("frozen_lake.json", as: FrozenLakeFixture.self) }

  @Test func numpyStreamMatchesDefaultRNG() {
    for stream in fixture.numpyRandom {
      var rng = NumPyPCG64(seed: UInt64(stream.seed)!)
      let values = (0..<stream.values.count).map { _ in rng.random() }
      #expect(values == stream.values, "seed \(stream.seed)")
    }
  }

  @Test func transitionTablesEqualGymnasium() throws {
    #expect(fixture.tables.count >= 20)
    for case let t in fixture.tables {
      let schedule = FrozenLake.RewardSchedule(goal: t.rewardSchedule[0], hole: t.rewardSchedule[1], frozen: t.rewardSchedule[2])
      let game = try FrozenLake(
        map: try FrozenLakeMap(t.desc), isSlippery: t.isSlippery, successRate: t.successRate, rewardSchedule: schedule)
      #expect(game.transitions.count == t.P.count, "\(t.name)")
      for s in 0..<t.P.count {
        for a in 0..<4 {
          let expected = t.P[s][a].map {
            FrozenLakeTransition(
              probability: $0[0].double!, next: Int($0[1].double!), reward: $0[2].double!, terminated: $0[3].bool!)
          }
          #expect(game.transitions[s][a] == expected, "\(t.name) slippery \(t.isSlippery) P[\(s)][\(a)]")
        }
      }
    }
  }

  @Test func randomMapsEqualGenerateRandomMap() throws {
    for m in fixture.randomMaps {
      let map = try FrozenLakeMap.random(size: m.size, frozenProbability: m.p, seed: m.seed)
      #expect(map.rows == m.desc, "generate_random_map(size=\(m.size), p=\(m.p), seed=\(m.seed))")
    }
  }

  @Test func randomMapsAreSolvableWithCornersSet() throws {
    for seed in UInt64(0)..<40 {
      let size = 3 + Int(seed % 8)
      let map = try FrozenLakeMap.random(size: size, frozenProbability: 0.55, seed: seed)
      #expect(map.rowCount == size && map.columnCount == size)
      #expect(map.tiles.first == "S" && map.tiles.last == "G")
      #expect(map.isSolvable)
      // Solvable means the goal is reachable with positive probability: value iteration agrees.
      let game = try FrozenLake(map: map, isSlippery: false)
      #expect(game.valueIteration().startValue == 1)
    }
    #expect(try !FrozenLakeMap(["SH", "HG"]).isSolvable)
    #expect(throws: WorldsError.self) { try FrozenLakeMap.random(size: 1, seed: 0) }
    #expect(throws: WorldsError.self) { try FrozenLakeMap.random(size: 4, frozenProbability: 0, seed: 0) }
  }

  @Test func seededTrajectoriesEqualGymnasium() throws {
    for t in fixture.trajectories {
      let map: FrozenLakeMap = t.envID == "FrozenLake8x8-v1" ? .eightByEight : .fourByFour
      var game = try FrozenLake(map: map, isSlippery: t.isSlippery)
      #expect(game.maxEpisodeSteps == t.maxEpisodeSteps)
      _ = game.reset(seed: t.seed)
      #expect(game.state == 0)
      for (i, expected) in t.steps.enumerated() {
        let r = game.step(FrozenLake.Action(rawValue: expected.action)!)
        #expect(game.state == expected.state, "\(t.envID) seed \(t.seed) step \(i)")
        #expect(r.reward == expected.reward && r.terminated == expected.terminated && r.truncated == expected.truncated)
        #expect(r.info.probability == expected.prob)
      }
      // reset() without a seed continues the same stream.
      _ = game.reset()
      #expect(game.state == t.start)
      for expected in t.continued {
        let r = game.step(FrozenLake.Action(rawValue: expected.action)!)
        #expect(game.state == expected.state && r.info.probability == expected.prob, "\(t.envID) seed \(t.seed) continued")
        #expect(r.terminated == expected.terminated)
      }
    }
  }

  @Test func ansiRenderEqualsGymnasium() throws {
    let render = try #require(fixture.renders.first)
    var game = try FrozenLake(isSlippery: false)
    _ = game.reset(seed: 0)
    var frames = [game.renderANSI()]
    for a in render.actions {
      _ = game.step(FrozenLake.Action(rawValue: a)!)
      frames.append(game.renderANSI())
    }
    // Gymnasium keeps stepping after the hole; this game refuses, so the last two frames agree.
    #expect(frames == render.frames)
    #expect(game.render() == "SFFF\nFPFH\nFFFH\nHFFG")
  }

  @Test func optimalSuccessProbabilityMatchesIndependentSolve() throws {
    for s in fixture.solutions {
      let game = try FrozenLake(map: try FrozenLakeMap(s.desc))
      if let h = s.horizon {
        let solution = game.finiteHorizonValues(horizon: h)
        #expect(abs(solution.startValue - s.successProbability) < 1e-12, "\(s.name) horizon \(h)")
      } else {
        let solution = game.valueIteration()
        #expect(abs(solution.startValue - s.successProbability) < 1e-12, "\(s.name)")
        let exact = game.evaluate(policy: solution.policy)
        if let linear = s.linearSolve { #expect(abs(exact[0] - linear) < 1e-12, "\(s.name) linear solve") }
      }
    }
    // The slippery 4×4 optimum is 14/17 without a step limit; Gymnasium's registry notes ≈ 0.74 with its
    // 100-step limit (0.74419…).
    let game = try FrozenLake()
    let optimal = game.valueIteration()
    #expect(abs(optimal.startValue - 14.0 / 17.0) < 1e-12)
    #expect(abs(game.evaluate(policy: optimal.policy)[0] - 14.0 / 17.0) < 1e-12)
    #expect(abs(game.finiteHorizonValues().startValue - 0.7441902878292697) < 1e-12)
    // From state 0 the optimal move is left (into the wall: it slips down or stays, never right into risk).
    #expect(optimal.policy[0] == .left)
  }

  @Test func stepLimitsAndRewardSchedule() throws {
    #expect(try FrozenLake(map: .eightByEight).maxEpisodeSteps == 200)
    #expect(try FrozenLake(map: .fourByFour).maxEpisodeSteps == 100)
    #expect(try FrozenLake(map: .random(size: 8, seed: 1)).maxEpisodeSteps == 100)
    #expect(try FrozenLake(stepLimit: .unlimited).maxEpisodeSteps == nil)
    var game = try FrozenLake(isSlippery: false, rewardSchedule: .init(goal: 5, hole: -1, frozen: -0.25), stepLimit: .steps(3))
    _ = game.reset(seed: 0)
    #expect(game.step(.right).reward == -0.25)
    let hole = game.step(.down)
    #expect(hole.reward == -1 && hole.terminated && !hole.truncated)
    #expect(game.step(.down).info.invalidAction != nil)
    _ = game.reset(seed: 0)
    for _ in 0..<2 { #expect(!game.step(.up).truncated) }
    let last = game.step(.up)
    #expect(last.truncated && !last.terminated && game.elapsedSteps == 3)
    #expect(throws: WorldsError.self) { try FrozenLake(successRate: 1.5) }
    #expect(throws: WorldsError.self) { try FrozenLakeMap(["SFX", "FFG"]) }
    #expect(throws: WorldsError.self) { try FrozenLakeMap(["SFF", "FG"]) }
  }

  @Test func textActionsAndObservation() throws {
    var game = try FrozenLake(isSlippery: false)
    let first = game.reset(seed: 3)
    #expect(first.legalActions == ["[left]", "[down]", "[right]", "[up]"])
    #expect(first.text.hasPrefix("PFFF\nFHFH\nFFFH\nHFFG\n"))
    for (reply, action) in [("[right]", FrozenLake.Action.right), ("I'll go [Down] now", .down), ("w", .up), ("  left. ", .left),
                            ("[d]", .right), ("[2]", .right)] {
      #expect(try game.parseAction(reply).get() == action, "\(reply)")
    }
    let invalid = game.step(text: "let me think about it")
    #expect(invalid.info.invalidAction != nil && !invalid.isDone && game.elapsedSteps == 0 && game.state == 0)
    let moved = game.step(text: "Moving [down]")
    #expect(game.state == 4 && moved.info.invalidAction == nil)
  }
}
