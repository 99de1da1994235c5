import Alignment
import Foundation
import LM
import NN
import Torch
import Worlds

/// IQLearn's performance–diversity claim (Wulfmeier et al. 2024; METHODS §5) at small scale: a small
/// causal LM learns the letter-pick task (`LetterPickTask`: many correct answers, an exact checker) from
/// demonstrations that cover the answers unevenly, by MLE, MLE with an entropy bonus (a sweep), offline
/// IQLearn (a λ sweep) and online IQLearn (α > 0), each from the same initial model per seed; then on
/// held-out prompts: task score, Self-BLEU, distinct-n, per-token entropy and the distinct correct answers
/// per prompt, and the Spearman correlation of each model's sequence statistics (IQLearn's Σ_t r_t, the
/// log-likelihood) with the score. `shatter experiment iqlearn`.
public struct IQLearnExperimentConfig: Codable, Sendable, Equatable {
  public var seeds = 3
  /// Letters per prompt, and how many the answer picks (C(pool, pick) correct answers per prompt).
  public var poolSize = 6
  public var pick = 3
  /// Training prompts, one demonstration each; answer k of a prompt is demonstrated ∝ (k+1)^−zipf.
  public var trainPrompts = 4000
  public var zipf = 1.0
  /// Held-out prompts (letter sets never trained on) and samples drawn per prompt.
  public var evalPrompts = 64
  public var samplesPerPrompt = 8
  public var temperature = 1.0
  /// Training, shared by every configuration (AdamW, cosine schedule).
  public var steps = 2000
  public var batchSize = 32
  public var learningRate = 3e-3
  /// MLE's entropy bonuses β (loss CE − β·H̄).
  public var entropyBonuses = [0.03, 0.1, 0.3]
  /// Offline IQLearn's λ values, and the discount of every IQLearn run.
  public var lambdas = [0.03, 0.1, 0.3, 1.0]
  public var gamma = 1.0
  /// Online IQLearn: this fraction of each batch is the policy's own samples (value term only), at λ.
  public var onlineAlpha = 0.25
  public var onlineLambda = 0.1
  /// The model: a GPT-2 of this width and depth over letter tokens.
  public var hiddenSize = 64
  public var layers = 2

  public init() {}
}

/// One trained configuration and seed, measured on the held-out prompts.
public struct IQLearnRun: Codable, Sendable {
  public let configuration: String
  public let family: String
  public let seed: Int
  /// Mean exact score of the samples.
  public let score: Double
  /// Per prompt over its samples, averaged over prompts.
  public let selfBLEU: Double
  public let distinct1: Double
  public let distinct2: Double
  /// Distinct correct answers among a prompt's samples.
  public let correctAnswers: Double
  /// Mean policy entropy per generated token (nats).
  public let entropy: Double
  /// Spearman ρ with the score over the samples: of Σ_t r_t (IQLearn's extracted reward, γ as trained)
  /// and of Σ_t log π (the log-likelihood); nil when the samples' scores are all equal.
  public let rewardSpearman: Double?
  public let logLikelihoodSpearman: Double?
  /// The same two over the contrast pool: every prompt's correct answers and as many near misses.
  public let poolRewardSpearman: Double?
  public let poolLogLikelihoodSpearman: Double?
  public let finalLoss: Double
}

public struct IQLearnPoint: Codable, Sendable {
  public let family: String
  public let score: Interval
  public let selfBLEU: Interval
  public let distinct1: Interval
  public let distinct2: Interval
  public let correctAnswers: Interval
  public let entropy: Interval
  public let rewardSpearman: Interval?
  public let logLikelihoodSpearman: Interval?
  public let poolRewardSpearman: Interval?
  public let poolLogLikelihoodSpearman: Interval?
}

public struct IQLearnSummary: Codable, Sendable {
  /// Configuration name → its point on the front (intervals over seeds).
  public let configurations: [String: IQLearnPoint]
  /// The configurations in run order.
  public let order: [String]
  /// The demonstrations' own score and diversity on the held-out prompts (a reference point).
  public let demonstrations: IQLearnPoint
  public let seeds: Int
  /// This invocation's wall-clock time (a resumed one counts only the runs it made).
  public let seconds: Double
}

