#!/usr/bin/env bash
# `make component`: builds the guest into the shipped component, component/checkpoint.wasm,
# with the registry metadata the ecosystem reads (`wasm-tools metadata show`), and writes
# component/SOURCES (the manifest of the files it was built from). The component's `revision`
# is the SHA-256 of that manifest: a git commit cannot name itself, so the sources' digest
# stands for it. Rewrites the files only when their bytes change.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out=$REPO_ROOT/component/checkpoint.wasm
sources=$REPO_ROOT/component/SOURCES
# --out PATH: write the component there instead, and leave component/SOURCES alone (the
# reproducibility check of scripts/check-component-current.sh --rebuild).
if [[ ${1:-} == --out ]]; then
    out=$2
    sources=$out.SOURCES
    mkdir -p "$(dirname "$out")"
fi
built=$REPO_ROOT/target/checkpoint-guest.wasm

bash "$REPO_ROOT/scripts/build-guest.sh" --out "$built"

manifest=$(bash "$REPO_ROOT/scripts/component-sources.sh")
digest=$(printf '%s\n' "$manifest" | sha256sum | cut -d' ' -f1)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/Cargo.toml" | head -1)
[[ -n $version ]] || die "no workspace version in Cargo.toml"

"$WASM_TOOLS" metadata add "$built" -o "$built.meta" \
    --name checkpoint \
    --version "$version" \
    --licenses Apache-2.0 \
    --description "Durable checkpoints for stream pipelines (pipeline:checkpoint@$version): validation, ordering, fencing, retention, encoding, resume points" \
    --revision "sources-sha256:$digest"
"$WASM_TOOLS" validate "$built.meta" || die "the component with metadata does not validate"

if cmp -s "$built.meta" "$out" && [[ $(cat "$sources" 2>/dev/null) == "$manifest" ]]; then
    log "$out unchanged ($(stat -c %s "$out") bytes)"
else
    mv "$built.meta" "$out"
    printf '%s\n' "$manifest" >"$sources"
    log "wrote $out ($(stat -c %s "$out") bytes, sources-sha256:$digest) and $sources"
fi
rm -f "$built.meta"
