#!/usr/bin/env bash
# Prints one table of what the suite has shown: conformance cases per backend, crash schedules,
# concurrency rounds, worker processes killed at random and server outages (on real PostgreSQL
# and Redis servers started by scripts/with-test-servers.sh), power losses on SQLite (writes
# never synced are lost: host/tests/power_loss.rs), TLS connections refused on those servers
# (host/tests/tls.rs), the sandbox against the hostile component in each host (Rust:
# host/tests/sandbox.rs; Python: python/tests/test_sandbox.py on the wheel built from this
# tree, in target/python-venv; Node: node/test/sandbox.test.js after node/build.sh), fuzzing,
# bad inputs, and violations (which must be 0).
#
#   scripts/reliability.sh            # CRASH_SCHEDULES=10000, POWER_LOSS_ROUNDS=60, FUZZ_SECONDS=0
#   (`make reliability` runs it; fuzzing needs rustup's nightly, see scripts/fuzz.sh)
#   CRASH_SCHEDULES=N POWER_LOSS_ROUNDS=R POWER_LOSS_WRITES=W FUZZ_SECONDS=S scripts/reliability.sh
#
# Exits non-zero if any part fails or reports a violation.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

schedules=${CRASH_SCHEDULES:-10000}
# Rounds per configuration of the power-loss test (12 in `make test`), and checkpoints per stage
# and incarnation (10 in `make test`): enough here for WAL checkpoints to meet crashes too.
power_rounds=${POWER_LOSS_ROUNDS:-60}
power_writes=${POWER_LOSS_WRITES:-40}
fuzz_seconds=${FUZZ_SECONDS:-0}
log=$(mktemp)
wheel_dir=$(mktemp -d)
trap 'rm -rf "$log" "$wheel_dir"' EXIT

status=0
# The sandbox tests of every host load the hostile component (`make reliability` builds it).
if [[ ! -f target/hostile.wasm ]]; then
    bash scripts/build-hostile.sh >>"$log" 2>&1 || status=$?
fi
CRASH_SCHEDULES=$schedules POWER_LOSS_ROUNDS=$power_rounds POWER_LOSS_WRITES=$power_writes \
    bash scripts/with-test-servers.sh \
    cargo test --release ${CKPT_CARGO_FLAGS:-} -p checkpoint-host --test conformance \
    --test crash_schedules --test crash_schedules_sources --test concurrency --test many_processes --test server_faults \
    --test power_loss --test sqlite_storage --test tls --test sandbox -- --nocapture >>"$log" 2>&1 || status=$?

# The Python host's sandbox tests, on the package as users get it: the wheel built from this tree
# (python/dist.sh), unpacked into a directory of its own and put first on the path of
# target/python-venv (made by python/run-tests.sh's helpers when missing, with the pinned
# packages), so the venv's own install, whatever its age, is not the one tested.
python_sandbox() (
    . python/lib.sh
    venv=$REPO_ROOT/target/python-venv
    require_python
    ensure_venv "$venv"
    "$venv/bin/python" -m pip --disable-pip-version-check install --quiet \
        -r python/requirements.txt -c python/requirements.txt
    wheel=$(bash python/dist.sh "$wheel_dir/dist")
    "$venv/bin/python" -m pip --disable-pip-version-check install --quiet --no-deps \
        --target "$wheel_dir/site" "$wheel"
    cd python
    PYTHONPATH=$wheel_dir/site "$venv/bin/python" -c \
        'import pipeline_checkpoint, sys; sys.exit(not pipeline_checkpoint.__file__.startswith(sys.argv[1]))' \
        "$wheel_dir/site" || die "the wheel just built is not the package imported"
    PYTHONPATH=$wheel_dir/site "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_sandbox.py
)
python_sandbox >>"$log" 2>&1 || status=$?

# The Node host's: the bindings of the shipped component as node/run-tests.sh makes them.
node_sandbox() (
    bash node/build.sh
    cd node
    node --test --test-reporter=spec test/sandbox.test.js
)
node_sandbox >>"$log" 2>&1 || status=$?

