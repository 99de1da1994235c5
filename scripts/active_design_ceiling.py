#!/usr/bin/env python3
"""How much can any query-selection rule save on the inclusive experiment? (numpy; docs/INCLUSIVE.md)

Two independent answers for the didactic world of `shatter experiment inclusive` (the world is rebuilt
here bit for bit: SplitMix64 centres, von Mises token preferences, p0 = 0.9 p_majority + 0.1 uniform; the
printed KL(p*||p0) equals the report's).

1. The asymptotic design bound. For a tabular policy (one logit per response) fitted by maximum
   likelihood to pairwise Luce choices, n queries drawn from a design xi leave an error
   d ~ N(0, M(xi)^-1 / n) with M(xi) = sum_ab xi_ab c_ab (e_a - e_b)(e_a - e_b)^T, c_ab = p_ab (1 - p_ab),
   and KL(p*||pi) ~= d^T F d / 2 with F = diag(p*) - p* p*^T. So the queries needed for a target KL are
   proportional to tr(F M^-1). For ANY design tr(M) <= 2 max c = 1/2, and over all M with that trace
   tr(F M^-1) >= (tr F^(1/2))^2 / (1/2) (Cauchy-Schwarz, attained at M ~ F^(1/2)). Passive querying (two
   distinct samples of the policy, pi -> p*: the first two draws without replacement) has M_passive,
   so no rule can need fewer than
       ratio_min = (tr F^(1/2))^2 / (1/2) / tr(F M_passive^-1)
   of passive's queries, even with an oracle, even with a well-specified choice model. The bound is a
   relaxation (M ~ F^(1/2) need not be a mixture of pair matrices with c = 1/4), so real rules do worse.

2. An ideal learner. The same feedback loop as the Swift experiment (2 prompts drawn uniformly, 8 distinct
   candidates sampled from the current policy, batches of 20, prior term mu * mean_x KL(pi_pre||pi), mu = 50)
   with a tabular policy fitted exactly (Newton) and its exact Laplace posterior as the epistemic model:
   the best uncertainty any head can hope for. Rules: passive, double Thompson sampling, infomax, the two
   contrast rules (best of the candidates against the worst, by the posterior mean or by two posterior
   samples), posterior_kl (the pair whose answer most reduces the expected KL(p_z||pi) over posterior samples
   p_z: the information-directed rule that uses uncertainty for what the metric values, without p*), and
   two oracles that know p*: one-step V-optimal (the pair that most reduces tr(F Sigma), the
   variance) and one-step expected KL (the pair whose Laplace update most reduces the expected
   KL(p*||pi), bias included). Two populations: the METHODS mixture of Luce types, and a well-specified one
   (Luce on p* itself).

The point of the two oracles: the variance oracle only ties passive (the bound of 1. holds), while the
expected-KL oracle needs a fifth of passive's queries. Early on, the error is bias left by the majority-biased
prior, not variance, and the bound says nothing about bias. The contrast rules ask along the model's own
ranking, which is where that bias lies, without knowing p*.

Usage: python3 scripts/active_design_ceiling.py [--seeds 20] [--vocabulary 4 --length 2 --sharpness 1.5]
"""
import argparse
import numpy as np

M64 = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & M64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53


def world(prompts, V, L, weights, sharpness, prior_mix, seed=0):
    """Type tables pm [M, P, V^L], the target p* [P, V^L] and the pre-training prior p0 [P, V^L]."""
    w = np.array(weights) / sum(weights)
    rng = SplitMix64(seed)
    shifts = [[rng.uniform() * V for _ in range(L)] for _ in range(prompts)]
    pm = np.zeros((len(w), prompts, V ** L))
    for m in range(len(w)):
        for x in range(prompts):
            t = np.ones(1)
            for l in range(L):
                q = np.exp(sharpness * np.cos(2 * np.pi * (np.arange(V) - shifts[x][l] - m * V / len(w)) / V))
                t = np.outer(t, q / q.sum()).ravel()
            pm[m, x] = t / t.sum()
    pstar = np.einsum("m,mxy->xy", w, pm)
    p0 = prior_mix * pm[int(np.argmax(w))] + (1 - prior_mix) / V ** L
    return w, pm, pstar, p0 / p0.sum(1, keepdims=True)


def mean_kl(p, q):
    return float(np.mean((p * np.log(p / q)).sum(-1)))


