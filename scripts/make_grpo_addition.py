#!/usr/bin/env python3
"""Writes examples/grpo-addition.jsonl (256 prompts) and examples/grpo-addition-eval.jsonl (64 others): two-number
addition as chat prompts with the sum in "answer", for `shatter train grpo --reward-funcs exact-match` on the
real model. Seeded: rerunning gives the same files."""
import json
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
rng = random.Random(15)
pairs = set()
while len(pairs) < 320:
    pairs.add((rng.randint(10, 49), rng.randint(10, 49)))
pairs = sorted(pairs)
rng.shuffle(pairs)
for name, chunk in (("grpo-addition.jsonl", pairs[:256]), ("grpo-addition-eval.jsonl", pairs[256:])):
    with open(os.path.join(ROOT, "examples", name), "w") as f:
        for a, b in chunk:
            prompt = [{"role": "user", "content": f"What is {a} + {b}? Reply with just the number."}]
            f.write(json.dumps({"prompt": prompt, "answer": str(a + b)}) + "\n")
