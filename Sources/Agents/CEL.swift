import Foundation
import LM
import Worlds

/// The agents of `shatter play` and the CEL experiment (METHODS §8): CEL, its three ablations, and the
/// baselines it is compared with.
public enum AgentKind: String, CaseIterable, Sendable, Codable {
  /// Cogito, Ergo Ludo: look-ahead with the model as world model and value function, rules and playbook
  /// rewritten after every episode.
  case cel
  /// CEL without rule induction (the rules text stays empty).
  case celNoRules = "cel-no-rules"
  /// CEL without the playbook.
  case celNoPlaybook = "cel-no-playbook"
  /// CEL without look-ahead: acts directly from its rules and playbook.
  case celNoLookahead = "cel-no-lookahead"
  /// The model with no rules and no reflection.
  case zeroShot = "zero-shot"
  /// The model given the game's true rules, acting directly.
  case rules
  /// Uniformly random legal actions.
  case random
  /// The exact solver (value iteration, the least-risk Minesweeper player, the Sokoban push search).
  case solver

  public var usesModel: Bool { self != .random && self != .solver }
  var looksAhead: Bool { self == .cel || self == .celNoRules || self == .celNoPlaybook }
  var inducesRules: Bool { self == .cel || self == .celNoPlaybook || self == .celNoLookahead }
  var writesPlaybook: Bool { self == .cel || self == .celNoRules || self == .celNoLookahead }
}

/// The prompt templates (`{{name}}` placeholders), built in and overridable file by file from a folder
/// (`system.txt`, `world_model.txt`, `value.txt`, `act.txt`, `rules.txt`, `playbook.txt`).
public struct CELPrompts: Sendable, Equatable, Codable {
  public var system: String, worldModel: String, value: String, act: String, rules: String, playbook: String
  static let files = ["system", "world_model", "value", "act", "rules", "playbook"]

  /// The built-in templates, with those of `folder` in their place where it has them.
  public static func load(overrides folder: URL? = nil) throws -> CELPrompts {
    func text(_ name: String) throws -> String {
      if let folder {
        let url = folder.appendingPathComponent("\(name).txt")
        if FileManager.default.fileExists(atPath: url.path) { return try String(contentsOf: url, encoding: .utf8) }
      }
      guard let url = Bundle.module.url(forResource: name, withExtension: "txt", subdirectory: "Prompts") else {
        throw ChatBackendError("the built-in prompt \(name).txt is missing from the Agents bundle")
      }
      return try String(contentsOf: url, encoding: .utf8)
    }
    let t = try files.map(text)
    return CELPrompts(system: t[0], worldModel: t[1], value: t[2], act: t[3], rules: t[4], playbook: t[5])
  }

  /// `template` with every `{{key}}` replaced; a placeholder without a value is left as it is.
  public static func fill(_ template: String, _ values: [String: String]) -> String {
    var out = template
    for (key, value) in values { out = out.replacingOccurrences(of: "{{\(key)}}", with: value) }
    return out.trimmingCharacters(in: .whitespacesAndNewlines)
  }
}

/// Settings of a model-driven agent.
public struct AgentSettings: Sendable, Equatable, Codable {
  /// Legal actions looked ahead at per step; games with more (Minesweeper's cells) get a seeded sample.
  public var candidates = 4
  /// Tokens per world-model, value and act reply.
  public var maxTokens = 96
  /// Tokens per rules or playbook rewrite.
  public var reflectionTokens = 256
  public var temperature = 0.0
  /// Steps per episode at most (the games have their own limits too).
  public var maxSteps = 100
  /// Steps of the episode shown to rule induction and the playbook (the last ones).
  public var trajectorySteps = 16
  public init() {}
}

/// One model call, as the transcript keeps it.
public struct TranscriptEntry: Codable, Sendable {
  public var agent: String, game: String, episode: Int, step: Int?, call: String
  public var messages: [ChatMessage]
  public var reply: String
  /// What was read from the reply ("[up]", "High", a rules text's length), nil when nothing.
  public var parsed: String?
  public var retry: Bool
}

/// JSONL lines, one per model call; safe to share.
public final class TranscriptWriter: @unchecked Sendable {
  private let handle: FileHandle
  private let lock = NSLock()
  public init(url: URL, append: Bool = false) throws {
    if !append || !FileManager.default.fileExists(atPath: url.path) {
      guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
        throw ChatBackendError("cannot create the transcript file \(url.path)")
      }
    }
    handle = try FileHandle(forWritingTo: url)
    handle.seekToEndOfFile()
  }
  deinit { try? handle.close() }
  public func write(_ entry: TranscriptEntry) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let data = try? encoder.encode(entry) else { return }
    lock.withLock { handle.write(data + Data("\n".utf8)) }
  }
}

