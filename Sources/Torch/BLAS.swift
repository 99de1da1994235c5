import CTorch
import Foundation

/// The BLAS under libtorch's matrix products, and OpenBLAS's kernel choice.
///
/// Debian's libtorch runs its matrix products on OpenBLAS, which picks a kernel for the CPU when it loads.
/// OpenBLAS 0.3.21 does not recognise every CPU that can run its fast kernels (Intel Xeons with AVX-512 come up
/// as the generic SSE3 `Prescott`, 4× slower at sgemm than `Cooperlake`), and the only way to choose another is
/// `OPENBLAS_CORETYPE`, read once when the library loads. `relaunchWithBestKernelIfNeeded()` therefore re-runs
/// the process with that variable set; `info` says what the process ended up with.
public enum BLAS {
  /// OpenBLAS kernels grouped by the widest instructions they use; a kernel of a lower tier than the CPU's best
  /// is a mis-detection worth fixing. The names are `openblas_get_corename`'s (OpenBLAS 0.3.21's x86-64 list).
  enum Tier: Int, Comparable {
    case sse, avx, avx2, avx512, avx512bf16, amx
    static func < (a: Tier, b: Tier) -> Bool { a.rawValue < b.rawValue }
  }

  static let kernelTiers: [String: Tier] = {
    var table: [String: Tier] = [:]
    let groups: [(Tier, [String])] = [
      (.sse, ["Unknown", "Katmai", "Coppermine", "Northwood", "Prescott", "Banias", "Atom", "Core2", "Penryn",
              "Dunnington", "Nehalem", "Athlon", "Opteron", "Opteron_SSE3", "Barcelona", "Nano", "Bobcat"]),
      (.avx, ["Sandybridge", "Bulldozer", "Piledriver", "Steamroller", "Excavator"]),
      (.avx2, ["Haswell", "Zen"]),
      (.avx512, ["SkylakeX"]),
      (.avx512bf16, ["Cooperlake"]),
      (.amx, ["SapphireRapids"]),
    ]
    for (tier, names) in groups { for name in names { table[name.lowercased()] = tier } }
    return table
  }()

  /// The best OpenBLAS kernel for a CPU with these `/proc/cpuinfo` flags; nil below AVX. SapphireRapids (AMX)
  /// is never proposed: OpenBLAS 0.3.21 has no such kernel, and Cooperlake runs there.
  public static func bestKernel(cpuFlags: Set<String>) -> String? { bestKernelAndTier(cpuFlags: cpuFlags)?.name }

  static func bestKernelAndTier(cpuFlags flags: Set<String>) -> (name: String, tier: Tier)? {
    let avx512 = ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"].allSatisfy(flags.contains)
    if avx512 && flags.contains("avx512_bf16") { return ("Cooperlake", .avx512bf16) }
    if avx512 { return ("SkylakeX", .avx512) }
    if flags.contains("avx2") && flags.contains("fma") { return ("Haswell", .avx2) }
    if flags.contains("avx") { return ("Sandybridge", .avx) }
    return nil
  }

  /// The `OPENBLAS_CORETYPE` that would give this CPU a faster kernel than `corename`, or nil: when the kernel
  /// is already of the CPU's best tier, when `corename` is not a kernel this table knows (another BLAS, a newer
  /// OpenBLAS), or when the user has set `OPENBLAS_CORETYPE` (`userCoreType`, their choice stands).
  public static func recommendedCoreType(corename: String?, cpuFlags: Set<String>, userCoreType: String?) -> String? {
    if let user = userCoreType, !user.isEmpty { return nil }
    guard let corename, let current = kernelTiers[corename.lowercased()], let best = bestKernelAndTier(cpuFlags: cpuFlags),
      current < best.tier
    else { return nil }
    return best.name
  }

  /// The feature flags of the first processor in a `/proc/cpuinfo` text (`flags : fpu vme … avx512_bf16 …`).
  public static func cpuFlags(cpuinfo: String) -> Set<String> {
    for line in cpuinfo.split(separator: "\n") where line.hasPrefix("flags") {
      guard let colon = line.firstIndex(of: ":") else { continue }
      return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }
    return []
  }

