import Alignment
import Foundation
import LM
import NN
import Torch
import Worlds

/// Reward Learning on Policy (Lang et al. 2024; METHODS §6) at small scale: `shatter experiment rlp`.
///
/// A simulated annotator stands in for people (`SumAnnotator`: a gold reward — correctness plus a documented
/// length bias — and Bradley–Terry noise) on a verifiable task (`SumProblem`: "a+b=", answered in one of a few
/// styles). Per seed: SFT on demonstrations with slips → a reward model on annotated pairs of SFT samples → PPO
/// → the reward model retrained from the SFT model on policy samples, (a) with the multi-view term (RLP-UML)
/// and (b) on human + synthetic self-consistency pairs (RLP-SPG) → PPO again from SFT with each. Baselines:
/// SFT, PPO, best-of-n with the first reward model. Measured on held-out prompts: the annotator's win rate
/// against the SFT model, the gold reward and accuracy, KL from SFT, and each reward model's accuracy on
/// held-out pairs of policy samples.
public struct RLPExperimentConfig: Codable, Sendable, Equatable {
  public var seeds = 5
  /// Operands 0…maxOperand.
  public var maxOperand = 19
  /// Training problems (PPO's prompts), and demonstrations over them in turn (slips at `slipRate`).
  public var trainProblems = 300
  public var demonstrations = 3000
  public var slipRate = 0.2
  /// Annotated pairs of two SFT samples each ("human" preferences), on the training prompts in turn.
  public var humanPairs = 6000
  /// Training prompts whose policy samples retrain the reward model (RLP's unlabelled data).
  public var policyPrompts = 300
  /// Held-out problems (never trained on) and samples per prompt in the evaluation.
  public var evalProblems = 100
  public var evalSamples = 4
  public var annotator = SumAnnotator()
  /// The model: a GPT-2 over characters.
  public var hiddenSize = 64
  public var layers = 2
  /// SFT.
  public var sftSteps = 1500
  public var sftBatch = 32
  public var sftLearningRate = 3e-3
  /// Each reward model (initialised from SFT).
  public var rmSteps = 1500
  public var rmBatch = 32
  public var rmLearningRate = 1e-3
  /// RLP-UML: λ, policy samples (views) per prompt, prompts per multi-view batch.
  public var lambdaMV = 0.5
  public var views = 4
  public var multiViewBatch = 8
  /// RLP-SPG: samples per prompt, confidence threshold γ.
  public var spgSamples = 10
  public var spgGamma = 0.5
  /// PPO (each run from SFT): rollouts, prompts per rollout, learning rate, KL coefficient β, reply length.
  public var ppoSteps = 60
  public var ppoBatch = 64
  public var ppoLearningRate = 1e-5
  public var klCoef = 0.2
  public var responseLength = 24
  /// Gold reward and KL along each PPO run, every this many rollouts.
  public var curveEvery = 10
  /// Best-of-n's n.
  public var bestOfN = 16
  public var temperature = 1.0

  public init() {}
}

/// A policy measured on the held-out prompts.
public struct RLPPolicyResult: Codable, Sendable {
  /// The annotator's mean P(policy's reply ≻ SFT's reply), sample k against SFT's sample k.
  public let winRate: Double
  public let gold: Double
  /// Fraction of replies whose final number is the sum.
  public let accuracy: Double
  /// Mean Σ_t (log π − log π_SFT) over its samples; best-of-n's is log n − (n−1)/n.
  public let kl: Double
  public let meanLength: Double
}

/// A reward model's pairwise accuracy against the gold reward (pairs with different gold values only).
public struct RLPRewardModelResult: Codable, Sendable {
  /// On held-out pairs of samples of the first PPO policy (the distribution RLP retrains on).
  public let onPolicyAccuracy: Double
  /// On held-out pairs of SFT samples (the distribution of the human pairs).
  public let sftAccuracy: Double
  public let pairs: Int
}

/// One point of a PPO run: after `step` rollouts.
public struct RLPCurvePoint: Codable, Sendable {
  public let step: Int
  public let kl: Double
  public let gold: Double
}

