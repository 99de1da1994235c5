import Foundation
import LM
import Torch

/// Direct Preference Optimisation (METHODS §7): −log σ(β[(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))]).
public enum DPOLoss {
  public static func compute(policyChosen: Tensor, policyRejected: Tensor, referenceChosen: Tensor,
                             referenceRejected: Tensor, beta: Double) -> LossResult {
    let pc = wide(policyChosen), pr = wide(policyRejected)
    let chosenReward = (pc - referenceChosen.to(pc.dtype)) * beta
    let rejectedReward = (pr - referenceRejected.to(pr.dtype)) * beta
    let margin = chosenReward - rejectedReward
    let loss = -margin.logSigmoid().mean()
    return LossResult(loss: loss, metrics: [
      "rewards/chosen": chosenReward.mean(), "rewards/rejected": rejectedReward.mean(), "rewards/margins": margin.mean(),
      "rewards/accuracies": fraction(margin.gt(0)), "logps/chosen": pc.mean(), "logps/rejected": pr.mean(),
    ])
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
        let lp = ScoredBatch(chunk.map(\.chosen) + chunk.map(\.rejected), model: reference, padId: padId)
          .sequenceLogProbs.toArray(Double.self)
        for (i, p) in chunk.enumerated() {
          out.append(ReferencedPair(pair: p, referenceChosen: lp[i], referenceRejected: lp[chunk.count + i]))
        }
      }
      return out
    }
  }
}

/// DPO as a trainer method: chosen and rejected through one concatenated forward pass.
public final class DPOMethod: MethodDefinition {
  public static let commandName = "dpo"
  /// Chosen and rejected in one forward.
  public static let sequencesPerExample = 2
  public static let abstract = "Direct Preference Optimisation against a frozen reference (METHODS §7)."
  public static let discussion = """
    Data: {"prompt","chosen","rejected"} lines. The reference is the starting model unless --reference names \
    another checkpoint; its log-probs are computed once before training, so it is not kept in memory.
    """
  public static let options: [MethodOption] = [
    .double("beta", 0.1, "β: strength of the implicit KL constraint."),
    .string("reference", "Reference checkpoint directory (default: the starting model)."),
  ]
  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> DPOMethod {
    guard a.double("beta") > 0 else { throw MethodOptionError("--beta must be positive") }
    let reference = try a.string("reference").map { try Checkpoint.loadModel(from: URL(fileURLWithPath: $0)) }
    return DPOMethod(padId: setup.padId, beta: a.double("beta"), reference: reference)
  }

  public let padId: Int, beta: Double
  /// The frozen reference (nil: the starting model, scored before the first step).
  let reference: (any CausalLM)?
  public init(padId: Int, beta: Double = 0.1, reference: (any CausalLM)? = nil) {
    self.padId = padId
    self.beta = beta
    self.reference = reference
  }
  public var name: String { Self.commandName }
  public func weight(of example: ReferencedPair) -> Double { 1 }
  public func loss(_ batch: [ReferencedPair], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let n = batch.count
    let a = ScoredBatch(batch.map(\.pair.chosen) + batch.map(\.pair.rejected), model: model, padId: padId)
    let lp = a.sequenceLogProbs
    let r = DPOLoss.compute(policyChosen: lp.narrow(dim: 0, start: 0, length: n),
                            policyRejected: lp.narrow(dim: 0, start: n, length: n),
                            referenceChosen: Tensor(batch.map { Float($0.referenceChosen) }).to(lp.device),
                            referenceRejected: Tensor(batch.map { Float($0.referenceRejected) }).to(lp.device), beta: beta)
    return MicroBatchLoss(loss: r.loss, metrics: r.tensorMetrics, tokens: a.batch.tokenCount)
  }

  public func trainer(data: URL, evalData: URL?, setup: MethodSetup, options: TrainerOptions, out: URL?) throws -> Trainer<DPOMethod> {
    let ref = reference ?? setup.model
    func load(_ url: URL) throws -> [ReferencedPair] {
      ReferencedPair.precompute(try PairExample.load(url, setup), reference: ref, padId: padId)
    }
    return Trainer(model: setup.model, method: self, examples: try load(data), evalExamples: try evalData.map(load) ?? [],
                   options: options, outputDirectory: out)
  }
}
