#!/usr/bin/env bash
# `make bench`: P1-P7 and memory side by side in one table (host/benches/checkpoint.rs), then
# a small table of the per-call cost of each host on the memory store: the Rust host's figures
# from that run, and the lines of the Python and Node hosts' own bench scripts when their
# environments exist. Benchmarks are not tests: a missing host is skipped with a message.
#
#   scripts/bench.sh                 # after `make build` (make bench does both)
#   BENCH_SCALE=0.2 scripts/bench.sh # fewer samples (quicker, noisier); 1.0 is the default
#   BENCH_ONLY=P1,P4 scripts/bench.sh  # only these sections (P1..P7, big, mem)
#   BENCH_DIR=/path scripts/bench.sh # where the database files go (default: a temp dir)
#   BENCH_POSTGRES=0 scripts/bench.sh  # no PostgreSQL server for P7's PostgreSQL rows
#
# P7 compares PostgreSQL too: unless CKPT_TEST_POSTGRES_URL names a server, a private one is
# started for the run (scripts/postgres-server.sh, which installs PostgreSQL when missing) and
# stopped at the end; if it cannot start, those rows say so.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

out=$(mktemp)
pg_root=
cleanup() {
    rm -f "$out"
    if [[ -n $pg_root ]]; then
        bash scripts/postgres-server.sh stop "$pg_root/postgres" >/dev/null 2>&1 || true
        rm -rf "$pg_root"
    fi
}
trap cleanup EXIT

wants() { [[ -z ${BENCH_ONLY:-} ]] || grep -qiw "$1" <<<"${BENCH_ONLY//,/ }"; }
if [[ -z ${CKPT_TEST_POSTGRES_URL:-} && ${BENCH_POSTGRES:-1} == 1 ]] && wants P7; then
    mkdir -p target/test-servers
    pg_root=$(mktemp -d "$PWD/target/test-servers/bench-XXXXXX")
    # The server runs as the `postgres` user, which must reach its data directory.
    chmod 755 "$pg_root"
    if url=$(bash scripts/postgres-server.sh start "$pg_root/postgres" 2>"$pg_root/start.log"); then
        export CKPT_TEST_POSTGRES_URL=$url
        log "PostgreSQL for P7 at $url"
    else
        log "PostgreSQL did not start (P7's PostgreSQL rows are skipped): $(tail -n 3 "$pg_root/start.log")"
    fi
fi

log "building and running host/benches/checkpoint.rs (release profile)"
read -r -a extra_flags <<<"${CKPT_CARGO_FLAGS:-}"
cargo bench "${extra_flags[@]}" -p checkpoint-host --bench checkpoint >"$out"
grep -v '^per-call ' "$out"

# Per-call lines: `per-call <host> write_us=<float> get_us=<float> calls=<n>`.
lines=()
notes=()
rust=$(grep -m1 '^per-call rust ' "$out" || true)
if [[ -n $rust ]]; then
    lines+=("$rust")
else
    notes+=("rust: not measured in this run (P2 was not among BENCH_ONLY=${BENCH_ONLY:-})")
fi

python=target/python-venv/bin/python
if [[ ! -f python/bench.py ]]; then
    notes+=("python: skipped, python/bench.py is not in this checkout")
elif [[ ! -x $python ]]; then
    notes+=("python: skipped, no environment at $python (make test-python creates it)")
elif line=$("$python" python/bench.py 2>/dev/null | grep -m1 '^per-call ') && [[ -n $line ]]; then
    lines+=("$line")
else
    notes+=("python: skipped, python/bench.py printed no per-call line (run it alone to see why)")
fi

if [[ ! -f node/bench.mjs ]]; then
    notes+=("node: skipped, node/bench.mjs is not in this checkout")
elif ! command -v node >/dev/null 2>&1; then
    notes+=("node: skipped, node is not installed")
elif line=$(node node/bench.mjs 2>/dev/null | grep -m1 '^per-call ') && [[ -n $line ]]; then
    lines+=("$line")
else
    notes+=("node: skipped, node/bench.mjs printed no per-call line (run it alone to see why)")
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
for note in "${notes[@]}"; do
    echo "$note"
done
