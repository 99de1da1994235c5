import Alignment
import Foundation
import LM
import NN
import Torch
import Worlds

/// IFT's headline claim at small scale (Hua et al. 2024): on a real chat model with LoRA, IFT on the chosen
/// answers alone matches or beats the sequential recipe, SFT then DPO on preference pairs, at the same
/// number of steps and examples. Task: arithmetic word problems (`WordProblems`) with exact answers; the
/// score is held-out exact-match accuracy under greedy decoding. `shatter experiment ift-arithmetic`.
public struct IFTArithmeticConfig: Codable, Sendable, Equatable {
  /// The model as given on the command line (recorded; the caller loads it).
  public var model = "models/smollm2-135m-instruct"
  public var seeds = 3
  /// Training problems per seed (its own draw; the default is one pass, steps × batch size), and the
  /// held-out problems every run is scored on.
  public var trainProblems = 192
  public var evalProblems = 100
  /// Optimizer steps of every method (SFT → DPO splits them), sequences (or pairs) per step.
  public var steps = 24
  public var batchSize = 8
  /// AdamW, constant after a warm-up of a tenth of the steps.
  public var learningRate = 5e-4
  /// DPO's own rate in SFT → DPO: a tenth of the SFT rate, as DPO recipes run far below SFT's (at the shared
  /// rate its replies degenerate into strings of operators: 0.05 accuracy in a one-seed probe).
  public var dpoLearningRate = 5e-5
  public var loraRank = 16
  public var loraAlpha = 32.0
  /// IFT's λ and γ (METHODS §4 defaults) and DPO's β (METHODS §7).
  public var lambda = 0.2
  public var gamma = 0.95
  /// IFT's λ ramps linearly from 0 over this many steps (0: λ from the first step).
  public var lambdaWarmup = 0
  public var dpoBeta = 0.1
  /// The methods to run (a subset of `IFTArithmetic.methods`, in that order).
  public var methods = IFTArithmetic.methods
  /// SFT → DPO: this share of the steps is SFT on the chosen answers, the rest DPO on the pairs.
  public var sftShare = 0.5
  /// Tokens generated per held-out answer.
  public var maxNewTokens = 16

  public init() {}
}

/// One method and seed (or the untrained model), scored on the held-out problems.
public struct IFTArithmeticRun: Codable, Sendable {
  public let method: String
  public let seed: Int
  public let accuracy: Double
  /// Per held-out problem: was the greedy answer exact.
  public let correct: [Bool]
  /// The greedy replies, in the held-out problems' order.
  public let replies: [String]
  public let seconds: Double
}

public struct IFTArithmeticSummary: Codable, Sendable {
  /// Method → held-out accuracy over seeds (the untrained model: its Wilson interval over problems).
  public let accuracy: [String: Interval]
  /// IFT's accuracy minus each other method's, paired by seed.
  public let iftMinus: [String: Interval]
  public let seeds: Int
  /// The runs' own time, summed (the same whether the experiment ran at once or was resumed).
  public let seconds: Double
}

public enum IFTArithmetic {
  public static let methods = ["sft", "ift", "sft→dpo"]

  static func fileName(_ method: String) -> String { method.replacingOccurrences(of: "→", with: "-") }

  /// The training sequences of a problem: its prompt with the correct and with the wrong answer as replies.
  static func pair(_ p: WordProblem, chat: ChatModel) throws -> PairExample {
    func sequence(_ reply: String) throws -> TokenSequence {
      guard let s = SFTData.chatSequence([ChatMessage(role: "user", content: p.prompt), ChatMessage(role: "assistant", content: reply)],
                                         tokenizer: chat.tokenizer, template: chat.template)
      else { throw ExperimentError("the model's chat template does not extend a prompt with its reply") }
      return s
    }
    return PairExample(chosen: try sequence(p.solution), rejected: try sequence(p.wrongSolution))
  }

  /// Greedy replies to `problems`.
  static func evaluate(_ chat: ChatModel, _ problems: [WordProblem], maxNewTokens: Int, batch: Int = 20) throws -> [String] {
    let padId = chat.tokenizer.padTokenId ?? 0
    let sampler = CompletionSampler(tokenizer: chat.tokenizer, stopTokens: chat.stopTokens, padId: padId,
                                    maxNewTokens: maxNewTokens, temperature: 0)
    var out: [String] = []
    for start in stride(from: 0, to: problems.count, by: batch) {
      let chunk = Array(problems[start..<Swift.min(start + batch, problems.count)])
      let prompts = try chunk.map { PromptExample(tokens: try chat.encode([ChatMessage(role: "user", content: $0.prompt)]).ids) }
      let completions = sampler.sample(prompts, model: chat.model, generator: Generator(seed: 0))
      out += completions.map(sampler.text)
    }
    return out
  }

