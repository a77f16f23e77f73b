# Entry points (each works on a fresh machine without an earlier step):
#   make setup      install the guest toolchain (scripts/setup.sh; seconds when already done)
#   make build      guest component -> target/checkpoint.wasm (validated), then the host `ckpt`
#   make run        setup + build + `ckpt demo`
#   make test       setup + build + component shape check + workspace tests (with real PostgreSQL
#                   and Redis servers) + Python and Node hosts + clippy + fmt check
#   make bench      P1-P6 side by side in one table, then per-call figures of the three hosts
#   make hostile    the hostile test component -> target/hostile.wasm (host/tests/sandbox.rs)
#   make clippy     clippy, release, all targets, -D warnings
#   make fmt-check  rustfmt --check
#   make fuzz       each cargo-fuzz target for SECONDS seconds (default 60; nightly; after `make build`)
#   make soak       10,000 crash schedules (CRASH_SCHEDULES=N to change), with figures
#   make reliability  one table: conformance, crash schedules, concurrency, fuzzing (FUZZ_SECONDS), bad inputs, violations
# CARGO_FLAGS is passed to every cargo build/test (CI uses --locked).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# rustup's cargo (1.95) builds the host; put it on PATH when the shell did not.
ifeq ($(shell command -v cargo 2>/dev/null),)
export PATH := $(HOME)/.cargo/bin:$(PATH)
endif

CARGO ?= cargo
CARGO_FLAGS ?=
export CKPT_CARGO_FLAGS := $(CARGO_FLAGS)

COMPONENT := target/checkpoint.wasm
CKPT := target/release/ckpt
DEMO_ARGS ?=

.PHONY: setup guest host build run test cargo-test clippy fmt-check check-component fuzz

setup:
	bash scripts/setup.sh

# The guest's cargo build is incremental, so it simply runs each time; the copy to
# $(COMPONENT) is rewritten only when its bytes change.
guest: setup
	bash scripts/build-guest.sh

# The host embeds $(COMPONENT) at compile time (host/build.rs).
host: guest
	$(CARGO) build --release $(CARGO_FLAGS) -p checkpoint-host

build: guest host

run: build
	$(CKPT) demo $(DEMO_ARGS)

check-component: guest
	bash scripts/check-component.sh $(COMPONENT)

# Prerequisites run left to right: component shape, tests, then lints.
test: build check-component cargo-test test-python test-node clippy fmt-check

# The hostile component that host/tests/sandbox.rs loads (tests/hostile-guest, own workspace).
.PHONY: hostile
hostile: setup
	bash scripts/build-hostile.sh

# --workspace includes checkpoint-guest, whose unit tests run natively. The PostgreSQL and
# Redis tests use servers that scripts/with-test-servers.sh starts and stops around the run.
cargo-test: build hostile
	bash scripts/with-test-servers.sh $(CARGO) test --release $(CARGO_FLAGS) --workspace

# The Python (wasmtime-py) and Node (jco) hosts: each script makes its own environment
# (virtualenv / npm packages) and plays every conformance case file.
.PHONY: test-python test-node bench
# The Python tests load target/hostile.wasm too (python/tests/test_sandbox.py).
test-python: build hostile
	bash python/run-tests.sh

test-node: build
	bash node/run-tests.sh

# Benchmarks (never part of `test`): one table, every figure measured side by side in one run.
bench: build
	bash scripts/bench.sh

clippy: guest
	$(CARGO) clippy --release $(CARGO_FLAGS) --workspace --all-targets --keep-going -- -D warnings

fmt-check:
	$(CARGO) fmt --all -- --check

# Not part of `test`: needs rustup's nightly and minutes of build. Uses the component already
# built at $(COMPONENT) (run `make build` first); a finding fails, its input is kept (see script).
SECONDS ?= 60
fuzz:
	bash scripts/fuzz.sh $(SECONDS)

# Long runs that do not belong in `make test`: 10,000 crash schedules, and the table of every
# reliability figure (set FUZZ_SECONDS=N to include N seconds of fuzzing per target).
.PHONY: soak reliability
soak: build hostile
	CRASH_SCHEDULES=$${CRASH_SCHEDULES:-10000} $(CARGO) test --release $(CARGO_FLAGS) -p checkpoint-host --test crash_schedules -- --nocapture

reliability: build hostile
	bash scripts/reliability.sh
