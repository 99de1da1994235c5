import Foundation
import LM
import NN
import Torch

/// Bradley–Terry preference loss on scalar rewards: −log σ(r_w − r_l).
public enum BradleyTerryLoss {
  public static func compute(chosen: Tensor, rejected: Tensor) -> LossResult {
    let c = wide(chosen), r = wide(rejected)
    let margin = c - r
    let loss = -margin.logSigmoid().mean()
    return LossResult(loss: loss, metrics: [
      "rewards/chosen": c.mean(), "rewards/rejected": r.mean(), "rewards/margins": margin.mean(),
      "rewards/accuracies": fraction(margin.gt(0)),
    ])
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
    score.move(to: lm.device)
  }

  /// Scalar rewards [N] of prompt+completion sequences.
  public func rewards(_ sequences: [TokenSequence], padId: Int) -> Tensor {
    score(ScoredBatch(sequences, model: lm, padId: padId).lastHidden).squeezed(dim: -1).to(.float32)
  }

  public func save(to directory: URL, companionsFrom source: URL? = nil, baseModel: String? = nil) throws {
    try Checkpoint.save(lm, to: directory, companionsFrom: source, baseModel: baseModel)
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
public final class RewardModelMethod: MethodDefinition {
  public static let commandName = "rm"
  public static let abstract = "Train a reward model (the LM plus a scalar head) with the Bradley–Terry loss."
  public static let discussion = """
    Data: {"prompt","chosen","rejected"} lines. The head (score.weight) is saved as reward_head.safetensors beside \
    the checkpoint; `train ppo --reward-model DIR` reads both.
    """
  public static let options: [MethodOption] = []
  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> RewardModelMethod {
    RewardModelMethod(padId: setup.padId, rewardModel: RewardModel(lm: setup.model, generator: Generator(seed: setup.seed &+ 1)))
  }

  public let padId: Int
  public let rewardModel: RewardModel
  public init(padId: Int, rewardModel: RewardModel) {
    self.padId = padId
    self.rewardModel = rewardModel
  }
  public var name: String { Self.commandName }
  public var extraParameters: [(name: String, tensor: Tensor)] { [("score.weight", rewardModel.score.weight)] }
  public func weight(of example: PairExample) -> Double { 1 }
  public func loss(_ batch: [PairExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let r = rewardModel.rewards(batch.map(\.chosen) + batch.map(\.rejected), padId: padId)
    let n = batch.count
    let res = BradleyTerryLoss.compute(chosen: r.narrow(dim: 0, start: 0, length: n), rejected: r.narrow(dim: 0, start: n, length: n))
    return MicroBatchLoss(loss: res.loss, metrics: res.tensorMetrics,
                          tokens: batch.reduce(0) { $0 + $1.chosen.tokens.count + $1.rejected.tokens.count })
  }

  public func save(to directory: URL, setup: MethodSetup) throws {
    try rewardModel.save(to: directory, companionsFrom: setup.companions, baseModel: setup.baseModel)
  }
}