public struct RLPRun: Codable, Sendable {
  public let seed: Int
  public let policies: [String: RLPPolicyResult]
  public let rewardModels: [String: RLPRewardModelResult]
  public let curves: [String: [RLPCurvePoint]]
  /// Best-of-n for n = 1, 2, 4, … bestOfN: (n, gold, analytic KL).
  public let bestOfNCurve: [RLPCurvePoint]
  /// The annotated pairs: how many, and how often the annotator's label agrees with the gold reward's sign.
  public let humanPairs: Int
  public let humanLabelAgreement: Double
  /// RLP-SPG's synthetic pairs: how many, their agreement with the gold reward, the prompts' mean confidence.
  public let syntheticPairs: Int
  public let syntheticLabelAgreement: Double
  public let meanConfidence: Double
  /// A few replies of each policy to the first held-out prompt.
  public let examples: [String: [String]]
  public let seconds: Double
}

public struct RLPSummary: Codable, Sendable {
  /// Policy name → win rate, gold, accuracy, KL (intervals over seeds); `order` lists them as the paper's table.
  public let policies: [String: [String: Interval]]
  public let order: [String]
  public let rewardModels: [String: [String: Interval]]
  public let rewardModelOrder: [String]
  public let syntheticPairs: Interval
  public let syntheticLabelAgreement: Interval
  public let humanLabelAgreement: Interval
  public let seeds: Int
  public let seconds: Double
}

public enum RLPExperiment {
  static let tokenizer = CharTokenizer(alphabet: Sums.alphabet)
  static var pad: Int { tokenizer.padTokenId! }
  static var eos: Int { tokenizer.eosTokenId! }
  public static let policyOrder = ["sft", "ppo", "best-of-n", "rlp-uml", "rlp-spg"]
  public static let rewardModelOrder = ["rm", "rm-uml", "rm-spg"]

  static func prompt(_ p: SumProblem) -> PromptExample {
    PromptExample(tokens: tokenizer.encode(p.prompt, addSpecialTokens: true), text: p.prompt)
  }

  static func sequence(_ p: SumProblem, _ reply: String) -> TokenSequence {
    TokenSequence(prompt: tokenizer.encode(p.prompt, addSpecialTokens: true), response: tokenizer.encode(reply, addSpecialTokens: false) + [eos])
  }

  static func sampler(_ c: RLPExperimentConfig) -> CompletionSampler {
    CompletionSampler(tokenizer: tokenizer, stopTokens: [eos], padId: pad, maxNewTokens: c.responseLength, temperature: c.temperature)
  }

  /// Room for the longest prompt and the longer of a sampled reply and the longest demonstration, with BOS and EOS.
  static func makeModel(_ c: RLPExperimentConfig, seed: Int) -> any CausalLM {
    let widest = SumProblem(a: c.maxOperand, b: c.maxOperand)
    let demonstration = Sums.styles.indices.map { Sums.reply(widest, style: $0, sum: widest.answer + 10).count }.max()!
    let positions = widest.prompt.count + Swift.max(c.responseLength, demonstration) + 2
    return Checkpoint.makeModel(ModelConfig(family: .gpt2, vocabSize: tokenizer.vocabularySize, hiddenSize: c.hiddenSize, layers: c.layers,
                                            heads: 2, maxPositions: Swift.max(positions, 8 + c.responseLength + 2)),
                                generator: Generator(seed: UInt64(seed) &+ 0x5EED))
  }

  /// A trainable copy of `model` as it is now.
  static func copy(_ model: any CausalLM) -> any CausalLM {
    let m = Checkpoint.frozenCopy(of: model)
    m.setRequiresGrad(true)
    return m
  }

  /// `count` replies per problem from `model` (texts and sequences), from a stream fixed by `seed`.
  static func replies(_ model: any CausalLM, _ problems: [SumProblem], count: Int, config c: RLPExperimentConfig, seed: UInt64)
    -> [[(text: String, sequence: TokenSequence)]]
  {
    let s = sampler(c)
    let prompts = problems.flatMap { Array(repeating: prompt($0), count: count) }
    var out: [[(text: String, sequence: TokenSequence)]] = []
    let generator = Generator(seed: seed)
    for start in stride(from: 0, to: prompts.count, by: 512) {
      let chunk = Array(prompts[start..<Swift.min(start + 512, prompts.count)])
      let completions = s.sample(chunk, model: model, generator: generator)
      for (p, r) in zip(chunk, completions) {
        if out.last.map({ $0.count == count }) ?? true { out.append([]) }
        out[out.count - 1].append((s.text(r), TokenSequence(prompt: p.tokens, response: r)))
      }
    }
    return out
  }

  /// Σ_t log π(y_t) of each sequence's reply under `model`.
  static func logProbs(_ model: any CausalLM, _ sequences: [TokenSequence]) -> [Double] {
    withoutGradients {
      stride(from: 0, to: sequences.count, by: 256).flatMap { start in
        ScoredBatch(Array(sequences[start..<Swift.min(start + 256, sequences.count)]), model: model, padId: pad)
          .sequenceLogProbs.to(.float64).toArray(Double.self)
      }
    }
  }

