import Foundation
import LM
import Torch

/// One sampled completion as reward functions see it: the prompt's text and line, the completion's text,
/// and the prompt line's columns (an `answer`, …).
public struct RewardItem {
  public let prompt: PromptExample
  public let completion: String
  /// The completion's token ids (with its stop token, if it ended on one): what a reward model scores.
  public let completionTokens: [Int]
  public init(prompt: PromptExample, completion: String, completionTokens: [Int] = []) {
    self.prompt = prompt
    self.completion = completion
    self.completionTokens = completionTokens
  }
}

/// A reward on completions' text, one number per item (GRPO, RLOO, online DPO).
public protocol CompletionReward {
  /// The name its metrics carry (`rewards/<name>/mean`).
  var name: String { get }
  func rewards(_ items: [RewardItem]) throws -> [Double]
}

/// A reward that could not be computed: the message names the prompt (file and line) it was computing for.
public struct RewardError: Error, CustomStringConvertible {
  public let description: String
  public init(_ message: String) { description = message }
}

/// 1 when the completion's final answer equals the line's `answer` column, else 0. Both are normalised:
/// when the answer is a number, the completion's last number is compared numerically; otherwise the
/// completion's last non-empty line and the answer are compared lower-cased, trimmed, without a final
/// period and with runs of spaces collapsed.
public struct ExactMatchReward: CompletionReward {
  public let name = "exact_match"
  public let column: String
  public init(column: String = "answer") { self.column = column }

  public func rewards(_ items: [RewardItem]) throws -> [Double] {
    try items.map { item in
      guard let raw = item.prompt.columns[column] else {
        throw RewardError("\(item.prompt.source): the exact-match reward needs an '\(column)' column")
      }
      let answer = (raw as? String) ?? "\(raw)"
      return Self.matches(item.completion, answer: answer) ? 1 : 0
    }
  }

  static func numbers(_ text: String) -> [Double] {
    var out: [Double] = [], current = ""
    func flush() {
      // A sentence's final period or comma is not part of its number ("… is 12.0.").
      while let last = current.last, last == "." || last == "," { current.removeLast() }
      let t = current.replacingOccurrences(of: ",", with: "")
      if let v = Double(t), t.contains(where: \.isNumber) { out.append(v) }
      current = ""
    }
    for ch in text {
      if ch.isNumber || ch == "." || ch == "," || (ch == "-" && current.isEmpty) { current.append(ch) } else { flush() }
    }
    flush()
    return out
  }

  static func normalised(_ text: String) -> String {
    var t = text.lowercased().trimmingCharacters(in: .whitespacesAndNewlines)
    while t.hasSuffix(".") { t.removeLast() }
    return t.split(whereSeparator: \.isWhitespace).joined(separator: " ")
  }

  public static func matches(_ completion: String, answer: String) -> Bool {
    let a = normalised(answer)
    if let target = Double(a.replacingOccurrences(of: ",", with: "")) {
      guard let last = numbers(completion).last else { return false }
      return last == target
    }
    let lastLine = completion.split(separator: "\n").map(String.init).last { !$0.trimmingCharacters(in: .whitespaces).isEmpty } ?? ""
    return normalised(lastLine) == a
  }
}

/// 1 when the completion matches a regular expression (anywhere, unless it is anchored), else 0.
public struct FormatReward: CompletionReward {
  public let name = "format"
  let expression: NSRegularExpression
  public let pattern: String
  public init(pattern: String) throws {
    self.pattern = pattern
    do {
      expression = try NSRegularExpression(pattern: pattern, options: [.dotMatchesLineSeparators])
    } catch {
      throw RewardError("format:\(pattern) is not a valid regular expression")
    }
  }
  public func rewards(_ items: [RewardItem]) throws -> [Double] {
    items.map { item in
      let range = NSRange(item.completion.startIndex..., in: item.completion)
      return expression.firstMatch(in: item.completion, range: range) == nil ? 0 : 1
    }
  }
}

