"""The Redis Streams source (`pipeline_checkpoint.sources.redis_streams`) against a real
redis-server: the server `scripts/with-test-servers.sh` starts (python/run-tests.sh runs the
tests under it), at `CKPT_TEST_REDIS_URL`. A missing URL fails these tests; only
`CKPT_SKIP_SERVER_TESTS=1` skips them, loudly (with-test-servers.sh refuses it under CI).

The end-to-end tests run `redis_streams_worker.py` as a process, kill it with SIGKILL 24 times
(at random moments and at chosen points: between a durable checkpoint and its acks, between the
sink's commit and the checkpoint, mid-batch, right after a read) and start it again, then check
every entry processed, the state of a crash-free run, no duplicate or missing sink row, nothing
pending in the group, and no ack before a durable checkpoint.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import redis  # the `redis` extra; python/requirements.txt installs it for the tests
from conftest import REPO
from pipeline_checkpoint import (
    Admitted,
    Checkpointer,
    Covered,
    DictStorage,
    DriverOptions,
    Message,
    Options,
    PerBatch,
    StageState,
)
from pipeline_checkpoint.sources.redis_streams import (
    EntryIdOutOfRange,
    RedisStreamSource,
    entry_id,
    entry_offset,
    message_id,
    parse_message_id,
)

WORKER = Path(__file__).with_name("redis_streams_worker.py")
KILLS = 24
ENTRIES = 5_000


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get("CKPT_TEST_REDIS_URL", "")
    if url:
        return url
    if os.environ.get("CKPT_SKIP_SERVER_TESTS") == "1":
        print("\n!!! SKIPPED the Redis Streams tests: CKPT_SKIP_SERVER_TESTS=1 !!!\n",
              file=sys.stderr)
        pytest.skip("CKPT_SKIP_SERVER_TESTS=1")
    pytest.fail(
        "the Redis Streams tests need a redis-server: run them under "
        "scripts/with-test-servers.sh (python/run-tests.sh does), or set CKPT_TEST_REDIS_URL; "
        "CKPT_SKIP_SERVER_TESTS=1 skips them"
    )


@pytest.fixture
def client(redis_url: str):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def names(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:10]
    return [f"py-{tag}-p{i}" for i in range(n)]


def test_an_entry_id_maps_to_ms_shifted_by_20_bits_or_seq_and_back() -> None:
    assert entry_offset("0-0") == 0
    assert entry_offset("1-0") == 1 << 20
    assert entry_offset("1700000000000-5") == 1700000000000 << 20 | 5
    assert entry_id(1700000000000 << 20 | 5) == "1700000000000-5"
    assert entry_offset("1-2") < entry_offset("1-3") < entry_offset("2-0")
    assert entry_offset(f"{(1 << 44) - 1}-{(1 << 20) - 1}") == (1 << 64) - 1


@pytest.mark.parametrize("bad", [f"{1 << 44}-0", f"0-{1 << 20}"])
def test_an_entry_id_that_does_not_fit_in_an_offset_is_refused(bad: str) -> None:
    with pytest.raises(EntryIdOutOfRange):
        entry_offset(bad)


@pytest.mark.parametrize("bad", ["", "12", "a-1", "1-b", "-1-0", "1-2-3"])
def test_a_string_that_is_no_entry_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        entry_offset(bad)


def test_a_message_id_names_its_stream_even_when_the_stream_has_slashes() -> None:
    assert message_id("a/b", "1-2") == "a/b/1-2"
    assert parse_message_id("a/b/1-2") == ("a/b", "1-2")
    for bad in ["1-2", "/1-2", "a/b", "a/"]:
        with pytest.raises(ValueError):
            parse_message_id(bad)


def test_entries_become_messages_of_their_stream_with_the_entry_time(client) -> None:
    (stream,) = names(1)
    first = client.xadd(stream, {"value": 1}, id="1000-1").decode()
    source = RedisStreamSource(client, stream, group="g", consumer="c", block_ms=0)
    (entry,) = source.read()
    assert (entry.stream, entry.entry_id, entry.fields) == (stream, first, {b"value": b"1"})
    assert entry.message == Message(
        id=f"{stream}/1000-1", source=stream, offset=1000 << 20 | 1, event_time_ms=1000
    )
    assert source.read() == []  # nothing new, and no wait
    client.delete(stream)


def test_a_restart_takes_over_every_pending_entry_in_id_order_before_new_ones(client) -> None:
    # Entries pending under two earlier consumer names (interleaved), one acked, one never
    # read: the new consumer gets the pending ones first, in id order, then the new one.
    (stream,) = names(1)
    ids = [client.xadd(stream, {"value": i}).decode() for i in range(6)]
    client.xgroup_create(stream, "g", id="0")
    client.xreadgroup("g", "old-1", {stream: ">"}, count=2)  # ids 0, 1
    client.xreadgroup("g", "old-2", {stream: ">"}, count=3)  # ids 2, 3, 4
    client.xclaim(stream, "g", "old-2", 0, [ids[1]])
    client.xack(stream, "g", ids[0])
    source = RedisStreamSource(client, stream, group="g", consumer="new", count=2, block_ms=0)
    got = []
    while batch := source.read():
        got.append([e.entry_id for e in batch])
    assert got == [ids[1:3], ids[3:5], ids[5:]]
    assert source.pending() == {stream: 5}
    client.delete(stream)


def test_ack_xacks_each_entry_in_its_own_stream_and_again_harmlessly(client) -> None:
    streams = names(2)
    for s in streams:
        client.xadd(s, {"value": 1}, id="5-0")  # the same entry id in both streams
    source = RedisStreamSource(client, streams, group="g", consumer="c", block_ms=0)
    entries = source.read()
    assert sorted(e.message.id for e in entries) == sorted(f"{s}/5-0" for s in streams)
    source.ack([f"{streams[0]}/5-0"])
    assert source.pending() == {streams[0]: 0, streams[1]: 1}
    source.ack([f"{streams[0]}/5-0", f"{streams[1]}/5-0"])
    assert source.pending() == {streams[0]: 0, streams[1]: 0}
    assert source.acked == 2
    with pytest.raises(ValueError):
        source.ack(["elsewhere/5-0"])
    client.delete(*streams)


def read_all(source: RedisStreamSource) -> list:
    out = []
    while batch := source.read():
        out += batch
    return out


def test_a_driver_acks_only_what_a_durable_checkpoint_covers_and_skips_redeliveries(client) -> None:
    (stream,) = names(1)
    for i in range(5):
        client.xadd(stream, {"value": i})
    storage = DictStorage()
    options = Options("redis-unit", 3, 1 << 20)
    driver_options = DriverOptions(run_id="r", stage="s", epoch=1, policy=PerBatch(3))
    source = RedisStreamSource(client, stream, group="g", consumer="c1", block_ms=0)
    driver = Checkpointer.open(storage, source, options).open_driver(driver_options)
    entries = read_all(source)
    for e in entries[:4]:
        driver.complete(driver.begin(e.message).ticket)
    assert source.pending() == {stream: 5}  # released, not yet durable: nothing acked
    driver.flush(1, StageState())
    assert source.pending() == {stream: 1}  # entries 0-3 acked; 4 was read, never begun

    # A restart under another name: entry 4 is taken over and admitted with the new one; an
    # entry the checkpoint covers, offered again, is skipped and acked (again).
    client.xadd(stream, {"value": 9})
    again = RedisStreamSource(client, stream, group="g", consumer="c2", block_ms=0)
    driver = Checkpointer.open(storage, again, options).open_driver(driver_options)
    later = read_all(again)
    assert [e.entry_id for e in later[:1]] == [entries[4].entry_id] and len(later) == 2
    assert all(isinstance(driver.begin(e.message), Admitted) for e in later)
    assert isinstance(driver.begin(entries[0].message), Covered)
    assert again.pending() == {stream: 2}
    client.delete(stream)


# ---------------------------------------------------------------------------------------------
# End to end: a worker process killed with SIGKILL and started again.


class Worker:
    """One run of redis_streams_worker.py; its stdout lines arrive in `lines`."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def wait_for(self, word: str) -> bool:
        """True once the worker prints a line starting with `word`; False if it exited first."""
        while (line := self.lines.get()) is not None:
            if line.split()[0] == word:
                return True
        return False

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)

    def wait(self) -> int:
        code = self.proc.wait(timeout=120)
        if code not in (0, -signal.SIGKILL):
            raise AssertionError(f"worker exited {code}:\n{''.join(self.stderr)}")
        return code


