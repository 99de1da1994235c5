import Foundation
import LM
import NN
import Torch

/// Teacher-forced outputs of a batch of prompt+completion sequences, aligned for the loss functions:
/// `logits[:, t]` predicts `targets[:, t]`, and `mask` marks completion tokens (and the final EOS).
public struct AlignedBatch {
  public let batch: SFTBatch
  public let scored: Scored
  public let logits: Tensor
  public let targets: Tensor
  public let mask: Tensor

  public init(_ sequences: [SFTExample], model: any CausalLM, padId: Int, inputEmbeddings: Tensor? = nil) {
    batch = SFTBatch(sequences, padId: padId)
    scored = model.score(batch.padded, inputEmbeddings: inputEmbeddings)
    let t = batch.padded.tokens.size(1)
    logits = scored.logits.narrow(dim: 1, start: 0, length: t - 1)
    targets = batch.padded.tokens.narrow(dim: 1, start: 1, length: t - 1)
    mask = batch.labelMask
  }

  /// Σ log π(y_t|s_t) over each sequence's completion tokens: the LM-as-reward score r_θ(x, y) [N].
  public var sequenceLogProbs: Tensor { (scored.tokenLogProbs * mask).sum(dim: 1) }

  /// The final hidden state at each sequence's last real token [N, D].
  public var lastHidden: Tensor {
    let last = Tensor(batch.padded.lengths.map { $0 - 1 }, shape: [batch.padded.lengths.count, 1, 1])
    let d = scored.hidden.size(-1)
    return scored.hidden.gather(dim: 1, index: last.expanded(to: [-1, 1, d])).squeezed(dim: 1)
  }
}

/// Intuitive Fine-Tuning (METHODS §4): the model's own greedy predictions are mixed into the input
/// embeddings of the response, and token losses are re-weighted by their discounted future.
public final class IFTMethod: TrainingMethod {
  public let padId: Int, lambda: Double, gamma: Double, warmup: Int, lambdaNoise: Double
  let noise: Generator
  public init(padId: Int, lambda: Double = 0.2, gamma: Double = 0.95, warmup: Int = 0, lambdaNoise: Double = 0, seed: UInt64 = 0) {
    self.padId = padId
    self.lambda = lambda
    self.gamma = gamma
    self.warmup = warmup
    self.lambdaNoise = lambdaNoise
    noise = Generator(seed: seed &+ 0x1F7)
  }
  public var name: String { "ift" }
  public func weight(of example: SFTExample) -> Double { Double(example.targetCount) }

  /// λ for a step: the linear warm-up, plus N(0, σ²) noise when asked, clamped to [0, 1].
  func lambda(at step: Int) -> Double {
    var l = IFT.lambda(at: step, base: lambda, warmup: warmup)
    if lambdaNoise > 0 { l += lambdaNoise * Tensor.randn([], dtype: .float64, generator: noise).item() }
    return Swift.min(1, Swift.max(0, l))
  }

