import Foundation

/// TensorBoard's event files, written by hand: TFRecord framing (length, masked CRC32C of the length,
/// payload, masked CRC32C of the payload) around `Event` protobufs — a `file_version` first, then one
/// `Summary` of scalar `simple_value`s per step — which `tensorboard`'s own reader loads.
public final class TensorBoardWriter {
  public let url: URL
  private let handle: FileHandle

  /// Creates `directory/events.out.tfevents.<seconds>.<host>.<pid>.0` (TensorBoard's naming).
  public init(directory: URL) throws {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
    url = directory.appendingPathComponent("events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid()).0")
    guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
      throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: url.path])
    }
    handle = try FileHandle(forWritingTo: url)
    var event = Protobuf()
    event.double(1, Date().timeIntervalSince1970)
    event.string(3, "brain.Event:2")
    try write(event.bytes)
  }

  deinit { try? handle.close() }

  /// One `Event` at `step` whose summary holds every finite scalar, by name, as float32.
  public func scalars(step: Int, _ values: [String: Double]) throws {
    var summary = Protobuf()
    for (tag, v) in values.sorted(by: { $0.key < $1.key }) where v.isFinite {
      var value = Protobuf()
      value.string(1, tag)
      value.float(2, Float(v))
      summary.message(1, value)
    }
    var event = Protobuf()
    event.double(1, Date().timeIntervalSince1970)
    event.varint(2, UInt64(bitPattern: Int64(step)))
    event.message(5, summary)
    try write(event.bytes)
  }

  private func write(_ payload: [UInt8]) throws {
    var record: [UInt8] = []
    let length = withUnsafeBytes(of: UInt64(payload.count).littleEndian, Array.init)
    record += length
    record += withUnsafeBytes(of: Self.maskedCRC32C(length).littleEndian, Array.init)
    record += payload
    record += withUnsafeBytes(of: Self.maskedCRC32C(payload).littleEndian, Array.init)
    try handle.write(contentsOf: Data(record))
  }

  static let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    return c
  }

  /// CRC-32C (Castagnoli), as TFRecord uses.
  public static func crc32c(_ bytes: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
  }

  /// TFRecord's masking: rotate right by 15 and add a constant.
  public static func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
    let c = crc32c(bytes)
    return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
  }
}

/// The few protobuf wire types the event format needs.
struct Protobuf {
  var bytes: [UInt8] = []

  mutating func key(_ field: Int, _ wire: UInt8) { rawVarint(UInt64(field) << 3 | UInt64(wire)) }
  mutating func rawVarint(_ v: UInt64) {
    var v = v
    while v >= 0x80 {
      bytes.append(UInt8(v & 0x7F) | 0x80)
      v >>= 7
    }
    bytes.append(UInt8(v))
  }
  mutating func varint(_ field: Int, _ v: UInt64) { key(field, 0); rawVarint(v) }
  mutating func double(_ field: Int, _ v: Double) { key(field, 1); bytes += withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) }
  mutating func float(_ field: Int, _ v: Float) { key(field, 5); bytes += withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) }
  mutating func string(_ field: Int, _ s: String) { lengthDelimited(field, Array(s.utf8)) }
  mutating func message(_ field: Int, _ m: Protobuf) { lengthDelimited(field, m.bytes) }
  mutating func lengthDelimited(_ field: Int, _ b: [UInt8]) {
    key(field, 2)
    rawVarint(UInt64(b.count))
    bytes += b
  }
}
