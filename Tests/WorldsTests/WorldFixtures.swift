import Foundation

/// The JSON fixtures `scripts/make_world_fixtures.py` writes from Gymnasium and TextArena.
enum WorldFixtures {
  static let folder = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")

  static func load<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
    let data = try Data(contentsOf: folder.appendingPathComponent(name))
    return try JSONDecoder().decode(T.self, from: data)
  }

  /// The repository root (for /work/shared beside it), from this file's path.
  static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  /// Boxoban's unfiltered test file, looked for in shared/ beside the root and above it.
  static var boxobanFile: URL? {
    let candidates = [
      repositoryRoot.appendingPathComponent("shared/data/boxoban/unfiltered-test-000.txt"),
      repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/data/boxoban/unfiltered-test-000.txt"),
    ]
    return candidates.first { FileManager.default.fileExists(atPath: $0.path) }
  }
}

/// frozen_lake.json
struct FrozenLakeFixture: Decodable {
  struct Table: Decodable {
    let name: String
    let desc: [String]
    let isSlippery: Bool
    let successRate: Double
    let rewardSchedule: [Double]
    /// P[s][a] = [[prob, next, reward, terminated]], decoded loosely (mixed types).
    let P: [[[[JSONScalar]]]]
  }
  struct RandomMap: Decodable {
    let size: Int
    let p: Double
    let seed: UInt64
    let desc: [String]
  }
  struct Step: Decodable {
    let action: Int
    let state: Int
    let reward: Double
    let terminated: Bool
    let truncated: Bool
    let prob: Double
  }
  struct Trajectory: Decodable {
    let envID: String
    let isSlippery: Bool
    let seed: UInt64
    let start: Int
    let maxEpisodeSteps: Int
    let steps: [Step]
    let continued: [Step]
  }
  struct Render: Decodable {
    let envID: String
    let actions: [Int]
    let frames: [String]
  }
  struct Solution: Decodable {
    let name: String
    let desc: [String]
    let horizon: Int?
    let successProbability: Double
    let linearSolve: Double?
  }
  struct NumPyStream: Decodable {
    let seed: String
    let values: [Double]
  }
  let versions: [String: String]
  let tables: [Table]
  let randomMaps: [RandomMap]
  let trajectories: [Trajectory]
  let renders: [Render]
  let solutions: [Solution]
  let numpyRandom: [NumPyStream]
}

/// A JSON number or boolean inside a mixed array.
enum JSONScalar: Decodable {
  case number(Double)
  case bool(Bool)

  init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if let b = try? c.decode(Bool.self) { self = .bool(b) } else { self = .number(try c.decode(Double.self)) }
  }

  var double: Double? { if case .number(let x) = self { return x }; return nil }
  var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
}

/// minesweeper.json and sokoban.json: TextArena episodes step by step.
struct TextArenaStep: Decodable {
  let action: String
  let board: String
  let done: Bool
  let reward: Double?
  let errorCount: Int
  let turn: Int
  let reason: String?
}

struct MinesweeperFixture: Decodable {
  struct Episode: Decodable {
    let kind: String
    let envID: String
    let rows: Int
    let cols: Int
    let mines: Int
    let maxTurns: Int
    let seed: Int
    let layout: [[Int]]
    let steps: [TextArenaStep]
  }
  let versions: [String: String]
  let episodes: [Episode]
}

struct SokobanFixture: Decodable {
  struct Episode: Decodable {
    let kind: String
    let envID: String
    let dim: [Int]
    let boxes: Int
    let maxTurns: Int
    let seed: Int
    let level: [String]
    let initialBoard: String
    let steps: [TextArenaStep]
  }
  let versions: [String: String]
  let episodes: [Episode]
}
