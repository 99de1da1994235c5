import Agents
import Foundation
import Worlds

/// `shatter experiment cel`: every agent (CEL, its ablations, the baselines) on every game, for several
/// seeds of a few episodes each (METHODS §8). CEL carries its rules and playbook from one episode to the
/// next within a seed, so success against episode is its learning curve.
public struct CELConfig: Codable, Sendable, Equatable {
  public var games: [GameSpec]
  public var agents: [AgentKind]
  /// Independent runs per (game, agent); seed s plays episodes of game seeds s·1000 + e.
  public var seeds: Int
  public var episodes: Int
  public var settings: AgentSettings
  public var prompts: CELPrompts
  /// The model's name, so that runs of another model under the same folder are refused.
  public var backend: String
  /// Parameter training of the local model from episode outcomes (`--train grpo`): each model agent gets a
  /// trained arm beside its untrained one, same seeds (nil: none).
  public var train: CELTraining?

  public init(games: [GameSpec] = CELConfig.defaultGames, agents: [AgentKind] = AgentKind.allCases,
              seeds: Int = CELConfig.defaultSeeds, episodes: Int = CELConfig.defaultEpisodes, settings: AgentSettings = CELConfig.defaultSettings, prompts: CELPrompts, backend: String,
              train: CELTraining? = nil) {
    self.train = train
    self.games = games
    self.agents = agents
    self.seeds = seeds
    self.episodes = episodes
    self.settings = settings
    self.prompts = prompts
    self.backend = backend
  }

  public static let defaultSeeds = 3
  public static let defaultEpisodes = 3

  /// The deterministic 4×4 lake: every agent × 3 seeds × 3 episodes takes about 18 minutes on two cores
  /// with the 135M model. Minesweeper (5×5, 3 mines) and Sokoban (6×6, one box) — the published setups'
  /// sizes (METHODS §11) — are one flag away and take about as long again each.
  public static let defaultGames: [GameSpec] = [
    .frozenLake(map: "4x4", size: 4, frozenProbability: 0.8, slippery: false, mapSeed: 0),
  ]

  /// Budgets that keep the default grid within half an hour on two cores with the 135M model.
  public static var defaultSettings: AgentSettings {
    var s = AgentSettings()
    s.maxSteps = 8
    s.maxTokens = 32
    s.reflectionTokens = 96
    return s
  }

  /// The arms reported: every agent, then the trained arm of each model agent when training.
  public var arms: [String] {
    agents.map(\.rawValue) + (train == nil ? [] : agents.filter(\.usesModel).map(CELTraining.arm))
  }

  /// The game seed of seed `s`'s episode `e`: every agent of a seed meets the same boards.
  public static func gameSeed(_ s: Int, episode e: Int) -> UInt64 { UInt64(s) &* 1000 &+ UInt64(e) }
  /// The run seed a game seed belongs to (`gameSeed`'s inverse).
  static func runSeed(of record: EpisodeRecord) -> Int { Int(record.seed / 1000) }
}

/// What one agent achieved on one game over all seeds and episodes.
public struct CELAgentSummary: Codable, Sendable {
  /// Share of episodes won, with its Wilson interval over all seeds × episodes.
  public let success: Interval
  /// Share of seeds that won their last episode (what the agent knows at the end).
  public let lastEpisodeSuccess: Interval
  /// Mean return per episode, with a 95% interval over the seeds' means.
  public let meanReturn: Interval
  public let successByEpisode: [Interval]
  public let returnByEpisode: [Interval]
  public let meanSteps: Double
  public let episodes: Int
  public let modelCalls: Int
  public let retries: Int
  /// Replies that named nothing usable after their retry (a random legal action was taken instead).
  public let fallbacks: Int
}

public struct CELSummary: Codable, Sendable {
  public let backend: String
  public let seeds: Int
  public let episodes: Int
  /// game name → its description ("Frozen Lake 4x4").
  public let descriptions: [String: String]
  /// game name → agent name → summary.
  public let games: [String: [String: CELAgentSummary]]
  public let seconds: Double
}

