import Agents
import Alignment
import ArgumentParser
import Experiments
import LM
import Foundation
import Worlds

extension SelectionRule: ExpressibleByArgument {}
extension EpistemicKind: ExpressibleByArgument {}

struct ExperimentCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "experiment", abstract: "Run a paper's experiment as a named, seeded, resumable run with a report.",
    subcommands: [InclusiveCommand.self, CELCommand.self, IFTFrozenLakeCommand.self, IQLearnCommand.self, IFTArithmeticCommand.self, RLPExperimentCommand.self])
}

/// Runs an experiment and prints its outcome: summary.json's content with `--json`, else its table and
/// where the report is; an `ExperimentError` (a bad configuration, a folder of another one) is the user's.
func runExperiment<S: Encodable>(json: Bool, out: String, _ run: () throws -> S, table: (S) -> String) throws {
  let summary: S
  do { summary = try run() } catch let e as ExperimentError { throw UserError(e.description) }
  if json {
    try printJSON(encoding: summary)
  } else {
    print(table(summary))
    print("report: \(out)/report.md")
  }
}

extension ChoiceModelKind: ExpressibleByArgument {}

/// Every flag's default is `InclusiveConfig`'s own (shown by --help), so the defaults live in one place.
struct InclusiveCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inclusive",
    abstract: "Inclusive fine-tuning with active exploration on the didactic population (METHODS §1–§3).",
    discussion: """
      Pre-trains a small transformer on a prior biased towards the majority type, then for every query-selection \
      rule and seed fits the model's own likelihood to simulated people's choices, jointly with an epistemic head, \
      and records KL(p*‖π) after each batch; the classic pipeline (separate reward model, then an exact \
      KL-regularised policy update) runs on passive queries as the baseline. Finished runs under --out are kept \
      and skipped, so an interrupted experiment continues where it stopped. Writes metrics.jsonl, summary.json, \
      report.md and SVG plots.
      """)
  static let d = InclusiveConfig()
  /// The --model world's defaults, for the help.
  static let t = InclusiveConfig.text(model: "")

  @Option(help: "Directory for the runs and the report.") var out = "out/inclusive"
  @Option(help: "World and fit together: default (2 prompts, V 4, L 2, K 2, one Luce rule) or methods (METHODS' size: 4 prompts, V 8, L 3, sharpness 2, K 3, a mixture of latent types); the flags below override it.")
  var preset = "default"
  @Option(help: "A chat model (checkpoint directory or .gguf file, e.g. models/smollm2-135m-instruct): the natural-language world instead of the didactic one, 4 everyday questions with 8 written answers each, fine-tuned through a LoRA adapter per run; its defaults: K \(t.population.candidates), budget \(t.budget), batch \(t.batchSize), \(t.updateSteps) update steps, \(t.seeds) seeds, rules \(t.rules.map(\.rawValue).joined(separator: ", ")) (flags given override them).")
  var model: String?
  @Option(help: "LoRA rank of the --model world's adapter.") var loraR = d.loraRank
  @Option(help: "β of the --model world's policy π(y|x) ∝ exp(β · mean token log-probability of y).") var textScale = d.textScale
  @Option(help: "Prompts of the didactic population (default: the preset's).") var prompts: Int?
  @Option(help: "Symbols per response position, V (default: the preset's).") var vocabulary: Int?
  @Option(help: "Tokens per response, L; the response space has V^L elements (default: the preset's).") var length: Int?
  @Option(help: "Comma-separated weights of the person types, one per type.")
  var weights = d.population.weights.map { String(describing: $0) }.joined(separator: ",")
  @Option(help: "How peaked each type's preferences are (default: the preset's).") var sharpness: Double?
  @Option(help: "Share of the majority type in the pre-training prior p_0, the rest uniform.") var priorMix = d.population.priorMix
  @Option(help: "Seed of the population itself: where each type's preferences are centred (--seeds are the runs' seeds).")
  var worldSeed = d.population.seed
  @Option(help: "K, responses shown per query (default: the preset's).") var shown: Int?
  @Option(help: "The choice model: luce (one Luce rule on log π) or mixture (latent person types the model predicts; its policy is their marginal). Default: the preset's.")
  var choiceModel: ChoiceModelKind?
  @Option(help: "Latent types of the mixture choice model.") var modelTypes = d.modelTypes
  @Option(help: "Seeds per rule (fewer make the queries-to-target comparison mostly noise). Default: \(d.seeds); \(t.seeds) with --model.") var seeds: Int?
  @Option(help: "Queries per run (default: \(d.budget); \(t.budget) with --model).") var budget: Int?
  @Option(help: "Queries between model updates (default: \(d.batchSize); \(t.batchSize) with --model).") var batchSize: Int?
  @Option(help: "Candidates sampled from the policy per query, from which the rule picks K (default: \(d.candidates), every answer with --model).") var candidates: Int?
  @Option(help: "Epistemic head: epinet or ensemble.") var epistemic = d.epistemic
  @Option(help: "Index samples z per example and per selection (ensemble size for ensemble).") var indexSamples = d.indexSamples
  @Option(help: "β, the scale of the epistemic head's frozen prior network.") var priorScale = d.priorScale
  @Option(help: "Comma-separated selection rules (passive is always run): passive (uniform), boltzmann (∝ exp(mean score)), infomax (the pair whose preference varies most over indices), double_ts (argmax under two indices), contrast (best against worst by mean score), ts_contrast (best under one index against worst under another), expected_kl (the K whose answer most reduces the expected KL from the head's posterior samples to the policy). Default: all; \(t.rules.map(\.rawValue).joined(separator: ",")) with --model.")
  var rules: String?
  @Option(help: "Target KL (default: the passive rule's final KL).") var targetKl: Double?
  @Option(help: "Optimizer steps after each batch of queries, on every query so far (default: \(d.updateSteps); \(t.updateSteps) with --model).") var updateSteps: Int?
  @Option(help: "AdamW learning rate of the feedback updates (default: \(d.learningRate)).") var learningRate: Double?
  @Option(help: "Keep every Nth answered query out of the fit as validation; each update keeps the step with the lowest validation choice log-loss (early stopping). 0: none. Default: the preset's (0 default, 5 methods).")
  var holdOutEvery: Int?
  @Option(help: "μ: weight of KL(π_pre‖π) in units of queries; its pull fades as 1/queries (default: \(d.priorStrength); \(t.priorStrength) with --model).") var priorStrength: Double?
  @Option(help: "Pre-training steps on p_0.") var pretrainSteps = d.pretrainSteps
  @Option(help: "β of the baseline's KL-regularised policy update π ∝ π_pre·exp(r/β).") var baselineBeta = d.baselineBeta
  @Option(help: "Transformer layers.") var layers = d.layers
  @Option(help: "A YAML file of these options (e.g. `seeds: 5`); flags override it.") var config: String?
  @Flag(help: "Print summary.json's content as one JSON object on stdout (progress goes to stderr).") var json = false

  func run() throws {
    var c: InclusiveConfig
    switch preset {
    case _ where model != nil: c = InclusiveConfig.text(model: model!)
    case "default": c = InclusiveConfig()
    case "methods": c = InclusiveConfig.methods
    default: throw UserError("--preset \(preset): expected default or methods")
    }
    // A flag given overrides the preset's value.
    c.seeds = seeds ?? c.seeds
    c.budget = budget ?? c.budget; c.batchSize = batchSize ?? c.batchSize
    c.candidates = candidates ?? c.candidates; c.epistemic = epistemic
    c.indexSamples = indexSamples; c.priorScale = priorScale
    c.updateSteps = updateSteps ?? c.updateSteps
    c.learningRate = learningRate ?? c.learningRate
    c.priorStrength = priorStrength ?? c.priorStrength
    c.pretrainSteps = pretrainSteps; c.baselineBeta = baselineBeta; c.layers = layers
    c.loraRank = loraR; c.textScale = textScale
    c.population.prompts = prompts ?? c.population.prompts; c.population.vocabulary = vocabulary ?? c.population.vocabulary
    c.population.length = length ?? c.population.length; c.population.sharpness = sharpness ?? c.population.sharpness
    c.population.priorMix = priorMix; c.population.seed = worldSeed
    c.population.candidates = shown ?? c.population.candidates
    c.choiceModel = choiceModel ?? c.choiceModel; c.modelTypes = modelTypes
    c.holdOutEvery = holdOutEvery ?? c.holdOutEvery
    c.population.weights = try weights.split(separator: ",").map {
      guard let w = Double($0.trimmingCharacters(in: .whitespaces)) else { throw UserError("--weights: '\($0)' is not a number") }
      return w
    }
    c.population.types = c.population.weights.count
    c.targetKL = targetKl
    c.rules = try (rules ?? c.rules.map(\.rawValue).joined(separator: ",")).split(separator: ",").map { name in
      guard let r = SelectionRule(rawValue: String(name)) else {
        throw UserError("--rules: unknown rule '\(name)' (\(SelectionRule.allCases.map(\.rawValue).joined(separator: ", ")))")
      }
      return r
    }
    var chat: ChatModel? = nil
    if let model {
      guard FileManager.default.fileExists(atPath: model) else { throw UserError("--model \(model) does not exist (run `make model`, or give a path)") }
      let loaded = try LoadedModel(model)
      chat = ChatModel(model: loaded.model, tokenizer: loaded.tokenizer, template: chatTemplate(of: loaded.tokenizer))
    }
    let summary = try InclusiveRunner.run(c, chat: chat, out: URL(fileURLWithPath: out), progress: progressLines())
    if json {
      printJSON(InclusiveRunner.summaryJSON(summary))
    } else {
      print(InclusiveRunner.table(summary))
      if let line = InclusiveRunner.designBoundLine(summary) { print(line + "\n") }
      print("report: \(out)/report.md")
    }
  }
}

