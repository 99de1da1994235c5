import Foundation
import FuzzSupport
import Torch

/// A safetensors file from memory: the header must be refused with an error or fully validated, and every
/// tensor it lists must then read without leaving its data section.
func check(_ input: UnsafeRawBufferPointer) {
  let data = Data(input)
  guard let file = try? SafetensorsFile(data: data, url: URL(fileURLWithPath: "fuzz.safetensors")) else { return }
  for name in file.names {
    guard let t = try? file.tensor(name), let info = file.info(name) else { continue }
    precondition(t.shape == info.shape && t.dtype == info.dtype, "tensor '\(name)' read back with another shape or dtype")
  }
}

@main enum Harness { static func main() { fuzz(check) } }