/// What one step showed (for the terminal view of `shatter play`).
public struct StepEvent: Sendable {
  public var step: Int, action: String, reward: Double, board: String, message: String?, fallback: Bool
  /// Look-ahead values per candidate action, when the agent looked ahead.
  public var values: [String: Double]
}

/// One episode's outcome and what the agent knew after it.
public struct EpisodeRecord: Codable, Sendable, Equatable {
  public var agent: String, game: String, episode: Int, seed: UInt64
  public var steps: Int, reward: Double, won: Bool
  public var modelCalls: Int, retries: Int
  /// Replies that named nothing usable after the retry, replaced by a random legal action.
  public var fallbacks: Int
  public var rules: String, playbook: String
}

/// An agent that plays episodes of one game and, for CEL, carries its rules and playbook from one episode
/// to the next.
public final class GameAgent: @unchecked Sendable {
  public let kind: AgentKind
  public let backend: (any ChatBackend)?
  public let prompts: CELPrompts
  public var settings: AgentSettings
  public let transcript: TranscriptWriter?
  /// What CEL believes the rules are (empty before the first episode).
  public private(set) var rules = ""
  public private(set) var playbook = ""
  private let counters = Counters()
  private let seed: UInt64
  private var rng: SplitMix64
  private var gameName = "", episode = 0

  /// Model calls, retries and fallbacks so far; look-ahead candidates count theirs concurrently.
  private final class Counters: @unchecked Sendable {
    private let lock = NSLock()
    private var values = (calls: 0, retries: 0, fallbacks: 0)
    var snapshot: (calls: Int, retries: Int, fallbacks: Int) { lock.withLock { values } }
    func called(retry: Bool) { lock.withLock { values.calls += 1; if retry { values.retries += 1 } } }
    func fellBack() { lock.withLock { values.fallbacks += 1 } }
  }

  public init(kind: AgentKind, backend: (any ChatBackend)?, prompts: CELPrompts, settings: AgentSettings = AgentSettings(),
              transcript: TranscriptWriter? = nil, seed: UInt64 = 0) throws {
    if kind.usesModel && backend == nil { throw ChatBackendError("the \(kind.rawValue) agent needs a model (--model or --endpoint)") }
    self.kind = kind
    self.backend = backend
    self.prompts = prompts
    self.settings = settings
    self.transcript = transcript
    self.seed = seed
    rng = SplitMix64(seed: seed ^ 0xC3E1)
  }

  /// Takes up the rules and playbook an earlier run of this agent ended an episode with (resuming an
  /// experiment): with the episode's seed, the next episode is then the one an uninterrupted run plays.
  public func restore(rules: String, playbook: String) {
    self.rules = rules
    self.playbook = playbook
  }

  /// Plays one episode from `game.reset(seed:)`; then, for CEL, rewrites the rules and the playbook.
  public func play<G: PlayableGame>(_ game: inout G, gameName: String, seed: UInt64, episode: Int,
                                    onStep: ((StepEvent) -> Void)? = nil) async throws -> EpisodeRecord {
    self.gameName = gameName
    self.episode = episode
    // Each episode's draws depend on the agent's seed and the episode's only, so a resumed run replays it.
    rng = SplitMix64(seed: self.seed ^ 0xC3E1 ^ (seed &* 0x9E37_79B9_7F4A_7C15))
    let before0 = counters.snapshot
    var observation = game.reset(seed: seed)
    let trueRules = game.instructions
    var trajectory: [String] = []
    var total = 0.0, steps = 0
    while !game.legalActions.isEmpty && steps < settings.maxSteps {
      let before = observation.board
      let (action, values, fellBack) = try await choose(&game, observation: observation, trueRules: trueRules, step: steps)
      let result = game.step(action)
      steps += 1
      total += result.reward
      observation = result.observation
      let note = result.info.invalidAction ?? result.info.message
      trajectory.append("Step \(steps):\n\(before)\nAction: \(action) → reward \(format(result.reward))"
        + (note.map { " (\($0))" } ?? ""))
      onStep?(StepEvent(step: steps, action: action.description, reward: result.reward, board: observation.board,
                        message: note, fallback: fellBack, values: values))
      if result.isDone { break }
    }
    let outcome = game.won ? "won" : "did not win"
    let shown = trajectory.suffix(settings.trajectorySteps)
    let story = (trajectory.count > shown.count ? ["(first \(trajectory.count - shown.count) steps left out)"] : [])
      + shown + ["Final state:\n\(observation.board)\nOutcome: you \(outcome); total reward \(format(total))."]
    let text = story.joined(separator: "\n\n")
    if kind.inducesRules {
      let reply = try await ask("rules", CELPrompts.fill(prompts.rules, ["trajectory": text, "rules": rulesText]),
                                maxTokens: settings.reflectionTokens, step: nil, seed: rng.next())
      let cleaned = GameAgent.condensed(reply)
      if !cleaned.isEmpty { rules = cleaned }
    }
    if kind.writesPlaybook {
      let reply = try await ask("playbook", CELPrompts.fill(prompts.playbook, [
        "trajectory": text, "rules": rulesText, "playbook": playbookText,
      ]), maxTokens: settings.reflectionTokens, step: nil, seed: rng.next())
      let cleaned = GameAgent.condensed(reply)
      if !cleaned.isEmpty { playbook = cleaned }
    }
    let after = counters.snapshot
    return EpisodeRecord(agent: kind.rawValue, game: gameName, episode: episode, seed: seed, steps: steps, reward: total,
                         won: game.won, modelCalls: after.calls - before0.calls, retries: after.retries - before0.retries,
                         fallbacks: after.fallbacks - before0.fallbacks, rules: rules, playbook: playbook)
  }