  /// Trains `method` from the base model with a fresh LoRA adapter (taken off again afterwards) and scores it.
  static func train(_ method: String, seed: Int, config c: IFTArithmeticConfig, chat: ChatModel, pairs: [PairExample],
                    eval: [WordProblem]) throws -> [String] {
    let model = chat.model
    let padId = chat.tokenizer.padTokenId ?? 0
    try Adapter.attach(LoRAConfig(rank: c.loraRank, alpha: c.loraAlpha, family: model.config.family), to: model, seed: UInt64(seed))
    defer { Adapter.detach(model) }
    func options(_ steps: Int, learningRate: Double? = nil) -> TrainerOptions {
      var o = TrainerOptions()
      o.steps = steps
      o.batchSize = c.batchSize
      o.learningRate = learningRate ?? c.learningRate
      o.schedule = .constant
      o.warmup = Swift.max(1, c.steps / 10)
      o.seed = UInt64(seed) &+ 0x77
      return o
    }
    let chosen = pairs.map(\.chosen)
    let sftSteps = Swift.max(1, Int((Double(c.steps) * c.sftShare).rounded()))
    switch method {
    case "sft": _ = try Trainer(model: model, method: SFTMethod(padId: padId), examples: chosen, options: options(c.steps)).train()
    case "ift":
      _ = try Trainer(model: model, method: IFTMethod(padId: padId, lambda: c.lambda, gamma: c.gamma, warmup: c.lambdaWarmup, seed: UInt64(seed)),
                      examples: chosen, options: options(c.steps)).train()
    default:
      // The first sftSteps × batch problems' chosen answers for SFT, the rest's pairs for DPO (with the
      // default one pass, every problem is seen once either way).
      let split = Swift.min(pairs.count - 1, sftSteps * c.batchSize)
      _ = try Trainer(model: model, method: SFTMethod(padId: padId), examples: Array(chosen.prefix(split)), options: options(sftSteps)).train()
      // DPO's reference is the SFT model (the adapter folded into a frozen copy).
      let referenced = ReferencedPair.precompute(Array(pairs.dropFirst(split)), reference: Checkpoint.frozenCopy(of: model), padId: padId)
      if c.steps > sftSteps {
        _ = try Trainer(model: model, method: DPOMethod(padId: padId, beta: c.dpoBeta), examples: referenced,
                        options: options(c.steps - sftSteps, learningRate: c.dpoLearningRate)).train()
      }
    }
    return try evaluate(chat, eval, maxNewTokens: c.maxNewTokens)
  }

  /// The untrained model, then every method for every seed (each run saved under runs/ as it finishes, so an
  /// interrupted experiment resumes with the runs it has); writes metrics.jsonl, summary.json, report.md and
  /// accuracy.svg.
  public static func run(_ config: IFTArithmeticConfig, chat: ChatModel, out: URL, progress: @escaping (String) -> Void = { _ in })
    throws -> IFTArithmeticSummary
  {
    guard Adapter.isAttached(chat.model) == false else { throw ExperimentError("the model already has an adapter; give the base model") }
    guard !config.methods.isEmpty, config.methods.allSatisfy(methods.contains) else {
      throw ExperimentError("methods must be some of \(methods.joined(separator: ", ")) (got \(config.methods.joined(separator: ", ")))")
    }
    let fm = FileManager.default
    let runsDir = out.appendingPathComponent("runs")
    try ExperimentFiles.claim(out, config: config)
    try fm.createDirectory(at: runsDir, withIntermediateDirectories: true)
    let eval = WordProblems.generate(count: config.evalProblems, seed: 0xE7A1)
    let heldOut = Set(eval.map(\.question))
    func cached(_ method: String, seed: Int, _ make: () throws -> [String]) throws -> IFTArithmeticRun {
      let (r, made) = try ExperimentFiles.run(at: runsDir.appendingPathComponent("\(fileName(method))-seed\(seed).json")) {
        let t0 = Date()
        let replies = try make()
        let correct = zip(eval, replies).map { ExactMatchReward.matches($1, answer: "\($0.answer)") }
        return IFTArithmeticRun(method: method, seed: seed, accuracy: Double(correct.filter { $0 }.count) / Double(Swift.max(1, correct.count)),
                                correct: correct, replies: replies, seconds: Date().timeIntervalSince(t0))
      }
      if made { progress(String(format: "seed %d %@: held-out accuracy %.3f (%.0f s)", seed, method, r.accuracy, r.seconds)) }
      return r
    }
    var runs = [try cached("base", seed: 0) { try evaluate(chat, eval, maxNewTokens: config.maxNewTokens) }]
    for seed in 0..<config.seeds {
      let problems = WordProblems.generate(count: config.trainProblems, seed: UInt64(seed), excluding: heldOut)
      let pairs = try problems.map { try pair($0, chat: chat) }
      for m in methods where config.methods.contains(m) {
        runs.append(try cached(m, seed: seed) { try train(m, seed: seed, config: config, chat: chat, pairs: pairs, eval: eval) })
      }
    }
    let summary = summarize(runs, seeds: config.seeds, seconds: runs.reduce(0) { $0 + $1.seconds })
    try ExperimentFiles.writeMetrics(runs.map { ["method": $0.method, "seed": $0.seed, "accuracy": $0.accuracy, "seconds": $0.seconds] },
                                     to: out)
    try ExperimentFiles.writeSummary(summary, to: out)
    let bars = (["base"] + methods).compactMap { m in summary.accuracy[m].map { Plots.Bar(label: m == "base" ? "untrained" : m, value: $0) } }
    try Data(Plots.bars(title: "Held-out exact-match accuracy on arithmetic word problems (95% CI over \(config.seeds) seeds)",
                        xLabel: "method (same steps and examples; LoRA on \(config.model.split(separator: "/").last ?? ""))",
                        yLabel: "exact-match accuracy (greedy)", bars, yMax: 1).utf8)
      .write(to: out.appendingPathComponent("accuracy.svg"), options: .atomic)
    try Data(report(summary, config: config).utf8).write(to: out.appendingPathComponent("report.md"), options: .atomic)
    return summary
  }

