#!/usr/bin/env python3
"""Self-BLEU and distinct-n reference values from the `sacrebleu` package, for the Swift diversity metrics.

    .venv-peft/bin/pip install "sacrebleu==2.4.3"     # any venv; sacrebleu needs no torch
    .venv-peft/bin/python scripts/make_diversity_fixtures.py

Writes Tests/ExperimentsTests/Fixtures/diversity.json: for each group of samples, sacrebleu's 13a tokens of each
sample, `sentence_bleu` of each sample against all the others (sacrebleu's defaults: exp smoothing, effective
order), their mean over 100 (Self-BLEU in [0, 1]), and distinct-1/2/3 (distinct n-grams over all n-grams of the
group, on the 13a tokens).
"""
import json
import os

import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

GROUPS = [
    ["The cat sat on the mat.", "The cat sat on a mat.", "A dog lay on the rug!", "the cat sat on the mat"],
    ["3 + 4 = 7", "12, 15 and 21 sum to 48.", "Numbers: 1,000 and 2.5 - not 3-4.", "(a) [b] {c} <d> x/y \"q\" 'r' & s"],
    ["yes", "yes", "yes no", "no"],
    ["I think 17 + 25 = 42, so the answer is 42.", "17 + 25 = 42", "The answer is 42.", "42",
     "Adding 17 and 25 gives 42; the answer: 42."],
    ["Go right, then down, then right again.", "Go down; then right, right.", "Right right down."],
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tok = Tokenizer13a()


def distinct(group, n):
    grams = [tuple(t[i:i + n]) for s in group for t in [tok(s).split()] for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


out = []
for g in GROUPS:
    bleus = [sacrebleu.sentence_bleu(s, g[:i] + g[i + 1:]).score for i, s in enumerate(g)]
    out.append({
        "samples": g, "tokens": [tok(s).split() for s in g], "sentence_bleu": bleus,
        "self_bleu": sum(bleus) / len(bleus) / 100, "distinct": [distinct(g, n) for n in (1, 2, 3)],
    })
path = os.path.join(ROOT, "Tests", "ExperimentsTests", "Fixtures", "diversity.json")
with open(path, "w") as f:
    json.dump({"sacrebleu": sacrebleu.__version__, "groups": out}, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(path)
