import Foundation
import Torch

/// A differentiable scalar loss and named metrics (plain numbers, computed without gradients).
public struct LossResult {
  public let loss: Tensor
  public let metrics: [String: Double]
  public init(loss: Tensor, metrics: [String: Double]) {
    self.loss = loss
    self.metrics = metrics
  }
}

// Conventions for every function here: token-level inputs are aligned so that `logits[:, t]` predicts
// `targets[:, t]` ([B,T,V] and [B,T] int64) and `mask` [B,T] (0/1, floating) marks response tokens.
// Token means are Σ(mask·x)/Σmask over the whole batch, the normalisation SFT uses, so reductions are exact.
// Reductions happen in float32 at least; probabilities stay in log space.

/// Σ(mask·x)/max(Σmask, 1).
func maskedMean(_ x: Tensor, _ mask: Tensor) -> Tensor { (x * mask).sum() / mask.sum().clamp(min: 1) }

func wide(_ t: Tensor) -> Tensor { t.dtype == .float64 ? t : t.to(.float32) }

public enum TokenLoss {
  /// log π(y_t|s_t) [B,T].
  public static func logProbs(logits: Tensor, targets: Tensor) -> Tensor {
    let l = wide(logits)
    return l.gather(dim: 2, index: targets.unsqueezed(dim: -1)).squeezed(dim: -1) - l.logSumExp(dim: -1)
  }

  /// Σ_t mask·log π(y_t|s_t) per sequence [B].
  public static func sequenceLogProbs(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor {
    (logProbs(logits: logits, targets: targets) * mask).sum(dim: 1)
  }

  /// SFT (METHODS §7): the mean token negative log-likelihood over response tokens.
  public static func crossEntropy(logits: Tensor, targets: Tensor, mask: Tensor) -> LossResult {
    let loss = -maskedMean(logProbs(logits: logits, targets: targets), mask)
    return LossResult(loss: loss, metrics: ["nll": loss.item()])
  }
}

/// IQLearn as TD-regularised MLE (METHODS §5): logits are soft Q-values, Q(s_t,a) = ℓ_t[a],
/// V(s_t) = logsumexp ℓ_t, and V after the last response token is 0.
public enum IQLearnLoss {
  /// V(s_{t+1}) aligned at t: the next position's soft value where it is a response token, else 0.
  static func nextValues(_ lse: Tensor, mask: Tensor) -> Tensor {
    let t = lse.size(1)
    let zeros = Tensor.zeros([lse.size(0), 1], dtype: lse.dtype)
    guard t > 1 else { return zeros }
    let shifted = lse.narrow(dim: 1, start: 1, length: t - 1) * mask.narrow(dim: 1, start: 1, length: t - 1)
    return Tensor.cat([shifted, zeros], dim: 1)
  }

  /// Per token −log π(y_t|s_t) + λ(Q(s_t,y_t) − γV(s_{t+1}))², averaged over response tokens. λ = 0 is SFT.
  public static func compute(logits: Tensor, targets: Tensor, mask: Tensor, lambda: Double, gamma: Double) -> LossResult {
    let l = wide(logits)
    let lse = l.logSumExp(dim: -1)
    let q = l.gather(dim: 2, index: targets.unsqueezed(dim: -1)).squeezed(dim: -1)
    let nll = -maskedMean(q - lse, mask)
    let td = q - nextValues(lse, mask: mask) * gamma
    let tdLoss = maskedMean(td.square(), mask)
    let loss = lambda == 0 ? nll : nll + tdLoss * lambda
    let perSeq = (td * mask).sum(dim: 1)
    return LossResult(loss: loss, metrics: [
      "nll": nll.item(), "td_loss": tdLoss.item(), "rewards/token_mean": maskedMean(td, mask).item(),
      "rewards/sequence_mean": perSeq.mean().item(),
    ])
  }

  /// The implicit rewards r_t = Q(s_t,y_t) − γV(s_{t+1}) [B,T] (zero off the response) and their sums [B].
  public static func implicitRewards(logits: Tensor, targets: Tensor, mask: Tensor, gamma: Double)
    -> (perToken: Tensor, perSequence: Tensor)
  {
    let l = wide(logits)
    let lse = l.logSumExp(dim: -1)
    let q = l.gather(dim: 2, index: targets.unsqueezed(dim: -1)).squeezed(dim: -1)
    let r = (q - nextValues(lse, mask: mask) * gamma) * mask
    return (r, r.sum(dim: 1))
  }

