#!/usr/bin/env bash
# The conformance suite across hosts (tests/conformance/README.md, "Expanded cases" and
# "Transcripts"), through the `conformance` binary of checkpoint-testkit:
#
#   scripts/conformance.sh expand   validates tests/conformance/cases/*.json and writes the
#                                   expanded cases to target/conformance/cases.json (what the
#                                   Python and Node runners play)
#   scripts/conformance.sh check    expands again, then checks every transcript under
#                                   target/conformance/transcripts/HOST/BACKEND/CASE.json against
#                                   the expectations and compares hosts on shared backends;
#                                   extra arguments go to the checker (e.g. --host rust)
#
# `check` requires a transcript of every case from rust:memory, rust:sqlite, rust:freezing,
# rust:postgres, rust:redis, python:memory, python:sqlite and node:memory (the runners write them:
# `cargo test --release -p checkpoint-host --test conformance`, and the Python and Node runners).
# CKPT_SKIP_SERVER_TESTS=1 drops rust:postgres and rust:redis, loudly. CKPT_CONFORMANCE_DIR
# moves target/conformance.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

out=${CKPT_CONFORMANCE_DIR:-target/conformance}
# Built as part of the whole workspace with all targets, as `make build` and `cargo test
# --workspace` build it: one feature resolution, so wasmtime is compiled once, not per selection
# (a no-op when they ran already).
built=0
conformance() {
    if ((built == 0)); then
        # shellcheck disable=SC2086 # CKPT_CARGO_FLAGS is a list of flags
        cargo build --release -q ${CKPT_CARGO_FLAGS:-} --workspace --all-targets
        built=1
    fi
    "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/conformance" "$@"
}

case "${1:-}" in
expand)
    conformance expand tests/conformance/cases "$out/cases.json"
    ;;
check)
    shift
    required=(rust:memory rust:sqlite rust:freezing python:memory python:sqlite node:memory)
    if [[ ${CKPT_SKIP_SERVER_TESTS:-} == 1 ]]; then
        printf '\n!!! SKIPPED conformance transcripts of rust:postgres and rust:redis: CKPT_SKIP_SERVER_TESTS=1 !!!\n\n' >&2
    else
        required+=(rust:postgres rust:redis)
    fi
    conformance expand tests/conformance/cases "$out/cases.json" >/dev/null
    conformance check "$out/cases.json" "$out/transcripts" "${required[@]/#/--require=}" "$@"
    ;;
*)
    echo "usage: scripts/conformance.sh expand | check [CHECKER ARGS...]" >&2
    exit 2
    ;;
esac
