import Foundation
import FuzzSupport
import RunConfig

/// A YAML run config (`--config FILE.yaml`) from memory, as the CLI reads it: UTF-8 text, then flags.
func check(_ input: UnsafeRawBufferPointer) {
  guard let text = String(validating: input, as: UTF8.self) else { return }
  _ = try? RunConfigFile.flags(yaml: text, path: "fuzz.yaml")
}

@main enum Harness { static func main() { fuzz(check) } }
