#!/usr/bin/env python3
"""Writes the tokenizer fixtures the Swift tests compare against, using the real `tokenizers` library.

Run from the repository root (Debian 12's python3; `tokenizers` comes from pip):

    /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/pip install tokenizers==0.19.1
    .venv/bin/python scripts/make_tokenizer_fixtures.py

It trains three tiny byte-level BPE tokenizers on the corpus below and shapes each like a model family's
published `tokenizer.json`, then records how the library encodes and decodes a set of test texts.

Outputs, in Tests/LMTests/Fixtures/tokenizers/:
  gpt2/    ByteLevel pre-tokenizer (GPT-2 regex, add_prefix_space false), ByteLevel post-processor and
           decoder, special `<|endoftext|>`, plus one non-special added token containing a space
           ("hello world"), which the ByteLevel decoder passes through as raw UTF-8.
  llama3/  Split(Llama-3 regex, Isolated) + ByteLevel(use_regex false), `ignore_merges: true`, five
           specials, post-processor Sequence[ByteLevel, TemplateProcessing("<|begin_of_text|> $A")], and a
           few whole words injected into the vocabulary without merges, so `ignore_merges` changes results.
  qwen2/   NFC normalizer, Split(Qwen2 regex: digits one at a time) + ByteLevel(use_regex false), specials
           `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, one non-special *normalized* added token ("Việt"),
           no BOS. Its merges are written as [a, b] pairs, the form tokenizers >= 0.20 writes; 0.19.1 reads
           only "a b" strings, so the reference outputs are computed from the string form first.
  each tokenizer folder also holds a tokenizer_config.json (bos/eos/pad names and a chat_template).
  cases.json  for every tokenizer and test text: ids from encode(text, add_special_tokens=True/False),
              decode(ids_with_specials, skip_special_tokens=False/True); plus decode-only cases: ids cut off
              inside a multi-byte character and single-byte tokens spelling invalid UTF-8 (both decode
              with U+FFFD, as Rust's from_utf8_lossy does), and an id outside the vocabulary (dropped).

Training is deterministic, so re-running gives the same files.
"""

import json
import os

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT_DIR = os.path.join(ROOT, "Tests", "LMTests", "Fixtures", "tokenizers")

# The exact pre-tokenizer patterns the model families publish in their tokenizer.json files.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)

LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog didn't care; it's a lazy dog, after all.",
    "Once upon a time, there was a little model that wanted to learn language. It read every book it could find.",
    "We're going to the market today, and they'll meet us there. I'm sure you've heard: she'd said so twice.",
    "Tokenizers split text into pieces: words, numbers, punctuation, and whitespace. Each piece becomes ids.",
    "In 2024, the values were 12345, 67890, 3.14159, 2.71828 and 1,000,000; the total was 1234567890.",
    "Prices: $19.99, €5.50, £3.20, ¥1000. Percentages: 12.5%, 99.9%, 100%. Dates: 2023-11-05, 31/12/1999.",
    "Café, naïve, résumé, façade, jalapeño, Ångström, Zürich, São Paulo, Kraków, Dvořák, Tiếng Việt.",
    "Ελληνικά: Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο. Καλημέρα κόσμε!",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю. Привет, мир!",
    "日本語のテキスト：東京は日本の首都です。中文：我们今天去公园散步。한국어: 안녕하세요 세계",
    "Emoji: 😀 😃 😄 👍 👍🏽 ❤️ 🎉 🚀 👨‍👩‍👧‍👦 🇫🇷 🇯🇵 — fun!",
    "def greet(name):\n\tif name:\n\t\treturn f\"Hello, {name}!\"\n\treturn 'Hello, world!'\n",
    "for (int i = 0; i < 10; i++) {\n    sum += values[i] * 2;\n}\n",
    "    indented with spaces\n\tindented with a tab\n\n\nthree newlines above\r\nwindows line ending\r\n",
    "Whitespace runs:     five spaces, \t\t two tabs, and trailing spaces   \n",
    "SHOUTING IS FINE. I'M HERE, WE'RE THERE, THEY'LL SEE. Don't, won't, can't, shouldn't.",
    "x = 42; y = x ** 2 + 3 * x - 7; print(f\"{x=}, {y=}\")  # prints values",
    "<html><body><p class=\"note\">Hello &amp; welcome</p></body></html>",
    "The hello world program prints hello world. Hello, World! hello, world.",
]