public enum IQLearnExperiment {
  // Tokens: BOS, EOS, SEP, then a–z.
  static let bos = 0, eos = 1, sep = 2
  static let vocabSize = 3 + LetterPickTask.alphabet.count
  static func token(_ c: Character) -> Int { 3 + LetterPickTask.alphabet.firstIndex(of: c)! }

  static func prompt(_ t: LetterPickTask) -> [Int] { [bos] + t.letters.map(token) + [sep] }

  /// A response's text: its letters separated by spaces, up to EOS ("?" for a token that is not a letter).
  static func text(_ response: [Int]) -> String {
    response.prefix { $0 != eos }.map { $0 >= 3 && $0 < vocabSize ? String(LetterPickTask.alphabet[$0 - 3]) : "?" }
      .joined(separator: " ")
  }

  static func sequence(_ t: LetterPickTask, answer: [Character]) -> TokenSequence {
    TokenSequence(prompt: prompt(t), response: answer.map(token) + [eos])
  }

  /// One configuration: a name, the family it belongs to on the front, and how it trains a model.
  struct Configuration {
    let name: String
    let family: String
    let train: (_ model: any CausalLM, _ examples: [TokenSequence], _ options: TrainerOptions) throws -> TrainingSummary

    init<M: TrainingMethod>(_ name: String, _ family: String, _ method: @escaping (UInt64) -> M) where M.Example == TokenSequence {
      self.name = name
      self.family = family
      train = { model, examples, options in try Trainer(model: model, method: method(options.seed), examples: examples, options: options).train() }
    }
  }

  static func configurations(_ c: IQLearnExperimentConfig) -> [Configuration] {
    [Configuration("mle", "mle") { _ in SFTMethod(padId: eos) }]
      + c.entropyBonuses.map { b in Configuration("mle+entropy(β=\(b))", "mle+entropy") { _ in SFTMethod(padId: eos, entropyBonus: b) } }
      + c.lambdas.map { l in Configuration("iqlearn(λ=\(l))", "iqlearn") { s in IQLearnMethod(padId: eos, lambda: l, gamma: c.gamma, seed: s) } }
      + (c.onlineAlpha > 0 ? [Configuration("iqlearn-online(λ=\(c.onlineLambda),α=\(c.onlineAlpha))", "iqlearn-online") { s in
        IQLearnMethod(padId: eos, lambda: c.onlineLambda, gamma: c.gamma, alpha: c.onlineAlpha, stopTokens: [eos], seed: s)
      }] : [])
  }

  /// The seed's training demonstrations and the held-out prompts (letter sets disjoint from training).
  static func data(_ c: IQLearnExperimentConfig, seed: Int) throws -> (train: [TokenSequence], eval: [LetterPickTask]) {
    var rng = SplitMix64(seed: 0x1A7E_0000 &+ UInt64(seed))
    var train: [TokenSequence] = [], seen = Set<Set<Character>>()
    for _ in 0..<c.trainPrompts {
      let t = try LetterPickTask.random(size: c.poolSize, pick: c.pick, using: &rng)
      seen.insert(Set(t.letters))
      train.append(sequence(t, answer: t.demonstrations(count: 1, zipf: c.zipf, using: &rng)[0]))
    }
    var eval: [LetterPickTask] = []
    var evalRng = SplitMix64(seed: 0xE7A1_0000 &+ UInt64(seed))
    while eval.count < c.evalPrompts {
      let t = try LetterPickTask.random(size: c.poolSize, pick: c.pick, using: &evalRng)
      if !seen.contains(Set(t.letters)) { eval.append(t) }
    }
    return (train, eval)
  }

  static func makeModel(_ c: IQLearnExperimentConfig, seed: Int) -> any CausalLM {
    Checkpoint.makeModel(ModelConfig(family: .gpt2, vocabSize: vocabSize, hiddenSize: c.hiddenSize, layers: c.layers, heads: 2,
                                     maxPositions: c.poolSize + c.pick + 8), generator: Generator(seed: UInt64(seed) &+ 0x5EED))
  }

