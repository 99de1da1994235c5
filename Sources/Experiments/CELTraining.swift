import Agents
import Alignment
import Foundation
import LM
import NN
import Torch

/// CEL's parameter training (`shatter experiment cel --train grpo`): the local model's LoRA weights learn
/// from episode outcomes with GRPO. Each episode's board is played `group` times at once (play 0 with the
/// untrained arm's agent seed, the others with their own), the plays' returns are the group's rewards,
/// and every sampled model call of a play (world model, value, act, rules, playbook; at most
/// `callsPerPlay` of them) is a completion with its play's advantage, in one optimizer step of the one
/// trainer. Play 0 is the arm's episode: its outcome is reported and its rules and playbook carry on.
public struct CELTraining: Codable, Sendable, Equatable {
  /// Plays of each episode's board whose returns form a GRPO group (at least 2).
  public var group = 4
  /// Model calls per play trained on: a seeded sample of them, all when there are fewer.
  public var callsPerPlay = 4
  public var learningRate = 1e-4
  public var loraRank = 16
  public var loraAlpha = 32.0
  /// Completions per micro-batch of the update.
  public var microBatch = 4
  public init() {}

  /// The arm's name in reports: the agent's, marked as trained.
  public static func arm(_ agent: AgentKind) -> String { agent.rawValue + "+grpo" }
}

/// The GRPO learner over game plays, as an online method of the one trainer: a rollout plays one episode's
/// group; the loss is GRPO's (`GRPO.microBatchLoss`, loss type grpo: each completion's token mean, so a long
/// reflection and a one-word action weigh the same).
final class CELGRPOMethod: OnlineMethod, @unchecked Sendable {
  typealias Example = GRPOSample
  typealias Prompt = Int

  let training: CELTraining
  let chat: ChatModel
  /// Plays episode `e`'s group; returns each play's record and calls.
  let playGroup: @Sendable (Int) async throws -> [(EpisodeRecord, [(messages: [ChatMessage], reply: String)])]
  /// Called with play 0's record once a group's update is done.
  let onEpisode: (EpisodeRecord) -> Void
  let settings: GRPOMethod.Settings
  let stream: Generator

  init(training: CELTraining, chat: ChatModel, seed: UInt64,
       playGroup: @escaping @Sendable (Int) async throws -> [(EpisodeRecord, [(messages: [ChatMessage], reply: String)])],
       onEpisode: @escaping (EpisodeRecord) -> Void) {
    self.training = training
    self.chat = chat
    self.playGroup = playGroup
    self.onEpisode = onEpisode
    var s = GRPOMethod.Settings()
    s.lossType = .grpo
    settings = s
    stream = Generator(seed: seed &+ 0xCE1)
  }

  var name: String { "cel-grpo" }
  var passes: Int { 1 }
  func miniBatch(promptsPerStep: Int) -> Int { training.group * training.callsPerPlay }
  var generators: [(name: String, generator: Generator)] { [("calls", stream)] }
  func weight(of example: GRPOSample) -> Double { 1 }

  func rollout(_ prompts: [Int], model: any CausalLM, step: Int) throws -> Rollout<GRPOSample> {
    let episode = step - 1
    let box = ResultBox()
    let done = DispatchSemaphore(value: 0)
    let play = playGroup
    // The plays run on Swift's concurrency pool; the trainer's own thread waits for them.
    Task {
      do { box.value = .success(try await play(episode)) } catch { box.value = .failure(error) }
      done.signal()
    }
    done.wait()
    let plays = try box.value!.get()
    let returns = plays.map(\.0.reward)
    let (advantages, _, zeroStd) = GRPO.advantages(returns, groupSize: returns.count, scale: .group)
    var samples: [GRPOSample] = []
    for ((_, calls), advantage) in zip(plays, advantages) {
      let order = Tensor.randperm(calls.count, generator: stream).toArray(Int.self).prefix(training.callsPerPlay)
      for i in order.sorted() {
        guard let prompt = try? chat.encode(calls[i].messages).ids else { continue }
        let reply = chat.tokenizer.encode(calls[i].reply, addSpecialTokens: false)
        guard !reply.isEmpty, prompt.count + reply.count <= chat.model.config.maxPositions else { continue }
        samples.append(GRPOSample(sequence: TokenSequence(prompt: prompt, response: reply), advantage: advantage))
      }
    }
    onEpisode(plays[0].0)
    let n = Double(returns.count), mean = returns.reduce(0, +) / n
    return Rollout(examples: samples, metrics: [
      "reward": mean, "reward_std": (returns.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1)).squareRoot(),
      "frac_reward_zero_std": zeroStd.allSatisfy { $0 } ? 1 : 0, "won": Double(plays.filter(\.0.won).count) / n,
      "completions": Double(samples.count),
    ])
  }

  func loss(_ batch: [GRPOSample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    GRPO.microBatchLoss(batch, model: model, padId: chat.tokenizer.padTokenId ?? 0, settings: settings)
  }

  func evaluate(_ prompts: [Int], model: any CausalLM, step: Int) throws -> [String: Double] { [:] }

  final class ResultBox: @unchecked Sendable {
    var value: Result<[(EpisodeRecord, [(messages: [ChatMessage], reply: String)])], Error>?
  }
}

