import Foundation
import Torch

/// How to pick continuations. Temperature 0 is greedy decoding.
public struct SamplingOptions: Sendable {
  public var maxNewTokens: Int
  public var temperature: Double
  public var topK: Int?
  public var topP: Double?
  public var stopTokens: Set<Int>
  public var useCache: Bool

  public init(maxNewTokens: Int = 32, temperature: Double = 0, topK: Int? = nil, topP: Double? = nil,
              stopTokens: Set<Int> = [], useCache: Bool = true) {
    self.maxNewTokens = maxNewTokens
    self.temperature = temperature
    self.topK = topK
    self.topP = topP
    self.stopTokens = stopTokens
    self.useCache = useCache
  }
}

extension CausalLM {
  /// Continues each prompt (batched, left-padded) and returns the new tokens of each, a stop token
  /// included when one ended the row. Random choices come from `generator`.
  public func generate(_ prompts: [[Int]], options: SamplingOptions, padId: Int = 0,
                       generator: Generator? = nil) -> [[Int]] {
    precondition(prompts.allSatisfy { !$0.isEmpty }, "generate: every prompt needs at least one token")
    return withoutGradients {
      let rows = prompts.count
      let batch = PaddedBatch(prompts, padId: padId, side: .left)
      var mask = batch.mask
      var positions = batch.positions
      var out = [[Int]](repeating: [], count: rows)
      var done = [Bool](repeating: false, count: rows)
      let cache = options.useCache ? KVCache(layers: config.layers) : nil
      var all = batch.tokens
      var input = batch.tokens
      for step in 0..<options.maxNewTokens {
        let t = input.size(1), past = cache?.length ?? 0
        let bias = batch.hasPadding ? Attention.bias(keyMask: mask, queries: t, past: past, dtype: dtype) : nil
        let logits = forward(input, positions: positions, attentionBias: bias, cache: cache).logits
        let last = logits.select(dim: 1, index: t - 1).to(.float32)
        let next = pick(last, options: options, generator: generator).toArray(Int64.self)
        for r in 0..<rows where !done[r] {
          out[r].append(Int(next[r]))
          if options.stopTokens.contains(Int(next[r])) { done[r] = true }
        }
        if done.allSatisfy({ $0 }) || step == options.maxNewTokens - 1 { break }
        let nextTensor = Tensor(next, shape: [rows, 1])
        let lastPos = positions.narrow(dim: 1, start: positions.size(1) - 1, length: 1) + 1
        mask = Tensor.cat([mask, Tensor.ones([rows, 1], dtype: .int64)], dim: 1)
        if cache != nil {
          input = nextTensor
          positions = lastPos
        } else {
          all = Tensor.cat([all, nextTensor], dim: 1)
          input = all
          positions = Tensor.cat([positions, lastPos], dim: 1)
        }
      }
      return out
    }
  }

  func pick(_ logits: Tensor, options: SamplingOptions, generator: Generator?) -> Tensor {
    if options.temperature <= 0 { return logits.argmax(dim: -1) }
    var l = logits / options.temperature
    if let k = options.topK, k > 0, k < l.size(-1) {
      let kth = l.topK(k, dim: -1).values.narrow(dim: -1, start: k - 1, length: 1)
      l = l.maskedFill(l.lt(kth), -Double.infinity)
    }
    if let p = options.topP, p < 1 {
      let (sorted, order) = l.sorted(dim: -1, descending: true)
      let probs = sorted.softmax(dim: -1)
      // Drop a token when the tokens ranked above it already cover p (the top one always stays).
      let drop = (probs.cumsum(dim: -1) - probs).gt(p)
      let dropInOriginalOrder = Tensor.zeros(drop.shape, dtype: .int64).scatterAdd(dim: -1, index: order, source: drop.to(.int64))
      l = l.maskedFill(dropInOriginalOrder.ne(0), -Double.infinity)
    }
    return l.softmax(dim: -1).multinomial(1, generator: generator).squeezed(dim: -1)
  }
}
