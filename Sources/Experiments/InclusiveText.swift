import Alignment
import Foundation
import LM
import NN
import Torch
import Worlds

/// The practical-scale inclusive world (`shatter experiment inclusive --model M`): `TextPopulation`'s four
/// questions with eight written answers each, and a real chat model as policy, reward and the features of
/// the epistemic head, fine-tuned through a fresh LoRA adapter per run.
///
/// **(choice)** The policy over a question's eight answers is
/// `π(y|x) ∝ exp(β · (1/|y|) Σ_t log π_LM(y_t | x, y_<t))`: the model's own likelihood, length-normalised
/// (SimPO's implicit reward), because answers here differ in length by design and the raw sequence
/// log-probability would give every paragraph a probability of e^-100 next to a sentence. β is
/// `textScale`, 2 by default (SimPO's range is 2–2.5; at β = 2 SmolLM2-135M-Instruct starts at KL(p*‖π) 0.55,
/// at β = 1 at 0.21, the uniform policy is at 0.10). The choice model is one Luce rule on these scores;
/// KL(p*‖π) is exact over the eight answers.
final class TextWorld: FeedbackWorld {
  let text = TextPopulation()
  var population: any ChoicePopulation { text }
  let chat: ChatModel
  let config: InclusiveConfig
  /// Every (question, answer) as a chat, in two batches of similar length (right-padded): the batch, 1/|y| where
  /// a predicted token belongs to the answer [B, T−1], each chat's last position [B], and its row in the
  /// question-major order.
  let buckets: [(batch: PaddedBatch, answerWeights: Tensor, lastPositions: Tensor, rows: [Int])]
  /// The permutation back from the buckets' concatenated order to question-major [P·R].
  let order: Tensor

  init(chat: ChatModel, config: InclusiveConfig) throws {
    guard config.choiceModel == .luce else { throw ExperimentError("the text world fits one Luce rule (choice_model luce)") }
    self.chat = chat
    self.config = config
    let text = self.text
    guard config.candidates <= text.responseCount else {
      throw ExperimentError("candidates (\(config.candidates)) must be at most the \(text.responseCount) answers per question")
    }
    var sequences: [TokenSequence] = []
    for (x, question) in text.questions.enumerated() {
      for answer in text.answers[x] {
        guard let s = SFTData.chatSequence([ChatMessage(role: "user", content: question), ChatMessage(role: "assistant", content: answer.text)],
                                           tokenizer: chat.tokenizer, template: chat.template)
        else { throw ExperimentError("the model's chat template does not extend a question with its answer") }
        sequences.append(s)
      }
    }
    // Short answers and paragraphs in separate batches: padding every chat to the longest would nearly double the tokens.
    let byLength = sequences.indices.sorted { sequences[$0].tokens.count < sequences[$1].tokens.count }
    let half = byLength.count / 2
    let padId = chat.tokenizer.padTokenId ?? 0
    buckets = [Array(byLength[..<half]), Array(byLength[half...])].map { rows in
      let batch = PaddedBatch(rows.map { sequences[$0].tokens }, padId: padId)
      let width = batch.tokens.size(1)
      let weights = Tensor(rows.flatMap { row -> [Float] in
        let s = sequences[row]
        let predicted = (1..<width).map { $0 < s.targets.count && s.targets[$0] }
        let n = Float(predicted.filter { $0 }.count)
        return predicted.map { $0 ? 1 / n : 0 }
      }, shape: [rows.count, width - 1])
      return (batch, weights, Tensor(rows.map { Int64(sequences[$0].tokens.count - 1) }), rows)
    }
    var inverse = [Int64](repeating: 0, count: sequences.count)
    for (position, row) in buckets.flatMap(\.rows).enumerated() { inverse[row] = Int64(position) }
    order = Tensor(inverse)
  }

  var types: Int { 1 }
  var featureSize: Int { chat.model.config.hiddenSize }
  var concurrentRuns: Bool { false }
  var priorKL: Double? { nil }
  var designBound: QueryDesignBound? { nil }

  func pretrain(seed: UInt64) -> [String: Tensor]? { nil }

  /// A fresh adapter on PEFT's default projections of the last `loraLayers` blocks **(choice)**: nothing below them
  /// trains, so the backward pass stops there (a third of the step's time on two cores with 6 of SmolLM2's 30).
  func runModel(seed: UInt64, pretrained: [String: Tensor]) throws -> RunModel {
    let model = chat.model
    let family = model.config.family, layers = model.config.layers
    var targets = LoRAConfig.defaultTargets(family)
    if config.loraLayers > 0 && config.loraLayers < layers {
      targets = Adapter.hosts(of: model).map(\.name).filter { name in
        let parts = name.split(separator: ".")
        guard let leaf = parts.last, targets.contains(String(leaf)), let index = parts.lazy.compactMap({ Int($0) }).first else { return false }
        return index >= layers - config.loraLayers
      }
    }
    try Adapter.attach(LoRAConfig(rank: config.loraRank, alpha: config.loraAlpha, targets: targets, family: family), to: model, seed: seed)
    return RunModel(model: model, trainable: model.trainableParameters(), end: { Adapter.detach(model) })
  }

  /// One pass: β × the mean log-probability of each answer's tokens [P·R], and the last hidden state [P·R, D].
  func pass(_ model: any CausalLM) -> (scores: Tensor, hidden: Tensor) {
    var scores: [Tensor] = [], hidden: [Tensor] = []
    for b in buckets {
      let scored = model.score(b.batch)
      scores.append((scored.tokenLogProbs * b.answerWeights).sum(dim: 1) * config.textScale)
      let n = b.lastPositions.size(0), d = scored.hidden.size(2)
      hidden.append(scored.hidden.gather(dim: 1, index: b.lastPositions.reshaped([-1, 1, 1]).expanded(to: [n, 1, d]))
        .squeezed(dim: 1).to(.float32))
    }
    return (Tensor.cat(scores, dim: 0).indexSelect(dim: 0, index: order), Tensor.cat(hidden, dim: 0).indexSelect(dim: 0, index: order))
  }

  func snapshot(_ model: any CausalLM) -> Snapshot {
    let (scores, hidden) = pass(model)
    let marginal = scores.reshaped([text.prompts, text.responseCount]).logSoftmax(dim: 1)
    return Snapshot(perType: marginal.unsqueezed(dim: 1), typeLog: Tensor.zeros([text.prompts, 1], dtype: marginal.dtype),
                    marginal: marginal, features: hidden)
  }

  func tables(_ model: any CausalLM) -> (perType: Tensor, typeLog: Tensor, marginal: Tensor) {
    let s = snapshot(model)
    return (s.perType, s.typeLog, s.marginal)
  }

  func features(_ model: any CausalLM) -> Tensor { pass(model).hidden }

  var summary: String {
    """
      A population of \(text.types) types (\(zip(text.typeNames, text.weights).map { "\($0) \(String(format: "%.2f", $1))" }.joined(separator: ", "))) \
      answers \(config.population.candidates)-way questions about \(text.prompts) everyday questions, each with \(text.responseCount) \
      written answers that differ in length, tone and topic (`Sources/Worlds/TextPopulation.swift`). The chat model \
      \(config.model ?? "") with a fresh LoRA adapter per run (rank \(config.loraRank), \(config.loraLayers > 0 ? "the last \(config.loraLayers) blocks" : "every block")), its length-normalised likelihood \
      (β = \(config.textScale)) as policy and reward
      """
  }
}
