"""Per-call cost of `write` and `get` through the component in the Python host, on the dict
store (a benchmark, not a test: `scripts/bench.sh` runs it after the Rust benchmarks).

Each figure is the mean wall time of one call after a warm-up, so it holds the whole path:
argument checks and conversion in Python, the call into wasm, the guest's work, the host
functions it calls back (`get`/`commit` on the dict store, `ack`) and the conversion back.
Prints exactly one line:

    per-call python write_us=<float> get_us=<float> calls=<n>

    target/python-venv/bin/python python/bench.py [--calls N] [--warmup N]
"""

from __future__ import annotations

import argparse
import sys
import time

from pipeline_checkpoint import (
    Checkpoint, Checkpointer, DictStorage, Options, RecordingConsumer, Watermark,
)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="timed calls of each kind")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls first")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.warmup < 0:
        parser.error("--calls must be at least 1 and --warmup at least 0")
    write_us, get_us = measure(args.calls, args.warmup)
    print(f"per-call python write_us={write_us:.1f} get_us={get_us:.1f} calls={args.calls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
