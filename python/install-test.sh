#!/usr/bin/env bash
# Installs a wheel as a user would, and runs the README's Python example with it: in an empty
# temporary directory outside the repository, a fresh virtualenv, `pip install WHEEL` (wasmtime
# comes from the package index), then the ```python block under "## Embedding from Python" of
# the repository's README.md, run from that directory by the virtualenv's interpreter in
# isolated mode with an empty environment: no PYTHONPATH, no variable and no path pointing into
# the repository. Then checks that the package and its component were loaded from the
# virtualenv, and that the wheel's description (python/README.md) shows that same example.
# Prints the time of each step.
#
# usage: python/install-test.sh WHEEL [MARKDOWN]
#   MARKDOWN: the file the example is read from (default: the repository's README.md)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[[ $# == 1 || $# == 2 ]] || die "usage: python/install-test.sh WHEEL [MARKDOWN]"
[[ -f $1 && $1 == *.whl ]] || die "no wheel at $1"
wheel=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
markdown=${2:-$ROOT/README.md}
[[ -f $markdown ]] || die "no $markdown"
require_python

work=$(mktemp -d "${TMPDIR:-/tmp}/pipeline-checkpoint-install.XXXXXX")
work=$(cd "$work" && pwd -P)
trap 'rm -rf "$work"' EXIT
case "$work/" in "$(cd "$ROOT" && pwd -P)/"*) die "$work is inside the repository" ;; esac
cd "$work"

# The example, from the one place the README shows it.
"$PYTHON" - "$markdown" "$work/example.py" <<'PY'
import re, sys
SECTION = "## Embedding from Python"
text = open(sys.argv[1], encoding="utf-8").read()
if SECTION not in text:
    sys.exit(f"no {SECTION!r} heading in {sys.argv[1]}")
start = text.index(SECTION) + len(SECTION)
following = text.find("\n## ", start)
blocks = re.findall(r"^```python\n(.*?)^```", text[start:following if following != -1 else None],
                    flags=re.M | re.S)
if len(blocks) != 1:
    sys.exit(f"expected one ```python block under {SECTION!r} in {sys.argv[1]}, found {len(blocks)}")
if "assert " not in blocks[0]:
    sys.exit("the README example should assert what it shows")
open(sys.argv[2], "w", encoding="utf-8").write(blocks[0])
PY
cp "$wheel" "$work/"
local_wheel=$work/$(basename "$wheel")

declare -a steps=()
step() { # step NAME COMMAND...: runs COMMAND, records its wall time
    local name=$1 start end
    shift
    log "$name: $*"
    start=$(now)
    "$@" || die "$name failed: $*"
    end=$(now)
    steps+=("$(awk -v n="$name" -v a="$start" -v b="$end" 'BEGIN { printf "%-8s %6.2f s", n, b - a }')")
}
# The example and the checks run with nothing from the caller's environment.
clean() { env -i PATH="$work/venv/bin:/usr/bin:/bin" HOME="$work" LANG=C.UTF-8 "$@"; }

log "in $work (empty, outside the repository), $("$PYTHON" -V 2>&1)"
step venv "$PYTHON" -m venv "$work/venv"
step install env -u PYTHONPATH -u PYTHONHOME "$work/venv/bin/python" -m pip install --quiet \
    --disable-pip-version-check "$local_wheel"
step example clean "$work/venv/bin/python" -I example.py

# What ran: the installed package and the component inside it; and the package page (the
# wheel's description) shows the example that just ran.
clean "$work/venv/bin/python" -I - "$work/venv" example.py <<'PY' || die "the installed package is not what ran"
import hashlib, sys
from importlib.metadata import metadata, version
from pathlib import Path

import pipeline_checkpoint
from pipeline_checkpoint import default_component_path

venv = Path(sys.argv[1]).resolve()
package = Path(pipeline_checkpoint.__file__).resolve()
component = default_component_path().resolve()
for what, path in (("package", package), ("component", component)):
    if venv not in path.parents:
        sys.exit(f"the {what} was loaded from {path}, not from the virtualenv {venv}")
if component.parent != package.parent:
    sys.exit(f"the component {component} is not inside the package {package.parent}")
meta = metadata("pipeline-checkpoint")
example = Path(sys.argv[2]).read_text(encoding="utf-8")
if example not in (meta.get_payload() or ""):
    sys.exit("the wheel's description (python/README.md) does not show the README example as is")
digest = hashlib.sha256(component.read_bytes()).hexdigest()
print(f"[python] ran pipeline-checkpoint {version('pipeline-checkpoint')} (wasmtime "
      f"{version('wasmtime')}) from {package.parent}; component sha256 {digest[:16]}...",
      file=sys.stderr)
PY

log "install test passed ($(basename "$wheel"), $(stat -c %s "$wheel") bytes):"
for line in "${steps[@]}"; do log "  $line"; done
