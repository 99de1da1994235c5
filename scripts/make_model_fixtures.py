#!/usr/bin/env python3
"""Writes tiny random-initialised causal-LM checkpoints plus reference outputs computed with Hugging Face
`transformers`, for the Swift LM tests.

Setup and run, from the repository root (Debian 12: python3-torch provides torch 1.13; the rest is from PyPI;
nothing is downloaded from the model hub, every model is built locally from its config):

    /usr/bin/python3 -m venv --system-site-packages .venv-hf
    .venv-hf/bin/pip install "transformers==4.40.*" "tokenizers==0.19.*" safetensors
    .venv-hf/bin/python scripts/make_model_fixtures.py

Outputs, in Tests/LMTests/Fixtures/models/{gpt2,llama,qwen2}/:
  config.json, generation_config.json, model.safetensors   written by save_pretrained(safe_serialization=True),
                                                           float32 weights
  expected.json                                            reference outputs, see `expected_for` below

Every bias and every norm weight is overwritten after init with small random values (bias ~ N(0, 0.1),
norm weight ~ 1 + N(0, 0.1)) so that tests are sensitive to them. Each model is built under its own
torch.manual_seed, so re-running gives the same weights and the same expected.json.

Check mode: load a checkpoint directory (e.g. one written by the Swift code) with
AutoModelForCausalLM.from_pretrained and print the log-probs of the given token ids as JSON:

    .venv-hf/bin/python scripts/make_model_fixtures.py --check DIR --tokens 5,6,7,8
    -> {"logprobs": [log p(6|5), log p(7|5,6), log p(8|5,6,7)]}
"""

import argparse
import json
import os
import re
import subprocess
import sys

import torch
import transformers
from safetensors import safe_open
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "LMTests", "Fixtures", "models")

VOCAB = 96
SEQ_LEN = 12
SHORT_LEN = 7
PAD_ID = 2
PROMPT_LEN = 5
NEW_TOKENS = 20


def make_gpt2():
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=1, initializer_range=0.2,
    )
    return GPT2LMHeadModel(config)


def make_llama():
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=50000.0,
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=1, initializer_range=0.2,
    )
    return LlamaForCausalLM(config)


def make_qwen2():
    config = Qwen2Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=True, use_sliding_window=False, bos_token_id=0, eos_token_id=1, initializer_range=0.2,
    )
    return Qwen2ForCausalLM(config)


MODELS = [("gpt2", make_gpt2, 1001), ("llama", make_llama, 1002), ("qwen2", make_qwen2, 1003)]


def is_norm(module):
    name = type(module).__name__
    return isinstance(module, torch.nn.LayerNorm) or name.endswith("RMSNorm")


@torch.no_grad()
def perturb_biases_and_norms(model):
    """bias ~ N(0, 0.1) for every bias parameter; norm weight ~ 1 + N(0, 0.1). Returns the names touched."""
    touched = []
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if pname == "bias":
                p.copy_(torch.randn_like(p) * 0.1)
                touched.append(full)
            elif pname == "weight" and is_norm(module):
                p.copy_(1.0 + torch.randn_like(p) * 0.1)
                touched.append(full)
    return touched


