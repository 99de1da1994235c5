import ArgumentParser
import Foundation
import Torch

@main
struct Shatter: ParsableCommand {
  static let version = "0.1.0"

  static let configuration = CommandConfiguration(
    commandName: "shatter",
    abstract: "Fine-tune causal language models where one model is the policy, the reward and the transition function.",
    discussion: """
      Shatter runs on libtorch (PyTorch's C++ engine) through a thin C layer. Every random choice is \
      driven by --seed, so the same seed and configuration reproduce the same numbers on the same machine.
      """,
    version: version,
    subcommands: [
      VersionCommand.self, TokenizeCommand.self, ScoreCommand.self, GenerateCommand.self, TrainCommand.self,
      ExperimentCommand.self, BenchCommand.self, ChatCommand.self, ServeCommand.self,
      ConvertCommand.self, MergeCommand.self, LaunchCommand.self, PlayCommand.self, PlotCommand.self, RLPCommand.self,
    ]
  )
}

extension Shatter {
  /// Expands `--config FILE` before parsing, so every command accepts a YAML file that flags override.
  static func main() {
    BLAS.relaunchWithBestKernelIfNeeded()  // before any tensor work: OpenBLAS reads its kernel choice at load
    // A write past the file-size limit (`ulimit -f`) fails with EFBIG and is reported, instead of the
    // signal killing the process mid-write.
    signal(SIGXFSZ, SIG_IGN)
    let args: [String]
    do {
      args = try ConfigFile.expand(Array(CommandLine.arguments.dropFirst()))
    } catch {
      FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
      Foundation.exit(2)
    }
    do {
      var command = try parseAsRoot(args)
      try command.run()
    } catch {
      finish(with: error)
    }
  }

  /// Prints an error, or the help a `--help` asked for, in one write, and exits with its code.
  /// ArgumentParser's own `exit(withError:)` writes standard error a byte at a time, so the messages of
  /// ranks that fail together under `shatter launch` interleaved character by character.
  static func finish(with error: Error) -> Never {
    let code = exitCode(for: error)
    let message = fileProblem(error) ?? fullMessage(for: error)
    if code == .success {
      if !message.isEmpty { print(message) }
    } else {
      FileHandle.standardError.write(Data((message.isEmpty ? "" : message + "\n").utf8))
    }
    Foundation.exit(code.rawValue)
  }
}

/// A Foundation file error (an unwritable `--out`, a missing directory) as one line naming the path and the
/// operating system's reason, instead of `Error Domain=NSCocoaErrorDomain Code=4 …`.
func fileProblem(_ error: Error) -> String? {
  let e = error as NSError
  guard e.domain == NSCocoaErrorDomain, let path = (e.userInfo[NSFilePathErrorKey] as? String)
    ?? (e.userInfo[NSURLErrorKey] as? URL)?.path else { return nil }
  let reason: String
  if let posix = e.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
    reason = fileErrorReason(error)
  } else {
    switch CocoaError.Code(rawValue: e.code) {
    case .fileWriteNoPermission, .fileReadNoPermission: reason = "permission denied"
    case .fileNoSuchFile, .fileReadNoSuchFile: reason = "no such file or directory"
    case .fileWriteOutOfSpace: reason = "no space left on the device"
    case .fileWriteFileExists: reason = "a file is in the way"
    default: reason = e.localizedDescription
    }
  }
  return "Error: \(path): \(reason)"
}

struct VersionCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "version", abstract: "Print Shatter's version, the libtorch version, its threads and its BLAS.")

  @Flag(help: "Print one JSON object instead of text.") var json = false

  func run() throws {
    let training = ThreadPlan.training(on: .cpu)
    let onednn = training.intraOp > 1 && training != .current
    let facts: [String: Any] = [
      "shatter": Shatter.version, "libtorch": Torch.version, "threads": Torch.threads,
      "cuda_devices": Torch.cudaDeviceCount, "blas": BLAS.info.facts,
      "training_threads": ["intra_op": training.intraOp, "blas": training.blas ?? NSNull(), "onednn_linear": onednn] as [String: Any],
    ]
    if json {
      printJSON(facts)
    } else {
      print("shatter \(Shatter.version)")
      print("libtorch \(Torch.version) (\(Torch.threads) intra-op thread\(Torch.threads == 1 ? "" : "s"), "
        + "\(Torch.cudaDeviceCount) CUDA device\(Torch.cudaDeviceCount == 1 ? "" : "s"))")
      print("BLAS \(BLAS.info.summary)")
      print("shatter train: \(training.intraOp) intra-op thread\(training.intraOp == 1 ? "" : "s")"
        + (onednn ? ", float32 linear layers on oneDNN, \(training.blas.map { "\($0)" } ?? "its") OpenBLAS thread for the rest" : ", as above"))
    }
  }
}

/// Prints exactly one JSON object on stdout.
final class ResultBox<T>: @unchecked Sendable { var result: Result<T, any Error>? }

/// Runs an async body from a synchronous command (`serve`, `play`) and returns what it returns or throws.
func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
  let box = ResultBox<T>()
  let done = DispatchSemaphore(value: 0)
  Task {
    do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
    done.signal()
  }
  done.wait()
  return try box.result!.get()
}

func printJSON(_ object: [String: Any]) {
  let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
  print(String(decoding: data, as: UTF8.self))
}

/// An Encodable as one JSON line (sorted, snake_case keys): what an experiment's `--json` prints.
func printJSON<T: Encodable>(encoding value: T) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys]
  encoder.keyEncodingStrategy = .convertToSnakeCase
  print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// A long run's progress lines on stderr, each stamped with the seconds since `started`.
func progressLines(since started: Date = Date()) -> @Sendable (String) -> Void {
  { line in FileHandle.standardError.write(Data(String(format: "[%5.0fs] %@\n", Date().timeIntervalSince(started), line).utf8)) }
}

/// Comma-separated numbers of a list flag; an entry that is not a number names the flag.
func numberList(_ text: String, _ flag: String) throws -> [Double] {
  try text.split(separator: ",").map {
    guard let v = Double($0.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("\(flag): '\($0)' is not a number") }
    return v
  }
}

/// A one-line error on stderr and a non-zero exit, for problems with the user's input.
struct UserError: Error, CustomStringConvertible {
  let description: String
  init(_ message: String) { description = message }
}