TEST_TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "don't stop, I'M sure we'll see: they've, you're, she'd, it's 'S 'LL",
    "  leading and trailing spaces  ",
    "multiple    spaces   between\twords\t\ttabs",
    "line one\nline two\n\nline four\r\nwindows line\r\n",
    "Numbers: 12345 and 3.14159, 1,000,000 and 2024-01-31 x1y22z333",
    "Café naïve résumé façade Ångström",
    "Cafe\u0301 nai\u0308ve Tie\u0302\u0301ng Vie\u0323\u0302t",
    "Ελληνικά και Русский текст",
    "日本語のテキストと中文文本、한국어",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧\u200d👦 flag 🇫🇷 ❤️",
    "def f(x):\n\treturn x ** 2  # square\n",
    "",
    " ",
    "\n\n\n",
    "  \n  \t \r\n   end",
    "a\u00a0b\u3000c\u2003d",
    "ǅemal ﬁne ℌ Ⅻ ½ ² ٣٤٥",
    "supercalifragilisticexpialidocious aaaaaaaaaaaaaaaaaaaaaaaa",
    "don’t — “quoted” … ‘single’",
    "hello world and hello world again",
    "The lazy dog said hello.",
    "ctrl\u0000chars\u0001and\u007fdel",
    "x\u000by\u0085z\u001cw\u2028v\u200bu",
    "end with newline and spaces \n   ",
]

# Special-token texts, per tokenizer (each family's own markers inside ordinary text).
SPECIAL_TEXTS = {
    "gpt2": [
        "hi<|endoftext|>there",
        "a <|endoftext|> b<|endoftext|><|endoftext|>",
        "<|endoftext|>",
        "<|endoftext|",
    ],
    "llama3": [
        "hi<|end_of_text|>there",
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "x <|eot_id|> y",
    ],
    "qwen2": [
        "hi<|endoftext|>there",
        "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
        "a <|im_end|> b",
        "Vie\u0323\u0302tnam Việt",
    ],
}

# Byte strings that are not UTF-8 (stray continuation bytes, overlong forms, surrogates, code points past
# U+10FFFF, truncated sequences): decoding the single-byte tokens must replace them as Rust's
# String::from_utf8_lossy does.
INVALID_BYTES = [
    [0x80], [0x80, 0x80, 0x41], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82],
    [0xF0, 0x9F, 0x98, 0x41], [0xFF, 0x41, 0xFE], [0xE2, 0x82, 0xE2, 0x82, 0xAC], [0xF8, 0x88, 0x80, 0x80, 0x80],
]


