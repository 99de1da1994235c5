import CLibFuzzer
import Foundation

nonisolated(unsafe) private var harness: ((UnsafeRawBufferPointer) -> Void)?

/// Runs libFuzzer with the process's arguments, handing `body` each input; exits with libFuzzer's status.
/// `body` returns normally for any input a parser refuses; a trap, a failed precondition or a sanitizer
/// report is the crash libFuzzer records.
public func fuzz(_ body: @escaping (UnsafeRawBufferPointer) -> Void) -> Never {
  harness = body
  var argc = CommandLine.argc
  var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
  let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    harness?(UnsafeRawBufferPointer(start: data, count: size))
    return 0
  }
  exit(status)
}