  /// A rules or playbook reply with its repeats dropped: small models loop ("The game is a puzzle. The game
  /// is a puzzle. …") until the token budget ends them, and the loop would then fill every later prompt.
  /// Keeps each sentence or line the first time it appears, and drops a last sentence the budget cut off
  /// when a whole one came before it.
  static func condensed(_ reply: String) -> String {
    // Pieces end at a newline, or at . ! ? followed by white space (so "0.5" stays whole).
    let chars = Array(reply)
    var pieces: [String] = [], current = ""
    for (i, ch) in chars.enumerated() {
      current.append(ch)
      // A list number ("2. ") is not a sentence of its own.
      let endsSentence = ".!?".contains(ch) && (i + 1 == chars.count || chars[i + 1].isWhitespace)
        && current.contains(where: \.isLetter)
      if ch == "\n" || endsSentence {
        pieces.append(current)
        current = ""
      }
    }
    var seen = Set<String>(), kept = ""
    for piece in pieces {
      let key = piece.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
      if key.isEmpty || seen.insert(key).inserted { kept += piece }
    }
    let tail = current.trimmingCharacters(in: .whitespacesAndNewlines)
    if kept.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { kept = tail }
    while kept.contains("\n\n\n") { kept = kept.replacingOccurrences(of: "\n\n\n", with: "\n\n") }
    return kept.trimmingCharacters(in: .whitespacesAndNewlines)
  }

  private var rulesText: String { rules.isEmpty ? "(nothing yet: you only know the actions)" : rules }
  private var playbookText: String { playbook.isEmpty ? "(none yet)" : playbook }

  private func format(_ x: Double) -> String { x == x.rounded() ? String(Int(x)) : String(format: "%.3g", x) }

  private func randomAction<A>(_ legal: [A]) -> A { legal[Int(rng.next() % UInt64(legal.count))] }

  /// The next action, the look-ahead values behind it, and whether it is a fallback.
  private func choose<G: PlayableGame>(_ game: inout G, observation: Observation, trueRules: String, step: Int)
    async throws -> (G.Action, [String: Double], Bool)
  {
    let legal = game.legalActions
    switch kind {
    case .random:
      return (randomAction(legal), [:], false)
    case .solver:
      if let a = game.solverAction(), legal.contains(a) { return (a, [:], false) }
      counters.fellBack()
      return (randomAction(legal), [:], true)
    case .cel, .celNoRules, .celNoPlaybook:
      return try await lookAhead(legal, observation: observation, step: step)
    case .celNoLookahead, .zeroShot, .rules:
      var knowledge = ""
      if kind == .rules { knowledge = "The rules of the game:\n\(trueRules)\n\n" }
      if kind == .celNoLookahead {
        knowledge = "What you believe the rules are:\n\(rulesText)\n\nYour strategy:\n\(playbookText)\n\n"
      }
      let names = legal.map(\.description)
      let prompt = CELPrompts.fill(prompts.act, [
        "knowledge": knowledge, "observation": observation.text, "actions": names.joined(separator: ", "),
        "example": names.first ?? "",
      ])
      var messages = [ChatMessage(role: "system", content: prompts.system), ChatMessage(role: "user", content: prompt)]
      for attempt in 0..<2 {
        let reply = try await call("act", messages, maxTokens: settings.maxTokens, step: step, retry: attempt > 0,
                                   seed: rng.next()) { reply in
          if case .success(let a) = game.parseAction(reply), legal.contains(a) { return a.description }
          return nil
        }
        if case .success(let a) = game.parseAction(reply), legal.contains(a) { return (a, [:], false) }
        messages += [ChatMessage(role: "assistant", content: reply),
                     ChatMessage(role: "user", content: "That names no legal action. Answer with exactly one of: \(names.joined(separator: ", ")).")]
      }
      counters.fellBack()
      return (randomAction(legal), [:], true)
    }
  }