def bytes_to_unicode():
    """GPT-2's byte -> character table (printable Latin-1 bytes map to themselves, the rest to U+0100...)."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {}
    n = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


# Texts whose ids, cut short, end inside a multi-byte character: decoding them must give U+FFFD.
CUT_TEXTS = ["😀👍🏽", "日本語", "Ελληνικά 👨\u200d👩\u200d👧"]


def corpus_lines():
    # Repeat the corpus so that common pairs clear min_frequency; order is fixed, so training is too.
    return CORPUS * 3


def train(pre_tokenizer, normalizer, specials, vocab_size):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer)
    return tok


def make_gpt2():
    tok = train(pre_tokenizers.ByteLevel(add_prefix_space=False), None, ["<|endoftext|>"], 520)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_tokens([AddedToken("hello world", single_word=False, lstrip=False, rstrip=False, normalized=False)])
    config = {
        "add_prefix_space": False,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "model_max_length": 1024,
        "tokenizer_class": "GPT2Tokenizer",
    }
    return json.loads(tok.to_str()), config


def make_llama3():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok = train(pre, None, specials, 580)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A",
            pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
            special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))],
        ),
    ])
    data = json.loads(tok.to_str())
    model = data["model"]
    model["ignore_merges"] = True
    # Whole words without merges that build them: only ignore_merges can produce these ids.
    next_id = max(max(model["vocab"].values()), max(t["id"] for t in data["added_tokens"])) + 1
    for word in ["supercalifragilisticexpialidocious", "Ġsquare", "Ġfamily", "Ġaaaaaaaaaaaaaaaaaaaaaaaa"]:
        if word not in model["vocab"]:
            model["vocab"][word] = next_id
            next_id += 1
    config = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": None,
        "chat_template": LLAMA3_CHAT_TEMPLATE,
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    return data, config


def make_qwen2():
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok = train(pre, normalizers.NFC(), specials, 500)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_tokens([AddedToken("Việt", single_word=False, lstrip=False, rstrip=False, normalized=True)])
    config = {
        "bos_token": None,
        "eos_token": {"__type": "AddedToken", "content": "<|im_end|>", "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False},
        "pad_token": "<|endoftext|>",
        "chat_template": CHATML_TEMPLATE,
        "model_max_length": 32768,
        "tokenizer_class": "Qwen2Tokenizer",
    }
    return json.loads(tok.to_str()), config


def cases_for(name, tok):
    cases = []
    for text in TEST_TEXTS + SPECIAL_TEXTS[name]:
        with_specials = tok.encode(text, add_special_tokens=True).ids
        without = tok.encode(text, add_special_tokens=False).ids
        cases.append({
            "text": text,
            "ids": with_specials,
            "ids_no_special": without,
            "decoded": tok.decode(with_specials, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(with_specials, skip_special_tokens=True),
        })
    decode_cases = []
    for text in CUT_TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        for cut in (1, 2, 3):
            if len(ids) > cut:
                part = ids[:-cut]
                decode_cases.append({"ids": part, "decoded": tok.decode(part, skip_special_tokens=False)})
    table = bytes_to_unicode()
    for raw in INVALID_BYTES:
        part = [tok.token_to_id(table[b]) for b in raw]
        decode_cases.append({"ids": part, "decoded": tok.decode(part, skip_special_tokens=False)})
    part = tok.encode("ok", add_special_tokens=False).ids + [1_000_000]
    decode_cases.append({"ids": part, "decoded": tok.decode(part, skip_special_tokens=False)})
    return {"cases": cases, "decode_cases": decode_cases}


def write_json(path, obj, compact=False):
    with open(path, "w", encoding="utf-8") as f:
        if compact:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        else:
            json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    all_cases = {"tokenizers_version": tokenizers.__version__}
    for name, make in [("gpt2", make_gpt2), ("llama3", make_llama3), ("qwen2", make_qwen2)]:
        data, config = make()
        # The reference tokenizer is the one loaded back from the exact JSON written (string merges).
        tok = Tokenizer.from_str(json.dumps(data))
        all_cases[name] = cases_for(name, tok)
        if name == "qwen2":
            data["model"]["merges"] = [m.split(" ") for m in data["model"]["merges"]]
        folder = os.path.join(OUT_DIR, name)
        os.makedirs(folder, exist_ok=True)
        write_json(os.path.join(folder, "tokenizer.json"), data, compact=True)
        write_json(os.path.join(folder, "tokenizer_config.json"), config)
        print(f"{name}: vocab {tok.get_vocab_size(with_added_tokens=True)}, merges {len(data['model']['merges'])}")
    write_json(os.path.join(OUT_DIR, "cases.json"), all_cases)


if __name__ == "__main__":
    main()
