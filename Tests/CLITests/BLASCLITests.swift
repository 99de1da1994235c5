import Foundation
import Testing
import Torch

@Test func versionNamesTheBLAS() throws {
  let r = try shatter(["version", "--json"])
  let blas = r.json["blas"] as? [String: Any] ?? [:]
  #expect(!(blas["library"] as? String ?? "").isEmpty)
  if BLAS.kernel != nil { #expect(blas["kernel"] as? String != nil && blas["kernel_choice"] as? String != nil) }
  let text = try shatter(["version"])
  #expect(text.stdout.contains("BLAS "))
}

/// A C compiler for the shim below: the Swift toolchain's clang (beside `swift`), or one on PATH.
func cCompiler() -> String? {
  let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
  for dir in ["/opt/swift/usr/bin"] + path {
    for name in ["clang", "cc", "gcc"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
      return "\(dir)/\(name)"
    }
  }
  return nil
}

/// The relaunch end to end, on any CPU with AVX: a preloaded `openblas_get_corename` reports the generic
/// Prescott kernel unless OPENBLAS_CORETYPE is set (what OpenBLAS 0.3.21 does on the Xeons it does not know),
/// and `shatter` must re-run itself with the best kernel, whose sgemm then matches float64.
@Test func relaunchesWithTheBestKernelWhenOpenBLASPicksASlowOne() throws {
  guard BLAS.kernel != nil, let best = BLAS.bestKernel(cpuFlags: BLAS.machineCPUFlags), let cc = cCompiler() else {
    return  // not OpenBLAS, a CPU without AVX, or no compiler for the shim
  }
  let dir = temporary("prescott-shim")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: dir) }
  let source = dir.appendingPathComponent("shim.c"), library = dir.appendingPathComponent("shim.so")
  try """
    #define _GNU_SOURCE
    #include <dlfcn.h>
    #include <stdlib.h>
    char *openblas_get_corename(void) {
      if (!getenv("OPENBLAS_CORETYPE")) return "Prescott";
      return ((char *(*)(void))dlsym(RTLD_NEXT, "openblas_get_corename"))();
    }
    """.write(to: source, atomically: true, encoding: .utf8)
  let compile = Process()
  compile.executableURL = URL(fileURLWithPath: cc)
  compile.arguments = ["-shared", "-fPIC", "-o", library.path, source.path, "-ldl"]
  try compile.run()
  compile.waitUntilExit()
  try #require(compile.terminationStatus == 0, "\(cc) could not build the shim")

  var env = ProcessInfo.processInfo.environment
  env["OPENBLAS_CORETYPE"] = nil
  env[BLAS.correctedFromVariable] = nil
  env["LD_PRELOAD"] = library.path
  let r = try shatter(["bench", "sgemm", "--size", "64", "--iterations", "2"], environment: env)
  #expect(r.status == 0, "\(r.stderr)")
  let blas = r.json["blas"] as? [String: Any] ?? [:]
  #expect(blas["kernel_choice"] as? String == "corrected")
  #expect(blas["corrected_from"] as? String == "Prescott")
  #expect(blas["kernel"] as? String == best)
  #expect((r.json["max_scaled_error"] as? Double ?? 1) < 1e-6)

  // The user's variable stands, even when slower.
  env["OPENBLAS_CORETYPE"] = "Prescott"
  let user = try shatter(["version", "--json"], environment: env)
  let userBLAS = user.json["blas"] as? [String: Any] ?? [:]
  #expect(userBLAS["kernel"] as? String == "Prescott")
  #expect(userBLAS["kernel_choice"] as? String == "OPENBLAS_CORETYPE=Prescott")
  #expect(userBLAS["best_kernel"] as? String == best)
}
