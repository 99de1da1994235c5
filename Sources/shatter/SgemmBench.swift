import ArgumentParser
import Foundation
import Torch

/// The BLAS kernel on its own: the float32 matrix product every Linear layer runs on.
struct SgemmBench: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sgemm",
    abstract: "Time square float32 matrix products through libtorch and check one against a float64 sum.",
    discussion: "The kernel is the BLAS's (OpenBLAS: OPENBLAS_CORETYPE or its own detection, which `shatter version` shows).")

  @Option(help: "Rows = columns = inner size.") var size = 512
  @Option(help: "Timed products.") var iterations = 100
  @Option(help: "libtorch and OpenBLAS threads (0 keeps the defaults).") var threads = 0

  func validate() throws {
    guard size > 0, iterations > 0, threads >= 0 else { throw ValidationError("--size and --iterations must be positive") }
  }

  func run() throws {
    if threads > 0 {
      Torch.threads = threads
      BLAS.threads = threads
    }
    let gen = Generator(seed: 0)
    let a = Tensor.randn([size, size], generator: gen), b = Tensor.randn([size, size], generator: gen)
    for _ in 0..<3 { _ = a.matmul(b) }
    let start = DispatchTime.now().uptimeNanoseconds
    for _ in 0..<iterations { _ = a.matmul(b) }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    printJSON([
      "impl": "shatter", "size": size, "gflops": 2 * pow(Double(size), 3) * Double(iterations) / seconds / 1e9,
      "max_scaled_error": BLAS.sgemmError(m: 257, k: 513, n: 129), "threads": Torch.threads,
      "blas": BLAS.info.facts,
    ])
  }
}
