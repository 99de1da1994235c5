import Foundation
import Testing
@testable import Torch

/// A port unlikely to be in use; each test takes its own so suites can run in parallel.
func freePort() -> Int { Int.random(in: 20000..<60000) }

/// Runs `body(rank)` for every rank of a `world`-process group on its own thread, each with its own group.
func withRanks(_ world: Int, timeout: Double = 30, _ body: @escaping @Sendable (ProcessGroup) throws -> Void) throws {
  let port = freePort()
  let errors = ErrorBox()
  let group = DispatchGroup()
  for rank in 0..<world {
    group.enter()
    Thread.detachNewThread {
      defer { group.leave() }
      do {
        let pg = try ProcessGroup(DistributedEnvironment(rank: rank, worldSize: world, masterPort: port), timeout: timeout)
        try body(pg)
      } catch {
        errors.append("rank \(rank): \(error)")
      }
    }
  }
  group.wait()
  if let first = errors.all.first { throw DistributedError(first) }
}

final class ErrorBox: @unchecked Sendable {
  private let lock = NSLock()
  private var items: [String] = []
  func append(_ s: String) { lock.withLock { items.append(s) } }
  var all: [String] { lock.withLock { items } }
}

@Test func theTorchrunEnvironmentIsReadAndCheckedByName() throws {
  #expect(try DistributedEnvironment.current([:]) == nil)
  let env = try DistributedEnvironment.current(["WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "node7"])
  #expect(env == DistributedEnvironment(rank: 2, worldSize: 4, localRank: 0, localWorldSize: 4, masterAddress: "node7",
                                        masterPort: 29500))
  #expect(try DistributedEnvironment.current(env!.variables) == env)
  #expect(throws: DistributedError.self) { try DistributedEnvironment.current(["WORLD_SIZE": "2"]) }
  for bad in [["WORLD_SIZE": "0", "RANK": "0"], ["WORLD_SIZE": "2", "RANK": "2"], ["WORLD_SIZE": "two", "RANK": "0"],
              ["WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "70000"]] {
    do {
      _ = try DistributedEnvironment.current(bad)
      Issue.record("accepted \(bad)")
    } catch let e as DistributedError {
      #expect(bad.keys.contains { e.message.contains($0) }, "\(e.message) names none of \(bad.keys)")
    }
  }
}

@Test func glooSumsBroadcastsAndMeetsAtABarrier() throws {
  try #require(ProcessGroup.availableBackends.contains("gloo"))
  let results = ErrorBox()
  try withRanks(3) { pg in
    let r = Double(pg.rank)
    let a = Tensor([1 + r, 10 * r, -r], shape: [3]), b = Tensor.full([2, 2], r, dtype: .float64)
    try pg.allReduceSum([a, b])
    if a.toArray(Double.self) != [6, 30, -3] || b.toArray(Double.self) != [3, 3, 3, 3] {
      results.append("rank \(pg.rank) sums \(a) \(b)")
    }
    let c = Tensor([r + 5, r + 6], shape: [2])
    try pg.broadcast([c], root: 1)
    if c.toArray(Double.self) != [6, 7] { results.append("rank \(pg.rank) broadcast \(c)") }
    try pg.barrier()
  }
  #expect(results.all.isEmpty, "\(results.all)")
}

@Test func aRankThatNeverArrivesIsAnErrorWithinTheTimeout() throws {
  let start = Date()
  do {
    _ = try ProcessGroup(DistributedEnvironment(rank: 0, worldSize: 2, masterPort: freePort()), timeout: 1.5)
    Issue.record("joined a group whose other rank never came")
  } catch let e as DistributedError {
    #expect(e.message.contains("rank 0 of 2"))
  }
  #expect(Date().timeIntervalSince(start) < 20)
}