  /// The mean Σ_t (log π − log π_SFT) of sequences sampled from `model`: its KL estimate from SFT.
  static func kl(_ model: any CausalLM, from sft: any CausalLM, _ sequences: [TokenSequence]) -> Double {
    mean(zip(logProbs(model, sequences), logProbs(sft, sequences)).map { $0 - $1 })
  }

  static func scores(_ rm: RewardModel, _ sequences: [TokenSequence]) -> [Double] {
    withoutGradients {
      stride(from: 0, to: sequences.count, by: 256).flatMap { start in
        rm.rewards(Array(sequences[start..<Swift.min(start + 256, sequences.count)]), padId: pad).to(.float64).toArray(Double.self)
      }
    }
  }

  /// Mean KL estimate Σ_t (log π − log π_SFT) and mean gold over `evalSamples` replies per held-out prompt.
  static func curvePoint(_ model: any CausalLM, sft: any CausalLM, eval: [SumProblem], step: Int, config c: RLPExperimentConfig,
                         seed: UInt64) -> RLPCurvePoint {
    let groups = replies(model, eval, count: c.evalSamples, config: c, seed: seed)
    let r = groups.flatMap { $0 }
    let gold = zip(eval, groups).flatMap { p, g in g.map { c.annotator.gold(p, $0.text) } }
    return RLPCurvePoint(step: step, kl: kl(model, from: sft, r.map(\.sequence)), gold: mean(gold))
  }

  static func mean(_ xs: [Double]) -> Double { xs.reduce(0, +) / Double(Swift.max(1, xs.count)) }

  /// A policy's held-out results from its replies (`evalSamples` per prompt), against SFT's reference replies.
  static func measure(_ texts: [[String]], reference: [[String]], kl: Double, eval: [SumProblem], config c: RLPExperimentConfig)
    -> RLPPolicyResult
  {
    var win: [Double] = [], gold: [Double] = [], correct: [Double] = [], length: [Double] = []
    for (p, (mine, theirs)) in zip(eval, zip(texts, reference)) {
      for (y, ref) in zip(mine, theirs) {
        win.append(c.annotator.preference(p, y, ref))
        gold.append(c.annotator.gold(p, y))
        correct.append(Sums.finalNumber(y) == p.answer ? 1 : 0)
        length.append(Double(y.count))
      }
    }
    return RLPPolicyResult(winRate: mean(win), gold: mean(gold), accuracy: mean(correct), kl: kl, meanLength: mean(length))
  }

  /// Pairs of distinct replies to the same prompt whose gold rewards differ: (chosen by gold, the other).
  static func goldPairs(_ groups: [[(text: String, sequence: TokenSequence)]], eval: [SumProblem], config c: RLPExperimentConfig)
    -> [PairExample]
  {
    var out: [PairExample] = []
    for (p, g) in zip(eval, groups) {
      for i in g.indices { for j in g.indices where j > i && g[i].text != g[j].text {
        let (gi, gj) = (c.annotator.gold(p, g[i].text), c.annotator.gold(p, g[j].text))
        guard Swift.abs(gi - gj) > 1e-9 else { continue }
        out.append(gi > gj ? PairExample(chosen: g[i].sequence, rejected: g[j].sequence)
                           : PairExample(chosen: g[j].sequence, rejected: g[i].sequence))
      } }
    }
    return out
  }

  static func accuracy(_ rm: RewardModel, _ pairs: [PairExample]) -> Double {
    guard !pairs.isEmpty else { return .nan }
    let r = scores(rm, pairs.map(\.chosen) + pairs.map(\.rejected))
    return Double((0..<pairs.count).filter { r[$0] > r[pairs.count + $0] }.count) / Double(pairs.count)
  }

  static func trainerOptions(steps: Int, batch: Int, lr: Double, seed: UInt64, constant: Bool = false) -> TrainerOptions {
    var o = TrainerOptions()
    o.steps = steps
    o.batchSize = batch
    o.learningRate = lr
    o.warmup = constant ? 0 : steps / 20
    o.schedule = constant ? .constant : .cosine
    o.seed = seed
    return o
  }