  /// This machine's CPU flags (empty where there is no `/proc/cpuinfo`).
  public static var machineCPUFlags: Set<String> {
    cpuFlags(cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")
  }

  /// Set in a process that `relaunchWithBestKernelIfNeeded` re-ran, to the kernel OpenBLAS had picked itself;
  /// it also stops a second relaunch should OpenBLAS ignore the requested kernel.
  public static let correctedFromVariable = "SHATTER_OPENBLAS_CORRECTED_FROM"

  /// Re-runs this process (same executable, arguments and environment) with `OPENBLAS_CORETYPE` set to the
  /// best kernel when OpenBLAS picked a slower one; returns without doing anything when the kernel is right,
  /// the BLAS is not OpenBLAS, the user set `OPENBLAS_CORETYPE`, or this process is already the relaunch.
  /// Call it first thing in `main`, before any thread or tensor exists: it never returns when it relaunches.
  /// Library users who cannot re-exec (a test runner, a host app) set `OPENBLAS_CORETYPE` before starting.
  public static func relaunchWithBestKernelIfNeeded() {
    #if os(Linux)
    let env = ProcessInfo.processInfo.environment
    guard env[correctedFromVariable] == nil, let corename = kernel,
      let best = recommendedCoreType(corename: corename, cpuFlags: machineCPUFlags, userCoreType: env["OPENBLAS_CORETYPE"])
    else { return }
    setenv("OPENBLAS_CORETYPE", best, 1)
    setenv(correctedFromVariable, corename, 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // Only reached when the exec failed: carry on with the kernel OpenBLAS chose.
    unsetenv("OPENBLAS_CORETYPE")
    unsetenv(correctedFromVariable)
    #endif
  }

  /// OpenBLAS's kernel in use (`openblas_get_corename`), nil when the BLAS is not OpenBLAS.
  public static var kernel: String? { ct_openblas_corename().map { String(cString: $0) } }

  /// OpenBLAS's own thread pool, beside libtorch's intra-op threads (`Torch.threads`); nil without OpenBLAS.
  public static var threads: Int? {
    get { let n = Int(ct_openblas_get_num_threads()); return n < 0 ? nil : n }
    set { if let n = newValue { ct_openblas_set_num_threads(Int32(n)) } }
  }

  /// How the kernel in use was chosen.
  public enum KernelChoice: Equatable, Sendable {
    /// OpenBLAS's own detection, and it is the best this table knows for the CPU.
    case detected
    /// OpenBLAS's own detection picked `from`; Shatter relaunched with `OPENBLAS_CORETYPE`.
    case corrected(from: String)
    /// The user's `OPENBLAS_CORETYPE`.
    case environment(String)
  }

  public struct Info: Sendable {
    /// e.g. "OpenBLAS 0.3.21"; for another BLAS, libtorch's build setting ("mkl").
    public let library: String
    /// Where OpenBLAS was loaded from; nil for a BLAS linked into libtorch.
    public let path: String?
    public let kernel: String?
    public let choice: KernelChoice?
    /// The best kernel for this CPU, when OpenBLAS runs another (a mis-detection or the user's choice).
    public let bestKernel: String?
    public let threads: Int?
  }

  public static var info: Info {
    let env = ProcessInfo.processInfo.environment
    guard let kernel, let config = ct_openblas_config().map({ String(cString: $0) }) else {
      let build = String(cString: ct_blas_build_info())
      return Info(library: build.isEmpty ? "unknown" : build, path: nil, kernel: nil, choice: nil, bestKernel: nil,
                  threads: nil)
    }
    let library = config.split(separator: " ").prefix(2).joined(separator: " ")
    let choice: KernelChoice
    if let from = env[correctedFromVariable], env["OPENBLAS_CORETYPE"] != nil {
      choice = .corrected(from: from)
    } else if let user = env["OPENBLAS_CORETYPE"], !user.isEmpty {
      choice = .environment(user)
    } else {
      choice = .detected
    }
    let best = recommendedCoreType(corename: kernel, cpuFlags: machineCPUFlags, userCoreType: nil)
    return Info(library: library, path: ct_openblas_path().map { String(cString: $0) }, kernel: kernel, choice: choice,
                bestKernel: best, threads: threads)
  }
}

extension BLAS {
  /// How far a float32 matrix product from libtorch (`[m,k] @ [k,n]` of standard normals, i.e. the kernel in
  /// use) is from the same product summed in float64 here: the largest |C₃₂ − C₆₄|ᵢⱼ / (|A|·|B|)ᵢⱼ. Rounding
  /// in float32 gives about √k·2⁻²⁴ (1e-6 at k = 513; at most k·2⁻²⁴); a kernel that is wrong, or that
  /// rounds inputs to bfloat16, gives 1e-3 or more.
  public static func sgemmError(m: Int, k: Int, n: Int, seed: UInt64 = 0) -> Double {
    let gen = Generator(seed: seed)
    let a = Tensor.randn([m, k], generator: gen), b = Tensor.randn([k, n], generator: gen)
    let c = a.matmul(b).toArray(Float.self)
    let av = a.toArray(Float.self), bv = b.toArray(Float.self)
    var worst = 0.0
    var exact = [Double](repeating: 0, count: n), scale = [Double](repeating: 0, count: n)
    for i in 0..<m {
      for j in 0..<n { exact[j] = 0; scale[j] = 0 }
      for p in 0..<k {
        let x = Double(av[i * k + p])
        for j in 0..<n {
          let y = Double(bv[p * n + j])
          exact[j] += x * y
          scale[j] += Swift.abs(x * y)
        }
      }
      for j in 0..<n where scale[j] > 0 { worst = Swift.max(worst, Swift.abs(Double(c[i * n + j]) - exact[j]) / scale[j]) }
    }
    return worst
  }
}

/// How many threads each pool has: libtorch's intra-op (OpenMP) pool and OpenBLAS's own. Two pools busy on the
/// same cores fight (a GPT-2 step at 2 + 2 threads on two cores ran at a third of its speed), so a plan gives the
/// cores to one of them.
public struct ThreadPlan: Equatable, Sendable {
  public var intraOp: Int
  /// nil where the BLAS is not OpenBLAS.
  public var blas: Int?

  public static var current: ThreadPlan { ThreadPlan(intraOp: Torch.threads, blas: BLAS.threads) }

  public func apply() {
    Torch.threads = intraOp
    BLAS.threads = blas
  }

  /// Training on the CPU: the cores (this process's share of `processes`) to the intra-op pool and one OpenBLAS
  /// thread, when the matrix products run on that pool: float32 linear layers on oneDNN's sgemm (Debian's
  /// libtorch carries oneDNN; CTorch uses it whenever the intra-op pool has several threads), bfloat16 ones
  /// under autocast on oneDNN too. Elsewhere (no oneDNN: OpenBLAS does the products) the plan is `current`.
  /// A thread count the user set (`OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`) stands: the plan is then `current`.
  public static func training(on device: Device, processes: Int = 1) -> ThreadPlan {
    let env = ProcessInfo.processInfo.environment
    let share = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount / Swift.max(1, processes))
    guard device == .cpu, share > 1, ct_onednn_sgemm_available(), env["OMP_NUM_THREADS"] == nil,
      env["OPENBLAS_NUM_THREADS"] == nil
    else { return current }
    return ThreadPlan(intraOp: share, blas: BLAS.threads == nil ? nil : 1)
  }

  /// Runs `body` under this plan and puts the previous one back (decoding during training: single rows are
  /// OpenBLAS `sgemv`s, faster on its pool).
  public func during<R>(_ body: () throws -> R) rethrows -> R {
    let previous = ThreadPlan.current
    guard previous != self else { return try body() }
    apply()
    defer { previous.apply() }
    return try body()
  }
}