public enum CELRunner {
  /// Runs every (game, agent, seed), at most `parallel` at a time (a batching backend decodes their calls
  /// together), resumably: each finished episode is a line of `runs/<game>-<agent>-seed<s>.jsonl`, and a
  /// run that stopped continues from its last finished episode with the rules and playbook it had. Writes
  /// metrics.jsonl, summary.json, report.md, SVG plots per game, knowledge.md (the final rules and
  /// playbooks) and one transcript of model calls per run under transcripts/.
  ///
  /// With `config.train`, the trained arms run after the others, one at a time (they change the local
  /// model's weights), each with a fresh LoRA adapter saved under adapters/ and its trainer's metrics under
  /// train/.
  public static func run(_ config: CELConfig, backend: (any ChatBackend)?, out: URL, parallel: Int = 8,
                         progress: @escaping @Sendable (String) -> Void = { _ in }) async throws -> CELSummary {
    let started = Date()
    let fm = FileManager.default
    let runs = out.appendingPathComponent("runs"), transcripts = out.appendingPathComponent("transcripts")
    try fm.createDirectory(at: runs, withIntermediateDirectories: true)
    try fm.createDirectory(at: transcripts, withIntermediateDirectories: true)
    let names = config.games.map(\.name)
    guard Set(names).count == names.count else { throw ExperimentError("each game may appear once (got \(names.joined(separator: ", ")))") }
    if config.agents.contains(where: \.usesModel) && backend == nil {
      throw ExperimentError("the agents \(config.agents.filter(\.usesModel).map(\.rawValue).joined(separator: ", ")) need a model")
    }
    let local = backend as? LocalChatBackend
    if let train = config.train {
      guard local != nil else { throw ExperimentError("--train grpo trains the local model's weights: give --model, not --endpoint") }
      guard config.agents.contains(where: \.usesModel) else { throw ExperimentError("--train grpo needs a model agent in --agents") }
      guard train.group >= 2 else { throw ExperimentError("--train-group must be at least 2 (GRPO's advantages are relative to the group)") }
    }
    try ExperimentFiles.claim(out, config: config)

    struct Job: Sendable { let game: GameSpec, agent: AgentKind, seed: Int, trained: Bool
      var arm: String { trained ? CELTraining.arm(agent) : agent.rawValue }
      var key: String { "\(game.name)-\(arm)-seed\(seed)" }
    }
    // Model-free agents first: they finish at once and show the ceiling and the floor early.
    func grid(_ agents: [AgentKind], trained: Bool) -> [Job] {
      config.games.flatMap { g in agents.flatMap { a in (0..<config.seeds).map { Job(game: g, agent: a, seed: $0, trained: trained) } } }
    }
    let jobs = grid(config.agents.sorted { !$0.usesModel && $1.usesModel }, trained: false)
    let trained = config.train == nil ? [] : grid(config.agents.filter(\.usesModel), trained: true)
    let total = (jobs.count + trained.count) * config.episodes
    let finished = Locked(0)
    @Sendable func announce(_ job: Job, _ record: EpisodeRecord, _ resumed: Bool) {
      let n: Int = finished.mutate { $0 += 1; return $0 }
      progress("[\(n)/\(total)] \(job.game.name) \(job.arm) seed \(job.seed) episode \(record.episode + 1): "
        + "\(record.won ? "won" : "not won"), \(record.steps) steps\(resumed ? " (kept)" : ""), "
        + "\(Int(Date().timeIntervalSince(started))) s")
    }
    let results = try await withThrowingTaskGroup(of: (String, [EpisodeRecord]).self) { group in
      var next = 0, out: [String: [EpisodeRecord]] = [:]
      func start() {
        let job = jobs[next]
        next += 1
        group.addTask {
          let records = try await runJob(job.game, agent: job.agent, seed: job.seed, config: config, backend: backend,
                                         file: runs.appendingPathComponent(job.key + ".jsonl"),
                                         transcript: transcripts.appendingPathComponent(job.key + ".jsonl")) { announce(job, $0, $1) }
          return (job.key, records)
        }
      }
      while next < min(max(1, parallel), jobs.count) { start() }
      while let (key, records) = try await group.next() {
        out[key] = records
        if next < jobs.count { start() }
      }
      return out
    }
    var all = jobs.flatMap { results[$0.key] ?? [] }
    if let train = config.train, let local {
      for job in trained {
        all += try await runTrained(job.game, agent: job.agent, seed: job.seed, config: config, training: train, backend: local,
                                    file: runs.appendingPathComponent(job.key + ".jsonl"),
                                    transcript: transcripts.appendingPathComponent(job.key + ".jsonl"), out: out) { announce(job, $0, $1) }
      }
    }
    let summary = summarize(all, config: config, seconds: Date().timeIntervalSince(started))
    try write(summary, records: all, config: config, to: out)
    return summary
  }

