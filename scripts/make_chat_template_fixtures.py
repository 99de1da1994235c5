#!/usr/bin/env python3
"""Writes Tests/LMTests/Fixtures/chat_templates/cases.json: what Hugging Face transformers' own
`apply_chat_template` renders for a few conversations under each template source in that folder
(`*.jinja`, copied verbatim from the models' tokenizer configs: smollm2.jinja is SmolLM2-135M-Instruct's
`tokenizer.chat_template`; qwen2-fixture.jinja is the ChatML template of the qwen2 test tokenizer).

Run from the repository root with the benchmark venv (transformers 4.40.2, made by scripts/bootstrap --bench):

    .venv-bench/bin/pip install jinja2==3.1.4   # apply_chat_template needs it
    .venv-bench/bin/python scripts/make_chat_template_fixtures.py

The Swift test (ChatTemplateTests) renders the same conversations and compares byte for byte.
"""
import json
import pathlib

from transformers import PreTrainedTokenizerFast

root = pathlib.Path(__file__).resolve().parent.parent
folder = root / "Tests/LMTests/Fixtures/chat_templates"
# Any fast tokenizer will do: the template rendering does not depend on the vocabulary.
tok = PreTrainedTokenizerFast(tokenizer_file=str(root / "Tests/LMTests/Fixtures/tokenizers/gpt2/tokenizer.json"))

conversations = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "  Another, with spaces and\nnewlines.  "},
    ],
    [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "Ünïcödé ✓ 😀"}],
]

cases = []
for path in sorted(folder.glob("*.jinja")):
    source = path.read_text()
    for messages in conversations:
        for gen in (True, False):
            rendered = tok.apply_chat_template(messages, chat_template=source, tokenize=False, add_generation_prompt=gen)
            cases.append({"template": path.name, "messages": messages, "add_generation_prompt": gen, "rendered": rendered})

(folder / "cases.json").write_text(json.dumps({"cases": cases}, indent=1, ensure_ascii=False) + "\n")
print(f"wrote {len(cases)} cases")
