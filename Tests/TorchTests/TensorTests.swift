// Value tests for the Tensor API against hand-computed numbers.

import Foundation
import Testing
@testable import Torch

private func near(_ a: [Double], _ b: [Double], tol: Double = 1e-6) -> Bool {
  a.count == b.count && zip(a, b).allSatisfy { Swift.abs($0 - $1) <= tol * Swift.max(1, Swift.abs($1)) }
}

private func near(_ a: Double, _ b: Double, tol: Double = 1e-6) -> Bool {
  Swift.abs(a - b) <= tol * Swift.max(1, Swift.abs(b))
}

private func doubles(_ t: Tensor) -> [Double] { t.toArray(Double.self) }
private func longs(_ t: Tensor) -> [Int64] { t.toArray(Int64.self) }
private func bools(_ t: Tensor) -> [Bool] { t.toArray(Bool.self) }

private struct ThrownOnPurpose: Error {}

/// Random draws whose reproducibility is checked for every sampler.
enum Sampler: String, Sendable, CaseIterable, CustomTestStringConvertible {
  case randn, rand, randint, randperm, bernoulli, multinomial, dropout
  var testDescription: String { rawValue }

  func draw(_ g: Generator) -> [Double] {
    switch self {
    case .randn: return doubles(Tensor.randn([64], generator: g))
    case .rand: return doubles(Tensor.rand([64], dtype: .float64, generator: g))
    case .randint: return doubles(Tensor.randint(0, 1000, [64], generator: g))
    case .randperm: return doubles(Tensor.randperm(64, generator: g))
    case .bernoulli: return doubles(Tensor.full([64], 0.5).bernoulli(generator: g))
    case .multinomial:
      return doubles(Tensor.ones([2, 50]).multinomial(20, replacement: false, generator: g))
    case .dropout: return doubles(Tensor.ones([64]).dropout(p: 0.5, training: true, generator: g))
    }
  }
}

struct ChunkCase: Sendable, CustomTestStringConvertible {
  let n: Int, chunks: Int, sizes: [Int]
  var testDescription: String { "\(n) in \(chunks) → \(sizes)" }
}

@Suite struct TensorTests {
  // MARK: creation

  @Test(arguments: DType.allCases)
  func zerosOnesFullForEveryDType(_ dtype: DType) {
    let z = Tensor.zeros([2, 3], dtype: dtype)
    #expect(z.dtype == dtype)
    #expect(z.shape == [2, 3])
    #expect(z.rank == 2)
    #expect(z.count == 6)
    #expect(doubles(z) == [Double](repeating: 0, count: 6))
    #expect(z.bytes().count == 6 * dtype.elementSize)
    #expect(z.bytes().allSatisfy { $0 == 0 })

    let o = Tensor.ones([3], dtype: dtype)
    #expect(o.dtype == dtype)
    #expect(doubles(o) == [1, 1, 1])

    let value: Double = dtype == .bool ? 1 : 3
    let f = Tensor.full([2, 2], value, dtype: dtype)
    #expect(f.dtype == dtype)
    #expect(doubles(f) == [value, value, value, value])

    let s = Tensor.scalar(value, dtype: dtype)
    #expect(s.rank == 0 && s.shape == [] && s.count == 1 && s.dtype == dtype)
    #expect(s.item() == value)

    let e = Tensor.empty([4, 0, 2], dtype: dtype)
    #expect(e.shape == [4, 0, 2] && e.count == 0 && e.dtype == dtype)
    #expect(e.bytes().isEmpty)

    #expect(Tensor.zeros(like: f).shape == [2, 2] && Tensor.zeros(like: f).dtype == dtype)
    #expect(doubles(Tensor.ones(like: z)) == [Double](repeating: 1, count: 6))
  }

  @Test func fullWithNegativeAndFractionalValues() {
    #expect(doubles(Tensor.full([2], -2.5)) == [-2.5, -2.5])
    #expect(Tensor.full([2], -2.5).dtype == .float32)
    #expect(longs(Tensor.full([2], -7, dtype: .int64)) == [-7, -7])
    #expect(doubles(Tensor.full([1], 0.1, dtype: .float64)) == [0.1])
    #expect(doubles(Tensor.full([1], 0.1, dtype: .float32)) == [Double(Float(0.1))])
    #expect(Tensor.full([1], 3_000_000_000, dtype: .int64).itemInt() == 3_000_000_000)
  }

  @Test func arange() {
    #expect(longs(Tensor.arange(5)) == [0, 1, 2, 3, 4])
    let a = Tensor.arange(0, 5)
    #expect(a.dtype == .int64)
    #expect(longs(a) == [0, 1, 2, 3, 4])
    #expect(longs(Tensor.arange(2, 7, step: 2)) == [2, 4, 6])
    #expect(longs(Tensor.arange(5, 0, step: -2)) == [5, 3, 1])
    let f = Tensor.arange(1, 2, step: 0.25, dtype: .float32)
    #expect(f.dtype == .float32)
    #expect(doubles(f) == [1, 1.25, 1.5, 1.75])
    #expect(Tensor.arange(3, 3).count == 0)
  }

  @Test func tensorFromArrayForEveryElementType() {
    let f = Tensor([1.5, -2, 3] as [Float], shape: [3, 1])
    #expect(f.dtype == .float32 && f.shape == [3, 1])
    #expect(f.toArray(Float.self) == [1.5, -2, 3])

    let d = Tensor([0.1, 0.2, 0.3, 0.4] as [Double], shape: [2, 2])
    #expect(d.dtype == .float64 && d.shape == [2, 2])
    #expect(d.toArray(Double.self) == [0.1, 0.2, 0.3, 0.4])

    let l = Tensor([Int64.max, Int64.min, 0] as [Int64])
    #expect(l.dtype == .int64 && l.shape == [3])
    #expect(l.toArray(Int64.self) == [Int64.max, Int64.min, 0])

    let i = Tensor([Int32.max, -5] as [Int32])
    #expect(i.dtype == .int32)
    #expect(i.toArray(Int32.self) == [Int32.max, -5])

    let h = Tensor([Int16.min, 7] as [Int16])
    #expect(h.dtype == .int16)
    #expect(h.toArray(Int16.self) == [Int16.min, 7])

    let c = Tensor([-128, 127] as [Int8])
    #expect(c.dtype == .int8)
    #expect(c.toArray(Int8.self) == [-128, 127])

    let u = Tensor([0, 200, 255] as [UInt8])
    #expect(u.dtype == .uint8)
    #expect(u.toArray(UInt8.self) == [0, 200, 255])

    let b = Tensor([true, false, true, true], shape: [2, 2])
    #expect(b.dtype == .bool && b.shape == [2, 2])
    #expect(b.toArray(Bool.self) == [true, false, true, true])

    let n = Tensor([3, -4] as [Int])
    #expect(n.dtype == .int64)
    #expect(n.toArray(Int.self) == [3, -4])

    let s = Tensor([42.0] as [Double], shape: [])
    #expect(s.rank == 0 && s.item() == 42)

    let empty = Tensor([] as [Float], shape: [0, 3])
    #expect(empty.shape == [0, 3] && empty.count == 0)
  }

