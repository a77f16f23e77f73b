#!/usr/bin/env bash
# Checks that the built component has exactly the contract's shape: it imports
# pipeline:checkpoint/storage and /consumer, exports /checkpointer and /codec, and asks the
# host for nothing else (no WASI: no clock, files, environment, random or stdio).
# Interfaces that only carry types (pipeline:checkpoint/types) may appear as imports.
#
#   scripts/check-component.sh [component/checkpoint.wasm]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

wasm=${1:-$REPO_ROOT/component/checkpoint.wasm}
[[ -f $wasm ]] || die "$wasm not found: run 'make build' first"
[[ -x $WASM_TOOLS ]] || die "$WASM_TOOLS missing: run 'make setup' first"

wit=$("$WASM_TOOLS" component wit "$wasm") || die "wasm-tools could not read $wasm as a component"

# The world of the component: lines like `import pipeline:checkpoint/storage@0.1.0;`.
mapfile -t imports < <(sed -nE 's/^[[:space:]]*import ([^;]+);.*/\1/p' <<<"$wit" | sed -E 's/@[^@]*$//' | sort -u)
mapfile -t exports < <(sed -nE 's/^[[:space:]]*export ([^;]+);.*/\1/p' <<<"$wit" | sed -E 's/@[^@]*$//' | sort -u)

want_imports=(pipeline:checkpoint/consumer pipeline:checkpoint/storage)
type_only_imports=(pipeline:checkpoint/types)
want_exports=(pipeline:checkpoint/checkpointer pipeline:checkpoint/codec)

problems=()
has() { local x=$1; shift; local y; for y in "$@"; do [[ $x == "$y" ]] && return 0; done; return 1; }
for i in "${want_imports[@]}"; do has "$i" "${imports[@]}" || problems+=("missing import $i"); done
for e in "${want_exports[@]}"; do has "$e" "${exports[@]}" || problems+=("missing export $e"); done
for i in "${imports[@]}"; do
    has "$i" "${want_imports[@]}" "${type_only_imports[@]}" || problems+=("unexpected import $i")
done
for e in "${exports[@]}"; do has "$e" "${want_exports[@]}" || problems+=("unexpected export $e"); done
# A type-only import must stay type-only: no function the host would have to supply.
for t in "${type_only_imports[@]}"; do
    name=${t##*/}
    if awk -v n="$name" '$0 ~ "^  interface " n " \\{" {in_=1; next} in_ && /^  \}/ {in_=0} in_ && /: func\(/ {f=1} END {exit !f}' <<<"$wit"; then
        problems+=("import $t declares functions; it must only carry types")
    fi
done

if ((${#problems[@]})); then
    printf '%s\n' "$wit" >&2
    printf '\n' >&2
    for p in "${problems[@]}"; do printf '  - %s\n' "$p" >&2; done
    if [[ $(guest_route) == rustup ]] && printf '%s\n' "${problems[@]}" | grep -q 'unexpected import wasi:'; then
        log "note: the rustup route links rustup's prebuilt std, which imports WASI; only the Debian route's -Cpanic=immediate-abort build removes it"
    fi
    die "$wasm does not match the contract (world checkpoint-component in wit/world.wit): see above"
fi
log "$wasm: imports ${want_imports[*]}; exports ${want_exports[*]}; nothing else ($(stat -c %s "$wasm") bytes)"