  /// Near misses of a correct answer: out of order, a letter repeated, a letter not in the prompt, one short.
  static func nearMisses(_ t: LetterPickTask, _ answer: [Character], rng: inout SplitMix64) -> [[Character]] {
    let outside = LetterPickTask.alphabet.filter { !t.letters.contains($0) }
    var replaced = answer
    replaced[Int(rng.next() % UInt64(answer.count))] = outside[Int(rng.next() % UInt64(outside.count))]
    return [Array(answer.reversed()), [answer[0]] + answer.dropLast(), replaced, Array(answer.dropLast())]
  }

  /// Diversity and score of `samples[prompt][k]` texts.
  struct Measured {
    var score = 0.0, selfBLEU = 0.0, distinct1 = 0.0, distinct2 = 0.0, correct = 0.0
  }

  static func measure(_ samples: [[String]], eval: [LetterPickTask]) -> Measured {
    var m = Measured()
    for (t, texts) in zip(eval, samples) {
      m.score += texts.map(t.score).reduce(0, +) / Double(texts.count)
      m.selfBLEU += Diversity.selfBLEU(texts)
      m.distinct1 += Diversity.distinct(texts, n: 1)
      m.distinct2 += Diversity.distinct(texts, n: 2)
      m.correct += Double(Set(texts.filter { t.score($0) == 1 }).count)
    }
    let n = Double(Swift.max(eval.count, 1))
    return Measured(score: m.score / n, selfBLEU: m.selfBLEU / n, distinct1: m.distinct1 / n, distinct2: m.distinct2 / n,
                    correct: m.correct / n)
  }

  /// (Σ_t r_t, Σ_t log π, mean entropy) of each sequence under `model`, in chunks.
  static func statistics(_ model: any CausalLM, _ sequences: [TokenSequence], gamma: Double) -> (reward: [Double], logLik: [Double], entropy: Double) {
    var reward: [Double] = [], logLik: [Double] = [], entropy = 0.0, weight = 0.0
    withoutGradients {
      for start in stride(from: 0, to: sequences.count, by: 256) {
        let chunk = Array(sequences[start..<Swift.min(start + 256, sequences.count)])
        let a = ScoredBatch(chunk, model: model, padId: eos)
        reward += IQLearnLoss.sequenceRewards(a.tokens, mask: a.mask, gamma: gamma).toArray(Double.self)
        logLik += a.sequenceLogProbs.to(.float64).toArray(Double.self)
        let tokens = Double(a.batch.targetCount)
        entropy += a.meanEntropy.item() * tokens
        weight += tokens
      }
    }
    return (reward, logLik, entropy / Swift.max(weight, 1))
  }

  static func spearman(_ a: [Double], _ b: [Double]) -> Double? {
    guard a.count > 1 else { return nil }
    let r = Correlation.spearman(a, b)
    return r.isNaN ? nil : r
  }