def design_bound(p):
    """Lower bound on (queries of any design) / (queries of passive) for KL(p*||pi), prompt with target p."""
    R = len(p)
    F = np.diag(p) - np.outer(p, p)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(F), 0, None)).sum()
    luce = p[:, None] / (p[:, None] + p[None, :])
    W = np.outer(p / (1 - p), p)  # the first two draws without replacement: P(a then b) = p_a p_b / (1 - p_a)
    np.fill_diagonal(W, 0)
    WC = W / W.sum() * luce * (1 - luce)
    WC = WC + WC.T  # unordered pairs {a, b}
    M = np.diag(WC.sum(1)) - WC
    U = np.linalg.svd(np.eye(R) - 1 / R)[0][:, : R - 1]  # logits are defined up to a constant
    passive = np.trace(U.T @ F @ U @ np.linalg.inv(U.T @ M @ U))
    return tr_sqrt ** 2 / 0.5 / passive


class IdealLearner:
    """Tabular logits theta [P, R]; MAP of sum_i -log Luce(choice_i) + mu * mean_x KL(pi_pre||pi) by Newton."""

    def __init__(self, p0, mu):
        self.p0, self.theta, self.mu, self.queries = p0, np.log(p0), mu, []
        self.fit()

    def policy(self):
        e = np.exp(self.theta - self.theta.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def fit(self):
        P, R = self.theta.shape
        for _ in range(50):
            pi = self.policy()
            g = self.mu / P * (pi - self.p0)
            H = np.stack([self.mu / P * (np.diag(pi[x]) - np.outer(pi[x], pi[x])) for x in range(P)])
            for x, shown, c in self.queries:
                s = self.theta[x, shown]
                q = np.exp(s - s.max())
                q /= q.sum()
                q[c] -= 1
                g[x, shown] += q
                q[c] += 1
                H[x][np.ix_(shown, shown)] += np.diag(q) - np.outer(q, q)
            step = np.stack([np.linalg.solve(H[x] + 1e-6 * np.eye(R), g[x]) for x in range(P)])
            self.theta -= step / max(1.0, np.abs(step).max())  # damped: never more than one nat at a time
            if np.abs(g).max() < 1e-9:
                break
        self.covariance = np.stack([np.linalg.inv(H[x] + 1e-3 * np.eye(R)) for x in range(P)])


def select(rule, scores, cand, rng, sigma=None, F=None, theta=None, target=None, choice=None, space=None):
    """Indices into cand of the two responses to show; scores [Z, N] are posterior samples of the logits, space
    [Z, R] the same samples over the whole response space."""
    n = len(cand)
    if rule == "passive":
        return list(rng.choice(n, 2, replace=False))
    if rule == "double_ts":
        order = rng.permutation(len(scores))
        picks = [int(np.argmax(scores[order[0]]))]
        for z in order[1:]:
            a = int(np.argmax(scores[z]))
            if a not in picks:
                return picks + [a]
        return picks + [int(rng.choice([i for i in range(n) if i != picks[0]]))]
    if rule == "contrast":  # the candidate the model likes most against the one it likes least
        m = scores.mean(0)
        return [int(np.argmax(m)), int(np.argmin(m))]
    if rule == "ts_contrast":  # argmax under one posterior sample against argmin under another
        z1, z2 = rng.choice(len(scores), 2, replace=False)
        a, b = int(np.argmax(scores[z1])), int(np.argmin(scores[z2]))
        return [a, b] if a != b else [a, int(np.argmin(np.where(np.arange(n) == a, np.inf, scores[z2])))]
    best, value = [0, 1], -np.inf  # [0, 1] if every score is NaN (a diverged fit)
    for i in range(n):
        for j in range(i + 1, n):
            prob = 1 / (1 + np.exp(-(scores[:, i] - scores[:, j])))
            if rule == "infomax":
                v = prob.var()
            elif rule in ("oracle_kl", "posterior_kl"):
                # oracle_kl: expected KL(p*||pi) after a one-step Laplace update on this pair (knows p*).
                # posterior_kl: the same with p* replaced by the posterior samples p_z (no p*): the expected
                # reduction of E_z KL(p_z||pi), each answer drawn from the sample's own Luce rule; Swift's
                # `expected_kl` rule with the exact Laplace posterior as its epistemic head.
                d = np.zeros(len(F))
                d[cand[i]], d[cand[j]] = 1, -1
                ph = prob.mean()
                sd = sigma @ d
                if rule == "oracle_kl":
                    targets = target[None]
                    answer = np.array([choice(cand[i], cand[j])])
                else:
                    e = np.exp(space - space.max(1, keepdims=True))
                    targets = e / e.sum(1, keepdims=True)
                    answer = 1 / (1 + np.exp(-(space[:, cand[i]] - space[:, cand[j]])))
                v = 0.0
                for o, po in ((1.0, answer), (0.0, 1 - answer)):
                    t = theta + sd * (o - ph) / (1 + ph * (1 - ph) * (d @ sd))
                    e = np.exp(t - t.max()); e /= e.sum()
                    v -= (po * (targets * np.log(targets / e)).sum(1)).mean()
            else:  # oracle V-optimal: the reduction of tr(F Sigma) by one observation of this pair
                d = np.zeros(len(F))
                d[cand[i]], d[cand[j]] = 1, -1
                a = prob.mean() * (1 - prob.mean())
                sd = sigma @ d
                v = a * (sd @ F @ sd) / (1 + a * (d @ sd))
            if v > value:
                best, value = [i, j], v
    return best


def run(rule, seed, w, pm, pstar, p0, population, budget=240, batch=20, candidates=8, mu=50.0, Z=32):
    rng = np.random.default_rng(seed)
    P, R = pstar.shape
    learner = IdealLearner(p0, mu)
    curve = [mean_kl(pstar, learner.policy())]
    for _ in range(budget // batch):
        pi = learner.policy()
        for _ in range(batch):
            x = int(rng.integers(P))
            cand = rng.choice(R, candidates, replace=False, p=pi[x])
            C = np.linalg.cholesky(learner.covariance[x])
            space = learner.theta[x] + rng.standard_normal((Z, R)) @ C.T
            scores = space[:, cand]
            F = np.diag(pstar[x]) - np.outer(pstar[x], pstar[x])
            if population == "luce":
                choice = lambda a, b: pstar[x, a] / (pstar[x, a] + pstar[x, b])
            else:
                choice = lambda a, b: float(w @ (pm[:, x, a] / (pm[:, x, a] + pm[:, x, b])))
            shown = [int(cand[i]) for i in select(rule, scores, cand, rng, learner.covariance[x], F,
                                                   learner.theta[x], pstar[x], choice, space)]
            like = pstar[x, shown] if population == "luce" else pm[rng.choice(len(w), p=w), x, shown]
            learner.queries.append((x, shown, int(rng.choice(2, p=like / like.sum()))))
        learner.fit()
        curve.append(mean_kl(pstar, learner.policy()))
    return np.array(curve)


def interval(xs):
    xs = np.asarray(xs, float)
    half = 1.96 * xs.std(ddof=1) / np.sqrt(len(xs)) if len(xs) > 1 else 0.0
    return xs.mean(), xs.mean() - half, xs.mean() + half


def main():
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--seeds", type=int, default=20)
    a.add_argument("--prompts", type=int, default=2)
    a.add_argument("--vocabulary", type=int, default=4)
    a.add_argument("--length", type=int, default=2)
    a.add_argument("--sharpness", type=float, default=1.5)
    a.add_argument("--prior-mix", type=float, default=0.9)
    a.add_argument("--budget", type=int, default=240)
    a.add_argument("--batch", type=int, default=20)
    a.add_argument("--mu", type=float, default=50.0)
    a.add_argument("--rules", default="passive,double_ts,infomax,contrast,ts_contrast,posterior_kl,oracle_vopt,oracle_kl")
    a.add_argument("--populations", default="methods,luce")
    args = a.parse_args()
    w, pm, pstar, p0 = world(args.prompts, args.vocabulary, args.length, [0.5, 0.3, 0.2], args.sharpness,
                             args.prior_mix)
    print(f"world: {args.prompts} prompts, V={args.vocabulary}, L={args.length}, sharpness {args.sharpness}; "
          f"KL(p*||p0) = {mean_kl(pstar, p0):.4f}")
    print("1. design bound, per prompt: no rule needs fewer than",
          ", ".join(f"{design_bound(pstar[x]):.2f}" for x in range(args.prompts)), "of passive's queries")
    rules = args.rules.split(",")
    for population in args.populations.split(","):
        curves = {r: np.array([run(r, s, w, pm, pstar, p0, population, budget=args.budget, batch=args.batch, mu=args.mu)
                               for s in range(args.seeds)]) for r in rules}
        target = curves["passive"][:, -1].mean()
        print(f"2. ideal learner, {population} population ({args.seeds} seeds): target = passive's final KL "
              f"{target:.4f}")
        passive_q = None
        for r in rules:
            q = [args.batch * (int(np.argmax(c <= target)) if (c <= target).any() else len(c) - 1) for c in curves[r]]
            m, lo, hi = interval(q)
            passive_q = passive_q or m
            f, flo, fhi = interval(curves[r][:, -1])
            print(f"   {r:12s} final KL {f:.4f} ({flo:.4f}-{fhi:.4f})  queries to target {m:5.1f} "
                  f"({lo:.0f}-{hi:.0f})  ratio to passive {m / passive_q:.2f}")


if __name__ == "__main__":
    main()
