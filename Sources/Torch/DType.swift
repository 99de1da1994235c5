import CTorch

/// Element types a tensor can hold. Raw values are the C API's codes.
public enum DType: Int32, Sendable, CaseIterable, CustomStringConvertible {
  case float32 = 0, float64 = 1, bfloat16 = 2, float16 = 3
  case int64 = 4, int32 = 5, bool = 6, uint8 = 7, int8 = 8, int16 = 9

  public var elementSize: Int {
    switch self {
    case .float64, .int64: return 8
    case .float32, .int32: return 4
    case .bfloat16, .float16, .int16: return 2
    case .bool, .uint8, .int8: return 1
    }
  }

  public var isFloatingPoint: Bool { self == .float32 || self == .float64 || self == .bfloat16 || self == .float16 }

  public var description: String {
    switch self {
    case .float32: return "float32"
    case .float64: return "float64"
    case .bfloat16: return "bfloat16"
    case .float16: return "float16"
    case .int64: return "int64"
    case .int32: return "int32"
    case .bool: return "bool"
    case .uint8: return "uint8"
    case .int8: return "int8"
    case .int16: return "int16"
    }
  }

  /// A dtype by its PyTorch name (`float32`, `bfloat16`, …; `float`, `double`, `half`, `bf16` too).
  public init?(name: String) {
    let aliases: [String: DType] = ["float": .float32, "double": .float64, "half": .float16, "bf16": .bfloat16,
                                    "fp32": .float32, "fp64": .float64, "fp16": .float16]
    guard let d = aliases[name.lowercased()] ?? DType.allCases.first(where: { $0.description == name.lowercased() })
    else { return nil }
    self = d
  }

  /// The dtype's name in safetensors headers.
  public var safetensorsName: String {
    switch self {
    case .float32: return "F32"
    case .float64: return "F64"
    case .bfloat16: return "BF16"
    case .float16: return "F16"
    case .int64: return "I64"
    case .int32: return "I32"
    case .bool: return "BOOL"
    case .uint8: return "U8"
    case .int8: return "I8"
    case .int16: return "I16"
    }
  }

  public init?(safetensorsName: String) {
    guard let d = DType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else { return nil }
    self = d
  }
}

/// Where a tensor lives. `cuda(i)` is representable everywhere; using it needs a CUDA build of libtorch.
public enum Device: Sendable, Equatable, CustomStringConvertible {
  case cpu
  case cuda(Int)

  var code: Int32 {
    switch self {
    case .cpu: return CT_CPU
    case .cuda(let i): return Int32(i)
    }
  }

  init(code: Int32) { self = code < 0 ? .cpu : .cuda(Int(code)) }

  /// `cpu`, `cuda` (device 0) or `cuda:N`, as PyTorch spells them; nil for anything else.
  public init?(_ text: String) {
    let t = text.lowercased()
    if t == "cpu" { self = .cpu; return }
    if t == "cuda" { self = .cuda(0); return }
    guard t.hasPrefix("cuda:"), let i = Int(t.dropFirst(5)), i >= 0 else { return nil }
    self = .cuda(i)
  }

  public var description: String {
    switch self {
    case .cpu: return "cpu"
    case .cuda(let i): return "cuda:\(i)"
    }
  }
}

/// Swift types that map one-to-one onto a tensor dtype.
public protocol TensorElement: Sendable {
  static var dtype: DType { get }
}
extension Float: TensorElement { public static var dtype: DType { .float32 } }
extension Double: TensorElement { public static var dtype: DType { .float64 } }
extension Int64: TensorElement { public static var dtype: DType { .int64 } }
extension Int32: TensorElement { public static var dtype: DType { .int32 } }
extension Int16: TensorElement { public static var dtype: DType { .int16 } }
extension Int8: TensorElement { public static var dtype: DType { .int8 } }
extension UInt8: TensorElement { public static var dtype: DType { .uint8 } }
extension Bool: TensorElement { public static var dtype: DType { .bool } }
extension Int: TensorElement { public static var dtype: DType { .int64 } }

/// Facts about the libtorch this binary is linked against.
public enum Torch {
  public static var version: String { String(cString: ct_version()) }
  public static var threads: Int {
    get { Int(ct_get_num_threads()) }
    set { ct_set_num_threads(Int32(newValue)) }
  }
  public static var cudaAvailable: Bool { ct_cuda_is_available() }
  public static var cudaDeviceCount: Int { Int(ct_cuda_device_count()) }
  /// Seeds libtorch's global generator (used by calls that are not given a `Generator`).
  public static func manualSeed(_ seed: UInt64) { ct_manual_seed(seed) }
}