  /// The online variant's term for the policy's own samples **(choice, METHODS §5)**: they enter only
  /// the value term, λ·mean over response tokens of (V(s_t) − γV(s_{t+1}))².
  public static func valueTerm(logits: Tensor, mask: Tensor, gamma: Double, lambda: Double) -> LossResult {
    let lse = wide(logits).logSumExp(dim: -1)
    let loss = maskedMean((lse - nextValues(lse, mask: mask) * gamma).square(), mask) * lambda
    return LossResult(loss: loss, metrics: ["value_term": loss.item()])
  }
}

/// Intuitive Fine-Tuning (Hua et al. 2024; METHODS §4).
public enum IFT {
  /// The model's greedy prediction of each input token from the tokens before it: out[:, t] =
  /// argmax ℓ_{t−1}, and out[:, 0] = input[:, 0] (nothing predicts the first token).
  public static func greedyShifted(logits: Tensor, inputTokens: Tensor) -> Tensor {
    let t = inputTokens.size(1)
    let pred = logits.argmax(dim: -1)
    guard t > 1 else { return inputTokens }
    return Tensor.cat([inputTokens.narrow(dim: 1, start: 0, length: 1), pred.narrow(dim: 1, start: 0, length: t - 1)], dim: 1)
  }

  /// (1−λ)·E(y*_t) + λ·E(ŷ_t) where `responseMask` marks positions whose input token is a response token;
  /// the ground-truth embedding elsewhere. The model's own input embedding is used (not a frozen copy).
  public static func mixEmbeddings(embeddingWeight: Tensor, inputTokens: Tensor, predictedTokens: Tensor,
                                   responseMask: Tensor, lambda: Double) -> Tensor {
    let truth = Tensor.embedding(inputTokens, weight: embeddingWeight)
    guard lambda != 0 else { return truth }
    let own = Tensor.embedding(predictedTokens, weight: embeddingWeight)
    return truth + (own - truth) * responseMask.to(truth.dtype).unsqueezed(dim: -1) * lambda
  }

  /// The token losses re-weighted by their discounted future **(choice)**: each response position t
  /// contributes c_t = Σ_{k≥t} γ^{k−t} ℓ_k (its own loss plus the discounted losses of the tokens it
  /// conditions; gradient flows through all of them), and the total is divided by the same discounted
  /// mass of a unit loss, Σ_t Σ_{k≥t} γ^{k−t}, so the loss stays on the SFT scale. METHODS' literal
  /// w_t = c_t·N/Σc gives Σℓ²/Σℓ at γ = 0, not SFT; this form is exactly the SFT mean at γ = 0, as METHODS
  /// requires. Discounting runs within each sequence over its response tokens only.
  public static func weightedLoss(tokenLosses: Tensor, mask: Tensor, gamma: Double) -> LossResult {
    let l = wide(tokenLosses)
    let m = mask.to(l.dtype)
    let t = l.size(1)
    // D[t, k] = γ^{k−t} for k ≥ t, else 0; with γ = 0 it is the identity.
    var rows: [Double] = []
    rows.reserveCapacity(t * t)
    for i in 0..<t { for k in 0..<t { rows.append(k < i ? 0 : (k == i ? 1 : Foundation.pow(gamma, Double(k - i)))) } }
    let d = Tensor(rows, shape: [t, t]).to(l.dtype)
    let future = (l * m).matmul(d.transposed(0, 1))  // [B,T]: c_t
    let mass = m.matmul(d.transposed(0, 1))          // the same for unit losses
    let loss = (future * m).sum() / (mass * m).sum().clamp(min: 1e-12)
    return LossResult(loss: loss, metrics: ["nll": maskedMean(l, m).item(), "ift_loss": loss.item()])
  }

