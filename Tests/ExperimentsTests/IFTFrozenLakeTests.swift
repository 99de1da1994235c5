import Foundation
import Testing
import Worlds
@testable import Experiments

private let game = try! FrozenLake(map: try! FrozenLakeMap(IFTFrozenLake.defaultMap), isSlippery: false, stepLimit: .unlimited)

@Test func theOptimalPolicyOfTheTestMapIsTheHandWrittenOne() throws {
  // SFFG / FHHF / FFFF, discount 0.9: right along the top row; from the detour, back up at (1,0), up to the
  // goal at (1,3) and (2,3), right along the bottom; (2,0) is 5 steps either way (up or right).
  let (r, u) = ([0, 0, 1.0, 0], [0, 0, 0, 1.0])
  let none = [0.0, 0, 0, 0]
  let expected = [r, r, r, none, u, none, none, u, [0, 0, 0.5, 0.5], r, r, u]
  #expect(IFTFrozenLake.optimalPolicy(game, discount: 0.9) == expected)
  let routes = try IFTFrozenLake.routes(game)
  #expect(routes.map { $0.map(\.name) } == [["right", "right", "right"], ["down", "down", "right", "right", "right", "up", "up"]])
  #expect(throws: ExperimentError.self) {
    try IFTFrozenLake.routes(try FrozenLake(map: try FrozenLakeMap(["SFF", "FHF", "FFG"]), isSlippery: false))
  }
}

@Test func theMSEIsTheMeanOverNonTerminalStatesAndActions() {
  let optimal = IFTFrozenLake.optimalPolicy(game, discount: 0.9)
  let uniform = (0..<12).map { _ in [0.25, 0.25, 0.25, 0.25] }
  // Eight one-hot states at ((3/4)² + 3·(1/4)²)/4 = 0.1875 and the tie state at 4·(1/4)²/4 = 0.0625, over 9.
  #expect(Swift.abs(IFTFrozenLake.mse(uniform, optimal, game: game) - (8 * 0.1875 + 0.0625) / 9) < 1e-12)
  #expect(IFTFrozenLake.mse(optimal, optimal, game: game) == 0)
}

@Test func theIFTFrozenLakeExperimentRunsAndResumesToTheSameSummary() throws {
  var c = IFTFrozenLakeConfig()
  c.seeds = 2
  c.pretrainSteps = 20
  c.steps = 10
  c.evalEvery = 5
  c.sweepLambdas = [0.2]
  c.sweepGammas = [0.95]
  c.sweepLearningRates = [1e-3]
  let out = FileManager.default.temporaryDirectory.appendingPathComponent("ift-fl-\(UUID().uuidString)")
  defer { try? FileManager.default.removeItem(at: out) }
  let s = try IFTFrozenLake.run(c, out: out)
  for file in ["config.json", "metrics.jsonl", "summary.json", "report.md", "mse.svg", "policies.svg"] {
    #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), "\(file)")
  }
  #expect(Set(s.ranking) == Set(IFTFrozenLake.methods))
  #expect(s.methods["sft"]?.steps == [0, 5, 10])
  #expect(s.sweep.keys.sorted() == ["ift(λ=0.2,γ=0.95)"])
  #expect(s.rankingByLearningRate.keys.sorted() == ["0.0001", "0.001"])
  // The starting policy is one per seed: every method starts from the same MSE.
  #expect(Swift.abs((s.methods["dpo"]?.curve[0].mean ?? 0) - (s.methods["sft"]?.curve[0].mean ?? 1)) < 1e-12)
  // Interrupted: two runs lost; the rerun redoes them and gives the same summary.
  for name in ["ift-seed1.json", "dpo-seed0.json", "orpo@lr=0.001-seed1.json"] {
    try FileManager.default.removeItem(at: out.appendingPathComponent("runs/\(name)"))
  }
  let again = try IFTFrozenLake.run(c, out: out)
  for m in IFTFrozenLake.methods {
    #expect(again.methods[m]?.finalMSE.mean == s.methods[m]?.finalMSE.mean, "\(m)")
    #expect(again.methods[m]?.curve.map(\.mean) == s.methods[m]?.curve.map(\.mean), "\(m)")
  }
  #expect(again.byLearningRate["0.001"]?["orpo"]?.mean == s.byLearningRate["0.001"]?["orpo"]?.mean)
  var other = c
  other.steps = 11
  #expect(throws: ExperimentError.self) { try IFTFrozenLake.run(other, out: out) }
}
