"""A second peer for `shatter bench train --arch gpt2`: Hugging Face transformers' GPT2LMHeadModel (the model
TRL trains) with the same sizes, dropout 0, AdamW (lr 3e-4, weight decay 0.1 on matrices), grad-norm clip 1.0,
random tokens, warm-up steps untimed, on the same libtorch. Runs in the venv `scripts/bootstrap --bench` makes."""
import argparse, json, resource, time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from gpt2_shape import add_shape

p = argparse.ArgumentParser()
add_shape(p, [("steps", 10), ("warmup", 3), ("threads", 0), ("seed", 0)])
a = p.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
config = GPT2Config(vocab_size=a.vocab, n_positions=a.seq, n_embd=a.d_model, n_layer=a.layers, n_head=a.heads,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
model = GPT2LMHeadModel(config)
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=3e-4)
tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
inp, tgt = tokens[:, :-1], tokens[:, 1:]
loss_value = 0.0


def step():
    global loss_value
    opt.zero_grad(set_to_none=True)
    logits = model(inp).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, a.vocab), tgt.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    loss_value = loss.item()


for _ in range(a.warmup):
    step()
t0 = time.perf_counter()
for _ in range(a.steps):
    step()
dt = time.perf_counter() - t0
print(json.dumps({"impl": "transformers", "tokens_per_second": a.batch * a.seq * a.steps / dt, "final_loss": loss_value,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "threads": torch.get_num_threads()}))
