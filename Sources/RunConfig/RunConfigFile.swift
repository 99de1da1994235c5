import Foundation
import Yams

/// A YAML run config (`--config FILE.yaml`): a flat mapping of option names (`lr: 3e-4`, `batch-size: 8`,
/// `batch_size: 8`, `json: true`) read as the command-line flags it stands for. The CLI places them before
/// the typed flags, so typed flags always override the file.
public enum RunConfigFile {
  public struct Problem: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
  }

  /// The flags of a config file's text, sorted by key (a repeated key keeps its last value); `path` names
  /// the file in errors.
  ///
  /// The file is composed into YAML nodes and read here, not through `Yams.load`: that constructor
  /// force-unwraps a mapping key that is not a scalar (`? - a`) and traps (found by `make fuzz`), and only
  /// the boolean constructor is used on values.
  public static func flags(yaml text: String, path: String) throws -> [String] {
    let root: Node?
    do { root = try Yams.compose(yaml: text) } catch {
      throw Problem(description: "\(path): not valid YAML (\(error))")
    }
    guard let mapping = root?.mapping else {
      throw Problem(description: "\(path): expected a mapping of option names to values")
    }
    var values: [String: Node] = [:]
    for (keyNode, value) in mapping {
      guard let key = keyNode.scalar?.string else {
        throw Problem(description: "\(path): line \(keyNode.mark?.line ?? 0): a key should be an option name, not a list or mapping")
      }
      values[key] = value
    }
    var flags: [String] = []
    for key in values.keys.sorted() {
      let name = "--" + key.replacingOccurrences(of: "_", with: "-")
      let value = values[key]!
      // Numbers pass as the text that was written, for the option's own parser to read and, if it must,
      // refuse naming the flag: Yams' integer constructor traps on an overflowing base-60 value such as
      // `666666:6` (found by `make fuzz`). Digit separators (`1_000`) are dropped from decimal integers.
      switch (Tag.Name(rawValue: value.tag.description), value.scalar?.string) {
      case (Tag.Name.bool, _) where value.bool != nil: if value.bool! { flags.append(name) }
      case (Tag.Name.int, let text?):
        let plain = text.replacingOccurrences(of: "_", with: "")
        flags += [name, Int(plain) != nil ? plain : text]
      case (Tag.Name.float, let text?), (Tag.Name.str, let text?): flags += [name, text]
      default: throw Problem(description: "\(path): key '\(key)' should be a number, a string or a boolean")
      }
    }
    return flags
  }
}
