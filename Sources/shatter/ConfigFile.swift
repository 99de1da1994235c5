import Foundation
import RunConfig

/// `--config FILE.yaml`: the file's flags (`RunConfigFile`) placed before the ones typed, so typed flags
/// always override the file.
enum ConfigFile {
  typealias Problem = RunConfigFile.Problem

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
    let flags = try RunConfigFile.flags(yaml: text, path: path)
    // Subcommand words come first; the file's flags go right after them, before every typed flag.
    let at = rest.firstIndex { $0.hasPrefix("-") } ?? rest.count
    rest.insert(contentsOf: flags, at: at)
    return rest
  }
}