  /// Trains one configuration for one seed and measures it.
  static func runOne(_ cfg: Configuration, seed: Int, config c: IQLearnExperimentConfig, train: [TokenSequence],
                     eval: [LetterPickTask]) throws -> IQLearnRun {
    let model = makeModel(c, seed: seed)
    var o = TrainerOptions()
    o.steps = c.steps
    o.batchSize = c.batchSize
    o.learningRate = c.learningRate
    o.warmup = c.steps / 20
    o.seed = UInt64(seed) &+ 0x77
    let result = try cfg.train(model, train, o)
    // Samples: every held-out prompt `samplesPerPrompt` times, from a stream fixed by the seed.
    let prompts = eval.flatMap { t in Array(repeating: prompt(t), count: c.samplesPerPrompt) }
    let opts = SamplingOptions(maxNewTokens: c.pick + 2, temperature: c.temperature, stopTokens: [eos])
    let responses = model.generate(prompts, options: opts, padId: eos, generator: Generator(seed: UInt64(seed) &+ 0xD1CE))
    let texts = responses.map(text)
    let perPrompt = stride(from: 0, to: texts.count, by: c.samplesPerPrompt).map { Array(texts[$0..<$0 + c.samplesPerPrompt]) }
    let m = measure(perPrompt, eval: eval)
    let sampled = zip(prompts, responses).map { TokenSequence(prompt: $0, response: $1) }
    let stats = statistics(model, sampled, gamma: c.gamma)
    let scores = zip(eval, perPrompt).flatMap { t, texts in texts.map(t.score) }
    // The contrast pool: every correct answer of each held-out prompt and a near miss of each.
    var rng = SplitMix64(seed: 0x9001 &+ UInt64(seed))
    var pool: [TokenSequence] = [], poolScores: [Double] = []
    for t in eval {
      for a in t.answers {
        pool.append(sequence(t, answer: a))
        poolScores.append(1)
        let misses = nearMisses(t, a, rng: &rng)
        let miss = misses[Int(rng.next() % UInt64(misses.count))]
        pool.append(sequence(t, answer: miss))
        poolScores.append(t.score(String(miss)))
      }
    }
    let poolStats = statistics(model, pool, gamma: c.gamma)
    return IQLearnRun(configuration: cfg.name, family: cfg.family, seed: seed, score: m.score, selfBLEU: m.selfBLEU,
                      distinct1: m.distinct1, distinct2: m.distinct2, correctAnswers: m.correct, entropy: stats.entropy,
                      rewardSpearman: spearman(stats.reward, scores), logLikelihoodSpearman: spearman(stats.logLik, scores),
                      poolRewardSpearman: spearman(poolStats.reward, poolScores),
                      poolLogLikelihoodSpearman: spearman(poolStats.logLik, poolScores),
                      finalLoss: result.lossHistory.last ?? .nan)
  }

  /// Runs every configuration for every seed (each run saved under runs/ as it finishes, so an interrupted
  /// experiment resumes with the runs it has) and writes metrics.jsonl, summary.json, report.md and front.svg.
  public static func run(_ config: IQLearnExperimentConfig, out: URL, progress: @escaping (String) -> Void = { _ in })
    throws -> IQLearnSummary
  {
    guard config.poolSize <= LetterPickTask.alphabet.count, config.pick >= 1, config.pick <= config.poolSize else {
      throw ExperimentError("letter-pick: --pick must be in 1…--pool-size, and --pool-size at most 26")
    }
    let started = Date()
    let fm = FileManager.default
    let runsDir = out.appendingPathComponent("runs")
    try ExperimentFiles.claim(out, config: config)
    try fm.createDirectory(at: runsDir, withIntermediateDirectories: true)
    let configs = configurations(config)
    var runs: [IQLearnRun] = []
    var demoPoints: [Measured] = []
    for seed in 0..<config.seeds {
      let (train, eval) = try data(config, seed: seed)
      // The demonstrations' own front point: `samplesPerPrompt` demonstrations of each held-out prompt.
      var rng = SplitMix64(seed: 0xDE30 &+ UInt64(seed))
      demoPoints.append(measure(eval.map { t in
        t.demonstrations(count: config.samplesPerPrompt, zipf: config.zipf, using: &rng).map { $0.map(String.init).joined(separator: " ") }
      }, eval: eval))
      for cfg in configs {
        let (r, made) = try ExperimentFiles.run(at: runsDir.appendingPathComponent("\(cfg.name)-seed\(seed).json")) {
          try runOne(cfg, seed: seed, config: config, train: train, eval: eval)
        }
        runs.append(r)
        guard made else { continue }
        progress(String(format: "seed %d %@: score %.3f, Self-BLEU %.3f, correct answers/prompt %.2f, entropy %.3f",
                        seed, cfg.name, r.score, r.selfBLEU, r.correctAnswers, r.entropy))
      }
    }
    let summary = summarize(runs, demonstrations: demoPoints, configs: configs, seeds: config.seeds,
                            seconds: Date().timeIntervalSince(started))
    try write(summary, runs: runs, config: config, to: out)
    return summary
  }

