#!/usr/bin/env bash
# Writes checkpoints with `shatter train sft` and records the log-probs Hugging Face transformers computes
# on them, so the tests prove that transformers loads Shatter's output and agrees with it.
# Needs the .venv-hf of scripts/make_model_fixtures.py and a built shatter (swift build).
set -euo pipefail
cd "$(dirname "$0")/.."
out=Tests/LMTests/Fixtures/sft_roundtrip
mkdir -p "$out"
data=$(mktemp -d)/data.jsonl
for i in $(seq 1 32); do echo "{\"prompt\": \"$i+$i=\", \"completion\": \"$((i + i))\"}"; done > "$data"
tokens=49,50,43,55,61,49,57   # "12+7=19" in the byte-level tokenizer
for family in gpt2 llama; do
  .build/debug/shatter train sft --init "$family" --layers 1 --d-model 32 --heads 4 --kv-heads 2 --max-positions 32 \
    --data "$data" --out "$out/$family" --steps 20 --batch-size 8 --lr 3e-3 --seed 7 --json > /dev/null
  .venv-hf/bin/python scripts/make_model_fixtures.py --check "$out/$family" --tokens "$tokens" > "$out/$family/transformers_logprobs.json"
done
echo "{\"tokens\": [${tokens}]}" > "$out/tokens.json"
du -sh "$out"
