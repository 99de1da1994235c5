import Alignment
import ArgumentParser
import Foundation
import LM
import NN
import Torch

/// Flags every data-driven training command shares beside the model and optimisation groups.
struct DataOptions: ParsableArguments {
  @Option(help: "Training data (JSONL).") var data: String
  @Option(help: "Held-out data (JSONL, same format) for eval/* metrics.") var evalData: String?
  @Option(help: "Write the checkpoint (Hugging Face layout), metrics.jsonl and resumable checkpoints here.")
  var out: String
  @Flag(help: "Print one JSON summary object and nothing else on stdout (progress goes to stderr).") var json = false
}

/// Loads the model and data and runs one method through the shared trainer.
struct MethodRun {
  let model: any CausalLM
  let tokenizer: any TextTokenizer
  let companions: URL
  let seqLen: Int

  init(_ source: ModelSourceOptions, _ optimization: OptimizationOptions) throws {
    (model, tokenizer, companions) = try source.load(seed: optimization.seed)
    seqLen = Swift.min(optimization.seqLen, model.config.maxPositions)
  }

  var padId: Int { tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0 }
  var template: ChatTemplate { (tokenizer as? BPETokenizer)?.chatTemplate ?? ChatTemplate.plain }

  func demonstrations(_ path: String) throws -> [SFTExample] {
    try SFTData.load(URL(fileURLWithPath: path), tokenizer: tokenizer, template: template, maxLength: seqLen)
  }
  func pairs(_ path: String) throws -> [PairExample] {
    try PreferenceData.loadPairs(URL(fileURLWithPath: path), tokenizer: tokenizer, maxLength: seqLen)
  }
  func choices(_ path: String) throws -> [ChoiceExample] {
    try PreferenceData.loadChoices(URL(fileURLWithPath: path), tokenizer: tokenizer, maxLength: seqLen)
  }

  func run<M: TrainingMethod>(_ method: M, _ examples: [M.Example], _ evalExamples: [M.Example],
                              _ optimization: OptimizationOptions, _ data: DataOptions) throws -> TrainingSummary {
    let summary = try runTraining(model: model, method: method, examples: examples, evalExamples: evalExamples,
                                  options: optimization.trainerOptions(examples: examples.count), out: data.out,
                                  resume: optimization.resume, companions: companions)
    return summary
  }
}

struct IFTCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ift", abstract: "Intuitive Fine-Tuning (METHODS §4) on demonstrations.",
    discussion: "λ = 0 and γ = 0 is exactly SFT. Data as for `train sft`.")
  @OptionGroup var source: ModelSourceOptions
  @OptionGroup var optimization: OptimizationOptions
  @OptionGroup var data: DataOptions
  @Option(help: "λ: weight of the model's own greedy prediction in the response's input embeddings.") var lambda = 0.2
  @Option(help: "γ: discount of the future token losses each token's weight accumulates.") var gamma = 0.95
  @Option(help: "Ramp λ linearly from 0 over this many steps.") var lambdaWarmup = 0
  @Option(help: "Standard deviation of Gaussian noise added to λ each step (0: none).") var lambdaNoise = 0.0

  func run() throws {
    let r = try MethodRun(source, optimization)
    let method = IFTMethod(padId: r.padId, lambda: lambda, gamma: gamma, warmup: lambdaWarmup, lambdaNoise: lambdaNoise,
                           seed: optimization.seed)
    let s = try r.run(method, try r.demonstrations(data.data), try data.evalData.map(r.demonstrations) ?? [], optimization, data)
    report(s, method: "ift", out: data.out, json: data.json)
  }
}

struct IQLearnCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "iqlearn", abstract: "IQLearn as TD-regularised MLE (METHODS §5) on demonstrations.",
    discussion: "Per token −log π(y|s) + λ(Q(s,y) − γV(s'))², logits as soft Q-values. λ = 0 is exactly SFT.")
  @OptionGroup var source: ModelSourceOptions
  @OptionGroup var optimization: OptimizationOptions
  @OptionGroup var data: DataOptions
  @Option(help: "λ: weight of the temporal-difference regulariser.") var lambda = 0.1
  @Option(help: "γ: discount of the next state's soft value.") var gamma = 1.0
  @Option(help: "α: fraction of each batch replaced by the policy's own samples, which enter only the value term.")
  var alpha = 0.0

  func validate() throws {
    guard lambda >= 0, (0...1).contains(gamma), (0...1).contains(alpha) else {
      throw ValidationError("--lambda must be ≥ 0, --gamma and --alpha in [0, 1]")
    }
  }

  func run() throws {
    let r = try MethodRun(source, optimization)
    var stops = Set(r.model.config.eosTokenIds)
    if let e = r.tokenizer.eosTokenId { stops.insert(e) }
    let method = IQLearnMethod(padId: r.padId, lambda: lambda, gamma: gamma, alpha: alpha, stopTokens: stops,
                               seed: optimization.seed)
    let s = try r.run(method, try r.demonstrations(data.data), try data.evalData.map(r.demonstrations) ?? [], optimization, data)
    report(s, method: "iqlearn", out: data.out, json: data.json)
  }
}

