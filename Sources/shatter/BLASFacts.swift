import Torch

/// `shatter version`'s BLAS line and JSON object.
extension BLAS.Info {
  var facts: [String: Any] {
    var facts: [String: Any] = ["library": library]
    facts["path"] = path
    facts["kernel"] = kernel
    facts["best_kernel"] = bestKernel
    facts["threads"] = threads
    switch choice {
    case .detected?: facts["kernel_choice"] = "detected"
    case .corrected(let from)?:
      facts["kernel_choice"] = "corrected"
      facts["corrected_from"] = from
    case .environment(let value)?: facts["kernel_choice"] = "OPENBLAS_CORETYPE=\(value)"
    case nil: break
    }
    return facts
  }

  /// e.g. "OpenBLAS 0.3.21 (/usr/lib/…/libopenblasp-r0.3.21.so): kernel Cooperlake (set by Shatter; OpenBLAS
  /// picked Prescott), 2 threads"
  var summary: String {
    guard let kernel else { return "\(library) (libtorch's build setting; not OpenBLAS)" }
    let how: String
    switch choice {
    case .corrected(let from)?: how = "set by Shatter; OpenBLAS picked \(from)"
    case .environment(let value)?: how = "OPENBLAS_CORETYPE=\(value)"
    default: how = "OpenBLAS's own pick"
    }
    let better = bestKernel.map { "; \($0) is faster on this CPU" } ?? ""
    let pool = threads.map { ", \($0) thread\($0 == 1 ? "" : "s")" } ?? ""
    return "\(library)\(path.map { " (\($0))" } ?? ""): kernel \(kernel) (\(how)\(better))\(pool)"
  }
}
