import Foundation
import Testing
import Torch
@testable import Alignment
@testable import LM

// MARK: - finite differences

/// Checks autograd's gradient of `f(inputs)` (a scalar) with respect to every input against central
/// differences in float64.
func expectGradientsMatch(_ inputs: [Tensor], sourceLocation: SourceLocation = #_sourceLocation, _ f: ([Tensor]) -> Tensor) {
  let values = inputs.map { $0.toArray(Double.self) }
  let shapes = inputs.map(\.shape)
  let leaves = zip(values, shapes).map { Tensor($0, shape: $1).requiringGrad() }
  f(leaves).backward()
  let eps = 1e-6
  for i in values.indices {
    let analytic = leaves[i].grad?.toArray(Double.self) ?? []
    #expect(analytic.count == values[i].count, "no gradient for input \(i)", sourceLocation: sourceLocation)
    var largest = 0.0
    for j in values[i].indices where j < analytic.count {
      var v = values
      v[i][j] += eps
      let plus = withoutGradients { f(zip(v, shapes).map { Tensor($0, shape: $1) }).item() }
      v[i][j] -= 2 * eps
      let minus = withoutGradients { f(zip(v, shapes).map { Tensor($0, shape: $1) }).item() }
      let numeric = (plus - minus) / (2 * eps)
      largest = Swift.max(largest, Swift.abs(numeric))
      #expect(Swift.abs(analytic[j] - numeric) <= 1e-6 + 1e-5 * Swift.abs(numeric),
              "input \(i)[\(j)]: analytic \(analytic[j]) numeric \(numeric)", sourceLocation: sourceLocation)
    }
    #expect(largest > 1e-4, "input \(i) does not influence the loss", sourceLocation: sourceLocation)
  }
}

let gen = Generator(seed: 42)
func randomLogits(_ b: Int = 2, _ t: Int = 3, _ v: Int = 4) -> Tensor { Tensor.randn([b, t, v], dtype: .float64, generator: gen) }
let targets = Tensor([1, 3, 0, 2, 2, 1] as [Int64], shape: [2, 3])
let mask = Tensor([0, 1, 1, 1, 1, 0] as [Double], shape: [2, 3])

func logSoftmaxRow(_ row: [Double]) -> [Double] {
  let m = row.max()!
  let lse = m + Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +))
  return row.map { $0 - lse }
}

// MARK: - gradients with respect to the logits / inputs

@Test func tokenLossesHaveFiniteDifferenceGradients() {
  expectGradientsMatch([randomLogits()]) { TokenLoss.crossEntropy(TokenScores(logits: $0[0], targets: targets), mask: mask).loss }
  expectGradientsMatch([randomLogits()]) {
    IQLearnLoss.compute(TokenScores(logits: $0[0], targets: targets), mask: mask, lambda: 0.7, gamma: 0.9).loss
  }
  expectGradientsMatch([randomLogits()]) { IQLearnLoss.valueTerm(TokenScores(logits: $0[0], targets: targets), mask: mask, gamma: 0.9, lambda: 0.5).loss }
  let tokenLosses = Tensor([0.5, 1.2, 0.3, 2.0, 0.7, 0.9] as [Double], shape: [2, 3])
  expectGradientsMatch([tokenLosses]) { IFT.weightedLoss(tokenLosses: $0[0], mask: mask, gamma: 0.8).loss }
  expectGradientsMatch([randomLogits(), randomLogits()]) {
    ORPOLoss.compute(chosen: TokenScores(logits: $0[0], targets: targets), chosenMask: mask,
                     rejected: TokenScores(logits: $0[1], targets: targets), rejectedMask: mask, lambda: 0.5).loss
  }
}

