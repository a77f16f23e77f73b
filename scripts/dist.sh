#!/usr/bin/env bash
# `make dist`: every package users install, built from this tree into dist/:
#   checkpoint.wasm                      the shipped component (component/checkpoint.wasm)
#   pipeline-checkpoint-<v>.wit.wasm     the WIT package (the contract), binary-encoded
#   checkpoint-component-<v>.crate       the component as a Rust crate
#   checkpoint-host-<v>.crate            the Rust embedding library
#   <wheel>.whl                          the Python package (python/dist.sh)
#   <name>-<v>.tgz                       the npm package (node/dist.sh)
#   SHA256SUMS                           sha256sum of all of the above
# dist/ is emptied first, so it holds exactly one build.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

dist=${DIST_DIR:-$REPO_ROOT/dist}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/Cargo.toml" | head -1)
rm -rf "$dist"
mkdir -p "$dist"
start=$SECONDS

step() { log "$1 ($((SECONDS - start)) s)"; }

cp "$REPO_ROOT/component/checkpoint.wasm" "$dist/checkpoint.wasm"
step "component"

[[ -x $WASM_TOOLS ]] || die "$WASM_TOOLS missing: run 'make setup'"
"$WASM_TOOLS" component wit "$REPO_ROOT/wit" --wasm -o "$dist/pipeline-checkpoint-$version.wit.wasm"
"$WASM_TOOLS" validate "$dist/pipeline-checkpoint-$version.wit.wasm"
step "WIT package"

# --no-verify: scripts/test-rust-package.sh builds the unpacked crates in a project outside
# the tree instead (sharing target/, so wasmtime is not compiled again).
read -r -a extra_flags <<<"${CKPT_CARGO_FLAGS:-}"
cargo package --no-verify --allow-dirty "${extra_flags[@]}" \
    -p checkpoint-component -p checkpoint-host
cp "$REPO_ROOT/target/package/checkpoint-component-$version.crate" \
    "$REPO_ROOT/target/package/checkpoint-host-$version.crate" "$dist/"
step "crates"

bash "$REPO_ROOT/python/dist.sh" "$dist"
step "wheel"
bash "$REPO_ROOT/node/dist.sh" "$dist"
step "npm tarball"

(cd "$dist" && sha256sum -- * >SHA256SUMS)
log "dist/ ($((SECONDS - start)) s):"
(cd "$dist" && ls -l --time-style=+ -- * | awk '{printf "  %10s  %s\n", $5, $NF}') >&2
