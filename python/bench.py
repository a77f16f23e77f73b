"""Per-call cost of `write` and `get` through the component in the Python host, on the dict
store (a benchmark, not a test: `scripts/bench.sh` runs it after the Rust benchmarks).

Each figure is the mean wall time of one call after a warm-up, so it holds the whole path:
argument checks and conversion in Python, the call into wasm, the guest's work, the host
functions it calls back (`get`/`commit` on the dict store, `ack`) and the conversion back.
Then, on the same store, a checkpoint with one large operator state (1 and 16 MiB) is written
and read back, best of a few rounds (the same rows as node/bench.mjs, to compare MB/s); and the
cold start: a new process that loads the component and opens a checkpointer, without and with
the cold start (no compiled-component cache yet). Prints, the per-call line first:

    per-call python write_us=<float> get_us=<float> calls=<n>
    floor python write_us=<float> get_us=<float> floor_write_us=<float> floor_get_us=<float> noop_us=<float> calls=<n>
    large-state python mib=<n> write_ms=<float> get_ms=<float> write_mb_s=<float> get_mb_s=<float>
    large-state-floor python mib=1 write_ms=<float> get_ms=<float> write_mb_s=<float> get_mb_s=<float>
    cold-start python cache=off ms=<float>

    target/python-venv/bin/python python/bench.py [--calls N] [--warmup N] [--only per-call|floor|large|cold]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from pipeline_checkpoint import (
    Checkpoint, Checkpointer, DictStorage, OperatorState, Options, RecordingConsumer, Runtime,
    Watermark,
)

MiB = 1 << 20


class CountingConsumer(RecordingConsumer):
    """Counts acks without keeping them, so memory stays flat over many calls."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def ack(self, message_ids: list[str]) -> None:
        self.count += len(message_ids)


def checkpoint(sequence: int) -> Checkpoint:
    # A typical small checkpoint: sequence, watermark and the idempotency key grow per call.
    return Checkpoint(
        run_id="bench-run",
        stage="enrich",
        sequence=sequence,
        epoch=1,
        watermark=Watermark(offset=sequence * 100, event_time_ms=1_700_000_000_000 + sequence),
        idempotency_key=f"k-{sequence}",
        at_ms=1_700_000_000_000 + sequence,
    )


def measure(calls: int, warmup: int) -> tuple[float, float]:
    consumer = CountingConsumer()
    checkpointer = Checkpointer.open(
        DictStorage(), consumer, Options(namespace="bench", max_retained=1, max_checkpoint_bytes=1 << 20)
    )
    batch = ["m-0"]
    sequence = 0
    for _ in range(warmup):
        sequence += 1
        checkpointer.write(checkpoint(sequence), batch)
        checkpointer.get("bench-run", "enrich")

    # Build the inputs first so only the calls are timed.
    inputs = [checkpoint(sequence + i + 1) for i in range(calls)]
    start = time.perf_counter()
    for c in inputs:
        checkpointer.write(c, batch)
    write_s = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(calls):
        checkpointer.get("bench-run", "enrich")
    get_s = time.perf_counter() - start

    last = checkpointer.get("bench-run", "enrich")
    if last.sequence != sequence + calls or consumer.count != warmup + calls:
        raise SystemExit("bench: the writes did not all land")
    return write_s / calls * 1e6, get_s / calls * 1e6