  /// A reward model from the SFT model, trained on `pairs` (with RLP-UML's multi-view term when `views` is given).
  static func trainRewardModel(sft: any CausalLM, pairs: [PairExample], views: [[TokenSequence]]?, config c: RLPExperimentConfig,
                               seed: UInt64) throws -> RewardModel {
    let rm = RewardModel(lm: copy(sft), generator: Generator(seed: seed &+ 1))
    let method = RewardModelMethod(padId: pad, rewardModel: rm, multiView: views.map { ($0, c.lambdaMV, c.multiViewBatch) }, seed: seed)
    _ = try Trainer(model: rm.lm, method: method, examples: pairs,
                    options: trainerOptions(steps: c.rmSteps, batch: c.rmBatch, lr: c.rmLearningRate, seed: seed)).train()
    rm.setRequiresGrad(false)
    return rm
  }

  /// PPO from the SFT model against `rm`, with the gold reward and KL recorded every `curveEvery` rollouts.
  static func ppo(sft: any CausalLM, rm: RewardModel, prompts: [PromptExample], eval: [SumProblem], config c: RLPExperimentConfig,
                  seed: UInt64, curveSeed: UInt64) throws -> (policy: any CausalLM, curve: [RLPCurvePoint]) {
    let policy = copy(sft)
    var o = PPOMethod.PPOOptions()
    o.responseLength = c.responseLength
    o.klCoef = c.klCoef
    o.temperature = c.temperature
    o.miniBatch = Swift.max(1, c.ppoBatch / 4)
    let method = PPOMethod(policy: policy, reward: RewardModelScorer(model: rm, padId: pad), options: o, stopTokens: [eos],
                           padId: pad, seed: seed)
    var curve = [curvePoint(policy, sft: sft, eval: eval, step: 0, config: c, seed: curveSeed)]
    _ = try Trainer(model: policy, method: method, prompts: prompts,
                    options: trainerOptions(steps: c.ppoSteps, batch: c.ppoBatch, lr: c.ppoLearningRate, seed: seed, constant: true))
      .train { log in
        guard log.step % c.curveEvery == 0 || log.step == c.ppoSteps, curve.last?.step != log.step else { return }
        curve.append(curvePoint(policy, sft: sft, eval: eval, step: log.step, config: c, seed: curveSeed &+ UInt64(log.step)))
      }
    policy.setRequiresGrad(false)
    return (policy, curve)
  }

  /// The data of one seed: training problems with a demonstration each, and held-out problems.
  static func data(_ c: RLPExperimentConfig, seed: Int) -> (train: [SumProblem], demonstrations: [TokenSequence], eval: [SumProblem]) {
    let eval = Sums.problems(count: c.evalProblems, maxOperand: c.maxOperand, seed: 0xE7A1 &+ UInt64(seed))
    let train = Sums.problems(count: c.trainProblems, maxOperand: c.maxOperand, seed: 0x7EA1 &+ UInt64(seed), excluding: Set(eval))
    var rng = SplitMix64(seed: 0xDE30 &+ UInt64(seed))
    let demonstrations = (0..<c.demonstrations).map { train[$0 % train.count] }.map { sequence($0, Sums.demonstration($0, slipRate: c.slipRate, using: &rng)) }
    return (train, demonstrations, eval)
  }

