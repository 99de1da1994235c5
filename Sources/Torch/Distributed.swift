import CTorch
import Foundation

/// The ranks of a data-parallel job as torchrun describes them to each process: `RANK`, `WORLD_SIZE`,
/// `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` (default 127.0.0.1:29500), so
/// torchrun-style launchers, SLURM scripts and `shatter launch` start Shatter the same way.
public struct DistributedEnvironment: Sendable, Equatable {
  public var rank: Int
  public var worldSize: Int
  public var localRank: Int
  public var localWorldSize: Int
  public var masterAddress: String
  public var masterPort: Int

  public init(rank: Int, worldSize: Int, localRank: Int? = nil, localWorldSize: Int? = nil,
              masterAddress: String = "127.0.0.1", masterPort: Int = 29500) {
    self.rank = rank
    self.worldSize = worldSize
    self.localRank = localRank ?? rank
    self.localWorldSize = localWorldSize ?? worldSize
    self.masterAddress = masterAddress
    self.masterPort = masterPort
  }

  /// The job this process belongs to, or nil when `WORLD_SIZE` is not set (a single process). A variable
  /// that is set but malformed is an error naming it.
  public static func current(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws
    -> DistributedEnvironment?
  {
    guard let worldText = environment["WORLD_SIZE"] else { return nil }
    func integer(_ name: String, _ text: String?, default value: Int? = nil) throws -> Int {
      guard let text else {
        if let value { return value }
        throw DistributedError("\(name) is not set (WORLD_SIZE is \(worldText); torchrun sets both)")
      }
      guard let n = Int(text.trimmingCharacters(in: .whitespaces)) else {
        throw DistributedError("\(name)=\(text) is not an integer")
      }
      return n
    }
    let world = try integer("WORLD_SIZE", worldText)
    guard world >= 1 else { throw DistributedError("WORLD_SIZE=\(world) must be at least 1") }
    let rank = try integer("RANK", environment["RANK"])
    guard (0..<world).contains(rank) else { throw DistributedError("RANK=\(rank) is outside 0..<\(world) (WORLD_SIZE=\(world))") }
    let localRank = try integer("LOCAL_RANK", environment["LOCAL_RANK"], default: rank)
    let localWorld = try integer("LOCAL_WORLD_SIZE", environment["LOCAL_WORLD_SIZE"], default: world)
    let port = try integer("MASTER_PORT", environment["MASTER_PORT"], default: 29500)
    guard (1...65535).contains(port) else { throw DistributedError("MASTER_PORT=\(port) is not a TCP port") }
    let address = environment["MASTER_ADDR"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
    return DistributedEnvironment(rank: rank, worldSize: world, localRank: localRank, localWorldSize: localWorld,
                                  masterAddress: address, masterPort: port)
  }

  /// The variables a launcher sets for `rank` (the inverse of `current`).
  public var variables: [String: String] {
    ["RANK": "\(rank)", "WORLD_SIZE": "\(worldSize)", "LOCAL_RANK": "\(localRank)",
     "LOCAL_WORLD_SIZE": "\(localWorldSize)", "MASTER_ADDR": masterAddress, "MASTER_PORT": "\(masterPort)"]
  }
}

/// A failed rendezvous or collective: a peer that died, never arrived or stopped answering in time.
public struct DistributedError: Error, CustomStringConvertible {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// One process's membership of a c10d process group (Gloo on CPU tensors; NCCL on CUDA ones in a CUDA
/// build). Every collective blocks until it is done or the group's timeout has passed, and then throws.
public final class ProcessGroup {
  let handle: OpaquePointer
  public let rank: Int
  public let worldSize: Int
  public let backend: String

  /// Backends this build of CTorch has ("gloo", "nccl").
  public static var availableBackends: [String] {
    String(cString: ct_distributed_backends()).split(separator: ",").map(String.init)
  }

  /// Joins the job: rank 0 hosts the rendezvous store at `address:port`, the others connect to it.
  /// `timeout` (seconds) bounds the rendezvous and every later collective.
  public init(_ environment: DistributedEnvironment, backend: String = "gloo", timeout: Double = 300) throws {
    guard let h = ct_process_group_new(backend, environment.masterAddress, Int32(environment.masterPort),
                                       Int32(environment.rank), Int32(environment.worldSize),
                                       Int64((timeout * 1000).rounded()))
    else {
      throw DistributedError("rank \(environment.rank) of \(environment.worldSize): could not join the group at "
        + "\(environment.masterAddress):\(environment.masterPort) within \(timeout) s: \(takeTorchError())")
    }
    handle = h
    rank = environment.rank
    worldSize = environment.worldSize
    self.backend = backend
  }

  deinit { ct_process_group_free(handle) }

  /// Sums every tensor over the ranks, in place (all are started before any is waited for).
  public func allReduceSum(_ tensors: [Tensor]) throws {
    try run(tensors, "all-reduce") { ct_all_reduce_sum(handle, $0, $1) }
  }

  /// Copies every tensor from `root` to all ranks, in place.
  public func broadcast(_ tensors: [Tensor], root: Int = 0) throws {
    try run(tensors, "broadcast") { ct_broadcast(handle, $0, $1, Int32(root)) }
  }

  public func barrier() throws {
    if ct_barrier(handle) != 0 { throw DistributedError("rank \(rank): \(takeTorchError())") }
  }

  private func run(_ tensors: [Tensor], _ what: String, _ call: (UnsafeMutablePointer<OpaquePointer?>, Int32) -> Int32) throws {
    guard !tensors.isEmpty else { return }
    var handles: [OpaquePointer?] = tensors.map { $0.handle }
    let status = handles.withUnsafeMutableBufferPointer { call($0.baseAddress!, Int32($0.count)) }
    withExtendedLifetime(tensors) {}
    if status != 0 { throw DistributedError("rank \(rank): \(takeTorchError())") }
  }
}