def token_logprobs(logits, tokens):
    """logits [T, V] float32, tokens [T] -> log p(tokens[i+1] | tokens[..i]) for i in 0..T-2, float64."""
    lp = torch.log_softmax(logits.double(), dim=-1)
    return lp[:-1].gather(-1, tokens[1:].unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def expected_for(model, seed):
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(PAD_ID, VOCAB, (2, SEQ_LEN), generator=g)

    # Full forward passes, one sequence at a time (no mask, default positions 0..T-1).
    logprobs, logsumexp, hidden_mean = [], [], []
    for row in seqs:
        out = model(row.unsqueeze(0), output_hidden_states=True)
        logits = out.logits[0]
        assert logits.dtype == torch.float32
        logprobs.append(token_logprobs(logits, row).tolist())
        logsumexp.append(torch.logsumexp(logits.double(), dim=-1).tolist())
        hidden_mean.append(out.hidden_states[-1][0].double().mean(dim=-1).tolist())

    # One left-padded batch: row 0 = sequence 0 (length 12), row 1 = sequence 1 truncated to 7.
    lengths = [SEQ_LEN, SHORT_LEN]
    input_ids = torch.full((2, SEQ_LEN), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((2, SEQ_LEN), dtype=torch.long)
    for i, n in enumerate(lengths):
        input_ids[i, SEQ_LEN - n:] = seqs[i, :n]
        attention_mask[i, SEQ_LEN - n:] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
    batched = []
    max_batch_diff = 0.0
    for i, n in enumerate(lengths):
        real = slice(SEQ_LEN - n, SEQ_LEN)
        lp = token_logprobs(out.logits[i, real], input_ids[i, real])
        batched.append(lp.tolist())
        # Sanity: must match the unpadded single-sequence computation closely.
        ref = torch.tensor(logprobs[i][: n - 1], dtype=torch.float64)
        max_batch_diff = max(max_batch_diff, (lp - ref).abs().max().item())
    assert max_batch_diff < 1e-4, max_batch_diff

    # Greedy decoding, manual loop: full forward each step, argmax of last logits, no EOS stop.
    prompt = seqs[0, :PROMPT_LEN].unsqueeze(0)
    ids = prompt.clone()
    greedy, margins = [], []
    for _ in range(NEW_TOKENS):
        last = model(ids).logits[0, -1]
        top2 = torch.topk(last, 2).values
        margins.append((top2[0] - top2[1]).item())
        nxt = int(torch.argmax(last).item())
        greedy.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    gen = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS, do_sample=False,
        eos_token_id=None, pad_token_id=0, min_new_tokens=NEW_TOKENS,
    )
    greedy_generate = gen[0, PROMPT_LEN:].tolist()
    assert greedy_generate == greedy, (greedy, greedy_generate)

    return {
        "sequences": seqs.tolist(),
        "logprobs": logprobs,
        "logsumexp": logsumexp,
        "last_hidden_mean": hidden_mean,
        "batched_left_padded": {
            "input_ids": input_ids.tolist(),
            "attention_mask": attention_mask.tolist(),
            "position_ids": position_ids.tolist(),
            "logprobs": batched,
        },
        "greedy_prompt": prompt[0].tolist(),
        "greedy": greedy,
        "greedy_generate": greedy_generate,
        "greedy_min_top2_margin": min(margins),
    }, max_batch_diff


def dump_json(obj):
    """Indented JSON with every innermost list of numbers on one line (floats keep Python's round-trip repr)."""
    text = json.dumps(obj, indent=1)
    text = re.sub(r"\[[^\[\]{}\"]*\]", lambda m: json.dumps(json.loads(m.group(0))), text)
    return text + "\n"


def build_all():
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, ctor, seed in MODELS:
        torch.manual_seed(seed)
        model = ctor()
        touched = perturb_biases_and_norms(model)
        model.eval()
        assert all(p.dtype == torch.float32 for p in model.parameters())

        d = os.path.join(OUT_DIR, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)

        exp, max_batch_diff = expected_for(model, seed)
        with safe_open(os.path.join(d, "model.safetensors"), framework="pt") as f:
            keys = sorted(f.keys())
        exp["param_count"] = sum(p.numel() for p in model.parameters())  # parameters() de-duplicates tied ones
        exp["keys"] = keys
        exp["transformers_version"] = transformers.__version__
        exp["torch_version"] = torch.__version__
        with open(os.path.join(d, "expected.json"), "w") as fh:
            fh.write(dump_json(exp))

        # Round trip through from_pretrained and the check mode's code path.
        reloaded = check_logprobs(d, exp["sequences"][0])
        rt_diff = max(abs(a - b) for a, b in zip(reloaded, exp["logprobs"][0]))
        assert rt_diff == 0.0, rt_diff

        print(f"{name}: params={exp['param_count']} keys={len(keys)} perturbed={len(touched)} "
              f"batch_vs_single_maxdiff={max_batch_diff:.2e} greedy={exp['greedy']} "
              f"min_top2_margin={exp['greedy_min_top2_margin']:.3g}")
        print(f"  keys: {keys}")
    print(subprocess.run(["du", "-shc"] + [os.path.join(OUT_DIR, n) for n, _, _ in MODELS],
                         capture_output=True, text=True, cwd=OUT_DIR).stdout.replace(OUT_DIR + "/", ""), end="")


@torch.no_grad()
def check_logprobs(directory, tokens):
    # from_pretrained only warns about missing / unexpected keys and random-initialises what is missing, which
    # would make a wrongly named checkpoint "load" fine; fail loudly instead.
    model, info = AutoModelForCausalLM.from_pretrained(directory, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise SystemExit(f"{directory}: checkpoint does not match the model: {problems}")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()
    model.eval()
    ids = torch.tensor(tokens, dtype=torch.long)
    logits = model(ids.unsqueeze(0)).logits[0].float()
    return token_logprobs(logits, ids).tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", metavar="DIR", help="checkpoint directory to load with from_pretrained")
    ap.add_argument("--tokens", help="comma-separated token ids (at least 2), used with --check")
    args = ap.parse_args()
    if args.check:
        if not args.tokens:
            ap.error("--check needs --tokens")
        tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
        if len(tokens) < 2:
            ap.error("--tokens needs at least 2 ids")
        print(json.dumps({"logprobs": check_logprobs(args.check, tokens)}))
    else:
        if args.tokens:
            ap.error("--tokens is only used with --check")
        build_all()


if __name__ == "__main__":
    main()
