import Foundation
import LM
import Torch

/// One option of a method, declared once in the method's file: its name, default and help are what the
/// CLI shows and parses (`shatter train NAME --help`), and what `make` reads.
public struct MethodOption: Sendable {
  public enum Kind: Sendable { case double, int, string, flag }
  public let name: String
  public let kind: Kind
  /// The default as text (nil: no default, the option is optional).
  public let defaultValue: String?
  public let help: String

  public static func double(_ name: String, _ value: Double, _ help: String) -> MethodOption {
    MethodOption(name: name, kind: .double, defaultValue: "\(value)", help: help)
  }
  public static func int(_ name: String, _ value: Int, _ help: String) -> MethodOption {
    MethodOption(name: name, kind: .int, defaultValue: "\(value)", help: help)
  }
  /// A text option without a default (absent unless given).
  public static func string(_ name: String, _ help: String) -> MethodOption {
    MethodOption(name: name, kind: .string, defaultValue: nil, help: help)
  }
  public static func flag(_ name: String, _ help: String) -> MethodOption {
    MethodOption(name: name, kind: .flag, defaultValue: nil, help: help)
  }
}

/// A method option given a wrong name or value; the message names the flag and what was expected.
public struct MethodOptionError: Error, CustomStringConvertible {
  public let description: String
  public init(_ message: String) { description = message }
}

/// A method's option values, parsed from `--name value`, `--name=value` and `--flag` against its options.
public struct MethodArguments {
  let options: [String: MethodOption]
  var values: [String: String] = [:]

  public init(parsing arguments: [String], options declared: [MethodOption]) throws {
    options = Dictionary(uniqueKeysWithValues: declared.map { ($0.name, $0) })
    var i = 0
    while i < arguments.count {
      let arg = arguments[i]
      guard arg.hasPrefix("--") else { throw MethodOptionError("unexpected argument '\(arg)'") }
      var name = String(arg.dropFirst(2)), value: String?
      if let eq = name.firstIndex(of: "=") {
        value = String(name[name.index(after: eq)...])
        name = String(name[..<eq])
      }
      guard let option = options[name] else {
        let known = declared.map { "--" + $0.name }
        throw MethodOptionError("unknown option '--\(name)'" + (known.isEmpty ? "" : " (this method's own: \(known.joined(separator: ", ")))"))
      }
      if option.kind == .flag {
        guard value == nil else { throw MethodOptionError("--\(name) is a flag and takes no value") }
        values[name] = "true"
      } else {
        if value == nil {
          guard i + 1 < arguments.count else { throw MethodOptionError("--\(name) needs a value") }
          i += 1
          value = arguments[i]
        }
        let v = value ?? ""
        switch option.kind {
        case .double where Double(v) == nil: throw MethodOptionError("--\(name): '\(v)' is not a number")
        case .int where Int(v) == nil: throw MethodOptionError("--\(name): '\(v)' is not an integer")
        default: break
        }
        values[name] = v
      }
      i += 1
    }
  }

  func raw(_ name: String) -> String? {
    precondition(options[name] != nil, "option '\(name)' is not declared by the method")
    return values[name] ?? options[name]?.defaultValue
  }
  public func double(_ name: String) -> Double { raw(name).flatMap(Double.init) ?? .nan }
  public func int(_ name: String) -> Int { raw(name).flatMap { Int($0) } ?? 0 }
  public func string(_ name: String) -> String? { raw(name) }
  public func flag(_ name: String) -> Bool { raw(name) == "true" }
}

/// What a method is built from: the loaded model and tokenizer, and the data conventions of the run.
public struct MethodSetup {
  public let model: any CausalLM
  public let tokenizer: any TextTokenizer
  /// The directory whose tokenizer files the output carries (nil: none).
  public let companions: URL?
  public let seed: UInt64
  /// Tokens per sequence; longer examples keep their first tokens.
  public let maxLength: Int
  /// The base checkpoint's path, recorded by a LoRA adapter trained on it (nil: a fresh model).
  public var baseModel: String?

  public init(model: any CausalLM, tokenizer: any TextTokenizer, companions: URL?, seed: UInt64, maxLength: Int) {
    self.model = model
    self.tokenizer = tokenizer
    self.companions = companions
    self.seed = seed
    self.maxLength = Swift.min(maxLength, model.config.maxPositions)
  }

  public var padId: Int { tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0 }
  /// The ids that end a sampled response: the model's EOS ids and the tokenizer's.
  public var stopTokens: Set<Int> { model.stopTokens(tokenizer: tokenizer) }
  public var template: ChatTemplate { (tokenizer as? BPETokenizer)?.chatTemplate ?? .plain }
}

