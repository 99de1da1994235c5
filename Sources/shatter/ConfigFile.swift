import Foundation
import Yams

/// `--config FILE.yaml`: a flat YAML mapping of option names (`lr: 3e-4`, `batch-size: 8`,
/// `batch_size: 8`, `json: true`) turned into command-line flags placed before the ones typed, so
/// typed flags always override the file.
enum ConfigFile {
  struct Problem: Error, CustomStringConvertible {
    let description: String
  }

  static func expand(_ args: [String]) throws -> [String] {
    guard let i = args.firstIndex(where: { $0 == "--config" || $0.hasPrefix("--config=") }) else { return args }
    let path: String
    var rest = args
    if args[i].hasPrefix("--config=") {
      path = String(args[i].dropFirst("--config=".count))
      rest.remove(at: i)
    } else {
      guard i + 1 < args.count else { throw Problem(description: "--config needs a file path") }
      path = args[i + 1]
      rest.removeSubrange(i...(i + 1))
    }
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw Problem(description: "\(path): cannot read the config file")
    }
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
    // Subcommand words come first; the file's flags go right after them, before every typed flag.
    let at = rest.firstIndex { $0.hasPrefix("-") } ?? rest.count
    rest.insert(contentsOf: flags, at: at)
    return rest
  }
}