struct ChoiceCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "choice", abstract: "Fit the model's own likelihood to recorded K-way choices (METHODS §1.1).",
    discussion: """
      P(pick y_i) = softmax_k(log π(y_k|x))[i]: the language model is the reward, so fitting the choices is the \
      fine-tuning. Data: {"prompt","candidates":[…],"choice":i} lines, or {"prompt","chosen","rejected"} as K = 2.
      """)
  @OptionGroup var source: ModelSourceOptions
  @OptionGroup var optimization: OptimizationOptions
  @OptionGroup var data: DataOptions
  @Option(help: "μ: weight of an SFT term on the chosen completions (0: none).") var mu = 0.0

  func run() throws {
    let r = try MethodRun(source, optimization)
    let s = try r.run(ChoiceMethod(padId: r.padId, mu: mu), try r.choices(data.data), try data.evalData.map(r.choices) ?? [],
                      optimization, data)
    report(s, method: "choice", out: data.out, json: data.json)
  }
}

struct RewardModelCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rm", abstract: "Train a reward model (the LM plus a scalar head) with the Bradley–Terry loss.",
    discussion: """
      Data: {"prompt","chosen","rejected"} lines. The head (score.weight) is saved as reward_head.safetensors beside \
      the checkpoint; `train ppo --reward-model DIR` reads both.
      """)
  @OptionGroup var source: ModelSourceOptions
  @OptionGroup var optimization: OptimizationOptions
  @OptionGroup var data: DataOptions

  func run() throws {
    let r = try MethodRun(source, optimization)
    let rm = RewardModel(lm: r.model, generator: Generator(seed: optimization.seed &+ 1))
    let s = try r.run(RewardModelMethod(padId: r.padId, rewardModel: rm), try r.pairs(data.data),
                      try data.evalData.map(r.pairs) ?? [], optimization, data)
    try rm.save(to: URL(fileURLWithPath: data.out), companionsFrom: r.companions)
    report(s, method: "rm", out: data.out, json: data.json)
  }
}

struct DPOCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dpo", abstract: "Direct Preference Optimisation against a frozen reference (METHODS §7).",
    discussion: """
      Data: {"prompt","chosen","rejected"} lines. The reference is the starting model unless --reference names \
      another checkpoint; its log-probs are computed once before training, so it is not kept in memory.
      """)
  @OptionGroup var source: ModelSourceOptions
  @OptionGroup var optimization: OptimizationOptions
  @OptionGroup var data: DataOptions
  @Option(help: "β: strength of the implicit KL constraint.") var beta = 0.1
  @Option(help: "Reference checkpoint directory (default: the starting model).") var reference: String?

  func run() throws {
    let r = try MethodRun(source, optimization)
    let ref: any CausalLM = try reference.map { try Checkpoint.loadModel(from: URL(fileURLWithPath: $0)) } ?? r.model
    let train = ReferencedPair.precompute(try r.pairs(data.data), reference: ref, padId: r.padId)
    let eval = ReferencedPair.precompute(try data.evalData.map(r.pairs) ?? [], reference: ref, padId: r.padId)
    let s = try r.run(DPOMethod(padId: r.padId, beta: beta), train, eval, optimization, data)
    report(s, method: "dpo", out: data.out, json: data.json)
  }
}

struct ORPOCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "orpo", abstract: "Odds-ratio preference optimisation: SFT on chosen + λ·odds-ratio loss (METHODS §7).")
  @OptionGroup var source: ModelSourceOptions
  @OptionGroup var optimization: OptimizationOptions
  @OptionGroup var data: DataOptions
  @Option(help: "λ: weight of the odds-ratio term.") var lambda = 0.1

  func run() throws {
    let r = try MethodRun(source, optimization)
    let s = try r.run(ORPOMethod(padId: r.padId, lambda: lambda), try r.pairs(data.data), try data.evalData.map(r.pairs) ?? [],
                      optimization, data)
    report(s, method: "orpo", out: data.out, json: data.json)
  }
}

