#!/usr/bin/env python3
"""LoRA adapter fixtures in PEFT's layout, and PEFT's own log-probs for them, for the Swift LoRA tests.

Setup and run, from the repository root (Debian 12's python3-torch is torch 1.13; these PyPI versions run
on it; nothing is downloaded from the model hub, the bases are the committed tiny checkpoints):

    /usr/bin/python3 -m venv --system-site-packages .venv-peft
    .venv-peft/bin/pip install "transformers==4.40.2" "tokenizers==0.19.1" safetensors "peft==0.10.0" "accelerate==0.28.0"
    .venv-peft/bin/python scripts/make_lora_fixtures.py

Two directions, for each base in Tests/LMTests/Fixtures/models/{llama,gpt2}:

  adapters/<base>-peft/     written by PEFT: `get_peft_model` with init_lora_weights=False (A and B both
                            random, so the update is not zero), `save_pretrained`; expected.json holds
                            PeftModel's log-probs of TOKENS and those of the merged model
                            (`merge_and_unload`). Shatter must load it and match.
  adapters/<base>-shatter/  written by Shatter (the Swift test `shatterWritesTheFixtureAdapter`, run once
                            with SHATTER_WRITE_FIXTURES=1, makes it: seeded A, seeded non-zero B); this
                            script loads it with `PeftModel.from_pretrained` onto the same base and writes
                            PEFT's log-probs to its expected.json. Shatter must match those, and rewrite
                            the same tensors.
"""

import json
import os

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "LMTests", "Fixtures")
TOKENS = [5, 17, 33, 2, 60, 71, 8, 9, 40, 41, 90, 3]
PEFT_ADAPTERS = {
    # llama: more than PEFT's default (q_proj, v_proj) so an MLP projection and o_proj are covered too.
    "llama": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"]),
    "gpt2": dict(r=4, lora_alpha=6, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True),
}


@torch.no_grad()
def logprobs(model):
    ids = torch.tensor([TOKENS])
    lp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    return lp[:-1].gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1).tolist()


def base(name):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "models", name))
    model.eval()
    return model


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def make_peft(name, seed):
    torch.manual_seed(seed)
    plain = logprobs(base(name))
    model = get_peft_model(base(name), LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, init_lora_weights=False,
                                                  **PEFT_ADAPTERS[name]))
    model.eval()
    out = os.path.join(ROOT, "adapters", f"{name}-peft")
    model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # the model card PEFT writes: not a fixture
    # Recorded relative to the adapter directory's parent, where Shatter also looks for it.
    with open(os.path.join(out, "adapter_config.json")) as f:
        config = json.load(f)
    config["base_model_name_or_path"] = f"../models/{name}"
    write_json(os.path.join(out, "adapter_config.json"), config)
    with_adapter = logprobs(model)
    merged = logprobs(model.merge_and_unload())
    gap = max(abs(a - b) for a, b in zip(with_adapter, plain))
    assert gap > 1e-2, f"{name}: the adapter barely changes the outputs ({gap})"
    write_json(os.path.join(out, "expected.json"),
               {"tokens": TOKENS, "logprobs": with_adapter, "merged_logprobs": merged, "base_logprobs": plain})
    print(f"{out}: max |Δ log p| from the base {gap:.4f}")


def check_shatter(name):
    out = os.path.join(ROOT, "adapters", f"{name}-shatter")
    if not os.path.exists(os.path.join(out, "adapter_model.safetensors")):
        print(f"{out}: not written yet (run the Swift test with SHATTER_WRITE_FIXTURES=1 first)")
        return
    plain = logprobs(base(name))
    model = PeftModel.from_pretrained(base(name), out)
    model.eval()
    lp = logprobs(model)
    # PEFT leaves a tensor it cannot match at its initial value (B = 0), so a silent key mismatch would
    # give the base's log-probs back.
    assert max(abs(a - b) for a, b in zip(lp, plain)) > 1e-2, f"{out}: peft did not apply the adapter"
    write_json(os.path.join(out, "expected.json"), {"tokens": TOKENS, "logprobs": lp})
    print(f"{out}: loaded by peft, log-probs written")


if __name__ == "__main__":
    for i, name in enumerate(PEFT_ADAPTERS):
        make_peft(name, seed=100 + i)
        check_shatter(name)
