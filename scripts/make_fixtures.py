#!/usr/bin/env python3
"""Writes the reference safetensors fixtures the Swift tests read, using the real `safetensors` package.

Run from the repository root (Debian 12: python3-torch provides torch; safetensors comes from pip):

    /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/pip install safetensors
    .venv/bin/python scripts/make_fixtures.py

Outputs, in Tests/TorchTests/Fixtures/:
  reference_all_dtypes.safetensors  one small tensor per supported dtype, an empty tensor, a scalar, and
                                    __metadata__ {"format": "pt", "writer": "shatter-fixtures"}
  reference_all_dtypes.json         per tensor: dtype (safetensors name), shape, and the row-major values as
                                    float64 numbers (bool as 0/1), for the Swift test to compare against

Every stored value is exactly representable in float64, so comparisons can be exact. Re-running gives the
same tensors, layout and JSON; only the order of the two __metadata__ keys in the safetensors header may
change, because the Rust writer keeps them in a HashMap.
"""

import json
import os
import sys

import torch
from safetensors.torch import save_file

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "TorchTests", "Fixtures")

SAFETENSORS_NAMES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def tensors():
    return {
        # 1/3 and 0.1 are not exact in binary; the JSON records the value actually stored.
        "float32": torch.tensor([[-2.5, -1.0, 0.0], [0.5, 1.0 / 3.0, 3.0e38]], dtype=torch.float32),
        "float64": torch.tensor([-0.1, 1.0e300, 2.5, -7.0], dtype=torch.float64),
        "bfloat16": (torch.arange(-4, 4, dtype=torch.float32) * 0.75).to(torch.bfloat16).reshape(2, 4),
        "float16": torch.tensor([-2.5, -0.125, 0.0, 0.5, 1000.0, 65504.0, 6.103515625e-05, -65504.0],
                                dtype=torch.float16),
        "int64": torch.tensor([-(2 ** 62), -1, 0, 1, 2 ** 53], dtype=torch.int64),
        "int32": torch.tensor([-2147483648, -5, 0, 7, 2147483647], dtype=torch.int32),
        "int16": torch.tensor([[-32768, -1, 0], [1, 300, 32767]], dtype=torch.int16),
        "int8": torch.arange(-6, 6, dtype=torch.int8).reshape(3, 4) * 10 + torch.tensor([7], dtype=torch.int8),
        "uint8": torch.tensor([0, 1, 127, 128, 255], dtype=torch.uint8),
        "bool": torch.tensor([[True, False, False], [True, True, False]]),
        "empty": torch.zeros((0, 3), dtype=torch.float32),
        "scalar": torch.tensor(42.5, dtype=torch.float32),
    }


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    ts = tensors()
    st_path = os.path.join(OUT_DIR, "reference_all_dtypes.safetensors")
    save_file(ts, st_path, metadata={"format": "pt", "writer": "shatter-fixtures"})

    reference = {}
    for name in sorted(ts):
        t = ts[name]
        reference[name] = {
            "dtype": SAFETENSORS_NAMES[t.dtype],
            "shape": list(t.shape),
            "values": [float(v) for v in t.reshape(-1).to(torch.float64).tolist()],
        }
    json_path = os.path.join(OUT_DIR, "reference_all_dtypes.json")
    with open(json_path, "w") as f:
        json.dump({"metadata": {"format": "pt", "writer": "shatter-fixtures"}, "tensors": reference},
                  f, indent=1, sort_keys=True)
        f.write("\n")

    for p in (st_path, json_path):
        print(f"wrote {os.path.relpath(p)} ({os.path.getsize(p)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
