import Foundation

/// Small self-contained SVG charts for experiment reports: titled axes, a legend, units.
enum Plots {
  static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
  static let (width, height) = (720.0, 440.0)
  static let (left, right, top, bottom) = (80.0, 200.0, 50.0, 60.0)

  static func header(_ title: String) -> String {
    """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="13">
    <rect width="100%" height="100%" fill="white"/>
    <text x="\(width / 2)" y="28" text-anchor="middle" font-size="16" font-weight="bold">\(title)</text>

    """
  }

  static func axes(xLabel: String, yLabel: String, xTicks: [(Double, String)], yTicks: [(Double, String)]) -> String {
    let (x0, y0, x1, y1) = (left, height - bottom, width - right, top)
    var s = "<line x1=\"\(x0)\" y1=\"\(y0)\" x2=\"\(x1)\" y2=\"\(y0)\" stroke=\"black\"/>\n"
    s += "<line x1=\"\(x0)\" y1=\"\(y0)\" x2=\"\(x0)\" y2=\"\(y1)\" stroke=\"black\"/>\n"
    for (x, label) in xTicks {
      s += "<line x1=\"\(x)\" y1=\"\(y0)\" x2=\"\(x)\" y2=\"\(y0 + 5)\" stroke=\"black\"/>"
      s += "<text x=\"\(x)\" y=\"\(y0 + 20)\" text-anchor=\"middle\">\(label)</text>\n"
    }
    for (y, label) in yTicks {
      s += "<line x1=\"\(x0 - 5)\" y1=\"\(y)\" x2=\"\(x1)\" y2=\"\(y)\" stroke=\"#e0e0e0\"/>"
      s += "<text x=\"\(x0 - 8)\" y=\"\(y + 4)\" text-anchor=\"end\">\(label)</text>\n"
    }
    s += "<text x=\"\((x0 + x1) / 2)\" y=\"\(height - 18)\" text-anchor=\"middle\">\(xLabel)</text>\n"
    s += "<text transform=\"translate(22 \((y0 + y1) / 2)) rotate(-90)\" text-anchor=\"middle\">\(yLabel)</text>\n"
    return s
  }

