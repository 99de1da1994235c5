import Testing
@testable import Torch

// The CPUs of the detection table, as their /proc/cpuinfo flags.
let sse3Only: Set<String> = ["fpu", "sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2"]
let avx2FMA = sse3Only.union(["avx", "avx2", "fma", "f16c"])
let avx512 = avx2FMA.union(["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"])
let avx512BF16 = avx512.union(["avx512_bf16", "avx512_vnni"])

@Test(arguments: [
  // (OpenBLAS's pick, CPU, user's OPENBLAS_CORETYPE) → the kernel to relaunch with
  ("Prescott", avx512BF16, nil, "Cooperlake"),  // the Intel Xeon OpenBLAS 0.3.21 does not recognise
  ("Prescott", avx512, nil, "SkylakeX"),
  ("Prescott", avx2FMA, nil, "Haswell"),
  ("Sandybridge", avx2FMA, nil, "Haswell"),
  ("Haswell", avx512BF16, nil, "Cooperlake"),
  ("Zen", avx512BF16, nil, "Cooperlake"),  // a Zen 4 under an OpenBLAS older than Zen 4
  ("SkylakeX", avx512BF16, nil, "Cooperlake"),
  ("Cooperlake", avx512BF16, nil, nil),  // already the best: nothing to do
  ("SkylakeX", avx512, nil, nil),
  ("Haswell", avx2FMA, nil, nil),
  ("Zen", avx2FMA, nil, nil),
  ("SapphireRapids", avx512BF16, nil, nil),  // better than anything proposed
  ("Prescott", sse3Only, nil, nil),  // nothing faster runs here
  ("Prescott", avx512BF16, "PRESCOTT", nil),  // the user's choice stands
  ("Cooperlake", avx512BF16, "Haswell", nil),
  ("Prescott", avx512BF16, "", "Cooperlake"),  // an empty variable is no choice
  ("FutureLake", avx512BF16, nil, nil),  // a kernel this table does not know: leave it
] as [(String, Set<String>, String?, String?)])
func recommendedKernel(corename: String, flags: Set<String>, user: String?, expected: String?) {
  #expect(BLAS.recommendedCoreType(corename: corename, cpuFlags: flags, userCoreType: user) == expected)
}

@Test func noOpenBLASNoRecommendation() {
  #expect(BLAS.recommendedCoreType(corename: nil, cpuFlags: avx512BF16, userCoreType: nil) == nil)
}

@Test func kernelNamesMatchCaseInsensitively() {
  #expect(BLAS.recommendedCoreType(corename: "PRESCOTT", cpuFlags: avx512BF16, userCoreType: nil) == "Cooperlake")
}

@Test func cpuFlagsComeFromTheFirstFlagsLine() {
  let cpuinfo = """
    processor\t: 0
    vendor_id\t: GenuineIntel
    flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16
    bugs\t\t: spectre_v1

    processor\t: 1
    flags\t\t: fpu
    """
  #expect(BLAS.cpuFlags(cpuinfo: cpuinfo) == ["fpu", "sse2", "avx2", "fma", "avx512f", "avx512_bf16"])
  #expect(BLAS.cpuFlags(cpuinfo: "") == [])
}

/// The kernel this process runs (OpenBLAS's pick, or OPENBLAS_CORETYPE's) against float64 sums. Rounding in
/// float32 alone gives about 1e-7 here (2⁻²⁴ is 6e-8); a kernel with bfloat16 inputs or a wrong one, 1e-3 or more.
@Test func sgemmMatchesAFloat64Reference() {
  let error = BLAS.sgemmError(m: 257, k: 513, n: 129, seed: 7)
  #expect(error < 1e-6, "sgemm on \(BLAS.kernel ?? BLAS.info.library): max |C32 - C64| / (|A||B|) = \(error)")
}

@Test func infoNamesTheLibraryAndKernel() {
  let info = BLAS.info
  #expect(!info.library.isEmpty)
  if let kernel = info.kernel {  // OpenBLAS (Debian's libtorch)
    #expect(info.library.hasPrefix("OpenBLAS"))
    #expect(BLAS.kernelTiers[kernel.lowercased()] != nil, "OpenBLAS reports a kernel the table lacks: \(kernel)")
    #expect((info.threads ?? 0) >= 1)
  }
}
