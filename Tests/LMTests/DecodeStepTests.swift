// A decoding step through the fused kernel (rotary, cache write and grouped attention in one call, the KV cache
// growing in place) against the op-by-op path on the same cache, for every family of the fixtures.
import Testing
import Torch
@testable import LM

@Test(arguments: families)
func fusedDecodeStepsMatchTheOpByOpPath(_ name: String) throws {
  let model = try Checkpoint.loadModel(from: fixtureDirectory(name))
  for prompts in [[[5, 6, 7, 8, 9], [10, 11]], [[5, 6, 7]]] {  // left padding (a bias) and none
    let batch = PaddedBatch(prompts, padId: 2, side: .left)
    var seen: [[Float]] = []
    for fused in [true, false] {
      let cache = KVCache(layers: model.config.layers)  // no reserve: the buffers grow by doubling mid-run
      cache.fusedDecoding = fused
      var (input, mask, positions) = (batch.tokens, batch.mask, batch.positions)
      var logits: [Float] = []
      withoutGradients {
        for step in 0..<12 {
          let t = input.size(1)
          let bias = batch.hasPadding ? Attention.bias(keyMask: mask, queries: t, past: cache.length, dtype: model.dtype) : nil
          let out = model.forward(input, positions: positions, attentionBias: bias, cache: cache).logits
          logits += out.select(dim: 1, index: t - 1).to(.float32).toArray(Float.self)
          input = Tensor((0..<prompts.count).map { Int64(3 + (step * 7 + $0) % 20) }, shape: [prompts.count, 1])
          positions = positions.narrow(dim: 1, start: positions.size(1) - 1, length: 1) + 1
          mask = Tensor.cat([mask, Tensor.ones([prompts.count, 1], dtype: .int64)], dim: 1)
        }
      }
      #expect(cache.length == batch.tokens.size(1) + 11)
      seen.append(logits)
    }
    let worst = zip(seen[0], seen[1]).map { Swift.abs(Double($0) - Double($1)) }.max() ?? 0
    #expect(worst < 1e-5, "\(name), \(prompts.count) row(s): fused and op-by-op logits differ by \(worst)")
  }
}