@Test func sequenceLossesHaveFiniteDifferenceGradients() {
  let scores = Tensor([-1.0, -2.5, -0.3, -4.0, -1.1, -0.9] as [Double], shape: [2, 3])
  expectGradientsMatch([scores]) { ChoiceLoss.compute(scores: $0[0], chosen: Tensor([2, 0] as [Int64])).loss }
  let c = Tensor([0.3, -1.0, 2.0] as [Double]), r = Tensor([0.1, 0.5, -1.0] as [Double])
  expectGradientsMatch([c, r]) { BradleyTerryLoss.compute(chosen: $0[0], rejected: $0[1]).loss }
  expectGradientsMatch([c, r]) {
    DPOLoss.compute(policyChosen: $0[0], policyRejected: $0[1], referenceChosen: Tensor([0.0, -0.5, 1.0] as [Double]),
                    referenceRejected: Tensor([0.2, 0.1, 0.0] as [Double]), beta: 0.7).loss
  }
  let lp = Tensor([-1.0, -0.5, -2.0, -0.7, -1.5, -0.2] as [Double], shape: [2, 3])
  let old = Tensor([-1.1, -0.2, -2.0, -0.9, -1.4, -0.3] as [Double], shape: [2, 3])
  let adv = Tensor([0.5, -1.0, 2.0, 1.0, -0.3, 0.4] as [Double], shape: [2, 3])
  expectGradientsMatch([lp]) { PPO.policyLoss(logProbs: $0[0], oldLogProbs: old, advantages: adv, mask: mask, clip: 0.2).loss }
  let values = Tensor([0.1, 0.4, -0.2, 0.9, 0.3, 0.0] as [Double], shape: [2, 3])
  expectGradientsMatch([values]) {
    PPO.valueLoss(values: $0[0], oldValues: values.clone() * 0.5, returns: adv, mask: mask, clip: 0.2).loss
  }
}

// MARK: - values computed by hand

@Test func iqlearnMatchesAHandComputation() {
  let logits = randomLogits()
  let (lambda, gamma) = (0.3, 0.9)
  let got = IQLearnLoss.compute(TokenScores(logits: logits, targets: targets), mask: mask, lambda: lambda, gamma: gamma).loss.item()
  let l = logits.toArray(Double.self), tg = targets.toArray(Int.self), m = mask.toArray(Double.self)
  func row(_ b: Int, _ t: Int) -> [Double] { Array(l[(b * 12 + t * 4)..<(b * 12 + t * 4 + 4)]) }
  func lse(_ r: [Double]) -> Double { let mx = r.max()!; return mx + Foundation.log(r.map { Foundation.exp($0 - mx) }.reduce(0, +)) }
  var total = 0.0, count = 0.0
  for b in 0..<2 {
    for t in 0..<3 where m[b * 3 + t] == 1 {
      let q = row(b, t)[tg[b * 3 + t]]
      let vNext = (t + 1 < 3 && m[b * 3 + t + 1] == 1) ? lse(row(b, t + 1)) : 0
      total += -(q - lse(row(b, t))) + lambda * Foundation.pow(q - gamma * vNext, 2)
      count += 1
    }
  }
  #expect(Swift.abs(got - total / count) < 1e-10)
}

@Test func iftWeightingMatchesAHandComputation() {
  // One sequence, three response tokens: c_t = Σ_{k≥t} γ^{k−t} ℓ_k over the mass of unit losses.
  let l = Tensor([1.0, 2.0, 4.0] as [Double], shape: [1, 3]), m = Tensor([1.0, 1.0, 1.0] as [Double], shape: [1, 3])
  let g = 0.5
  let c = [1 + g * 2 + g * g * 4, 2 + g * 4, 4.0]
  let mass = [1 + g + g * g, 1 + g, 1.0]
  let got = IFT.weightedLoss(tokenLosses: l, mask: m, gamma: g).loss.item()
  #expect(Swift.abs(got - c.reduce(0, +) / mass.reduce(0, +)) < 1e-12)
}

