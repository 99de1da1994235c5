import Foundation
import Testing
@testable import Alignment

@Test func crc32cAndTFRecordFramingFollowTheFormat() throws {
  // The standard CRC-32C check value, and the empty string.
  #expect(TensorBoardWriter.crc32c(Array("123456789".utf8)) == 0xE306_9283)
  #expect(TensorBoardWriter.crc32c([]) == 0)
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-tb-\(UUID().uuidString)")
  defer { try? FileManager.default.removeItem(at: dir) }
  let w = try TensorBoardWriter(directory: dir)
  try w.scalars(step: 300, ["loss": 0.5, "nan": .nan])
  #expect(w.url.lastPathComponent.hasPrefix("events.out.tfevents."))
  // Read the records back: length, its masked CRC, payload, its masked CRC.
  let bytes = [UInt8](try Data(contentsOf: w.url))
  var i = 0, payloads: [[UInt8]] = []
  func u32(_ at: Int) -> UInt32 { bytes[at..<at + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
  while i < bytes.count {
    let lengthBytes = Array(bytes[i..<i + 8])
    let n = Int(lengthBytes.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    #expect(u32(i + 8) == TensorBoardWriter.maskedCRC32C(lengthBytes))
    let payload = Array(bytes[(i + 12)..<(i + 12 + n)])
    #expect(u32(i + 12 + n) == TensorBoardWriter.maskedCRC32C(payload))
    payloads.append(payload)
    i += 16 + n
  }
  #expect(payloads.count == 2)
  #expect(String(decoding: payloads[0].suffix(13), as: UTF8.self) == "brain.Event:2")
  // Event: wall_time (field 1, fixed64), step 300 (field 2, varint 0xAC 0x02), summary (field 5) with one
  // value: tag "loss" and simple_value 0.5 (field 2, fixed32); the NaN is left out.
  let e = payloads[1]
  #expect(e[0] == 0x09 && Array(e[9..<12]) == [0x10, 0xAC, 0x02] && e[12] == 0x2A)
  let value: [UInt8] = [0x0A, 0x04] + Array("loss".utf8) + [0x15] + withUnsafeBytes(of: Float(0.5).bitPattern.littleEndian, Array.init)
  #expect(Array(e[13...]) == [UInt8(value.count + 2), 0x0A, UInt8(value.count)] + value)
}