  /// The whole pipeline for one seed.
  static func runSeed(_ c: RLPExperimentConfig, seed: Int, progress: (String) -> Void) throws -> RLPRun {
    let started = Date()
    let s = UInt64(seed) &* 0x1000
    let (train, demonstrations, eval) = data(c, seed: seed)
    guard train.count >= c.policyPrompts, eval.count == c.evalProblems else {
      throw ExperimentError("rlp: --max-operand \(c.maxOperand) has too few distinct problems for the training and held-out sets")
    }
    // SFT.
    let sft = makeModel(c, seed: seed)
    _ = try Trainer(model: sft, method: SFTMethod(padId: pad), examples: demonstrations,
                    options: trainerOptions(steps: c.sftSteps, batch: c.sftBatch, lr: c.sftLearningRate, seed: s &+ 1)).train()
    sft.setRequiresGrad(false)
    // The annotated pairs: two SFT samples per prompt, labelled by the annotator (identical replies dropped).
    let humanProblems = (0..<c.humanPairs).map { train[$0 % train.count] }
    var labelRng = SplitMix64(seed: s &+ 0xA770)
    var human: [PairExample] = [], agree = 0
    for (p, g) in zip(humanProblems, replies(sft, humanProblems, count: 2, config: c, seed: s &+ 2)) where g[0].text != g[1].text {
      let first = c.annotator.prefersFirst(p, g[0].text, g[1].text, uniform: Double(labelRng.next() >> 11) / Double(1 << 53))
      human.append(first ? PairExample(chosen: g[0].sequence, rejected: g[1].sequence) : PairExample(chosen: g[1].sequence, rejected: g[0].sequence))
      let (g0, g1) = (c.annotator.gold(p, g[0].text), c.annotator.gold(p, g[1].text))
      if (g0 > g1) == first || g0 == g1 { agree += 1 }
    }
    guard human.count >= 2 else { throw ExperimentError("rlp: the SFT model's two samples were identical on every annotated prompt") }
    progress(String(format: "seed %d: SFT done; %d annotated pairs (label agrees with gold %.2f)", seed, human.count,
                    Double(agree) / Double(human.count)))
    let rm = try trainRewardModel(sft: sft, pairs: human, views: nil, config: c, seed: s &+ 3)
    let prompts = train.map(prompt)
    let (ppoPolicy, ppoCurve) = try ppo(sft: sft, rm: rm, prompts: prompts, eval: eval, config: c, seed: s &+ 4, curveSeed: s &+ 0xC0)
    progress(String(format: "seed %d: PPO done (gold %.3f at KL %.2f)", seed, ppoCurve.last!.gold, ppoCurve.last!.kl))
    // RLP's unlabelled data: the PPO policy's samples on training prompts.
    let policyProblems = Array(train.suffix(c.policyPrompts))
    let views = replies(ppoPolicy, policyProblems, count: c.views, config: c, seed: s &+ 5).map { $0.map(\.sequence) }
    let rmUML = try trainRewardModel(sft: sft, pairs: human, views: views, config: c, seed: s &+ 6)
    let spg = try SyntheticPreferences.generate(policyProblems.map(prompt), model: ppoPolicy, sampler: sampler(c), samples: c.spgSamples,
                                                gamma: c.spgGamma, reward: RewardModelReward(model: rm, padId: pad), equivalence: nil,
                                                seed: s &+ 7)
    let byPrompt = Dictionary(policyProblems.map { ($0.prompt, $0) }, uniquingKeysWith: { a, _ in a })
    let synthetic = spg.pairs.map { PairExample(chosen: sequence(byPrompt[$0.prompt]!, $0.chosen), rejected: sequence(byPrompt[$0.prompt]!, $0.rejected)) }
    let syntheticAgree = spg.pairs.filter { c.annotator.gold(byPrompt[$0.prompt]!, $0.chosen) > c.annotator.gold(byPrompt[$0.prompt]!, $0.rejected) }.count
    let rmSPG = try trainRewardModel(sft: sft, pairs: human + synthetic, views: nil, config: c, seed: s &+ 8)
    progress(String(format: "seed %d: RM-UML and RM-SPG done (%d synthetic pairs, gold agrees %.2f, confidence %.2f)", seed,
                    synthetic.count, Double(syntheticAgree) / Double(Swift.max(1, synthetic.count)), spg.meanConfidence))
    let (umlPolicy, umlCurve) = try ppo(sft: sft, rm: rmUML, prompts: prompts, eval: eval, config: c, seed: s &+ 9, curveSeed: s &+ 0xC0)
    let (spgPolicy, spgCurve) = try ppo(sft: sft, rm: rmSPG, prompts: prompts, eval: eval, config: c, seed: s &+ 10, curveSeed: s &+ 0xC0)

    // Evaluation on the held-out prompts.
    let reference = replies(sft, eval, count: c.evalSamples, config: c, seed: s &+ 0xEF).map { $0.map(\.text) }
    var policies: [String: RLPPolicyResult] = [:], examples: [String: [String]] = [:]
    for (name, model) in [("sft", sft), ("ppo", ppoPolicy), ("rlp-uml", umlPolicy), ("rlp-spg", spgPolicy)] {
      let r = replies(model, eval, count: c.evalSamples, config: c, seed: s &+ 0xE0)
      let seqs = r.flatMap { $0.map(\.sequence) }
      let kl = name == "sft" ? 0 : kl(model, from: sft, seqs)
      policies[name] = measure(r.map { $0.map(\.text) }, reference: reference, kl: kl, eval: eval, config: c)
      examples[name] = r[0].map(\.text)
    }
    // Best-of-n with the first reward model: n SFT samples per reply, the highest-scoring kept.
    let pool = replies(sft, eval, count: c.evalSamples * c.bestOfN, config: c, seed: s &+ 0xB0)
    let poolScores = pool.map { scores(rm, $0.map(\.sequence)) }
    func bestOf(_ n: Int) -> [[String]] {
      zip(pool, poolScores).map { g, r in
        (0..<c.evalSamples).map { k in
          let range = (k * c.bestOfN)..<(k * c.bestOfN + n)
          return g[range.max { r[$0] < r[$1] }!].text
        }
      }
    }
    func bestOfNKL(_ n: Int) -> Double { log(Double(n)) - Double(n - 1) / Double(n) }
    policies["best-of-n"] = measure(bestOf(c.bestOfN), reference: reference, kl: bestOfNKL(c.bestOfN), eval: eval, config: c)
    examples["best-of-n"] = bestOf(c.bestOfN)[0]
    let bonCurve = Swift.sequence(first: 1, next: { $0 * 2 <= c.bestOfN ? $0 * 2 : nil }).map { n in
      RLPCurvePoint(step: n, kl: bestOfNKL(n), gold: mean(zip(eval, bestOf(n)).flatMap { p, ys in ys.map { c.annotator.gold(p, $0) } }))
    }
    // The reward models on held-out pairs: of the first PPO policy's samples, and of SFT samples.
    let onPolicy = goldPairs(replies(ppoPolicy, eval, count: 4, config: c, seed: s &+ 0xAC), eval: eval, config: c)
    let offPolicy = goldPairs(replies(sft, eval, count: 4, config: c, seed: s &+ 0xAD), eval: eval, config: c)
    var rms: [String: RLPRewardModelResult] = [:]
    for (name, model) in [("rm", rm), ("rm-uml", rmUML), ("rm-spg", rmSPG)] {
      rms[name] = RLPRewardModelResult(onPolicyAccuracy: accuracy(model, onPolicy), sftAccuracy: accuracy(model, offPolicy), pairs: onPolicy.count)
    }
    return RLPRun(seed: seed, policies: policies, rewardModels: rms, curves: ["ppo": ppoCurve, "rlp-uml": umlCurve, "rlp-spg": spgCurve],
                  bestOfNCurve: bonCurve, humanPairs: human.count, humanLabelAgreement: Double(agree) / Double(human.count),
                  syntheticPairs: synthetic.count, syntheticLabelAgreement: Double(syntheticAgree) / Double(Swift.max(1, synthetic.count)),
                  meanConfidence: spg.meanConfidence, examples: examples, seconds: Date().timeIntervalSince(started))
  }

