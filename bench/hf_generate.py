"""The peer of `shatter bench model-generate` and `shatter bench generate`: Hugging Face transformers' `generate`
(greedy, no stop tokens, KV cache) on the same libtorch. Runs in .venv-bench.

  --model DIR [--prompt TEXT]...   a checkpoint directory; each --prompt is one row (left-padded batch)
  --arch gpt2 --layers ...         a random GPT-2 of that shape, --batch rows of --prompt-len random tokens
"""
import argparse, json, resource, statistics, time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

p = argparse.ArgumentParser()
p.add_argument("--model", default="models/smollm2-135m-instruct")
p.add_argument("--prompt", action="append", help="a prompt text; repeat for a batch")
p.add_argument("--arch", choices=["gpt2"], help="time a random model of this architecture instead of --model")
p.add_argument("--layers", type=int, default=4)
p.add_argument("--d-model", type=int, default=256)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--vocab", type=int, default=2048)
p.add_argument("--prompt-len", type=int, default=32)
p.add_argument("--batch", type=int, default=1)
p.add_argument("--new-tokens", type=int, default=128)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--threads", type=int, default=0)
a = p.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)

if a.arch:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=a.layers, n_embd=a.d_model, n_head=a.heads, vocab_size=a.vocab,
                        n_positions=a.prompt_len + a.new_tokens)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, a.vocab, (a.batch, a.prompt_len))
    attention = torch.ones_like(ids)
    pad = 0
else:
    tok = AutoTokenizer.from_pretrained(a.model)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    prompts = a.prompt or ["The capital of France is"]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    if tok.pad_token_id is None:
        tok.pad_token_id = pad
    enc = tok(prompts, return_tensors="pt", padding=True)
    ids, attention = enc["input_ids"], enc["attention_mask"]


# No stop tokens, as on Shatter's side. (min_new_tokens would instead mask the end-of-sequence token out of
# the logits, which changes greedy picks.)
model.generation_config.eos_token_id = None


def timed(n):
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=attention, max_new_tokens=n, do_sample=False,
                             pad_token_id=pad)
    return time.perf_counter() - start, out[:, ids.shape[1]:].tolist()


timed(8)
first, whole, tokens = [], [], []
for _ in range(a.repeats):
    first.append(timed(1)[0])
    s, tokens = timed(a.new_tokens)
    whole.append(s)
ttft, total = statistics.median(first), statistics.median(whole)
count = sum(len(t) for t in tokens)
print(json.dumps({"impl": "hf_generate", "batch": ids.shape[0], "prompt_tokens": attention.sum(1).tolist(),
                  "new_tokens": count, "tokens_per_second": count / total, "ttft_ms": ttft * 1000,
                  "decode_tokens_per_second": (count - ids.shape[0]) / max(total - ttft, 1e-9), "tokens": tokens,
                  "threads": torch.get_num_threads(),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
