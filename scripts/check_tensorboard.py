#!/usr/bin/env python3
"""Reads a run's TensorBoard event files with the `tensorboard` package's own reader and compares every
scalar with the run's metrics.jsonl (same steps, same values as float32). Prints one JSON line; exits 1 on
any difference. Used by scripts/tensorboard_test (make test).

    .venv-tensorboard/bin/python scripts/check_tensorboard.py RUN_DIR
"""
import json
import math
import struct
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run = sys.argv[1]
acc = EventAccumulator(run + "/tensorboard", size_guidance={"scalars": 0})
acc.Reload()
expected = {}
with open(run + "/metrics.jsonl") as f:
    for line in f:
        row = json.loads(line)
        for k, v in row["data"].items():
            if v is not None and math.isfinite(v):
                expected.setdefault(k, []).append((row["step"], struct.unpack("f", struct.pack("f", v))[0]))
tags = acc.Tags()["scalars"]
problems = []
for k, want in expected.items():
    if k not in tags:
        problems.append(f"missing tag {k}")
        continue
    got = [(e.step, e.value) for e in acc.Scalars(k)]
    if got != want:
        problems.append(f"{k}: {got[:3]}… vs {want[:3]}…")
print(json.dumps({"tags": len(tags), "scalars": sum(len(v) for v in expected.values()), "problems": problems}))
sys.exit(1 if problems else 0)