  static func summarize(_ runs: [IFTArithmeticRun], seeds: Int, seconds: Double) -> IFTArithmeticSummary {
    var accuracy: [String: Interval] = [:], iftMinus: [String: Interval] = [:]
    if let base = runs.first(where: { $0.method == "base" }) {
      accuracy["base"] = Interval.wilson(successes: base.correct.filter { $0 }.count, trials: base.correct.count)
    }
    for m in methods {
      let mine = runs.filter { $0.method == m }
      if !mine.isEmpty { accuracy[m] = Interval(mine.map(\.accuracy)) }
    }
    let ift = Dictionary(uniqueKeysWithValues: runs.filter { $0.method == "ift" }.map { ($0.seed, $0.accuracy) })
    for m in methods where m != "ift" {
      let d = runs.filter { $0.method == m }.compactMap { r in ift[r.seed].map { $0 - r.accuracy } }
      if !d.isEmpty { iftMinus[m] = Interval(d) }
    }
    return IFTArithmeticSummary(accuracy: accuracy, iftMinus: iftMinus, seeds: seeds, seconds: seconds)
  }

  public static func table(_ s: IFTArithmeticSummary) -> String {
    var t = "| method | held-out accuracy (95% CI) | IFT minus it, paired by seed (95% CI) |\n|---|---|---|\n"
    for m in ["base"] + methods {
      guard let a = s.accuracy[m] else { continue }
      let paired = s.iftMinus[m].map { String(format: "%+.3f (%+.3f…%+.3f)", $0.mean, $0.low, $0.high) } ?? ""
      t += String(format: "| %@ | %.3f (%.3f–%.3f) | %@ |\n", m == "base" ? "untrained" : m, a.mean, a.low, a.high, paired)
    }
    return t
  }

  static func report(_ s: IFTArithmeticSummary, config c: IFTArithmeticConfig) -> String {
    let sftSteps = Swift.max(1, Int((Double(c.steps) * c.sftShare).rounded()))
    return """
      # IFT against SFT → DPO on a real model: arithmetic word problems

      Model \(c.model) with a fresh LoRA adapter per run (rank \(c.loraRank), α \(c.loraAlpha), PEFT's default targets). \
      Each seed draws \(c.trainProblems) training problems (one addition or subtraction told as a story; the \
      demonstration is the calculation, e.g. "12 - 5 = 7", and the pair's rejected reply the other operation's); \(c.evalProblems) held-out problems, scored by exact match of \
      the last number in the greedy reply (GRPO's `exact-match` reward). Every method takes \(c.steps) optimizer steps of \(c.batchSize) examples \
      (AdamW, learning rate \(c.learningRate), constant after warm-up): SFT and IFT (λ \(c.lambda)\(c.lambdaWarmup > 0 ? " ramped over \(c.lambdaWarmup) steps" : ""), γ \(c.gamma)) on the \
      chosen answers; SFT → DPO is \(sftSteps) steps of SFT on the chosen answers, then \
      \(c.steps - sftSteps) of DPO (β \(c.dpoBeta), learning rate \(c.dpoLearningRate), the SFT model as reference) on the \
      pairs. The untrained row's \
      interval is Wilson's over problems; the others are 95% over \(s.seeds) seeds. The runs took \(Int(s.seconds)) s.

      \(table(s))
      ![Accuracy](accuracy.svg)

      """
  }
}
