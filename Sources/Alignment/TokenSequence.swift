import LM
import Torch

/// A tokenised sequence and which of its tokens are prediction targets: the one shape every method's
/// data takes (demonstrations, preference completions, K-way candidates, rollouts of the live policy).
public struct TokenSequence: Sendable, Equatable {
  public var tokens: [Int]
  /// targets[i] is true when tokens[i] is trained on (predicted from tokens[..<i]).
  public var targets: [Bool]

  public init(tokens: [Int], targets: [Bool]) {
    self.tokens = tokens
    self.targets = targets
  }

  /// The prompt as context and every response token (a final EOS included) as a target.
  public init(prompt: [Int], response: [Int]) {
    tokens = prompt + response
    targets = [Bool](repeating: false, count: prompt.count) + [Bool](repeating: true, count: response.count)
  }

  /// Targets after the first token (nothing predicts the first one).
  public var targetCount: Int { targets.dropFirst().filter { $0 }.count }

  /// The tokens before the first target (at least one): what a policy continues when it re-samples the response.
  public var prompt: [Int] { Array(tokens.prefix(Swift.max(1, targets.firstIndex(of: true) ?? tokens.count))) }

  /// The first `maxLength` tokens (and their target flags).
  public func truncated(to maxLength: Int) -> TokenSequence {
    TokenSequence(tokens: Array(tokens.prefix(maxLength)), targets: Array(targets.prefix(maxLength)))
  }
}

/// A right-padded batch of sequences with its [B, T-1] label mask (1 where token i+1 is a target).
public struct SequenceBatch {
  public let padded: PaddedBatch
  public let labelMask: Tensor
  public let targetCount: Int
  public let tokenCount: Int

  public init(_ sequences: [TokenSequence], padId: Int) {
    padded = PaddedBatch(sequences.map(\.tokens), padId: padId, side: .right)
    let width = padded.tokens.size(1)
    var mask: [Float] = []
    mask.reserveCapacity(sequences.count * (width - 1))
    for e in sequences {
      for i in 1..<width { mask.append(i < e.targets.count && e.targets[i] ? 1 : 0) }
    }
    labelMask = Tensor(mask, shape: [sequences.count, width - 1])
    targetCount = sequences.reduce(0) { $0 + $1.targetCount }
    tokenCount = sequences.reduce(0) { $0 + $1.tokens.count }
  }

  /// [B, T] 1 where the *input* token at t is a target (the positions whose embeddings IFT mixes).
  public func targetInputs(_ sequences: [TokenSequence]) -> Tensor {
    let width = padded.tokens.size(1)
    return Tensor(sequences.flatMap { e in (0..<width).map { Float($0 < e.targets.count && e.targets[$0] ? 1 : 0) } },
                  shape: [sequences.count, width])
  }
}

/// Teacher-forced outputs of a batch of sequences, aligned for the loss functions: position t of
/// `tokens` scores `targets[:, t]`, and `mask` marks target tokens (and the final EOS). Log-probs and
/// logsumexp come from `score` once; no objective recomputes them over [B, T, V].
public struct ScoredBatch {
  public let batch: SequenceBatch
  public let scored: Scored
  public let mask: Tensor

  public init(_ sequences: [TokenSequence], model: any CausalLM, padId: Int, inputEmbeddings: Tensor? = nil) {
    batch = SequenceBatch(sequences, padId: padId)
    scored = model.score(batch.padded, inputEmbeddings: inputEmbeddings)
    mask = batch.labelMask.to(scored.tokenLogProbs.device)
  }

  /// Logits aligned with the targets [B, T-1, V] (a view; for entropy and greedy predictions).
  public var logits: Tensor { scored.logits.narrow(dim: 1, start: 0, length: mask.size(1)) }

  /// Per-target log-probabilities and soft values, as the objectives take them.
  public var tokens: TokenScores {
    TokenScores(logProbs: scored.tokenLogProbs, logSumExp: scored.logSumExp.narrow(dim: 1, start: 0, length: mask.size(1)))
  }

  /// The policy's mean entropy over the target positions, without gradients (a metric).
  public var meanEntropy: Tensor {
    withoutGradients { TokenLoss.entropy(logits: logits.detached(), mask: mask.to(.float32)) }
  }

  /// Σ log π(y_t|s_t) over each sequence's target tokens: the LM-as-reward score r_θ(x, y) [N].
  public var sequenceLogProbs: Tensor { (scored.tokenLogProbs * mask).sum(dim: 1) }

  /// The final hidden state at each sequence's last real token [N, D].
  public var lastHidden: Tensor {
    let last = Tensor(batch.padded.lengths.map { $0 - 1 }, shape: [batch.padded.lengths.count, 1, 1]).to(scored.hidden.device)
    let d = scored.hidden.size(-1)
    return scored.hidden.gather(dim: 1, index: last.expanded(to: [-1, 1, d])).squeezed(dim: 1)
  }
}

/// What every token-level objective needs of the model, aligned so that index t scores target t:
/// log π(y_t|s_t) [B,T] and V(s_t) = logsumexp ℓ_t [B,T] (so the target's logit is their sum).
public struct TokenScores {
  public let logProbs: Tensor
  public let logSumExp: Tensor

  public init(logProbs: Tensor, logSumExp: Tensor) {
    self.logProbs = logProbs
    self.logSumExp = logSumExp
  }

  /// From raw logits [B,T,V] and targets [B,T] (tests, and callers without a `Scored`), in float32 at least.
  public init(logits: Tensor, targets: Tensor) {
    let l = wide(logits)
    logSumExp = l.logSumExp(dim: -1)
    logProbs = l.gather(dim: 2, index: targets.unsqueezed(dim: -1)).squeezed(dim: -1) - logSumExp
  }

  /// Q(s_t, y_t) = ℓ_t[y_t]: the target's logit.
  public var targetLogits: Tensor { logProbs + logSumExp }
}
