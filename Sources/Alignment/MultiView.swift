import Foundation
import NN
import Torch

/// RLP-UML's unsupervised multi-view term (Lang et al. 2024; METHODS §6): two policy responses to one
/// prompt are two views of it; a Gaussian encoder maps each view's reward-model hidden state to
/// N(μ, diag σ²), and the term keeps what the views share (a Jensen–Shannon estimate of I(z1; z2) with a
/// learned critic, negatives from the other prompts of the batch) while pulling the two posteriors together
/// (their symmetric KL):  L_M = −Î_JSD(z1; z2) + ½[KL(p1‖p2) + KL(p2‖p1)].
public enum MultiViewLoss {
  /// KL(N(μ1, diag e^{v1}) ‖ N(μ2, diag e^{v2})) per row [N], for means and log-variances [N, k]:
  /// ½ Σ_j [v2 − v1 + (e^{v1} + (μ1 − μ2)²)/e^{v2} − 1].
  public static func gaussianKL(mu1: Tensor, logVar1: Tensor, mu2: Tensor, logVar2: Tensor) -> Tensor {
    let (m1, v1, m2, v2) = (wide(mu1), wide(logVar1), wide(mu2), wide(logVar2))
    return ((v2 - v1 + (v1.exp() + (m1 - m2).square()) / v2.exp() - 1) * 0.5).sum(dim: -1)
  }

  /// The Jensen–Shannon MI estimate (Deep InfoMax's) from critic scores [N, N]: row i, column j scores
  /// (z1_i, z2_j), so the diagonal holds the positive pairs and the rest the negatives from other prompts:
  /// Î = mean_i[−softplus(−T_ii)] − mean_{i≠j}[softplus(T_ij)].
  public static func jsdMutualInformation(scores: Tensor) -> Tensor {
    let t = wide(scores)
    let n = t.size(0)
    precondition(n >= 2 && t.size(1) == n, "the JSD estimate needs a square score matrix over at least two prompts")
    let eye = Tensor((0..<(n * n)).map { $0 % (n + 1) == 0 ? 1.0 : 0.0 }, shape: [n, n]).to(t.dtype).to(t.device)
    let positive = (t.logSigmoid() * eye).sum() / Double(n)
    let negative = (t.softplus() * (1 - eye)).sum() / Double(n * (n - 1))
    return positive - negative
  }
}

/// The encoder and critic of the multi-view term: a three-layer MLP from the reward model's last hidden
/// state to (μ, log σ²) of a k-dimensional Gaussian (one encoder for both views: they are exchangeable),
/// and a bilinear critic T(z1, z2) = z1ᵀ W z2.
public final class MultiViewHead: Module {
  public let encoder: MLP
  public let critic: Tensor
  public let latent: Int

  public init(features: Int, hidden: Int = 128, latent: Int = 32, generator: Generator? = nil) {
    self.latent = latent
    encoder = MLP([features, hidden, hidden, 2 * latent], activation: .relu, generator: generator)
    critic = Init.normal([latent, latent], std: 1 / Double(latent).squareRoot(), generator: generator)
  }

  /// (μ, log σ²) [N, k] of hidden states [N, D].
  public func encode(_ h: Tensor) -> (mu: Tensor, logVar: Tensor) {
    let out = encoder(h.to(.float32))
    return (out.narrow(dim: 1, start: 0, length: latent), out.narrow(dim: 1, start: latent, length: latent))
  }

  /// L_M for the hidden states of view 1 and view 2 of the same N prompts ([N, D] each, N ≥ 2), with
  /// reparameterised samples z = μ + σ ⊙ ε (ε from `generator`).
  public func loss(view1: Tensor, view2: Tensor, generator: Generator) -> LossResult {
    let (m1, v1) = encode(view1), (m2, v2) = encode(view2)
    func sample(_ m: Tensor, _ v: Tensor) -> Tensor {
      m + (v * 0.5).exp() * Tensor.randn(m.shape, dtype: m.dtype, generator: generator).to(m.device)
    }
    let (z1, z2) = (sample(m1, v1), sample(m2, v2))
    let mi = MultiViewLoss.jsdMutualInformation(scores: z1.matmul(critic).matmul(z2.transposed(0, 1)))
    let skl = ((MultiViewLoss.gaussianKL(mu1: m1, logVar1: v1, mu2: m2, logVar2: v2)
      + MultiViewLoss.gaussianKL(mu1: m2, logVar1: v2, mu2: m1, logVar2: v1)) * 0.5).mean()
    return LossResult(loss: skl - mi, metrics: ["multiview/mi_jsd": mi, "multiview/skl": skl])
  }
}