conformance=$(grep -m1 '^conformance:' "$log" || echo 'conformance: not run')
crash=$(grep -m1 '^crash schedules:' "$log" || echo 'crash schedules: not run')
grouped=$(grep -m1 '^crash schedules (grouped' "$log" || echo 'crash schedules (grouped): not run')
power=$(grep -m1 '^power loss: ' "$log" || echo 'power loss: not run')
control=$(grep -m1 '^power loss control' "$log" || echo 'power loss control: not run')
sources=$(grep -m1 '^crash schedules (sources):' "$log" || echo 'crash schedules (sources): not run')
operator=$(grep -m1 '^crash schedules (operator):' "$log" || echo 'crash schedules (operator): not run')
normal_kills=$(grep -m1 '^sqlite synchronous=normal, process kills:' "$log" || echo 'sqlite synchronous=normal: not run')
normal_power=$(grep -m1 '^power loss window (synchronous=NORMAL):' "$log" || echo 'power loss window: not run')
concurrency=$(grep -m1 '^concurrency:' "$log" || echo 'concurrency: not run')
tls=$(grep -m1 -o 'tls refusals: .*' "$log" || echo 'tls refusals: not run')

fuzz='not run (FUZZ_SECONDS=0)'
if ((fuzz_seconds > 0)); then
    if make --no-print-directory fuzz SECONDS="$fuzz_seconds" >>"$log" 2>&1; then
        # Rows of scripts/fuzz.sh's table: target execs execs/s seconds crashes.
        fuzz=$(awk '/^decode_[a-z_]+ +[0-9]/ {printf "%s%s %s execs in %s s", sep, $1, $2, $4; sep="; "}' "$log")
        fuzz="${fuzz:-no figures}; no finding"
    else
        fuzz="FAILED (see make fuzz)"
        status=1
    fi
fi

