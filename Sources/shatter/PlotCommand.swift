import ArgumentParser
import Experiments
import Foundation

struct PlotCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plot",
    abstract: "Chart a training run's metrics (its metrics.jsonl) as an SVG.",
    discussion: """
      Each --keys metric is a curve over steps. With --smooth N, a metric logged at every step is drawn as \
      the mean of its last N values with a 95% band (±1.96 standard errors); metrics logged now and then \
      (eval/*) are drawn as logged.
      """)

  @Option(help: "A run's metrics.jsonl, or its --out directory.") var metrics: String
  @Option(help: "Comma-separated metric names (e.g. reward,eval/reward).") var keys: String
  @Option(help: "Trailing window for metrics logged every step (1: none).") var smooth = 1
  @Option(help: "Chart title (default: the metric names).") var title: String?
  @Option(help: "Label of the y axis (default: the metric names).") var yLabel: String?
  @Option(help: "Where to write the SVG.") var out: String
  @Flag(help: "Print one JSON object {\"out\",\"points\"} and nothing else on stdout.") var json = false

  func validate() throws {
    guard smooth >= 1 else { throw ValidationError("--smooth must be at least 1") }
  }

  func run() throws {
    var url = URL(fileURLWithPath: metrics)
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
      url = url.appendingPathComponent("metrics.jsonl")
    }
    let names = keys.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
    do {
      let svg = try RunPlot.chart(url, keys: names, smooth: smooth, title: title, yLabel: yLabel)
      try Data(svg.utf8).write(to: URL(fileURLWithPath: out))
      let counts = try Dictionary(uniqueKeysWithValues: names.map { ($0, try RunPlot.series(url, key: $0).count) })
      if json { printJSON(["out": out, "points": counts]) } else { print("wrote \(out) (\(names.joined(separator: ", ")))") }
    } catch let e as RunPlot.Problem {
      throw UserError(e.description)
    }
  }
}