  /// CEL's step: for each candidate action, the world model predicts the outcome and the value function
  /// judges it; the best-judged action is taken (ties: the first in a seeded shuffle). The candidates are
  /// asked at the same time, so a batching backend decodes them together.
  private func lookAhead<A: CustomStringConvertible & Hashable & Sendable>(_ legal: [A], observation: Observation, step: Int)
    async throws -> (A, [String: Double], Bool)
  {
    var candidates = legal
    candidates.shuffle(using: &rng)
    candidates = Array(candidates.prefix(max(1, settings.candidates)))
    // Seeds are drawn here, in candidate order, so the replies do not depend on which call finishes first.
    let seeds = candidates.map { _ in (rng.next(), rng.next(), rng.next()) }
    let judged = try await withThrowingTaskGroup(of: (Int, Double?).self) { group in
      for (i, action) in candidates.enumerated() {
        group.addTask {
          (i, try await self.judge(action.description, observation: observation, step: step, seeds: seeds[i]))
        }
      }
      var out = [Double?](repeating: nil, count: candidates.count)
      for try await (i, value) in group { out[i] = value }
      return out
    }
    var best: (A, Double)?
    var values: [String: Double] = [:]
    for (action, value) in zip(candidates, judged) {
      guard let value else { continue }
      values[action.description] = value
      if best == nil || value > best!.1 { best = (action, value) }
    }
    if let best { return (best.0, values, false) }
    counters.fellBack()
    return (randomAction(legal), values, true)
  }

  /// One candidate's look-ahead: the world model's prediction, then the value function's judgement of it
  /// (asked again once when it names none); nil when no judgement could be read.
  private func judge(_ action: String, observation: Observation, step: Int, seeds: (UInt64, UInt64, UInt64))
    async throws -> Double?
  {
    let prediction = try await ask("world_model", CELPrompts.fill(prompts.worldModel, [
      "rules": rulesText, "board": observation.text, "action": action,
    ]), maxTokens: settings.maxTokens, step: step, seed: seeds.0)
    let valuePrompt = CELPrompts.fill(prompts.value, [
      "rules": rulesText, "playbook": playbookText, "board": observation.text, "action": action,
      "prediction": prediction,
    ])
    var messages = [ChatMessage(role: "system", content: prompts.system), ChatMessage(role: "user", content: valuePrompt)]
    for attempt in 0..<2 {
      let reply = try await call("value", messages, maxTokens: 16, step: step, retry: attempt > 0,
                                 seed: attempt == 0 ? seeds.1 : seeds.2) { reply in
        GameAgent.judgement(reply).map { String($0) }
      }
      if let value = GameAgent.judgement(reply) { return value }
      messages += [ChatMessage(role: "assistant", content: reply),
                   ChatMessage(role: "user", content: "Answer with one word: High, Medium or Low.")]
    }
    return nil
  }

  /// High / Medium / Low (the first that appears) as 1, 0.5, 0; else a number in [0, 1]; else nil.
  static func judgement(_ reply: String) -> Double? {
    let lower = reply.lowercased()
    let words: [(String, Double)] = [("high", 1), ("medium", 0.5), ("low", 0)]
    let found = words.compactMap { w, v in lower.range(of: w).map { ($0.lowerBound, v) } }
    if let first = found.min(by: { $0.0 < $1.0 }) { return first.1 }
    let number = lower.split(whereSeparator: { !($0.isNumber || $0 == ".") }).compactMap { Double($0) }.first
    if let number, (0...1).contains(number) { return number }
    return nil
  }

  private func ask(_ role: String, _ prompt: String, maxTokens: Int, step: Int?, seed: UInt64) async throws -> String {
    try await call(role, [ChatMessage(role: "system", content: prompts.system), ChatMessage(role: "user", content: prompt)],
                   maxTokens: maxTokens, step: step, retry: false, seed: seed) { reply in
      reply.isEmpty ? nil : "\(reply.count) characters"
    }
  }

  private func call(_ role: String, _ messages: [ChatMessage], maxTokens: Int, step: Int?, retry: Bool, seed: UInt64,
                    parse: (String) -> String?) async throws -> String {
    guard let backend else { throw ChatBackendError("the \(kind.rawValue) agent has no model") }
    counters.called(retry: retry)
    let options = ChatOptions(temperature: settings.temperature, maxTokens: maxTokens, seed: seed & 0xFFFF_FFFF)
    let reply = try await backend.reply(to: messages, options: options)
    transcript?.write(TranscriptEntry(agent: kind.rawValue, game: gameName, episode: episode, step: step, call: role,
                                      messages: messages, reply: reply, parsed: parse(reply), retry: retry))
    return reply
  }
}