/// −(characters beyond `limit`)/`limit`: 0 for a completion within the limit, −1 at twice its length.
public struct LengthPenalty: CompletionReward {
  public let name = "length"
  public let limit: Int
  public init(limit: Int) { self.limit = max(1, limit) }
  public func rewards(_ items: [RewardItem]) throws -> [Double] {
    items.map { -Double(max(0, $0.completion.count - limit)) / Double(limit) }
  }
}

/// An external program as the reward: it reads one JSON object per line on stdin — the prompt line's
/// columns with `prompt` and `completion` — and writes one number per line on stdout, in order. Rewards
/// can so be written in any language.
public struct CommandReward: CompletionReward {
  public let name = "command"
  public let command: String
  public init(command: String) { self.command = command }

  public func rewards(_ items: [RewardItem]) throws -> [Double] {
    let lines = try CommandPipe.run(command, flag: "--reward-command", items: items, writes: "one number")
    return try zip(lines, items).map { text, item in
      guard let v = Double(text), v.isFinite else {
        throw RewardError("--reward-command '\(command)' wrote '\(text.prefix(40))', not a finite number, for the prompt at "
          + item.prompt.source)
      }
      return v
    }
  }
}

/// The JSONL pipe every external judge speaks (`--reward-command`, `--equivalence-command`): one JSON object
/// per completion on stdin (the prompt line's columns with `prompt` and `completion`), one line back per
/// object on stdout, in order.
public enum CommandPipe {
  /// The program's output lines (trimmed), one per item; a failure to start, a non-zero exit or the wrong
  /// number of lines is an error naming `flag`, the command and the first prompt's file and line.
  public static func run(_ command: String, flag: String, items: [RewardItem], writes: String) throws -> [String] {
    var input = Data()
    for item in items {
      var obj = item.prompt.columns
      obj["prompt"] = item.prompt.text
      obj["completion"] = item.completion
      input += try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]) + Data("\n".utf8)
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    (p.standardInput, p.standardOutput, p.standardError) = (stdin, stdout, stderr)
    let first = items.first.map { " (first prompt: \($0.prompt.source))" } ?? ""
    do { try p.run() } catch { throw RewardError("\(flag) '\(command)' could not start: \(error)") }
    // Write and read at once, so neither side blocks on a full pipe.
    let payload = input
    signal(SIGPIPE, SIG_IGN)  // a program that exits without reading must not take this process with it
    let writer = Thread {
      try? stdin.fileHandleForWriting.write(contentsOf: payload)
      try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    final class Box: @unchecked Sendable { var data = Data() }
    let errText = Box(), errDone = DispatchSemaphore(value: 0)
    Thread {
      errText.data = stderr.fileHandleForReading.readDataToEndOfFile()
      errDone.signal()
    }.start()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    errDone.wait()
    guard p.terminationStatus == 0 else {
      let message = String(decoding: errText.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      throw RewardError("\(flag) '\(command)' exited with status \(p.terminationStatus)\(first)"
        + (message.isEmpty ? "" : ": \(message.suffix(300))"))
    }
    let lines = String(decoding: out, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
      .map { $0.trimmingCharacters(in: .whitespaces) }
    let values = lines.last == "" ? Array(lines.dropLast()) : lines
    guard values.count == items.count else {
      throw RewardError("\(flag) '\(command)' wrote \(values.count) lines for \(items.count) completions\(first); "
        + "it should write \(writes) per input line")
    }
    return values
  }
}

/// A reward model written by `shatter train rm` (its own directory, or a LoRA adapter over a base): its
/// scalar score of prompt + completion tokens. It must share the policy's vocabulary.
public struct RewardModelReward: CompletionReward {
  public let name = "reward_model"
  let model: RewardModel
  let padId: Int
  let batchSize = 16

  public init(directory: String, vocabularySize: Int, padId: Int, device: Device = .cpu) throws {
    do {
      model = try RewardModel.load(from: URL(fileURLWithPath: directory))
    } catch let e as CheckpointError {
      throw RewardError("--reward-model: \(e.message)")
    }
    guard model.lm.config.vocabSize == vocabularySize else {
      throw RewardError("--reward-model \(directory): its vocabulary has \(model.lm.config.vocabSize) tokens, the policy's "
        + "\(vocabularySize); a reward model scores the policy's own tokens, so train it from the same base")
    }
    model.move(to: device)
    model.setRequiresGrad(false)
    self.padId = padId
  }

  /// A reward model in memory (scored without gradients; its parameters are left as they are).
  public init(model: RewardModel, padId: Int) {
    self.model = model
    self.padId = padId
  }

  public func rewards(_ items: [RewardItem]) throws -> [Double] {
    var out: [Double] = []
    for start in stride(from: 0, to: items.count, by: batchSize) {
      let chunk = items[start..<Swift.min(items.count, start + batchSize)]
      let sequences = try chunk.map { item -> TokenSequence in
        guard !item.completionTokens.isEmpty else {
          throw RewardError("\(item.prompt.source): the reward model needs the completion's tokens")
        }
        return TokenSequence(prompt: item.prompt.tokens, response: item.completionTokens)
      }
      out += withoutGradients { model.rewards(sequences, padId: padId).to(.float64).toArray(Double.self) }
    }
    return out
  }
}

/// Several rewards summed with weights, each also reported on its own.
public struct WeightedRewards {
  public let functions: [CompletionReward]
  public let weights: [Double]

  public init(_ functions: [CompletionReward], weights: [Double]? = nil) throws {
    guard !functions.isEmpty else {
      throw RewardError("give at least one reward (--reward-funcs, --reward-model or --reward-command)")
    }
    let w = weights ?? Array(repeating: 1, count: functions.count)
    guard w.count == functions.count else {
      throw RewardError("--reward-weights has \(w.count) weights for \(functions.count) rewards")
    }
    self.functions = functions
    self.weights = w
  }

  /// Built-ins by name: `exact-match` (against the `answer` column), `format:REGEX`, `length:N`; then a
  /// reward model; then `command` for --reward-command's program (the order --reward-weights follows).
  public static func parse(_ names: String?, rewardModel: RewardModelReward? = nil, command: String?,
                           weights: String?) throws -> WeightedRewards {
    var functions: [CompletionReward] = []
    for raw in (names ?? "").split(separator: ",").map({ String($0).trimmingCharacters(in: .whitespaces) }) where !raw.isEmpty {
      if raw == "exact-match" {
        functions.append(ExactMatchReward())
      } else if raw.hasPrefix("format:") {
        functions.append(try FormatReward(pattern: String(raw.dropFirst(7))))
      } else if raw.hasPrefix("length:"), let n = Int(raw.dropFirst(7)), n > 0 {
        functions.append(LengthPenalty(limit: n))
      } else {
        throw RewardError("--reward-funcs: unknown reward '\(raw)' (exact-match, format:REGEX, length:N)")
      }
    }
    if let rewardModel { functions.append(rewardModel) }
    if let command { functions.append(CommandReward(command: command)) }
    let w = try weights.map { text in
      try text.split(separator: ",").map { part -> Double in
        guard let v = Double(part.trimmingCharacters(in: .whitespaces)), v.isFinite else {
          throw RewardError("--reward-weights: '\(part)' is not a number")
        }
        return v
      }
    }
    return try WeightedRewards(functions, weights: w)
  }

  /// TRL's per-function metrics: `rewards/<name>/mean` and `rewards/<name>/std`.
  public func metrics(_ each: [(name: String, values: [Double])]) -> [String: Double] {
    var out: [String: Double] = [:]
    for (name, values) in each {
      out["rewards/\(name)/mean"] = mean(values)
      out["rewards/\(name)/std"] = values.count > 1 ? unbiasedStd(values[...]) : 0
    }
    return out
  }

  /// The weighted sum per item and each function's own values.
  public func evaluate(_ items: [RewardItem]) throws -> (total: [Double], each: [(name: String, values: [Double])]) {
    let each = try functions.map { ($0.name, try $0.rewards(items)) }
    var total = [Double](repeating: 0, count: items.count)
    for ((_, values), w) in zip(each, weights) { for i in total.indices { total[i] += w * values[i] } }
    return (total, each)
  }
}
