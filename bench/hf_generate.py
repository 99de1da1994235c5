"""The peer of `shatter bench model-generate`: Hugging Face transformers' `generate` (greedy, batch 1, no stop
tokens, KV cache) on the same checkpoint directory and prompt, on the same libtorch. Runs in .venv-bench."""
import argparse, json, resource, statistics, time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

p = argparse.ArgumentParser()
p.add_argument("--model", default="models/smollm2-135m-instruct")
p.add_argument("--prompt", default="The capital of France is")
p.add_argument("--new-tokens", type=int, default=128)
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--threads", type=int, default=0)
a = p.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
tok = AutoTokenizer.from_pretrained(a.model)
model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
ids = torch.tensor([tok(a.prompt)["input_ids"]])


def timed(n):
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=tok.pad_token_id)
    return time.perf_counter() - start, out[0, ids.shape[1]:].tolist()


timed(8)
first, whole, tokens = [], [], []
for _ in range(a.repeats):
    first.append(timed(1)[0])
    s, tokens = timed(a.new_tokens)
    whole.append(s)
ttft, total = statistics.median(first), statistics.median(whole)
print(json.dumps({"impl": "hf_generate", "prompt_tokens": ids.shape[1], "new_tokens": len(tokens),
                  "tokens_per_second": len(tokens) / total, "ttft_ms": ttft * 1000,
                  "decode_tokens_per_second": (len(tokens) - 1) / max(total - ttft, 1e-9), "tokens": tokens,
                  "threads": torch.get_num_threads(),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
