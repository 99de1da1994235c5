"""Reference files for Shatter's GGUF tests, from independent implementations: the `gguf` package's numpy
dequantisation, a plain PyTorch Llama forward written here, Hugging Face transformers on the directory
`shatter convert` wrote, and Hugging Face tokenizers on that directory's tokenizer.json.

Run in the bench venv (scripts/bootstrap --bench: torch 1.13, transformers 4.40.2, tokenizers 0.19.1, gguf
0.17.1) after `make model`:
    .venv-bench/bin/python scripts/make_gguf_fixtures.py
Writes Tests/LMTests/Fixtures/gguf/{smollm2_tensors.json, quant_types.gguf, quant_types.json,
smollm2_logprobs.json, smollm2_tokenizer.json}."""
import json, os, sys

import numpy as np
import torch
import gguf
from gguf import GGMLQuantizationType as Q
from gguf import quants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/LMTests/Fixtures/gguf")
GGUF_FILE = os.path.join(os.path.expanduser(os.environ.get("SHATTER_CACHE", "~/.cache/shatter")),
                         "SmolLM2-135M-Instruct.Q4_1.gguf")
CONVERTED = os.path.join(ROOT, "models/smollm2-135m-instruct")


def floats(a):
    """float32 values as Python floats (exact: float32 → float64 is lossless; JSON keeps 17 digits)."""
    return [float(x) for x in np.asarray(a, dtype=np.float32).ravel()]