  public func loss(_ batch: [SFTExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let b = SFTBatch(batch, padId: padId)
    let tokens = b.padded.tokens
    let predicted = withoutGradients { IFT.greedyShifted(logits: model.score(b.padded).logits, inputTokens: tokens) }
    let width = tokens.size(1)
    let responseInputs = Tensor(batch.flatMap { e in (0..<width).map { Float($0 < e.targets.count && e.targets[$0] ? 1 : 0) } },
                                shape: [batch.count, width])
    let mixed = IFT.mixEmbeddings(embeddingWeight: model.embeddingWeight, inputTokens: tokens, predictedTokens: predicted,
                                  responseMask: responseInputs, lambda: lambda(at: step))
    let a = AlignedBatch(batch, model: model, padId: padId, inputEmbeddings: mixed)
    let r = IFT.weightedLoss(tokenLosses: -TokenLoss.logProbs(logits: a.logits, targets: a.targets), mask: a.mask, gamma: gamma)
    return MicroBatchLoss(loss: r.loss, metrics: r.metrics, tokens: b.tokenCount)
  }
}

/// IQLearn as TD-regularised MLE (METHODS §5). With α > 0, that fraction of each batch's prompts get a
/// response sampled from the current policy, which enters only the value term **(choice, METHODS §5)**.
public final class IQLearnMethod: TrainingMethod {
  public let padId: Int, lambda: Double, gamma: Double, alpha: Double
  let stopTokens: Set<Int>
  let sampler: Generator
  public init(padId: Int, lambda: Double, gamma: Double, alpha: Double = 0, stopTokens: Set<Int> = [], seed: UInt64 = 0) {
    self.padId = padId
    self.lambda = lambda
    self.gamma = gamma
    self.alpha = alpha
    self.stopTokens = stopTokens
    sampler = Generator(seed: seed &+ 0x10)
  }
  public var name: String { "iqlearn" }
  public func weight(of example: SFTExample) -> Double { Double(example.targetCount) }
  public func loss(_ batch: [SFTExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let online = Int((alpha * Double(batch.count)).rounded())
    let demos = Array(batch.dropFirst(online))
    var loss: Tensor? = nil
    var metrics: [String: Double] = [:]
    var tokens = 0
    if !demos.isEmpty {
      let a = AlignedBatch(demos, model: model, padId: padId)
      let r = IQLearnLoss.compute(logits: a.logits, targets: a.targets, mask: a.mask, lambda: lambda, gamma: gamma)
      loss = r.loss
      metrics = r.metrics
      tokens += a.batch.tokenCount
    }
    if online > 0 {
      let samples = policySamples(Array(batch.prefix(online)), model: model)
      let a = AlignedBatch(samples, model: model, padId: padId)
      let v = IQLearnLoss.valueTerm(logits: a.logits, mask: a.mask, gamma: gamma, lambda: lambda)
      loss = loss.map { $0 + v.loss } ?? v.loss
      metrics["online_value_term"] = v.loss.item()
      tokens += a.batch.tokenCount
    }
    return MicroBatchLoss(loss: loss!, metrics: metrics, tokens: tokens)
  }

  /// The prompts of `examples` continued by the current policy (as long as the demonstration).
  func policySamples(_ examples: [SFTExample], model: any CausalLM) -> [SFTExample] {
    examples.map { e in
      let promptLength = e.targets.firstIndex(of: true) ?? e.tokens.count
      let prompt = Array(e.tokens.prefix(Swift.max(1, promptLength)))
      let opts = SamplingOptions(maxNewTokens: Swift.max(1, e.tokens.count - prompt.count), temperature: 1,
                                 stopTokens: stopTokens)
      let response = model.generate([prompt], options: opts, padId: padId, generator: sampler)[0]
      return SFTExample(tokens: prompt + response,
                        targets: [Bool](repeating: false, count: prompt.count) + [Bool](repeating: true, count: response.count))
    }
  }
}

/// The LM-as-reward K-way choice likelihood (METHODS §1.1), plus μ·SFT on the chosen completions.
public final class ChoiceMethod: TrainingMethod {
  public let padId: Int, mu: Double
  public init(padId: Int, mu: Double = 0) {
    self.padId = padId
    self.mu = mu
  }
  public var name: String { "choice" }
  public func weight(of example: ChoiceExample) -> Double { 1 }
  public func loss(_ batch: [ChoiceExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let k = batch.map(\.candidates.count).max()!
    let flat = batch.flatMap(\.candidates)
    let a = AlignedBatch(flat, model: model, padId: padId)
    let seqScores = a.sequenceLogProbs
    // Lay the flat scores out as [N, K], padding rows with fewer candidates.
    var index: [Int64] = [], valid: [Bool] = []
    var offset = 0
    for e in batch {
      for j in 0..<k {
        index.append(Int64(offset + Swift.min(j, e.candidates.count - 1)))
        valid.append(j < e.candidates.count)
      }
      offset += e.candidates.count
    }
    let scores = seqScores.indexSelect(dim: 0, index: Tensor(index)).reshaped([batch.count, k])
    let validMask = Tensor(valid, shape: [batch.count, k])
    let chosen = Tensor(batch.map { Int64($0.choice) })
    let r = ChoiceLoss.compute(scores: scores, chosen: chosen, validMask: validMask)
    var loss = r.loss
    var metrics = r.metrics
    if mu > 0 {
      let sft = AlignedBatch(batch.map { $0.candidates[$0.choice] }, model: model, padId: padId)
      let s = TokenLoss.crossEntropy(logits: sft.logits, targets: sft.targets, mask: sft.mask)
      loss = loss + s.loss * mu
      metrics["sft_nll"] = s.loss.item()
    }
    return MicroBatchLoss(loss: loss, metrics: metrics, tokens: a.batch.tokenCount)
  }
}

/// A reward model: the language model's last hidden state at the final token through a scalar head
/// (`score.weight`, as Hugging Face's sequence-classification heads). The head is saved beside the
/// checkpoint in `reward_head.safetensors` and loaded with it.
public final class RewardModel: Module {
  public let lm: any CausalLM
  public let score: Linear
  public static let headFile = "reward_head.safetensors"

  public init(lm: any CausalLM, generator: Generator? = nil) {
    self.lm = lm
    score = Linear(lm.config.hiddenSize, 1, bias: false, generator: generator)
    withoutGradients { score.weight.mul_(0.1) }
  }

  /// Scalar rewards [N] of prompt+completion sequences.
  public func rewards(_ sequences: [SFTExample], padId: Int) -> Tensor {
    score(AlignedBatch(sequences, model: lm, padId: padId).lastHidden).squeezed(dim: -1).to(.float32)
  }

  public func save(to directory: URL, companionsFrom source: URL? = nil) throws {
    try Checkpoint.save(lm, to: directory, companionsFrom: source)
    try Safetensors.save(["score.weight": score.weight], metadata: ["format": "pt"],
                         to: directory.appendingPathComponent(Self.headFile))
  }