extension CELRunner {
  /// One trained arm (game, agent, seed): a fresh LoRA adapter on the local model, `config.episodes` GRPO
  /// steps, the adapter saved under `adapters/` and taken off the model again. Resumes at run granularity:
  /// a run whose episodes are all in `file` is read back; an unfinished one starts over.
  static func runTrained(_ spec: GameSpec, agent kind: AgentKind, seed: Int, config: CELConfig, training: CELTraining,
                         backend: LocalChatBackend, file: URL, transcript: URL, out: URL,
                         onEpisode: @escaping @Sendable (EpisodeRecord, Bool) -> Void) async throws -> [EpisodeRecord] {
    let kept = readRecords(file).prefix(config.episodes).enumerated().prefix { $0.offset == $0.element.episode }.map(\.element)
    if kept.count == config.episodes {
      for r in kept { onEpisode(r, true) }
      return kept
    }
    try Data().write(to: file, options: .atomic)
    let model = backend.chat.model
    try Adapter.attach(LoRAConfig(rank: training.loraRank, alpha: training.loraAlpha, family: model.config.family), to: model,
                       seed: UInt64(seed))
    backend.weightsChanged()
    defer {
      Adapter.detach(model)
      backend.weightsChanged()
    }
    let writer = try TranscriptWriter(url: transcript, append: false)
    let handle = try FileHandle(forWritingTo: file)
    defer { try? handle.close() }
    let records = Locked([EpisodeRecord]())
    // What play 0 (the arm's episode) ended with: the next group starts from it.
    let knowledge = Locked((rules: "", playbook: ""))
    let group = training.group
    let method = CELGRPOMethod(training: training, chat: backend.chat, seed: UInt64(seed), playGroup: { episode in
      let start = knowledge.mutate { $0 }
      let plays = try await withThrowingTaskGroup(of: (Int, EpisodeRecord, [(messages: [ChatMessage], reply: String)]).self) {
        tasks in
        for g in 0..<group {
          tasks.addTask {
            let recorder = RecordingChatBackend(backend)
            // Play 0 is the untrained arm's agent (its seed, so it meets the same draws); the others vary.
            let agent = try GameAgent(kind: kind, backend: recorder, prompts: config.prompts, settings: config.settings,
                                      transcript: g == 0 ? writer : nil, seed: UInt64(seed) &+ UInt64(g) &* 0x9E37_79B9)
            agent.restore(rules: start.rules, playbook: start.playbook)
            var r = try await spec.withGame { game in
              try await agent.play(&game, gameName: spec.name, seed: CELConfig.gameSeed(seed, episode: episode), episode: episode)
            }
            r.agent = CELTraining.arm(kind)
            return (g, r, recorder.recorded)
          }
        }
        var out: [(Int, EpisodeRecord, [(messages: [ChatMessage], reply: String)])] = []
        for try await x in tasks { out.append(x) }
        return out.sorted { $0.0 < $1.0 }.map { ($0.1, $0.2) }
      }
      knowledge.mutate { $0 = (plays[0].0.rules, plays[0].0.playbook) }
      return plays
    }, onEpisode: { r in
      handle.write(Data(line(r).utf8))
      records.mutate { $0.append(r) }
      onEpisode(r, false)
    })
    var options = TrainerOptions()
    options.steps = config.episodes
    options.batchSize = training.microBatch
    options.learningRate = training.learningRate
    options.schedule = .constant
    options.seed = UInt64(seed)
    let trainDir = out.appendingPathComponent("train/\(spec.name)-\(CELTraining.arm(kind))-seed\(seed)")
    try FileManager.default.createDirectory(at: trainDir, withIntermediateDirectories: true)
    let trainer = Trainer(model: model, method: method, prompts: [0], options: options, outputDirectory: trainDir)
    // The trainer blocks its thread while a group plays, so it runs on a thread of its own.
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
      let box = UncheckedBox(trainer, backend)
      let t = Thread {
        do {
          _ = try box.trainer.train { _ in box.backend.weightsChanged() }
          c.resume()
        } catch { c.resume(throwing: error) }
      }
      t.stackSize = 8 << 20
      t.start()
    }
    try Checkpoint.save(model, to: out.appendingPathComponent("adapters/\(spec.name)-\(CELTraining.arm(kind))-seed\(seed)"))
    return records.mutate { $0 }
  }

  private final class UncheckedBox: @unchecked Sendable {
    let trainer: Trainer<CELGRPOMethod>
    let backend: LocalChatBackend
    init(_ t: Trainer<CELGRPOMethod>, _ b: LocalChatBackend) { (trainer, backend) = (t, b) }
  }
}
