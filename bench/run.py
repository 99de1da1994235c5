"""Runs every Shatter workload beside its PyTorch-from-Python peer on the same libtorch, alternating the two
several times, and prints the medians and the median of the per-pair ratios. Invoked by `make bench`.

Two comparisons: the same-kernel tables run both sides on Debian's libtorch 1.13 under the same OpenBLAS kernel
(OPENBLAS_CORETYPE, Shatter's pick) and the same thread counts (the fair ratio); the out-of-the-box table runs
Shatter and the PyTorch a user would install today (the 2.13 CPU wheel from PyPI, MKL, in .venv-torch) each
with no variables or flags at all (what a user gets)."""
import json, os, re, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHATTER = os.path.join(ROOT, ".build/release/shatter")
PYTHON = "/usr/bin/python3"  # Debian's, where python3-torch lives
HF_PYTHON = os.path.join(ROOT, ".venv-bench/bin/python")  # the same torch plus transformers (scripts/bootstrap --bench)
WHEEL_PYTHON = os.path.join(ROOT, ".venv-torch/bin/python")  # PyPI's torch 2.13.0+cpu (scripts/bootstrap --bench)
REPEATS = int(os.environ.get("REPEATS", "3"))
THREADS = os.environ.get("THREADS", "0")  # 0: Shatter's default, given to both

# What the user's shell may set that changes either side's kernel or threads; removed for out-of-the-box runs.
TUNING = ["OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS",
          "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "SHATTER_OPENBLAS_CORRECTED_FROM"]
OUT_OF_THE_BOX = {k: v for k, v in os.environ.items() if k not in TUNING}
SAME = dict(os.environ)  # main adds Shatter's kernel and OpenBLAS pool where the shell set none: one for both sides


def run(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env or SAME).stdout
    return json.loads(out.strip().splitlines()[-1])


def pair(shatter_args, peer_script, peer_args, metric, python=PYTHON, env=None, threads=True, repeats=None):
    """REPEATS alternating runs; with threads=False neither side is given --threads (each keeps its default)."""
    flags = ["--threads", THREADS] if threads else []
    s_runs, p_runs, ratios = [], [], []
    for _ in range(repeats or REPEATS):
        s = run([SHATTER, "bench", *shatter_args, *flags], env)
        p = run([python, os.path.join("bench", peer_script), *peer_args, *flags], env)
        s_runs.append(s)
        p_runs.append(p)
        ratios.append(s[metric] / p[metric])
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    return med(s_runs, metric), med(p_runs, metric), statistics.median(ratios), s_runs, p_runs


def main():
    global THREADS
    facts = run([SHATTER, "version", "--json"], OUT_OF_THE_BOX)  # what Shatter picks by itself
    blas = facts.get("blas", {})
    if THREADS == "0":
        THREADS = str(facts["threads"])
    same = []
    if blas.get("kernel"):
        SAME.setdefault("OPENBLAS_CORETYPE", blas["kernel"])
        SAME.setdefault("OPENBLAS_NUM_THREADS", str(blas["threads"]))
        same = [f"OPENBLAS_CORETYPE={SAME['OPENBLAS_CORETYPE']}, OPENBLAS_NUM_THREADS={SAME['OPENBLAS_NUM_THREADS']}"]
    torch_version = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"], check=True,
                                   capture_output=True, text=True, env=SAME).stdout.strip()
    print(f"Same kernel: Shatter vs PyTorch {torch_version} from Python on the same libtorch (Debian's), "
          + ", ".join(same + [f"{THREADS} intra-op thread(s)"]) + f" for both; median of {REPEATS} alternating runs")
    print()
    print(f"{'MLP training step (steps/s)':46} {'shatter':>9} {'pytorch':>9} {'ratio':>7}")
    mlps = [
        ("128-256-256-10, batch 64", ["--batch", "64", "--inputs", "128", "--hidden", "256", "--layers", "2", "--steps", "500"]),
        ("32-64-64-4, batch 16 (per-op overhead)",
         ["--batch", "16", "--inputs", "32", "--hidden", "64", "--layers", "2", "--classes", "4", "--steps", "2000"]),
        ("512-1024x3-10, batch 256", ["--batch", "256", "--inputs", "512", "--hidden", "1024", "--layers", "3", "--steps", "60"]),
    ]
    for label, args in mlps:
        s, p, r, _, _ = pair(["mlp", *args], "mlp_step.py", args, "steps_per_second")
        print(f"{label:46} {s:9.1f} {p:9.1f} {r:6.2f}x")

    has_hf = os.path.exists(HF_PYTHON)
    print(f"\n{'GPT-2 training step (tokens/s)':36} {'shatter':>9} {'pytorch':>9} {'ratio':>7} "
          f"{'HF gpt2':>9} {'ratio':>7} {'peak RSS MiB s/p/hf':>21}")
    gpts = [
        ("L=4 D=256 H=4 V=2048 T=128 B=8",
         ["--layers", "4", "--d-model", "256", "--heads", "4", "--vocab", "2048", "--seq", "128", "--batch", "8", "--steps", "10"]),
        ("L=2 D=64 H=4 V=512 T=64 B=4",
         ["--layers", "2", "--d-model", "64", "--heads", "4", "--vocab", "512", "--seq", "64", "--batch", "4", "--steps", "300"]),
    ]
    gpt2_rows = []
    for label, args in gpts:
        s, p, r, sr, pr = pair(["train", "--arch", "gpt2", *args], "gpt2_step.py", args, "tokens_per_second")
        sm = max(x["peak_rss_mib"] for x in sr)
        pm = max(x["peak_rss_mib"] for x in pr)
        hf, hr, hm = float("nan"), float("nan"), float("nan")
        if has_hf:
            _, hf, hr, _, hrs = pair(["train", "--arch", "gpt2", *args], "gpt2_hf_step.py", args, "tokens_per_second",
                                     python=HF_PYTHON)
            hm = max(x["peak_rss_mib"] for x in hrs)
        print(f"{label:36} {s:9.0f} {p:9.0f} {r:6.2f}x {hf:9.0f} {hr:6.2f}x {sm:6.0f} / {pm:.0f} / {hm:.0f}")

    out_of_the_box(gpts, facts)
    generation()
    lora_memory()
    data_parallel_step_time()
    server_under_load()