  /// Runs every seed (each saved under runs/ as it finishes, so an interrupted experiment resumes with the
  /// seeds it has) and writes metrics.jsonl, summary.json, report.md, win-rate.svg and gold-vs-kl.svg.
  public static func run(_ config: RLPExperimentConfig, out: URL, progress: @escaping (String) -> Void = { _ in }) throws -> RLPSummary {
    guard config.seeds >= 1, config.evalSamples >= 1, config.bestOfN >= 1, config.views >= 2, config.multiViewBatch >= 2,
          config.spgSamples >= 2, config.curveEvery >= 1, config.maxOperand >= 1 else {
      throw ExperimentError("rlp: --seeds, --eval-samples, --best-of-n and --curve-every must be at least 1; --views, "
        + "--multi-view-batch and --spg-samples at least 2")
    }
    let started = Date()
    let runsDir = out.appendingPathComponent("runs")
    try ExperimentFiles.claim(out, config: config)
    try FileManager.default.createDirectory(at: runsDir, withIntermediateDirectories: true)
    var runs: [RLPRun] = []
    for seed in 0..<config.seeds {
      let (r, made) = try ExperimentFiles.run(at: runsDir.appendingPathComponent("seed\(seed).json")) {
        try runSeed(config, seed: seed, progress: progress)
      }
      runs.append(r)
      if made {
        progress("seed \(seed) done in \(Int(r.seconds)) s: " + policyOrder.map {
          String(format: "%@ %.3f", $0, r.policies[$0]!.winRate)
        }.joined(separator: ", "))
      }
    }
    let summary = summarize(runs, seconds: Date().timeIntervalSince(started))
    try write(summary, runs: runs, config: config, to: out)
    return summary
  }

