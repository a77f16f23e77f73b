#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS seconds each (default 60), one after the
# other, and prints per-target figures. Exits non-zero when a target finds something; the
# crashing input is left in target/fuzz/artifacts/<target>/ (the path is printed).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        (make fuzz SECONDS=N)
#
# Needs rustup's nightly (libFuzzer's instrumentation is a nightly flag) and the built component
# shipped component component/checkpoint.wasm, which decode_component embeds through checkpoint-host.
# Corpora live in target/fuzz/corpus/<target>/, seeded from tests/golden/v1-*.bin each run.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Builds with the machine's nightly (rustc 1.97.0-nightly 2026-05-19) and stable 1.95.
CARGO_FUZZ_VERSION=0.13.1
ALL_TARGETS=(decode_native decode_component)

seconds=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a positive whole number, not '$seconds'"

cd "$REPO_ROOT"
command -v rustup >/dev/null 2>&1 || die "rustup not found: fuzzing needs rustup's nightly toolchain"
rustup toolchain list | grep -q '^nightly' \
    || die "rustup has no nightly toolchain: install it with 'rustup toolchain install nightly'"
if [[ $(cargo fuzz --version 2>/dev/null | awk '{print $2}') != "$CARGO_FUZZ_VERSION" ]]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

component=$REPO_ROOT/component/checkpoint.wasm
[[ -f $component ]] || die "$component not found: run 'make component' (decode_component embeds it)"

# No sanitizer: the guest denies unsafe code, so ASan would only slow wasmtime down; Rust's own
# bounds and overflow checks (debug assertions stay on) are what turn a bug into a crash.
fuzz=(cargo +nightly fuzz)
fuzz_flags=(--fuzz-dir fuzz --sanitizer none)
# Builds go under fuzz/target/ (the fuzz crate is its own workspace). decode_native has its own
# target dir and no wasmtime, so it neither waits for nor rebuilds the component target's
# dependencies. One process per target, in turn: several -jobs would crowd a shared machine.
target_flags() {
    case $1 in
        decode_native) echo "--target-dir fuzz/target/native" ;;
        decode_component) echo "--features component" ;;
        *) die "unknown fuzz target '$1' (known: ${ALL_TARGETS[*]})" ;;
    esac
}

log "building ${targets[*]} (the first build compiles wasmtime with coverage: minutes)"
for t in "${targets[@]}"; do
    # shellcheck disable=SC2046  # the flags are words without spaces
    "${fuzz[@]}" build "${fuzz_flags[@]}" $(target_flags "$t") "$t"
done

declare -A figures
failed=()
for t in "${targets[@]}"; do
    corpus=$REPO_ROOT/target/fuzz/corpus/$t
    artifacts=$REPO_ROOT/target/fuzz/artifacts/$t
    logfile=$REPO_ROOT/target/fuzz/$t.log
    mkdir -p "$corpus" "$artifacts"
    cp tests/golden/v1-*.bin "$corpus/"
    # What this run finds is what appears in the artifacts dir after this mark.
    started=$REPO_ROOT/target/fuzz/$t.started
    touch "$started"
    log "running $t for ${seconds}s (log $logfile)"
    status=0
    # shellcheck disable=SC2046
    "${fuzz[@]}" run "${fuzz_flags[@]}" $(target_flags "$t") "$t" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts/" \
        >"$logfile" 2>&1 || status=$?
    figure() { awk -v k="stat::$1:" '$1 == k {print $2}' "$logfile" | tail -1; }
    execs=$(figure number_of_executed_units) rate=$(figure average_exec_per_sec)
    time_s=$(awk '/^Done [0-9]+ runs in [0-9]+ second/ {print $5}' "$logfile" | tail -1)
    crashes=$(find "$artifacts" -type f -newer "$started" | wc -l)
    figures[$t]=$(printf '%-18s %12s %10s %8s %8s' "$t" "${execs:--}" "${rate:--}" "${time_s:--}" "$crashes")
    if [[ $status -ne 0 || $crashes -ne 0 ]]; then
        failed+=("$t")
        tail -40 "$logfile" >&2
        log "$t FOUND SOMETHING (exit $status); input(s):"
        find "$artifacts" -type f -newer "$started" >&2
    fi
done

printf '%-18s %12s %10s %8s %8s\n' target execs execs/s seconds crashes
for t in "${targets[@]}"; do printf '%s\n' "${figures[$t]}"; done
[[ ${#failed[@]} -eq 0 ]] || die "findings in: ${failed[*]} (inputs under target/fuzz/artifacts/)"
log "no findings"
