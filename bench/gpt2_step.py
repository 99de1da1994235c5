"""The PyTorch-from-Python peer of `shatter bench train --arch gpt2`: the same GPT-2 (pre-LayerNorm blocks,
fused qkv, GELU-tanh, learned positions, tied head, dropout 0), AdamW (lr 3e-4, weight decay 0.1 on
matrices), grad-norm clip 1.0, random tokens, warm-up steps untimed, on the same libtorch. One JSON line.
--autocast bf16 runs the forward pass under torch.autocast("cpu", bfloat16) with float32 logits for the loss, as
`shatter bench train --mixed-precision bf16` does."""
import argparse, json, math, resource, time

import torch
import torch.nn.functional as F

from gpt2_shape import add_shape

p = argparse.ArgumentParser()
add_shape(p, [("steps", 10), ("warmup", 3), ("threads", 0), ("seed", 0)])
p.add_argument("--autocast", choices=["no", "bf16"], default="no")
a = p.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)


class Block(torch.nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln_1 = torch.nn.LayerNorm(d)
        self.c_attn = torch.nn.Linear(d, 3 * d)
        self.c_proj = torch.nn.Linear(d, d)
        self.ln_2 = torch.nn.LayerNorm(d)
        self.c_fc = torch.nn.Linear(d, 4 * d)
        self.mlp_proj = torch.nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.h, d // self.h).transpose(1, 2) for z in (q, k, v))
        s = q @ k.transpose(2, 3) * (1.0 / math.sqrt(d // self.h))
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        y = (s.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = torch.nn.Embedding(a.vocab, a.d_model)
        self.wpe = torch.nn.Embedding(a.seq, a.d_model)
        self.h = torch.nn.ModuleList(Block(a.d_model, a.heads) for _ in range(a.layers))
        self.ln_f = torch.nn.LayerNorm(a.d_model)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]).unsqueeze(0).expand(idx.shape[0], -1))
        for blk in self.h:
            x = blk(x)
        return F.linear(self.ln_f(x), self.wte.weight)


model = GPT2()
for m in model.modules():  # GPT-2's initialisation, as Shatter's
    if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
        torch.nn.init.normal_(m.weight, std=0.02)
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.zeros_(m.bias)
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=3e-4)
tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
inp, tgt = tokens[:, :-1], tokens[:, 1:]
loss_value = 0.0


def step():
    global loss_value
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
        logits = model(inp)
    loss = F.cross_entropy(logits.float().reshape(-1, a.vocab), tgt.reshape(-1))
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
print(json.dumps({"impl": "pytorch", "tokens_per_second": a.batch * a.seq * a.steps / dt, "final_loss": loss_value,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters())}))