# The targets of issue 13: Shatter as installed against PyPI's current CPU wheel as installed.
WHEEL_TARGETS = {"L=4 D=256 H=4 V=2048 T=128 B=8": 1.5, "L=2 D=64 H=4 V=512 T=64 B=4": 1.2}


def out_of_the_box(gpts, facts):
    """Each side with no variable and no flag that changes its kernel or threads: Shatter's own choices (its
    kernel check and thread defaults) against what `pip install torch` gives on this machine."""
    if not os.path.exists(WHEEL_PYTHON):
        print("\nOut of the box vs the PyTorch CPU wheel: skipped, .venv-torch is missing (scripts/bootstrap --bench)")
        return
    wheel = subprocess.run([WHEEL_PYTHON, "-c", "import torch; print(torch.__version__, torch.get_num_threads(), "
                            "torch.backends.mkl.is_available())"], check=True, capture_output=True, text=True,
                           env=OUT_OF_THE_BOX).stdout.split()
    repeats = max(REPEATS, 5)
    blas = facts.get("blas", {})
    plan = facts.get("training_threads", {})
    shatter_blas = (f"{blas.get('library')} kernel {blas['kernel']} ({blas.get('kernel_choice')}), "
                    f"{plan.get('blas', blas.get('threads'))} OpenBLAS thread(s)") if blas.get("kernel") else blas.get("library")
    onednn = ", float32 linear layers on oneDNN" if plan.get("onednn_linear") else ""
    print(f"\nOut of the box: Shatter (Debian's libtorch; as `shatter train` runs: {plan.get('intra_op', facts['threads'])} "
          f"intra-op thread(s){onednn}, {shatter_blas}) vs "
          f"PyTorch {wheel[0]} from PyPI ({'MKL' if wheel[2] == 'True' else 'no MKL'}, {wheel[1]} thread(s)), "
          f"no variables or --threads on either side; median of {repeats} alternating runs")
    print(f"{'GPT-2 training step (tokens/s)':36} {'shatter':>9} {'wheel':>9} {'ratio':>7} {'target':>8}"
          f"  {'products alone':>14}")
    ceilings, fp32 = {}, {}
    for label, args in gpts:
        s, p, r, _, _ = pair(["train", "--arch", "gpt2", *args], "gpt2_step.py", args, "tokens_per_second",
                             python=WHEEL_PYTHON, env=OUT_OF_THE_BOX, threads=False, repeats=repeats)
        target = WHEEL_TARGETS.get(label)
        verdict = "" if target is None else f">= {target}x {'met' if r >= target else 'NOT met'}"
        shape = [x for i, x in enumerate(args) if x != "--steps" and (i == 0 or args[i - 1] != "--steps")]
        ceilings[label] = run([WHEEL_PYTHON, "bench/gemm_ceiling.py", *shape], OUT_OF_THE_BOX)
        c, fp32[label] = ceilings[label]["fp32_tokens_per_second"], s
        need = f"(target: {target * p / c:.2f}x of it)" if target else ""
        print(f"{label:36} {s:9.0f} {p:9.0f} {r:6.2f}x {verdict:>15} {c:9.0f} {need}")
    print("  products alone: tokens/s if a step were only its matrix products (each timed alone in the wheel's MKL at its\n"
          "  threads, bench/gemm_ceiling.py); (N x of it): the target's tokens/s as a share of that ceiling")

    # Mixed precision: both sides autocast their forward pass to bfloat16 (float32 weights, logits, loss, update).
    print(f"\nMixed precision, bf16 autocast on both sides (otherwise out of the box); median of {repeats} alternating runs")
    print(f"{'GPT-2 training step (tokens/s)':36} {'shatter':>9} {'wheel':>9} {'ratio':>7} {'vs fp32':>8} {'products alone':>15}")
    for label, args in gpts:
        s, p, r, _, _ = pair(["train", "--arch", "gpt2", *args, "--mixed-precision", "bf16"], "gpt2_step.py",
                             [*args, "--autocast", "bf16"], "tokens_per_second", python=WHEEL_PYTHON, env=OUT_OF_THE_BOX,
                             threads=False, repeats=repeats)
        print(f"{label:36} {s:9.0f} {p:9.0f} {r:6.2f}x {s / fp32[label]:7.2f}x "
              f"{ceilings[label]['bf16_tokens_per_second']:15.0f}")
    print("  vs fp32: Shatter bf16 over Shatter float32 (its default) in the table above")


