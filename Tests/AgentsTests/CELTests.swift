import Foundation
import Testing
import LM
import Worlds
@testable import Agents

/// The scripted model: predicts nothing useful, values the optimal move of the deterministic 4×4 (read
/// from the value-iteration policy at the position the prompt states) High and every other Low, and writes
/// numbered rules and playbooks.
func scriptedModel() -> ScriptedChatBackend {
  let policy = (try! FrozenLake(isSlippery: false)).valueIteration().policy
  return ScriptedChatBackend { messages, call in
    let prompt = messages.last!.content
    if prompt.contains("Rewrite the rules") { return "RULES-\(call): H is a hole, G is the goal." }
    if prompt.contains("Rewrite your strategy") { return "PLAYBOOK-\(call): go right, then down." }
    if prompt.contains("Predict what happens") { return "Next state:\n(same)\nReward: 0\nGame over: no" }
    if prompt.contains("How good is that outcome") {
      let action = String(prompt.components(separatedBy: "If you take ").last!.prefix { $0 != "," })
      let place = prompt.components(separatedBy: "You are at row ").last!.split(whereSeparator: { !$0.isNumber })
      let state = Int(place[0])! * 4 + Int(place[1])!
      return action == policy[state].description ? "High" : "Low"
    }
    return "I choose [down]."
  }
}

@Test func celRewritesRulesAndPlaybookAndFeedsThemBack() async throws {
  let model = scriptedModel()
  let writer = temporaryTranscript()
  let agent = try GameAgent(kind: .cel, backend: model, prompts: try CELPrompts.load(), transcript: try TranscriptWriter(url: writer))
  var game = try FrozenLake(isSlippery: false)
  let first = try await agent.play(&game, gameName: "frozenlake", seed: 0, episode: 0)
  #expect(first.rules.hasPrefix("RULES-") && first.playbook.hasPrefix("PLAYBOOK-"))
  #expect(first.modelCalls == model.received.count && first.fallbacks == 0)
  // Episode 1's reflection saw the whole trajectory and the outcome.
  let reflection = try #require(model.received.first { $0.last!.content.contains("Rewrite the rules") })
  #expect(reflection.last!.content.contains("Step 1:") && reflection.last!.content.contains("Outcome: you"))
  #expect(reflection.last!.content.contains("(nothing yet: you only know the actions)"))
  let seen = model.received.count
  let second = try await agent.play(&game, gameName: "frozenlake", seed: 1, episode: 1)
  // Every look-ahead prompt of episode 2 carries episode 1's rules; the value prompts its playbook too.
  let later = model.received.dropFirst(seen)
  let predictions = later.filter { $0.last!.content.contains("Predict what happens") }
  let judgements = later.filter { $0.last!.content.contains("How good is that outcome") }
  #expect(!predictions.isEmpty && predictions.allSatisfy { $0.last!.content.contains(first.rules) })
  #expect(!judgements.isEmpty && judgements.allSatisfy { $0.last!.content.contains(first.playbook) })
  #expect(second.rules != first.rules && second.rules.hasPrefix("RULES-"))
  // Taking the best-judged move, it follows the optimal path of the deterministic map to the goal.
  #expect(first.won && first.reward == 1)
  // One transcript line per model call, each naming its role.
  let lines = try String(contentsOf: writer, encoding: .utf8).split(separator: "\n")
  #expect(lines.count == first.modelCalls + second.modelCalls)
  let entry = try JSONDecoder().decode(TranscriptEntry.self, from: Data(lines[0].utf8))
  #expect(entry.call == "world_model" && entry.episode == 0 && entry.step == 0)
}

@Test func ablationsDropWhatTheyName() async throws {
  for (kind, rules, playbook) in [(AgentKind.celNoRules, false, true), (.celNoPlaybook, true, false), (.celNoLookahead, true, true),
                                  (.zeroShot, false, false), (.rules, false, false)] {
    let model = scriptedModel()
    let agent = try GameAgent(kind: kind, backend: model, prompts: try CELPrompts.load())
    var game = try FrozenLake(isSlippery: false)
    let r = try await agent.play(&game, gameName: "frozenlake", seed: 0, episode: 0)
    #expect(r.rules.isEmpty != rules && r.playbook.isEmpty != playbook, "\(kind)")
    let looked = model.received.contains { $0.last!.content.contains("Predict what happens") }
    #expect(looked == (kind == .celNoRules || kind == .celNoPlaybook), "\(kind)")
    let trueRules = model.received.contains { $0.last!.content.contains(game.instructions) }
    #expect(trueRules == (kind == .rules), "\(kind)")
  }
}

@Test func unparseableRepliesAreRetriedOnceThenFallBack() async throws {
  let model = ScriptedChatBackend { _, _ in "I am not sure." }
  let agent = try GameAgent(kind: .zeroShot, backend: model, prompts: try CELPrompts.load(), seed: 4)
  var game = try FrozenLake(isSlippery: false, stepLimit: .steps(5))
  let r = try await agent.play(&game, gameName: "frozenlake", seed: 0, episode: 0)
  #expect(r.steps >= 1 && r.fallbacks == r.steps && r.retries == r.steps && r.modelCalls == 2 * r.steps)
  // The retry tells the model what went wrong.
  #expect(model.received[1].last!.content.contains("names no legal action"))
}