@Test func preferenceLossesMatchHandComputations() {
  func logSigmoid(_ x: Double) -> Double { -Foundation.log1p(Foundation.exp(-x)) }
  let bt = BradleyTerryLoss.compute(chosen: Tensor([1.0, 0.0] as [Double]), rejected: Tensor([0.0, 2.0] as [Double]))
  #expect(Swift.abs(bt.loss.item() - -(logSigmoid(1) + logSigmoid(-2)) / 2) < 1e-12)
  #expect(bt.metrics["rewards/accuracies"] == 0.5)

  let beta = 0.5
  let dpo = DPOLoss.compute(policyChosen: Tensor([-1.0] as [Double]), policyRejected: Tensor([-3.0] as [Double]),
                            referenceChosen: Tensor([-2.0] as [Double]), referenceRejected: Tensor([-2.5] as [Double]), beta: beta)
  #expect(Swift.abs(dpo.loss.item() - -logSigmoid(beta * ((-1 + 2) - (-3 + 2.5)))) < 1e-12)
  #expect(Swift.abs(dpo.metrics["rewards/margins"]! - beta * 1.5) < 1e-12)

  let scores = [[-1.0, -2.0, -0.5]]
  let choice = ChoiceLoss.compute(scores: Tensor(scores.flatMap { $0 }, shape: [1, 3]), chosen: Tensor([1] as [Int64]))
  #expect(Swift.abs(choice.loss.item() - -logSoftmaxRow(scores[0])[1]) < 1e-12)
  #expect(choice.metrics["accuracy"] == 0)
}

@Test func orpoMatchesAHandComputation() {
  // Two tokens each; logits chosen so the per-token log-probs are known.
  let lc = randomLogits(1, 2, 3), lr = randomLogits(1, 2, 3)
  let t = Tensor([0, 2] as [Int64], shape: [1, 2]), m = Tensor([1.0, 1.0] as [Double], shape: [1, 2])
  let lambda = 0.4
  let got = ORPOLoss.compute(chosen: TokenScores(logits: lc, targets: t), chosenMask: m,
                             rejected: TokenScores(logits: lr, targets: t), rejectedMask: m, lambda: lambda).loss.item()
  func meanLogP(_ logits: Tensor) -> Double {
    let v = logits.toArray(Double.self)
    return (logSoftmaxRow(Array(v[0..<3]))[0] + logSoftmaxRow(Array(v[3..<6]))[2]) / 2
  }
  func logOdds(_ lp: Double) -> Double { lp - Foundation.log(1 - Foundation.exp(lp)) }
  let nll = -meanLogP(lc)
  let ratio = logOdds(meanLogP(lc)) - logOdds(meanLogP(lr))
  #expect(Swift.abs(got - (nll + lambda * Foundation.log1p(Foundation.exp(-ratio)))) < 1e-9)
}

@Test func gaeAndWhiteningMatchTheirDefinitions() {
  let r = Tensor([0.0, 1.0, 2.0, 0.0] as [Double], shape: [1, 4])
  let v = Tensor([0.5, 0.2, 0.1, 9.0] as [Double], shape: [1, 4])
  let m = Tensor([1.0, 1.0, 1.0, 0.0] as [Double], shape: [1, 4])
  // γ = λ = 1: returns are rewards-to-go over the response, advantages returns − values.
  let (adv, ret) = PPO.gae(rewards: r, values: v, mask: m, gamma: 1, lambda: 1)
  #expect(ret.toArray(Double.self) == [3, 3, 2, 0])
  #expect(adv.allClose(Tensor([2.5, 2.8, 1.9, 0] as [Double], shape: [1, 4]), rtol: 0, atol: 1e-12))
  // γ = 0.5, λ = 0: one-step TD errors.
  let (a2, _) = PPO.gae(rewards: r, values: v, mask: m, gamma: 0.5, lambda: 0)
  #expect(a2.allClose(Tensor([0 + 0.5 * 0.2 - 0.5, 1 + 0.5 * 0.1 - 0.2, 2 - 0.1, 0] as [Double], shape: [1, 4]), rtol: 0, atol: 1e-12))
  let w = PPO.whiten(Tensor([1.0, 2.0, 3.0, 100.0] as [Double], shape: [1, 4]), mask: m).toArray(Double.self)
  #expect(Swift.abs(w[0] + w[1] + w[2]) < 1e-9 && w[3] == 0)
  #expect(Swift.abs((w[0] * w[0] + w[1] * w[1] + w[2] * w[2]) / 3 - 1) < 1e-6)
  // KL-penalised rewards put the score on the last response token.
  let (rw, kl) = PPO.klPenalizedRewards(score: Tensor([5.0] as [Double]), policyLogProbs: Tensor([-1.0, -1.0, -1.0, 0] as [Double], shape: [1, 4]),
                                        referenceLogProbs: Tensor([-1.5, -1.0, -0.5, 0] as [Double], shape: [1, 4]), mask: m, klCoef: 0.1)
  #expect(rw.allClose(Tensor([-0.05, 0, 5.05, 0] as [Double], shape: [1, 4]), rtol: 0, atol: 1e-12))
  #expect(Swift.abs(kl.item()) < 1e-12)
}

