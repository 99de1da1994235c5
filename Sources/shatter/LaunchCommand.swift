import ArgumentParser
import Foundation
import Torch

/// `shatter launch --nproc N -- train …`: N ranks of one command on this machine, with torchrun's variables.
struct LaunchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "launch",
    abstract: "Run a Shatter command as N data-parallel ranks on this machine (torchrun's environment contract).",
    discussion: """
      Each rank is this binary with the given arguments and RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, \
      MASTER_ADDR and MASTER_PORT set, the variables torchrun sets; `shatter train` then splits every batch \
      over the ranks (Gloo on CPU, NCCL on CUDA). Only rank 0 prints progress and writes checkpoints and \
      metrics. When a rank exits with an error or is killed, the others are stopped and the launcher exits \
      with that rank's status, naming it. Across machines, start one launcher per machine with --nnodes, \
      --node-rank and --master-addr (rank 0's machine), or let torchrun or SLURM set the variables and run \
      `shatter train` directly.

      Example: shatter launch --nproc 2 -- train sft --model DIR --data d.jsonl --out out --batch-size 16
      """)

  @Option(help: "Ranks to start on this machine.") var nproc = 2
  @Option(help: "Machines in the job.") var nnodes = 1
  @Option(help: "This machine's index among them (0 hosts the rendezvous).") var nodeRank = 0
  @Option(help: "Address of node 0, where rank 0 hosts the rendezvous store.") var masterAddr = "127.0.0.1"
  @Option(help: "Port of the rendezvous store on node 0.") var masterPort = 29500
  @Option(help: "Seconds to let the other ranks exit after one has failed, before killing them.") var grace = 5.0
  @Argument(parsing: .captureForPassthrough, help: "The Shatter command each rank runs, after `--`.")
  var command: [String] = []

  func validate() throws {
    guard nproc >= 1, nnodes >= 1, (0..<nnodes).contains(nodeRank) else {
      throw ValidationError("--nproc and --nnodes must be positive and --node-rank in 0..<nnodes")
    }
    guard (1...65535).contains(masterPort) else { throw ValidationError("--master-port must be a TCP port") }
    guard !arguments.isEmpty else { throw ValidationError("give the command to run after --, e.g. -- train sft …") }
  }

  /// The command without the `--` separator.
  var arguments: [String] { command.first == "--" ? Array(command.dropFirst()) : command }

  func run() throws {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    let world = nproc * nnodes
    let ranks = (0..<nproc).map { local in
      DistributedEnvironment(rank: nodeRank * nproc + local, worldSize: world, localRank: local, localWorldSize: nproc,
                             masterAddress: masterAddr, masterPort: masterPort)
    }
    let outcome = try RankSupervisor(executable: executable, arguments: arguments, ranks: ranks, grace: grace).run()
    if let failure = outcome {
      FileHandle.standardError.write(Data("shatter launch: \(failure.description); the other ranks were stopped\n".utf8))
      throw ExitCode(failure.status == 0 ? 1 : failure.status)
    }
  }
}

/// Starts one process per rank and watches them: the first to fail stops the rest.
struct RankSupervisor {
  let executable: URL
  let arguments: [String]
  let ranks: [DistributedEnvironment]
  let grace: Double

  struct Failure: CustomStringConvertible {
    let rank: Int, pid: Int32, status: Int32, signalled: Bool
    var description: String {
      signalled ? "rank \(rank) (pid \(pid)) was killed by signal \(status)" : "rank \(rank) (pid \(pid)) exited with status \(status)"
    }
  }

  /// nil when every rank exited with status 0; else the first failure.
  func run() throws -> Failure? {
    let exits = DispatchSemaphore(value: 0)
    var processes: [Process] = []
    for env in ranks {
      let p = Process()
      p.executableURL = executable
      p.arguments = arguments
      var environment = ProcessInfo.processInfo.environment.merging(env.variables) { $1 }
      // As torchrun does, keep the ranks from oversubscribing the cores: each gets its share of them for
      // libtorch's and OpenBLAS's threads, unless the user chose.
      if environment["OMP_NUM_THREADS"] == nil {
        environment["OMP_NUM_THREADS"] = "\(Swift.max(1, ProcessInfo.processInfo.activeProcessorCount / ranks.count))"
      }
      p.environment = environment
      p.terminationHandler = { _ in exits.signal() }
      try p.run()
      processes.append(p)
    }
    // Ctrl-C reaches every rank (they share the terminal's process group); the launcher outlives them to
    // report how they ended.
    signal(SIGINT, SIG_IGN)
    var failure: Failure?
    var remaining = processes.count
    while remaining > 0 {
      exits.wait()
      remaining -= 1
      guard failure == nil else { continue }
      for (env, p) in zip(ranks, processes) where !p.isRunning && p.terminationStatus != 0 {
        failure = Failure(rank: env.rank, pid: p.processIdentifier, status: p.terminationStatus,
                          signalled: p.terminationReason == .uncaughtSignal)
        stop(processes)
        break
      }
    }
    return failure
  }

  /// SIGTERM to the ranks still running, then SIGKILL after the grace period.
  private func stop(_ processes: [Process]) {
    for p in processes where p.isRunning { kill(p.processIdentifier, SIGTERM) }
    let deadline = Date().addingTimeInterval(grace)
    while processes.contains(where: \.isRunning) && Date() < deadline { usleep(20_000) }
    for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
  }
}