  /// λ for an optimizer step (1-based): a linear ramp from 0 to `base` over `warmup` steps.
  public static func lambda(at step: Int, base: Double, warmup: Int) -> Double {
    warmup > 0 ? base * Swift.min(1, Double(step) / Double(warmup)) : base
  }
}

/// The LM-as-reward K-way choice likelihood (METHODS §1.1): P(pick y_i) = softmax_k(r_θ(x, y_k))[i].
public enum ChoiceLoss {
  /// - scores: [N,K] sequence log-likelihoods; chosen: [N] int64; validMask: [N,K] bool (nil: all valid).
  public static func compute(scores: Tensor, chosen: Tensor, validMask: Tensor? = nil) -> LossResult {
    var s = wide(scores)
    if let validMask { s = s.maskedFill(validMask.logicalNot(), -Double.infinity) }
    let logP = s.logSoftmax(dim: 1).gather(dim: 1, index: chosen.unsqueezed(dim: 1)).squeezed(dim: 1)
    let loss = -logP.mean()
    let accuracy = s.argmax(dim: 1).eq(chosen).to(.float32).mean().item()
    return LossResult(loss: loss, metrics: ["loss": loss.item(), "accuracy": accuracy,
                                            "chosen_probability_mean": logP.exp().mean().item()])
  }
}

/// Bradley–Terry preference loss on scalar rewards: −log σ(r_w − r_l).
public enum BradleyTerryLoss {
  public static func compute(chosen: Tensor, rejected: Tensor) -> LossResult {
    let c = wide(chosen), r = wide(rejected)
    let margin = c - r
    let loss = -margin.logSigmoid().mean()
    return LossResult(loss: loss, metrics: [
      "rewards/chosen": c.mean().item(), "rewards/rejected": r.mean().item(), "rewards/margins": margin.mean().item(),
      "rewards/accuracies": margin.gt(0).to(.float32).mean().item(),
    ])
  }
}

/// Direct Preference Optimisation (METHODS §7): −log σ(β[(log π_θ(y_w) − log π_ref(y_w)) − (log π_θ(y_l) − log π_ref(y_l))]).
public enum DPOLoss {
  public static func compute(policyChosen: Tensor, policyRejected: Tensor, referenceChosen: Tensor,
                             referenceRejected: Tensor, beta: Double) -> LossResult {
    let pc = wide(policyChosen), pr = wide(policyRejected)
    let chosenReward = (pc - referenceChosen.to(pc.dtype)) * beta
    let rejectedReward = (pr - referenceRejected.to(pr.dtype)) * beta
    let margin = chosenReward - rejectedReward
    let loss = -margin.logSigmoid().mean()
    return LossResult(loss: loss, metrics: [
      "rewards/chosen": chosenReward.mean().item(), "rewards/rejected": rejectedReward.mean().item(),
      "rewards/margins": margin.mean().item(), "rewards/accuracies": margin.gt(0).to(.float32).mean().item(),
      "logps/chosen": pc.mean().item(), "logps/rejected": pr.mean().item(),
    ])
  }
}

/// ORPO (METHODS §7): SFT on the chosen plus λ·−log σ(log odds(y_w) − log odds(y_l)), with
/// log odds(y) = log p − log(1 − p) and log p the mean per-token log-probability (length-normalised).
public enum ORPOLoss {
  static func meanLogProb(_ logits: Tensor, _ targets: Tensor, _ mask: Tensor) -> Tensor {
    (TokenLoss.logProbs(logits: logits, targets: targets) * mask).sum(dim: 1) / mask.sum(dim: 1).clamp(min: 1)
  }

