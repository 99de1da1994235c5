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
