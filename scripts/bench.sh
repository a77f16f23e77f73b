#!/usr/bin/env bash
# `make bench`: P1-P7 and memory side by side in one table (host/benches/checkpoint.rs), then
# a small table of the per-call cost of each host on the memory store: the Rust host's figures
# from that run, and the lines of the Python and Node hosts' own bench scripts when their
# environments exist; then each host's write and get against its floor (the floor component,
# target/floor.wasm from `make floor`, making the same import calls and nothing else); then the
# foreign hosts' large-state rows (Python against Node) and cold starts.
# Benchmarks are not tests: a missing host is skipped with a message.
#
#   scripts/bench.sh                 # after `make build` (make bench does both)
#   BENCH_SCALE=0.2 scripts/bench.sh # fewer samples (quicker, noisier); 1.0 is the default
#   BENCH_ONLY=P1,P4 scripts/bench.sh  # only these sections (P1..P7, floor, tls, big, mem)
#   BENCH_DIR=/path scripts/bench.sh # where the database files go (default: a temp dir)
#   BENCH_SERVERS=0 scripts/bench.sh   # no servers: P7's PostgreSQL rows and the tls rows say so
#                                      # (BENCH_POSTGRES=0, its older name, works too)
#
# P7 compares PostgreSQL too, and the tls section measures TLS against plain on PostgreSQL and
# Redis. Unless the caller names servers (CKPT_TEST_POSTGRES_URL or CKPT_TEST_REDIS_URL, with
# CKPT_TEST_POSTGRES_TLS_URL / CKPT_TEST_REDIS_TLS_URL for the tls rows), this script runs
# itself again under scripts/with-test-servers.sh, which starts both servers with TLS on
# loopback (installing them when missing), exports their plain and TLS URLs and stops them at
# the end. If they cannot start, the bench runs without them and those rows say so.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

wants() { [[ -z ${BENCH_ONLY:-} ]] || grep -qiw "$1" <<<"${BENCH_ONLY//,/ }"; }
if [[ -n ${CKPT_BENCH_STARTED:-} ]]; then
    # The second run, under scripts/with-test-servers.sh: tell the first that the servers started.
    touch "$CKPT_BENCH_STARTED"
    unset CKPT_BENCH_STARTED
elif [[ ${BENCH_SERVERS:-${BENCH_POSTGRES:-1}} == 1 && -z ${CKPT_TEST_POSTGRES_URL:-} \
    && -z ${CKPT_TEST_REDIS_URL:-} ]] && { wants P7 || wants tls; }; then
    marker_dir=$(mktemp -d)
    status=0
    CKPT_BENCH_STARTED=$marker_dir/started \
        bash scripts/with-test-servers.sh bash scripts/bench.sh "$@" || status=$?
    started=0
    if [[ -e $marker_dir/started ]]; then started=1; fi
    rm -rf "$marker_dir"
    if ((started)); then exit "$status"; fi
    log "the test servers did not start (exit $status, above): P7's PostgreSQL rows and the tls rows are skipped"
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT

log "building and running host/benches/checkpoint.rs (release profile)"
read -r -a extra_flags <<<"${CKPT_CARGO_FLAGS:-}"
cargo bench "${extra_flags[@]}" -p checkpoint-host --bench checkpoint >"$out"
grep -vE '^(per-call|floor) [a-z]+ ' "$out"

# Lines for the per-host tables, from each host's bench:
#   per-call <host> write_us=<float> get_us=<float> calls=<n>
#   floor <host> write_us=<float> get_us=<float> floor_write_us=<float> floor_get_us=<float> noop_us=<float> calls=<n>
# A floor line's write_us and get_us are the real calls timed interleaved with the floor
# component's (tests/floor-guest, `make floor`) in that host's floor section, so its ratios
# compare figures of the same moments; the per-call table keeps the hosts' own per-call runs.
lines=()
floors=()
large=()
notes=()
rust=$(grep -m1 '^per-call rust ' "$out" || true)
if [[ -n $rust ]]; then
    lines+=("$rust")
else
    notes+=("rust: per-call not measured in this run (P2 was not among BENCH_ONLY=${BENCH_ONLY:-})")
fi
rust=$(grep -m1 '^floor rust ' "$out" || true)
if [[ -n $rust ]]; then
    floors+=("$rust")
else
    notes+=("rust: floor not measured in this run (floor was not among BENCH_ONLY=${BENCH_ONLY:-})")
fi