  static func ticks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
    (0...count).map { lo + (hi - lo) * Double($0) / Double(count) }
  }

  /// One line of a band chart: a mean curve and its 95% band.
  struct Series {
    var name: String
    var x: [Double], mean: [Double], low: [Double], high: [Double]
  }

  /// Mean curves with their 95% bands (over seeds), a legend, and an optional dashed reference level.
  /// `yRange` fixes the axis (e.g. 0…1 for a success rate); else it fits the bands.
  static func bands(title: String, xLabel: String, yLabel: String, _ series: [Series], yRange: (Double, Double)? = nil,
                    reference: (value: Double, label: String)? = nil, yFormat: String = "%.3f") -> String {
    let xs = series.flatMap(\.x)
    let ys = series.flatMap { $0.low + $0.high } + (reference.map { [$0.value] } ?? [])
    let (xMin, xMax) = (xs.min() ?? 0, xs.max() ?? 1)
    let (yMin, yMax) = yRange ?? (Swift.max(0, (ys.min() ?? 0) * 0.9), (ys.max() ?? 1) * 1.05)
    func px(_ x: Double) -> Double { left + (width - left - right) * (x - xMin) / Swift.max(xMax - xMin, 1) }
    func py(_ y: Double) -> Double { height - bottom - (height - top - bottom) * (y - yMin) / Swift.max(yMax - yMin, 1e-12) }
    var s = header(title)
    let xTicks = xMax - xMin <= 10 && xs.allSatisfy({ $0 == $0.rounded() })
      ? stride(from: xMin, through: xMax, by: 1).map { $0 } : ticks(xMin, xMax)
    s += axes(xLabel: xLabel, yLabel: yLabel, xTicks: xTicks.map { (px($0), String(format: "%.0f", $0)) },
              yTicks: ticks(yMin, yMax).map { (py($0), String(format: yFormat, $0)) })
    for (i, line) in series.enumerated() {
      let c = colors[i % colors.count]
      let band = zip(line.x, line.high).map { "\(px($0)),\(py($1))" } + zip(line.x, line.low).reversed().map { "\(px($0)),\(py($1))" }
      s += "<polygon points=\"\(band.joined(separator: " "))\" fill=\"\(c)\" fill-opacity=\"0.15\" stroke=\"none\"/>\n"
      let points = zip(line.x, line.mean).map { "\(px($0)),\(py($1))" }
      s += "<polyline points=\"\(points.joined(separator: " "))\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\"/>\n"
      let ly = top + 20 + Double(i) * 22
      s += "<line x1=\"\(width - right + 15)\" y1=\"\(ly)\" x2=\"\(width - right + 40)\" y2=\"\(ly)\" stroke=\"\(c)\" stroke-width=\"3\"/>"
      s += "<text x=\"\(width - right + 46)\" y=\"\(ly + 4)\">\(line.name)</text>\n"
    }
    if let reference {
      let y = py(reference.value)
      s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(width - right)\" y2=\"\(y)\" stroke=\"black\" stroke-dasharray=\"6 4\"/>"
      s += "<text x=\"\(width - right - 4)\" y=\"\(y - 6)\" text-anchor=\"end\">\(reference.label)</text>\n"
    }
    return s + "</svg>\n"
  }

  /// One configuration on a front: its mean and 95% interval on both axes, coloured by its group.
  struct Point {
    var label: String
    var group: Int
    var x: Interval, y: Interval
  }

  /// A scatter of points with 95% error bars on both axes, one colour and legend entry per group, each point
  /// labelled: a performance–diversity front. Each group's points are joined in order of x, with the points
  /// of `sharedGroup` (a setting every group reduces to, such as MLE at λ = 0) on every line.
  static func front(title: String, xLabel: String, yLabel: String, groups: [String], _ points: [Point], sharedGroup: Int? = nil) -> String {
    let xs = points.flatMap { [$0.x.low, $0.x.high] }, ys = points.flatMap { [$0.y.low, $0.y.high] }
    let pad = { (lo: Double, hi: Double) in (lo - Swift.max(hi - lo, 1e-3) * 0.08, hi + Swift.max(hi - lo, 1e-3) * 0.08) }
    let (xMin, xMax) = pad(xs.min() ?? 0, xs.max() ?? 1), (yMin, yMax) = pad(ys.min() ?? 0, ys.max() ?? 1)
    func px(_ x: Double) -> Double { left + (width - left - right) * (x - xMin) / (xMax - xMin) }
    func py(_ y: Double) -> Double { height - bottom - (height - top - bottom) * (y - yMin) / (yMax - yMin) }
    var s = header(title)
    s += axes(xLabel: xLabel, yLabel: yLabel, xTicks: ticks(xMin, xMax).map { (px($0), String(format: "%.2f", $0)) },
              yTicks: ticks(yMin, yMax).map { (py($0), String(format: "%.2f", $0)) })
    for g in Set(points.map(\.group)).sorted() where g != sharedGroup {
      guard points.filter({ $0.group == g }).count > 1 else { continue }
      let mine = points.filter { $0.group == g || $0.group == sharedGroup }.sorted { $0.x.mean < $1.x.mean }
      s += "<polyline points=\"\(mine.map { "\(px($0.x.mean)),\(py($0.y.mean))" }.joined(separator: " "))\" fill=\"none\" "
        + "stroke=\"\(colors[g % colors.count])\" stroke-width=\"1.5\" stroke-opacity=\"0.6\"/>\n"
    }
    for (i, p) in points.enumerated() {
      let c = colors[p.group % colors.count], (x, y) = (px(p.x.mean), py(p.y.mean))
      s += "<line x1=\"\(px(p.x.low))\" y1=\"\(y)\" x2=\"\(px(p.x.high))\" y2=\"\(y)\" stroke=\"\(c)\" stroke-width=\"1.2\"/>"
      s += "<line x1=\"\(x)\" y1=\"\(py(p.y.low))\" x2=\"\(x)\" y2=\"\(py(p.y.high))\" stroke=\"\(c)\" stroke-width=\"1.2\"/>"
      s += "<circle cx=\"\(x)\" cy=\"\(y)\" r=\"4.5\" fill=\"\(c)\"/>"
      // Labels alternate above and below their points, so neighbours' labels overlap less.
      s += "<text x=\"\(x + 7)\" y=\"\(i % 2 == 0 ? y - 6 : y + 14)\" font-size=\"10\" fill=\"#333333\">\(p.label)</text>\n"
    }
    for (i, g) in groups.enumerated() where points.contains(where: { $0.group == i }) {
      let ly = top + 20 + Double(i) * 22
      s += "<circle cx=\"\(width - right + 27)\" cy=\"\(ly)\" r=\"5\" fill=\"\(colors[i % colors.count])\"/>"
      s += "<text x=\"\(width - right + 40)\" y=\"\(ly + 4)\">\(g)</text>\n"
    }
    return s + "</svg>\n"
  }

  /// Grid-world policies side by side: each panel is the map with every non-terminal cell shaded by the
  /// probability its policy gives the optimal actions, its likeliest action drawn as an arrow, holes dark
  /// and the goal marked; a colour scale beside them.
  static func policyGrids(title: String, rows: Int, columns: Int, tiles: [Character], optimal: [[Double]],
                          panels: [(String, [[Double]])]) -> String {
    let cell = 34.0, gap = 26.0, top = 70.0, leftPad = 20.0
    let panelWidth = Double(columns) * cell
    let w = leftPad * 2 + Double(panels.count) * panelWidth + Double(panels.count - 1) * gap + 90
    let h = top + Double(rows) * cell + 50
    var s = """
      <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(h))" font-family="Helvetica, Arial, sans-serif" font-size="12">
      <rect width="100%" height="100%" fill="white"/>
      <text x="\(w / 2)" y="24" text-anchor="middle" font-size="14" font-weight="bold">\(title)</text>

      """
    let arrows = ["←", "↓", "→", "↑"]
    for (k, (name, policy)) in panels.enumerated() {
      let x0 = leftPad + Double(k) * (panelWidth + gap)
      s += "<text x=\"\(x0 + panelWidth / 2)\" y=\"\(top - 10)\" text-anchor=\"middle\" font-weight=\"bold\">\(name)</text>\n"
      for r in 0..<rows {
        for c in 0..<columns {
          let i = r * columns + c, x = x0 + Double(c) * cell, y = top + Double(r) * cell
          let tile = tiles[i]
          var fill = "#202020", label = ""
          if tile == "G" {
            fill = "#ffd700"
            label = "G"
          } else if tile != "H" {
            let p = zip(policy[i], optimal[i]).filter { $0.1 > 0 }.map(\.0).reduce(0, +)
            // White (0) to blue (1).
            let v = Int((255 * (1 - Swift.min(1, Swift.max(0, p)))).rounded())
            fill = String(format: "#%02x%02xff", v, v)
            label = arrows[policy[i].indices.max { policy[i][$0] < policy[i][$1] } ?? 0]
          }
          s += "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"\(fill)\" stroke=\"#888\"/>"
          if !label.isEmpty {
            s += "<text x=\"\(x + cell / 2)\" y=\"\(y + cell / 2 + 5)\" text-anchor=\"middle\" font-size=\"16\">\(label)</text>"
          }
          if tile == "S" { s += "<text x=\"\(x + 3)\" y=\"\(y + 11)\" font-size=\"9\">S</text>" }
          s += "\n"
        }
      }
    }
    let sx = w - 70
    for j in 0...10 {
      let v = Int((255 * (1 - Double(10 - j) / 10)).rounded())
      s += "<rect x=\"\(sx)\" y=\"\(top + Double(j) * 10)\" width=\"14\" height=\"10\" fill=\"\(String(format: "#%02x%02xff", v, v))\"/>"
    }
    s += "<text x=\"\(sx + 18)\" y=\"\(top + 9)\">1</text><text x=\"\(sx + 18)\" y=\"\(top + 110)\">0</text>"
    s += "<text x=\"\(sx - 4)\" y=\"\(top + 128)\" font-size=\"10\">P(optimal)</text>\n"
    return s + "</svg>\n"
  }

  /// Mean KL against queries for each rule, with its 95% band over seeds, and the target as a dashed line.
  static func klCurves(_ rules: [(String, RuleSummary)], target: Double) -> String {
    bands(title: "Mean KL(p* ‖ π) over prompts vs queries asked (mean, 95% band over seeds)",
          xLabel: "queries asked (human choices)", yLabel: "KL(p* ‖ π)  (nats)",
          rules.map { name, r in
            Series(name: name, x: r.meanCurve.map { Double($0.queries) }, mean: r.meanCurve.map(\.kl), low: r.klLow, high: r.klHigh)
          }, reference: (target, "target \(String(format: "%.4f", target))"))
  }

  /// One bar: a mean with its 95% interval, and an optional annotation (default: the mean).
  struct Bar {
    var label: String
    var value: Interval
    var annotation: String? = nil
  }

  /// Bars with 95% error bars, a value above each, and dashed reference levels (value, label).
  static func bars(title: String, xLabel: String, yLabel: String, _ bars: [Bar], yMax: Double, yFormat: String = "%.2f",
                   levels: [(value: Double, label: String, color: String)] = []) -> String {
    let slot = (width - left - right) / Double(Swift.max(bars.count, 1))
    func py(_ y: Double) -> Double { height - bottom - (height - top - bottom) * y / yMax }
    var s = header(title)
    s += axes(xLabel: xLabel, yLabel: yLabel, xTicks: bars.enumerated().map { (left + slot * (Double($0.offset) + 0.5), $0.element.label) },
              yTicks: ticks(0, yMax).map { (py($0), String(format: yFormat, $0)) })
    for (i, b) in bars.enumerated() {
      let cx = left + slot * (Double(i) + 0.5), w = slot * 0.5, top = py(b.value.mean)
      s += "<rect x=\"\(cx - w / 2)\" y=\"\(top)\" width=\"\(w)\" height=\"\(py(0) - top)\" fill=\"\(colors[i % colors.count])\"/>\n"
      s += "<line x1=\"\(cx)\" y1=\"\(py(Swift.max(0, b.value.low)))\" x2=\"\(cx)\" y2=\"\(py(Swift.min(yMax, b.value.high)))\" stroke=\"black\" stroke-width=\"1.5\"/>\n"
      s += "<text x=\"\(cx)\" y=\"\(top - 8)\" text-anchor=\"middle\">\(b.annotation ?? String(format: yFormat, b.value.mean))</text>\n"
    }
    for (value, label, color) in levels {
      s += "<line x1=\"\(left)\" y1=\"\(py(value))\" x2=\"\(width - right)\" y2=\"\(py(value))\" stroke=\"\(color)\" stroke-dasharray=\"6 4\"/>"
      s += "<text x=\"\(width - right + 6)\" y=\"\(py(value) + 4)\" fill=\"\(color)\">\(label)</text>\n"
    }
    return s + "</svg>\n"
  }

  /// Mean queries needed to reach the target per rule, with 95% intervals over seeds, the budget and a
  /// dashed reference level `mark` (value, label), e.g. one third of passive's queries.
  static func queriesToTarget(_ rules: [(String, RuleSummary)], budget: Int, mark: (Double, String)? = nil) -> String {
    bars(title: "Queries needed to reach the target KL (mean, 95% CI over seeds)", xLabel: "query-selection rule",
         yLabel: "queries to target (human choices)",
         rules.map { name, r in
           Bar(label: name, value: Interval(mean: r.queriesToTarget, low: r.ci95[0], high: r.ci95[1]),
               annotation: "\(String(format: "%.0f", r.queriesToTarget)) (\(r.reached)/\(r.seeds))")
         }, yMax: Double(budget) * 1.1, yFormat: "%.0f",
         levels: [(Double(budget), "budget", "gray")] + (mark.map { [($0.0, $0.1, "#555555")] } ?? []))
  }
}