def tensor_stats(reader):
    out = []
    for t in reader.tensors:
        v = quants.dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
        n = v.size
        idx = sorted(set(list(range(8)) + list(range(n // 2, n // 2 + 8)) + list(range(n - 8, n))
                         + [int(i) for i in np.random.default_rng(len(out)).integers(0, n, 8)]))
        out.append({"name": t.name, "type": t.tensor_type.name, "dims": [int(d) for d in t.shape],
                    "count": int(n), "sum": float(v.astype(np.float64).sum()),
                    "sum_squares": float((v.astype(np.float64) ** 2).sum()),
                    "indices": idx, "values": floats(v[idx])})
    return out


def random_half(rng, n, scale):
    return (rng.uniform(-scale, scale, n)).astype(np.float16).view(np.uint8).reshape(n, 2)


def synthetic_blocks(rng, qtype, n_blocks):
    """Random blocks with well-formed f16 scale fields (random bytes there could be inf or NaN)."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    if qtype in (Q.Q4_K, Q.Q5_K):
        raw[:, 0:2] = random_half(rng, n_blocks, 0.05)
        raw[:, 2:4] = random_half(rng, n_blocks, 0.05)
    elif qtype == Q.Q6_K:
        raw[:, 208:210] = random_half(rng, n_blocks, 0.01)
    return raw


def write_quant_types():
    """One small tensor per supported type, plus metadata of every value type, with alignment 64."""
    rng = np.random.default_rng(12)
    path = os.path.join(OUT, "quant_types.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(64)  # sets the writer's padding and the key together
    w.add_uint8("test.u8", 200); w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000); w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000); w.add_int32("test.i32", -2000000000)
    w.add_uint64("test.u64", 2 ** 63 + 5); w.add_int64("test.i64", -(2 ** 62))
    w.add_float32("test.f32", 0.25); w.add_float64("test.f64", -1.0e100)
    w.add_bool("test.bool", True); w.add_string("test.string", "héllo ✓")
    w.add_array("test.array_i32", [1, -2, 3]); w.add_array("test.array_str", ["a", "", "ü"])
    w.add_array("test.array_nested", [[1, 2], [3]])
    values = {}
    shape = (2, 512)  # numpy order: rows, columns (GGUF dims [512, 4])
    x = rng.standard_normal(shape).astype(np.float32)
    for qtype in [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q4_K, Q.Q5_K, Q.Q6_K]:
        name = f"t.{qtype.name.lower()}"
        if qtype == Q.F32:
            raw = x
        elif qtype == Q.F16:
            raw = x.astype(np.float16)
        elif qtype in (Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):
            raw = quants.quantize(x, qtype)  # gguf's own quantiser
        else:
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            raw = synthetic_blocks(rng, qtype, shape[0] * shape[1] // block).reshape(shape[0], -1)
        if qtype in (Q.F32, Q.F16):
            w.add_tensor(name, raw)
        else:
            w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        values[name] = {"type": qtype.name, "dims": [shape[1], shape[0]],
                        "values": floats(quants.dequantize(np.asarray(raw).view(np.uint8) if qtype not in (Q.F32, Q.F16)
                                                           else raw, qtype))}
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return values


def unpermute(w, heads):
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def plain_llama_logprobs(reader, ids_list):
    """A Llama forward in float64 written from the paper's equations, on gguf's dequantised weights."""
    f = {k: v for k, v in reader.fields.items()}
    get = lambda k: f[k].contents()
    L, H, KV = get("llama.block_count"), get("llama.attention.head_count"), get("llama.attention.head_count_kv")
    D = get("llama.embedding_length"); eps = get("llama.attention.layer_norm_rms_epsilon")
    theta = get("llama.rope.freq_base"); hd = D // H
    W = {t.name: torch.from_numpy(quants.dequantize(t.data, t.tensor_type).astype(np.float64)) for t in reader.tensors}
    for l in range(L):
        W[f"blk.{l}.attn_q.weight"] = torch.from_numpy(unpermute(W[f"blk.{l}.attn_q.weight"].numpy(), H))
        W[f"blk.{l}.attn_k.weight"] = torch.from_numpy(unpermute(W[f"blk.{l}.attn_k.weight"].numpy(), KV))
    head = W.get("output.weight", W["token_embd.weight"])

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def rope(x, pos):  # x [H, T, hd], rotate-half pairs (i, i + hd/2)
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = pos[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    out = []
    for ids in ids_list:
        T = len(ids)
        pos = torch.arange(T, dtype=torch.float64)
        x = W["token_embd.weight"][torch.tensor(ids)]
        mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
        for l in range(L):
            p = lambda n: W[f"blk.{l}.{n}.weight"]
            h = rms(x, p("attn_norm"))
            q = (h @ p("attn_q").T).view(T, H, hd).transpose(0, 1)
            k = (h @ p("attn_k").T).view(T, KV, hd).transpose(0, 1)
            v = (h @ p("attn_v").T).view(T, KV, hd).transpose(0, 1)
            q, k = rope(q, pos), rope(k, pos)
            k = k.repeat_interleave(H // KV, 0); v = v.repeat_interleave(H // KV, 0)
            a = torch.softmax(q @ k.transpose(1, 2) / hd ** 0.5 + mask, -1) @ v
            x = x + a.transpose(0, 1).reshape(T, D) @ p("attn_output").T
            h = rms(x, p("ffn_norm"))
            x = x + (torch.nn.functional.silu(h @ p("ffn_gate").T) * (h @ p("ffn_up").T)) @ p("ffn_down").T
        logits = rms(x, W["output_norm.weight"]) @ head.T
        lp = torch.log_softmax(logits, -1)
        out.append([float(lp[i, ids[i + 1]]) for i in range(T - 1)])
    return out


def transformers_logprobs(ids_list):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(CONVERTED, torch_dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for ids in ids_list:
            lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
            out.append([float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)])
    return out


SCORE_TEXTS = [
    "The capital of France is Paris.",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n2 + 2 = 4<|im_end|>\n",
    "def add(a, b):\n    return a + b  # 12345\n",
]

TOKENIZER_CORPUS = [
    "Hello, world!", "The year 2024 had 366 days; π ≈ 3.14159.", "  leading and trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand   runs      of spaces", "naïve café Zürich façade", "Ελληνικά и русский текст",
    "日本語のテキストと中文文本，还有한국어.", "emoji 😀👍🏽 and flags 🇫🇷 and ZWJ 👩‍💻", "1234567890 00 007 3.5e-10 1,000,000",
    "def f(x):\n    return x**2  # square\n", "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>",
    "it's they're we've I'm you'll he'd IT'S", "١٢٣ Arabic-Indic digits and ½ ⅓ ² fractions Ⅻ",
    "https://example.com/path?query=1&b=2#frag", "\u00a0non-breaking\u2003em space\u3000ideographic",
    "<file_sep>repo<repo_name>x", "MixedCASE camelCase snake_case kebab-case SCREAMING_CASE",
    "", " ", "\n", "a", "     ", "x" * 50, "😀" * 5, "A\u0301 combining accents e\u0308",
]


def main():
    os.makedirs(OUT, exist_ok=True)
    reader = gguf.GGUFReader(GGUF_FILE)
    with open(os.path.join(OUT, "smollm2_tensors.json"), "w") as fh:
        json.dump({"file": os.path.basename(GGUF_FILE), "gguf_version": gguf.__version__ if hasattr(gguf, "__version__") else "0.17.1",
                   "tensors": tensor_stats(reader)}, fh)
    with open(os.path.join(OUT, "quant_types.json"), "w") as fh:
        json.dump(write_quant_types(), fh)

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(CONVERTED, "tokenizer.json"))
    with open(os.path.join(OUT, "smollm2_tokenizer.json"), "w") as fh:
        json.dump({"texts": TOKENIZER_CORPUS, "ids": [tok.encode(t).ids for t in TOKENIZER_CORPUS]}, fh,
                  ensure_ascii=False)

    ids_list = [tok.encode(t).ids for t in SCORE_TEXTS]
    plain = plain_llama_logprobs(reader, ids_list)
    hf = transformers_logprobs(ids_list)
    worst = max(abs(a - b) for p, h in zip(plain, hf) for a, b in zip(p, h))
    print(f"plain float64 forward vs transformers: max |Δ log p| = {worst:.2e}", file=sys.stderr)
    with open(os.path.join(OUT, "smollm2_logprobs.json"), "w") as fh:
        json.dump({"texts": SCORE_TEXTS, "ids": ids_list, "plain_torch_float64": plain, "transformers_4_40": hf,
                   "note": "plain: scripts/make_gguf_fixtures.py's own Llama forward on gguf-dequantised weights; "
                           "transformers: AutoModelForCausalLM on models/smollm2-135m-instruct (shatter convert)"},
                  fh)


if __name__ == "__main__":
    main()
