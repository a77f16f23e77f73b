#!/usr/bin/env bash
# Prints the manifest of what the shipped component is built from: one `sha256  path` line per
# file, sorted, then one line for the guest's locked dependencies. `make component` stores it as
# component/SOURCES and puts its SHA-256 in the component's metadata (`revision`);
# scripts/check-component-current.sh compares both.
#
# The inputs: the WIT package, the guest crate, the workspace manifest (profile settings) and
# the guest build script (flags); and from Cargo.lock only the guest's own dependency closure
# (names and versions, as `cargo tree` resolves them for wasm32), so that a lockfile change for
# the host or the tests does not make the component stale.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Tracked files and new ones not ignored, so that an uncommitted change counts too.
git ls-files -z --cached --others --exclude-standard -- \
    wit guest Cargo.toml scripts/build-guest.sh \
    | LC_ALL=C sort -z \
    | while IFS= read -r -d '' file; do
        [[ -f $file ]] && sha256sum -- "$file"
    done
# `(path)` and `(*)` suffixes dropped: the closure, not where this checkout lives.
deps=$(cargo tree --locked -q -p checkpoint-guest -e normal,build --target wasm32-wasip2 \
    --prefix none | sed 's/ (.*//' | LC_ALL=C sort -u)
printf '%s  %s\n' "$(printf '%s\n' "$deps" | sha256sum | cut -d' ' -f1)" \
    "Cargo.lock: the guest's dependencies (cargo tree -p checkpoint-guest --target wasm32-wasip2)"
