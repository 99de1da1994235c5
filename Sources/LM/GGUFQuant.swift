import Foundation

/// GGML's tensor element types by their on-disk code. Every code llama.cpp defines is listed so that an
/// unsupported one is named in errors rather than reported as garbage.
public enum GGMLType: UInt32, Sendable, CustomStringConvertible {
  case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
  case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
  case iq2_XXS = 16, iq2_XS = 17, iq3_XXS = 18, iq1_S = 19, iq4_NL = 20, iq3_S = 21, iq2_S = 22, iq4_XS = 23
  case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_M = 29, bf16 = 30
  case tq1_0 = 34, tq2_0 = 35

  /// The types Shatter dequantises: the plain floats and the quantisations common in published files.
  public static let supported: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

  /// Values per block and bytes per block, for the supported types (nil otherwise).
  public var layout: (blockElements: Int, blockBytes: Int)? {
    switch self {
    case .f32: (1, 4)
    case .f16, .bf16: (1, 2)
    case .q8_0: (32, 34)
    case .q4_0: (32, 18)
    case .q4_1: (32, 20)
    case .q5_0: (32, 22)
    case .q5_1: (32, 24)
    case .q4_K: (256, 144)
    case .q5_K: (256, 176)
    case .q6_K: (256, 210)
    default: nil
    }
  }

  /// llama.cpp's spelling of the type name (Q4_K, IQ2_XXS, BF16).
  public var description: String {
    switch self {
    case .f32: "F32"
    case .f16: "F16"
    case .bf16: "BF16"
    case .f64: "F64"
    case .i8: "I8"
    case .i16: "I16"
    case .i32: "I32"
    case .i64: "I64"
    case .q4_0: "Q4_0"
    case .q4_1: "Q4_1"
    case .q5_0: "Q5_0"
    case .q5_1: "Q5_1"
    case .q8_0: "Q8_0"
    case .q8_1: "Q8_1"
    case .q2_K: "Q2_K"
    case .q3_K: "Q3_K"
    case .q4_K: "Q4_K"
    case .q5_K: "Q5_K"
    case .q6_K: "Q6_K"
    case .q8_K: "Q8_K"
    case .iq2_XXS: "IQ2_XXS"
    case .iq2_XS: "IQ2_XS"
    case .iq3_XXS: "IQ3_XXS"
    case .iq1_S: "IQ1_S"
    case .iq4_NL: "IQ4_NL"
    case .iq3_S: "IQ3_S"
    case .iq2_S: "IQ2_S"
    case .iq4_XS: "IQ4_XS"
    case .iq1_M: "IQ1_M"
    case .tq1_0: "TQ1_0"
    case .tq2_0: "TQ2_0"
    }
  }
}

/// Dequantisation of GGML blocks to float32, written as plain loops over raw bytes so the compiler can
/// vectorise them; large tensors are split across cores. The arithmetic follows the reference
/// dequantisers operation by operation (scale products formed first, in float32) so results are
/// bit-identical to llama.cpp's and gguf-py's.
public enum GGMLDequantizer {
  /// IEEE half → float for all 65536 bit patterns; a lookup beats converting in the inner loops and
  /// does not depend on the platform having a `Float16` type.
  static let halfTable: [Float] = (0..<65536).map { halfToFloat(UInt16($0)) }

