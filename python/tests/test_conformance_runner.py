"""The conformance runner maps expanded steps to API calls and results to WIT JSON records; the
fault wrappers answer with the README's texts. `run-tests.sh` plays the real suite, and the
testkit's checker matches and compares the transcripts."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO
from pipeline_checkpoint import DictStorage, Put, Write
from pipeline_checkpoint.errors import StorageFailed, StorageTimeout, StorageUnavailable
from pipeline_checkpoint.faults import (
    AckScript, FaultScript, FaultyConsumer, FaultyStorage, InjectedAckFailure, StorageFault,
)
from pipeline_checkpoint.consumer import RecordingConsumer

sys.path.insert(0, str(REPO / "python"))
import conformance_runner as runner  # noqa: E402

OPTIONS = {"namespace": "test", "max-retained": "1", "max-checkpoint-bytes": "65536"}
IDS = {"run-id": "run", "stage": "stage"}
CHECKPOINT = {
    **IDS, "sequence": "1", "epoch": "1", "watermark": {"offset": "10", "event-time-ms": "-5"},
    "sources": [], "sinks": [], "operator-states": [{"name": "op", "state": "00ff"}],
    "idempotency-key": "", "at-ms": "0",
}  # fmt: skip
DRIVER = {
    **IDS, "epoch": "1", "policy": {"per-batch": "2"}, "changelog-capacity": "0",
    "overflow": "drop-new", "max-in-flight": "1024",
}  # fmt: skip
CALLS = ["result", "calls"]


def step(op: str, record: list[str] = CALLS, storage=(), consumer=(), **fields) -> dict:
    return {"op": op, "record": record, "storage": list(storage), "consumer": list(consumer),
            **fields}  # fmt: skip


def play(backend: str, steps: list[dict]) -> list[dict]:
    b = runner.Backend(backend)
    try:
        return runner.Player(b, OPTIONS).run(steps)
    finally:
        b.close()


@pytest.mark.parametrize("backend", runner.BACKENDS)
def test_steps_become_wit_json_records(backend: str) -> None:
    logs = [*CALLS, "acks", "failed-acks", "keys"]
    write, failed, got, decoded, no_driver = play(backend, [
        step("write", logs, consumer=[{"nth": "1", "fault": "fail"}], checkpoint=CHECKPOINT,
             batch=["m1"]),
        step("get", storage=[{"call": "get", "nth": "1", "fault": "unavailable", "index": "0"}],
             **IDS),
        step("get", **IDS),
        step("decode", ["result"], hex=""),
        step("cursor"),
        step("get", **IDS),  # not played: the case stops at a runner error
    ])  # fmt: skip
    receipt = {"sequence": "1", "version": "1", "replayed": False, "pruned": "0",
               "acks": {"failed": "injected ack failure"}}  # fmt: skip
    assert write == {
        "op": "write", "result": {"ok": receipt},
        "calls": {"get": "1", "commit": "1", "list-keys": "1", "ack": "1"},
        "acks": [], "failed-acks": [["m1"]], "keys": ["ckpt/test/run/stage/latest"],
    }  # fmt: skip
    assert failed["result"]["error"] == {
        "storage": "reading latest: storage unavailable: injected fault on get"
    }
    assert failed["result"]["message"].startswith("storage failure: reading latest")
    assert got["result"] == {"ok": CHECKPOINT}
    assert got["calls"] == {"get": "1", "commit": "0", "list-keys": "0", "ack": "0"}
    corrupt = decoded["result"]["error"]["corrupt"]
    assert (decoded.keys(), corrupt["kind"], corrupt["key"]) == ({"op", "result"}, "truncated", "")
    assert "runner-error" in no_driver["result"]


def test_driver_ops_crash_and_raw_ops() -> None:
    records = play("sqlite", [
        step("open-driver", driver=DRIVER),
        step("record-processed", message={"id": "m1", "next-offset": "1", "event-time-ms": "0"},
             **{"now-ms": "0"}),
        step("crash", []),
        step("put-raw", [], key="other", hex="abcd"),
        step("corrupt", ["keys"], key="other", **{"flip-bit": "0"}),
        step("open-driver", driver=DRIVER),
    ])  # fmt: skip
    fresh = {"point": {**IDS, "sequence": "0", "epoch": "0",
                       "watermark": {"offset": "0", "event-time-ms": "0"}}, "origin": "fresh",
             "checkpoint": None}  # fmt: skip
    assert records[0]["result"] == {"ok": {"resumed-from": fresh}}
    assert records[1]["result"] == {"ok": {"pending": "1"}}
    assert records[2:5] == [
        {"op": "crash"}, {"op": "put-raw"}, {"op": "corrupt", "keys": ["other"]}
    ]  # fmt: skip
    assert records[5]["result"] == {"ok": {"resumed-from": fresh}}  # the pending one was lost


@pytest.mark.parametrize("backend", runner.BACKENDS)
def test_import_stage_plays_the_cases_last_export_across_open_and_crash(backend: str) -> None:
    flags = {"replace-older": False, "dry-run": False}
    records = play(backend, [
        step("import-stage", ["result"], **flags),  # a runner error: the case stops
    ])  # fmt: skip
    assert "runner-error" in records[0]["result"]
    other = {**OPTIONS, "namespace": "other"}
    results = [r["result"] for r in play(backend, [
        step("write", ["result"], checkpoint=CHECKPOINT, batch=[]),
        step("export-stage", ["result"], **IDS),
        step("export-stage", ["result"], **{**IDS, "stage": "none"}),  # fails: not kept
        step("open", ["result"], options=other),
        step("import-stage", ["result"], **{**flags, "dry-run": True}),
        step("crash", ["result"]),
        step("import-stage", ["result"], **flags),
        step("import-stage", ["result"], **flags),
        step("get", ["result"], **IDS),
    ])]  # fmt: skip
    exported = results[1]["ok"]
    assert exported.keys() == {"run-id", "stage", "latest", "retained", "savepoints"}
    assert exported["run-id"] == "run" and exported["stage"] == "stage"
    assert exported["retained"] == exported["savepoints"] == []  # max-retained 1: the latest
    latest = bytes.fromhex(exported["latest"])
    assert results[2] == {"error": "not-found", "message": results[2]["message"]}
    created = {"action": "created", "keys-written": "1", "keys-removed": "0",
               "bytes-written": str(len(latest))}  # fmt: skip
    assert results[4] == results[6] == {"ok": created}
    assert results[7] == {"ok": {"action": "identical", "keys-written": "0",
                                 "keys-removed": "0", "bytes-written": "0"}}  # fmt: skip
    assert results[8] == {"ok": CHECKPOINT}


def message(id: str, offset: str | None, source: str = "") -> dict:
    return {"id": id, "source": source, "offset": offset, "event-time-ms": "0"}


def test_source_ops_map_admissions_completions_state_and_recovery() -> None:
    state = {"sinks": [{"name": "out", "position": "1"}], "operator-states": []}
    records = play("memory", [
        step("open-driver", driver={**DRIVER, "policy": "explicit-flush", "max-in-flight": "2"}),
        step("recovered-acks"),
        step("begin", message=message("a", "0")),
        step("begin", message=message("q", None, "p1")),
        step("begin", message=message("c", "1")),
        step("complete", ticket="2"),
        step("complete", ticket="1"),
        step("flush", state=state, **{"now-ms": "3"}),
        step("begin", message=message("a", "0")),
        step("resume-point", **IDS),
        step("recover-acks", **IDS),
        step("record-processed-batch", messages=[{"id": "a", "next-offset": "1",
                                                  "event-time-ms": "0"}], **{"now-ms": "4"}),
    ])  # fmt: skip
    results = [r["result"] for r in records]
    assert results[1:9] == [
        {"ok": {"acked": "0"}},
        {"ok": {"admitted": "1"}},
        {"ok": {"admitted": "2"}},
        {"ok": {"backpressure": "2"}},
        {"ok": {"released": ["2"], "due": True}},
        {"ok": {"released": ["1"], "due": True}},
        {"ok": {"checkpointed": {"sequence": "1", "version": "1", "replayed": False,
                                 "pruned": "0", "acks": {"acked": "2"}}}},
        {"ok": {"covered": {"acked": "1"}}},
    ]  # fmt: skip
    checkpoint = results[9]["ok"]["checkpoint"]
    assert (checkpoint["sinks"], [s["name"] for s in checkpoint["sources"]]) == (
        state["sinks"], ["p1"]
    )
    assert results[10:] == [
        {"ok": {"acked": "2"}},
        {"ok": {"checkpoints": [], "pending": "0", "covered": "1"}},
    ]


def test_scripted_faults_have_the_readme_texts() -> None:
    script, store = FaultScript(), DictStorage()
    storage = FaultyStorage(store, script)
    for nth, kind, error in [(1, "unavailable", StorageUnavailable), (2, "timeout", StorageTimeout),
                             (3, "failed", StorageFailed), (4, "conflict", StorageFailed)]:
        script.inject("get", nth, StorageFault(kind))
        with pytest.raises(error, match="^injected fault on get$"):
            storage.get("k")
    script.inject("commit", 1, StorageFault("time-out-after-apply"))
    after = "^injected fault on commit, after the call was applied$"
    with pytest.raises(StorageTimeout, match=after):
        storage.commit([Write("k", None, Put(b"v"))])
    assert store.get("k").value == b"v"  # applied
    script.reset()
    for call in ("get", "commit", "list-keys"):
        script.inject(call, 1, StorageFault("break-contract"))
    assert storage.get("absent").version == 0
    assert storage.commit([Write("j", None, Put(b"w"))]).versions == (2, 3)
    assert storage.list_keys("") == ["j", "k", "!"]
    acks, recording = AckScript(), RecordingConsumer()
    acks.fail_nth(1)
    with pytest.raises(InjectedAckFailure, match="^injected ack failure$"):
        FaultyConsumer(recording, acks).ack(["m"])
    assert (recording.acks, acks.failed) == ([], [["m"]])


def test_missing_or_foreign_cases_file_is_refused(tmp_path) -> None:
    with pytest.raises(SystemExit, match="scripts/conformance.sh expand"):
        runner.main(tmp_path)
    (tmp_path / "cases.json").write_text(json.dumps({"format": "other/1", "cases": []}))
    with pytest.raises(SystemExit, match="format 'other/1'"):
        runner.main(tmp_path)
