"""Checkpointers on several threads at once: the GIL is released while the guest runs, so host
callbacks of different instances interleave; each must reach its own store and consumer."""

from __future__ import annotations

import threading
from pathlib import Path

from pipeline_checkpoint import (
    Checkpoint,
    Checkpointer,
    Conflict,
    DictStorage,
    Options,
    RecordingConsumer,
    Regression,
    SqliteStorage,
    Watermark,
)

THREADS = 4
WRITES = 40


def run_threads(target) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as e:  # reported below, with the thread's index
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_each_thread_reaches_its_own_store_and_consumer() -> None:
    shared = DictStorage()
    consumers = [RecordingConsumer() for _ in range(THREADS)]

    def writer(i: int) -> None:
        checkpointer = Checkpointer.open(shared, consumers[i], Options("t", 2, 1 << 20))
        for n in range(1, WRITES + 1):
            c = Checkpoint(f"run-{i}", "stage", n, 1, Watermark(n, 0), 0)
            checkpointer.write(c, [f"t{i}-m{n}"])

    assert run_threads(writer) == []
    for i, consumer in enumerate(consumers):
        assert consumer.acked_ids == [f"t{i}-m{n}" for n in range(1, WRITES + 1)]
    reader = Checkpointer.open(shared, None, Options("t", 1, 1 << 20))
    assert [reader.get(f"run-{i}", "stage").sequence for i in range(THREADS)] == [WRITES] * THREADS


def test_writers_racing_on_one_stage_lose_no_update(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    SqliteStorage(db).close()
    landed: list[list[int]] = [[] for _ in range(THREADS)]

    def writer(i: int) -> None:
        store = SqliteStorage(db)
        checkpointer = Checkpointer.open(store, None, Options("t", 1, 1 << 20))
        for _ in range(WRITES // 4):
            while True:  # conflict: re-read and retry, as the error says
                current = checkpointer.resume_point("run", "stage").point
                n = current.sequence + 1
                # The key makes each writer's checkpoint differ, so none is taken as a replay.
                c = Checkpoint("run", "stage", n, 1, Watermark(n, 0), 0, idempotency_key=f"w{i}")
                try:
                    receipt = checkpointer.write(c)
                except (Conflict, Regression):  # another writer got there first: re-read
                    continue
                assert not receipt.replayed
                landed[i].append(n)
                break
        store.close()

    assert run_threads(writer) == []
    sequences = sorted(n for per_thread in landed for n in per_thread)
    # Every successful write got its own sequence, and they form one unbroken chain.
    assert sequences == list(range(1, THREADS * (WRITES // 4) + 1))
    final = Checkpointer.open(SqliteStorage(db), None, Options("t", 1, 1 << 20)).get("run", "stage")
    assert final.sequence == sequences[-1]
    assert final.idempotency_key == f"w{next(i for i, s in enumerate(landed) if final.sequence in s)}"