  /// One (game, agent, seed): its episodes in order, the finished ones read back from `file`.
  static func runJob(_ spec: GameSpec, agent kind: AgentKind, seed: Int, config: CELConfig, backend: (any ChatBackend)?,
                     file: URL, transcript: URL, onEpisode: @escaping @Sendable (EpisodeRecord, Bool) -> Void) async throws
    -> [EpisodeRecord]
  {
    var done = readRecords(file).prefix(config.episodes).enumerated().prefix { $0.offset == $0.element.episode }.map(\.element)
    for r in done { onEpisode(r, true) }
    if done.count == config.episodes { return done }
    // Rewrite what was kept (a line torn by an interrupted write is dropped), then append episode by episode.
    try Data(done.map(line).joined().utf8).write(to: file, options: .atomic)
    let writer = kind.usesModel ? try TranscriptWriter(url: transcript, append: true) : nil
    let agent = try GameAgent(kind: kind, backend: kind.usesModel ? backend : nil, prompts: config.prompts,
                              settings: config.settings, transcript: writer, seed: UInt64(seed))
    if let last = done.last { agent.restore(rules: last.rules, playbook: last.playbook) }
    let handle = try FileHandle(forWritingTo: file)
    defer { try? handle.close() }
    handle.seekToEndOfFile()
    try await spec.withGame { game in
      for e in done.count..<config.episodes {
        let r = try await agent.play(&game, gameName: spec.name, seed: CELConfig.gameSeed(seed, episode: e), episode: e)
        handle.write(Data(line(r).utf8))
        done.append(r)
        onEpisode(r, false)
      }
    }
    return done
  }