  public static func load(from directory: URL) throws -> RewardModel {
    let rm = RewardModel(lm: try Checkpoint.loadModel(from: directory))
    let file = directory.appendingPathComponent(headFile)
    guard FileManager.default.fileExists(atPath: file.path) else {
      throw CheckpointError("\(directory.path): no \(headFile) (not a reward model written by `shatter train rm`)")
    }
    guard let w = try Safetensors.load(file)["score.weight"], w.shape == rm.score.weight.shape else {
      throw CheckpointError("\(file.path): expected 'score.weight' of shape \(rm.score.weight.shape)")
    }
    withoutGradients { rm.score.weight.copy_(w) }
    return rm
  }
}

/// Bradley–Terry reward-model training on preference pairs (METHODS §6/§7).
public final class RewardModelMethod: TrainingMethod {
  public let padId: Int
  public let rewardModel: RewardModel
  public init(padId: Int, rewardModel: RewardModel) {
    self.padId = padId
    self.rewardModel = rewardModel
  }
  public var name: String { "rm" }
  public var extraParameters: [(name: String, tensor: Tensor)] { [("score.weight", rewardModel.score.weight)] }
  public func weight(of example: PairExample) -> Double { 1 }
  public func loss(_ batch: [PairExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let r = rewardModel.rewards(batch.map(\.chosen) + batch.map(\.rejected), padId: padId)
    let n = batch.count
    let res = BradleyTerryLoss.compute(chosen: r.narrow(dim: 0, start: 0, length: n), rejected: r.narrow(dim: 0, start: n, length: n))
    return MicroBatchLoss(loss: res.loss, metrics: res.metrics,
                          tokens: batch.reduce(0) { $0 + $1.chosen.tokens.count + $1.rejected.tokens.count })
  }
}

/// A preference pair with the frozen reference model's sequence log-probs, computed once up front so
/// the reference model need not stay in memory during training.
public struct ReferencedPair: Sendable {
  public let pair: PairExample
  public let referenceChosen: Double
  public let referenceRejected: Double

  public static func precompute(_ pairs: [PairExample], reference: any CausalLM, padId: Int, batchSize: Int = 8) -> [ReferencedPair] {
    withoutGradients {
      var out: [ReferencedPair] = []
      for start in stride(from: 0, to: pairs.count, by: batchSize) {
        let chunk = Array(pairs[start..<Swift.min(start + batchSize, pairs.count)])
        let lp = AlignedBatch(chunk.map(\.chosen) + chunk.map(\.rejected), model: reference, padId: padId)
          .sequenceLogProbs.toArray(Double.self)
        for (i, p) in chunk.enumerated() {
          out.append(ReferencedPair(pair: p, referenceChosen: lp[i], referenceRejected: lp[chunk.count + i]))
        }
      }
      return out
    }
  }
}

/// Direct Preference Optimisation (METHODS §7).
public final class DPOMethod: TrainingMethod {
  public let padId: Int, beta: Double
  public init(padId: Int, beta: Double = 0.1) {
    self.padId = padId
    self.beta = beta
  }
  public var name: String { "dpo" }
  public func weight(of example: ReferencedPair) -> Double { 1 }
  public func loss(_ batch: [ReferencedPair], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let n = batch.count
    let a = AlignedBatch(batch.map(\.pair.chosen) + batch.map(\.pair.rejected), model: model, padId: padId)
    let lp = a.sequenceLogProbs
    let r = DPOLoss.compute(policyChosen: lp.narrow(dim: 0, start: 0, length: n),
                            policyRejected: lp.narrow(dim: 0, start: n, length: n),
                            referenceChosen: Tensor(batch.map { Float($0.referenceChosen) }),
                            referenceRejected: Tensor(batch.map { Float($0.referenceRejected) }), beta: beta)
    return MicroBatchLoss(loss: r.loss, metrics: r.metrics, tokens: a.batch.tokenCount)
  }
}

/// Odds-ratio preference optimisation (METHODS §7): SFT on the chosen plus λ times the odds-ratio term.
public final class ORPOMethod: TrainingMethod {
  public let padId: Int, lambda: Double
  public init(padId: Int, lambda: Double = 0.1) {
    self.padId = padId
    self.lambda = lambda
  }
  public var name: String { "orpo" }
  public func weight(of example: PairExample) -> Double { 1 }
  public func loss(_ batch: [PairExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let c = AlignedBatch(batch.map(\.chosen), model: model, padId: padId)
    let r = AlignedBatch(batch.map(\.rejected), model: model, padId: padId)
    let res = ORPOLoss.compute(chosenLogits: c.logits, chosenTargets: c.targets, chosenMask: c.mask,
                               rejectedLogits: r.logits, rejectedTargets: r.targets, rejectedMask: r.mask, lambda: lambda)
    return MicroBatchLoss(loss: res.loss, metrics: res.metrics, tokens: c.batch.tokenCount + r.batch.tokenCount)
  }
}