/// A kind of example a data file holds, read by the loader of its format.
public protocol LoadableExample {
  static func load(_ url: URL, _ setup: MethodSetup) throws -> [Self]
}

extension TokenSequence: LoadableExample {
  public static func load(_ url: URL, _ setup: MethodSetup) throws -> [TokenSequence] {
    try SFTData.load(url, tokenizer: setup.tokenizer, template: setup.template, maxLength: setup.maxLength)
  }
}
extension PairExample: LoadableExample {
  public static func load(_ url: URL, _ setup: MethodSetup) throws -> [PairExample] {
    try PreferenceData.loadPairs(url, tokenizer: setup.tokenizer, maxLength: setup.maxLength)
  }
}
extension ChoiceExample: LoadableExample {
  public static func load(_ url: URL, _ setup: MethodSetup) throws -> [ChoiceExample] {
    try PreferenceData.loadChoices(url, tokenizer: setup.tokenizer, maxLength: setup.maxLength)
  }
}
extension PromptExample: LoadableExample {
  public static func load(_ url: URL, _ setup: MethodSetup) throws -> [PromptExample] {
    try PreferenceData.loadPrompts(url, tokenizer: setup.tokenizer, template: setup.template, maxLength: setup.maxLength)
  }
}

/// A method as a command: its name, documentation and options, declared once in its file, from which
/// the CLI generates `shatter train NAME`; how it is built from those options; and how its run is set up
/// and saved. Adding a method is its file, its tests and one line in `MethodRegistry.all`.
public protocol MethodDefinition: TrainingMethod {
  static var commandName: String { get }
  static var abstract: String { get }
  static var discussion: String { get }
  static var options: [MethodOption] { get }
  /// The trainer defaults this method's command starts from (the CLI's flags override them).
  static var trainerDefaults: TrainerOptions { get }
  /// Metrics shown on the progress line beside the loss.
  static var progressMetrics: [String] { get }
  /// Metrics whose per-step values the JSON summary lists, each under its key (e.g. `reward_history`).
  static var summaryHistories: [(metric: String, key: String)] { get }
  /// Sequences one example puts through the model in a training micro-batch (a pair's chosen and rejected:
  /// 2); the memory plan's activations scale with it.
  static var sequencesPerExample: Int { get }

  static func make(_ arguments: MethodArguments, _ setup: MethodSetup) throws -> Self
  /// The run over the data at `data` (and held-out `evalData`), with checkpoints under `out`.
  func trainer(data: URL, evalData: URL?, setup: MethodSetup, options: TrainerOptions, out: URL?) throws -> Trainer<Self>
  /// Writes the trained model (and what the method owns beside it) in Hugging Face layout.
  func save(to directory: URL, setup: MethodSetup) throws
}

extension MethodDefinition {
  public static var discussion: String { "" }
  public static var trainerDefaults: TrainerOptions { TrainerOptions() }
  public static var progressMetrics: [String] { [] }
  public static var summaryHistories: [(metric: String, key: String)] { [] }
  public static var sequencesPerExample: Int { 1 }
  public func save(to directory: URL, setup: MethodSetup) throws {
    try Checkpoint.save(setup.model, to: directory, companionsFrom: setup.companions, baseModel: setup.baseModel)
  }
}

extension MethodDefinition where Example: LoadableExample {
  public func trainer(data: URL, evalData: URL?, setup: MethodSetup, options: TrainerOptions, out: URL?) throws -> Trainer<Self> {
    Trainer(model: setup.model, method: self, examples: try Example.load(data, setup),
            evalExamples: try evalData.map { try Example.load($0, setup) } ?? [], options: options, outputDirectory: out)
  }
}

extension MethodDefinition where Self: OnlineMethod, Prompt: LoadableExample {
  public func trainer(data: URL, evalData: URL?, setup: MethodSetup, options: TrainerOptions, out: URL?) throws -> Trainer<Self> {
    Trainer(model: setup.model, method: self, prompts: try Prompt.load(data, setup),
            evalPrompts: try evalData.map { try Prompt.load($0, setup) } ?? [], options: options, outputDirectory: out)
  }
}

/// Every method the CLI offers, in the order `shatter train --help` lists them.
public enum MethodRegistry {
  public static let all: [any MethodDefinition.Type] = [
    SFTMethod.self, IFTMethod.self, IQLearnMethod.self, ChoiceMethod.self, RewardModelMethod.self, DPOMethod.self,
    ORPOMethod.self, KTOMethod.self, PPOMethod.self, GRPOMethod.self, RLOOMethod.self, OnlineDPOMethod.self,
  ]
}
