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

/// Bradley–Terry reward-model training on preference pairs (METHODS §6/§7); with `--multi-view-data`,
/// RLP-UML: L = L_BT + λ·L_M, the multi-view term of `MultiViewHead` on two responses to each of
/// `--multi-view-batch` prompts drawn per micro-batch (from a seeded, checkpointed stream).
public final class RewardModelMethod: MethodDefinition {
  public static let commandName = "rm"
  /// Chosen and rejected.
  public static let sequencesPerExample = 2
  public static let abstract = "Train a reward model (the LM plus a scalar head) with the Bradley–Terry loss; RLP-UML with --multi-view-data."
  public static let discussion = """
    Data: {"prompt","chosen","rejected"} lines. The head (score.weight) is saved as reward_head.safetensors beside \
    the checkpoint; `train ppo --reward-model DIR` reads both. With --multi-view-data FILE ({"prompt","responses":[…]} \
    lines: two or more policy samples per prompt), each micro-batch adds λ·L_M (RLP-UML, METHODS §6): Gaussian \
    encoders on the last hidden state, −Î_JSD(z1; z2) with negatives from the other prompts, plus the views' \
    symmetric KL.
    """
  public static let options: [MethodOption] = [
    .string("multi-view-data", "RLP-UML: {\"prompt\",\"responses\":[…]} lines whose responses are views of their prompt."),
    .double("lambda-mv", 0.5, "RLP-UML: λ, the weight of the multi-view term."),
    .int("multi-view-batch", 8, "RLP-UML: prompts per micro-batch in the multi-view term (at least 2: the others are each one's negatives)."),
  ]
  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> RewardModelMethod {
    let rm = RewardModel(lm: setup.model, generator: Generator(seed: setup.seed &+ 1))
    guard let path = a.string("multi-view-data") else { return RewardModelMethod(padId: setup.padId, rewardModel: rm) }
    guard a.double("lambda-mv") >= 0 else { throw MethodOptionError("--lambda-mv must be ≥ 0") }
    guard a.int("multi-view-batch") >= 2 else { throw MethodOptionError("--multi-view-batch must be at least 2") }
    let views = try PreferenceData.loadMultiView(URL(fileURLWithPath: path), tokenizer: setup.tokenizer, maxLength: setup.maxLength)
    guard views.count >= 2 else { throw MethodOptionError("--multi-view-data \(path): needs at least two prompts (negatives come from the others)") }
    return RewardModelMethod(padId: setup.padId, rewardModel: rm, multiView: (views, a.double("lambda-mv"), a.int("multi-view-batch")),
                             seed: setup.seed)
  }

  public let padId: Int
  public let rewardModel: RewardModel
  /// RLP-UML's views (per prompt, its responses), λ, and prompts per micro-batch.
  public let views: [[TokenSequence]]
  public let lambdaMV: Double
  public let multiViewBatch: Int
  public let head: MultiViewHead?
  /// Draws each micro-batch's prompts and views, then the reparameterisation noise (checkpointed).
  let stream: Generator

  public init(padId: Int, rewardModel: RewardModel, multiView: (views: [[TokenSequence]], lambda: Double, batch: Int)? = nil,
              seed: UInt64 = 0) {
    self.padId = padId
    self.rewardModel = rewardModel
    views = multiView?.views ?? []
    lambdaMV = multiView?.lambda ?? 0
    multiViewBatch = Swift.min(multiView?.batch ?? 0, views.count)
    stream = Generator(seed: seed &+ 0x0A1E)
    head = multiView.map { _ in
      let h = MultiViewHead(features: rewardModel.lm.config.hiddenSize, generator: Generator(seed: seed &+ 0x4EAD))
      h.move(to: rewardModel.lm.device)
      return h
    }
  }
  public var name: String { Self.commandName }
  public var extraParameters: [(name: String, tensor: Tensor)] {
    [("score.weight", rewardModel.score.weight)] + (head?.namedParameters().map { ("multiview." + $0.name, $0.tensor) } ?? [])
  }
  public var generators: [(name: String, generator: Generator)] { head == nil ? [] : [("multiview", stream)] }
  public func weight(of example: PairExample) -> Double { 1 }
  public func loss(_ batch: [PairExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let n = batch.count
    var sequences = batch.map(\.chosen) + batch.map(\.rejected)
    // Two distinct views of each of `multiViewBatch` distinct prompts, scored in the same forward.
    var drawn: [[TokenSequence]] = []
    if head != nil {
      let prompts = Tensor.randperm(views.count, generator: stream).toArray(Int.self).prefix(multiViewBatch)
      drawn = prompts.map { p in Tensor.randperm(views[p].count, generator: stream).toArray(Int.self).prefix(2).map { views[p][$0] } }
      sequences += drawn.map { $0[0] } + drawn.map { $0[1] }
    }
    let scored = ScoredBatch(sequences, model: rewardModel.lm, padId: padId)
    let hidden = scored.lastHidden
    let r = rewardModel.score(hidden.narrow(dim: 0, start: 0, length: 2 * n)).squeezed(dim: -1).to(.float32)
    let bt = BradleyTerryLoss.compute(chosen: r.narrow(dim: 0, start: 0, length: n), rejected: r.narrow(dim: 0, start: n, length: n))
    var loss = bt.loss, metrics = bt.tensorMetrics
    if let head {
      let m = drawn.count
      let mv = head.loss(view1: hidden.narrow(dim: 0, start: 2 * n, length: m), view2: hidden.narrow(dim: 0, start: 2 * n + m, length: m),
                         generator: stream)
      loss = loss + mv.loss * lambdaMV
      metrics.merge(mv.tensorMetrics) { a, _ in a }
      metrics["bt_loss"] = bt.loss.detached()
    }
    return MicroBatchLoss(loss: loss, metrics: metrics, tokens: sequences.reduce(0) { $0 + $1.tokens.count })
  }

  public func save(to directory: URL, setup: MethodSetup) throws {
    try rewardModel.save(to: directory, companionsFrom: setup.companions, baseModel: setup.baseModel)
  }
}