// MARK: - reductions

@Test func reductionsHoldExactly() {
  let logits = randomLogits()
  let sft = TokenLoss.crossEntropy(TokenScores(logits: logits, targets: targets), mask: mask).loss.item()
  #expect(Swift.abs(IQLearnLoss.compute(TokenScores(logits: logits, targets: targets), mask: mask, lambda: 0, gamma: 0.9).loss.item() - sft) < 1e-12)
  let tokenLosses = -TokenScores(logits: logits, targets: targets).logProbs
  #expect(Swift.abs(IFT.weightedLoss(tokenLosses: tokenLosses, mask: mask, gamma: 0).loss.item() - sft) < 1e-12)
  let w = Tensor.randn([5, 3], dtype: .float64, generator: gen)
  let tokens = Tensor([1, 2, 3, 4, 0, 1] as [Int64], shape: [2, 3])
  let mixed = IFT.mixEmbeddings(embeddingWeight: w, inputTokens: tokens, predictedTokens: (tokens + 1).remainder(5), responseMask: mask, lambda: 0)
  #expect(mixed.allClose(Tensor.embedding(tokens, weight: w), rtol: 0, atol: 0))
  // DPO with the policy equal to the reference is log 2.
  let lp = Tensor([-3.0, -1.0] as [Double])
  #expect(Swift.abs(DPOLoss.compute(policyChosen: lp, policyRejected: lp * 2, referenceChosen: lp, referenceRejected: lp * 2,
                                    beta: 0.1).loss.item() - Foundation.log(2)) < 1e-12)
  // Choice with K = 2 is Bradley–Terry on the log-likelihoods.
  let s = Tensor([-1.0, -2.0, -4.0, -0.5] as [Double], shape: [2, 2])
  let choice = ChoiceLoss.compute(scores: s, chosen: Tensor([0, 0] as [Int64])).loss.item()
  let bt = BradleyTerryLoss.compute(chosen: s.select(dim: 1, index: 0), rejected: s.select(dim: 1, index: 1)).loss.item()
  #expect(Swift.abs(choice - bt) < 1e-12)
  // PPO's surrogate at ratio 1 is −mean advantage with nothing clipped.
  let adv = Tensor([1.0, -2.0, 0.5, 3.0, 1.0, 7.0] as [Double], shape: [2, 3])
  let pl = PPO.policyLoss(logProbs: tokenLosses, oldLogProbs: tokenLosses, advantages: adv, mask: mask, clip: 0.2)
  #expect(Swift.abs(pl.loss.item() - -(-2.0 + 0.5 + 3.0 + 1.0) / 4) < 1e-12)
  #expect(pl.metrics["clip_ratio"] == 0)
}