  @Test func toArrayConvertsBetweenDTypes() {
    #expect(Tensor([1.5, -2.7] as [Float]).toArray(Int64.self) == [1, -2])  // truncation toward zero
    #expect(Tensor([0, 0.5, -1] as [Float]).toArray(Bool.self) == [false, true, true])
    #expect(Tensor([true, false]).toArray(Float.self) == [1, 0])
    #expect(Tensor([255] as [UInt8]).toArray(Int32.self) == [255])
    #expect(Tensor([-5] as [Int8]).toArray(Double.self) == [-5])
    #expect(Tensor([0.25] as [Double]).toArray(Float.self) == [0.25])
    #expect(Tensor([7, 8] as [Int32]).toArray(Int.self) == [7, 8])
    // A non-contiguous view comes out in its own row-major order.
    let t = Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3]).transposed(0, 1)
    #expect(t.toArray(Float.self) == [1, 4, 2, 5, 3, 6])
  }

  @Test func bytesAreLittleEndianRowMajor() {
    #expect(Tensor([1, 256] as [Int32]).bytes() == [1, 0, 0, 0, 0, 1, 0, 0])
    #expect(Tensor([1.0] as [Float]).bytes() == [0x00, 0x00, 0x80, 0x3F])
    #expect(Tensor([-2.0] as [Double]).bytes() == [0, 0, 0, 0, 0, 0, 0, 0xC0])
    #expect(Tensor([true, false, true]).bytes() == [1, 0, 1])
    #expect(Tensor([1.0] as [Float]).to(.float16).bytes() == [0x00, 0x3C])
    #expect(Tensor([1.0] as [Float]).to(.bfloat16).bytes() == [0x80, 0x3F])
    #expect(Tensor([-1] as [Int16]).bytes() == [0xFF, 0xFF])
    let t = Tensor([1, 2, 3, 4] as [UInt8], shape: [2, 2]).transposed(0, 1)
    #expect(!t.isContiguous)
    #expect(t.bytes() == [1, 3, 2, 4])
  }

  @Test func initFromBytes() throws {
    let source: [Float] = [1.5, -3, 0.25, 8]
    let t = try source.withUnsafeBytes { try Tensor(bytes: $0, shape: [2, 2], dtype: .float32) }
    #expect(t.shape == [2, 2] && t.dtype == .float32)
    #expect(t.toArray(Float.self) == source)
    #expect(t.bytes() == source.withUnsafeBytes { Array($0) })

    let half: [UInt8] = [0x00, 0x3C, 0x00, 0xC0]  // 1.0, -2.0 in float16
    let h = try half.withUnsafeBytes { try Tensor(bytes: $0, shape: [2], dtype: .float16) }
    #expect(doubles(h) == [1, -2])

    #expect(throws: TorchError.self) {
      try source.withUnsafeBytes { try Tensor(bytes: $0, shape: [3], dtype: .float32) }
    }
    #expect(throws: TorchError.self) {
      try source.withUnsafeBytes { try Tensor(bytes: $0, shape: [2, 2], dtype: .float64) }
    }
  }

  @Test func metadata() {
    let t = Tensor.zeros([2, 3, 4])
    #expect(t.shape == [2, 3, 4])
    #expect(t.rank == 3)
    #expect(t.count == 24)
    #expect(t.size(0) == 2 && t.size(1) == 3 && t.size(-1) == 4 && t.size(-3) == 2)
    #expect(t.dtype == .float32)
    #expect(t.device == .cpu)
    #expect(t.isContiguous)
    #expect(!t.permuted([2, 0, 1]).isContiguous)
    #expect(t.permuted([2, 0, 1]).shape == [4, 2, 3])
    #expect(t.permuted([2, 0, 1]).contiguous().isContiguous)
    let big = Tensor.zeros([1, 1, 1, 1, 1, 1, 1, 1, 2, 1])  // more than 8 dims
    #expect(big.rank == 10)
    #expect(big.shape == [1, 1, 1, 1, 1, 1, 1, 1, 2, 1])
    #expect(big.count == 2)
  }

  @Test func itemAndDescription() {
    #expect(Tensor.scalar(2.5).item() == 2.5)
    #expect(Tensor([7] as [Int64]).itemInt() == 7)
    #expect(Tensor.scalar(-3, dtype: .int32).itemInt() == -3)
    #expect(Tensor([1, 2] as [Float]).description == "Tensor(float32, shape: [2], [1.0, 2.0])")
    #expect(Tensor.zeros([20]).description == "Tensor(float32, shape: [20], […])")
  }

  @Test func aliasSharesStorage() {
    let a = Tensor.zeros([3])
    let b = a.alias()
    b.fill_(4)
    #expect(doubles(a) == [4, 4, 4])
    let c = a.clone()
    c.fill_(1)
    #expect(doubles(a) == [4, 4, 4])
  }

  // MARK: dtype conversion

  @Test func dtypeConversions() {
    let third = Tensor([1.0 / 3.0] as [Double])
    let h = third.to(.float16)
    #expect(h.dtype == .float16)
    #expect(doubles(h) == [0.333251953125])
    let bf = third.to(.bfloat16)
    #expect(bf.dtype == .bfloat16)
    #expect(doubles(bf) == [0.333984375])
    #expect(doubles(third.to(.float32)) == [Double(Float(1.0 / 3.0))])
    #expect(doubles(Tensor([65504, 70000] as [Float]).to(.float16)) == [65504, .infinity])
    let ints = Tensor([1.7, -1.7, 2.5] as [Double]).to(.int32)
    #expect(ints.dtype == .int32)
    #expect(ints.toArray(Int32.self) == [1, -1, 2])
    #expect(Tensor([0, 2, -0.5] as [Float]).to(.bool).toArray(Bool.self) == [false, true, true])
    #expect(Tensor([3.9] as [Float]).to(.uint8).toArray(UInt8.self) == [3])
    #expect(Tensor([true, false]).to(.int64).toArray(Int64.self) == [1, 0])
    let same = Tensor([1, 2] as [Float])
    #expect(same.to(.float32).dtype == .float32 && doubles(same.to(.float32)) == [1, 2])
    #expect(same.to(.cpu).device == .cpu)
  }

  @Test(arguments: DType.allCases)
  func elementSizeMatchesLibtorch(_ dtype: DType) {
    #expect(Tensor.zeros([5], dtype: dtype).bytes().count == 5 * dtype.elementSize)
    #expect(DType(safetensorsName: dtype.safetensorsName) == dtype)
  }

  // MARK: arithmetic

  @Test func broadcasting() {
    let col = Tensor([1, 2] as [Float], shape: [2, 1])
    let row = Tensor([10, 20, 30] as [Float])
    let sum = col + row
    #expect(sum.shape == [2, 3])
    #expect(doubles(sum) == [11, 21, 31, 12, 22, 32])
    #expect(doubles(row - col) == [9, 19, 29, 8, 18, 28])
    #expect(doubles(col * row) == [10, 20, 30, 20, 40, 60])
    #expect(doubles(row / col) == [10, 20, 30, 5, 10, 15])
    let scalar = Tensor.scalar(2)
    #expect((row * scalar).shape == [3])
    #expect(doubles(row * scalar) == [20, 40, 60])
  }

  @Test func scalarArithmetic() {
    let x = Tensor([1, 2, 4] as [Float])
    #expect(doubles(x + 1) == [2, 3, 5])
    #expect(doubles(x - 1) == [0, 1, 3])
    #expect(doubles(x * 3) == [3, 6, 12])
    #expect(doubles(x / 2) == [0.5, 1, 2])
    #expect(doubles(1 + x) == [2, 3, 5])
    #expect(doubles(2 - x) == [1, 0, -2])
    #expect(doubles(3 * x) == [3, 6, 12])
    #expect(doubles(2 / x) == [2, 1, 0.5])
    #expect(doubles(-x) == [-1, -2, -4])
    #expect(doubles(x.pow(2)) == [1, 4, 16])
    #expect(doubles(x.pow(Tensor([0, 1, 0.5] as [Float]))) == [1, 2, 2])
    #expect(near(doubles(x.sqrt()), [1, 2.0.squareRoot(), 2]))
    #expect(near(doubles(x.rsqrt()), [1, 1 / 2.0.squareRoot(), 0.5]))
    #expect(doubles(x.square()) == [1, 4, 16])
    #expect(doubles(x.reciprocal()) == [1, 0.5, 0.25])
    #expect(doubles(Tensor([-1.5, 2] as [Float]).abs()) == [1.5, 2])
    #expect(doubles(Tensor([-2, 0, 3] as [Float]).relu()) == [0, 0, 3])
    #expect(doubles(Tensor([-2, 0.5, 3] as [Float]).sign()) == [-1, 1, 1])
    #expect(doubles(Tensor([-1.5, 1.5, 2.5] as [Float]).floor()) == [-2, 1, 2])
    #expect(doubles(Tensor([-1.5, 1.5, 2.5] as [Float]).ceil()) == [-1, 2, 3])
    #expect(doubles(Tensor([-1.5, 1.5, 2.5] as [Float]).rounded()) == [-2, 2, 2])  // half to even
    #expect(doubles(Tensor([5, -5] as [Float]).remainder(3)) == [2, 1])  // Python-style sign
    #expect(doubles(Tensor([5, -5] as [Float]).floorDivide(3)) == [1, -2])
  }

  @Test func integerTensorsStayIntegralWithWholeScalars() {
    let x = Tensor([1, 2, 3] as [Int64])
    #expect((x + 1).dtype == .int64)
    #expect(longs(x + 1) == [2, 3, 4])
    #expect(longs(x * 2) == [2, 4, 6])
    #expect((10 - x).dtype == .int64)
    #expect(longs(10 - x) == [9, 8, 7])
    let half = x * 0.5
    #expect(half.dtype.isFloatingPoint)
    #expect(doubles(half) == [0.5, 1, 1.5])
    #expect(doubles(Tensor([7] as [Int64]) / 2) == [3.5])  // true division
    #expect(doubles(1 / Tensor([2, 4] as [Int64])) == [0.5, 0.25])
  }

  // A fractional scalar on the left of an integer tensor promotes, as torch does (2.5 / [2] == 1.25).
  @Test func fractionalScalarDividedByIntegerTensor() {
    #expect(doubles(2.5 / Tensor([2] as [Int64])) == [1.25])
    #expect(doubles(2.5 - Tensor([2] as [Int64])) == [0.5])
  }

  @Test func elementwiseFunctions() {
    let x = Tensor([-1, 0, 0.5, 2] as [Double])
    let v = [-1, 0, 0.5, 2.0]
    #expect(near(doubles(x.exp()), v.map { Foundation.exp($0) }, tol: 1e-12))
    #expect(near(doubles(x.expm1()), v.map { Foundation.expm1($0) }, tol: 1e-12))
    #expect(near(doubles(x.sin()), v.map { Foundation.sin($0) }, tol: 1e-12))
    #expect(near(doubles(x.cos()), v.map { Foundation.cos($0) }, tol: 1e-12))
    #expect(near(doubles(x.tanh()), v.map { Foundation.tanh($0) }, tol: 1e-12))
    #expect(near(doubles(x.sigmoid()), v.map { 1 / (1 + Foundation.exp(-$0)) }, tol: 1e-12))
    #expect(near(doubles(x.silu()), v.map { $0 / (1 + Foundation.exp(-$0)) }, tol: 1e-12))
    #expect(near(doubles(x.softplus()), v.map { Foundation.log(1 + Foundation.exp($0)) }, tol: 1e-12))
    #expect(near(doubles(x.logSigmoid()), v.map { -Foundation.log(1 + Foundation.exp(-$0)) }, tol: 1e-12))
    #expect(near(doubles(x.gelu()), v.map { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }, tol: 1e-12))
    let c = (2 / Double.pi).squareRoot()
    #expect(near(doubles(x.gelu(approximate: true)),
                  v.map { 0.5 * $0 * (1 + Foundation.tanh(c * ($0 + 0.044715 * $0 * $0 * $0))) }, tol: 1e-12))
    // The two GELUs differ (slightly) away from 0.
    #expect(doubles(x.gelu())[3] != doubles(x.gelu(approximate: true))[3])
    let p = Tensor([0.5, 1, 4] as [Double])
    #expect(near(doubles(p.log()), [Foundation.log(0.5), 0, Foundation.log(4)], tol: 1e-12))
    #expect(near(doubles(p.log1p()), [Foundation.log1p(0.5), Foundation.log1p(1), Foundation.log1p(4)], tol: 1e-12))
    let special = Tensor([Double.nan, .infinity, -1, 0] as [Double])
    #expect(bools(special.isNaN()) == [true, false, false, false])
    #expect(bools(special.isInfinite()) == [false, true, false, false])
    #expect(bools(special.isFinite()) == [false, false, true, true])
  }

  // MARK: comparisons, where, clamp

  @Test func comparisonsReturnBoolTensors() {
    let a = Tensor([1, 2, 3] as [Float]), b = Tensor([3, 2, 1] as [Float])
    for t in [a.gt(b), a.lt(b), a.eq(b), a.ne(b), a.le(b), a.ge(b), a.gt(2), a.eq(2)] {
      #expect(t.dtype == .bool)
    }
    #expect(bools(a.gt(b)) == [false, false, true])
    #expect(bools(a.lt(b)) == [true, false, false])
    #expect(bools(a.eq(b)) == [false, true, false])
    #expect(bools(a.ne(b)) == [true, false, true])
    #expect(bools(a.le(b)) == [true, true, false])
    #expect(bools(a.ge(b)) == [false, true, true])
    #expect(bools(a.gt(1.5)) == [false, true, true])
    #expect(bools(a.lt(1.5)) == [true, false, false])
    #expect(bools(a.eq(3)) == [false, false, true])
    #expect(bools(a.ne(3)) == [true, true, false])
    #expect(bools(a.le(2)) == [true, true, false])
    #expect(bools(a.ge(2)) == [false, true, true])
    // Broadcasting comparison.
    let m = Tensor([1, 2] as [Float], shape: [2, 1]).lt(Tensor([0, 1.5, 3] as [Float]))
    #expect(m.shape == [2, 3])
    #expect(bools(m) == [false, true, true, false, false, true])
    // Logic.
    let p = Tensor([true, true, false, false]), q = Tensor([true, false, true, false])
    #expect(bools(p.logicalAnd(q)) == [true, false, false, false])
    #expect(bools(p.logicalOr(q)) == [true, true, true, false])
    #expect(bools(p.logicalNot()) == [false, false, true, true])
    #expect(bools(p.any()) == [true])
    #expect(bools(p.logicalAnd(q).all()) == [false])
    #expect(bools(Tensor([true, false, true, true], shape: [2, 2]).all(dims: [1])) == [false, true])
    #expect(bools(Tensor([false, false, true, false], shape: [2, 2]).any(dims: [0])) == [true, false])
  }

  @Test func whereSelectsElementwise() {
    let cond = Tensor([true, false, true, false])
    let a = Tensor([1, 2, 3, 4] as [Float]), b = Tensor([-1, -2, -3, -4] as [Float])
    #expect(doubles(Tensor.where(cond, a, b)) == [1, -2, 3, -4])
    let zero = Tensor.scalar(0)
    #expect(doubles(Tensor.where(cond, a, zero)) == [1, 0, 3, 0])
    let rows = Tensor([true, false], shape: [2, 1])
    let r = Tensor.where(rows, Tensor([1, 2] as [Float]), Tensor([7, 8] as [Float]))
    #expect(r.shape == [2, 2])
    #expect(doubles(r) == [1, 2, 7, 8])
  }

  @Test func clamp() {
    let x = Tensor([-2, -0.5, 0.5, 2] as [Float])
    #expect(doubles(x.clamp(min: -1, max: 1)) == [-1, -0.5, 0.5, 1])
    #expect(doubles(x.clamp(min: 0)) == [0, 0, 0.5, 2])
    #expect(doubles(x.clamp(max: 0)) == [-2, -0.5, 0, 0])
    let i = Tensor([-5, 3, 9] as [Int64]).clamp(min: 0, max: 4)
    #expect(i.dtype == .int64)
    #expect(longs(i) == [0, 3, 4])
  }

  @Test func maskedFill() {
    let x = Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3])
    #expect(doubles(x.maskedFill(Tensor([false, true, false, true, false, false], shape: [2, 3]), -1))
            == [1, -1, 3, -1, 5, 6])
    #expect(doubles(x.maskedFill(Tensor([true, false, false]), 0)) == [0, 2, 3, 0, 5, 6])
    let inf = x.maskedFill(Tensor([false, false, true]), -.infinity)
    #expect(doubles(inf)[2] == -.infinity)
    #expect(doubles(x) == [1, 2, 3, 4, 5, 6])  // a copy
  }

  // MARK: reductions and orderings

  @Test func reductions() {
    let x = Tensor([1, 2, 3, 4, 5, 6] as [Double], shape: [2, 3])
    #expect(x.sum().shape == [] && x.sum().item() == 21)
    #expect(doubles(x.sum(dim: 0)) == [5, 7, 9])
    let s1 = x.sum(dim: 1, keepDim: true)
    #expect(s1.shape == [2, 1] && doubles(s1) == [6, 15])
    #expect(x.sum(keepDim: true).shape == [1, 1])
    #expect(x.mean().item() == 3.5)
    #expect(doubles(x.mean(dims: [0])) == [2.5, 3.5, 4.5])
    #expect(doubles(x.mean(dim: -1)) == [2, 5])
    #expect(x.prod().item() == 720)
    #expect(doubles(x.prod(dims: [1])) == [6, 120])
    #expect(x.prod(dims: [0, 1], keepDim: true).shape == [1, 1])
    #expect(x.max().item() == 6 && x.min().item() == 1)
    #expect(doubles(x.max(dims: [0])) == [4, 5, 6])
    #expect(doubles(x.min(dims: [1], keepDim: true)) == [1, 4])
    #expect(near(x.norm().item(), 91.0.squareRoot(), tol: 1e-12))
    #expect(x.norm(1).item() == 21)
    let v = Tensor([1, 2, 3, 4] as [Double])
    #expect(near(v.variance().item(), 5.0 / 3.0, tol: 1e-12))
    #expect(v.variance(unbiased: false).item() == 1.25)
    #expect(doubles(x.variance(dims: [1])) == [1, 1])
    #expect(doubles(x.variance(dims: [0], unbiased: false, keepDim: true)) == [2.25, 2.25, 2.25])
    #expect(x.variance(dims: [0], keepDim: true).shape == [1, 3])
  }

  @Test func maxMinAndArgmaxAlongDim() {
    let x = Tensor([1, 5, 3, 7, 2, 6] as [Float], shape: [2, 3])
    #expect(longs(x.argmax(dim: 1)) == [1, 0])
    #expect(longs(x.argmax(dim: 0)) == [1, 0, 1])
    #expect(x.argmax(dim: 1, keepDim: true).shape == [2, 1])
    let mx = x.max(dim: 1)
    #expect(doubles(mx.values) == [5, 7])
    #expect(longs(mx.indices) == [1, 0])
    let mn = x.min(dim: 0, keepDim: true)
    #expect(mn.values.shape == [1, 3])
    #expect(doubles(mn.values) == [1, 2, 3])
    #expect(longs(mn.indices) == [0, 1, 0])
  }

  @Test func topKAndSort() {
    let x = Tensor([3, 1, 4, 1.5, 5, 9, 2, 6] as [Float])
    let top = x.topK(3)
    #expect(doubles(top.values) == [9, 6, 5])
    #expect(longs(top.indices) == [5, 7, 4])
    let bottom = x.topK(2, largest: false)
    #expect(doubles(bottom.values) == [1, 1.5])
    #expect(longs(bottom.indices) == [1, 3])
    let asc = x.sorted()
    #expect(doubles(asc.values) == [1, 1.5, 2, 3, 4, 5, 6, 9])
    #expect(longs(asc.indices) == [1, 3, 6, 0, 2, 4, 7, 5])
    let desc = x.sorted(descending: true)
    #expect(doubles(desc.values) == [9, 6, 5, 4, 3, 2, 1.5, 1])
    #expect(longs(desc.indices) == [5, 7, 4, 2, 0, 6, 3, 1])
    let m = Tensor([3, 1, 2, 0, 5, 4] as [Float], shape: [3, 2])
    let col = m.topK(1, dim: 0)
    #expect(col.values.shape == [1, 2])
    #expect(longs(col.indices) == [2, 2])
    #expect(longs(m.sorted(dim: 0).indices) == [1, 1, 0, 0, 2, 2])
  }

  @Test func cumsum() {
    #expect(doubles(Tensor([1, 2, 3, 4] as [Float]).cumsum(dim: 0)) == [1, 3, 6, 10])
    let m = Tensor([1, 2, 3, 4] as [Float], shape: [2, 2])
    #expect(doubles(m.cumsum(dim: 0)) == [1, 2, 4, 6])
    #expect(doubles(m.cumsum(dim: 1)) == [1, 3, 3, 7])
    #expect(doubles(m.cumsum(dim: -1)) == [1, 3, 3, 7])
    let i = Tensor([1, 2, 3] as [Int32]).cumsum(dim: 0)
    #expect(!i.dtype.isFloatingPoint)
    #expect(longs(i) == [1, 3, 6])
  }

  @Test func softmaxRowsSumToOne() {
    let x = Tensor.randn([4, 5], dtype: .float64, generator: Generator(seed: 9)) * 3
    let s = x.softmax(dim: 1)
    #expect(near(doubles(s.sum(dim: 1)), [1, 1, 1, 1], tol: 1e-12))
    #expect(doubles(s).allSatisfy { $0 > 0 && $0 < 1 })
    let cols = x.softmax(dim: 0)
    #expect(near(doubles(cols.sum(dim: 0)), [1, 1, 1, 1, 1], tol: 1e-12))
    #expect(!near(doubles(cols.sum(dim: 1)), [1, 1, 1, 1], tol: 1e-3))
    let hand = Tensor([0, Foundation.log(2), Foundation.log(3)] as [Double]).softmax(dim: 0)
    #expect(near(doubles(hand), [1.0 / 6, 2.0 / 6, 3.0 / 6], tol: 1e-12))
    #expect(near(doubles(x.logSoftmax(dim: 1)), doubles(s.log()), tol: 1e-12))
    // Large logits do not overflow.
    #expect(near(doubles(Tensor([1000, 1000] as [Float]).softmax(dim: 0)), [0.5, 0.5]))
  }

  @Test func logSumExpMatchesLogSumExpOfExp() {
    let x = Tensor.randn([3, 4], dtype: .float64, generator: Generator(seed: 10))
    #expect(near(doubles(x.logSumExp(dims: [1])), doubles(x.exp().sum(dim: 1).log()), tol: 1e-12))
    #expect(near(doubles(x.logSumExp(dim: 0)), doubles(x.exp().sum(dim: 0).log()), tol: 1e-12))
    #expect(near(x.logSumExp().item(), x.exp().sum().log().item(), tol: 1e-12))
    #expect(x.logSumExp(dims: [1], keepDim: true).shape == [3, 1])
    let big = Tensor([1000, 1000] as [Double])
    #expect(near(big.logSumExp().item(), 1000 + Foundation.log(2), tol: 1e-12))
    #expect(big.exp().sum().log().item() == .infinity)
  }

  // MARK: cross-entropy

  private let ceLogits = Tensor([1, 2, 3, 1, 1, 1] as [Double], shape: [2, 3])
  private let ceRow0 = Foundation.log(M_E + M_E * M_E + M_E * M_E * M_E) - 3  // target 2
  private let ceRow1 = Foundation.log(3.0)  // uniform logits, target 0

  @Test func crossEntropyMatchesHandComputation() {
    let targets = Tensor([2, 0] as [Int64])
    #expect(near(Tensor.crossEntropy(logits: ceLogits, targets: targets).item(), (ceRow0 + ceRow1) / 2, tol: 1e-12))
    #expect(near(Tensor.crossEntropy(logits: ceLogits, targets: targets, reduction: .sum).item(), ceRow0 + ceRow1,
                  tol: 1e-12))
    let none = Tensor.crossEntropy(logits: ceLogits, targets: targets, reduction: .none)
    #expect(none.shape == [2])
    #expect(near(doubles(none), [ceRow0, ceRow1], tol: 1e-12))
    #expect(near(ceRow0 + ceRow1, 1.506218253112490, tol: 1e-12))  // 2 × torch's 0.753109…
  }

  @Test func crossEntropyIgnoreIndex() {
    let ignored = Tensor([2, -100] as [Int64])
    // The mean is over the one live row, not over both.
    #expect(near(Tensor.crossEntropy(logits: ceLogits, targets: ignored).item(), ceRow0, tol: 1e-12))
    #expect(near(Tensor.crossEntropy(logits: ceLogits, targets: ignored, reduction: .sum).item(), ceRow0, tol: 1e-12))
    #expect(near(doubles(Tensor.crossEntropy(logits: ceLogits, targets: ignored, reduction: .none)), [ceRow0, 0],
                  tol: 1e-12))
    // A custom ignore index: class 0 rows are skipped, -100 is then an ordinary (invalid) class,
    // so only use valid targets here.
    let custom = Tensor([2, 0] as [Int64])
    #expect(near(Tensor.crossEntropy(logits: ceLogits, targets: custom, ignoreIndex: 0).item(), ceRow0, tol: 1e-12))
    let three = Tensor([1, 2, 3, 1, 1, 1, 0, 0, 5] as [Double], shape: [3, 3])
    let t3 = Tensor([2, 1, 1] as [Int64])
    #expect(near(Tensor.crossEntropy(logits: three, targets: t3, ignoreIndex: 1).item(), ceRow0, tol: 1e-12))
  }

  @Test func crossEntropyLabelSmoothing() {
    let eps = 0.2
    // (1-ε)·nll + ε·mean over classes of −log p.
    let lse0 = ceRow0 + 3
    let smooth0 = (1 - eps) * ceRow0 + eps * ((lse0 - 1) + (lse0 - 2) + (lse0 - 3)) / 3
    let smooth1 = ceRow1  // uniform row: every class has the same −log p
    let both = Tensor.crossEntropy(logits: ceLogits, targets: Tensor([2, 0] as [Int64]), labelSmoothing: eps)
    #expect(near(both.item(), (smooth0 + smooth1) / 2, tol: 1e-12))
    #expect(near(both.item(), 0.8531, tol: 1e-4))
    let ignored = Tensor.crossEntropy(logits: ceLogits, targets: Tensor([2, -100] as [Int64]), labelSmoothing: eps)
    #expect(near(ignored.item(), smooth0, tol: 1e-12))
  }

  // MARK: shape and indexing

  @Test func shapeOps() {
    let x = Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3])
    #expect(x.reshaped([3, 2]).shape == [3, 2])
    #expect(x.reshaped([-1]).shape == [6])
    #expect(x.view([3, -1]).shape == [3, 2])
    #expect(doubles(x.transposed(0, 1)) == [1, 4, 2, 5, 3, 6])
    #expect(doubles(x.transposed(0, 1).reshaped([6])) == [1, 4, 2, 5, 3, 6])
    #expect(doubles(x.permuted([1, 0])) == [1, 4, 2, 5, 3, 6])
    let e = Tensor([1, 2] as [Float], shape: [2, 1]).expanded(to: [2, 3])
    #expect(e.shape == [2, 3] && doubles(e) == [1, 1, 1, 2, 2, 2])
    #expect(Tensor([1, 2] as [Float], shape: [2, 1]).expanded(to: [4, -1, 3]).shape == [4, 2, 3])
    let one = Tensor.zeros([1, 3, 1])
    #expect(one.squeezed().shape == [3])
    #expect(one.squeezed(dim: 0).shape == [3, 1])
    #expect(one.squeezed(dim: -1).shape == [1, 3])
    #expect(one.squeezed(dim: 1).shape == [1, 3, 1])  // size 3: unchanged
    #expect(x.unsqueezed(dim: 0).shape == [1, 2, 3])
    #expect(x.unsqueezed(dim: -1).shape == [2, 3, 1])
    #expect(doubles(x.narrow(dim: 1, start: 1, length: 2)) == [2, 3, 5, 6])
    #expect(doubles(x.select(dim: 1, index: 0)) == [1, 4])
    #expect(doubles(x.select(dim: 0, index: -1)) == [4, 5, 6])
    #expect(doubles(x[1]) == [4, 5, 6])
    #expect(x[0].shape == [3])
  }

  @Test func catStackSplit() {
    let a = Tensor([1, 2, 3, 4] as [Float], shape: [2, 2]), b = Tensor([5, 6] as [Float], shape: [1, 2])
    let c0 = Tensor.cat([a, b])
    #expect(c0.shape == [3, 2] && doubles(c0) == [1, 2, 3, 4, 5, 6])
    let c1 = Tensor.cat([a, b.transposed(0, 1)], dim: 1)
    #expect(c1.shape == [2, 3] && doubles(c1) == [1, 2, 5, 3, 4, 6])
    let s0 = Tensor.stack([a, a * 10])
    #expect(s0.shape == [2, 2, 2] && doubles(s0) == [1, 2, 3, 4, 10, 20, 30, 40])
    let s2 = Tensor.stack([a, a * 10], dim: 2)
    #expect(s2.shape == [2, 2, 2] && doubles(s2) == [1, 10, 2, 20, 3, 30, 4, 40])
    let s1 = Tensor.stack([a, a * 10], dim: 1)
    #expect(doubles(s1) == [1, 2, 10, 20, 3, 4, 30, 40])
    let parts = Tensor.arange(0, 6, dtype: .float32).split(sizes: [1, 3, 2])
    #expect(parts.map(\.shape) == [[1], [3], [2]])
    #expect(parts.map(doubles) == [[0], [1, 2, 3], [4, 5]])
    let cols = Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3]).split(sizes: [2, 1], dim: 1)
    #expect(doubles(cols[0]) == [1, 2, 4, 5] && doubles(cols[1]) == [3, 6])
  }

  static let chunkCases: [ChunkCase] = [
    ChunkCase(n: 5, chunks: 3, sizes: [2, 2, 1]),
    ChunkCase(n: 6, chunks: 4, sizes: [2, 2, 2]),  // torch.chunk may return fewer chunks
    ChunkCase(n: 2, chunks: 3, sizes: [1, 1]),
    ChunkCase(n: 7, chunks: 2, sizes: [4, 3]),
    ChunkCase(n: 10, chunks: 4, sizes: [3, 3, 3, 1]),
    ChunkCase(n: 4, chunks: 4, sizes: [1, 1, 1, 1]),
    ChunkCase(n: 6, chunks: 1, sizes: [6]),
    ChunkCase(n: 1, chunks: 3, sizes: [1]),
  ]

  @Test(arguments: chunkCases)
  func chunkSizesLikeTorch(_ c: ChunkCase) {
    let x = Tensor.arange(0, Double(c.n), dtype: .float32)
    let pieces = x.chunk(c.chunks)
    #expect(pieces.map { $0.size(0) } == c.sizes)
    #expect(Tensor.cat(pieces).toArray(Float.self) == x.toArray(Float.self))
    let m = x.unsqueezed(dim: 0).expanded(to: [2, c.n])
    #expect(m.chunk(c.chunks, dim: 1).map { $0.shape } == c.sizes.map { [2, $0] })
    #expect(m.chunk(c.chunks, dim: -1).map { $0.size(-1) } == c.sizes)
  }

  // As torch.chunk: an empty dimension gives `chunks` empty pieces.
  @Test func chunkOfAnEmptyDimension() {
    let pieces = Tensor.zeros([0, 2]).chunk(3)
    #expect(pieces.count == 3)
    #expect(pieces.allSatisfy { $0.count == 0 })
  }

  @Test func indexing() {
    let x = Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [3, 2])
    #expect(doubles(x.indexSelect(dim: 0, index: Tensor([2, 0, 2] as [Int64]))) == [5, 6, 1, 2, 5, 6])
    #expect(doubles(x.indexSelect(dim: 1, index: Tensor([1] as [Int64]))) == [2, 4, 6])
    let g = Tensor([1, 2, 3, 4] as [Float], shape: [2, 2])
    #expect(doubles(g.gather(dim: 1, index: Tensor([0, 0, 1, 0] as [Int64], shape: [2, 2]))) == [1, 1, 4, 3])
    #expect(doubles(g.gather(dim: 0, index: Tensor([1, 0] as [Int64], shape: [1, 2]))) == [3, 2])
    let base = Tensor.zeros([3])
    let added = base.scatterAdd(dim: 0, index: Tensor([0, 2, 0] as [Int64]), source: Tensor([1, 2, 3] as [Float]))
    #expect(doubles(added) == [4, 0, 2])
    #expect(doubles(base) == [0, 0, 0])  // a copy
    let m = Tensor.ones([2, 3]).scatterAdd(dim: 1, index: Tensor([2, 2, 0, 1] as [Int64], shape: [2, 2]),
                                           source: Tensor([1, 2, 3, 4] as [Float], shape: [2, 2]))
    #expect(doubles(m) == [1, 1, 4, 4, 5, 1])
  }

  @Test func trilTriu() {
    let o = Tensor.ones([3, 3])
    #expect(doubles(o.tril()) == [1, 0, 0, 1, 1, 0, 1, 1, 1])
    #expect(doubles(o.triu()) == [1, 1, 1, 0, 1, 1, 0, 0, 1])
    #expect(doubles(o.triu(1)) == [0, 1, 1, 0, 0, 1, 0, 0, 0])
    #expect(doubles(o.tril(-1)) == [0, 0, 0, 1, 0, 0, 1, 1, 0])
    #expect(doubles(Tensor.ones([2, 3]).tril(1)) == [1, 1, 0, 1, 1, 1])
    #expect(bools(Tensor.ones([2, 2], dtype: .bool).triu(1)) == [false, true, false, false])
  }

  // MARK: linear algebra and network primitives

  @Test func matmulAndBmm() {
    let a = Tensor([1, 2, 3, 4] as [Float], shape: [2, 2]), b = Tensor([5, 6, 7, 8] as [Float], shape: [2, 2])
    #expect(doubles(a.matmul(b)) == [19, 22, 43, 50])
    #expect(doubles(a.matmul(Tensor([1, 1] as [Float]))) == [3, 7])
    #expect(doubles(Tensor([1, 1] as [Float]).matmul(a)) == [4, 6])
    let batch = Tensor.stack([a, b])
    let r = batch.bmm(Tensor.stack([b, a]))
    #expect(r.shape == [2, 2, 2])
    #expect(doubles(r) == [19, 22, 43, 50, 23, 34, 31, 46])
    #expect(batch.matmul(a).shape == [2, 2, 2])
  }

  @Test func affineIsLinearWithTheWeightTransposed() {
    let g = Generator(seed: 4)
    let x = Tensor.randn([2, 5, 3], generator: g), w = Tensor.randn([3, 4], generator: g), b = Tensor.randn([4], generator: g)
    let y = Tensor.affine(x, weight: w, bias: b)
    #expect(y.shape == [2, 5, 4])
    #expect(y.allClose(Tensor.linear(x, weight: w.transposed(0, 1), bias: b), rtol: 1e-5, atol: 1e-6))
    #expect(Tensor.affine(x, weight: w).allClose(x.matmul(w), rtol: 1e-5, atol: 1e-6))
  }

  /// The packed op against the composition it replaces (split, heads, scaled scores, mask, softmax,
  /// merge), values and gradients, in float64 and float32.
  @Test(arguments: [DType.float64, .float32], [false, true])
  func packedSelfAttentionMatchesTheComposition(_ dtype: DType, _ padded: Bool) {
    let (b, t, h, d) = (2, 5, 3, 4)
    let g = Generator(seed: 9)
    let values = Tensor.randn([b, t, 3 * h * d], dtype: .float64, generator: g).toArray(Double.self)
    let upstream = Tensor.randn([b, t, h * d], dtype: .float64, generator: g).to(dtype)
    // Padding: the first two keys of sequence 1 are blocked (and causality everywhere).
    var bias: Tensor? = nil
    if padded {
      var m = [Double](repeating: 0, count: b * t * t)
      for i in 0..<t { for j in 0..<t where j > i || (j < 2) { m[t * t + i * t + j] = -1e30 } }
      for i in 0..<t { for j in 0..<t where j > i { m[i * t + j] = -1e30 } }
      for i in 0..<2 { m[t * t + i * t + i] = 0 }  // keep each blocked row finite: attend to itself
      bias = Tensor(m, shape: [b, 1, t, t]).to(dtype)
    }
    func reference(_ qkv: Tensor) -> Tensor {
      let parts = qkv.split(sizes: [h * d, h * d, h * d], dim: -1)
      let q = parts[0], k = parts[1], v = parts[2]
      func heads(_ x: Tensor) -> Tensor { x.view([b, t, h, d]).transposed(1, 2) }
      var scores = heads(q).matmul(heads(k).transposed(2, 3)) * (1 / Double(d).squareRoot())
      if let bias { scores = scores + bias } else {
        scores = scores.maskedFill(Tensor.ones([t, t], dtype: .bool).triu(1), -.infinity)
      }
      return scores.softmax(dim: -1).matmul(heads(v)).transposed(1, 2).reshaped([b, t, h * d])
    }
    let x1 = Tensor(values, shape: [b, t, 3 * h * d]).to(dtype).requiringGrad()
    let x2 = Tensor(values, shape: [b, t, 3 * h * d]).to(dtype).requiringGrad()
    let y1 = Tensor.packedSelfAttention(x1, heads: h, bias: bias), y2 = reference(x2)
    (y1 * upstream).sum().backward()
    (y2 * upstream).sum().backward()
    let tol = dtype == .float64 ? 1e-12 : 1e-5
    #expect(y1.shape == [b, t, h * d])
    #expect(y1.allClose(y2, rtol: tol, atol: tol))
    #expect(x1.grad!.allClose(x2.grad!, rtol: tol, atol: tol))
  }

  @Test func packedSelfAttentionWithoutGradients() {
    let x = Tensor.randn([1, 3, 6], generator: Generator(seed: 1))
    let y = withoutGradients { Tensor.packedSelfAttention(x, heads: 2) }
    #expect(!y.requiresGrad)
    // The first position attends only to itself: its output is its own v.
    #expect(y[0][0].allClose(x[0][0].narrow(dim: 0, start: 4, length: 2), rtol: 1e-6, atol: 1e-7))
  }

  /// GELU's tanh approximation (computed as x·σ(2z) on the CPU) against 0.5·x·(1 + tanh(z)) in float64.
  @Test(arguments: [DType.float32, .float64])
  func geluTanhMatchesItsDefinition(_ dtype: DType) {
    let x = Tensor.arange(-12, 12, step: 0.01, dtype: .float64)
    let z = (x + x.pow(3) * 0.044715) * (2 / Double.pi).squareRoot()
    let expected = x * 0.5 * (z.tanh() + 1)
    let y = x.to(dtype).requiringGrad()
    let got = y.gelu(approximate: true)
    #expect(got.dtype == dtype)
    #expect(got.to(.float64).allClose(expected, rtol: dtype == .float64 ? 1e-12 : 2e-6, atol: dtype == .float64 ? 1e-14 : 1e-7))
    // d/dx, by the chain rule on the definition.
    let dz = (x.square() * (3 * 0.044715) + 1) * (2 / Double.pi).squareRoot()
    let dExpected = (z.tanh() + 1) * 0.5 + x * 0.5 * (1 - z.tanh().square()) * dz
    got.sum().backward()
    #expect(y.grad!.to(.float64).allClose(dExpected, rtol: dtype == .float64 ? 1e-12 : 2e-6, atol: dtype == .float64 ? 1e-14 : 1e-6))
  }

  @Test func linearEmbeddingLayerNorm() {
    let x = Tensor([1, 2] as [Float], shape: [1, 2])
    let w = Tensor([1, 0, 0, 1, 1, 1] as [Float], shape: [3, 2])
    #expect(doubles(Tensor.linear(x, weight: w, bias: Tensor([0.5, 0.5, 0.5] as [Float]))) == [1.5, 2.5, 3.5])
    #expect(doubles(Tensor.linear(x, weight: w)) == [1, 2, 3])
    #expect(Tensor.linear(Tensor.zeros([4, 5, 2]), weight: w).shape == [4, 5, 3])

    let table = Tensor([0, 1, 2, 3, 4, 5] as [Float], shape: [3, 2])
    let e = Tensor.embedding(Tensor([2, 0, 2] as [Int64]), weight: table)
    #expect(e.shape == [3, 2] && doubles(e) == [4, 5, 0, 1, 4, 5])
    #expect(Tensor.embedding(Tensor([0, 1, 2, 0] as [Int64], shape: [2, 2]), weight: table).shape == [2, 2, 2])

    let v = Tensor([1, 2, 3, 4] as [Double], shape: [1, 4])
    let d = (1.25 + 1e-5).squareRoot()
    let normalized = [-1.5, -0.5, 0.5, 1.5].map { $0 / d }
    #expect(near(doubles(Tensor.layerNorm(v, normalizedShape: [4], weight: nil, bias: nil)), normalized, tol: 1e-12))
    let affine = Tensor.layerNorm(v, normalizedShape: [4], weight: Tensor([1, 1, 2, 2] as [Double]),
                                  bias: Tensor([0, 0, 0, 1] as [Double]))
    #expect(near(doubles(affine), [normalized[0], normalized[1], 2 * normalized[2], 2 * normalized[3] + 1], tol: 1e-12))
    let custom = Tensor.layerNorm(v, normalizedShape: [4], weight: nil, bias: nil, eps: 0.75)
    #expect(near(doubles(custom), [-1.5, -0.5, 0.5, 1.5].map { $0 / 2.0.squareRoot() }, tol: 1e-12))
  }

  // MARK: random numbers

  @Test(arguments: Sampler.allCases)
  func samplersReproduceWithTheSameSeed(_ sampler: Sampler) {
    let a = sampler.draw(Generator(seed: 1234))
    let b = sampler.draw(Generator(seed: 1234))
    let c = sampler.draw(Generator(seed: 4321))
    #expect(!a.isEmpty)
    #expect(a == b)
    #expect(a != c)
    // Drawing advances the generator.
    let g = Generator(seed: 1234)
    #expect(sampler.draw(g) == a)
    #expect(sampler.draw(g) != a)
  }

  @Test(arguments: Sampler.allCases)
  func generatorStateSaveAndRestore(_ sampler: Sampler) throws {
    let g = Generator(seed: 77)
    _ = sampler.draw(g)
    _ = Tensor.randn([3], dtype: .float64, generator: g)  // odd count: leaves a cached normal behind
    let saved = g.state
    #expect(saved.dtype == .uint8)
    #expect(saved.rank == 1 && saved.count > 0)
    let savedBytes = saved.bytes()
    let first = sampler.draw(g)
    let firstSmall = doubles(Tensor.randn([3], dtype: .float64, generator: g))
    #expect(saved.bytes() == savedBytes)  // the saved state is a copy
    #expect(g.state.bytes() != savedBytes)
    try g.setState(saved)
    #expect(g.state.bytes() == savedBytes)
    #expect(sampler.draw(g) == first)
    #expect(doubles(Tensor.randn([3], dtype: .float64, generator: g)) == firstSmall)
    // The state moves to another generator too.
    let other = Generator(seed: 5)
    try other.setState(saved)
    #expect(sampler.draw(other) == first)
  }

  @Test func generatorRejectsAWrongState() {
    let g = Generator(seed: 1)
    #expect(throws: TorchError.self) { try g.setState(Tensor.zeros([3], dtype: .uint8)) }
    #expect(throws: TorchError.self) { try g.setState(Tensor.zeros([g.state.count], dtype: .float32)) }
    // The generator still works afterwards.
    #expect(doubles(Tensor.rand([4], generator: g)) == doubles(Tensor.rand([4], generator: Generator(seed: 1))))
  }

  @Test func reseedRestartsTheSequence() {
    let g = Generator(seed: 1)
    _ = Tensor.randn([10], generator: g)
    g.reseed(99)
    #expect(doubles(Tensor.randn([10], generator: g)) == doubles(Tensor.randn([10], generator: Generator(seed: 99))))
  }

  @Test func randnMoments() {
    let x = doubles(Tensor.randn([10_000], dtype: .float64, generator: Generator(seed: 2024)))
    let mean = x.reduce(0, +) / Double(x.count)
    let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count - 1)
    #expect(Swift.abs(mean) < 0.05)
    #expect(Swift.abs(variance - 1) < 0.05)
    #expect(x.filter { Swift.abs($0) > 3 }.count < 60)  // 0.27% expected
    #expect(Set(x).count == x.count)
  }

  @Test func randRandintRandperm() {
    let u = doubles(Tensor.rand([10_000], generator: Generator(seed: 3)))
    #expect(u.allSatisfy { $0 >= 0 && $0 < 1 })
    #expect(Swift.abs(u.reduce(0, +) / 10_000 - 0.5) < 0.02)
    #expect(Tensor.rand([2, 3], dtype: .float64, generator: Generator(seed: 3)).dtype == .float64)

    let r = Tensor.randint(3, 7, [1000], generator: Generator(seed: 4))
    #expect(r.dtype == .int64 && r.shape == [1000])
    let values = longs(r)
    #expect(values.allSatisfy { $0 >= 3 && $0 < 7 })
    #expect(Set(values) == [3, 4, 5, 6])
    #expect(Tensor.randint(0, 2, [4], dtype: .int32, generator: Generator(seed: 4)).dtype == .int32)

    let p = Tensor.randperm(10, generator: Generator(seed: 5))
    #expect(p.dtype == .int64)
    let perm = longs(p)
    #expect(perm.sorted() == Array(0..<10))
    #expect(perm != Array(0..<10))
  }

  @Test func bernoulliAndMultinomial() {
    let edge = Tensor([0, 1, 0, 1] as [Float]).bernoulli(generator: Generator(seed: 6))
    #expect(doubles(edge) == [0, 1, 0, 1])
    let coin = doubles(Tensor.full([10_000], 0.3).bernoulli(generator: Generator(seed: 6)))
    #expect(coin.allSatisfy { $0 == 0 || $0 == 1 })
    #expect(Swift.abs(coin.reduce(0, +) / 10_000 - 0.3) < 0.02)

    let weights = Tensor([0, 1, 0, 3] as [Float])
    let draws = longs(weights.multinomial(1000, replacement: true, generator: Generator(seed: 7)))
    #expect(draws.count == 1000)
    #expect(draws.allSatisfy { $0 == 1 || $0 == 3 })
    let threes = Double(draws.filter { $0 == 3 }.count) / 1000
    #expect(Swift.abs(threes - 0.75) < 0.05)
    let two = longs(weights.multinomial(2, generator: Generator(seed: 7)))
    #expect(Set(two) == [1, 3])
    let rows = Tensor([1, 0, 0, 0, 0, 1] as [Float], shape: [2, 3]).multinomial(3, replacement: true,
                                                                               generator: Generator(seed: 8))
    #expect(rows.shape == [2, 3])
    #expect(longs(rows) == [0, 0, 0, 2, 2, 2])
  }

  @Test(arguments: [0.1, 0.3, 0.5, 0.8])
  func dropoutZeroesAboutPAndScalesSurvivors(_ p: Double) {
    let x = Tensor.ones([10_000])
    let y = doubles(x.dropout(p: p, training: true, generator: Generator(seed: 12)))
    let zeros = Double(y.filter { $0 == 0 }.count) / 10_000
    #expect(Swift.abs(zeros - p) < 0.03)
    let scale = Double(Float(1) / Float(1 - p))
    #expect(y.allSatisfy { $0 == 0 || Swift.abs($0 - scale) < 1e-6 })
    #expect(Swift.abs(y.reduce(0, +) / 10_000 - 1) < 0.1)  // inverted dropout keeps the expectation
  }

  @Test func dropoutIdentityCases() {
    let x = Tensor([1, -2, 3] as [Float])
    #expect(doubles(x.dropout(p: 0.5, training: false)) == [1, -2, 3])
    #expect(doubles(x.dropout(p: 0, training: true)) == [1, -2, 3])
    #expect(doubles(x.dropout(p: 1, training: true)) == [0, 0, 0])
    let big = Tensor.randn([100], generator: Generator(seed: 1))
    let kept = big.dropout(p: 0.5, training: true, generator: Generator(seed: 2))
    for (a, b) in zip(doubles(big), doubles(kept)) where b != 0 {
      #expect(near(b, 2 * a, tol: 1e-6))
    }
  }

  // MARK: autograd

  @Test func withoutGradientsStopsRecordingAndRestores() throws {
    #expect(gradientsEnabled)
    let x = Tensor([1, 2] as [Float]).requiringGrad()
    #expect((x * 2).requiresGrad)
    let y = withoutGradients { () -> Tensor in
      #expect(!gradientsEnabled)
      withoutGradients { #expect(!gradientsEnabled) }
      #expect(!gradientsEnabled)  // the inner scope restored "off", not "on"
      return x * 2
    }
    #expect(!y.requiresGrad)
    #expect(gradientsEnabled)
    #expect((x * 2).requiresGrad)
    #expect(throws: ThrownOnPurpose.self) {
      try withoutGradients { () throws -> Void in throw ThrownOnPurpose() }
    }
    #expect(gradientsEnabled)
    #expect(withoutGradients { 42 } == 42)
  }

  @Test func requiresGradPropagates() {
    let x = Tensor([1, 2] as [Float])
    #expect(!x.requiresGrad)
    #expect(!(x * 2).requiresGrad)
    x.requiringGrad()
    #expect(x.requiresGrad)
    #expect((x * 2 + 1).sum().requiresGrad)
    #expect(x.grad == nil)
    x.requiresGrad = false
    #expect(!(x * 2).requiresGrad)
    #expect(x.requiringGrad(true).requiresGrad && !x.requiringGrad(false).requiresGrad)
  }

  @Test func gradientsAccumulateUntilZeroed() {
    let x = Tensor([1, 2, 3] as [Double]).requiringGrad()
    (x * x).sum().backward()
    #expect(doubles(x.grad!) == [2, 4, 6])
    (x * x).sum().backward()
    #expect(doubles(x.grad!) == [4, 8, 12])
    x.zeroGrad()
    #expect(x.grad == nil)
    (x * 3).sum().backward()
    #expect(doubles(x.grad!) == [3, 3, 3])
    x.zeroGrad(setToNone: false)
    #expect(x.grad.map(doubles) == [0, 0, 0])
    x.sum().backward()
    #expect(doubles(x.grad!) == [1, 1, 1])
  }

  @Test func backwardWithRetainedGraphTwice() {
    let x = Tensor([1, 2, 3] as [Double]).requiringGrad()
    let y = (x * x * x).sum()
    y.backward(retainGraph: true)
    #expect(doubles(x.grad!) == [3, 12, 27])
    y.backward(retainGraph: true)
    #expect(doubles(x.grad!) == [6, 24, 54])
    y.backward()
    #expect(doubles(x.grad!) == [9, 36, 81])
  }

  @Test func backwardWithExplicitGradient() {
    let x = Tensor([1, 2, 3] as [Double]).requiringGrad()
    (x * x).backward(Tensor([1, 10, 100] as [Double]))
    #expect(doubles(x.grad!) == [2, 40, 600])
  }

  @Test func gradientsReachOnlyLeavesOnThePath() {
    let a = Tensor([2] as [Double]).requiringGrad()
    let b = Tensor([5] as [Double]).requiringGrad()
    let unused = Tensor([7] as [Double]).requiringGrad()
    (a * b + a).sum().backward()
    #expect(doubles(a.grad!) == [6])
    #expect(doubles(b.grad!) == [2])
    #expect(unused.grad == nil)
  }

  @Test func detachedCutsTheGraph() {
    let x = Tensor([1, 2, 3] as [Double]).requiringGrad()
    let d = x.detached()
    #expect(!d.requiresGrad)
    #expect(!(d * 2).requiresGrad)
    (x * x.detached()).sum().backward()
    #expect(doubles(x.grad!) == [1, 2, 3])  // not 2x
    // Shares storage with the original.
    d.fill_(5)
    #expect(doubles(x) == [5, 5, 5])
  }

  // MARK: in-place ops

  @Test func inPlaceArithmetic() {
    let a = Tensor([1, 2, 3] as [Float])
    a.add_(Tensor([10, 20, 30] as [Float]), alpha: 0.5)
    #expect(doubles(a) == [6, 12, 18])
    a.add_(Tensor([1, 1, 1] as [Float]))
    #expect(doubles(a) == [7, 13, 19])
    a.sub_(Tensor([2, 2, 2] as [Float]))
    #expect(doubles(a) == [5, 11, 17])
    a.mul_(Tensor([2] as [Float]))  // broadcast
    #expect(doubles(a) == [10, 22, 34])
    a.div_(Tensor([5, 11, 17] as [Float]))
    #expect(doubles(a) == [2, 2, 2])
    a.add_(1.5)
    #expect(doubles(a) == [3.5, 3.5, 3.5])
    a.mul_(2)
    #expect(doubles(a) == [7, 7, 7])
    a.div_(4)
    #expect(doubles(a) == [1.75, 1.75, 1.75])
    let i = Tensor([1, 2] as [Int64])
    i.add_(3)
    #expect(i.dtype == .int64 && longs(i) == [4, 5])
    i.mul_(2)
    #expect(i.dtype == .int64 && longs(i) == [8, 10])
    i.sub_(Tensor([1, 1] as [Int64]))
    #expect(longs(i) == [7, 9])
  }

  // Integer tensors take whole-number alphas as integers (libtorch rejects a floating alpha there).
  @Test func integerTensorAddInPlace() {
    let i = Tensor([4, 5] as [Int64])
    i.add_(Tensor([1, 1] as [Int64]))
    #expect(i.dtype == .int64 && longs(i) == [5, 6])
    i.add_(Tensor([1, 2] as [Int64]), alpha: -2)
    #expect(longs(i) == [3, 2])
  }

  @Test func addcmulAndAddcdiv() {
    let s = Tensor([1, 1, 1] as [Float])
    s.addcmul_(Tensor([1, 2, 3] as [Float]), Tensor([4, 5, 6] as [Float]), value: 0.5)
    #expect(doubles(s) == [3, 6, 10])
    s.addcmul_(Tensor([1, 1, 1] as [Float]), Tensor([1, 1, 1] as [Float]))
    #expect(doubles(s) == [4, 7, 11])
    let t = Tensor([1, 1, 1] as [Double])
    t.addcdiv_(Tensor([1, 2, 3] as [Double]), Tensor([4, 5, 6] as [Double]), value: 2)
    #expect(near(doubles(t), [1.5, 1.8, 2], tol: 1e-15))
    t.addcdiv_(Tensor([1, 1, 1] as [Double]), Tensor([2, 2, 2] as [Double]))
    #expect(near(doubles(t), [2, 2.3, 2.5], tol: 1e-15))
  }

  @Test func copyFillZero() {
    let dst = Tensor.zeros([2, 3], dtype: .float64)
    dst.copy_(Tensor([1, 2, 3] as [Int64]))  // broadcast and converted
    #expect(dst.dtype == .float64)
    #expect(doubles(dst) == [1, 2, 3, 1, 2, 3])
    dst.fill_(2.5)
    #expect(doubles(dst) == [2.5, 2.5, 2.5, 2.5, 2.5, 2.5])
    dst.zero_()
    #expect(doubles(dst) == [0, 0, 0, 0, 0, 0])
    // Through views: writes land in the base tensor.
    dst.narrow(dim: 1, start: 1, length: 2).fill_(7)
    #expect(doubles(dst) == [0, 7, 7, 0, 7, 7])
    dst[1].copy_(Tensor([1, 2, 3] as [Double]))
    #expect(doubles(dst) == [0, 7, 7, 1, 2, 3])
    dst.transposed(0, 1)[0].zero_()
    #expect(doubles(dst) == [0, 7, 7, 0, 2, 3])
    let b = Tensor.ones([2], dtype: .bool)
    b.zero_()
    #expect(bools(b) == [false, false])
  }

  // MARK: allClose

  @Test func allClose() {
    let a = Tensor([1.0, 2.0] as [Double])
    #expect(a.allClose(Tensor([1.0, 2.0 + 1e-9] as [Double])))
    #expect(!a.allClose(Tensor([1.0, 2.001] as [Double])))
    #expect(a.allClose(Tensor([1.0, 2.001] as [Double]), atol: 1e-2))
    #expect(a.allClose(Tensor([1, 2] as [Float])))  // dtypes may differ
    #expect(!a.allClose(Tensor([1.0, 2.0] as [Double], shape: [1, 2])))  // shapes may not
    #expect(!a.allClose(Tensor([1.0, .nan] as [Double])))
    // Relative tolerance is relative to the argument, as in torch.allclose.
    let hundred = Tensor([100.0] as [Double])
    #expect(hundred.allClose(Tensor([100.0005] as [Double])))
    #expect(!hundred.allClose(Tensor([100.002] as [Double])))
    let one = Tensor([1.0] as [Double]), other = Tensor([1.105] as [Double])
    #expect(one.allClose(other, rtol: 0.1, atol: 0))
    #expect(!other.allClose(one, rtol: 0.1, atol: 0))
  }

  // As torch.allclose: equal infinities are close.
  @Test func allCloseWithInfinities() {
    let inf = Tensor([1, .infinity, -.infinity] as [Double])
    #expect(inf.allClose(inf.clone()))
    #expect(!inf.allClose(Tensor([1, .infinity, .infinity] as [Double])))
    #expect(!inf.allClose(Tensor([1, 1e300, -.infinity] as [Double])))
  }
}