# Runs one foreign host's bench (`$1`: host name, then the command) and keeps its lines.
foreign() {
    local host=$1 output line
    shift
    output=$("$@" 2>/dev/null || true)
    if line=$(grep -m1 "^per-call $host " <<<"$output"); then
        lines+=("$line")
    else
        notes+=("$host: $* printed no per-call line (run it alone to see why)")
    fi
    if line=$(grep -m1 "^floor $host " <<<"$output"); then
        floors+=("$line")
    else
        notes+=("$host: $* printed no floor line (is target/floor.wasm built? make floor)")
    fi
    # large-state, large-state-floor and cold-start lines, in the order printed.
    while IFS= read -r line; do
        large+=("$line")
    done < <(grep -E "^(large-state|large-state-floor|cold-start) $host " <<<"$output" || true)
}

python=target/python-venv/bin/python
if [[ ! -f python/bench.py ]]; then
    notes+=("python: skipped, python/bench.py is not in this checkout")
elif [[ ! -x $python ]]; then
    notes+=("python: skipped, no environment at $python (make test-python creates it)")
else
    foreign python "$python" python/bench.py
fi

if [[ ! -f node/bench.mjs ]]; then
    notes+=("node: skipped, node/bench.mjs is not in this checkout")
elif ! command -v node >/dev/null 2>&1; then
    notes+=("node: skipped, node is not installed")
else
    foreign node node node/bench.mjs
fi

field() { sed -nE "s/.* $1=([0-9.eE+-]+).*/\1/p" <<<"$2"; }
echo
echo "per-call cost by host (memory store)"
printf '%-8s %12s %12s %10s\n' host write_us get_us calls
printf '%-8s %12s %12s %10s\n' -------- ------------ ------------ ----------
for line in "${lines[@]}"; do
    host=$(awk '{print $2}' <<<"$line")
    printf '%-8s %12s %12s %10s\n' "$host" "$(field write_us "$line")" "$(field get_us "$line")" "$(field calls "$line")"
done

echo
echo "each host near its own floor: write and get vs the floor component's import calls alone,"
echo "interleaved in one section of each host's bench (p50 of group means; target: within 2x)"
fmt='%-8s %9s %9s %7s  %9s %9s %7s  %8s %8s  %s\n'
# shellcheck disable=SC2059
printf "$fmt" host write_us floor_us ratio get_us floor_us ratio noop_us calls '<= 2x'
# shellcheck disable=SC2059
printf "$fmt" -------- --------- --------- ------- --------- --------- ------- -------- -------- -------
for line in "${floors[@]}"; do
    host=$(awk '{print $2}' <<<"$line")
    w=$(field write_us "$line") fw=$(field floor_write_us "$line")
    g=$(field get_us "$line") fg=$(field floor_get_us "$line")
    read -r rw rg met < <(awk -v w="$w" -v fw="$fw" -v g="$g" -v fg="$fg" 'BEGIN {
        rw = w / fw; rg = g / fg
        printf "%.2fx %.2fx %s\n", rw, rg, (rw <= 2 && rg <= 2) ? "met" : "NOT_met" }')
    # shellcheck disable=SC2059
    printf "$fmt" "$host" "$w" "$fw" "$rw" "$g" "$fg" "$rg" "$(field noop_us "$line")" \
        "$(field calls "$line")" "${met//_/ }"
done

echo
echo "large operator state by host (one state of 1 and 16 MiB, memory store, best of rounds;"
echo "target: Python's MB/s at least a third of Node's), and each foreign host's cold start"
fmt='%-8s %-18s %5s %10s %10s %11s %11s\n'
# shellcheck disable=SC2059
printf "$fmt" host row mib write_ms get_ms write_mb_s get_mb_s
# shellcheck disable=SC2059
printf "$fmt" -------- ------------------ ----- ---------- ---------- ----------- -----------
for line in "${large[@]}"; do
    read -r row host _ <<<"$line"
    if [[ $row == cold-start ]]; then
        printf '%-8s %-18s %s\n' "$host" "$row" "${line#"$row $host "}"
        continue
    fi
    # shellcheck disable=SC2059
    printf "$fmt" "$host" "$row" "$(field mib "$line")" "$(field write_ms "$line")" \
        "$(field get_ms "$line")" "$(field write_mb_s "$line")" "$(field get_mb_s "$line")"
done
for mib in 1 16; do
    py=$(printf '%s\n' "${large[@]}" | grep -m1 "^large-state python mib=$mib " || true)
    js=$(printf '%s\n' "${large[@]}" | grep -m1 "^large-state node mib=$mib " || true)
    [[ -n $py && -n $js ]] || continue
    awk -v mib="$mib" -v pw="$(field write_mb_s "$py")" -v nw="$(field write_mb_s "$js")" \
        -v pg="$(field get_mb_s "$py")" -v ng="$(field get_mb_s "$js")" 'BEGIN {
        rw = pw / nw; rg = pg / ng
        printf "python/node at %s MiB: write %.3f, get %.3f of node MB/s: %s\n", mib, rw, rg,
            (rw >= 1 / 3 && rg >= 1 / 3) ? "met" : "NOT met" }'
done
for note in "${notes[@]}"; do
    echo "$note"
done
