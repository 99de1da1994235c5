import Alignment
import ArgumentParser
import Foundation
import LM
import Torch

/// `shatter rlp …`: the parts of Reward Learning on Policy (METHODS §6) that are not training methods.
struct RLPCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rlp", abstract: "Reward Learning on Policy (Lang et al. 2024): synthetic preferences from the policy's samples.",
    discussion: "RLP-UML is `shatter train rm --multi-view-data FILE --lambda-mv 0.5`; RLP-SPG's pairs come from `shatter rlp spg`.",
    subcommands: [SPGCommand.self])
}

/// `shatter rlp spg`: self-consistency pairs for retraining the reward model on the policy's distribution.
struct SPGCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "spg",
    abstract: "RLP-SPG: synthetic preference pairs from the policy's samples by self-consistency (METHODS §6).",
    discussion: """
      For each prompt, --samples completions are drawn from --policy and clustered by semantic equivalence: by \
      default the exact normalised final answer (the last number, else the last line), or the keys an \
      --equivalence-command writes (the reward-command protocol: one JSON object per completion on stdin, one \
      cluster key per line on stdout). Prompts whose largest cluster holds at least --gamma of the samples are \
      kept; chosen is the largest cluster's member --reward-model scores highest, rejected a random sample from \
      another cluster. Writes {"prompt","chosen","rejected"} lines to --out, to train on with the human pairs.
      """)

  @Option(help: "The policy: a checkpoint directory, .gguf file or adapter directory.") var policy: String
  @Option(help: "A reward model from `shatter train rm` on the policy's vocabulary.") var rewardModel: String
  @Option(help: "{\"prompt\"} lines (text, or a list of chat messages).") var prompts: String
  @Option(help: "Where to write the pairs (JSONL).") var out: String
  @Option(help: "n, completions sampled per prompt.") var samples = 10
  @Option(help: "γ: keep prompts whose largest cluster holds at least this share of the samples.") var gamma = 0.5
  @Option(help: "Sampling temperature.") var temperature = 1.0
  @Option(help: "Tokens per completion at most.") var maxNewTokens = 64
  @Option(help: "A program that reads completions as JSONL and writes one equivalence key per line (default: the exact normalised answer).")
  var equivalenceCommand: String?
  @Option(help: "Seed of the sampling and of the rejected draws.") var seed: UInt64 = 0
  @Flag(help: "Print a summary object as JSON on stdout.") var json = false

  func validate() throws {
    guard samples >= 2 else { throw ValidationError("--samples must be at least 2 (a pair needs two clusters)") }
    guard gamma > 0, gamma <= 1 else { throw ValidationError("--gamma must be in (0, 1]") }
    guard temperature > 0 else { throw ValidationError("--temperature must be positive (the samples must differ)") }
    guard maxNewTokens >= 1 else { throw ValidationError("--max-new-tokens must be at least 1") }
  }

  func run() throws {
    for (flag, path) in [("--policy", policy), ("--reward-model", rewardModel), ("--prompts", prompts)] where !FileManager.default.fileExists(atPath: path) {
      throw UserError("\(flag) \(path) does not exist")
    }
    let loaded = try LoadedModel(policy)
    let tokenizer = loaded.tokenizer
    let padId = tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0
    let template = chatTemplate(of: tokenizer)
    do {
      let list = try PreferenceData.loadPrompts(URL(fileURLWithPath: prompts), tokenizer: tokenizer, template: template,
                                                maxLength: loaded.model.config.maxPositions)
      let reward = try RewardModelReward(directory: rewardModel, vocabularySize: loaded.model.config.vocabSize, padId: padId)
      let sampler = CompletionSampler(tokenizer: tokenizer, stopTokens: loaded.model.stopTokens(tokenizer: tokenizer), padId: padId,
                                      maxNewTokens: maxNewTokens, temperature: temperature)
      let equivalence = equivalenceCommand.map { command in
        { (items: [RewardItem]) throws -> [String] in
          try CommandPipe.run(command, flag: "--equivalence-command", items: items, writes: "one cluster key")
        }
      }
      let started = Date()
      let result = try SyntheticPreferences.generate(list, model: loaded.model, sampler: sampler, samples: samples, gamma: gamma,
                                                     reward: reward, equivalence: equivalence, seed: seed) { done, total in
        FileHandle.standardError.write(Data(String(format: "\rspg: %d/%d prompts (%.0f s)", done, total, Date().timeIntervalSince(started)).utf8))
      }
      FileHandle.standardError.write(Data("\n".utf8))
      var text = ""
      for p in result.pairs {
        let line = try JSONSerialization.data(withJSONObject: ["prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected],
                                              options: [.sortedKeys])
        text += String(decoding: line, as: UTF8.self) + "\n"
      }
      try Data(text.utf8).write(to: URL(fileURLWithPath: out), options: .atomic)
      let summary: [String: Any] = [
        "prompts": list.count, "pairs": result.pairs.count, "mean_confidence": result.meanConfidence,
        "skipped_low_confidence": result.skipped[.lowConfidence] ?? 0, "skipped_unanimous": result.skipped[.unanimous] ?? 0,
        "out": out,
      ]
      if json {
        printJSON(summary)
      } else {
        print(String(format: "spg: %d pairs from %d prompts (mean confidence %.2f; %d below γ = %.2f, %d unanimous); wrote %@",
                     result.pairs.count, list.count, result.meanConfidence, result.skipped[.lowConfidence] ?? 0, gamma,
                     result.skipped[.unanimous] ?? 0, out))
      }
    } catch let e as DataError {
      throw UserError(e.message)
    } catch let e as RewardError {
      throw UserError(e.description)
    }
  }
}
