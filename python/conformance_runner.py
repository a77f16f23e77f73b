"""The conformance suite's Python runner (tests/conformance/README.md, "For a new runner").

Plays the expanded cases (target/conformance/cases.json: `bash scripts/conformance.sh expand`)
on the `memory` (DictStorage) and `sqlite` (SqliteStorage) stores through the installed
`pipeline_checkpoint` and its fault wrappers, writes target/conformance/transcripts/python/
BACKEND/CASE.json, then runs the checker on them (`scripts/conformance.sh check --host python`)
and exits with its status. It maps ops to API calls and results to WIT JSON, nothing else:
defaults, families, expectations and the comparison across hosts are the testkit's."""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, Callable

from pipeline_checkpoint import types as t
from pipeline_checkpoint import (
    CheckpointError, Checkpointer, Codec, ComponentFailure, DictStorage, Driver, InvalidInput,
    NotFound, RecordingConsumer, SqliteStorage,
)
from pipeline_checkpoint.faults import AckScript, FaultScript, FaultyConsumer, FaultyStorage
from pipeline_checkpoint.faults import StorageFault

REPO = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("CKPT_CONFORMANCE_DIR") or REPO / "target" / "conformance")
FORMAT = "pipeline-checkpoint-conformance-expanded/1"
HOST = "python"


class RunnerError(Exception):
    """The runner could not carry out a step (recorded as `runner-error`)."""


# --- expanded-case JSON -> pipeline_checkpoint values (every field present, ints as strings)
def value_of(cls: Any, v: Any) -> Any:
    """`v` (WIT JSON) as a value of `cls`, a type of `pipeline_checkpoint.types`."""
    if cls is int:
        return int(v)
    if cls is bytes:
        return bytes.fromhex(v)
    if cls is str:
        return v
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return cls(v)
    if typing.get_origin(cls) is tuple:
        return tuple(value_of(typing.get_args(cls)[0], x) for x in v)
    if type(None) in typing.get_args(cls):  # an option (`int | None`): null is none
        (some,) = [c for c in typing.get_args(cls) if c is not type(None)]
        return None if v is None else value_of(some, v)
    if typing.get_origin(cls) in (typing.Union, types.UnionType):  # a policy: "case" or {"per-batch": "n"}
        case, payload = (v, None) if isinstance(v, str) else next(iter(v.items()))
        (c,) = [c for c in typing.get_args(cls) if c.__name__.lower() == case.replace("-", "")]
        return c() if payload is None else c(int(payload))
    hints = typing.get_type_hints(cls, vars(t))
    return cls(**{
        f.name: value_of(hints[f.name], v[f.name.replace("_", "-")])
        for f in dataclasses.fields(cls)
    })  # fmt: skip


ck = functools.partial(value_of, t.Checkpoint)
msg = functools.partial(value_of, t.ProcessedMessage)
source_msg = functools.partial(value_of, t.Message)
state = functools.partial(value_of, t.StageState | None)


# --- pipeline_checkpoint values -> WIT JSON (ints as decimal strings, bytes as lowercase hex)
# Variant cases: the class, its WIT case name and its payload (a field, the record, or none).
VARIANTS: dict[type, tuple[str, Callable[[Any], Any] | None]] = {
    t.Acked: ("acked", lambda v: v.count),
    t.AckFailed: ("failed", lambda v: v.message),
    t.Pending: ("pending", lambda v: v.count),
    t.Checkpointed: ("checkpointed", lambda v: v.receipt),
    t.Covered: ("covered", lambda v: v.acks),
    t.Admitted: ("admitted", lambda v: v.ticket),
    t.Backpressure: ("backpressure", lambda v: v.in_flight),
    t.Latest: ("latest", None),
    t.Fresh: ("fresh", None),
    t.Fallback: ("fallback", lambda v: {"skipped": v.skipped}),
}


LARGE_BYTES = 65_536