# Figures from the summary lines the tests print.
passed=$(sed -nE 's/^conformance: ([0-9]+) of ([0-9]+) passed.*/\1 of \2/p' <<<"$conformance")
per_backend=$(sed -nE 's/.*\(([0-9]+) cases x ([0-9]+) backends.*/\1 cases on each of \2 backends/p' <<<"$conformance")
bad_inputs=$(sed -nE 's/.* ([0-9]+) bad inputs answered.*/\1/p' <<<"$conformance")
crash_run=$(sed -nE 's/^crash schedules: ([0-9]+) run, ([0-9]+) crashes, ([0-9]+) violations.*/\1 schedules, \2 crashes/p' <<<"$crash")
crash_violations=$(sed -nE 's/.* ([0-9]+) violations.*/\1/p' <<<"$crash")
grouped_run=$(sed -nE 's/^crash schedules \(grouped[^)]*\): ([0-9]+) run, ([0-9]+) crashes.*/\1 schedules, \2 crashes/p' <<<"$grouped")
grouped_violations=$(sed -nE 's/.* ([0-9]+) violations.*/\1/p' <<<"$grouped")
# "power loss: R rounds, C crashes (M mid-workload), A acked checkpoints, L lost, G regressions,
# F resume failures; W unsynced writes lost (B bytes), K kept, S syncs; N commits in T
# transactions; V violations"
power_run=$(sed -nE 's/^power loss: ([0-9]+) rounds, ([0-9]+) crashes \(([0-9]+) mid-workload\), ([0-9]+) acked checkpoints, ([0-9]+) lost, ([0-9]+) regressions, ([0-9]+) resume failures; ([0-9]+) unsynced writes lost.*/\1 rounds, \2 power losses (\3 mid-workload), \4 acked checkpoints: \5 lost, \6 regressions, \7 resume failures; \8 unsynced writes dropped/p' <<<"$power")
power_groups=$(sed -nE 's/.*; ([0-9]+ commits in [0-9]+ transactions);.*/\1/p' <<<"$power")
power_violations=$(sed -nE 's/.*; ([0-9]+) violations$/\1/p' <<<"$power")
control_lost=$(sed -nE 's/^power loss control.*acked checkpoints, ([0-9]+) lost.*/\1/p' <<<"$control")
sources_run=$(sed -nE 's/^crash schedules \(sources\): ([0-9]+) run, ([0-9]+) crashes, ([0-9]+) transient faults, ([0-9]+) messages, ([0-9]+) redeliveries.*/\1 schedules, \2 crashes, \3 transient faults, \4 messages, \5 redeliveries/p' <<<"$sources")
sources_violations=$(sed -nE 's/.* ([0-9]+) violations.*/\1/p' <<<"$sources")
# "crash schedules (operator): N run, C crashes, W writes (P replays), R resets and restores, S
# savepoints created, D deleted, F stale writes fenced; in flight at a crash: ...; V violations"
operator_run=$(sed -nE 's/^crash schedules \(operator\): ([0-9]+) run, ([0-9]+) crashes, ([0-9]+) writes \(([0-9]+) replays\), ([0-9]+) resets and restores, ([0-9]+) savepoints created, ([0-9]+) deleted, ([0-9]+) stale writes fenced.*/\1 schedules, \2 crashes: \3 writes (\4 replays), \5 resets and restores, \6 savepoints created, \7 deleted, \8 stale writes fenced/p' <<<"$operator")
operator_violations=$(sed -nE 's/.* ([0-9]+) violations$/\1/p' <<<"$operator")
# "sqlite synchronous=normal, process kills: K kills (...), A acked checkpoints, L lost, G
# regressions, F resume failures (...)"
normal_kills_row=$(sed -nE 's/^sqlite synchronous=normal, process kills: ([0-9]+) kills \(([^)]*)\), ([0-9]+) acked checkpoints, ([0-9]+) lost, ([0-9]+) regressions, ([0-9]+) resume failures.*/\1 kills (\2): \3 acked checkpoints, \4 lost, \5 regressions, \6 resume failures/p' <<<"$normal_kills")
normal_kills_damage=$(sed -nE 's/.* ([0-9]+) lost, ([0-9]+) regressions, ([0-9]+) resume failures.*/\1 \2 \3/p' <<<"$normal_kills" | awk '{print $1 + $2 + $3}')
normal_power_row=$(sed -nE 's/^power loss window \(synchronous=NORMAL\): ([0-9]+) rounds, ([0-9]+) crashes \(([0-9]+) mid-workload\), ([0-9]+) acked checkpoints, ([0-9]+) lost, ([0-9]+) regressions, ([0-9]+) resume failures.*/\2 power losses: \5 of \4 acked checkpoints lost (the documented window), \6 regressions, \7 resume failures/p' <<<"$normal_power")
normal_power_damage=$(sed -nE 's/.* ([0-9]+) regressions, ([0-9]+) resume failures.*/\1 \2/p' <<<"$normal_power" | awk '{print $1 + $2}')
rounds=$(sed -nE 's/^concurrency: ([0-9]+) rounds, ([0-9]+) lost updates.*/\1 rounds of 2-8 writers + 4 writer processes per store/p' <<<"$concurrency")
lost=$(sed -nE 's/.* ([0-9]+) lost updates.*/\1/p' <<<"$concurrency")
# One line per store: "many-processes B: ... kills K, ... fenced F exits ..., lost L, regressions R".
processes=$(sed -nE 's/^many-processes ([a-z]+): .*kills ([0-9]+).*fenced ([0-9]+) exits.*lost ([0-9]+), regressions ([0-9]+).*/\1: \2 kills, \3 fenced, \4 lost, \5 regressions/p' "$log" | paste -sd ';' | sed 's/;/; /g')
process_damage=$(sed -nE 's/^many-processes [a-z]+: .*lost ([0-9]+), regressions ([0-9]+).*/\1 \2/p' "$log" | awk '{n += $1 + $2} END {print NR ? n : 1}')
# "tls refusals: R of N refused (postgres: ...; redis: ...), each naming ...; verified connections:
# S of 2 served end to end (...)"
tls_row=$(sed -nE 's/^tls refusals: ([0-9]+ of [0-9]+) refused \((.*)\), each naming.*; verified connections: ([0-9]+ of [0-9]+) served.*/\1 refused (\2); verified: \3 served end to end/p' <<<"$tls")
tls_failed=$(sed -nE 's/^tls refusals: ([0-9]+) of ([0-9]+) refused .*; verified connections: ([0-9]+) of ([0-9]+) served.*/\1 \2 \3 \4/p' <<<"$tls" | awk '{print $2 - $1 + $4 - $3}')
# One line per host: "sandbox HOST: H of 3 held: endless loop stopped after ...".
sandbox_row() {
    local line
    line=$(grep -m1 -o "sandbox $1: .*" "$log" || true)
    sed -nE "s/^sandbox $1: (.*)/\1/p" <<<"$line"
}
sandbox_failed() {
    local line
    line=$(grep -m1 -o "sandbox $1: .*" "$log" || true)
    sed -nE "s/^sandbox $1: ([0-9]+) of ([0-9]+) held.*/\1 \2/p" <<<"$line" | awk '{print $2 - $1}'
}
outages=$(sed -nE 's/^server-faults ([a-z]+): outage: ([0-9]+) writes attempted, ([0-9]+) failed as storage errors.*acks during outage ([0-9]+).*/\1: \3 of \2 writes failed as storage, \4 acks/p' "$log" | paste -sd ';' | sed 's/;/; /g')