def large_state(mib: int, rounds: int) -> tuple[float, float]:
    """Best-of-`rounds` seconds to write, then get, a checkpoint holding one operator state of
    `mib` MiB on the dict store (Node's bench.mjs has the same rows). Each round on a new
    checkpointer and store: a 16 MiB state written over another does not fit the 64 MiB sandbox
    (the guest holds both encodings at once)."""
    # A longer deadline than the default 10 s: a slow round must be measured, not interrupted.
    runtime = Runtime(call_deadline_s=120)
    options = Options(namespace="bench", max_retained=1, max_checkpoint_bytes=(mib + 1) * MiB)
    state = bytes(range(256)) * (mib * MiB // 256)
    best_write = best_get = float("inf")
    for sequence in range(1, rounds + 1):
        checkpointer = Checkpointer.open(DictStorage(), None, options, runtime=runtime)
        c = Checkpoint(
            "bench-run", "large", sequence, 1, Watermark(sequence, 0), sequence,
            operator_states=[OperatorState("window", state)],
        )
        start = time.perf_counter()
        checkpointer.write(c)
        wrote = time.perf_counter()
        back = checkpointer.get("bench-run", "large")
        read = time.perf_counter()
        if back.sequence != sequence or back.operator_states[0].state != state:
            raise SystemExit(f"bench: the {mib} MiB state did not come back")
        best_write, best_get = min(best_write, wrote - start), min(best_get, read - wrote)
    return best_write, best_get


def large_state_floor(mib: int, rounds: int) -> tuple[float, float] | None:
    """Best-of-`rounds` seconds for the floor component (`FLOOR_WASM`) to take `mib` MiB through
    `write-floor` and give it back through `get-floor`: the same `list<u8>` crossings as a
    large-state write and get (export argument, `commit`; `get` answer, export result) with no
    checkpoint logic, through bare wasmtime-py with `_speedups`' bulk bytes. None without the
    floor component. Stays under wasmtime's default hostcall fuel (about 2.6 MiB)."""
    import wasmtime
    from wasmtime.component import Component, Linker, Record

    from pipeline_checkpoint import _speedups

    if not os.path.isfile(FLOOR_WASM):
        print(f"bench: no floor component at {FLOOR_WASM} (`make floor`): no large-state floor row",
              file=sys.stderr)
        return None
    kv: dict[str, bytes] = {}

    def get(_store: object, key: str) -> object:
        if key not in kv:
            return None  # lookup.missing
        r = Record()
        r.value, r.version = kv[key], 1
        return r

    def commit(_store: object, writes: list) -> object:
        for w in writes:
            kv[w.key] = bytes(getattr(w.op, "payload", w.op) or b"")
        return [1] * len(writes)

    engine = wasmtime.Engine(wasmtime.Config())
    component = Component.from_file(engine, FLOOR_WASM)
    linker = Linker(engine)
    with linker.root() as root:
        with root.add_instance("pipeline:checkpoint/storage@0.1.0") as storage:
            _speedups.add_host_func(storage, "get", get)
            _speedups.add_host_func(storage, "commit", commit)
        with root.add_instance("pipeline:checkpoint/consumer@0.1.0") as consumer:
            _speedups.add_host_func(consumer, "ack", lambda _store, _ids: None)
    store = wasmtime.Store(engine)
    instance = linker.instantiate(store, component)
    iface = component.get_export_index("pipeline:floor/floor@0.1.0")
    write_floor = instance.get_func(store, component.get_export_index("write-floor", iface))
    get_floor = instance.get_func(store, component.get_export_index("get-floor", iface))
    payload = bytes(range(256)) * (mib * MiB // 256)
    best_write = best_get = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        write_floor(store, "large", payload, 1, [])
        wrote = time.perf_counter()
        back = get_floor(store, "large")
        read = time.perf_counter()
        if back != payload:
            raise SystemExit("bench: the floor did not give the payload back")
        best_write, best_get = min(best_write, wrote - start), min(best_get, read - wrote)
    return best_write, best_get


# Runs in a fresh interpreter: from before the import of the package to a checkpointer's first
# answer, so it holds the import, loading (compiling or deserializing) and one instance.
_COLD = """
import sys, time
start = time.perf_counter()
from pipeline_checkpoint import Checkpointer, DictStorage, Options, Runtime
runtime = Runtime()
options = Options(namespace="cold", max_retained=1, max_checkpoint_bytes=1 << 20)
c = Checkpointer.open(DictStorage(), None, options, runtime=runtime)
c.resume_point("run", "stage")
print(f"{(time.perf_counter() - start) * 1e3:.1f}")
"""


def cold_start() -> float:
    """Milliseconds of one cold start in a new process (the component is compiled each time)."""
    out = subprocess.run(
        [sys.executable, "-c", _COLD],
        check=True, capture_output=True, text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


# The floor (tests/floor-guest, built to target/floor.wasm by `make floor`): the same import calls
# as `write` and `get` with the same payloads, and nothing else, through bare wasmtime-py with the
# least a host function can do on the same kind of store. The per-call rows above minus this is
# what the Python host itself adds. Uses the conversions `_speedups` installs in wasmtime-py for
# this whole process (cached types, bulk bytes) and its `add_host_func`: the cheapest calls
# known here, so that the floor is not inflated by costs the host has already removed.
FLOOR_WASM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "floor.wasm")


def floor(calls: int, warmup: int, group: int = 50) -> dict[str, float]:
    """The per-call workload (`measure`) through the real component and through the floor,
    interleaved group by group: per-call medians of the group means, in microseconds."""
    import statistics
    from typing import Callable

    import wasmtime
    from wasmtime.component import Component, Linker, Record, Variant

    from pipeline_checkpoint import CommitConflict, Delete, NullConsumer, Put, Write
    from pipeline_checkpoint import _speedups

    if not os.path.isfile(FLOOR_WASM):
        raise SystemExit(f"bench: no floor component at {FLOOR_WASM}: build it with `make floor`")
    real_store = DictStorage()
    options = Options(namespace="bench", max_retained=1, max_checkpoint_bytes=1 << 20)
    real = Checkpointer.open(real_store, CountingConsumer(), options)
    batch = ["m-0"]
    real.write(checkpoint(1), batch)
    key = next(k for k in real_store.list_keys("") if k.endswith("/latest"))
    payload = real_store.get(key).value

    store_f, consumer_f = DictStorage(), NullConsumer()

    def get(_store: object, k: str) -> object:
        found = store_f.get(k)
        if found is None:
            return None  # lookup.missing
        r = Record()
        r.value, r.version = found.value, found.version
        return r

    def op(o: object) -> object:
        if isinstance(o, Variant):
            return Put(bytes(o.payload)) if o.tag == "put" else Delete()
        return Delete() if o is None else Put(bytes(o))

    def commit(_store: object, writes: list) -> object:
        outcome = store_f.commit(
            [Write(w.key, getattr(w, "expected-version"), op(w.op)) for w in writes]
        )
        return outcome.index if isinstance(outcome, CommitConflict) else list(outcome.versions)

    def ack(_store: object, ids: list[str]) -> None:
        consumer_f.ack(ids)

    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    component = Component.from_file(engine, FLOOR_WASM)
    linker = Linker(engine)
    with linker.root() as root:
        with root.add_instance("pipeline:checkpoint/storage@0.1.0") as storage:
            _speedups.add_host_func(storage, "get", get)
            _speedups.add_host_func(storage, "commit", commit)
        with root.add_instance("pipeline:checkpoint/consumer@0.1.0") as consumer:
            _speedups.add_host_func(consumer, "ack", ack)
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)  # no ticker runs: the deadline never passes
    instance = linker.instantiate(store, component)
    iface = component.get_export_index("pipeline:floor/floor@0.1.0")

    def export(name: str) -> object:
        func = instance.get_func(store, component.get_export_index(name, iface))
        fty = func.type(store)
        func.type = lambda _store, _fty=fty: _fty  # fetched once, as `_runtime.Instance.call` does
        return func

    noop, write_floor, get_floor = export("noop"), export("write-floor"), export("get-floor")

    def timed(body: Callable[[int], object], first: int) -> float:
        start = time.perf_counter()
        for i in range(first, first + group):
            body(i)
        return (time.perf_counter() - start) / group * 1e6

    groups, skip = max(1, calls // group), max(1, warmup // group)
    # Inputs are built before timing, as in `measure`; sequence 1 is written already.
    inputs = [checkpoint(s) for s in range((skip + groups) * group + 2)]

    def write_real(i: int) -> None:
        real.write(inputs[i], batch)

    def write_f(i: int) -> None:
        store.set_epoch_deadline(1 << 40)
        write_floor(store, key, payload, 1, batch)

    def get_f(_i: int) -> None:
        store.set_epoch_deadline(1 << 40)
        get_floor(store, key)

    def noop_f(_i: int) -> None:
        store.set_epoch_deadline(1 << 40)
        noop(store)

    figures: dict[str, list[float]] = {k: [] for k in ("write", "fwrite", "get", "fget", "noop")}
    sequence = 2
    for g in range(skip + groups):
        w = timed(write_real, sequence)
        f = timed(write_f, sequence)
        sequence += group
        if g >= skip:
            figures["write"].append(w)
            figures["fwrite"].append(f)
    for g in range(skip + groups):
        r = timed(lambda _i: real.get("bench-run", "enrich"), 0)
        f = timed(get_f, 0)
        e = timed(noop_f, 0)
        if g >= skip:
            figures["get"].append(r)
            figures["fget"].append(f)
            figures["noop"].append(e)
    if store_f.get(key) is None or real.get("bench-run", "enrich").sequence != sequence - 1:
        raise SystemExit("bench: the floor's or the real writes did not all land")
    out = {k: statistics.median(v) for k, v in figures.items()}
    out["calls"] = groups * group
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="timed calls of each kind")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls first")
    parser.add_argument(
        "--only", choices=["per-call", "floor", "large", "cold"], help="one group of rows, not all"
    )
    args = parser.parse_args(argv)
    if args.calls < 1 or args.warmup < 0:
        parser.error("--calls must be at least 1 and --warmup at least 0")
    if args.only in (None, "per-call"):
        write_us, get_us = measure(args.calls, args.warmup)
        print(f"per-call python write_us={write_us:.1f} get_us={get_us:.1f} calls={args.calls}")
    if args.only in (None, "floor"):
        f = floor(args.calls, args.warmup)
        print(
            f"floor python write_us={f['write']:.1f} get_us={f['get']:.1f} "
            f"floor_write_us={f['fwrite']:.1f} floor_get_us={f['fget']:.1f} "
            f"noop_us={f['noop']:.2f} calls={f['calls']:.0f}",
            flush=True,
        )
    if args.only in (None, "large"):
        rows = [("large-state", mib, large_state(mib, rounds)) for mib, rounds in ((1, 5), (16, 3))]
        # What wasmtime-py alone costs to move the same bytes (the bound of the rows above).
        rows.append(("large-state-floor", 1, large_state_floor(1, 5)))
        for name, mib, times in rows:
            if times is None:
                continue
            write_s, get_s = times
            mb = mib * MiB / 1e6  # MB/s in 10^6 bytes, as node/bench.mjs
            print(
                f"{name} python mib={mib} write_ms={write_s * 1e3:.1f} "
                f"get_ms={get_s * 1e3:.1f} write_mb_s={mb / write_s:.1f} get_mb_s={mb / get_s:.1f}",
                flush=True,
            )
    if args.only in (None, "cold"):
        rounds = 5
        off = min(cold_start() for _ in range(rounds))
        print(f"cold-start python cache=off ms={off:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
