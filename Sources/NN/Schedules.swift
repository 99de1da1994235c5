import Foundation

/// Learning-rate multipliers as a function of the optimizer step (0-based: the factor used for the
/// update numbered `step`). The shapes are those of Hugging Face's `get_*_schedule_with_warmup`.
public enum LRSchedule: Sendable, Equatable {
  /// Always 1.
  case constant
  /// Linear from 0 to 1 over `warmup` steps, then 1.
  case warmupConstant(warmup: Int)
  /// Linear warm-up, then linear decay to 0 at `total`.
  case warmupLinear(warmup: Int, total: Int)
  /// Linear warm-up, then half a cosine from 1 down to `minRatio` at `total`.
  case warmupCosine(warmup: Int, total: Int, minRatio: Double = 0)

  public func factor(at step: Int) -> Double {
    switch self {
    case .constant:
      return 1
    case .warmupConstant(let w):
      return step < w ? Double(step) / Double(Swift.max(1, w)) : 1
    case .warmupLinear(let w, let total):
      if step < w { return Double(step) / Double(Swift.max(1, w)) }
      return Swift.max(0, Double(total - step) / Double(Swift.max(1, total - w)))
    case .warmupCosine(let w, let total, let minRatio):
      if step < w { return Double(step) / Double(Swift.max(1, w)) }
      let progress = Swift.min(1, Double(step - w) / Double(Swift.max(1, total - w)))
      return minRatio + (1 - minRatio) * 0.5 * (1 + cos(Double.pi * progress))
    }
  }

  /// The learning rate for `step` given the peak rate.
  public func learningRate(at step: Int, peak: Double) -> Double { peak * factor(at: step) }
}