  static func line(_ r: EpisodeRecord) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return String(decoding: (try? encoder.encode(r)) ?? Data(), as: UTF8.self) + "\n"
  }

  static func readRecords(_ file: URL) -> [EpisodeRecord] {
    guard let data = FileManager.default.contents(atPath: file.path) else { return [] }
    let decoder = JSONDecoder()
    var out: [EpisodeRecord] = []
    for l in data.split(separator: UInt8(ascii: "\n")) {
      guard let r = try? decoder.decode(EpisodeRecord.self, from: Data(l)) else { break }
      out.append(r)
    }
    return out
  }

  static func summarize(_ records: [EpisodeRecord], config: CELConfig, seconds: Double) -> CELSummary {
    var games: [String: [String: CELAgentSummary]] = [:]
    for g in config.games {
      var agents: [String: CELAgentSummary] = [:]
      for a in config.arms {
        let mine = records.filter { $0.game == g.name && $0.agent == a }
        guard !mine.isEmpty else { continue }
        let bySeed = Dictionary(grouping: mine) { CELConfig.runSeed(of: $0) }.values.map { $0.sorted { $0.episode < $1.episode } }
        let episodes = (0..<config.episodes).map { e in bySeed.compactMap { $0.first { $0.episode == e } } }
        let last = bySeed.compactMap(\.last)
        agents[a] = CELAgentSummary(
          success: .wilson(successes: mine.filter(\.won).count, trials: mine.count),
          lastEpisodeSuccess: .wilson(successes: last.filter(\.won).count, trials: last.count),
          meanReturn: Interval(bySeed.map { $0.map(\.reward).reduce(0, +) / Double($0.count) }),
          successByEpisode: episodes.map { .wilson(successes: $0.filter(\.won).count, trials: $0.count) },
          returnByEpisode: episodes.map { Interval($0.map(\.reward)) },
          meanSteps: Double(mine.map(\.steps).reduce(0, +)) / Double(mine.count), episodes: mine.count,
          modelCalls: mine.map(\.modelCalls).reduce(0, +), retries: mine.map(\.retries).reduce(0, +),
          fallbacks: mine.map(\.fallbacks).reduce(0, +))
      }
      games[g.name] = agents
    }
    return CELSummary(backend: config.backend, seeds: config.seeds, episodes: config.episodes,
                      descriptions: Dictionary(uniqueKeysWithValues: config.games.map { ($0.name, $0.description) }),
                      games: games, seconds: seconds)
  }

  static func write(_ s: CELSummary, records: [EpisodeRecord], config: CELConfig, to out: URL) throws {
    try ExperimentFiles.writeMetrics(records.map { r in
      ["game": r.game, "agent": r.agent, "seed": CELConfig.runSeed(of: r), "episode": r.episode, "game_seed": r.seed, "won": r.won,
       "return": r.reward, "steps": r.steps, "model_calls": r.modelCalls, "retries": r.retries, "fallbacks": r.fallbacks]
    }, to: out)
    try ExperimentFiles.writeSummary(s, to: out)
    for g in config.games {
      let agents = config.arms.compactMap { a in s.games[g.name]?[a].map { (a, $0) } }
      func series(_ curve: (CELAgentSummary) -> [Interval]) -> [Plots.Series] {
        agents.map { name, a in
          let c = curve(a)
          return Plots.Series(name: name, x: c.indices.map { Double($0 + 1) }, mean: c.map(\.mean), low: c.map(\.low), high: c.map(\.high))
        }
      }
      try Data(Plots.bands(title: "\(g.description): success rate vs episode (95% Wilson band over seeds)", xLabel: "episode",
                           yLabel: "success rate", series { $0.successByEpisode }, yRange: (0, 1), yFormat: "%.1f").utf8)
        .write(to: out.appendingPathComponent("success_\(g.name).svg"), options: .atomic)
      try Data(Plots.bands(title: "\(g.description): return vs episode (mean, 95% band over seeds)", xLabel: "episode",
                           yLabel: "return", series { $0.returnByEpisode }, yFormat: "%.2f").utf8)
        .write(to: out.appendingPathComponent("return_\(g.name).svg"), options: .atomic)
    }
    try Data(knowledge(records, config: config).utf8).write(to: out.appendingPathComponent("knowledge.md"), options: .atomic)
    try Data(report(s, config: config).utf8).write(to: out.appendingPathComponent("report.md"), options: .atomic)
  }

  /// The rules and playbook each reflecting agent ended with, per game and seed.
  static func knowledge(_ records: [EpisodeRecord], config: CELConfig) -> String {
    var text = "# What the agents wrote down\n\nThe rules and playbook each agent held after its last episode.\n"
    for g in config.games {
      text += "\n## \(g.description)\n"
      for a in config.arms where a != AgentKind.random.rawValue && a != AgentKind.solver.rawValue {
        for s in 0..<config.seeds {
          guard let last = records.filter({ $0.game == g.name && $0.agent == a && CELConfig.runSeed(of: $0) == s })
            .max(by: { $0.episode < $1.episode }), !(last.rules.isEmpty && last.playbook.isEmpty) else { continue }
          text += "\n### \(a), seed \(s)\n"
          if !last.rules.isEmpty { text += "\nRules:\n\n" + quoted(last.rules) }
          if !last.playbook.isEmpty { text += "\nPlaybook:\n\n" + quoted(last.playbook) }
        }
      }
    }
    return text
  }

  private static func quoted(_ s: String) -> String { s.split(separator: "\n", omittingEmptySubsequences: false).map { "> \($0)" }.joined(separator: "\n") + "\n" }

  /// The results as one Markdown table per game.
  public static func table(_ s: CELSummary, config: CELConfig) -> String {
    var t = ""
    for g in config.games {
      guard let agents = s.games[g.name] else { continue }
      t += "\n**\(g.description)** (\(s.seeds) seeds × \(s.episodes) episodes)\n\n"
      t += "| agent | success (95% CI) | last episode won | mean return (95% CI) | steps | model calls | fallbacks |\n"
      t += "|---|---|---|---|---|---|---|\n"
      for a in config.arms {
        guard let r = agents[a] else { continue }
        let won = Int((r.lastEpisodeSuccess.mean * Double(s.seeds)).rounded())
        t += String(format: "| %@ | %.2f (%.2f–%.2f) | %d/%d | %.2f (%.2f–%.2f) | %.1f | %d | %d |\n", a,
                    r.success.mean, r.success.low, r.success.high, won, s.seeds, r.meanReturn.mean, r.meanReturn.low,
                    r.meanReturn.high, r.meanSteps, r.modelCalls, r.fallbacks)
      }
    }
    return t
  }

  static func report(_ s: CELSummary, config: CELConfig) -> String {
    var text = """
      # Cogito, Ergo Ludo: CEL against its ablations and baselines

      Model: \(s.backend). \(s.seeds) seeds × \(s.episodes) episodes per agent and game; CEL and its ablations carry \
      their rules and playbook from one episode to the next within a seed, and every agent of a seed meets the same \
      boards. Look-ahead over \(config.settings.candidates) candidate actions, \(config.settings.maxTokens) tokens per \
      world-model reply, \(config.settings.reflectionTokens) per rules or playbook rewrite, at most \
      \(config.settings.maxSteps) steps per episode, temperature \(config.settings.temperature). Success intervals are \
      Wilson's over all episodes; return intervals are over the seeds' means. Ran in \(Int(s.seconds)) s.

      """
    if let t = config.train {
      text += """

        Trained arms (`+grpo`): the local model's LoRA weights (r \(t.loraRank), α \(t.loraAlpha)) take one GRPO step per \
        episode, learning rate \(t.learningRate): the episode's board is played \(t.group) times at once, the returns \
        are the group's rewards, and up to \(t.callsPerPlay) model calls of each play are the completions. The arm's \
        episode is play 0, which meets the untrained arm's draws; each seed starts from a fresh adapter \
        (adapters/), and each trainer's metrics are under train/.

        """
    }
    text += table(s, config: config)
    for g in config.games {
      text += "\n![\(g.description): success](success_\(g.name).svg)\n\n![\(g.description): return](return_\(g.name).svg)\n"
    }
    text += "\nThe final rules and playbooks are in [knowledge.md](knowledge.md); every model call is in transcripts/.\n"
    return text
  }
}
