"""The conformance suite's Python runner: plays every case file of tests/conformance/cases
against the real component through the installed `pipeline_checkpoint` package, on the dict
and sqlite3 stores, with the fault wrappers of `pipeline_checkpoint.faults`.

The schema is tests/conformance/README.md; this mirrors host/tests/conformance.rs op by op.
Every file must parse and every case must pass on every backend; a case this runner cannot play
counts as failed. Prints one summary line and exits 1 on any failure.

    target/python-venv/bin/python python/conformance_runner.py [--cases DIR] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline_checkpoint import (
    AckFailed,
    Acked,
    BatchProgress,
    Changelog,
    Checkpoint,
    CheckpointError,
    Checkpointed,
    Checkpointer,
    Codec,
    Committed,
    ComponentFailure,
    Corrupt,
    Corruption,
    Delete,
    DictStorage,
    Driver,
    DriverOptions,
    ExplicitFlush,
    Fallback,
    Fenced,
    Fresh,
    InvalidInput,
    Latest,
    OperatorState,
    Options,
    OverflowPolicy,
    Pending,
    PerBatch,
    PerMessage,
    ProcessedMessage,
    Put,
    Receipt,
    Regression,
    Resume,
    ResumePoint,
    SinkPosition,
    SourcePosition,
    SqliteStorage,
    StorageFailure,
    TooLarge,
    Watermark,
    Write,
)
from pipeline_checkpoint.errors import Conflict, NotFound
from pipeline_checkpoint.faults import (
    AckScript, FaultScript, FaultyConsumer, FaultyStorage, StorageFault,
)
from pipeline_checkpoint.consumer import RecordingConsumer

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "tests" / "conformance" / "cases"
GOLDEN = REPO / "tests" / "golden"


class CaseError(Exception):
    """A step did not do what its case says (or the case cannot be played)."""


# ---------------------------------------------------------------------------------------------
# Backends: fresh connections over one shared store. A crash drops the instance and reconnects;
# both stores keep exactly what was committed, which is all that is durable.


class Backend:
    name = ""

    def connect(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class DictBackend(Backend):
    name = "dict"

    def __init__(self) -> None:
        self.store = DictStorage()

    def connect(self) -> Any:
        return self.store


class SqliteBackend(Backend):
    name = "sqlite3"

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="ckpt-conformance-")
        self.path = Path(self._dir.name) / "conformance.db"
        self._connections: list[SqliteStorage] = []

    def connect(self) -> Any:
        conn = SqliteStorage(self.path)
        self._connections.append(conn)
        return conn

    def close(self) -> None:
        for c in self._connections:
            c.close()
        self._dir.cleanup()


BACKENDS: list[Callable[[], Backend]] = [DictBackend, SqliteBackend]

# ---------------------------------------------------------------------------------------------
# JSON -> host values (WIT kebab-case names)


def u64_of(v: Any) -> int:
    if isinstance(v, bool):
        raise CaseError(f"{v!r} is not an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?[0-9]+", v):
        return int(v)
    raise CaseError(f"{v!r} is not an integer")


def obj(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise CaseError(f"{what} must be an object, not {v!r}")
    return v


def str_or(v: dict[str, Any], name: str, default: str) -> str:
    x = v.get(name, default)
    if not isinstance(x, str):
        raise CaseError(f"`{name}` must be a string, not {x!r}")
    return x


def int_or(v: dict[str, Any], name: str, default: int) -> int:
    return u64_of(v[name]) if name in v else default


def list_of(v: dict[str, Any], name: str) -> list[Any]:
    x = v.get(name, [])
    if not isinstance(x, list):
        raise CaseError(f"`{name}` must be a list, not {x!r}")
    return x


def hex_decode(s: str) -> bytes:
    clean = "".join(s.split())
    try:
        return bytes.fromhex(clean)
    except ValueError:
        raise CaseError(f"bad hex {s!r}") from None


def vector(name: str) -> bytes:
    if "/" in name or ".." in name:
        raise CaseError(f"vector {name!r} must be a file name in tests/golden")
    try:
        return (GOLDEN / name).read_bytes()
    except OSError as e:
        raise CaseError(f"vector {name}: {e}") from None


def watermark_of(v: Any) -> Watermark:
    if v is None:
        return Watermark(0, 0)
    v = obj(v, "watermark")
    return Watermark(int_or(v, "offset", 0), int_or(v, "event-time-ms", 0))


def checkpoint_of(v: Any) -> Checkpoint:
    v = obj(v, "checkpoint")
    if "sequence" not in v:
        raise CaseError("a checkpoint needs `sequence`")
    return Checkpoint(
        run_id=str_or(v, "run-id", "run"),
        stage=str_or(v, "stage", "stage"),
        sequence=u64_of(v["sequence"]),
        epoch=int_or(v, "epoch", 1),
        watermark=watermark_of(v.get("watermark")),
        sources=tuple(
            SourcePosition(
                str_or(s, "name", ""), int_or(s, "sequence", 0), watermark_of(s.get("watermark"))
            )
            for s in list_of(v, "sources")
        ),
        sinks=tuple(
            SinkPosition(str_or(s, "name", ""), int_or(s, "position", 0))
            for s in list_of(v, "sinks")
        ),
        operator_states=tuple(
            OperatorState(str_or(s, "name", ""), hex_decode(str_or(s, "state", "")))
            for s in list_of(v, "operator-states")
        ),
        idempotency_key=str_or(v, "idempotency-key", ""),
        at_ms=int_or(v, "at-ms", 0),
    )


def options_of(v: Any) -> Options:
    v = obj(v if v is not None else {}, "options")
    return Options(
        namespace=str_or(v, "namespace", "test"),
        max_retained=int_or(v, "max-retained", 1),
        max_checkpoint_bytes=int_or(v, "max-checkpoint-bytes", 65536),
    )


def policy_of(v: Any) -> Any:
    if v is None or v == "per-message":
        return PerMessage()
    if v == "explicit-flush":
        return ExplicitFlush()
    if isinstance(v, dict) and "per-batch" in v:
        return PerBatch(u64_of(v["per-batch"]))
    raise CaseError(f"unknown policy {v!r}")


def driver_options_of(v: Any) -> DriverOptions:
    v = obj(v if v is not None else {}, "driver")
    overflow = str_or(v, "overflow", "drop-new")
    try:
        overflow_policy = OverflowPolicy(overflow)
    except ValueError:
        raise CaseError(f"unknown overflow {overflow!r}") from None
    return DriverOptions(
        run_id=str_or(v, "run-id", "run"),
        stage=str_or(v, "stage", "stage"),
        epoch=int_or(v, "epoch", 1),
        policy=policy_of(v.get("policy")),
        changelog_capacity=int_or(v, "changelog-capacity", 0),
        overflow=overflow_policy,
    )


def message_of(v: Any) -> ProcessedMessage:
    v = obj(v, "message")
    return ProcessedMessage(
        str_or(v, "id", ""), int_or(v, "next-offset", 0), int_or(v, "event-time-ms", 0)
    )


def ids_of(step: dict[str, Any], name: str) -> list[str]:
    ids = list_of(step, name)
    if not all(isinstance(i, str) for i in ids):
        raise CaseError(f"`{name}` must hold strings")
    return ids


def bytes_of(step: dict[str, Any]) -> bytes:
    h, v = step.get("hex"), step.get("vector")
    if isinstance(h, str) and v is None:
        return hex_decode(h)
    if isinstance(v, str) and h is None:
        return vector(v)
    raise CaseError("give exactly one of `hex` and `vector`")


# ---------------------------------------------------------------------------------------------
# host values -> JSON (WIT kebab-case names; variants as {"case": payload} or "case")


def wm(w: Watermark) -> dict[str, Any]:
    return {"offset": w.offset, "event-time-ms": w.event_time_ms}


def checkpoint_json(c: Checkpoint) -> dict[str, Any]:
    return {
        "run-id": c.run_id,
        "stage": c.stage,
        "sequence": c.sequence,
        "epoch": c.epoch,
        "watermark": wm(c.watermark),
        "sources": [
            {"name": s.name, "sequence": s.sequence, "watermark": wm(s.watermark)}
            for s in c.sources
        ],
        "sinks": [{"name": s.name, "position": s.position} for s in c.sinks],
        "operator-states": [{"name": s.name, "state": s.state.hex()} for s in c.operator_states],
        "idempotency-key": c.idempotency_key,
        "at-ms": c.at_ms,
    }


def point_json(p: ResumePoint) -> dict[str, Any]:
    return {
        "run-id": p.run_id,
        "stage": p.stage,
        "sequence": p.sequence,
        "epoch": p.epoch,
        "watermark": wm(p.watermark),
    }


def corruption_json(c: Corruption) -> dict[str, Any]:
    return {"kind": c.kind.value, "key": c.key, "detail": c.detail}


def resume_json(r: Resume) -> dict[str, Any]:
    origin: Any
    if isinstance(r.origin, Latest):
        origin = "latest"
    elif isinstance(r.origin, Fresh):
        origin = "fresh"
    elif isinstance(r.origin, Fallback):
        origin = {"fallback": {"skipped": [corruption_json(c) for c in r.origin.skipped]}}
    else:
        raise CaseError(f"unknown resume origin {r.origin!r}")
    return {"point": point_json(r.point), "origin": origin}


def receipt_json(r: Receipt) -> dict[str, Any]:
    if isinstance(r.acks, Acked):
        acks: Any = {"acked": r.acks.count}
    elif isinstance(r.acks, AckFailed):
        acks = {"failed": r.acks.message}
    else:
        raise CaseError(f"unknown ack outcome {r.acks!r}")
    return {
        "sequence": r.sequence,
        "version": r.version,
        "replayed": r.replayed,
        "pruned": r.pruned,
        "acks": acks,
    }


def progress_json(p: Any) -> dict[str, Any]:
    if isinstance(p, Pending):
        return {"pending": p.count}
    if isinstance(p, Checkpointed):
        return {"checkpointed": receipt_json(p.receipt)}
    raise CaseError(f"unknown progress {p!r}")


def batch_json(b: BatchProgress) -> dict[str, Any]:
    return {"checkpoints": [receipt_json(r) for r in b.checkpoints], "pending": b.pending}


def changelog_json(c: Changelog) -> dict[str, Any]:
    return {
        "events": [
            {"kind": e.kind.value, "sequence": e.sequence, "watermark": wm(e.watermark)}
            for e in c.events
        ],
        "overflow-count": c.overflow_count,
        "capacity": c.capacity,
    }


def error_json(e: CheckpointError) -> Any:
    if isinstance(e, InvalidInput):
        return {"invalid": {"field": e.field, "reason": e.reason}}
    if isinstance(e, Regression):
        return {
            "regression": {
                "stored-sequence": e.stored_sequence,
                "stored-watermark": wm(e.stored_watermark),
                "attempted-sequence": e.attempted_sequence,
                "attempted-watermark": wm(e.attempted_watermark),
                "field": e.field,
            }
        }
    if isinstance(e, Fenced):
        return {"fenced": {"stored-epoch": e.stored_epoch, "attempted-epoch": e.attempted_epoch}}
    if isinstance(e, Conflict):
        return {"conflict": e.message}
    if isinstance(e, NotFound):
        return "not-found"
    if isinstance(e, Corrupt):
        return {"corrupt": corruption_json(e.corruption)}
    if isinstance(e, StorageFailure):
        return {"storage": e.message}
    if isinstance(e, TooLarge):
        return {"too-large": {"size": e.size, "limit": e.limit}}
    raise CaseError(f"unknown error {e!r}")


def outcome(call: Callable[[], Any], to_json: Callable[[Any], Any]) -> Any:
    """`{"ok": value}` or `{"error": error}`; a trap (ComponentFailure) fails the step."""
    try:
        value = call()
    except CheckpointError as e:
        return {"error": error_json(e)}
    except ComponentFailure as e:
        raise CaseError(f"runtime failure (trap): {e}") from None
    return {"ok": to_json(value)}


# ---------------------------------------------------------------------------------------------
# Matching: `expected` is a pattern over the actual JSON (the README's "Matching").

_NUMERIC = re.compile(r"-?[0-9]+")


def _numeric(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and _NUMERIC.fullmatch(v):
        return int(v)
    return None


def matches(expected: Any, actual: Any, path: str) -> None:
    def fail() -> CaseError:
        return CaseError(
            f"at {path}: expected {json.dumps(expected)}, got {json.dumps(actual)}"
        )

    if isinstance(expected, dict) and len(expected) == 1 and "$vector" in expected:
        name = expected["$vector"]
        if not isinstance(name, str):
            raise CaseError("`$vector` names a file")
        return matches(vector(name).hex(), actual, path)
    if isinstance(expected, dict) and len(expected) == 1 and "$contains" in expected:
        needle = expected["$contains"]
        if isinstance(needle, str) and isinstance(actual, str) and needle in actual:
            return None
        raise fail()
    if isinstance(expected, str) and isinstance(actual, dict) and len(actual) == 1 and expected in actual:
        return None
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k, ev in expected.items():
            if k not in actual:
                raise CaseError(f"at {path}: no field `{k}` in {json.dumps(actual)}")
            matches(ev, actual[k], f"{path}.{k}")
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            raise CaseError(
                f"at {path}: expected {len(expected)} items, got {len(actual)}: {json.dumps(actual)}"
            )
        for i, (ev, av) in enumerate(zip(expected, actual)):
            matches(ev, av, f"{path}[{i}]")
        return None
    e_num = _numeric(expected)
    if e_num is not None and isinstance(actual, int) and not isinstance(actual, bool):
        if e_num == actual:
            return None
        raise fail()
    if type(expected) is type(actual) and expected == actual:
        return None
    raise fail()


# ---------------------------------------------------------------------------------------------
# Playing a case


@dataclass
class Player:
    backend: Backend
    options: Options
    codec: Codec
    script: FaultScript = field(default_factory=FaultScript)
    acks: AckScript = field(default_factory=AckScript)
    recording: RecordingConsumer = field(default_factory=RecordingConsumer)
    checkpointer: Checkpointer | None = None
    driver: Driver | None = None

    def connect(self, options: Options) -> Checkpointer:
        storage = FaultyStorage(self.backend.connect(), self.script)
        consumer = FaultyConsumer(self.recording, self.acks)
        return Checkpointer.open(storage, consumer, options)

    def drop(self) -> None:
        """Drops the current instance (no guest code runs, pending driver messages are lost)."""
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.checkpointer = None
        self.driver = None

    def current(self) -> Checkpointer:
        if self.checkpointer is None:
            raise CaseError("no open checkpointer (the last open failed)")
        return self.checkpointer

    def current_driver(self) -> Driver:
        if self.driver is None:
            raise CaseError("no open driver: run `open-driver` first")
        return self.driver

    def raw(self) -> Any:
        return self.backend.connect()

    def put_raw(self, key: str, value: bytes) -> None:
        out = self.raw().commit([Write(key, None, Put(value))])
        if not isinstance(out, Committed):
            raise CaseError(f"put-raw {key}: {out!r}")

    def stored(self, key: str) -> bytes:
        found = self.raw().get(key)
        if found is None:
            raise CaseError(f"corrupt: {key} holds nothing")
        return found.value

    def keys(self) -> list[str]:
        return self.raw().list_keys("")

    def decode_bytes(self, data: bytes) -> Any:
        return outcome(lambda: self.codec.decode(data), checkpoint_json)

    def run_op(self, op: str, step: dict[str, Any]) -> Any:
        """Runs one step's op; returns its outcome, or None for steps without a result."""
        run = str_or(step, "run-id", "run")
        stage = str_or(step, "stage", "stage")
        if op == "open":
            options = options_of(step.get("options"))
            self.drop()
            try:
                self.checkpointer = self.connect(options)
            except CheckpointError as e:
                return {"error": error_json(e)}
            except ComponentFailure as e:
                raise CaseError(f"runtime failure (trap): {e}") from None
            self.options = options
            return {"ok": None}
        if op == "crash":
            self.drop()
            try:
                self.checkpointer = self.connect(self.options)
            except (CheckpointError, ComponentFailure) as e:
                raise CaseError(f"reopen after crash: {e}") from None
            return None
        if op == "write":
            if "checkpoint" not in step:
                raise CaseError("write needs `checkpoint`")
            c = checkpoint_of(step["checkpoint"])
            batch = ids_of(step, "batch")
            return outcome(lambda: self.current().write(c, batch), receipt_json)
        if op == "get":
            return outcome(lambda: self.current().get(run, stage), checkpoint_json)
        if op == "resume-point":
            return outcome(lambda: self.current().resume_point(run, stage), resume_json)
        if op == "history":
            return outcome(
                lambda: self.current().history(run, stage), lambda h: [checkpoint_json(c) for c in h]
            )
        if op == "delete":
            return outcome(lambda: self.current().delete(run, stage), lambda n: n)
        if op == "open-driver":
            options = driver_options_of(step.get("driver"))
            # A driver lives in its checkpointer's instance: close any open driver first by
            # starting from a fresh instance (the checkpointer holds no state but its options).
            if self.driver is not None or self.checkpointer is None:
                self.drop()
                try:
                    self.checkpointer = self.connect(self.options)
                except (CheckpointError, ComponentFailure) as e:
                    raise CaseError(f"reopen for driver: {e}") from None
            try:
                self.driver = self.current().open_driver(options)
            except CheckpointError as e:
                return {"error": error_json(e)}
            except ComponentFailure as e:
                raise CaseError(f"runtime failure (trap): {e}") from None
            try:
                resumed = self.driver.resumed_from()
            except ComponentFailure as e:
                raise CaseError(f"resumed-from: {e}") from None
            return {"ok": {"resumed-from": resume_json(resumed)}}
        if op == "record-processed":
            if "message" not in step:
                raise CaseError("needs `message`")
            message = message_of(step["message"])
            now = int_or(step, "now-ms", 0)
            return outcome(lambda: self.current_driver().record_processed(message, now), progress_json)
        if op == "record-processed-batch":
            messages = [message_of(m) for m in list_of(step, "messages")]
            now = int_or(step, "now-ms", 0)
            return outcome(
                lambda: self.current_driver().record_processed_batch(messages, now), batch_json
            )
        if op == "flush":
            now = int_or(step, "now-ms", 0)
            return outcome(lambda: self.current_driver().flush(now), progress_json)
        if op == "changelog":
            return outcome(lambda: self.current_driver().changelog(), changelog_json)
        if op == "cursor":
            return outcome(lambda: self.current_driver().cursor(), point_json)
        if op == "resumed-from":
            return outcome(lambda: self.current_driver().resumed_from(), resume_json)
        if op == "encode":
            if "checkpoint" not in step:
                raise CaseError("encode needs `checkpoint`")
            c = checkpoint_of(step["checkpoint"])
            return outcome(lambda: self.codec.encode(c), lambda b: b.hex())
        if op == "decode":
            return self.decode_bytes(bytes_of(step))
        if op == "decode-encode":
            data = bytes_of(step)
            try:
                c = self.codec.decode(data)
                again = self.codec.encode(c)
            except (CheckpointError, ComponentFailure) as e:
                raise CaseError(f"decode-encode: {e}") from None
            if again != data:
                raise CaseError(f"re-encoding differs: {again.hex()} vs {data.hex()}")
            return {"ok": checkpoint_json(c)}
        if op == "validate":
            if "checkpoint" not in step:
                raise CaseError("validate needs `checkpoint`")
            c = checkpoint_of(step["checkpoint"])
            return outcome(lambda: self.codec.validate(c), lambda _: None)
        if op == "chain-signature":
            cs = [checkpoint_of(c) for c in list_of(step, "checkpoints")]
            return outcome(lambda: self.codec.chain_signature(cs), lambda s: s)
        if op == "resume-point-for-stage":
            cs = [checkpoint_of(c) for c in list_of(step, "checkpoints")]
            return outcome(lambda: self.codec.resume_point_for_stage(cs, stage), point_json)
        if op == "put-raw":
            key = str_or(step, "key", "")
            if "checkpoint" in step:
                try:
                    data = self.codec.encode(checkpoint_of(step["checkpoint"]))
                except (CheckpointError, ComponentFailure) as e:
                    raise CaseError(f"encode: {e}") from None
            else:
                data = bytes_of(step)
            self.put_raw(key, data)
            return None
        if op == "delete-raw":
            key = str_or(step, "key", "")
            out = self.raw().commit([Write(key, None, Delete())])
            if not isinstance(out, Committed):
                raise CaseError(f"delete-raw {key}: {out!r}")
            return None
        if op == "corrupt":
            key = str_or(step, "key", "")
            data = bytearray(self.stored(key))
            if "flip-bit" in step:
                bit = u64_of(step["flip-bit"])
                if bit // 8 >= len(data):
                    raise CaseError("flip-bit past the end")
                data[bit // 8] ^= 1 << (bit % 8)
            elif "replace" in step:
                r = obj(step["replace"], "replace")
                at = int_or(r, "offset", 0)
                with_ = hex_decode(str_or(r, "hex", ""))
                if at + len(with_) > len(data):
                    raise CaseError("replace past the end")
                data[at : at + len(with_)] = with_
            elif "truncate" in step:
                del data[u64_of(step["truncate"]) :]
            else:
                raise CaseError("corrupt needs `flip-bit`, `replace` or `truncate`")
            self.put_raw(key, bytes(data))
            return None
        if op == "decode-truncations":
            data = bytes_of(step)
            if "expect" not in step:
                raise CaseError("needs `expect`")
            for length in range(len(data)):
                got = self.decode_bytes(data[:length])
                try:
                    matches(family_pattern(step["expect"]), got, "")
                except CaseError as e:
                    raise CaseError(f"truncated to {length} bytes: {e}") from None
            return None
        if op == "decode-bit-flips":
            data = bytes_of(step)
            bounds = list_of(step, "bytes")
            if len(bounds) != 2:
                raise CaseError("`bytes` is [from, to)")
            from_end = step.get("from-end", False) is True
            lo, hi = (resolve(u64_of(b), data, from_end) for b in bounds)
            for at in range(lo, hi):
                for bit in range(8):
                    flipped = bytearray(data)
                    flipped[at] ^= 1 << bit
                    is_set = bool(flipped[at] & (1 << bit))
                    if is_set and "expect-set" in step:
                        expect = step["expect-set"]
                    elif not is_set and "expect-cleared" in step:
                        expect = step["expect-cleared"]
                    elif "expect" in step:
                        expect = step["expect"]
                    else:
                        raise CaseError("needs `expect`")
                    got = self.decode_bytes(bytes(flipped))
                    try:
                        matches(family_pattern(expect), got, "")
                    except CaseError as e:
                        raise CaseError(f"bit {bit} of byte {at} flipped: {e}") from None
            return None
        raise CaseError(f"unknown op {op!r}")


def resolve(at: int, data: bytes, from_end: bool) -> int:
    """`bytes` bounds count from the end when the step says `"from-end": true`."""
    pos = len(data) - at if from_end else at
    if not 0 <= pos <= len(data):
        raise CaseError(f"byte bound {pos} outside 0..={len(data)}")
    return pos


def family_pattern(kind: Any) -> Any:
    """A generated family's `expect` is a corruption kind: decode must fail with it."""
    return {"error": {"corrupt": {"kind": kind}}}


STEP_KEYS = {
    "op", "note", "storage", "consumer", "expect", "acks", "failed-acks", "keys",
    "storage-calls", "run-id", "stage", "checkpoint", "checkpoints", "batch", "options",
    "driver", "message", "messages", "now-ms", "hex", "vector", "key", "flip-bit", "replace",
    "truncate", "bytes", "from-end", "expect-set", "expect-cleared",
}  # fmt: skip

CASE_KEYS = {"name", "description", "covers", "options", "steps", "acks", "failed-acks", "keys", "skip"}


def storage_fault(f: Any) -> tuple[str, int, StorageFault]:
    f = obj(f, "storage fault")
    call = str_or(f, "call", "")
    if call not in ("get", "commit", "list-keys"):
        raise CaseError(f"unknown storage call {call!r}")
    kind = str_or(f, "fault", "")
    try:
        fault = StorageFault(kind, int_or(f, "index", 0))
    except ValueError as e:
        raise CaseError(str(e)) from None
    return call, int_or(f, "nth", 1), fault


def play_step(p: Player, step: Any) -> None:
    step = obj(step, "a step")
    unknown = set(step) - STEP_KEYS
    if unknown:
        raise CaseError(f"unknown step field `{sorted(unknown)[0]}`")
    op = str_or(step, "op", "")
    p.script.reset()
    p.acks.reset()
    for f in list_of(step, "storage"):
        call, nth, fault = storage_fault(f)
        p.script.inject(call, nth, fault)
    for f in list_of(step, "consumer"):
        f = obj(f, "consumer fault")
        if str_or(f, "fault", "fail") != "fail":
            raise CaseError("the only consumer fault is `fail`")
        p.acks.fail_nth(int_or(f, "nth", 1))
    result = p.run_op(op, step)
    calls = {
        "get": p.script.calls("get"),
        "commit": p.script.calls("commit"),
        "list-keys": p.script.calls("list-keys"),
        "ack": p.acks.calls(),
    }
    p.script.reset()
    p.acks.reset()
    if result is not None:
        matches(step.get("expect", "ok"), result, "result")
    elif "expect" in step and not op.startswith("decode-"):
        raise CaseError(f"`{op}` has no result to expect")
    if "storage-calls" in step:
        matches(step["storage-calls"], calls, "storage-calls")
    check_logs(p, step)


def check_logs(p: Player, expected: dict[str, Any]) -> None:
    if "acks" in expected:
        matches(expected["acks"], p.recording.acks, "acks")
    if "failed-acks" in expected:
        matches(expected["failed-acks"], p.acks.failed, "failed-acks")
    if "keys" in expected:
        matches(expected["keys"], p.keys(), "keys")


def play_case(case: dict[str, Any], backend: Backend, codec: Codec) -> None:
    unknown = set(case) - CASE_KEYS
    if unknown:
        raise CaseError(f"unknown case field `{sorted(unknown)[0]}`")
    options = options_of(case.get("options"))
    p = Player(backend=backend, options=options, codec=codec)
    # A case whose options are invalid starts with no checkpointer; its first step says so.
    try:
        p.checkpointer = p.connect(options)
    except CheckpointError:
        p.checkpointer = None
    try:
        for i, step in enumerate(list_of(case, "steps")):
            op = step.get("op", "?") if isinstance(step, dict) else "?"
            try:
                play_step(p, step)
            except CaseError as e:
                raise CaseError(f"step {i} ({op}): {e}") from None
        try:
            check_logs(p, case)
        except CaseError as e:
            raise CaseError(f"after the last step: {e}") from None
    finally:
        p.drop()


@dataclass
class Summary:
    passed: int = 0
    cases: int = 0
    files: int = 0
    backends: int = len(BACKENDS)
    failures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.cases * self.backends

    def line(self) -> str:
        return (
            f"conformance (python): {self.passed} of {self.total} passed "
            f"({self.cases} cases x {self.backends} backends, {self.files} files)"
        )


def run(cases_dir: Path = CASES, only: str | None = None) -> Summary:
    summary = Summary()
    codec = Codec()
    files = sorted(cases_dir.iterdir()) if cases_dir.is_dir() else []
    if not files:
        summary.failures.append(f"no case files in {cases_dir}")
    names: set[str] = set()
    for path in files:
        shown = path.name
        if path.suffix != ".json":
            summary.failures.append(f"{shown}: not a .json case file; no runner plays it")
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            summary.failures.append(f"{shown}: not JSON: {e}")
            continue
        file_cases = doc.get("cases") if isinstance(doc, dict) else None
        if not isinstance(file_cases, list) or not file_cases:
            summary.failures.append(f"{shown}: no `cases`")
            continue
        summary.files += 1
        for case in file_cases:
            name = case.get("name", "") if isinstance(case, dict) else ""
            if not isinstance(name, str) or not name or name in names:
                summary.failures.append(f"{shown}: case name {name!r} empty or repeated")
                continue
            names.add(name)
            if only is not None and name != only:
                continue
            summary.cases += 1
            for make in BACKENDS:
                backend = make()
                try:
                    play_case(case, backend, codec)
                    summary.passed += 1
                except CaseError as e:
                    summary.failures.append(f"{shown} / {name} / {backend.name}: {e}")
                except Exception as e:  # a bug of this runner or host: still a named failure
                    summary.failures.append(
                        f"{shown} / {name} / {backend.name}: {type(e).__name__}: {e}"
                    )
                finally:
                    backend.close()
    if only is not None and summary.cases == 0:
        summary.failures.append(f"no case named {only!r}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES, help="the case directory")
    parser.add_argument("--only", help="play only the case of this name")
    args = parser.parse_args(argv)
    summary = run(args.cases, args.only)
    print(summary.line())
    if summary.failures:
        print(f"{len(summary.failures)} failures:", file=sys.stderr)
        for f in summary.failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
