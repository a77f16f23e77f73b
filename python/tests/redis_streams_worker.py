"""A stage reading Redis Streams through the driver, run as its own process by
test_redis_streams.py, which kills it with SIGKILL and starts it again.

It keeps a running sum and count as operator state and writes one row per entry to a SQLite sink
table whose position (its row count) is in the checkpoint; on start it drops the rows past that
position and restores the sum from the same checkpoint. With --out-of-order it begins a whole
read batch, completes it in a shuffled order (as a worker pool would) and applies what the
driver releases, in release order.

Everything the test checks afterwards is written to --audit, one JSON object a line (the file is
line-buffered, so a SIGKILL loses nothing already written):
- `ack`: an XACK the component asked for, with the ids that no durable checkpoint covered at
  that moment (`early`, which must stay empty). "Durable" is learnt independently of the
  driver: from the checkpoint resumed at open, and from every checkpoint the store committed,
  decoded by the codec after the commit returned.
- `start`, `covered` (redeliveries the driver skipped), `done`.

--fail-acks P makes that share of acks fail before their XACK, as a Redis error would: the
checkpoint stays durable and its entries stay pending, to come back as redeliveries that the
driver answers `Covered` (and acks) after a restart.

--crash POINT:K kills this process with SIGKILL at the K-th time it reaches POINT:
- `after-commit`: a checkpoint is durable, its acks not yet sent;
- `before-flush`: sink rows committed, the checkpoint that records them not yet written;
- `after-apply`: an entry applied to the state and the uncommitted sink;
- `after-read`: entries read (now pending in the group), none begun yet.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import sys
import time

import redis

from pipeline_checkpoint import (
    Admitted,
    Backpressure,
    Checkpointer,
    Codec,
    Covered,
    DriverOptions,
    OperatorState,
    Options,
    PerBatch,
    Put,
    SinkPosition,
    SqliteStorage,
    StageState,
)
from pipeline_checkpoint.sources.redis_streams import (
    RedisStreamSource,
    entry_offset,
    parse_message_id,
)

RUN, STAGE, SINK, OPERATOR = "e2e", "sum", "rows", "sum"


class Crash:
    def __init__(self, spec: str | None) -> None:
        self.point, self.at = (spec.split(":")[0], int(spec.split(":")[1])) if spec else (None, 0)
        self.seen = 0

    def reach(self, point: str) -> None:
        if point == self.point:
            self.seen += 1
            if self.seen == self.at:
                os.kill(os.getpid(), signal.SIGKILL)


class Durable:
    """Each stream's next offset as covered by a durable checkpoint, learnt outside the driver."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    def learn(self, checkpoint) -> None:
        if checkpoint is not None:
            for source in checkpoint.sources:
                self.next[source.name] = source.watermark.offset


class AuditedStorage(SqliteStorage):
    """The SQLite store, telling `durable` about every latest checkpoint it committed."""

    def __init__(self, path: str, durable: Durable, crash: Crash) -> None:
        super().__init__(path)
        self.durable, self.crash, self.codec = durable, crash, Codec()

    def commit(self, writes):
        outcome = super().commit(writes)
        for w in writes:
            if w.key.endswith("/latest") and isinstance(w.op, Put):
                self.durable.learn(self.codec.decode(w.op.value))
        self.crash.reach("after-commit")
        return outcome