  static func summarize(_ runs: [RLPRun], seconds: Double) -> RLPSummary {
    var policies: [String: [String: Interval]] = [:], rms: [String: [String: Interval]] = [:]
    for name in policyOrder {
      let r = runs.compactMap { $0.policies[name] }
      policies[name] = ["win_rate": Interval(r.map(\.winRate)), "gold": Interval(r.map(\.gold)), "accuracy": Interval(r.map(\.accuracy)),
                        "kl": Interval(r.map(\.kl)), "length": Interval(r.map(\.meanLength))]
    }
    for name in rewardModelOrder {
      let r = runs.compactMap { $0.rewardModels[name] }
      rms[name] = ["on_policy_accuracy": Interval(r.map(\.onPolicyAccuracy)), "sft_accuracy": Interval(r.map(\.sftAccuracy))]
    }
    return RLPSummary(policies: policies, order: policyOrder, rewardModels: rms, rewardModelOrder: rewardModelOrder,
                      syntheticPairs: Interval(runs.map { Double($0.syntheticPairs) }),
                      syntheticLabelAgreement: Interval(runs.map(\.syntheticLabelAgreement)),
                      humanLabelAgreement: Interval(runs.map(\.humanLabelAgreement)), seeds: runs.count, seconds: seconds)
  }

  static func cell(_ i: Interval?, _ format: String = "%.3f") -> String {
    guard let i else { return "–" }
    return String(format: "\(format) (\(format)–\(format))", i.mean, i.low, i.high)
  }

  static let labels = ["sft": "SFT", "ppo": "PPO", "best-of-n": "best-of-n", "rlp-uml": "RLP-UML", "rlp-spg": "RLP-SPG",
                       "rm": "RM (human pairs)", "rm-uml": "RM-UML (+ multi-view on policy samples)", "rm-spg": "RM-SPG (human + synthetic pairs)"]

  /// The paper's table (win rate against SFT) with the gold reward, accuracy, KL and length, then the reward models.
  public static func table(_ s: RLPSummary) -> String {
    var t = "| method | win rate vs SFT | gold reward | accuracy | KL from SFT | reply length |\n|---|---|---|---|---|---|\n"
    for name in s.order {
      let p = s.policies[name]!
      t += "| \(labels[name]!) | \(cell(p["win_rate"])) | \(cell(p["gold"])) | \(cell(p["accuracy"])) | \(cell(p["kl"], "%.2f")) | "
        + "\(cell(p["length"], "%.1f")) |\n"
    }
    t += "\n| reward model | accuracy on policy-sample pairs | accuracy on SFT-sample pairs |\n|---|---|---|\n"
    for name in s.rewardModelOrder {
      let r = s.rewardModels[name]!
      t += "| \(labels[name]!) | \(cell(r["on_policy_accuracy"])) | \(cell(r["sft_accuracy"])) |\n"
    }
    t += "\nSynthetic pairs per seed \(cell(s.syntheticPairs, "%.0f")), chosen above rejected by gold \(cell(s.syntheticLabelAgreement)); "
      + "the annotator's labels agree with the gold reward's sign on \(cell(s.humanLabelAgreement)) of the human pairs.\n"
    return t
  }

