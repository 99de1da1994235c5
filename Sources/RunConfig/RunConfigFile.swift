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

  /// The flags of a config file's text, sorted by key; `path` names the file in errors.
  public static func flags(yaml text: String, path: String) throws -> [String] {
    let node: Any?
    do { node = try Yams.load(yaml: text) } catch {
      throw Problem(description: "\(path): not valid YAML (\(error))")
    }
    guard let map = node as? [String: Any] else {
      throw Problem(description: "\(path): expected a mapping of option names to values")
    }
    var flags: [String] = []
    for key in map.keys.sorted() {
      let name = "--" + key.replacingOccurrences(of: "_", with: "-")
      switch map[key] {
      case let b as Bool: if b { flags.append(name) }
      case let n as Int: flags += [name, String(n)]
      case let d as Double: flags += [name, String(d)]
      case let s as String: flags += [name, s]
      default: throw Problem(description: "\(path): key '\(key)' should be a number, a string or a boolean")
      }
    }
    return flags
  }
}