class AuditedSource(RedisStreamSource):
    """The source, checking each ack against what is durable before it XACKs."""

    def __init__(self, *args, durable: Durable, audit, fail: float, rng, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.durable, self.audit, self.fail, self.rng = durable, audit, fail, rng

    def ack(self, message_ids: list[str]) -> None:
        early = []
        for mid in message_ids:
            stream, eid = parse_message_id(mid)
            if entry_offset(eid) >= self.durable.next.get(stream, 0):
                early.append(mid)
        failed = self.rng.random() < self.fail
        self.audit.write(
            json.dumps({"ack": len(message_ids), "early": early, "failed": failed}) + "\n"
        )
        if failed:
            raise ConnectionError("injected: the XACK did not reach Redis")
        super().ack(message_ids)


class Sink:
    """Rows in a SQLite table; `position` is the row count, committed before each checkpoint."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level="DEFERRED")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS rows (pos INTEGER PRIMARY KEY, stream TEXT NOT NULL,"
            " entry_id TEXT NOT NULL, value INTEGER NOT NULL)"
        )
        self.db.commit()
        self.position = 0

    def truncate(self, position: int) -> int:
        dropped = self.db.execute("DELETE FROM rows WHERE pos > ?", (position,)).rowcount
        self.db.commit()
        self.position = position
        return dropped

    def write(self, stream: str, entry_id: str, value: int) -> None:
        self.position += 1
        self.db.execute(
            "INSERT INTO rows VALUES (?, ?, ?, ?)", (self.position, stream, entry_id, value)
        )

    def commit(self) -> None:
        self.db.commit()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--redis", required=True)
    p.add_argument("--streams", required=True, help="comma-separated")
    p.add_argument("--group", required=True)
    p.add_argument("--consumer", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--audit", required=True)
    p.add_argument("--expect", type=int, required=True, help="exit once this many are applied")
    p.add_argument("--batch", type=int, default=40)
    p.add_argument("--count", type=int, default=25)
    p.add_argument("--out-of-order", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crash")
    p.add_argument("--fail-acks", type=float, default=0.0)
    args = p.parse_args()

    audit = open(args.audit, "a", buffering=1, encoding="utf-8")
    crash = Crash(args.crash)
    rng = random.Random(args.seed)
    durable = Durable()
    storage = AuditedStorage(os.path.join(args.dir, "checkpoints.db"), durable, crash)
    source = AuditedSource(
        redis.Redis.from_url(args.redis),
        args.streams.split(","),
        group=args.group,
        consumer=args.consumer,
        count=args.count,
        block_ms=200,
        durable=durable,
        audit=audit,
        fail=args.fail_acks,
        rng=rng,
    )
    checkpointer = Checkpointer.open(storage, source, Options("redis-e2e", 3, 1 << 20))
    # What opening the driver acks again (the resumed checkpoint's ids) is durable already.
    durable.learn(checkpointer.resume_point(RUN, STAGE).checkpoint)
    driver = checkpointer.open_driver(
        DriverOptions(run_id=RUN, stage=STAGE, epoch=1, policy=PerBatch(args.batch),
                      max_in_flight=64)
    )

    # State and sink position come from the checkpoint the driver resumed from.
    resumed = driver.resumed_from().checkpoint
    total = count = position = 0
    if resumed is not None:
        op = {o.name: o.state for o in resumed.operator_states}[OPERATOR]
        total, count = json.loads(op)
        position = {s.name: s.position for s in resumed.sinks}[SINK]
    sink = Sink(os.path.join(args.dir, "sink.db"))
    dropped = sink.truncate(position)
    audit.write(json.dumps({"start": os.getpid(), "count": count, "dropped": dropped,
                            "recovered": str(driver.recovered_acks())}) + "\n")
    print("ready", flush=True)

    def state() -> StageState:
        return StageState(
            sinks=[SinkPosition(SINK, sink.position)],
            operator_states=[OperatorState(OPERATOR, json.dumps([total, count]).encode())],
        )

    def flush() -> None:
        sink.commit()  # the rows a checkpoint counts are durable before it is written
        crash.reach("before-flush")
        driver.flush(int(time.time() * 1000), state())

    covered = 0
    while True:
        entries = source.read()
        if not entries:
            flush()
            if count == args.expect:
                break
            print("idle", count, flush=True)
            continue
        crash.reach("after-read")
        waiting = list(entries)
        while waiting:
            begun: dict[int, object] = {}
            stalled = False
            while waiting:
                admission = driver.begin(waiting[0].message)
                if isinstance(admission, Backpressure):
                    stalled = True
                    break
                entry = waiting.pop(0)
                if isinstance(admission, Covered):
                    covered += 1  # a redelivery a durable checkpoint holds: acked, not processed
                    continue
                assert isinstance(admission, Admitted), admission
                begun[admission.ticket] = entry
            # Processing is pure; its effects are applied in the order the driver releases.
            values = {t: int(e.fields[b"value"]) for t, e in begun.items()}
            order = list(begun)
            if args.out_of_order:
                rng.shuffle(order)
            due = False
            for ticket in order:
                completion = driver.complete(ticket)
                for released in completion.released:
                    e = begun[released]
                    total += values[released]
                    count += 1
                    sink.write(e.stream, e.entry_id, values[released])
                    crash.reach("after-apply")
                due = due or completion.due
            if due or stalled:
                flush()
        if covered:
            audit.write(json.dumps({"covered": covered}) + "\n")
            covered = 0
    audit.write(json.dumps({"done": count, "sum": total}) + "\n")
    print("done", count, total, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
