"""The speed a GPT-2 training step cannot beat on this machine: every matrix product of one step (forward, and
the input and weight gradients of each linear layer and of the tied head; the six attention products per layer)
timed one by one with this Python's torch (the PyPI wheel: MKL) at its default threads, and nothing else.
Prints one JSON line: tokens/s if a step were those products alone, in float32 and in bfloat16."""
import argparse, json, statistics, time

import torch

from gpt2_shape import add_shape

p = argparse.ArgumentParser()
add_shape(p)
a = p.parse_args()
n, d, t, h = a.batch * a.seq, a.d_model, a.seq, a.heads


def products(dtype):
    """(seconds, flops) of each distinct product, and how many times a step runs it."""
    out = []
    r = lambda *s: torch.randn(*s, dtype=dtype)
    linears = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)]
    for (i, o), count in [(io, a.layers) for io in linears] + [((d, a.vocab), 1)]:
        x, w, dy = r(n, i), r(o, i), r(n, o)
        out += [(lambda x=x, w=w: x @ w.t(), 2 * n * i * o, count),     # forward
                (lambda dy=dy, w=w: dy @ w, 2 * n * i * o, count),      # input gradient
                (lambda dy=dy, x=x: dy.t() @ x, 2 * n * i * o, count)]  # weight gradient
    q, s = r(a.batch * h, t, d // h), r(a.batch * h, t, t)
    bmm = 2 * a.batch * h * t * t * (d // h)
    out += [(lambda q=q: q @ q.transpose(1, 2), bmm, 3 * a.layers),  # scores, and the two products of their gradient
            (lambda s=s, q=q: s @ q, bmm, 3 * a.layers)]             # weighted values, and their gradient
    return out


def ceiling(dtype):
    seconds = flops = 0.0
    for f, fl, count in products(dtype):
        for _ in range(3):
            f()
        times = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(5):
                f()
            times.append((time.perf_counter() - start) / 5)
        seconds += statistics.median(times) * count
        flops += fl * count
    return n / seconds, flops / seconds / 1e9


fp32, fp32_rate = ceiling(torch.float32)
bf16, bf16_rate = ceiling(torch.bfloat16)
print(json.dumps({"fp32_tokens_per_second": fp32, "fp32_gflops": fp32_rate, "bf16_tokens_per_second": bf16,
                  "bf16_gflops": bf16_rate, "threads": torch.get_num_threads(), "torch": torch.__version__}))
