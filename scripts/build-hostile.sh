#!/usr/bin/env bash
# Builds the hostile test component (tests/hostile-guest) to target/hostile.wasm, for
# host/tests/sandbox.rs: scripts/build-guest.sh with plain panic=abort, so std's panic
# machinery stays, and with it the WASI imports the sandbox tests probe (files, environment,
# sockets). The crate is its own workspace with its own lockfile and target dir.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exec bash "$REPO_ROOT/scripts/build-guest.sh" \
    --manifest-path "$REPO_ROOT/tests/hostile-guest/Cargo.toml" --package hostile-guest \
    --target-dir "$REPO_ROOT/target/hostile" --out "$REPO_ROOT/target/hostile.wasm" --panic abort
