"""The PyTorch-from-Python peer of `shatter bench mlp`: the identical MLP training step on the same
libtorch (Debian's python3-torch). Prints one JSON object like the Swift side."""
import argparse, json, time

import torch

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=64)
p.add_argument("--inputs", type=int, default=128)
p.add_argument("--hidden", type=int, default=256)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--classes", type=int, default=10)
p.add_argument("--steps", type=int, default=300)
p.add_argument("--warmup", type=int, default=20)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
g = torch.Generator().manual_seed(a.seed)
sizes = [a.inputs] + [a.hidden] * a.layers + [a.classes]
mods = []
for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
    mods.append(torch.nn.Linear(n_in, n_out))
    if i < len(sizes) - 2:
        mods.append(torch.nn.ReLU())
model = torch.nn.Sequential(*mods)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
x = torch.randn(a.batch, a.inputs, generator=g)
y = torch.randint(0, a.classes, (a.batch,), generator=g)
loss_value = 0.0


def step():
    global loss_value
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
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
print(json.dumps({"impl": "pytorch", "steps_per_second": a.steps / dt, "ms_per_step": dt * 1000 / a.steps,
                  "final_loss": loss_value, "threads": torch.get_num_threads(), "torch": torch.__version__}))
