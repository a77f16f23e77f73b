#!/usr/bin/env bash
# Tests of the Python host (python/): makes its own virtualenv in target/python-venv (pinned
# packages from python/requirements.txt; seconds when it is already up to date), then runs
# pytest (API, stores, runner, the README example) and the conformance runner over every case
# file on the dict and sqlite3 stores. Builds nothing: `make test-python` builds first what the
# tests load: the component (target/checkpoint.wasm, or $CKPT_COMPONENT_WASM), the hostile test
# component (target/hostile.wasm) and the Rust CLI (target/release/ckpt, for the interop test).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/target/python-venv
PY=$VENV/bin/python
PYTHON=${PYTHON:-python3}
STAMP=$VENV/.ckpt-installed

log() { printf '[python] %s\n' "$*" >&2; }
die() { printf '[python] error: %s\n' "$*" >&2; exit 1; }

component=${CKPT_COMPONENT_WASM:-$ROOT/target/checkpoint.wasm}
[[ -f $component ]] || die "no component at $component: run \`make build\` first"

command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON on PATH (install python3, 3.10 or newer)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); the Python host needs 3.10 or newer"

# Debian's python3 has no `venv`/`ensurepip` until python3-venv is installed.
ensure_venv_module() {
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null && return
    command -v apt-get >/dev/null 2>&1 || die "$PYTHON cannot create virtualenvs (no venv/ensurepip)"
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root or sudo to install python3-venv"
        sudo=(sudo)
    fi
    log "installing python3-venv"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
}

# A venv whose interpreter is gone (moved or upgraded Python) is rebuilt.
if [[ ! -x $PY ]] || ! "$PY" -c 'import sys' 2>/dev/null; then
    ensure_venv_module
    log "creating $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

# Reinstall only when the pins or the package metadata changed.
want=$(cat "$ROOT/python/requirements.txt" "$ROOT/python/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [[ ! -f $STAMP || $(cat "$STAMP") != "$want" ]]; then
    log "installing pinned packages (python/requirements.txt) and python/ (editable)"
    "$PY" -m pip install --quiet --disable-pip-version-check \
        -r "$ROOT/python/requirements.txt" -c "$ROOT/python/requirements.txt" -e "$ROOT/python"
    echo "$want" >"$STAMP"
fi

cd "$ROOT/python"
log "pytest (API, stores, conformance runner, README example)"
"$PY" -m pytest -q -p no:cacheprovider tests
log "conformance cases"
"$PY" conformance_runner.py