  static func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
      // Zero or subnormal: mantissa · 2⁻²⁴, exact in float32.
      let magnitude = Float(mantissa) * Float(bitPattern: 0x3380_0000)
      return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    return Float(bitPattern: sign | (UInt32(exponent + 112) << 23) | (mantissa << 13))
  }

  /// Blocks per parallel chunk: large enough that scheduling costs nothing, small enough to balance.
  static let chunkBlocks = 2048

  /// Writes `count` values of a `type` tensor from `source` (exactly the tensor's bytes) into `out`.
  public static func dequantize(_ type: GGMLType, from source: UnsafeRawBufferPointer,
                                into out: UnsafeMutablePointer<Float>, count: Int) {
    guard let (perBlock, blockBytes) = type.layout, count > 0, let base = source.baseAddress else { return }
    precondition(source.count == count / perBlock * blockBytes, "dequantize: byte count does not match \(count) values")
    let blocks = count / perBlock
    let decode: (UnsafeRawPointer, UnsafeMutablePointer<Float>, Int) -> Void
    let half = halfTable
    switch type {
    case .f32: decode = { s, o, n in for i in 0..<n { o[i] = Float(bitPattern: UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) } }
    case .f16: decode = { s, o, n in half.withUnsafeBufferPointer { h in for i in 0..<n { o[i] = h[Int(u16(s, 2 * i))] } } }
    case .bf16: decode = { s, o, n in for i in 0..<n { o[i] = Float(bitPattern: UInt32(u16(s, 2 * i)) << 16) } }
    case .q8_0: decode = { s, o, n in half.withUnsafeBufferPointer { h in for b in 0..<n { q8_0(s + 34 * b, o + 32 * b, h) } } }
    case .q4_0: decode = { s, o, n in half.withUnsafeBufferPointer { h in for b in 0..<n { q4_0(s + 18 * b, o + 32 * b, h) } } }
    case .q4_1: decode = { s, o, n in half.withUnsafeBufferPointer { h in for b in 0..<n { q4_1(s + 20 * b, o + 32 * b, h) } } }
    case .q5_0: decode = { s, o, n in half.withUnsafeBufferPointer { h in for b in 0..<n { q5_0(s + 22 * b, o + 32 * b, h) } } }
    case .q5_1: decode = { s, o, n in half.withUnsafeBufferPointer { h in for b in 0..<n { q5_1(s + 24 * b, o + 32 * b, h) } } }
    case .q4_K: decode = { s, o, n in half.withUnsafeBufferPointer { h in for b in 0..<n { q4_K(s + 144 * b, o + 256 * b, h) } } }
    case .q5_K: decode = { s, o, n in half.withUnsafeBufferPointer { h in for b in 0..<n { q5_K(s + 176 * b, o + 256 * b, h) } } }
    case .q6_K: decode = { s, o, n in half.withUnsafeBufferPointer { h in for b in 0..<n { q6_K(s + 210 * b, o + 256 * b, h) } } }
    default: return
    }
    let chunk = perBlock == 1 ? chunkBlocks * 32 : chunkBlocks
    let chunks = (blocks + chunk - 1) / chunk
    let job = DequantJob(source: base, out: out, blockBytes: blockBytes, perBlock: perBlock, blocks: blocks,
                         chunk: chunk, decode: decode)
    if chunks == 1 {
      job.run(0)
    } else {
      DispatchQueue.concurrentPerform(iterations: chunks) { job.run($0) }
    }
  }

  /// The pointers of one dequantisation, shared by the worker threads; each chunk writes a disjoint range.
  struct DequantJob: @unchecked Sendable {
    let source: UnsafeRawPointer
    let out: UnsafeMutablePointer<Float>
    let blockBytes: Int, perBlock: Int, blocks: Int, chunk: Int
    let decode: (UnsafeRawPointer, UnsafeMutablePointer<Float>, Int) -> Void

    func run(_ c: Int) {
      let first = c * chunk
      let n = min(chunk, blocks - first)
      decode(source + first * blockBytes, out + first * perBlock, n)
    }
  }

  @inline(__always) static func u16(_ p: UnsafeRawPointer, _ offset: Int) -> UInt16 {
    UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
  }

  @inline(__always) static func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 {
    p.load(fromByteOffset: offset, as: UInt8.self)
  }

  /// d (f16), 32 × int8: x = d·q.
  @inline(__always) static func q8_0(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ h: UnsafeBufferPointer<Float>) {
    let d = h[Int(u16(s, 0))]
    for j in 0..<32 { o[j] = d * Float(Int8(bitPattern: byte(s, 2 + j))) }
  }

  /// d (f16), 16 bytes of nibbles (low nibbles are values 0–15, high nibbles 16–31): x = d·(q − 8).
  @inline(__always) static func q4_0(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ h: UnsafeBufferPointer<Float>) {
    let d = h[Int(u16(s, 0))]
    for j in 0..<16 {
      let q = byte(s, 2 + j)
      o[j] = d * Float(Int(q & 0xF) - 8)
      o[j + 16] = d * Float(Int(q >> 4) - 8)
    }
  }

  /// d, m (f16), 16 bytes of nibbles: x = d·q + m.
  @inline(__always) static func q4_1(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ h: UnsafeBufferPointer<Float>) {
    let d = h[Int(u16(s, 0))], m = h[Int(u16(s, 2))]
    for j in 0..<16 {
      let q = byte(s, 4 + j)
      o[j] = d * Float(q & 0xF) + m
      o[j + 16] = d * Float(q >> 4) + m
    }
  }

  /// d (f16), 32 high bits (uint32), nibbles: x = d·((nibble | high << 4) − 16).
  @inline(__always) static func q5_0(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ h: UnsafeBufferPointer<Float>) {
    let d = h[Int(u16(s, 0))]
    let qh = UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
    for j in 0..<16 {
      let q = UInt32(byte(s, 6 + j))
      let lo = (q & 0xF) | (((qh >> UInt32(j)) & 1) << 4)
      let hi = (q >> 4) | (((qh >> UInt32(j + 16)) & 1) << 4)
      o[j] = d * Float(Int(lo) - 16)
      o[j + 16] = d * Float(Int(hi) - 16)
    }
  }

  /// d, m (f16), 32 high bits, nibbles: x = d·(nibble | high << 4) + m.
  @inline(__always) static func q5_1(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ h: UnsafeBufferPointer<Float>) {
    let d = h[Int(u16(s, 0))], m = h[Int(u16(s, 2))]
    let qh = UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
    for j in 0..<16 {
      let q = UInt32(byte(s, 8 + j))
      let lo = (q & 0xF) | (((qh >> UInt32(j)) & 1) << 4)
      let hi = (q >> 4) | (((qh >> UInt32(j + 16)) & 1) << 4)
      o[j] = d * Float(lo) + m
      o[j + 16] = d * Float(hi) + m
    }
  }

  /// The 6-bit scale and min of sub-block `j` (0–7) packed in the K-quants' 12 scale bytes.
  @inline(__always) static func scaleMin(_ j: Int, _ q: UnsafeRawPointer) -> (UInt8, UInt8) {
    if j < 4 { return (byte(q, j) & 63, byte(q, j + 4) & 63) }
    return ((byte(q, j + 4) & 0xF) | ((byte(q, j - 4) >> 6) << 4), (byte(q, j + 4) >> 4) | ((byte(q, j) >> 6) << 4))
  }

  /// Super-block of 256: d, dmin (f16), 12 scale bytes, 128 bytes of nibbles; eight sub-blocks of 32
  /// with x = (d·scale)·q − (dmin·min).
  @inline(__always) static func q4_K(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ h: UnsafeBufferPointer<Float>) {
    let d = h[Int(u16(s, 0))], dmin = h[Int(u16(s, 2))]
    let scales = s + 4, qs = s + 16
    for g in 0..<4 {
      let (sc1, m1) = scaleMin(2 * g, scales), (sc2, m2) = scaleMin(2 * g + 1, scales)
      let d1 = d * Float(sc1), dm1 = dmin * Float(m1), d2 = d * Float(sc2), dm2 = dmin * Float(m2)
      let q = qs + 32 * g, y = o + 64 * g
      for l in 0..<32 {
        let b = byte(q, l)
        y[l] = d1 * Float(b & 0xF) - dm1
        y[l + 32] = d2 * Float(b >> 4) - dm2
      }
    }
  }

  /// Super-block of 256: d, dmin, 12 scale bytes, 32 bytes of fifth bits, 128 bytes of nibbles.
  @inline(__always) static func q5_K(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ h: UnsafeBufferPointer<Float>) {
    let d = h[Int(u16(s, 0))], dmin = h[Int(u16(s, 2))]
    let scales = s + 4, qh = s + 16, qs = s + 48
    for g in 0..<4 {
      let (sc1, m1) = scaleMin(2 * g, scales), (sc2, m2) = scaleMin(2 * g + 1, scales)
      let d1 = d * Float(sc1), dm1 = dmin * Float(m1), d2 = d * Float(sc2), dm2 = dmin * Float(m2)
      let q = qs + 32 * g, y = o + 64 * g
      let u1 = UInt8(1) << UInt8(2 * g), u2 = UInt8(2) << UInt8(2 * g)
      for l in 0..<32 {
        let b = byte(q, l), high = byte(qh, l)
        y[l] = d1 * Float((b & 0xF) + (high & u1 != 0 ? 16 : 0)) - dm1
        y[l + 32] = d2 * Float((b >> 4) + (high & u2 != 0 ? 16 : 0)) - dm2
      }
    }
  }

  /// Super-block of 256: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales, d (f16);
  /// x = (d·scale)·(q − 32).
  @inline(__always) static func q6_K(_ s: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, _ h: UnsafeBufferPointer<Float>) {
    let d = h[Int(u16(s, 208))]
    for half in 0..<2 {
      let ql = s + 64 * half, qh = s + 128 + 32 * half, sc = s + 192 + 8 * half, y = o + 128 * half
      for l in 0..<32 {
        let i = l / 16
        let a = byte(ql, l), b = byte(ql, l + 32), c = byte(qh, l)
        let q1 = Int((a & 0xF) | ((c & 3) << 4)) - 32
        let q2 = Int((b & 0xF) | (((c >> 2) & 3) << 4)) - 32
        let q3 = Int((a >> 4) | (((c >> 4) & 3) << 4)) - 32
        let q4 = Int((b >> 4) | (((c >> 6) & 3) << 4)) - 32
        y[l] = d * Float(Int8(bitPattern: byte(sc, i))) * Float(q1)
        y[l + 32] = d * Float(Int8(bitPattern: byte(sc, i + 2))) * Float(q2)
        y[l + 64] = d * Float(Int8(bitPattern: byte(sc, i + 4))) * Float(q3)
        y[l + 96] = d * Float(Int8(bitPattern: byte(sc, i + 6))) * Float(q4)
      }
    }
  }
}