  static func interval(_ xs: [Double?]) -> Interval? {
    let v = xs.compactMap { $0 }
    return v.isEmpty ? nil : Interval(v)
  }

  static func summarize(_ runs: [IQLearnRun], demonstrations: [Measured], configs: [Configuration], seeds: Int, seconds: Double)
    -> IQLearnSummary
  {
    var points: [String: IQLearnPoint] = [:]
    for cfg in configs {
      let mine = runs.filter { $0.configuration == cfg.name }
      guard !mine.isEmpty else { continue }
      points[cfg.name] = IQLearnPoint(
        family: cfg.family, score: Interval(mine.map(\.score)), selfBLEU: Interval(mine.map(\.selfBLEU)),
        distinct1: Interval(mine.map(\.distinct1)), distinct2: Interval(mine.map(\.distinct2)),
        correctAnswers: Interval(mine.map(\.correctAnswers)), entropy: Interval(mine.map(\.entropy)),
        rewardSpearman: interval(mine.map(\.rewardSpearman)), logLikelihoodSpearman: interval(mine.map(\.logLikelihoodSpearman)),
        poolRewardSpearman: interval(mine.map(\.poolRewardSpearman)),
        poolLogLikelihoodSpearman: interval(mine.map(\.poolLogLikelihoodSpearman)))
    }
    let demos = IQLearnPoint(
      family: "demonstrations", score: Interval(demonstrations.map(\.score)), selfBLEU: Interval(demonstrations.map(\.selfBLEU)),
      distinct1: Interval(demonstrations.map(\.distinct1)), distinct2: Interval(demonstrations.map(\.distinct2)),
      correctAnswers: Interval(demonstrations.map(\.correct)), entropy: Interval([]), rewardSpearman: nil,
      logLikelihoodSpearman: nil, poolRewardSpearman: nil, poolLogLikelihoodSpearman: nil)
    return IQLearnSummary(configurations: points, order: configs.map(\.name).filter { points[$0] != nil }, demonstrations: demos,
                          seeds: seeds, seconds: seconds)
  }

  static func write(_ s: IQLearnSummary, runs: [IQLearnRun], config: IQLearnExperimentConfig, to out: URL) throws {
    try ExperimentFiles.writeMetrics(runs.sorted { ($0.configuration, $0.seed) < ($1.configuration, $1.seed) }.map { r in
      var row: [String: Any] = [
        "configuration": r.configuration, "family": r.family, "seed": r.seed, "score": r.score, "self_bleu": r.selfBLEU,
        "distinct_1": r.distinct1, "distinct_2": r.distinct2, "correct_answers": r.correctAnswers, "entropy": r.entropy,
        "final_loss": r.finalLoss,
      ]
      for (k, v) in [("reward_spearman", r.rewardSpearman), ("log_likelihood_spearman", r.logLikelihoodSpearman),
                     ("pool_reward_spearman", r.poolRewardSpearman), ("pool_log_likelihood_spearman", r.poolLogLikelihoodSpearman)] {
        if let v { row[k] = v }
      }
      return row
    }, to: out)
    try ExperimentFiles.writeSummary(s, to: out)
    let families = ["mle", "mle+entropy", "iqlearn", "iqlearn-online"]
    var points = s.order.map { name in
      let p = s.configurations[name]!
      // The family is the colour; the label is the setting (the part in parentheses).
      let setting = name.firstIndex(of: "(").map { String(name[name.index(after: $0)...].dropLast()) } ?? name
      return Plots.Point(label: setting, group: families.firstIndex(of: p.family) ?? 0, x: p.selfBLEU, y: p.score)
    }
    points.append(Plots.Point(label: "demonstrations", group: families.count, x: s.demonstrations.selfBLEU, y: s.demonstrations.score))
    try Data(Plots.front(title: "Task score vs Self-BLEU on held-out prompts (mean, 95% CI over \(s.seeds) seeds)",
                         xLabel: "Self-BLEU among a prompt's samples (lower = more diverse)", yLabel: "task score (exact checker)",
                         groups: families + ["demonstrations"], points, sharedGroup: 0).utf8)
      .write(to: out.appendingPathComponent("front.svg"), options: .atomic)
    try Data(report(s, config: config).utf8).write(to: out.appendingPathComponent("report.md"), options: .atomic)
  }

