#!/usr/bin/env python3
"""Infinite-data optimum of the choice fit on the didactic population (tabular model, numpy), for the one-Luce
model and for a mixture of latent types, on pairwise and three-way choices. Every K-subset of responses (or a
fixed random sample of them, on the METHODS-size world) is a query answered with the population's exact choice
probabilities; the fit maximises the expected log-likelihood with Adam and reports KL(p*‖π) of the policy it
implies (for the mixture, π = Σ_m w_m softmax(r_m)), the largest |π − p*| and the fitted type weights.
Referenced by docs/INCLUSIVE.md; the Swift test MixtureChoiceTests checks the three-way mixture case.

    python3 scripts/mixture_limit.py            # default world (V 4, L 2) and the METHODS world (V 8, L 3)
"""
import itertools
import numpy as np


def world(V, L, sharp, w=(0.5, 0.3, 0.2), mix=0.9, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, V, size=L)
    M = len(w)
    pm = []
    for m in range(M):
        t = np.ones(1)
        for l in range(L):
            q = np.exp(sharp * np.cos(2 * np.pi * (np.arange(V) - (s[l] + m * V / M)) / V))
            t = np.outer(t, q / q.sum()).ravel()
        pm.append(t)
    pm = np.array(pm)
    return pm, np.array(w) @ pm, mix * pm[0] + (1 - mix) / V ** L, np.array(w)


def fit(pm, w, p0, k, types, steps, sets=None, seed=0, lr=0.05):
    R = pm.shape[1]
    rng = np.random.default_rng(seed)
    if sets is None:
        sets = np.array(list(itertools.combinations(range(R), k)))
    ps = pm[:, sets]
    target = (w[:, None, None] * ps / ps.sum(2, keepdims=True)).sum(0)  # population choice probabilities [N, K]
    n = len(sets)
    a = np.zeros(types)
    r = np.log(p0)[None, :].repeat(types, 0) + (rng.normal(0, 1, (types, R)) if types > 1 else 0)
    params, m1, m2 = [a, r], [0, 0], [0, 0]
    for t in range(1, steps + 1):
        v = np.exp(params[0] - params[0].max()); v /= v.sum()
        x = params[1][:, sets]; x = x - x.max(2, keepdims=True); sm = np.exp(x); sm /= sm.sum(2, keepdims=True)
        q = np.clip((v[:, None, None] * sm).sum(0), 1e-300, 1)
        g = -target / q / n
        gl = v[:, None, None] * sm * (g[None] - (g[None] * sm).sum(2, keepdims=True))
        gr = np.zeros_like(params[1])
        for m in range(types):
            np.add.at(gr[m], sets, gl[m])
        gv = (g[None] * sm).sum((1, 2))
        ga = v * (gv - (v * gv).sum())
        for i, grad in enumerate([ga, gr]):
            m1[i] = 0.9 * m1[i] + 0.1 * grad; m2[i] = 0.999 * m2[i] + 0.001 * grad * grad
            params[i] = params[i] - lr * (m1[i] / (1 - 0.9 ** t)) / (np.sqrt(m2[i] / (1 - 0.999 ** t)) + 1e-12)
    v = np.exp(params[0] - params[0].max()); v /= v.sum()
    pr = np.exp(params[1] - params[1].max(1, keepdims=True)); pr /= pr.sum(1, keepdims=True)
    return v @ pr, v


def kl(p, q):
    return float((p * np.log(p / q)).sum())


if __name__ == "__main__":
    for name, (V, L, sharp, nsets, steps) in {"default world (V 4, L 2, 16 responses)": (4, 2, 1.5, None, 3000),
                                              "METHODS world (V 8, L 3, 512 responses; 20000 random sets)": (8, 3, 2.0, 20000, 3000)}.items():
        pm, pstar, p0, w = world(V, L, sharp)
        print(f"{name}: KL(p*‖p0) {kl(pstar, p0):.4f}")
        for k in (2, 3):
            rng = np.random.default_rng(1)
            sets = None if nsets is None else np.array([rng.choice(V ** L, k, replace=False) for _ in range(nsets)])
            for types in (1, 3):
                pi, v = fit(pm, w, p0, k, types, steps, sets)
                print(f"  K={k} {'one Luce rule' if types == 1 else 'mixture of 3 types':19} KL(p*‖π∞) {kl(pstar, pi):.2e}  "
                      f"max|π−p*| {np.abs(pi - pstar).max():.2e}  weights {np.round(np.sort(v)[::-1], 3).tolist()}")
