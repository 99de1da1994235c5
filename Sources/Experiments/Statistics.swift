import Foundation

/// Mean and 95% interval (normal approximation) of a sample.
public struct Interval: Codable, Sendable {
  public let mean: Double
  public let low: Double
  public let high: Double
  public init(_ xs: [Double]) {
    let n = Double(xs.count)
    let m = xs.reduce(0, +) / Swift.max(n, 1)
    let sd = n > 1 ? (xs.map { ($0 - m) * ($0 - m) }.reduce(0, +) / (n - 1)).squareRoot() : 0
    let half = 1.96 * sd / Swift.max(n, 1).squareRoot()
    (mean, low, high) = (m, m - half, m + half)
  }

  public init(mean: Double, low: Double, high: Double) {
    (self.mean, self.low, self.high) = (mean, low, high)
  }

  /// The share of successes with its 95% Wilson score interval: unlike the normal approximation it stays
  /// inside [0, 1] and is not empty at 0/n or n/n, which matters for the few episodes a game agent plays.
  public static func wilson(successes: Int, trials: Int) -> Interval {
    guard trials > 0 else { return Interval(mean: 0, low: 0, high: 1) }
    let (n, p, z) = (Double(trials), Double(successes) / Double(trials), 1.96)
    let centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    let half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)).squareRoot()
    return Interval(mean: p, low: Swift.max(0, centre - half), high: Swift.min(1, centre + half))
  }
}

/// A value shared between worker threads behind a lock.
final class Locked<T>: @unchecked Sendable {
  private var inner: T
  private let lock = NSLock()
  init(_ value: T) { inner = value }
  var value: T { lock.lock(); defer { lock.unlock() }; return inner }
  @discardableResult func mutate<R>(_ f: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return f(&inner) }
}

/// The files every experiment writes the same way: its config (which claims the folder), metrics.jsonl and
/// summary.json.
enum ExperimentFiles {
  /// Pretty, sorted, snake_case keys: what config.json and summary.json are written with.
  static var encoder: JSONEncoder {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    e.keyEncodingStrategy = .convertToSnakeCase
    return e
  }

  /// Writes `out/config.json`; a folder that holds the runs of another configuration is refused, so a
  /// resumed experiment never mixes two.
  static func claim<C: Encodable>(_ out: URL, config: C) throws {
    let url = out.appendingPathComponent("config.json")
    let data = try encoder.encode(config)
    if let existing = FileManager.default.contents(atPath: url.path), existing != data {
      throw ExperimentError("\(out.path) holds runs of a different configuration; use another --out or delete it")
    }
    try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
    try data.write(to: url, options: .atomic)
  }

  /// `out/metrics.jsonl`: one JSON object (sorted keys) per row.
  static func writeMetrics(_ rows: [[String: Any]], to out: URL) throws {
    var text = ""
    for row in rows { text += String(decoding: try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]), as: UTF8.self) + "\n" }
    try Data(text.utf8).write(to: out.appendingPathComponent("metrics.jsonl"), options: .atomic)
  }

  /// A finished run read back from `file`, or made by `make` and saved there (sorted keys, Swift's key
  /// names, atomically) so an interrupted experiment resumes with the runs it has; `made` says which.
  static func run<R: Codable>(at file: URL, _ make: () throws -> R) throws -> (run: R, made: Bool) {
    if let data = FileManager.default.contents(atPath: file.path) { return (try JSONDecoder().decode(R.self, from: data), false) }
    let r = try make()
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    try encoder.encode(r).write(to: file, options: .atomic)
    return (r, true)
  }

  static func writeSummary<S: Encodable>(_ s: S, to out: URL) throws {
    try encoder.encode(s).write(to: out.appendingPathComponent("summary.json"), options: .atomic)
  }
}

/// Rank correlation, for the IQLearn experiment's reward-vs-score claim.
public enum Correlation {
  /// 1-based ranks, ties given their average rank.
  public static func ranks(_ v: [Double]) -> [Double] {
    let order = v.indices.sorted { v[$0] < v[$1] }
    var out = [Double](repeating: 0, count: v.count)
    var i = 0
    while i < order.count {
      var j = i
      while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
      for k in i...j { out[order[k]] = Double(i + j) / 2 + 1 }
      i = j + 1
    }
    return out
  }

  public static func pearson(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count && a.count > 1, "pearson needs two series of the same length (at least 2)")
    let ma = a.reduce(0, +) / Double(a.count), mb = b.reduce(0, +) / Double(b.count)
    let cov = zip(a, b).map { ($0 - ma) * ($1 - mb) }.reduce(0, +)
    let va = a.map { ($0 - ma) * ($0 - ma) }.reduce(0, +), vb = b.map { ($0 - mb) * ($0 - mb) }.reduce(0, +)
    return va == 0 || vb == 0 ? .nan : cov / (va * vb).squareRoot()
  }

  /// Spearman's ρ: the Pearson correlation of the average ranks (NaN when a series is constant).
  public static func spearman(_ a: [Double], _ b: [Double]) -> Double { pearson(ranks(a), ranks(b)) }
}