printf '\n%-22s %s\n' "check" "result"
printf '%-22s %s\n' "----------------------" "------------------------------------------------------------"
printf '%-22s %s\n' "conformance" "${passed:-?} passed; ${per_backend:-?}"
printf '%-22s %s\n' "crash schedules" "${crash_run:-?}"
printf '%-22s %s\n' "  grouped, power loss" "${grouped_run:-?} (3 stages on one SQLite file, group commit)"
printf '%-22s %s\n' "power losses (SQLite)" "${power_run:-?}; ${power_groups:-?}"
printf '%-22s %s\n' "  control" "synchronous=OFF: ${control_lost:-?} acked checkpoints lost (must be > 0: the test can fail)"
printf '%-22s %s\n' "  synchronous=NORMAL" "${normal_power_row:-?}"
printf '%-22s %s\n' "SQLite NORMAL, kills" "${normal_kills_row:-?} (process crashes: nothing acked may be lost)"
printf '%-22s %s\n' "redelivering sources" "${sources_run:-?} (exactly-once state and output)"
printf '%-22s %s\n' "operator tools" "${operator_run:-?} (crash schedules of reset and savepoints, against a model)"
printf '%-22s %s\n' "concurrency" "${rounds:-?}"
printf '%-22s %s\n' "killed processes" "${processes:-?}"
printf '%-22s %s\n' "server outages" "${outages:-?}"
printf '%-22s %s\n' "TLS refusals" "${tls_row:-?}"
for host in rust python node; do
    printf '%-22s %s\n' "sandbox, $host" "$(sandbox_row $host | grep . || echo '? (no summary line: see the log)')"
done
printf '%-22s %s\n' "fuzzing" "$fuzz"
printf '%-22s %s\n' "bad inputs" "${bad_inputs:-?} answered with a named error (no panic, trap or silent success)"
sandbox_violations=0
for host in rust python node; do
    failed=$(sandbox_failed $host)
    sandbox_violations=$(( sandbox_violations + ${failed:-1} ))
done
violations=$(( ${crash_violations:-1} + ${sources_violations:-1} + ${grouped_violations:-1} + ${operator_violations:-1} + ${normal_kills_damage:-1} + ${normal_power_damage:-1} + ${lost:-1} + ${process_damage:-1} + ${power_violations:-1} + ${tls_failed:-1} + sandbox_violations ))
printf '%-22s %s\n' "violations" "$violations (crash-schedule violations of both driver paths, of grouped SQLite and of the operator tools + SQLite synchronous=NORMAL: acked checkpoints lost, regressions and resume failures after process kills, regressions and resume failures after power losses + lost updates + losses and regressions of killed processes + acked checkpoints lost, regressions and resume failures after power losses + TLS connections not refused or verified ones not served + sandbox cases that did not hold)"
if ((status != 0 || violations != 0 || ${control_lost:-0} == 0)); then
    echo "reliability: FAILED (test exit $status); log follows" >&2
    cat "$log" >&2
    exit 1
fi