def wit(v: Any) -> Any:
    """`v` in the README's "Values" form."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, bytes):  # large bytes by their digest (README, "Transcripts")
        if len(v) > LARGE_BYTES:
            return {"sha256": hashlib.sha256(v).hexdigest(), "length": str(len(v))}
        return v.hex()
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, (list, tuple)):
        return [wit(x) for x in v]
    if isinstance(v, dict):
        return {k: wit(x) for k, x in v.items()}
    if type(v) in VARIANTS:
        case, payload = VARIANTS[type(v)]
        return case if payload is None else {case: wit(payload(v))}
    return {f.name.replace("_", "-"): wit(getattr(v, f.name)) for f in dataclasses.fields(v)}


def error_json(e: CheckpointError) -> Any:
    """The WIT `error`: its case (`e.case`) and payload (a record, or the message text)."""
    if isinstance(e, NotFound):
        return e.case
    if isinstance(e, InvalidInput):
        return {e.case: {"field": e.field, "reason": e.reason}}
    payload = next(getattr(e, a) for a in ("info", "corruption", "message") if hasattr(e, a))
    return {e.case: wit(payload)}


# --- backends: a fresh store per case, and new connections to it
class Backend:
    """`memory`: one DictStorage, every connection the same object; `sqlite`: a file in a temp
    dir, a new SqliteStorage per connection."""

    def __init__(self, name: str) -> None:
        self.name, self.memory, self.conns = name, DictStorage(), []
        self.dir = tempfile.TemporaryDirectory(prefix="ckpt-conformance-")

    def connect(self) -> Any:
        if self.name == "memory":
            return self.memory
        self.conns.append(SqliteStorage(Path(self.dir.name) / "conformance.db"))
        return self.conns[-1]

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.dir.cleanup()


BACKENDS = ("memory", "sqlite")


# --- playing a case
class Player:
    def __init__(self, backend: Backend, options: dict[str, Any]) -> None:
        self.backend, self.options = backend, value_of(t.Options, options)
        self.script, self.acks, self.recording = FaultScript(), AckScript(), RecordingConsumer()
        self.codec = Codec()
        self.handle: Checkpointer | Driver | None = None
        self.exported: t.StageExport | None = None  # the case's last successful export-stage
        try:  # a case whose options are invalid starts with no checkpointer; its first step says so
            self.handle = self.connect(self.options)
        except CheckpointError:
            pass

    def run(self, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of the steps, up to a trap or runner error."""
        records: list[dict[str, Any]] = []
        try:
            for step in steps:
                record, stop = self.play(step)
                records.append(record)
                if stop:
                    break
        finally:
            self.drop()
        return records

    def connect(self, options: t.Options) -> Checkpointer:
        storage = FaultyStorage(self.backend.connect(), self.script)
        return Checkpointer.open(storage, FaultyConsumer(self.recording, self.acks), options)

    def drop(self) -> None:
        """Drops the instance at once: no guest code runs, a driver's pending messages are lost."""
        if self.handle is not None:
            self.checkpointer().close()
        self.handle = None

    def reopen(self, why: str) -> None:
        self.drop()
        try:
            self.handle = self.connect(self.options)
        except (CheckpointError, ComponentFailure) as e:
            raise RunnerError(f"{why}: {e}") from None

    def checkpointer(self) -> Checkpointer:
        if self.handle is None:
            raise RunnerError("no open checkpointer (the last open failed)")
        return self.handle.checkpointer if isinstance(self.handle, Driver) else self.handle

    def driver(self) -> Driver:
        if not isinstance(self.handle, Driver):
            raise RunnerError("no open driver: run `open-driver` first")
        return self.handle

    def raw(self, key: str, op: t.WriteOp | None = None) -> t.Entry | None:
        """Reads `key`, or does `op` unconditionally: through a new connection, unwrapped."""
        conn = self.backend.connect()
        if op is None:
            return conn.get(key)
        if not isinstance(conn.commit([t.Write(key, None, op)]), t.Committed):
            raise RunnerError(f"an unconditional write of {key!r} was not committed")
        return None

    def play(self, step: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The step's record, and whether the case stops here (trap, runner error)."""
        self.script.reset()
        self.acks.reset()
        for f in step.get("storage", []):
            self.script.inject(f["call"], int(f["nth"]), StorageFault(f["fault"], int(f["index"])))
        for f in step.get("consumer", []):
            self.acks.fail_nth(int(f["nth"]))
        try:
            result = {"ok": wit(OPS[step["op"]](self, step))}
        except CheckpointError as e:
            result = {"error": error_json(e), "message": str(e)}
        except ComponentFailure as e:
            result = {"trap": str(e)}
        except Exception as e:  # noqa: BLE001 - a step the runner could not carry out
            result = {"runner-error": f"{type(e).__name__}: {e}"}
        calls = {c: str(self.script.calls(c)) for c in ("get", "commit", "list-keys")}
        logs = {
            "result": lambda: result,
            "calls": lambda: {**calls, "ack": str(self.acks.calls())},
            "acks": lambda: self.recording.acks,
            "failed-acks": lambda: self.acks.failed,
            "keys": lambda: self.backend.connect().list_keys(""),
        }
        record = {"op": step["op"], **{f: logs[f]() for f in step["record"]}}
        if "runner-error" in result:
            record["result"] = result
        return record, "trap" in result or "runner-error" in result

    def open(self, s: dict[str, Any]) -> None:
        self.drop()
        options = value_of(t.Options, s["options"])
        self.handle, self.options = self.connect(options), options

    def open_driver(self, s: dict[str, Any]) -> dict[str, Any]:
        options = value_of(t.DriverOptions, s["driver"])
        if not isinstance(self.handle, Checkpointer):
            self.reopen("reopening for the driver")  # closes any open driver
        try:
            self.handle = self.checkpointer().open_driver(options)
        except CheckpointError:
            self.reopen("reopening after a failed open-driver")
            raise
        return {"resumed-from": self.handle.resumed_from()}

    def export_stage(self, s: dict[str, Any]) -> t.StageExport:
        exported = self.checkpointer().export_stage(s["run-id"], s["stage"])
        self.exported = exported  # kept across `open` and `crash` steps, for `import-stage`
        return exported

    def import_stage(self, s: dict[str, Any]) -> t.ImportReceipt:
        if self.exported is None:
            raise RunnerError("import-stage: no successful export-stage earlier in this case")
        return self.checkpointer().import_stage(self.exported, s["replace-older"], s["dry-run"])

    def corrupt(self, s: dict[str, Any]) -> None:
        found = self.raw(s["key"])
        if found is None:
            raise RunnerError(f"corrupt: no key {s['key']!r}")
        data = bytearray(found.value)
        if "flip-bit" in s:  # bit n%8, least significant first, of byte n/8
            bit = int(s["flip-bit"])
            if bit // 8 >= len(data):
                raise RunnerError("flip-bit past the end")
            data[bit // 8] ^= 1 << (bit % 8)
        elif "replace" in s:  # overwrite in place
            at, new = int(s["replace"]["offset"]), bytes.fromhex(s["replace"]["hex"])
            if at + len(new) > len(data):
                raise RunnerError("replace past the end")
            data[at : at + len(new)] = new
        else:  # keep the first n bytes
            del data[int(s["truncate"]) :]
        self.raw(s["key"], t.Put(bytes(data)))


Step = dict[str, Any]
# Each op as an API call: its result (None for an op without one), or an exception.
OPS: dict[str, Callable[[Player, Step], Any]] = {
    "open": Player.open,
    "crash": lambda p, s: p.reopen("reopening after the crash"),
    "write": lambda p, s: p.checkpointer().write(ck(s["checkpoint"]), s["batch"]),
    "get": lambda p, s: p.checkpointer().get(s["run-id"], s["stage"]),
    "resume-point": lambda p, s: p.checkpointer().resume_point(s["run-id"], s["stage"]),
    "history": lambda p, s: p.checkpointer().history(s["run-id"], s["stage"]),
    "delete": lambda p, s: p.checkpointer().delete(s["run-id"], s["stage"]),
    "recover-acks": lambda p, s: p.checkpointer().recover_acks(s["run-id"], s["stage"]),
    "get-at": lambda p, s: p.checkpointer().get_at(s["run-id"], s["stage"], int(s["sequence"])),
    "history-page": lambda p, s: p.checkpointer().history_page(
        s["run-id"], s["stage"], value_of(t.HistoryRequest, s["request"])
    ),
    "history-entries": lambda p, s: p.checkpointer().history_entries(s["run-id"], s["stage"]),
    "reset": lambda p, s: p.checkpointer().reset(value_of(t.ResetRequest, s["request"])),
    "create-savepoint": lambda p, s: p.checkpointer().create_savepoint(
        s["run-id"], s["stage"], s["name"], value_of(int | None, s["sequence"])
    ),
    "list-savepoints": lambda p, s: p.checkpointer().list_savepoints(s["run-id"], s["stage"]),
    "get-savepoint": lambda p, s: p.checkpointer().get_savepoint(
        s["run-id"], s["stage"], s["name"]
    ),
    "restore-savepoint": lambda p, s: p.checkpointer().restore_savepoint(
        s["run-id"], s["stage"], s["name"],
        at_ms=int(s["at-ms"]), epoch=value_of(int | None, s["epoch"]),
    ),
    "delete-savepoint": lambda p, s: p.checkpointer().delete_savepoint(
        s["run-id"], s["stage"], s["name"]
    ),
    "list-stages": lambda p, s: p.checkpointer().list_stages(s["run-id"]),
    "export-stage": Player.export_stage,
    "import-stage": Player.import_stage,
    "open-driver": Player.open_driver,
    "record-processed": lambda p, s: p.driver().record_processed(
        msg(s["message"]), int(s["now-ms"])
    ),
    "record-processed-batch": lambda p, s: p.driver().record_processed_batch(
        [msg(m) for m in s["messages"]], int(s["now-ms"])
    ),
    "begin": lambda p, s: p.driver().begin(source_msg(s["message"])),
    "complete": lambda p, s: p.driver().complete(int(s["ticket"])),
    "flush": lambda p, s: p.driver().flush(int(s["now-ms"]), state(s["state"])),
    "recovered-acks": lambda p, s: p.driver().recovered_acks(),
    "changelog": lambda p, s: p.driver().changelog(),
    "cursor": lambda p, s: p.driver().cursor(),
    "resumed-from": lambda p, s: p.driver().resumed_from(),
    "encode": lambda p, s: p.codec.encode(ck(s["checkpoint"])),
    "decode": lambda p, s: p.codec.decode(bytes.fromhex(s["hex"])),
    "validate": lambda p, s: p.codec.validate(ck(s["checkpoint"])),
    "chain-signature": lambda p, s: p.codec.chain_signature([ck(c) for c in s["checkpoints"]]),
    "resume-point-for-stage": lambda p, s: p.codec.resume_point_for_stage(
        [ck(c) for c in s["checkpoints"]], s["stage"]
    ),
    "watermark-label": lambda p, s: p.codec.watermark_label(value_of(t.Watermark, s["watermark"])),
    "checkpoint-label": lambda p, s: p.codec.checkpoint_label(ck(s["checkpoint"])),
    "resume-point-label": lambda p, s: p.codec.resume_point_label(
        value_of(t.ResumePoint, s["point"])
    ),
    "put-raw": lambda p, s: p.raw(s["key"], t.Put(bytes.fromhex(s["hex"]))),
    "delete-raw": lambda p, s: p.raw(s["key"], t.Delete()),
    "corrupt": Player.corrupt,
}


def main(out: Path = OUT) -> int:
    """Plays every case on every backend into `out/transcripts/python/<backend>/<case>.json`,
    then checks them: the checker's exit status."""
    if not (out / "cases.json").is_file():
        sys.exit(f"conformance: no {out / 'cases.json'}: `bash scripts/conformance.sh expand`")
    doc = json.loads((out / "cases.json").read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        sys.exit(f"conformance: cases.json has format {doc.get('format')!r}, not {FORMAT!r}")
    transcripts = out / "transcripts" / HOST
    shutil.rmtree(transcripts, ignore_errors=True)  # no stale transcript survives
    for name in BACKENDS:
        (transcripts / name).mkdir(parents=True)
        for case in doc["cases"]:
            backend = Backend(name)
            try:
                steps = Player(backend, case["options"]).run(case["steps"])
            finally:
                backend.close()
            transcript = {"case": case["name"], "host": HOST, "backend": name, "steps": steps}
            text = json.dumps(transcript, indent=1) + "\n"
            (transcripts / name / f"{case['name']}.json").write_text(text, encoding="utf-8")
    n = len(doc["cases"]) * len(BACKENDS)
    print(f"conformance: wrote {n} transcripts to {transcripts}", file=sys.stderr)
    check = ["bash", str(REPO / "scripts" / "conformance.sh"), "check", "--host", HOST]
    env = {**os.environ, "CKPT_CONFORMANCE_DIR": str(out)}
    return subprocess.run(check, cwd=REPO, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