MODEL = os.path.join(ROOT, "models/smollm2-135m-instruct")
# Eight different prompts for the batch-8 rows (left-padded to the longest, as `shatter serve` batches streams).
PROMPTS = ["The capital of France is", "Write a haiku about the sea.", "List three prime numbers:",
           "Once upon a time, in a small village,", "How do I boil an egg?", "Translate 'good morning' to Spanish.",
           "The best way to learn to program is", "Explain gravity to a child in one sentence."]


def generation():
    """Greedy decoding, Shatter vs Hugging Face `generate`, batch 1 and 8, on the GPT-2 L4 D256 shape (random
    weights, random prompts) and on SmolLM2-135M-Instruct (make model); alternating, same libtorch and threads."""
    if not os.path.exists(HF_PYTHON):
        print("\nGeneration: skipped, .venv-bench is missing (scripts/bootstrap --bench)")
        return
    print(f"\nGreedy generation (float32, KV cache, no stop tokens), tokens/s of all rows; median of {REPEATS} "
          f"alternating runs; target >= 1.5x at batch 1")
    print(f"{'':40} {'shatter':>9} {'HF':>9} {'ratio':>7} {'TTFT ms':>15} {'same tokens':>12}")
    shape = ["--layers", "4", "--d-model", "256", "--heads", "4", "--vocab", "2048"]
    rows = []
    for batch in (1, 8):
        rows.append((f"GPT-2 L=4 D=256 V=2048, batch {batch}",
                     ["generate", *shape, "--prompt", "32", "--new-tokens", "96", "--batch", str(batch)],
                     [*shape, "--arch", "gpt2", "--prompt-len", "32", "--new-tokens", "96", "--batch", str(batch)], False))
    if os.path.exists(os.path.join(MODEL, "model.safetensors")):
        for batch in (1, 8):
            prompts = [x for t in PROMPTS[:batch] for x in ("--prompt", t)]
            rows.append((f"SmolLM2-135M-Instruct, batch {batch}",
                         ["model-generate", "--model", MODEL, "--new-tokens", "128", *prompts],
                         ["--model", MODEL, "--new-tokens", "128", *prompts], True))
    else:
        print(f"(SmolLM2-135M rows skipped: {MODEL} is missing, run `make model`)")
    for label, shatter_args, hf_args, compare in rows:
        s_runs, h_runs = [], []
        for _ in range(REPEATS):
            s_runs.append(run([SHATTER, "bench", *shatter_args, "--threads", THREADS]))
            h_runs.append(run([HF_PYTHON, os.path.join("bench", "hf_generate.py"), *hf_args, "--threads", THREADS]))
        med = lambda rs, k: statistics.median(r[k] for r in rs)
        ratio = statistics.median(s["tokens_per_second"] / h["tokens_per_second"] for s, h in zip(s_runs, h_runs))
        same = str(all(s["tokens"] == h["tokens"] for s, h in zip(s_runs, h_runs))) if compare else "(random)"
        ttft = (f"{med(s_runs, 'ttft_ms'):.0f} / {med(h_runs, 'ttft_ms'):.0f}" if "ttft_ms" in s_runs[0] else "")
        print(f"{label:40} {med(s_runs, 'tokens_per_second'):9.1f} {med(h_runs, 'tokens_per_second'):9.1f} "
              f"{ratio:6.2f}x {ttft:>15} {same:>12}")
    g = run([SHATTER, "bench", "generate", "--threads", THREADS])
    print(f"KV cache vs none (GPT-2 L=4 D=256, batch 4, 96 new tokens): {g['cached_tokens_per_second']:.0f} vs "
          f"{g['uncached_tokens_per_second']:.0f} tokens/s ({g['speedup']:.1f}x); identical outputs: {g['identical_outputs']}")


