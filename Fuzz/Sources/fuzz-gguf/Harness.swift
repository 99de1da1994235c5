import Foundation
import FuzzSupport
import LM
import Torch

/// A GGUF file from memory: header, metadata and tensor table are validated, every listed tensor is
/// dequantised, and a file that passes as a model has its config and tokenizer files rebuilt.
func check(_ input: UnsafeRawBufferPointer) {
  let data = Data(input)
  guard let file = try? GGUFFile(data: data, url: URL(fileURLWithPath: "fuzz.gguf")) else { return }
  for t in file.tensors {
    guard let values = try? file.floats(t.name) else { continue }
    precondition(values.count == t.elementCount, "tensor '\(t.name)' dequantised to \(values.count) values")
  }
  guard let checkpoint = try? GGUFCheckpoint(file: file) else { return }
  _ = try? checkpoint.tokenizerJSON()
  _ = try? checkpoint.tokenizerConfigJSON()
  _ = try? checkpoint.generationConfigJSON()
  if let tokenizer = try? checkpoint.tokenizer() {
    _ = tokenizer.decode(tokenizer.encode("Hello, world! 123 <|im_end|>"))
  }
}

@main enum Harness { static func main() { fuzz(check) } }