@Test func judgementsReadWordsAndNumbers() {
  #expect(GameAgent.judgement("Value: High") == 1)
  #expect(GameAgent.judgement("medium, maybe high") == 0.5)
  #expect(GameAgent.judgement("LOW.") == 0)
  #expect(GameAgent.judgement("0.25") == 0.25)
  #expect(GameAgent.judgement("7") == nil)
  #expect(GameAgent.judgement("no idea") == nil)
}

@Test func baselinesNeedNoModelAndTheSolverWins() async throws {
  let solver = try GameAgent(kind: .solver, backend: nil, prompts: try CELPrompts.load())
  var lake = try FrozenLake(isSlippery: false)
  #expect(try await solver.play(&lake, gameName: "frozenlake", seed: 0, episode: 0).won)
  var sokoban = try Sokoban(generator: SokobanGenerator(rows: 6, columns: 6, boxes: 1), maxTurns: 60, rules: .sparse)
  let s = try await solver.play(&sokoban, gameName: "sokoban", seed: 3, episode: 0)
  #expect(s.won && s.reward == 1)
  var mines = try Minesweeper(rows: 5, columns: 5, mines: 3, maxTurns: 40, rules: .sparse)
  _ = try await solver.play(&mines, gameName: "minesweeper", seed: 1, episode: 0)  // may lose to a forced guess
  // Random is seeded: the same seed plays the same moves.
  let a = try GameAgent(kind: .random, backend: nil, prompts: try CELPrompts.load(), seed: 9)
  let b = try GameAgent(kind: .random, backend: nil, prompts: try CELPrompts.load(), seed: 9)
  var g1 = try FrozenLake(), g2 = try FrozenLake()
  let r1 = try await a.play(&g1, gameName: "frozenlake", seed: 2, episode: 0)
  let r2 = try await b.play(&g2, gameName: "frozenlake", seed: 2, episode: 0)
  #expect(r1 == r2)
  #expect(throws: ChatBackendError.self) { try GameAgent(kind: .cel, backend: nil, prompts: try CELPrompts.load()) }
}

@Test func promptFolderOverridesFileByFile() throws {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shatter-prompts-\(UUID())")
  try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: dir) }
  try "VALUE {{action}}".write(to: dir.appendingPathComponent("value.txt"), atomically: true, encoding: .utf8)
  let built = try CELPrompts.load(), mixed = try CELPrompts.load(overrides: dir)
  #expect(mixed.value == "VALUE {{action}}" && mixed.act == built.act)
  #expect(CELPrompts.fill(mixed.value, ["action": "[up]"]) == "VALUE [up]")
}

@Test func openAIRequestBodyAndResponse() throws {
  let backend = OpenAIChatBackend(baseURL: "http://127.0.0.1:1/v1/", model: "m")
  #expect(backend.baseURL == "http://127.0.0.1:1/v1")
  let body = try backend.body([ChatMessage(role: "user", content: "hi")], ChatOptions(temperature: 0.5, maxTokens: 7, stop: ["\n"], seed: 3))
  let object = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
  #expect(object["model"] as? String == "m" && object["max_tokens"] as? Int == 7 && object["seed"] as? Int == 3)
  #expect((object["stop"] as? [String]) == ["\n"])
  let reply = Data(#"{"choices":[{"index":0,"message":{"role":"assistant","content":"[up]"},"finish_reason":"stop"}]}"#.utf8)
  #expect(try OpenAIChatBackend.content(of: reply) == "[up]")
  #expect(throws: ChatBackendError.self) { try OpenAIChatBackend.content(of: Data("{}".utf8)) }
}

@Test func anUnreachableServerFailsAfterItsRetries() async throws {
  let backend = OpenAIChatBackend(baseURL: "http://127.0.0.1:9/v1", model: "m", timeout: 2, retries: 2, backoff: 0.01)
  do {
    _ = try await backend.reply(to: [ChatMessage(role: "user", content: "hi")], options: ChatOptions())
    Issue.record("expected a connection error")
  } catch let e as ChatBackendError {
    #expect(e.message.contains("127.0.0.1:9") && e.message.contains("after 2 retries"))
  }
}

func temporaryTranscript() -> URL {
  FileManager.default.temporaryDirectory.appendingPathComponent("shatter-transcript-\(UUID()).jsonl")
}

@Test func reflectionsLoseTheirRepeatsAndACutOffTail() {
  let looped = "The game is a puzzle. The rules are the same. The game is a puzzle. The rules are the same. The game is"
  #expect(GameAgent.condensed(looped) == "The game is a puzzle. The rules are the same.")
  // Lines count as pieces, numbers keep their decimal point, and blank lines collapse.
  #expect(GameAgent.condensed("1. Avoid H.\n\n\n\n2. A reward of 0.5 is good.\n1. Avoid H.\n") == "1. Avoid H.\n\n2. A reward of 0.5 is good.")
  // A reply with no whole sentence is kept as it is.
  #expect(GameAgent.condensed("  go right  ") == "go right")
  #expect(GameAgent.condensed("") == "")
}