  public static func compute(chosenLogits: Tensor, chosenTargets: Tensor, chosenMask: Tensor, rejectedLogits: Tensor,
                             rejectedTargets: Tensor, rejectedMask: Tensor, lambda: Double) -> LossResult {
    let nll = TokenLoss.crossEntropy(logits: chosenLogits, targets: chosenTargets, mask: chosenMask).loss
    func logOdds(_ lp: Tensor) -> Tensor { lp - (-(lp.clamp(max: -1e-6).exp())).log1p() }
    let ratio = logOdds(meanLogProb(chosenLogits, chosenTargets, chosenMask))
      - logOdds(meanLogProb(rejectedLogits, rejectedTargets, rejectedMask))
    let orLoss = -ratio.logSigmoid().mean()
    let loss = nll + orLoss * lambda
    return LossResult(loss: loss, metrics: [
      "nll": nll.item(), "or_loss": orLoss.item(), "log_odds_ratio": ratio.mean().item(),
      "rewards/accuracies": ratio.gt(0).to(.float32).mean().item(),
    ])
  }
}

/// The pieces of PPO for RLHF (METHODS §7).
public enum PPO {
  /// Per-token rewards: −β·(log π − log π_ref) on response tokens, plus the sequence score at each row's
  /// last response token. Returns them and each row's summed KL estimate.
  public static func klPenalizedRewards(score: Tensor, policyLogProbs: Tensor, referenceLogProbs: Tensor, mask: Tensor,
                                        klCoef: Double) -> (rewards: Tensor, kl: Tensor) {
    let kl = (wide(policyLogProbs) - wide(referenceLogProbs)) * mask
    let positions = Tensor.arange(0, Double(mask.size(1)), dtype: mask.dtype).unsqueezed(dim: 0)
    let last = (mask * (positions + 1)).argmax(dim: 1, keepDim: true)  // index of the last response token
    let rewards = (-kl * klCoef).scatterAdd(dim: 1, index: last, source: wide(score).to(kl.dtype).unsqueezed(dim: 1))
    return (rewards * mask, kl.sum(dim: 1))
  }

  /// Generalised advantage estimation over response tokens; the value after the last one is 0.
  public static func gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: Double, lambda: Double)
    -> (advantages: Tensor, returns: Tensor)
  {
    let t = rewards.size(1)
    let r = wide(rewards), v = wide(values).detached(), m = mask.to(r.dtype)
    var next = Tensor.zeros([r.size(0)], dtype: r.dtype)
    var nextValue = Tensor.zeros([r.size(0)], dtype: r.dtype)
    var columns: [Tensor] = Array(repeating: next, count: t)
    for i in stride(from: t - 1, through: 0, by: -1) {
      let mi = m.select(dim: 1, index: i)
      let delta = r.select(dim: 1, index: i) + nextValue * gamma - v.select(dim: 1, index: i)
      next = (delta + next * (gamma * lambda)) * mi
      columns[i] = next
      // Moving left: the value and advantage to bootstrap from are this position's (zero off the response).
      nextValue = v.select(dim: 1, index: i) * mi
    }
    let advantages = Tensor.stack(columns, dim: 1)
    return (advantages, (advantages + v) * m)
  }

  /// (x − mean)/std over the masked entries (mean kept when `shiftMean` is false); zero off the mask.
  public static func whiten(_ x: Tensor, mask: Tensor, shiftMean: Bool = true) -> Tensor {
    let w = wide(x), m = mask.to(w.dtype)
    let mean = maskedMean(w, m)
    let variance = maskedMean((w - mean).square(), m)
    var out = (w - mean) * (variance + 1e-8).rsqrt()
    if !shiftMean { out = out + mean }
    return out * m
  }

  /// The clipped surrogate −min(ρA, clip(ρ, 1±ε)A), averaged over response tokens.
  public static func policyLoss(logProbs: Tensor, oldLogProbs: Tensor, advantages: Tensor, mask: Tensor, clip: Double)
    -> LossResult
  {
    let logRatio = wide(logProbs) - wide(oldLogProbs).detached()
    let ratio = logRatio.exp()
    let a = advantages.detached().to(ratio.dtype)
    let unclipped = -a * ratio
    let clipped = -a * ratio.clamp(min: 1 - clip, max: 1 + clip)
    let loss = maskedMean(unclipped.maximum(clipped), mask)
    return LossResult(loss: loss, metrics: [
      "clip_ratio": maskedMean(clipped.gt(unclipped).to(ratio.dtype), mask).item(),
      "approx_kl": maskedMean(logRatio.square() * 0.5, mask).item(),
    ])
  }

  /// ½·max((v − R)², (clip(v, v_old ± c) − R)²), averaged over response tokens.
  public static func valueLoss(values: Tensor, oldValues: Tensor, returns: Tensor, mask: Tensor, clip: Double) -> LossResult {
    let v = wide(values), old = wide(oldValues).detached(), ret = wide(returns).detached()
    let clippedV = old + (v - old).clamp(min: -clip, max: clip)
    let a = (v - ret).square(), b = (clippedV - ret).square()
    let loss = maskedMean(a.maximum(b), mask) * 0.5
    return LossResult(loss: loss, metrics: ["value_clip_ratio": maskedMean(b.gt(a).to(v.dtype), mask).item()])
  }
}
