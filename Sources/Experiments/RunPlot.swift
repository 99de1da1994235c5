import Foundation

/// A training run's metrics (`metrics.jsonl`, one `{"step","data"}` object per line) as a chart: each
/// metric a curve over steps. Noisy per-step metrics can be smoothed with a trailing window, drawn as
/// the window's mean with its 95% band (±1.96 standard errors); metrics logged only now and then (an
/// eval every N steps) are drawn as given.
public enum RunPlot {
  public struct Problem: Error, CustomStringConvertible {
    public let description: String
  }

  /// Every (step, value) of `key` in the file, in order.
  public static func series(_ url: URL, key: String) throws -> [(step: Double, value: Double)] {
    guard let text = try? String(contentsOf: url, encoding: .utf8) else {
      throw Problem(description: "\(url.path): cannot be read")
    }
    var out: [(Double, Double)] = []
    for (i, line) in text.split(separator: "\n").enumerated() {
      guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let step = obj["step"] as? Int, let data = obj["data"] as? [String: Any]
      else { throw Problem(description: "\(url.path):\(i + 1): expected {\"step\": N, \"data\": {…}}") }
      if let v = data[key] as? Double, v.isFinite { out.append((Double(step), v)) }
    }
    return out
  }

  /// The SVG chart of `keys` from one metrics file; `smooth` > 1 smooths the metrics logged at every step.
  public static func chart(_ url: URL, keys: [String], smooth: Int = 1, title: String? = nil,
                           yLabel: String? = nil) throws -> String {
    var lines: [Plots.Series] = []
    for key in keys {
      let points = try series(url, key: key)
      guard !points.isEmpty else { throw Problem(description: "\(url.path): no step logs '\(key)'") }
      let dense = points.count > 1 && points.count == Int(points.last!.step - points.first!.step) + 1
      let w = dense ? Swift.max(1, smooth) : 1
      var s = Plots.Series(name: w > 1 ? "\(key) (mean of \(w))" : key, x: [], mean: [], low: [], high: [])
      for i in points.indices {
        let window = points[Swift.max(0, i - w + 1)...i].map(\.value)
        let m = window.reduce(0, +) / Double(window.count)
        let se = window.count > 1
          ? (window.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(window.count - 1) / Double(window.count)).squareRoot() : 0
        s.x.append(points[i].step)
        s.mean.append(m)
        s.low.append(m - 1.96 * se)
        s.high.append(m + 1.96 * se)
      }
      lines.append(s)
    }
    return Plots.bands(title: title ?? keys.joined(separator: ", ") + " over training steps", xLabel: "step",
                       yLabel: yLabel ?? keys.joined(separator: ", "), lines)
  }
}
