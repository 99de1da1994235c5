import Foundation
import FuzzSupport
import LM

/// A `config.json` from memory; one that is accepted must also write back as `Checkpoint.save` writes it.
func check(_ input: UnsafeRawBufferPointer) {
  let data = Data(input)
  guard let config = try? ModelConfig(json: data, source: "config.json") else { return }
  _ = config.headDim
  guard let written = try? JSONSerialization.data(withJSONObject: config.jsonObject(), options: [.prettyPrinted, .sortedKeys])
  else { preconditionFailure("an accepted config.json cannot be written back") }
  precondition((try? ModelConfig(json: written)) == config, "config.json does not read back as written")
}

@main enum Harness { static func main() { fuzz(check) } }