def produce(client, streams: list[str], rng: random.Random, n: int) -> None:
    pipe = client.pipeline(transaction=False)
    for _ in range(n):
        pipe.xadd(rng.choice(streams), {"value": rng.randint(-1_000, 1_000)})
    pipe.execute()


def all_entries(client, streams: list[str]) -> dict[tuple[str, str], int]:
    return {
        (s, eid.decode()): int(fields[b"value"])
        for s in streams
        for eid, fields in client.xrange(s)
    }


def sink_rows(directory: Path) -> list[tuple[str, str, int]]:
    db = sqlite3.connect(directory / "sink.db")
    try:
        return db.execute("SELECT stream, entry_id, value FROM rows ORDER BY pos").fetchall()
    finally:
        db.close()


def audit(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.parametrize(
    "partitions, out_of_order",
    [(1, False), (4, True)],
    ids=["one-stream", "4-streams-out-of-order"],
)
def test_a_worker_killed_24_times_processes_every_entry_exactly_once(
    redis_url: str, client, tmp_path: Path, partitions: int, out_of_order: bool, capsys
) -> None:
    # CKPT_E2E_SEED=N replays a schedule (entries, crash points, shuffles; the moments of the
    # external kills still vary): the seed is in the figure line and the failure messages.
    seed = int(os.environ.get("CKPT_E2E_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    streams = names(partitions)
    started = time.monotonic()

    def argv(
        group: str, consumer: str, directory: Path, crash: str | None, fail_acks: float = 0
    ) -> list[str]:
        directory.mkdir(exist_ok=True)
        out = ["--redis", redis_url, "--streams", ",".join(streams), "--group", group,
               "--consumer", consumer, "--dir", str(directory), "--audit",
               str(directory / "audit.jsonl"), "--expect", str(ENTRIES),
               "--seed", str(rng.randrange(1 << 32))]
        if out_of_order:
            out.append("--out-of-order")
        if crash:
            out += ["--crash", crash]
        return out + ["--fail-acks", str(fail_acks)]

    # Rounds: each starts a worker, adds a burst of entries once it is ready, and kills it: at a
    # chosen crash point (the worker SIGKILLs itself there) or from here after a random pause.
    # A worker whose crash point did not come up goes idle and is killed from here then.
    bursts = [ENTRIES // (KILLS + 1)] * KILLS
    bursts.append(ENTRIES - sum(bursts))
    # A burst of 200 entries makes about 5 checkpoints, 8 reads and 200 applied entries: the
    # K-th time a point comes up is drawn below that.
    reach = {"after-commit": 3, "before-flush": 3, "after-apply": 150, "after-read": 6}
    points = list(reach)
    crashes = {"external": 0, **{p: 0 for p in points}}
    crashed_dir = tmp_path / "crashed"
    kills = 0
    for round_no, burst in enumerate(bursts):
        last = round_no == len(bursts) - 1
        # Every crash point once, then one external kill, then a random mix of both.
        if last or round_no == len(points):
            point = None
        elif round_no < len(points):
            point = points[round_no]
        else:
            point = None if rng.random() < 0.3 else rng.choice(points)
        crash = f"{point}:{rng.randint(1, reach[point])}" if point else None
        # A new consumer name on every other start: the pending entries of the killed one are
        # taken over by XAUTOCLAIM; on the others, they are the worker's own pending entries.
        consumer = f"w{round_no // 2}"
        # Before the last round, a tenth of the acks fail: their entries come back after a
        # restart as redeliveries the driver skips (and acks).
        worker = Worker(argv("crashy", consumer, crashed_dir, crash, 0 if last else 0.1))
        assert worker.wait_for("ready"), f"seed {seed}: " + "".join(worker.stderr)
        produce(client, streams, rng, burst)
        if last:
            assert worker.wait_for("done"), f"seed {seed}: " + "".join(worker.stderr)
            assert worker.wait() == 0
            continue
        if crash is None:
            time.sleep(rng.uniform(0, 0.3))
            worker.kill()
        else:
            # The worker kills itself at its point, or goes idle first: then kill it from here.
            if worker.wait_for("idle"):
                worker.kill()
                point = "external"
        killed = worker.wait() == -signal.SIGKILL
        assert killed, f"seed {seed}, round {round_no}: the worker finished instead of being killed"
        kills += 1
        crashes[point or "external"] += 1

    # The same entries through the same code without a crash, in a group of its own.
    clean_dir = tmp_path / "clean"
    reference = Worker(argv("clean", "w", clean_dir, None))
    assert reference.wait_for("done"), "".join(reference.stderr)
    assert reference.wait() == 0

    entries = all_entries(client, streams)
    rows = sink_rows(crashed_dir)
    clean_rows = sink_rows(clean_dir)
    keys = [(s, e) for s, e, _ in rows]
    duplicates = len(keys) - len(set(keys))
    missing = len(set(entries) - set(keys))
    stray = len(set(keys) - set(entries))
    events = audit(crashed_dir / "audit.jsonl")
    done = [e for e in events if "done" in e][-1]
    clean_done = [e for e in audit(clean_dir / "audit.jsonl") if "done" in e][-1]
    early = [i for e in events if "ack" in e for i in e["early"]]
    acked = sum(e["ack"] for e in events if "ack" in e and not e["failed"])
    failed = sum(e["ack"] for e in events if "ack" in e and e["failed"])
    covered = sum(e["covered"] for e in events if "covered" in e)
    dropped = sum(e["dropped"] for e in events if "start" in e)
    pending = {
        group: sum(int(client.xpending(s, group)["pending"]) for s in streams)
        for group in ("crashy", "clean")
    }
    figures = (
        f"\nredis streams e2e (python, {partitions} stream(s), "
        f"{'out-of-order' if out_of_order else 'in-order'} completion, seed {seed}): "
        f"{len(entries)} entries, {kills} SIGKILLs "
        f"({', '.join(f'{k} {v}' for k, v in crashes.items())}), "
        f"{len(rows)} sink rows, {duplicates} duplicate, {missing} missing, "
        f"{dropped} rows past a checkpoint dropped at restart, {covered} redeliveries skipped, "
        f"{acked} ids acked ({failed} more failed on purpose), "
        f"{len(early)} acks before a durable checkpoint, "
        f"pending at the end {pending['crashy']} (crash-free run {pending['clean']}), "
        f"sum {done['sum']} (crash-free {clean_done['sum']}), {time.monotonic() - started:.1f} s"
    )
    with capsys.disabled():  # the figures show in every run, not only when a test fails
        print(figures)
    assert kills >= 20
    assert len(entries) == ENTRIES
    assert (duplicates, missing, stray) == (0, 0, 0)
    assert sorted(rows) == sorted(clean_rows) == sorted((s, e, v) for (s, e), v in entries.items())
    assert (done["done"], done["sum"]) == (clean_done["done"], clean_done["sum"])
    assert done["sum"] == sum(entries.values())
    assert early == []
    assert pending == {"crashy": 0, "clean": 0}
    client.delete(*streams)


# ---------------------------------------------------------------------------------------------
# The example of python/README.md runs as written.


def readme_example() -> str:
    text = (REPO / "python" / "README.md").read_text(encoding="utf-8")
    heading = "## Reading a Redis stream"
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    section = text[start : following if following != -1 else len(text)]
    (block,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)
    return block


def test_the_package_readme_redis_example_runs_and_resumes_its_total(
    redis_url: str, client, tmp_path: Path
) -> None:
    client.delete("orders")  # the example's stream, on this run's own test server
    for i in range(1, 251):
        client.xadd("orders", {"amount": i})

    def run() -> str:
        done = subprocess.run(
            [sys.executable, "-c", readme_example()],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env={**os.environ, "REDIS_URL": redis_url},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run() == f"total {sum(range(1, 251))}\n"
    client.xadd("orders", {"amount": 1000})
    # A second run resumes the total from its checkpoint and reads only the new entry.
    assert run() == f"total {sum(range(1, 251)) + 1000}\n"
    client.delete("orders")
