import Foundation
import LM
import Torch

/// Kahneman–Tversky Optimisation (Ethayarajh et al. 2024) as TRL's KTOTrainer computes it. With
/// r = log π_θ(y|x) − log π_ref(y|x) (sums over completion tokens) and the reference point
/// z₀ = max(0, mean over the batch of r on mismatched prompt/completion pairs), detached:
/// desirable examples lose λ_D·(1 − σ(β(r − z₀))), undesirable ones λ_U·(1 − σ(β(z₀ − r))); the loss is
/// the mean over the batch.
public enum KTOLoss {
  /// - policy, reference: sequence log-probs [B] of each example's completion.
  /// - policyKL, referenceKL: the same for the mismatched pairs [B] (z₀'s sample).
  /// - desirable: each example's label.
  public static func compute(policy: Tensor, reference: Tensor, policyKL: Tensor, referenceKL: Tensor, desirable: [Bool],
                             beta: Double, desirableWeight: Double = 1, undesirableWeight: Double = 1) -> LossResult {
    let p = wide(policy)
    let logratio = p - reference.to(p.dtype)
    let pk = wide(policyKL)
    let z0 = (pk - referenceKL.to(pk.dtype)).mean().clamp(min: 0).detached()
    let d = Tensor(desirable.map { $0 ? 1.0 : 0.0 }).to(p.dtype).to(p.device)
    let u = 1 - d
    let chosenLosses = 1 - ((logratio - z0) * beta).sigmoid()
    let rejectedLosses = 1 - ((z0 - logratio) * beta).sigmoid()
    let loss = (d * chosenLosses * desirableWeight + u * rejectedLosses * undesirableWeight).mean()
    let rewards = (logratio * beta).detached()
    let chosen = maskedMean(rewards, d), rejected = maskedMean(rewards, u)
    return LossResult(loss: loss, metrics: [
      "rewards/chosen": chosen, "rewards/rejected": rejected, "rewards/margins": chosen - rejected,
      "logps/chosen": maskedMean(p, d), "logps/rejected": maskedMean(p, u), "kl": z0,
    ])
  }
}

/// An unpaired, labelled completion with its mismatched partner (this prompt, another example's
/// completion) and the frozen reference's log-probs of both, computed once before training.
public struct KTOExample: Sendable {
  public let sequence: TokenSequence
  public let desirable: Bool
  public let mismatched: TokenSequence
  public let reference: Double
  public let referenceKL: Double
}

public enum KTOData {
  /// `{"prompt","completion","label": true|false}` lines, and `{"prompt","chosen","rejected"}` lines read as
  /// one desirable and one undesirable row. Each row's mismatched partner is its prompt with the previous
  /// row's completion (the first row takes the last's), as TRL builds its KL dataset.
  public static func load(_ url: URL, tokenizer: any TextTokenizer, maxLength: Int) throws -> [(TokenSequence, Bool, [Int])] {
    try load(JSONLFile(url: url), tokenizer: tokenizer, maxLength: maxLength)
  }

  public static func load(_ file: JSONLFile, tokenizer: any TextTokenizer, maxLength: Int) throws -> [(TokenSequence, Bool, [Int])] {
    var rows: [(sequence: TokenSequence, desirable: Bool, prompt: [Int])] = []
    for (line, obj) in file.records {
      let prompt = tokenizer.encode(try file.string("prompt", in: obj, line: line), addSpecialTokens: true)
      func seq(_ key: String) throws -> TokenSequence {
        try PreferenceData.sequence(prompt: prompt, completion: try PreferenceData.completion(key, in: obj, file: file, line: line),
                                    tokenizer: tokenizer, maxLength: maxLength, file: file, line: line, key: key)
      }
      if obj["completion"] == nil, obj["chosen"] != nil {
        rows.append((try seq("chosen"), true, prompt))
        rows.append((try seq("rejected"), false, prompt))
        continue
      }
      guard let raw = obj["label"] else { throw DataError("\(file.path):\(line): missing key 'label' (true or false)") }
      guard let n = raw as? NSNumber, JSONLFile.isBoolean(n) else {
        throw DataError("\(file.path):\(line): 'label' should be true (desirable) or false (undesirable)")
      }
      rows.append((try seq("completion"), n.boolValue, prompt))
    }
    if rows.isEmpty { throw DataError("\(file.path): no examples") }
    return rows.map { ($0.sequence, $0.desirable, $0.prompt) }
  }