def peak_rss_mib(cmd):
    """Runs cmd under GNU time; returns (its JSON summary, peak resident set size in MiB, its stderr)."""
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], check=True, capture_output=True, text=True, cwd=ROOT,
                       env=OUT_OF_THE_BOX)  # `shatter train` as a user runs it (its own thread plan)
    kib = next(int(l.split(":")[1]) for l in p.stderr.splitlines() if "Maximum resident set size" in l)
    return json.loads(p.stdout.strip().splitlines()[-1]), kib / 1024, p.stderr


def lora_memory():
    """Peak memory of training SmolLM2-135M-Instruct: full fine-tuning (AdamW state for every weight) against
    LoRA r 16 on q_proj,v_proj (the base frozen, no gradients or optimizer state for it); SFT on the chat
    form of examples/grpo-addition.jsonl, batch 8, a few steps. Beside each, the memory plan the run printed
    before step 1 (its `memory_plan.total`), and a GPT-2 L4 D256 row at batch 8 × 128 tokens for the plan."""
    if not os.path.exists(os.path.join(MODEL, "model.safetensors")):
        print(f"\nLoRA memory: skipped, {MODEL} is missing (run `make model`)")
        return
    data = "/tmp/shatter-bench-lora.jsonl"
    with open(os.path.join(ROOT, "examples/grpo-addition.jsonl")) as f, open(data, "w") as out:
        for line in f:
            row = json.loads(line)
            out.write(json.dumps({"messages": row["prompt"] + [{"role": "assistant", "content": row["answer"]}]}) + "\n")
    long_data = "/tmp/shatter-bench-long.jsonl"
    with open(long_data, "w") as out:
        for i in range(32):  # every sequence longer than --seq-len, so the batch is B × T tokens exactly
            out.write(json.dumps({"prompt": f"Story {i}:", "completion": " once upon a time" * 60}) + "\n")
    common = ["train", "sft", "--steps", "4", "--batch-size", "8", "--json"]
    smol = ["--model", MODEL, "--data", data]
    print("\nTraining memory (float32), SFT batch 8, 4 steps: peak RSS of the whole process against the memory plan")
    print("(the plan assumes every sequence fills --seq-len: an upper bound for the first two rows' short chat"
          " examples, exact for the rows of 128-token sequences)")
    print(f"{'':44} {'peak RSS MiB':>13} {'plan MiB':>9} {'plan/RSS':>9} {'trained params':>15} {'tokens/s':>9}")
    rows = []
    runs = (("SmolLM2-135M full fine-tuning", smol),
            ("SmolLM2-135M LoRA r 16 (q_proj, v_proj)", smol + ["--lora-r", "16", "--lora-alpha", "32"]),
            ("SmolLM2-135M full, 128 tokens a sequence", ["--model", MODEL, "--data", long_data, "--seq-len", "128"]),
            ("GPT-2 L4 D256 (fresh), 128 tokens", ["--init", "gpt2", "--layers", "4", "--d-model", "256", "--heads", "4",
                                                   "--data", long_data, "--seq-len", "128"]))
    for label, extra in runs:
        summary, mib, log = peak_rss_mib([SHATTER, *common, *extra, "--out", f"/tmp/shatter-bench-lora-{len(rows)}"])
        rows.append(mib)
        plan = summary["memory_plan"]["total"] / 2**20
        # The run's own note: "sft: N examples, P parameters (T trained), S steps".
        note = next(l for l in log.splitlines() if re.search(r"\d+ parameters", l))
        counts = re.findall(r"(\d+) parameters(?: \((\d+) trained\))?", note)[0]
        trained = f"{int(counts[1] or counts[0]) / 1e6:.2f}M"
        print(f"{label:44} {mib:13.0f} {plan:9.0f} {plan / mib:8.2f}x {trained:>15} {summary['tokens_per_second']:9.0f}")
    print(f"LoRA / full: {rows[1] / rows[0]:.2f}x the memory")


