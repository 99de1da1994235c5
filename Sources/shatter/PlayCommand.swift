import Agents
import ArgumentParser
import Foundation
import LM
import Worlds

/// `--game` and its options, shared by `shatter play` and `shatter experiment cel`.
struct GameOptions: ParsableArguments {
  @Option(help: "frozenlake, minesweeper or sokoban.") var game: String = "frozenlake"
  @Option(help: "Frozen Lake: 4x4, 8x8 or random.") var map: String = "4x4"
  @Option(help: "Frozen Lake random map: side length.") var size: Int = 4
  @Option(help: "Frozen Lake random map: probability a tile is frozen.") var frozenProbability: Double = 0.8
  @Option(help: "Frozen Lake random map: the seed the map is drawn from (the same every episode).") var mapSeed: UInt64 = 0
  @Flag(inversion: .prefixedNo, help: "Frozen Lake: slippery ice (Gymnasium's default).") var slippery = true
  @Option(help: "Minesweeper / Sokoban: rows.") var rows: Int = 5
  @Option(help: "Minesweeper / Sokoban: columns.") var columns: Int = 5
  @Option(help: "Minesweeper: mines.") var mines: Int = 3
  @Option(help: "Sokoban: boxes of a generated room.") var boxes: Int = 1
  @Option(help: "Sokoban: a Boxoban/XSB level file whose first level is played instead of generated rooms.")
  var levelFile: String?
  @Option(help: "Minesweeper / Sokoban: turns per episode.") var maxTurns: Int = 30

  var spec: GameSpec {
    get throws {
      switch game {
      case "frozenlake":
        guard ["4x4", "8x8", "random"].contains(map) else { throw ValidationError("--map \(map): expected 4x4, 8x8 or random") }
        return .frozenLake(map: map, size: size, frozenProbability: frozenProbability, slippery: slippery, mapSeed: mapSeed)
      case "minesweeper": return .minesweeper(rows: rows, columns: columns, mines: mines, maxTurns: maxTurns)
      case "sokoban": return .sokoban(rows: rows, columns: columns, boxes: boxes, maxTurns: maxTurns, levelFile: levelFile)
      default: throw ValidationError("--game \(game): expected frozenlake, minesweeper or sokoban")
      }
    }
  }
}

/// Where the agent's model is: a local checkpoint or an OpenAI-compatible server.
struct AgentModelOptions: ParsableArguments {
  @Option(help: "A local checkpoint directory or .gguf file (default: the SmolLM2 model of `make model`).")
  var model: String?
  @Option(help: "An OpenAI-compatible server's base URL up to /v1 (shatter serve, llama.cpp, vLLM, Ollama).")
  var endpoint: String?
  @Option(help: "The model name sent to --endpoint.") var endpointModel: String = "model"
  @Option(help: "An API key for --endpoint (else $OPENAI_API_KEY when set).") var apiKey: String?
  @Option(help: "Seconds per --endpoint request before it is retried.") var timeout: Double = 120

  static let defaultModel = "models/smollm2-135m-instruct"

  func backend() throws -> any ChatBackend {
    if let endpoint {
      guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
        throw ValidationError("--endpoint \(endpoint): expected an http:// or https:// URL")
      }
      return OpenAIChatBackend(baseURL: endpoint, model: endpointModel,
                               apiKey: apiKey ?? ProcessInfo.processInfo.environment["OPENAI_API_KEY"], timeout: timeout)
    }
    let path = model ?? Self.defaultModel
    guard FileManager.default.fileExists(atPath: path) else {
      throw UserError("--model \(path) does not exist" + (model == nil ? " (run `make model`, or give --model or --endpoint)" : ""))
    }
    let loaded = try LoadedModel(path)
    let chat = ChatModel(model: loaded.model, tokenizer: loaded.tokenizer, template: chatTemplate(of: loaded.tokenizer))
    return LocalChatBackend(chat, name: "local:" + URL(fileURLWithPath: path).lastPathComponent)
  }
}