  static func cell(_ i: Interval?, _ format: String = "%.3f") -> String {
    guard let i else { return "–" }
    return String(format: "\(format) (\(format)–\(format))", i.mean, i.low, i.high)
  }

  /// The results as Markdown: one row per configuration, the demonstrations last.
  public static func table(_ s: IQLearnSummary) -> String {
    var t = "| configuration | score | Self-BLEU ↓ | distinct-1 | distinct-2 | correct answers / prompt | entropy (nats/token) |\n"
    t += "|---|---|---|---|---|---|---|\n"
    for name in s.order {
      let p = s.configurations[name]!
      t += "| \(name) | \(cell(p.score)) | \(cell(p.selfBLEU)) | \(cell(p.distinct1)) | \(cell(p.distinct2)) | "
        + "\(cell(p.correctAnswers, "%.2f")) | \(cell(p.entropy)) |\n"
    }
    let d = s.demonstrations
    t += "| demonstrations | \(cell(d.score)) | \(cell(d.selfBLEU)) | \(cell(d.distinct1)) | \(cell(d.distinct2)) | "
      + "\(cell(d.correctAnswers, "%.2f")) | – |\n"
    t += "\nSpearman ρ with the task score (mean, 95% CI over seeds) of each model's Σ_t r_t and log-likelihood:\n\n"
    t += "| configuration | Σ r_t, own samples | log π, own samples | Σ r_t, contrast pool | log π, contrast pool |\n|---|---|---|---|---|\n"
    for name in s.order {
      let p = s.configurations[name]!
      t += "| \(name) | \(cell(p.rewardSpearman)) | \(cell(p.logLikelihoodSpearman)) | \(cell(p.poolRewardSpearman)) | "
        + "\(cell(p.poolLogLikelihoodSpearman)) |\n"
    }
    return t
  }

  static func report(_ s: IQLearnSummary, config c: IQLearnExperimentConfig) -> String {
    """
    # IQLearn: task performance vs diversity on the letter-pick task

    Task: "write \(c.pick) different letters of a \(c.poolSize)-letter prompt, in alphabetical order" \
    (\(LetterPickTask.binomial(c.poolSize, c.pick)) correct answers per prompt; exact checker). \(c.trainPrompts) training prompts with one \
    demonstration each, answer k (subsets of the first-listed letters first) drawn ∝ (k+1)^−\(c.zipf); \
    \(c.evalPrompts) held-out prompts (letter sets never trained on), \(c.samplesPerPrompt) samples each at temperature \
    \(c.temperature). Every configuration trains the same \(c.layers)-layer GPT-2 (width \(c.hiddenSize)) from the same \
    initialisation per seed for \(c.steps) steps (batch \(c.batchSize), AdamW, learning rate \(c.learningRate), cosine): \
    MLE, MLE with an entropy bonus (loss CE − β·H̄), offline IQLearn (per token −log π + λ(Q − γV′)², γ \(c.gamma)) and \
    online IQLearn (a fraction α of each batch is the policy's own samples, in the value term only). Self-BLEU and \
    distinct-n are over each prompt's samples (sacrebleu's sentence BLEU), averaged over prompts; entropy is the \
    policy's per generated token. The contrast pool is every correct answer of each held-out prompt beside one near \
    miss (reversed, a letter repeated, a letter not in the prompt, or one short). \(s.seeds) seeds; intervals are 95% \
    over seeds.

    \(table(s))
    ![Score vs Self-BLEU](front.svg)

    """
  }
}

extension LetterPickTask {
  static func binomial(_ n: Int, _ k: Int) -> Int { k == 0 ? 1 : (1...k).reduce(1) { $0 * (n - k + $1) / $1 } }
}