def data_parallel_step_time():
    """`shatter train sft` on one process against `shatter launch --nproc 2` with the same global batch (Gloo on
    loopback). On a two-core machine the ranks share the cores, so this measures the overhead of the split
    (all-reduce, duplicated per-step work), not a speed-up."""
    data = os.path.join(ROOT, "examples/addition.jsonl")
    common = ["train", "sft", "--init", "gpt2", "--layers", "4", "--d-model", "256", "--heads", "4",
              "--max-positions", "64", "--data", data, "--steps", "20", "--batch-size", "32", "--json"]
    one, two = [], []
    for i in range(REPEATS):
        one.append(run([SHATTER, *common, "--out", f"/tmp/shatter-bench-dp1-{i}"], OUT_OF_THE_BOX))
        two.append(run([SHATTER, "launch", "--nproc", "2", "--master-port", str(29700 + i), "--", *common,
                        "--out", f"/tmp/shatter-bench-dp2-{i}"], OUT_OF_THE_BOX))
    med = lambda rs: statistics.median(r["tokens_per_second"] for r in rs)
    print("\nData parallel, SFT GPT-2 L=4 D=256, global batch 32, 20 steps (tokens/s inside the loop):")
    print(f"  1 process {med(one):8.0f}   2 ranks (Gloo, loopback) {med(two):8.0f}   ratio {med(two) / med(one):.2f}x")
    print(f"  ({os.cpu_count()} cores here: two ranks share them, so this is the cost of the split, not a speed-up)")


def server_under_load():
    """`shatter serve` on the real model under bench/load.py's default load (32 clients for 60 s on 127.0.0.1,
    half streamed, with disconnecting, slow, oversized and malformed clients beside them); its table as printed."""
    if not os.path.exists(os.path.join(MODEL, "model.safetensors")):
        print(f"\nServer under load: skipped, {MODEL} is missing (run `make model`)")
        return
    print()
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench/load.py"), "--shatter", SHATTER, "--model", MODEL],
                       capture_output=True, text=True, cwd=ROOT, env=SAME)
    print(p.stdout.rstrip())
    if p.returncode != 0:
        print(f"server under load: FAILED (exit {p.returncode}); {p.stderr.strip()[-500:]}")


if __name__ == "__main__":
    sys.exit(main())
