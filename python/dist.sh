#!/usr/bin/env bash
# Builds the wheel of the Python host (distribution `pipeline-checkpoint`, import
# `pipeline_checkpoint`) into OUT_DIR: python/src/pipeline_checkpoint plus the shipped component,
# component/checkpoint.wasm, and the SQLite store's schema, host/src/storage/sqlite-schema.sql,
# both put inside the package (pyproject.toml, force-include). The backend
# (hatchling, pinned in pyproject.toml) is installed by pip into an isolated build environment;
# pip itself comes from target/python-venv, made here when missing. The wheel is reproducible:
# the same sources and component give the same bytes.
#
# usage: python/dist.sh OUT_DIR    (prints the wheel's path on stdout, its size on stderr)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $# == 1 && -n $1 ]] || die "usage: python/dist.sh OUT_DIR"
component=$ROOT/component/checkpoint.wasm
[[ -f $component ]] || die "no shipped component at $component: \`make component\` builds it"

mkdir -p "$1"
out=$(cd "$1" && pwd)
VENV=$ROOT/target/python-venv
ensure_venv "$VENV"

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
log "building the wheel (python/, with component/checkpoint.wasm and the SQLite schema)"
"$VENV/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
    --wheel-dir "$build" "$HERE" >&2
wheels=("$build"/*.whl)
[[ ${#wheels[@]} == 1 && -f ${wheels[0]} ]] || die "expected one wheel, got: ${wheels[*]}"
name=$(basename "${wheels[0]}")
mv -f "${wheels[0]}" "$out/$name"
size=$(stat -c %s "$out/$name")
log "wheel: $out/$name ($size bytes, $(( (size + 1023) / 1024 )) KiB)"
printf '%s\n' "$out/$name"
