# Entry points (each works on a fresh machine without an earlier step):
#   make setup      install the guest toolchain (scripts/setup.sh; seconds when already done)
#   make component  rebuild the shipped component, component/checkpoint.wasm (+ component/SOURCES)
#                   from guest/ and wit/; commit both (make test fails when they are stale)
#   make build      the `ckpt` CLI and the host library, which embed component/checkpoint.wasm
#                   (no guest toolchain needed)
#   make run        build + `ckpt demo`
#   make test       setup + the shipped component current and reproducible + its shape + workspace
#                   tests (with real PostgreSQL and Redis servers) + Python and Node hosts + their
#                   conformance transcripts compared + the packages installed from dist/ in empty
#                   directories + clippy + fmt check
#   make dist       dist/: the component, the WIT package, the .crate files, the wheel, the npm
#                   tarball, SHA256SUMS
#   make bench      P1-P7 (group commit), 1,000 stages and a 16 MiB state side by side in one
#                   table, then per-call figures of the three hosts
#   make hostile    the hostile test component -> target/hostile.wasm (host/tests/sandbox.rs)
#   make floor      the floor component -> target/floor.wasm (each host's floor rows in make bench)
#   make clippy     clippy, release, all targets, -D warnings
#   make fmt-check  rustfmt --check
#   make fuzz       each cargo-fuzz target for SECONDS seconds (default 60; nightly)
#   make soak       10,000 crash schedules of each driver path (CRASH_SCHEDULES=N to change), with figures
#   make reliability  one table: conformance, crash schedules, concurrency, power losses, fuzzing (FUZZ_SECONDS), bad inputs, violations
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

COMPONENT := component/checkpoint.wasm
CKPT := target/release/ckpt
DEMO_ARGS ?=

.PHONY: setup component check-component build run test cargo-test clippy fmt-check fuzz dist test-dist

setup:
	bash scripts/setup.sh

# Rebuilds the shipped component from guest/ and wit/ (needs the guest toolchain: setup).
component: setup
	bash scripts/build-component.sh

# The shipped component is the build of the current sources (component/SOURCES), a fresh build
# gives the same bytes, and it has exactly the contract's shape (no WASI imports).
check-component: setup
	bash scripts/check-component-current.sh --rebuild
	bash scripts/check-component.sh $(COMPONENT)

# The host library embeds $(COMPONENT) (the checkpoint-component crate); no guest build here.
# The whole workspace with all targets: the one feature resolution that `cargo test --workspace`
# and the conformance tool use too, so wasmtime is compiled once for all of them.
build:
	$(CARGO) build --release $(CARGO_FLAGS) --workspace --all-targets

run: build
	$(CKPT) demo $(DEMO_ARGS)

# Prerequisites run left to right: the component first, tests, packages, then lints.
test: check-component cargo-test test-python test-node conformance-check test-dist clippy fmt-check

# The hostile component that host/tests/sandbox.rs loads (tests/hostile-guest, own workspace).
.PHONY: hostile
hostile: setup
	bash scripts/build-hostile.sh

# --workspace includes checkpoint-guest, whose unit tests run natively. The PostgreSQL and
# Redis tests use servers that scripts/with-test-servers.sh starts and stops around the run.
cargo-test: build hostile
	bash scripts/with-test-servers.sh $(CARGO) test --release $(CARGO_FLAGS) --workspace

# The conformance transcripts of all three hosts: every step matches its expectation, and
# hosts that share a backend kind wrote byte-identical transcripts (scripts/conformance.sh).
.PHONY: conformance-check
conformance-check:
	bash scripts/conformance.sh check

# Every package, built from this tree into dist/ (scripts/dist.sh).
dist: build
	bash scripts/dist.sh

# Each package installed from dist/ into an empty directory outside the repository, running
# the README's example for its language (scripts/test-dist.sh).
test-dist: dist
	bash scripts/test-dist.sh

.PHONY: test-python test-node bench
# The Python tests load target/hostile.wasm too (python/tests/test_sandbox.py).
test-python: build hostile
	bash python/run-tests.sh

# The Node tests load target/hostile.wasm too (node/test/sandbox.test.js).
test-node: build hostile
	bash node/run-tests.sh

# The floor component that the benchmarks time each host's write and get against
# (tests/floor-guest, own workspace) -> target/floor.wasm. Like the real guest, built with
# panic=immediate-abort, so it imports only storage and consumer. Not part of `test`.
.PHONY: floor
floor: setup
	bash scripts/build-guest.sh --manifest-path tests/floor-guest/Cargo.toml --package floor-guest \
		--target-dir target/floor --out target/floor.wasm

# Benchmarks (never part of `test`): one table, every figure measured side by side in one run.
bench: build floor
	bash scripts/bench.sh

clippy:
	$(CARGO) clippy --release $(CARGO_FLAGS) --workspace --all-targets --keep-going -- -D warnings

fmt-check:
	$(CARGO) fmt --all -- --check

# Not part of `test`: needs rustup's nightly and minutes of build. Uses the shipped component
# $(COMPONENT); a finding fails, its input is kept (see script).
SECONDS ?= 60
fuzz:
	bash scripts/fuzz.sh $(SECONDS)

# Long runs that do not belong in `make test`: 10,000 crash schedules, and the table of every
# reliability figure (set FUZZ_SECONDS=N to include N seconds of fuzzing per target).
.PHONY: soak reliability
soak: build hostile
	CRASH_SCHEDULES=$${CRASH_SCHEDULES:-10000} $(CARGO) test --release $(CARGO_FLAGS) -p checkpoint-host --test crash_schedules --test crash_schedules_sources -- --nocapture

reliability: build hostile
	bash scripts/reliability.sh
