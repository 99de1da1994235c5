"""Runs every Shatter workload beside its PyTorch-from-Python peer on the same libtorch, alternating the two
several times, and prints the medians and the median of the per-pair ratios. Invoked by `make bench`."""
import json, os, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHATTER = os.path.join(ROOT, ".build/release/shatter")
PYTHON = "/usr/bin/python3"  # Debian's, where python3-torch lives
HF_PYTHON = os.path.join(ROOT, ".venv-bench/bin/python")  # the same torch plus transformers (scripts/bootstrap --bench)
REPEATS = int(os.environ.get("REPEATS", "3"))
THREADS = os.environ.get("THREADS", "0")  # 0: libtorch's default in both


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def pair(shatter_args, peer_script, peer_args, metric, python=PYTHON):
    s_runs, p_runs, ratios = [], [], []
    for _ in range(REPEATS):
        s = run([SHATTER, "bench", *shatter_args, "--threads", THREADS])
        p = run([python, os.path.join("bench", peer_script), *peer_args, "--threads", THREADS])
        s_runs.append(s)
        p_runs.append(p)
        ratios.append(s[metric] / p[metric])
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    return med(s_runs, metric), med(p_runs, metric), statistics.median(ratios), s_runs, p_runs


def main():
    threads = run([SHATTER, "version", "--json"])["threads"] if THREADS == "0" else int(THREADS)
    torch_version = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"], check=True,
                                   capture_output=True, text=True).stdout.strip()
    print(f"Shatter vs PyTorch {torch_version} from Python, same libtorch, {threads} intra-op thread(s); "
          f"median of {REPEATS} alternating runs")
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

    real_model_generation()
    data_parallel_step_time()

    g = run([SHATTER, "bench", "generate", "--threads", THREADS])
    print("\nGreedy generation, GPT-2 L=4 D=256, batch 4, 32-token prompts, 96 new tokens:")
    print(f"  KV cache {g['cached_tokens_per_second']:.0f} tokens/s, no cache {g['uncached_tokens_per_second']:.0f} tokens/s "
          f"({g['speedup']:.1f}x); identical outputs: {g['identical_outputs']}")


MODEL = os.path.join(ROOT, "models/smollm2-135m-instruct")


def real_model_generation():
    """Batch-1 greedy decoding of 128 tokens on SmolLM2-135M-Instruct (make model), Shatter vs Hugging Face
    `generate` on the same converted directory, alternating, same libtorch and environment."""
    if not os.path.exists(os.path.join(MODEL, "model.safetensors")):
        print(f"\nSmolLM2-135M generation: skipped, {MODEL} is missing (run `make model`)")
        return
    if not os.path.exists(HF_PYTHON):
        print("\nSmolLM2-135M generation: skipped, .venv-bench is missing (scripts/bootstrap --bench)")
        return
    args = ["--model", MODEL, "--new-tokens", "128", "--repeats", "3"]
    s_runs, h_runs = [], []
    for _ in range(REPEATS):
        s_runs.append(run([SHATTER, "bench", "model-generate", *args, "--threads", THREADS]))
        h_runs.append(run([HF_PYTHON, os.path.join("bench", "hf_generate.py"), *args, "--threads", THREADS]))
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    ratio = statistics.median(s["tokens_per_second"] / h["tokens_per_second"] for s, h in zip(s_runs, h_runs))
    same = all(s["tokens"] == h["tokens"] for s, h in zip(s_runs, h_runs))
    blas = os.environ.get("OPENBLAS_CORETYPE", "auto-detected")
    print(f"\nSmolLM2-135M-Instruct (f32), greedy, batch 1, 128 new tokens; OpenBLAS core type {blas}")
    print(f"{'':22} {'tokens/s':>9} {'TTFT ms':>9} {'peak RSS MiB':>13}")
    for label, rs in [("shatter", s_runs), ("HF generate", h_runs)]:
        print(f"{label:22} {med(rs, 'tokens_per_second'):9.1f} {med(rs, 'ttft_ms'):9.1f} {max(r['peak_rss_mib'] for r in rs):13.0f}")
    print(f"ratio shatter / HF: {ratio:.2f}x (target >= 1.5x); identical greedy tokens: {same}")


def data_parallel_step_time():
    """`shatter train sft` on one process against `shatter launch --nproc 2` with the same global batch (Gloo on
    loopback). On a two-core machine the ranks share the cores, so this measures the overhead of the split
    (all-reduce, duplicated per-step work), not a speed-up."""
    data = os.path.join(ROOT, "examples/addition.jsonl")
    common = ["train", "sft", "--init", "gpt2", "--layers", "4", "--d-model", "256", "--heads", "4",
              "--max-positions", "64", "--data", data, "--steps", "20", "--batch-size", "32", "--json"]
    one, two = [], []
    for i in range(REPEATS):
        one.append(run([SHATTER, *common, "--out", f"/tmp/shatter-bench-dp1-{i}"]))
        two.append(run([SHATTER, "launch", "--nproc", "2", "--master-port", str(29700 + i), "--", *common,
                        "--out", f"/tmp/shatter-bench-dp2-{i}"]))
    med = lambda rs: statistics.median(r["tokens_per_second"] for r in rs)
    print("\nData parallel, SFT GPT-2 L=4 D=256, global batch 32, 20 steps (tokens/s inside the loop):")
    print(f"  1 process {med(one):8.0f}   2 ranks (Gloo, loopback) {med(two):8.0f}   ratio {med(two) / med(one):.2f}x")
    print(f"  ({os.cpu_count()} cores here: two ranks share them, so this is the cost of the split, not a speed-up)")


if __name__ == "__main__":
    sys.exit(main())
