# The two commands a new machine needs: `make demo` and `make test`. Each installs what is missing first.
export PATH := $(PATH):/opt/swift/usr/bin
SWIFT ?= swift

.PHONY: demo test bench build release bootstrap clean

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(SWIFT) build

release: bootstrap
	$(SWIFT) build -c release --product shatter

test: bootstrap
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

demo: release
	.build/release/shatter version
	.build/release/shatter bench mlp --steps 100

bench:
	@scripts/bootstrap --bench
	$(SWIFT) build -c release --product shatter
	@scripts/bench

clean:
	rm -rf .build