  /// The rows with their mismatched partners and reference log-probs.
  static func referenced(_ rows: [(TokenSequence, Bool, [Int])], reference: any CausalLM, padId: Int, maxLength: Int,
                         batchSize: Int = 8) -> [KTOExample] {
    let n = rows.count
    let mismatched = rows.indices.map { i -> TokenSequence in
      let other = rows[(i + n - 1) % n].0
      let response = zip(other.tokens, other.targets).filter(\.1).map(\.0)
      return TokenSequence(prompt: rows[i].2, response: response).truncated(to: maxLength)
    }
    return withoutGradients {
      var out: [KTOExample] = []
      for start in stride(from: 0, to: n, by: batchSize) {
        let range = start..<Swift.min(start + batchSize, n)
        let lp = ScoredBatch(range.map { rows[$0].0 } + range.map { mismatched[$0] }, model: reference, padId: padId)
          .sequenceLogProbs.toArray(Double.self)
        for (k, i) in range.enumerated() {
          out.append(KTOExample(sequence: rows[i].0, desirable: rows[i].1, mismatched: mismatched[i], reference: lp[k],
                                referenceKL: lp[range.count + k]))
        }
      }
      return out
    }
  }
}

/// KTO as a trainer method.
public final class KTOMethod: MethodDefinition {
  public static let commandName = "kto"
  public static let abstract = "Kahneman–Tversky Optimisation on unpaired desirable/undesirable completions (TRL's KTO)."
  public static let discussion = """
    Data: {"prompt","completion","label": true|false} lines; {"prompt","chosen","rejected"} lines count as one \
    desirable and one undesirable row. The reference point z0 is the batch's mean log-ratio on mismatched \
    prompt/completion pairs (each prompt with the previous row's completion), clamped at 0 and not \
    differentiated; it is taken per micro-batch. The reference is the starting model unless --reference names \
    another checkpoint; its log-probs are computed once before training. When one label is rarer, TRL \
    suggests weights with λ_D·n_D / (λ_U·n_U) in [1, 4/3].
    """
  public static let options: [MethodOption] = [
    .double("beta", 0.1, "β: how far from the reference the implied reward may move the policy."),
    .double("desirable-weight", 1, "λ_D: weight of the desirable examples' losses."),
    .double("undesirable-weight", 1, "λ_U: weight of the undesirable examples' losses."),
    .string("reference", "Reference checkpoint directory (default: the starting model)."),
  ]
  public static let progressMetrics = ["kl", "rewards/margins"]

  public static func make(_ a: MethodArguments, _ setup: MethodSetup) throws -> KTOMethod {
    guard a.double("beta") > 0 else { throw MethodOptionError("--beta must be positive") }
    guard a.double("desirable-weight") >= 0, a.double("undesirable-weight") >= 0 else {
      throw MethodOptionError("--desirable-weight and --undesirable-weight must be at least 0")
    }
    let reference = try a.string("reference").map { try Checkpoint.loadModel(from: URL(fileURLWithPath: $0)) }
    return KTOMethod(padId: setup.padId, beta: a.double("beta"), desirableWeight: a.double("desirable-weight"),
                     undesirableWeight: a.double("undesirable-weight"), reference: reference)
  }

  public let padId: Int, beta: Double, desirableWeight: Double, undesirableWeight: Double
  let reference: (any CausalLM)?
  public init(padId: Int, beta: Double = 0.1, desirableWeight: Double = 1, undesirableWeight: Double = 1,
              reference: (any CausalLM)? = nil) {
    self.padId = padId
    self.beta = beta
    self.desirableWeight = desirableWeight
    self.undesirableWeight = undesirableWeight
    self.reference = reference
  }
  public var name: String { Self.commandName }
  public func weight(of example: KTOExample) -> Double { 1 }

  public func loss(_ batch: [KTOExample], model: any CausalLM, step: Int) -> MicroBatchLoss {
    let scored = ScoredBatch(batch.map(\.sequence), model: model, padId: padId)
    let lp = scored.sequenceLogProbs
    // z0 is not differentiated, so its pass keeps no graph (TRL scores it under no_grad too).
    let kl = withoutGradients { ScoredBatch(batch.map(\.mismatched), model: model, padId: padId).sequenceLogProbs }
    let device = lp.device
    let r = KTOLoss.compute(policy: lp, reference: Tensor(batch.map(\.reference)).to(device), policyKL: kl,
                            referenceKL: Tensor(batch.map(\.referenceKL)).to(device), desirable: batch.map(\.desirable),
                            beta: beta, desirableWeight: desirableWeight, undesirableWeight: undesirableWeight)
    return MicroBatchLoss(loss: r.loss, metrics: r.tensorMetrics, tokens: scored.batch.tokenCount)
  }

  public func trainer(data: URL, evalData: URL?, setup: MethodSetup, options: TrainerOptions, out: URL?) throws -> Trainer<KTOMethod> {
    let ref = reference ?? setup.model
    func load(_ url: URL) throws -> [KTOExample] {
      KTOData.referenced(try KTOData.load(url, tokenizer: setup.tokenizer, maxLength: setup.maxLength), reference: ref,
                         padId: padId, maxLength: setup.maxLength)
    }
    return Trainer(model: setup.model, method: self, examples: try load(data), evalExamples: try evalData.map(load) ?? [],
                   options: options, outputDirectory: out)
  }
}