/// The entropy bonus: −Σ π log π per position by hand, averaged over the masked positions; its gradient
/// by finite differences.
@Test func tokenEntropyIsTheMaskedMeanOfEachPositionsEntropy() {
  let logits = randomLogits()
  let rows = logits.toArray(Double.self)
  let m = mask.toArray(Double.self)
  var total = 0.0
  for p in 0..<6 where m[p] == 1 {
    let lp = logSoftmaxRow(Array(rows[(p * 4)..<(p * 4 + 4)]))
    total -= lp.map { Foundation.exp($0) * $0 }.reduce(0, +)
  }
  #expect(Swift.abs(TokenLoss.entropy(logits: logits, mask: mask).item() - total / 4) < 1e-12)
  expectGradientsMatch([randomLogits()]) { TokenLoss.entropy(logits: $0[0], mask: mask) }
}

/// SFT with an entropy bonus β is CE − β·H̄ on the same batch; β = 0 is plain SFT.
@Test func sftEntropyBonusSubtractsBetaTimesTheMeanEntropy() {
  let config = ModelConfig(family: .gpt2, vocabSize: 12, hiddenSize: 16, layers: 1, heads: 2, maxPositions: 16)
  let model = Checkpoint.makeModel(config, generator: Generator(seed: 4))
  let batch = (0..<3).map { i in TokenSequence(tokens: [1, 2 + i, 3 + i, 4, 5], targets: [false, false, true, true, true]) }
  let plain = SFTMethod(padId: 0).loss(batch, model: model, step: 0)
  let bonus = SFTMethod(padId: 0, entropyBonus: 0.3).loss(batch, model: model, step: 0)
  let a = ScoredBatch(batch, model: model, padId: 0)
  let h = a.meanEntropy.item()
  #expect(Swift.abs(bonus.loss.item() - (plain.loss.item() - 0.3 * h)) < 1e-5)
  #expect(Swift.abs((bonus.metrics["entropy"]?.item() ?? 0) - h) < 1e-5)
}