/// Every default is `CELConfig`'s own, so the defaults live in one place.
struct CELCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cel",
    abstract: "CEL against its ablations and baselines on Frozen Lake, Minesweeper and Sokoban (METHODS §8).",
    discussion: """
      Every agent (cel, cel-no-rules, cel-no-playbook, cel-no-lookahead, zero-shot, rules, random, solver) plays \
      every game for --seeds independent runs of --episodes episodes; CEL carries its rules and playbook from \
      one episode to the next within a run, and every agent of a seed meets the same boards. Runs go on at \
      most --parallel at a time; the local model decodes their calls together in one batch. Finished episodes \
      are kept under --out/runs, so an interrupted experiment continues where it stopped. Writes \
      metrics.jsonl, summary.json, report.md, success and return SVG plots per game, knowledge.md (the final \
      rules and playbooks) and a JSONL transcript of every model call per run.
      """)
  static let d = CELConfig.defaultSettings

  @Option(help: "Directory for the runs and the report.") var out = "out/cel"
  @Option(help: "Comma-separated games: frozenlake, minesweeper, sokoban (each adds about 20 minutes on two cores with the 135M model).")
  var games = "frozenlake"
  @Option(help: "Comma-separated agents, or all: \(AgentKind.allCases.map(\.rawValue).joined(separator: ", ")).")
  var agents = "all"
  @Option(help: "Independent runs per game and agent.") var seeds = CELConfig.defaultSeeds
  @Option(help: "Episodes per run; CEL's rules and playbook carry over between them.") var episodes = CELConfig.defaultEpisodes
  @Option(help: "Frozen Lake map: 4x4 or 8x8.") var map = "4x4"
  @Flag(inversion: .prefixedNo, help: "Frozen Lake: slippery ice.") var slippery = false
  @Option(help: "Minesweeper board as ROWSxCOLUMNS.") var minesweeper = "5x5"
  @Option(help: "Minesweeper: mines.") var mines = 3
  @Option(help: "Sokoban room as ROWSxCOLUMNS (generated by reverse play, a new room per episode).") var sokoban = "6x6"
  @Option(help: "Sokoban: boxes per room.") var boxes = 1
  @Option(help: "Steps per episode at most (also Minesweeper's and Sokoban's turn limit).") var maxSteps = d.maxSteps
  @Option(help: "Legal actions CEL looks ahead at per step.") var candidates = d.candidates
  @Option(help: "Tokens per world-model, value and act reply.") var maxTokens = d.maxTokens
  @Option(help: "Tokens per rules or playbook rewrite.") var reflectionTokens = d.reflectionTokens
  @Option(help: "Sampling temperature of the model's replies (0: greedy).") var temperature = d.temperature
  @Option(help: "Runs played at the same time.") var parallel = 8
  @Option(help: "A folder of prompt templates replacing the built-in ones file by file (see `shatter play --help`).")
  var prompts: String?
  @OptionGroup var source: AgentModelOptions
  @Option(help: "Also train the local model's LoRA weights from episode outcomes: grpo (each model agent gets a trained arm, same seeds).")
  var train: String?
  @Option(help: "--train: plays of each episode's board that form a GRPO group.") var trainGroup = CELTraining().group
  @Option(help: "--train: model calls per play trained on (a seeded sample).") var trainCalls = CELTraining().callsPerPlay
  @Option(help: "--train: learning rate of the LoRA adapter (AdamW, constant).") var trainLr = CELTraining().learningRate
  @Option(help: "--train: LoRA rank (α is twice the rank).") var trainLoraR = CELTraining().loraRank
  @Flag(help: "Print summary.json's content as one JSON object on stdout (progress goes to stderr).") var json = false

  func validate() throws {
    if let train, train != "grpo" { throw ValidationError("--train \(train): the one training method is grpo") }
    guard trainGroup >= 2 else { throw ValidationError("--train-group must be at least 2") }
    guard trainCalls >= 1, trainLr > 0, trainLoraR >= 1 else {
      throw ValidationError("--train-calls and --train-lora-r must be at least 1 and --train-lr positive")
    }
    if train != nil && source.endpoint != nil { throw ValidationError("--train grpo trains the local model: give --model, not --endpoint") }
    guard seeds >= 1, episodes >= 1, maxSteps >= 1, candidates >= 1, maxTokens >= 1, reflectionTokens >= 1, parallel >= 1 else {
      throw ValidationError("--seeds, --episodes, --max-steps, --candidates, --max-tokens, --reflection-tokens and --parallel must be at least 1")
    }
    guard temperature >= 0 else { throw ValidationError("--temperature must be at least 0") }
    if source.endpoint != nil && source.model != nil { throw ValidationError("give --model or --endpoint, not both") }
  }

  func run() throws {
    let kinds: [AgentKind] = try agents == "all" ? AgentKind.allCases : agents.split(separator: ",").map { name in
      guard let k = AgentKind(rawValue: String(name)) else {
        throw ValidationError("--agents: unknown agent '\(name)' (\(AgentKind.allCases.map(\.rawValue).joined(separator: ", ")))")
      }
      return k
    }
    func size(_ text: String, _ flag: String) throws -> (Int, Int) {
      let parts = text.lowercased().split(separator: "x").compactMap { Int($0) }
      guard parts.count == 2, parts.allSatisfy({ $0 >= 2 }) else { throw ValidationError("\(flag) \(text): expected ROWSxCOLUMNS, e.g. 5x5") }
      return (parts[0], parts[1])
    }
    let specs: [GameSpec] = try games.split(separator: ",").map { name in
      switch name {
      case "frozenlake":
        guard ["4x4", "8x8"].contains(map) else { throw ValidationError("--map \(map): expected 4x4 or 8x8") }
        return .frozenLake(map: map, size: 4, frozenProbability: 0.8, slippery: slippery, mapSeed: 0)
      case "minesweeper":
        let (r, c) = try size(minesweeper, "--minesweeper")
        return .minesweeper(rows: r, columns: c, mines: mines, maxTurns: maxSteps)
      case "sokoban":
        let (r, c) = try size(sokoban, "--sokoban")
        return .sokoban(rows: r, columns: c, boxes: boxes, maxTurns: maxSteps, levelFile: nil)
      default: throw ValidationError("--games: unknown game '\(name)' (frozenlake, minesweeper, sokoban)")
      }
    }
    let backend = kinds.contains(where: \.usesModel) ? try source.backend() : nil
    var settings = CELConfig.defaultSettings
    settings.maxSteps = maxSteps
    settings.candidates = candidates
    settings.maxTokens = maxTokens
    settings.reflectionTokens = reflectionTokens
    settings.temperature = temperature
    var training: CELTraining?
    if train != nil {
      var t = CELTraining()
      t.group = trainGroup
      t.callsPerPlay = trainCalls
      t.learningRate = trainLr
      t.loraRank = trainLoraR
      t.loraAlpha = Double(2 * trainLoraR)
      training = t
    }
    let config = CELConfig(games: specs, agents: kinds, seeds: seeds, episodes: episodes, settings: settings,
                           prompts: try CELPrompts.load(overrides: prompts.map { URL(fileURLWithPath: $0) }),
                           backend: backend?.name ?? "none", train: training)
    let (out, parallel) = (URL(fileURLWithPath: self.out), self.parallel)
    let progress = progressLines()
    let summary = try blocking { try await CELRunner.run(config, backend: backend, out: out, parallel: parallel, progress: progress) }
    if json {
      try printJSON(encoding: summary)
    } else {
      print(CELRunner.table(summary, config: config))
      print("report: \(self.out)/report.md")
    }
  }
}