struct PPOCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ppo", abstract: "RLHF with PPO: sample, score, and update against a reward (METHODS §7).",
    discussion: """
      Data: {"prompt"} lines. The reward is a reward model (--reward-model, from `train rm`) or a programmatic \
      scorer (--reward-token-fraction TEXT: the fraction of response tokens equal to TEXT's single token). \
      Each iteration samples --prompts-per-rollout responses with the live policy (KV cache), subtracts \
      β·(log π − log π_ref) per token, and runs --epochs of clipped updates.
      """)
  @OptionGroup var source: ModelSourceOptions
  @Option(help: "Prompts (JSONL {\"prompt\"}).") var data: String
  @Option(help: "Write the policy checkpoint and metrics.jsonl here.") var out: String
  @Option(help: "Reward-model checkpoint written by `shatter train rm`.") var rewardModel: String?
  @Option(help: "Reward = fraction of response tokens equal to this text's single token.") var rewardTokenFraction: String?
  @Option(help: "Rollout rounds.") var iterations = 20
  @Option(help: "Prompts sampled per rollout.") var promptsPerRollout = 8
  @Option(help: "Largest number of response tokens.") var responseLength = 16
  @Option(help: "Update epochs per rollout.") var epochs = 4
  @Option(help: "Sequences per update.") var miniBatch = 4
  @Option(help: "Learning rate (AdamW).") var lr = 1e-4
  @Option(help: "β: per-token KL penalty coefficient towards the reference.") var beta = 0.05
  @Option(help: "Policy ratio clip ε.") var clip = 0.2
  @Option(help: "Value-loss coefficient.") var valueCoef = 0.1
  @Option(help: "γ: GAE discount.") var gamma = 1.0
  @Option(help: "λ: GAE trace decay.") var lambda = 0.95
  @Option(help: "Sampling temperature for rollouts.") var temperature = 1.0
  @Option(help: "Seed for prompts order and sampling.") var seed: UInt64 = 0
  @Option(help: "A YAML file of option values; flags override it.") var config: String?
  @Flag(help: "Print one JSON summary object and nothing else on stdout.") var json = false

  func validate() throws {
    guard (rewardModel == nil) != (rewardTokenFraction == nil) else {
      throw ValidationError("give exactly one of --reward-model DIR and --reward-token-fraction TEXT")
    }
    guard iterations > 0, promptsPerRollout > 0, responseLength > 0, epochs > 0, miniBatch > 0, lr > 0 else {
      throw ValidationError("counts and the learning rate must be positive")
    }
  }

  func run() throws {
    let (policy, tokenizer, companions) = try source.load(seed: seed)
    // The reference is a frozen copy of the starting policy.
    let reference = Checkpoint.makeModel(policy.config)
    try reference.load(stateDict: policy.stateDict().mapValues { $0.detached().clone() })
    var stops = Set(policy.config.eosTokenIds)
    if let e = tokenizer.eosTokenId { stops.insert(e) }
    let padId = tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0
    let reward: RewardFunction
    if let dir = rewardModel {
      reward = RewardModelScorer(model: try RewardModel.load(from: URL(fileURLWithPath: dir)), padId: padId)
    } else {
      let ids = tokenizer.encode(rewardTokenFraction!, addSpecialTokens: false)
      guard ids.count == 1 else {
        throw UserError("--reward-token-fraction '\(rewardTokenFraction!)' encodes to \(ids.count) tokens; give one token")
      }
      reward = TokenFractionReward(target: ids[0], stopTokens: stops)
    }
    let prompts = try PreferenceData.loadPrompts(URL(fileURLWithPath: data), tokenizer: tokenizer,
                                                 maxLength: policy.config.maxPositions - responseLength)
    var o = PPOOptions()
    o.iterations = iterations
    o.promptsPerRollout = promptsPerRollout
    o.responseLength = responseLength
    o.epochs = epochs
    o.miniBatch = miniBatch
    o.learningRate = lr
    o.klCoef = beta
    o.clip = clip
    o.valueCoef = valueCoef
    o.gamma = gamma
    o.lambda = lambda
    o.temperature = temperature
    o.seed = seed
    let trainer = PPOTrainer(policy: policy, reference: reference, reward: reward, prompts: prompts, options: o,
                             stopTokens: stops, padId: padId)
    let outURL = URL(fileURLWithPath: out)
    try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
    let log = try MetricsLog(url: outURL.appendingPathComponent("metrics.jsonl"), truncateAfter: 0)
    let progress = ProgressLine(total: iterations)
    let history = try trainer.train { entry in
      try? log.append(step: entry.iteration, entry.metrics)
      let m = entry.metrics
      progress.note(String(format: "ppo %d/%d  reward %.4f ± %.4f  kl %.4f  clip %.3f  entropy %.3f", entry.iteration,
                           entry.iterations, m["reward/mean"] ?? .nan, m["reward/std"] ?? .nan, m["kl"] ?? .nan,
                           m["clip_ratio"] ?? .nan, m["entropy"] ?? .nan))
    }
    try Checkpoint.save(policy, to: outURL, companionsFrom: companions)
    let rewards = history.map { $0["reward/mean"] ?? .nan }
    if json {
      printJSON(["method": "ppo", "steps": history.count, "final_loss": history.last?["loss/policy"] ?? .nan,
                 "loss_history": history.map { $0["loss/policy"] ?? .nan }, "reward_history": rewards,
                 "metrics": (history.last ?? [:]).filter { $0.value.isFinite }])
    } else {
      print(String(format: "ppo: %d iterations, reward %.4f → %.4f; saved %@", history.count, rewards.first ?? .nan,
                   rewards.last ?? .nan, out))
    }
  }
}