  static func write(_ s: RLPSummary, runs: [RLPRun], config c: RLPExperimentConfig, to out: URL) throws {
    var rows: [[String: Any]] = []
    for r in runs {
      for (name, p) in r.policies.sorted(by: { $0.key < $1.key }) {
        rows.append(["seed": r.seed, "policy": name, "win_rate": p.winRate, "gold": p.gold, "accuracy": p.accuracy, "kl": p.kl,
                     "length": p.meanLength])
      }
      for (name, m) in r.rewardModels.sorted(by: { $0.key < $1.key }) {
        rows.append(["seed": r.seed, "reward_model": name, "on_policy_accuracy": m.onPolicyAccuracy, "sft_accuracy": m.sftAccuracy,
                     "pairs": m.pairs])
      }
      for (name, curve) in r.curves.sorted(by: { $0.key < $1.key }) {
        for p in curve { rows.append(["seed": r.seed, "curve": name, "step": p.step, "kl": p.kl, "gold": p.gold]) }
      }
      for p in r.bestOfNCurve { rows.append(["seed": r.seed, "curve": "best-of-n", "n": p.step, "kl": p.kl, "gold": p.gold]) }
    }
    try ExperimentFiles.writeMetrics(rows, to: out)
    try ExperimentFiles.writeSummary(s, to: out)
    try Data(Plots.bars(title: "Win rate against SFT, judged by the simulated annotator (mean, 95% CI over \(s.seeds) seeds)",
                        xLabel: "method", yLabel: "win rate vs SFT",
                        s.order.map { Plots.Bar(label: labels[$0]!, value: s.policies[$0]!["win_rate"]!) }, yMax: 1,
                        levels: [(0.5, "tie with SFT", "gray")]).utf8)
      .write(to: out.appendingPathComponent("win-rate.svg"), options: .atomic)
    // Gold reward against KL: each PPO run's checkpoints (means over seeds), best-of-n for n = 1, 2, 4, …
    let groups = ["PPO", "RLP-UML", "RLP-SPG", "best-of-n"]
    var points: [Plots.Point] = []
    for (g, name) in ["ppo", "rlp-uml", "rlp-spg"].enumerated() {
      let steps = runs[0].curves[name]!.map(\.step)
      for (k, step) in steps.enumerated() {
        let at = runs.compactMap { $0.curves[name]?[safe: k] }
        points.append(Plots.Point(label: "\(step)", group: g, x: Interval(at.map(\.kl)), y: Interval(at.map(\.gold))))
      }
    }
    for (k, n) in runs[0].bestOfNCurve.map(\.step).enumerated() {
      let at = runs.compactMap { $0.bestOfNCurve[safe: k] }
      points.append(Plots.Point(label: "n=\(n)", group: 3, x: Interval(at.map(\.kl)), y: Interval(at.map(\.gold))))
    }
    try Data(Plots.front(title: "Gold reward vs KL from SFT on held-out prompts (mean, 95% CI over \(s.seeds) seeds)",
                         xLabel: "KL(π ‖ π_SFT) per reply (nats); PPO points labelled by rollout", yLabel: "gold reward",
                         groups: groups, points).utf8)
      .write(to: out.appendingPathComponent("gold-vs-kl.svg"), options: .atomic)
    try Data(report(s, runs: runs, config: c).utf8).write(to: out.appendingPathComponent("report.md"), options: .atomic)
  }

  static func report(_ s: RLPSummary, runs: [RLPRun], config c: RLPExperimentConfig) -> String {
    let a = c.annotator
    var samples = ""
    if let r = runs.first {
      samples = "Replies to the first held-out prompt (seed \(r.seed)):\n\n"
      for name in s.order { samples += "- \(labels[name]!): " + (r.examples[name] ?? []).map { "`\($0)`" }.joined(separator: ", ") + "\n" }
    }
    return """
      # Reward Learning on Policy: RLP-UML and RLP-SPG against PPO, best-of-n and SFT

      Task: "a+b=" with operands 0…\(c.maxOperand), answered in one of \(Sums.styles.count) styles ("17", "it is 17", "the sum is \
      17", "so 8+9 is 17"). Gold reward: 1 when the reply's final number is the sum, plus a length bias of up to \(a.lengthBias) \
      (\(a.lengthBias)·min(|y|, \(a.lengthCap))/\(a.lengthCap) characters). The simulated annotator prefers y1 to y2 with \
      probability σ((gold(y1) − gold(y2))/\(a.temperature)). Per seed: SFT (a \(c.layers)-layer GPT-2 of width \(c.hiddenSize) over \
      characters, \(c.sftSteps) steps on \(c.trainProblems) demonstrations, \(Int(c.slipRate * 100))% of them with a slip of ±1 or \
      ±10); \(c.humanPairs) annotated pairs of two SFT samples; a reward model from SFT (\(c.rmSteps) steps); PPO from SFT \
      (\(c.ppoSteps) rollouts of \(c.ppoBatch) prompts, β \(c.klCoef)); then on \(c.policyPrompts) training prompts the PPO \
      policy's samples retrain the reward model from SFT, with the multi-view term (RLP-UML: \(c.views) samples per prompt, \
      λ \(c.lambdaMV)) or on human + synthetic pairs (RLP-SPG: \(c.spgSamples) samples, γ \(c.spgGamma), equivalence = the final \
      number), and PPO runs again from SFT with each. Best-of-n takes the first reward model's favourite of n = \(c.bestOfN) SFT \
      samples. Evaluation: \(c.evalProblems) held-out problems, \(c.evalSamples) replies each; the win rate is the annotator's \
      mean P(reply ≻ SFT's reply); KL is the mean Σ_t log π/π_SFT of the replies (best-of-n: log n − (n−1)/n). The reward \
      models' accuracy is on pairs of distinct replies whose gold rewards differ, from 4 samples per held-out prompt. \
      \(s.seeds) seeds; intervals are 95% over seeds.

      \(table(s))
      ![Win rate against SFT](win-rate.svg)

      ![Gold reward vs KL](gold-vs-kl.svg)

      \(samples)
      """
  }
}

extension Array {
  fileprivate subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