/// ift at λ = 0, γ = 0 and iqlearn at λ = 0 train exactly like sft: same losses, same weights (1e-6).
@Test func iftAndIQLearnReduceToSFTInTraining() throws {
  let config = ModelConfig(family: .llama, vocabSize: 12, hiddenSize: 16, layers: 1, heads: 2, maxPositions: 16)
  let examples = (0..<6).map { i in TokenSequence(tokens: [1, 2 + i % 4, 3 + i % 5, 4, 5], targets: [false, false, true, true, true]) }
  func run<M: TrainingMethod>(_ method: M) throws -> ([Double], [(name: String, tensor: Tensor)]) where M.Example == TokenSequence {
    let model = Checkpoint.makeModel(config, generator: Generator(seed: 3))
    var o = TrainerOptions()
    o.batchSize = 3
    o.steps = 4
    o.learningRate = 1e-2
    o.seed = 5
    let s = try Trainer(model: model, method: method, examples: examples, options: o).train()
    return (s.lossHistory, model.namedParameters())
  }
  let (sft, ws) = try run(SFTMethod(padId: 0))
  for (losses, weights) in [try run(IFTMethod(padId: 0, lambda: 0, gamma: 0)), try run(IQLearnMethod(padId: 0, lambda: 0, gamma: 0.9))] {
    for (a, b) in zip(losses, sft) { #expect(Swift.abs(a - b) < 1e-6) }
    for ((n, a), (_, b)) in zip(weights, ws) { #expect(a.allClose(b, rtol: 0, atol: 1e-6), "\(n)") }
  }
}

// MARK: - data errors

@Test func preferenceDataErrorsNameFileLineAndProblem() throws {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-prefs-\(UUID())")
  try ByteVocabulary.write(to: dir)
  defer { try? FileManager.default.removeItem(at: dir) }
  let tok = try BPETokenizer(directory: dir)
  let cases: [(String, String)] = [
    (#"{"prompt": "a", "candidates": ["x", "y"], "choice": 2}"#, ":1: choice 2 is out of range for 2 candidates"),
    (#"{"prompt": "a", "candidates": ["x", "y"], "choice": true}"#, ":1: 'choice' should be an integer index"),
    (#"{"prompt": "a", "candidates": ["x"], "choice": 0}"#, ":1: 'candidates' should be a list of at least two strings"),
    (#"{"prompt": "a", "candidates": ["x", ""], "choice": 0}"#, ":1: candidates[1] is empty"),
    (#"{"prompt": "a", "candidates": ["x", "y"]}"#, ":1: missing key 'choice'"),
    ("{\"prompt\": \"a\", \"chosen\": \"x\", \"rejected\": \"y\"}\n{bad", ":2: not valid JSON"),
  ]
  for (text, fragment) in cases {
    let url = dir.appendingPathComponent("d.jsonl")
    try Data(text.utf8).write(to: url)
    #expect(throws: DataError.self) { _ = try PreferenceData.loadChoices(url, tokenizer: tok, maxLength: 64) }
    do { _ = try PreferenceData.loadChoices(url, tokenizer: tok, maxLength: 64) } catch let e as DataError {
      #expect(e.message.contains(url.path + fragment), "\(e.message)")
    }
  }
  let url = dir.appendingPathComponent("p.jsonl")
  try Data(#"{"prompt": "a", "chosen": "", "rejected": "y"}"#.utf8).write(to: url)
  do {
    _ = try PreferenceData.loadPairs(url, tokenizer: tok, maxLength: 64)
    Issue.record("an empty chosen completion was accepted")
  } catch let e as DataError { #expect(e.message.contains(":1: empty 'chosen'")) }
  // Valid choices: 0 and 1 are indices, not booleans.
  try Data(#"{"prompt": "a", "candidates": ["x", "y", "z"], "choice": 1}"#.utf8).write(to: url)
  #expect(try PreferenceData.loadChoices(url, tokenizer: tok, maxLength: 64)[0].choice == 1)
}

// MARK: - trainer safety and reward-model persistence

/// A method whose loss turns NaN at a given step.
final class PoisonedSFT: TrainingMethod {
  let inner = SFTMethod(padId: 0)
  let badStep: Int
  init(badStep: Int) { self.badStep = badStep }
  var name: String { "sft" }
  func weight(of example: TokenSequence) -> Double { inner.weight(of: example) }
  func loss(_ batch: [TokenSequence], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let r = inner.loss(batch, model: model, step: step)
    return step == badStep ? MicroBatchLoss(loss: r.loss * Double.nan, tokens: r.tokens) : r
  }
}

@Test func aNaNLossStopsTrainingNamingTheStepAndKeepsTheLastGoodWeights() throws {
  let config = ModelConfig(family: .gpt2, vocabSize: 12, hiddenSize: 16, layers: 1, heads: 2, maxPositions: 16)
  let examples = (0..<4).map { i in TokenSequence(tokens: [1, 2 + i, 3, 4], targets: [false, true, true, true]) }
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-nan-\(UUID())")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: dir) }
  var o = TrainerOptions()
  o.batchSize = 2
  o.steps = 6
  o.saveEvery = 2
  let model = Checkpoint.makeModel(config, generator: Generator(seed: 1))
  let trainer = Trainer(model: model, method: PoisonedSFT(badStep: 4), examples: examples, options: o, outputDirectory: dir)
  var snapshot: [String: [UInt8]] = [:]
  do {
    _ = try trainer.train { log in
      if log.step == 3 { snapshot = model.stateDict().mapValues { $0.bytes() } }
    }
    Issue.record("training went on through a NaN loss")
  } catch let e as NonFiniteError {
    #expect(e.step == 4 && e.metric == "loss")
    #expect(String(describing: e).contains("step 4: loss is nan"))
  }
  // The bad update was never applied, and the step-2 checkpoint is intact.
  for (k, v) in model.stateDict() { #expect(v.bytes() == snapshot[k], "\(k) changed by the NaN step") }
  #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("checkpoint-000002/model.safetensors").path))
}

@Test func rewardModelHeadSurvivesSaveAndReload() throws {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-rm-\(UUID())")
  defer { try? FileManager.default.removeItem(at: dir) }
  let config = ModelConfig(family: .qwen2, vocabSize: 12, hiddenSize: 16, layers: 1, heads: 2, maxPositions: 16)
  let rm = RewardModel(lm: Checkpoint.makeModel(config, generator: Generator(seed: 2)), generator: Generator(seed: 3))
  withoutGradients { rm.score.weight.mul_(7) }
  let seqs = [TokenSequence(tokens: [1, 2, 3], targets: [false, true, true]), TokenSequence(tokens: [4, 5], targets: [false, true])]
  let before = withoutGradients { rm.rewards(seqs, padId: 0) }
  try rm.save(to: dir)
  let again = try RewardModel.load(from: dir)
  #expect(again.score.weight.allClose(rm.score.weight, rtol: 0, atol: 0))
  #expect(withoutGradients { again.rewards(seqs, padId: 0) }.allClose(before, rtol: 0, atol: 1e-6))
  try FileManager.default.removeItem(at: dir.appendingPathComponent(RewardModel.headFile))
  #expect(throws: CheckpointError.self) { _ = try RewardModel.load(from: dir) }
}

// MARK: - the mixture-of-types choice likelihood

/// P(pick k) = Σ_m w_m softmax(s_m)[k], by hand for two types; one type is the single Luce likelihood.
@Test func mixtureChoiceLossMatchesItsDefinition() {
  let s: [[Double]] = [[0.2, -1.0, 0.7], [1.5, 0.1, -0.4]]  // two types' scores of three candidates
  let w = [0.3, 0.7]
  func softmax(_ x: [Double]) -> [Double] { let e = x.map { exp($0) }; let z = e.reduce(0, +); return e.map { $0 / z } }
  let expected = -log(w[0] * softmax(s[0])[2] + w[1] * softmax(s[1])[2])
  let r = ChoiceLoss.compute(typeLogWeights: Tensor(w.map { log($0) }, shape: [1, 2]), scores: Tensor(s.flatMap { $0 }, shape: [1, 2, 3]),
                             chosen: Tensor([2] as [Int64]))
  #expect(abs(r.loss.item() - expected) < 1e-12)
  let single = Tensor([-1.0, -2.5, -0.3, -4.0, -1.1, -0.9] as [Double], shape: [2, 3]), chosen = Tensor([2, 0] as [Int64])
  let one = ChoiceLoss.compute(typeLogWeights: Tensor.zeros([2, 1], dtype: .float64), scores: single.unsqueezed(dim: 1), chosen: chosen)
  let luce = -((log(softmax([-1.0, -2.5, -0.3])[2])) + log(softmax([-4.0, -1.1, -0.9])[0])) / 2
  #expect(abs(one.loss.item() - luce) < 1e-12 && abs(ChoiceLoss.compute(scores: single, chosen: chosen).loss.item() - luce) < 1e-12)
  // A masked candidate takes no probability under any type.
  let masked = ChoiceLoss.logProbabilities(typeLogWeights: Tensor(w.map { log($0) }, shape: [1, 2]),
                                           scores: Tensor(s.flatMap { $0 }, shape: [1, 2, 3]),
                                           validMask: Tensor([1, 0, 1] as [Int64], shape: [1, 3]).ne(0)).exp().toArray(Double.self)
  #expect(masked[1] == 0 && abs(masked[0] + masked[2] - 1) < 1e-12)
}

@Test func mixtureChoiceLossHasFiniteDifferenceGradients() {
  let scores = Tensor([0.2, -1.0, 0.7, 1.5, 0.1, -0.4, -0.3, 0.9, 0.0, 2.0, -2.0, 0.5] as [Double], shape: [2, 2, 3])
  let logits = Tensor([0.3, -0.2, 1.1, 0.4] as [Double], shape: [2, 2])
  expectGradientsMatch([scores, logits]) {
    ChoiceLoss.compute(typeLogWeights: $0[1].logSoftmax(dim: 1), scores: $0[0], chosen: Tensor([2, 0] as [Int64])).loss
  }
}
