#!/usr/bin/env bash
# Fails when the shipped component (component/checkpoint.wasm) is not the build of the current
# guest sources and WIT: the manifest of those files must equal component/SOURCES, and the
# component's metadata must carry that manifest's digest. With --rebuild it also builds the
# guest again and requires the same bytes (the build is reproducible on this toolchain).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

component=$REPO_ROOT/component/checkpoint.wasm
sources=$REPO_ROOT/component/SOURCES
fix="run \`make component\` and commit component/checkpoint.wasm and component/SOURCES"

[[ -f $component && -f $sources ]] || die "component/checkpoint.wasm or component/SOURCES is missing: $fix"

current=$(bash "$REPO_ROOT/scripts/component-sources.sh")
if [[ $current != "$(cat "$sources")" ]]; then
    printf '%s\n' "the guest or WIT sources changed since component/checkpoint.wasm was built:" >&2
    diff <(cat "$sources") <(printf '%s\n' "$current") \
        | sed -n 's/^[<>] [0-9a-f]*  //p' | sort -u | sed 's/^/  changed: /' >&2 || true
    die "the shipped component is stale: $fix"
fi

digest=$(printf '%s\n' "$current" | sha256sum | cut -d' ' -f1)
revision=$("$WASM_TOOLS" metadata show --json "$component" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["component"]["metadata"].get("revision") or "")' 2>/dev/null || true)
[[ $revision == "sources-sha256:$digest" ]] \
    || die "component/checkpoint.wasm says it was built from sources ${revision:-(no revision)}, but component/SOURCES is sources-sha256:$digest: $fix"
log "component/checkpoint.wasm is current (sources-sha256:$digest)"

if [[ ${1:-} == --rebuild ]]; then
    rebuilt=$REPO_ROOT/target/check-component/checkpoint.wasm
    bash "$REPO_ROOT/scripts/build-component.sh" --out "$rebuilt" >/dev/null
    cmp -s "$rebuilt" "$component" \
        || die "a fresh build of the guest gives other bytes than component/checkpoint.wasm ($(stat -c %s "$rebuilt") vs $(stat -c %s "$component") bytes): $fix"
    log "a fresh build of the guest gives the same bytes"
fi
