#!/usr/bin/env python3
"""Writes the seed corpora in Fuzz/Corpus/<target>/: small files copied from the test fixtures and examples,
plus hand-made inputs for shapes the fixtures lack. Run from anywhere; rerun after changing it."""
import json, os, shutil, struct

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "Corpus")


def target(name):
    d = os.path.join(CORPUS, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def fixture(*parts):
    with open(os.path.join(ROOT, *parts), "rb") as f:
        return f.read()


# safetensors: real files, then a few edge shapes (empty header, metadata only, 0-d and empty tensors).
def safetensors(header, data=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


d = target("safetensors")
write(d, "reference_all_dtypes.safetensors", fixture("Tests/TorchTests/Fixtures/reference_all_dtypes.safetensors"))
write(d, "adapter_gpt2.safetensors", fixture("Tests/LMTests/Fixtures/adapters/gpt2-shatter/adapter_model.safetensors"))
write(d, "empty.safetensors", safetensors({}))
write(d, "metadata.safetensors", safetensors({"__metadata__": {"format": "pt", "note": "\u00e9\\u"}}))
write(d, "scalar_and_empty.safetensors", safetensors({
    "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},
    "e": {"dtype": "BF16", "shape": [0, 3], "data_offsets": [4, 4]},
    "m": {"dtype": "I64", "shape": [2, 1], "data_offsets": [4, 20]},
}, struct.pack("<f", 1.5) + struct.pack("<qq", -1, 7)))


# GGUF: the quantisation fixture, and a whole (tiny) Llama with a byte-level BPE vocabulary so the checkpoint
# and tokenizer rebuilding run too.
def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(kind, v):
    if kind == "str":
        return struct.pack("<I", 8) + gguf_string(v)
    if kind == "u32":
        return struct.pack("<II", 4, v)
    if kind == "f32":
        return struct.pack("<If", 6, v)
    if kind == "bool":
        return struct.pack("<IB", 7, int(v))
    if kind == "strs":
        return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(gguf_string(s) for s in v)
    if kind == "i32s":
        return struct.pack("<IIQ", 9, 5, len(v)) + b"".join(struct.pack("<i", x) for x in v)
    raise ValueError(kind)


def gguf(metadata, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, kind, v in metadata:
        out += gguf_string(key) + gguf_value(kind, v)
    offset, blobs = 0, []
    for name, dims, values in tensors:
        out += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", n) for n in dims)
        out += struct.pack("<IQ", 0, offset)
        blob = b"".join(struct.pack("<f", x) for x in values)
        blob += b"\0" * ((alignment - len(blob) % alignment) % alignment)
        blobs.append(blob)
        offset += len(blob)
    out += b"\0" * ((alignment - len(out) % alignment) % alignment)
    return out + b"".join(blobs)


hidden, ff = 8, 16
tokens = ["a", "b", "c", "Ġ", "ab", "Ġa", "<|im_start|>", "<|im_end|>"]
vocab = len(tokens)
llama_meta = [
    ("general.architecture", "str", "llama"),
    ("llama.embedding_length", "u32", hidden),
    ("llama.attention.head_count", "u32", 2),
    ("llama.attention.head_count_kv", "u32", 1),
    ("llama.block_count", "u32", 1),
    ("llama.feed_forward_length", "u32", ff),
    ("llama.context_length", "u32", 64),
    ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
    ("llama.rope.freq_base", "f32", 10000.0),
    ("tokenizer.ggml.model", "str", "gpt2"),
    ("tokenizer.ggml.pre", "str", "smollm"),
    ("tokenizer.ggml.tokens", "strs", tokens),
    ("tokenizer.ggml.token_type", "i32s", [1, 1, 1, 1, 1, 1, 3, 3]),
    ("tokenizer.ggml.merges", "strs", ["a b", "Ġ a"]),
    ("tokenizer.ggml.bos_token_id", "u32", 6),
    ("tokenizer.ggml.eos_token_id", "u32", 7),
    ("tokenizer.ggml.add_bos_token", "bool", True),
    ("tokenizer.chat_template", "str", "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"),
]


def ramp(n):
    return [((i * 7) % 13 - 6) / 8 for i in range(n)]


llama_tensors = [("token_embd.weight", [hidden, vocab], ramp(hidden * vocab)),
                 ("output_norm.weight", [hidden], [1.0] * hidden),
                 ("blk.0.attn_norm.weight", [hidden], [1.0] * hidden),
                 ("blk.0.ffn_norm.weight", [hidden], [1.0] * hidden),
                 ("blk.0.attn_q.weight", [hidden, hidden], ramp(hidden * hidden)),
                 ("blk.0.attn_k.weight", [hidden, hidden // 2], ramp(hidden * hidden // 2)),
                 ("blk.0.attn_v.weight", [hidden, hidden // 2], ramp(hidden * hidden // 2)),
                 ("blk.0.attn_output.weight", [hidden, hidden], ramp(hidden * hidden)),
                 ("blk.0.ffn_gate.weight", [hidden, ff], ramp(hidden * ff)),
                 ("blk.0.ffn_up.weight", [hidden, ff], ramp(hidden * ff)),
                 ("blk.0.ffn_down.weight", [ff, hidden], ramp(hidden * ff))]
d = target("gguf")
write(d, "quant_types.gguf", fixture("Tests/LMTests/Fixtures/gguf/quant_types.gguf"))
write(d, "tiny_llama.gguf", gguf(llama_meta, llama_tensors))
write(d, "metadata_only.gguf", gguf(llama_meta[:3], []))
write(d, "empty.gguf", gguf([], []))

# tokenizer.json, then NUL and text to encode, then NUL and a tokenizer_config.json.
d = target("tokenizer")
texts = json.loads(fixture("Tests/LMTests/Fixtures/gguf/smollm2_tokenizer.json"))["texts"]
for i, name in enumerate(["gpt2", "llama3", "qwen2"]):
    tok = fixture("Tests/LMTests/Fixtures/tokenizers", name, "tokenizer.json")
    cfg = fixture("Tests/LMTests/Fixtures/tokenizers", name, "tokenizer_config.json")
    write(d, name + ".bin", tok + b"\0" + texts[i % len(texts)].encode() + b"\0" + cfg)
    write(d, name + "_plain.json", tok)
write(d, "sft_roundtrip.json", fixture("Tests/LMTests/Fixtures/sft_roundtrip/gpt2/tokenizer.json"))
write(d, "minimal.json", json.dumps({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<unk>": 3}, "merges": [["a", "b"]], "unk_token": "<unk>",
              "ignore_merges": True},
    "added_tokens": [{"id": 4, "content": "<|x|>", "special": True, "lstrip": True, "rstrip": True, "single_word": True}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "b"}, "behavior": "Isolated"}, {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|x|>"}}, {"Sequence": {"id": "A"}}],
                       "special_tokens": {"<|x|>": {"ids": [4]}}},
    "decoder": {"type": "ByteLevel"},
}) + "\0ab ab <|x|>1234\0" + json.dumps({"bos_token": {"content": "<|x|>"}, "eos_token": "b",
                                           "chat_template": [{"name": "default", "template": "<|im_start|>"}]}))

# config.json of every family.
d = target("config")
for fam in ["gpt2", "llama", "qwen2"]:
    write(d, fam + ".json", fixture("Tests/LMTests/Fixtures/models", fam, "config.json"))
write(d, "sft_llama.json", fixture("Tests/LMTests/Fixtures/sft_roundtrip/llama/config.json"))
write(d, "llama_extras.json", json.dumps({
    "model_type": "llama", "vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 32, "head_dim": 4, "eos_token_id": [1, 2], "bos_token_id": 0,
    "rope_scaling": None, "tie_word_embeddings": True, "attention_bias": True, "rms_norm_eps": 1e-5}))

# JSONL lines of every shape (the first byte also picks the sequence length).
d = target("datasets")
for name in ["addition.jsonl", "addition-pairs.jsonl", "addition-choices.jsonl", "prompts.jsonl", "grpo-addition.jsonl"]:
    with open(os.path.join(ROOT, "examples", name)) as f:
        write(d, name, "".join(f.readlines()[:4]))
rows = {
    "text.jsonl": [{"text": "hello world"}, {"text": ""}],
    "prompt_completion.jsonl": [{"prompt": "1+1=", "completion": "2"}, {"prompt": "", "completion": "x"}],
    "messages.jsonl": [{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                                     {"role": "assistant", "content": "hello"}]}],
    "pairs.jsonl": [{"prompt": "q?", "chosen": "yes", "rejected": "no"}],
    "responses.jsonl": [{"prompt": "q?", "responses": ["a", "b", "c"]}],
    "choices.jsonl": [{"prompt": "q?", "candidates": ["a", "b"], "choice": 1}, {"prompt": "r", "chosen": "x", "rejected": "y"}],
    "kto.jsonl": [{"prompt": "q?", "completion": "a", "label": True}, {"prompt": "q?", "completion": "b", "label": False}],
    "conversational_prompts.jsonl": [{"prompt": [{"role": "user", "content": "2+2?"}], "answer": "4"}],
}
for name, lines in rows.items():
    write(d, name, "\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n")
write(d, "blank_lines.jsonl", '\n  \n{"text": "a"}\r\n\n')

# YAML run configs.
d = target("run-config")
write(d, "sft.yaml", "init: llama\nlayers: 1\nd_model: 16\nheads: 2\nsteps: 7\nbatch-size: 2\njson: true\n")
write(d, "types.yaml", "lr: 3e-4\nwarmup: 0x10\nname: 'run: one'\nresume: false\nbeta: .5\nseed: -3\nout: ~\n")
write(d, "nested.yaml", "data:\n  - a.jsonl\n  - b.jsonl\nanchors: &a {x: 1}\nuse: *a\n")
write(d, "document.yaml", "%YAML 1.1\n---\n# comment\n? complex\n: value\n...\n")
write(d, "block.yaml", "system: |\n  be brief\n  and kind\nfolded: >-\n  one\n  two\n")

# Request bodies for /v1/chat/completions and /v1/completions.
d = target("requests")
bodies = {
    "chat.json": {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
                  "temperature": 0.7, "top_p": 0.9, "max_tokens": 16, "stop": ["\n", "x"], "seed": 3, "stream": True,
                  "stream_options": {"include_usage": True}},
    "chat_parts.json": {"messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}]},
                                     {"role": "user", "content": None}], "n": 1, "logprobs": False,
                        "presence_penalty": 0, "max_completion_tokens": 4},
    "completion.json": {"prompt": "abc", "max_tokens": 4, "stop": "\n", "echo": False, "suffix": None},
    "completion_tokens.json": {"prompt": [1, 2, 3], "temperature": 0, "seed": -1},
    "completion_list.json": {"prompt": ["abc"], "frequency_penalty": 0.0},
}
for name, body in bodies.items():
    write(d, name, json.dumps(body))
write(d, "unicode.json", '{"messages":[{"role":"user","content":"\\ud83d\\ude00 caf\\u00e9"}],"temperature":1e0}')