struct PlayCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "play",
    abstract: "Play a text game (Frozen Lake, Minesweeper, Sokoban) with an agent: CEL, its ablations or a baseline.",
    discussion: """
      Agents: cel (look-ahead with the model as world model and value function; rules and playbook rewritten \
      after every episode), cel-no-rules, cel-no-playbook, cel-no-lookahead, zero-shot (the model, no rules), \
      rules (the model given the true rules), random, solver (the exact solver). The board is shown after every \
      step; --json prints one summary object instead. Every model call goes to --transcript as a JSONL line.
      """)

  @OptionGroup var gameOptions: GameOptions
  @Option(help: "cel, cel-no-rules, cel-no-playbook, cel-no-lookahead, zero-shot, rules, random or solver.")
  var agent: String = "cel"
  @OptionGroup var source: AgentModelOptions
  @Option(help: "Episodes to play; CEL carries its rules and playbook from one to the next.") var episodes: Int = 1
  @Option(help: "Seed of the first episode (episode i uses seed + i) and of the agent's draws.") var seed: UInt64 = 0
  @Option(help: "Legal actions CEL looks ahead at per step (a seeded sample when there are more).") var candidates: Int = 4
  @Option(help: "Tokens per world-model, value and act reply.") var maxTokens: Int = 96
  @Option(help: "Tokens per rules or playbook rewrite.") var reflectionTokens: Int = 256
  @Option(help: "Sampling temperature of the model's replies (0: greedy).") var temperature: Double = 0
  @Option(help: "Steps per episode at most (the game's own step or turn limit applies too).") var maxSteps: Int = 100
  @Option(help: "A folder of prompt templates (system.txt, world_model.txt, value.txt, act.txt, rules.txt, playbook.txt) replacing the built-in ones file by file.")
  var prompts: String?
  @Option(help: "Write every model call (prompt, reply, parse result) to this JSONL file.") var transcript: String?
  @Flag(help: "Print one JSON object (episodes, success rate, final rules and playbook) instead of the boards.") var json = false

  func validate() throws {
    guard AgentKind(rawValue: agent) != nil else {
      throw ValidationError("--agent \(agent): expected one of \(AgentKind.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    guard episodes >= 1 else { throw ValidationError("--episodes must be at least 1") }
    guard candidates >= 1, maxTokens >= 1, reflectionTokens >= 1, maxSteps >= 1 else {
      throw ValidationError("--candidates, --max-tokens, --reflection-tokens and --max-steps must be at least 1")
    }
    guard temperature >= 0 else { throw ValidationError("--temperature must be at least 0") }
    if source.endpoint != nil && source.model != nil { throw ValidationError("give --model or --endpoint, not both") }
  }

  func run() throws {
    let kind = AgentKind(rawValue: agent)!
    let spec = try gameOptions.spec
    let backend = kind.usesModel ? try source.backend() : nil
    let templates = try CELPrompts.load(overrides: prompts.map { URL(fileURLWithPath: $0) })
    let writer = try transcript.map { try TranscriptWriter(url: URL(fileURLWithPath: $0)) }
    var settings = AgentSettings()
    settings.candidates = candidates
    settings.maxTokens = maxTokens
    settings.reflectionTokens = reflectionTokens
    settings.temperature = temperature
    settings.maxSteps = maxSteps
    let agent = try GameAgent(kind: kind, backend: backend, prompts: templates, settings: settings, transcript: writer, seed: seed)
    let (episodes, seed, json) = (self.episodes, self.seed, self.json)
    let records: [EpisodeRecord] = try blocking {
      try await spec.withGame { game in
        var out: [EpisodeRecord] = []
        for e in 0..<episodes {
          if !json { print("== \(spec) — \(kind.rawValue), episode \(e + 1)/\(episodes), seed \(seed + UInt64(e))") }
          let r = try await agent.play(&game, gameName: spec.name, seed: seed + UInt64(e), episode: e) { event in
            guard !json else { return }
            let values = event.values.isEmpty ? "" : "  look-ahead " + event.values.sorted { $0.key < $1.key }
              .map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            print("step \(event.step): \(event.action)\(event.fallback ? " (fallback)" : "") → reward \(event.reward)"
              + (event.message.map { "  \($0)" } ?? "") + values)
            print(event.board)
          }
          if !json {
            print("episode \(e + 1): \(r.won ? "won" : "not won"), reward \(r.reward), \(r.steps) steps, \(r.modelCalls) model calls, "
              + "\(r.fallbacks) fallbacks")
            if !r.rules.isEmpty { print("rules now:\n\(r.rules)") }
            if !r.playbook.isEmpty { print("playbook now:\n\(r.playbook)") }
          }
          out.append(r)
        }
        return out
      }
    }
    let wins = records.filter(\.won).count
    if json {
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      let list = try JSONSerialization.jsonObject(with: encoder.encode(records))
      printJSON(["game": spec.name, "description": spec.description, "agent": kind.rawValue, "backend": backend?.name ?? NSNull(),
                 "episodes": list, "success_rate": Double(wins) / Double(records.count),
                 "mean_reward": records.map(\.reward).reduce(0, +) / Double(records.count),
                 "rules": agent.rules, "playbook": agent.playbook])
    } else {
      print("\(kind.rawValue) on \(spec): \(wins)/\(records.count) won")
    }
  }
}
