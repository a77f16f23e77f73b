#!/usr/bin/env bash
# Tests of the Python host (python/), run against what users get: the wheel. Makes
# target/python-venv (pinned packages from python/requirements.txt), builds the wheel with
# python/dist.sh into target/python-dist (the package plus the shipped component,
# component/checkpoint.wasm, and the SQLite schema, host/src/storage/sqlite-schema.sql) and
# installs it there (not editable), then runs pytest (API, stores, runner, the README example,
# what was installed) and the conformance runner over every expanded case on the dict and
# sqlite3 stores, all importing the installed `pipeline_checkpoint`, whose transcripts the
# testkit's checker then checks.
# Seconds when nothing changed: the wheel is rebuilt and reinstalled only when the pins, the
# package's sources or metadata, the component or the schema changed (a stamp in the venv).
# Builds no Rust but the testkit's `conformance` tool (cargo, on first use, to expand the cases):
# `make test-python` builds first what the tests load besides the wheel: the hostile test
# component (target/hostile.wasm) and the Rust CLI (target/release/ckpt, for the interop test).
# The Redis Streams source's tests need a real redis-server: without CKPT_TEST_REDIS_URL, this
# script runs itself again under scripts/with-test-servers.sh, which starts one (and PostgreSQL)
# and stops it at the end; CKPT_SKIP_SERVER_TESTS=1 skips those tests instead (never under CI).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
if [[ -z ${CKPT_TEST_REDIS_URL:-} && ${CKPT_SKIP_SERVER_TESTS:-} != 1 ]]; then
    exec bash "$ROOT/scripts/with-test-servers.sh" bash "$HERE/run-tests.sh" "$@"
fi
# shellcheck source=lib.sh
source "$HERE/lib.sh"

VENV=$ROOT/target/python-venv
PY=$VENV/bin/python
DIST=$ROOT/target/python-dist
STAMP=$VENV/.ckpt-installed
PIP=("$PY" -m pip --disable-pip-version-check)

component=$ROOT/component/checkpoint.wasm
[[ -f $component ]] || die "no shipped component at $component: \`make component\` builds it"
schema=$ROOT/host/src/storage/sqlite-schema.sql

require_python
ensure_venv "$VENV"

# Everything the installed package is made of: pins, metadata, page, licence, sources, component,
# and the SQLite schema (host/src/storage/sqlite-schema.sql, shared with the Rust host).
inputs() {
    cd "$HERE"
    sha256sum requirements.txt pyproject.toml README.md LICENSE lib.sh dist.sh
    find src -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z \
        | xargs -0 sha256sum
    sha256sum "$component" "$schema"
}
want=$(inputs | sha256sum | cut -d' ' -f1)
if [[ ! -f $STAMP || $(cat "$STAMP") != "$want" ]] \
    || ! "$PY" -I -c 'import pipeline_checkpoint' 2>/dev/null; then
    rm -f "$STAMP"
    log "installing pinned packages (python/requirements.txt)"
    "${PIP[@]}" install --quiet -r "$HERE/requirements.txt" -c "$HERE/requirements.txt"
    # The package's name before it was `pipeline-checkpoint` (an editable install of python/).
    if "${PIP[@]}" show --quiet checkpoint >/dev/null 2>&1; then
        "${PIP[@]}" uninstall --quiet --yes checkpoint
    fi
    wheel=$(bash "$HERE/dist.sh" "$DIST")
    log "installing $wheel (not editable)"
    "${PIP[@]}" install --quiet --no-deps --force-reinstall "$wheel"
    "${PIP[@]}" check >&2 || die "the wheel's requirements do not match python/requirements.txt"
    echo "$want" >"$STAMP"
fi

# From python/ (not python/src): `pipeline_checkpoint` can only come from the venv.
cd "$HERE"
log "pytest (API, stores, conformance runner, README examples, the installed wheel, the Redis Streams source killed 2 x 24 times)"
"$PY" -m pytest -q -p no:cacheprovider tests
# The runner plays the expanded cases (the testkit's `conformance expand`: needs cargo, and builds
# checkpoint-testkit the first time), writes target/conformance/transcripts/python/ and runs the
# testkit's checker on them: its summary line is the last one, its status ours.
log "conformance cases (expanding with scripts/conformance.sh expand)"
bash "$ROOT/scripts/conformance.sh" expand >&2
"$PY" conformance_runner.py
