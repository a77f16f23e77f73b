"""Conversions between this package's types and the values wasmtime-py passes to and from the
component (`wasmtime.component.Record` with kebab-case attributes, `Variant`, plain ints,
strings, bytes, lists).

Lowering (Python -> component) checks every value first: a wrong type or an int outside its WIT
range raises `InvalidInput` naming the field, so nothing malformed ever reaches wasmtime (whose
ctypes layer would silently wrap an out-of-range int or raise half-way through a call).

wasmtime-py 50 represents a variant "untagged" when its cases' Python classes do not overlap
(`ack-outcome` arrives as `int | str`, `lookup` and every `option` as `Record | None`) and as
`Variant(tag, payload)` otherwise (`error`, `resume-origin`, `policy`, `progress`, `admission`).
The lifting functions below accept both forms, so they do not depend on that rule.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from wasmtime.component import Record, Variant

from . import types as t
from .errors import (
    BrokenStore,
    CheckpointError,
    Conflict,
    Corrupt,
    Fenced,
    InvalidInput,
    NotFound,
    Regression,
    StorageFailure,
    TooLarge,
)

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
S64_MIN = -(1 << 63)
S64_MAX = (1 << 63) - 1

# --------------------------------------------------------------------------------------------
# checked scalars


def _int(value: Any, path: str, low: int, high: int, wit: str) -> int:
    # bool is an int in Python, but never a meaningful number here.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(path, f"must be an int ({wit}), not {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidInput(path, f"{value} is outside the range of {wit} ({low}..={high})")
    return int(value)


def u32(value: Any, path: str) -> int:
    """`value` as a WIT u32, or `InvalidInput` naming `path`."""
    return _int(value, path, 0, U32_MAX, "u32")


def u64(value: Any, path: str) -> int:
    """`value` as a WIT u64, or `InvalidInput` naming `path`."""
    return _int(value, path, 0, U64_MAX, "u64")


def s64(value: Any, path: str) -> int:
    """`value` as a WIT s64, or `InvalidInput` naming `path`."""
    return _int(value, path, S64_MIN, S64_MAX, "s64")


def string(value: Any, path: str) -> str:
    """`value` as a WIT string: a `str` that encodes to UTF-8 (no lone surrogates)."""
    if not isinstance(value, str):
        raise InvalidInput(path, f"must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInput(path, f"is not valid Unicode ({e.reason} at {e.start})") from None
    return value


def byte_string(value: Any, path: str) -> bytes:
    """`value` as `bytes` (wasmtime-py takes exactly `bytes` for `list<u8>`)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidInput(path, f"must be bytes, not {type(value).__name__}")


def sequence_of(value: Any, path: str) -> Sequence[Any]:
    """A list or tuple given for a WIT list (a bare str or bytes is refused, not split)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise InvalidInput(path, f"must be a list or tuple, not {type(value).__name__}")
    return value


def strings(value: Any, path: str) -> list[str]:
    return [string(s, f"{path}[{i}]") for i, s in enumerate(sequence_of(value, path))]


def _record(**fields: Any) -> Record:
    # WIT field names are kebab-case; wasmtime-py reads them with getattr.
    r = Record()
    for name, v in fields.items():
        setattr(r, name.replace("_", "-"), v)
    return r


def _expect(value: Any, cls: type, path: str) -> Any:
    if not isinstance(value, cls):
        raise InvalidInput(path, f"must be a {cls.__name__}, not {type(value).__name__}")
    return value


# --------------------------------------------------------------------------------------------
# lowering: Python -> component


def lower_watermark(w: Any, path: str) -> Record:
    w = _expect(w, t.Watermark, path)
    return _record(
        offset=u64(w.offset, f"{path}.offset"),
        event_time_ms=s64(w.event_time_ms, f"{path}.event-time-ms"),
    )


def _lower_sinks(value: Any, path: str) -> list[Record]:
    sinks = []
    for i, s in enumerate(sequence_of(value, path)):
        sp = f"{path}[{i}]"
        s = _expect(s, t.SinkPosition, sp)
        sinks.append(
            _record(name=string(s.name, f"{sp}.name"), position=u64(s.position, f"{sp}.position"))
        )
    return sinks


def _lower_states(value: Any, path: str) -> list[Record]:
    states = []
    for i, s in enumerate(sequence_of(value, path)):
        sp = f"{path}[{i}]"
        s = _expect(s, t.OperatorState, sp)
        states.append(
            _record(name=string(s.name, f"{sp}.name"), state=byte_string(s.state, f"{sp}.state"))
        )
    return states


def lower_checkpoint(c: Any, path: str = "checkpoint") -> Record:
    c = _expect(c, t.Checkpoint, path)
    p = f"{path}." if path != "checkpoint" else ""
    sources = []
    for i, s in enumerate(sequence_of(c.sources, f"{p}sources")):
        sp = f"{p}sources[{i}]"
        s = _expect(s, t.SourcePosition, sp)
        sources.append(
            _record(
                name=string(s.name, f"{sp}.name"),
                sequence=u64(s.sequence, f"{sp}.sequence"),
                watermark=lower_watermark(s.watermark, f"{sp}.watermark"),
            )
        )
    return _record(
        run_id=string(c.run_id, f"{p}run-id"),
        stage=string(c.stage, f"{p}stage"),
        sequence=u64(c.sequence, f"{p}sequence"),
        epoch=u64(c.epoch, f"{p}epoch"),
        watermark=lower_watermark(c.watermark, f"{p}watermark"),
        sources=sources,
        sinks=_lower_sinks(c.sinks, f"{p}sinks"),
        operator_states=_lower_states(c.operator_states, f"{p}operator-states"),
        idempotency_key=string(c.idempotency_key, f"{p}idempotency-key"),
        at_ms=u64(c.at_ms, f"{p}at-ms"),
    )


def lower_checkpoints(cs: Any, path: str = "checkpoints") -> list[Record]:
    return [lower_checkpoint(c, f"{path}[{i}]") for i, c in enumerate(sequence_of(cs, path))]


def lower_options(o: Any) -> Record:
    o = _expect(o, t.Options, "options")
    return _record(
        namespace=string(o.namespace, "namespace"),
        max_retained=u32(o.max_retained, "max-retained"),
        max_checkpoint_bytes=u32(o.max_checkpoint_bytes, "max-checkpoint-bytes"),
    )


def lower_policy(p: Any) -> Variant:
    if isinstance(p, t.PerMessage):
        return Variant("per-message")
    if isinstance(p, t.PerBatch):
        return Variant("per-batch", u32(p.n, "policy.per-batch"))
    if isinstance(p, t.ExplicitFlush):
        return Variant("explicit-flush")
    raise InvalidInput("policy", f"must be PerMessage, PerBatch or ExplicitFlush, not {p!r}")


def lower_driver_options(o: Any) -> Record:
    o = _expect(o, t.DriverOptions, "options")
    overflow = _expect(o.overflow, t.OverflowPolicy, "overflow")
    return _record(
        run_id=string(o.run_id, "run-id"),
        stage=string(o.stage, "stage"),
        epoch=u64(o.epoch, "epoch"),
        policy=lower_policy(o.policy),
        changelog_capacity=u32(o.changelog_capacity, "changelog-capacity"),
        overflow=overflow.value,
        max_in_flight=u32(o.max_in_flight, "max-in-flight"),
    )


def lower_message(m: Any, path: str = "message") -> Record:
    m = _expect(m, t.ProcessedMessage, path)
    return _record(
        id=string(m.id, f"{path}.id"),
        next_offset=u64(m.next_offset, f"{path}.next-offset"),
        event_time_ms=s64(m.event_time_ms, f"{path}.event-time-ms"),
    )


def lower_source_message(m: Any, path: str = "message") -> Record:
    """A `message` (what `driver.begin` takes); `offset` None lowers to the option's none."""
    m = _expect(m, t.Message, path)
    return _record(
        id=string(m.id, f"{path}.id"),
        source=string(m.source, f"{path}.source"),
        offset=None if m.offset is None else u64(m.offset, f"{path}.offset"),
        event_time_ms=s64(m.event_time_ms, f"{path}.event-time-ms"),
    )


def lower_stage_state(state: Any, path: str = "state") -> Record | None:
    """An `option<stage-state>`: None, or the record (wasmtime-py lowers it untagged)."""
    if state is None:
        return None
    state = _expect(state, t.StageState, path)
    return _record(
        sinks=_lower_sinks(state.sinks, f"{path}.sinks"),
        operator_states=_lower_states(state.operator_states, f"{path}.operator-states"),
    )


def option_u64(value: Any, path: str) -> int | None:
    """An `option<u64>`: None, or the int (wasmtime-py lowers it untagged)."""
    return None if value is None else u64(value, path)


def option_string(value: Any, path: str) -> str | None:
    """An `option<string>`: None, or the str."""
    return None if value is None else string(value, path)


def lower_point(p: Any, path: str = "point") -> Record:
    """A `resume-point` (what `codec.resume-point-label` takes)."""
    p = _expect(p, t.ResumePoint, path)
    return _record(
        run_id=string(p.run_id, f"{path}.run-id"),
        stage=string(p.stage, f"{path}.stage"),
        sequence=u64(p.sequence, f"{path}.sequence"),
        epoch=u64(p.epoch, f"{path}.epoch"),
        watermark=lower_watermark(p.watermark, f"{path}.watermark"),
    )


def lower_reset_request(r: Any, path: str = "request") -> Record:
    r = _expect(r, t.ResetRequest, path)
    sources = []
    for i, s in enumerate(sequence_of(r.sources, f"{path}.sources")):
        sp = f"{path}.sources[{i}]"
        s = _expect(s, t.SourcePosition, sp)
        sources.append(
            _record(
                name=string(s.name, f"{sp}.name"),
                sequence=u64(s.sequence, f"{sp}.sequence"),
                watermark=lower_watermark(s.watermark, f"{sp}.watermark"),
            )
        )
    return _record(
        run_id=string(r.run_id, f"{path}.run-id"),
        stage=string(r.stage, f"{path}.stage"),
        watermark=lower_watermark(r.watermark, f"{path}.watermark"),
        sources=sources,
        state=lower_stage_state(r.state, f"{path}.state"),
        epoch=option_u64(r.epoch, f"{path}.epoch"),
        at_ms=u64(r.at_ms, f"{path}.at-ms"),
    )


def lower_history_request(r: Any, path: str = "request") -> Record:
    r = _expect(r, t.HistoryRequest, path)
    return _record(
        after_sequence=u64(r.after_sequence, f"{path}.after-sequence"),
        max_checkpoints=u32(r.max_checkpoints, f"{path}.max-checkpoints"),
        max_bytes=u64(r.max_bytes, f"{path}.max-bytes"),
    )


def lower_stage_export(e: Any, path: str = "exported") -> Record:
    """A `stage-export` (what `import-stage` takes); `latest` None lowers to the option's none."""
    e = _expect(e, t.StageExport, path)
    retained = []
    for i, c in enumerate(sequence_of(e.retained, f"{path}.retained")):
        cp = f"{path}.retained[{i}]"
        c = _expect(c, t.StoredCopy, cp)
        retained.append(
            _record(
                sequence=u64(c.sequence, f"{cp}.sequence"),
                bytes=byte_string(c.bytes, f"{cp}.bytes"),
            )
        )
    savepoints = []
    for i, s in enumerate(sequence_of(e.savepoints, f"{path}.savepoints")):
        sp = f"{path}.savepoints[{i}]"
        s = _expect(s, t.StoredSavepoint, sp)
        savepoints.append(
            _record(name=string(s.name, f"{sp}.name"), bytes=byte_string(s.bytes, f"{sp}.bytes"))
        )
    return _record(
        run_id=string(e.run_id, f"{path}.run-id"),
        stage=string(e.stage, f"{path}.stage"),
        latest=None if e.latest is None else byte_string(e.latest, f"{path}.latest"),
        retained=retained,
        savepoints=savepoints,
    )


def boolean(value: Any, path: str) -> bool:
    """`value` as a WIT bool: exactly `True` or `False` (an int is refused, not truth-tested)."""
    if not isinstance(value, bool):
        raise InvalidInput(path, f"must be a bool, not {type(value).__name__}")
    return value


# --------------------------------------------------------------------------------------------
# lifting: component -> Python


def _get(r: Any, name: str) -> Any:
    return getattr(r, name)


def _case(value: Any, untagged: Callable[[Any], tuple[str, Any]]) -> tuple[str, Any]:
    """(case name, payload) of a variant value in either of wasmtime-py's representations."""
    if isinstance(value, Variant):
        return value.tag, value.payload
    return untagged(value)


def lift_watermark(r: Any) -> t.Watermark:
    return t.Watermark(offset=_get(r, "offset"), event_time_ms=_get(r, "event-time-ms"))


def lift_checkpoint(r: Any) -> t.Checkpoint:
    return t.Checkpoint(
        run_id=_get(r, "run-id"),
        stage=_get(r, "stage"),
        sequence=_get(r, "sequence"),
        epoch=_get(r, "epoch"),
        watermark=lift_watermark(_get(r, "watermark")),
        sources=tuple(
            t.SourcePosition(s.name, s.sequence, lift_watermark(s.watermark))
            for s in _get(r, "sources")
        ),
        sinks=tuple(t.SinkPosition(s.name, s.position) for s in _get(r, "sinks")),
        operator_states=tuple(
            t.OperatorState(s.name, bytes(s.state)) for s in _get(r, "operator-states")
        ),
        idempotency_key=_get(r, "idempotency-key"),
        at_ms=_get(r, "at-ms"),
    )


def lift_point(r: Any) -> t.ResumePoint:
    return t.ResumePoint(
        run_id=_get(r, "run-id"),
        stage=_get(r, "stage"),
        sequence=_get(r, "sequence"),
        epoch=_get(r, "epoch"),
        watermark=lift_watermark(_get(r, "watermark")),
    )


def lift_corruption(r: Any) -> t.Corruption:
    return t.Corruption(
        kind=t.CorruptionKind(_get(r, "kind")), key=_get(r, "key"), detail=_get(r, "detail")
    )


def lift_resume(r: Any) -> t.Resume:
    tag, payload = _case(_get(r, "origin"), lambda v: ("fallback", v))
    origin: t.ResumeOrigin
    if tag == "latest":
        origin = t.Latest()
    elif tag == "fresh":
        origin = t.Fresh()
    elif tag == "fallback":
        origin = t.Fallback(tuple(lift_corruption(c) for c in _get(payload, "skipped")))
    else:
        raise ValueError(f"unknown resume-origin case {tag!r}")
    checkpoint = _get(r, "checkpoint")  # option<checkpoint>: None or the record
    if isinstance(checkpoint, Variant):  # tagged, should wasmtime-py ever tag it
        checkpoint = checkpoint.payload if checkpoint.tag == "some" else None
    return t.Resume(
        point=lift_point(_get(r, "point")),
        origin=origin,
        checkpoint=None if checkpoint is None else lift_checkpoint(checkpoint),
    )


def lift_ack_outcome(v: Any) -> t.AckOutcome:
    tag, payload = _case(v, lambda x: ("failed", x) if isinstance(x, str) else ("acked", x))
    return t.Acked(payload) if tag == "acked" else t.AckFailed(payload)


def lift_receipt(r: Any) -> t.Receipt:
    return t.Receipt(
        sequence=_get(r, "sequence"),
        version=_get(r, "version"),
        replayed=_get(r, "replayed"),
        pruned=_get(r, "pruned"),
        acks=lift_ack_outcome(_get(r, "acks")),
    )


def lift_progress(v: Any) -> t.Progress:
    # `covered`'s ack-outcome lifts to int | str, overlapping `pending`'s int, so wasmtime-py
    # tags this variant; the untagged reading is kept for the rule's sake.
    tag, payload = _case(v, lambda x: ("pending", x) if isinstance(x, int) else ("checkpointed", x))
    if tag == "pending":
        return t.Pending(payload)
    if tag == "covered":
        return t.Covered(lift_ack_outcome(payload))
    if tag == "checkpointed":
        return t.Checkpointed(lift_receipt(payload))
    raise ValueError(f"unknown progress case {tag!r}")


def lift_admission(v: Any) -> t.Admission:
    # `admitted(u64)` and `backpressure(u32)` are both ints: always tagged.
    tag, payload = _case(v, lambda x: ("covered", x))
    if tag == "admitted":
        return t.Admitted(payload)
    if tag == "covered":
        return t.Covered(lift_ack_outcome(payload))
    if tag == "backpressure":
        return t.Backpressure(payload)
    raise ValueError(f"unknown admission case {tag!r}")


def lift_completion(r: Any) -> t.Completion:
    return t.Completion(released=tuple(_get(r, "released")), due=_get(r, "due"))


def lift_batch_progress(r: Any) -> t.BatchProgress:
    return t.BatchProgress(
        checkpoints=tuple(lift_receipt(x) for x in _get(r, "checkpoints")),
        pending=_get(r, "pending"),
        covered=_get(r, "covered"),
    )


def lift_changelog(r: Any) -> t.Changelog:
    return t.Changelog(
        events=tuple(
            t.ChangeEvent(t.ChangeKind(e.kind), e.sequence, lift_watermark(e.watermark))
            for e in _get(r, "events")
        ),
        overflow_count=_get(r, "overflow-count"),
        capacity=_get(r, "capacity"),
    )


def _option(value: Any) -> Any:
    """An `option<T>` lifted untagged (None or the value), or tagged, should wasmtime-py ever
    tag it."""
    if isinstance(value, Variant):
        return value.payload if value.tag == "some" else None
    return value


def lift_reset_origin(r: Any) -> t.ResetOrigin:
    return t.ResetOrigin(
        from_sequence=_get(r, "from-sequence"),
        from_epoch=_get(r, "from-epoch"),
        from_watermark=lift_watermark(_get(r, "from-watermark")),
        savepoint=_option(_get(r, "savepoint")),
    )


def _lift_reset_origin_option(value: Any) -> t.ResetOrigin | None:
    origin = _option(value)
    return None if origin is None else lift_reset_origin(origin)


def lift_reset_receipt(r: Any) -> t.ResetReceipt:
    return t.ResetReceipt(
        checkpoint=lift_checkpoint(_get(r, "checkpoint")),
        version=_get(r, "version"),
        pruned=_get(r, "pruned"),
        origin=lift_reset_origin(_get(r, "origin")),
    )


def lift_history_page(r: Any) -> t.HistoryPage:
    return t.HistoryPage(
        entries=tuple(
            t.HistoryEntry(
                checkpoint=lift_checkpoint(_get(e, "checkpoint")),
                encoded_bytes=_get(e, "encoded-bytes"),
                reset=_lift_reset_origin_option(_get(e, "reset")),
            )
            for e in _get(r, "entries")
        ),
        next_after=_option(_get(r, "next-after")),
    )


def lift_savepoint(r: Any) -> t.SavepointInfo:
    return t.SavepointInfo(
        name=_get(r, "name"),
        point=lift_point(_get(r, "point")),
        at_ms=_get(r, "at-ms"),
        encoded_bytes=_get(r, "encoded-bytes"),
    )


def lift_stage_summary(r: Any) -> t.StageSummary:
    latest, damage = _option(_get(r, "latest")), _option(_get(r, "damage"))
    return t.StageSummary(
        run_id=_get(r, "run-id"),
        stage=_get(r, "stage"),
        latest=None if latest is None else lift_point(latest),
        at_ms=_get(r, "at-ms"),
        encoded_bytes=_get(r, "encoded-bytes"),
        reset=_lift_reset_origin_option(_get(r, "reset")),
        damage=None if damage is None else lift_corruption(damage),
        retained=_get(r, "retained"),
        savepoints=_get(r, "savepoints"),
    )


def lift_stage_export(r: Any) -> t.StageExport:
    latest = _option(_get(r, "latest"))
    return t.StageExport(
        run_id=_get(r, "run-id"),
        stage=_get(r, "stage"),
        latest=None if latest is None else bytes(latest),
        retained=tuple(
            t.StoredCopy(sequence=_get(c, "sequence"), bytes=bytes(_get(c, "bytes")))
            for c in _get(r, "retained")
        ),
        savepoints=tuple(
            t.StoredSavepoint(name=_get(s, "name"), bytes=bytes(_get(s, "bytes")))
            for s in _get(r, "savepoints")
        ),
    )


def lift_import_receipt(r: Any) -> t.ImportReceipt:
    return t.ImportReceipt(
        action=t.ImportAction(_get(r, "action")),
        keys_written=_get(r, "keys-written"),
        keys_removed=_get(r, "keys-removed"),
        bytes_written=_get(r, "bytes-written"),
    )


def lift_error(v: Any, text: str | None = None) -> CheckpointError:
    """The exception for a WIT `error` value; `text` is its description (`codec.describe`)."""
    tag, p = _case(v, lambda x: (str(x), None))
    if tag == "invalid":
        return InvalidInput(_get(p, "field"), _get(p, "reason"), text=text)
    if tag == "regression":
        return Regression(
            t.RegressionInfo(
                stored_sequence=_get(p, "stored-sequence"),
                stored_watermark=lift_watermark(_get(p, "stored-watermark")),
                attempted_sequence=_get(p, "attempted-sequence"),
                attempted_watermark=lift_watermark(_get(p, "attempted-watermark")),
                field=_get(p, "field"),
            ),
            text=text,
        )
    if tag == "fenced":
        return Fenced(t.FencedInfo(_get(p, "stored-epoch"), _get(p, "attempted-epoch")), text=text)
    if tag == "conflict":
        return Conflict(p, text=text)
    if tag == "not-found":
        return NotFound(text=text)
    if tag == "corrupt":
        return Corrupt(lift_corruption(p), text=text)
    if tag == "storage":
        return StorageFailure(p, text=text)
    if tag == "too-large":
        return TooLarge(t.TooLargeInfo(_get(p, "size"), _get(p, "limit")), text=text)
    if tag == "broken-store":
        return BrokenStore(p, text=text)
    raise ValueError(f"unknown error case {tag!r}")


def lower_error(e: CheckpointError) -> Variant:
    """The WIT `error` value of an exception (what `codec.describe` takes). Raises `ValueError`
    (never `InvalidInput`, whose text is described through here) for a payload the WIT cannot
    carry."""

    def n(value: Any, low: int = 0, high: int = U64_MAX) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{value!r} is not an integer in {low}..={high}")
        return value

    def s(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a str")
        value.encode("utf-8")  # UnicodeEncodeError is a ValueError
        return value

    def wm(w: Any) -> Record:
        return _record(offset=n(w.offset), event_time_ms=n(w.event_time_ms, S64_MIN, S64_MAX))

    if isinstance(e, InvalidInput):
        return Variant("invalid", _record(field=s(e.field), reason=s(e.reason)))
    if isinstance(e, Regression):
        return Variant(
            "regression",
            _record(
                stored_sequence=n(e.stored_sequence),
                stored_watermark=wm(e.stored_watermark),
                attempted_sequence=n(e.attempted_sequence),
                attempted_watermark=wm(e.attempted_watermark),
                field=s(e.field),
            ),
        )
    if isinstance(e, Fenced):
        return Variant(
            "fenced", _record(stored_epoch=n(e.stored_epoch), attempted_epoch=n(e.attempted_epoch))
        )
    if isinstance(e, (Conflict, StorageFailure, BrokenStore)):
        return Variant(e.case, s(e.message))
    if isinstance(e, NotFound):
        return Variant("not-found")
    if isinstance(e, Corrupt):
        kind = t.CorruptionKind(e.kind).value
        return Variant("corrupt", _record(kind=kind, key=s(e.key), detail=s(e.detail)))
    if isinstance(e, TooLarge):
        return Variant("too-large", _record(size=n(e.size), limit=n(e.limit)))
    raise ValueError(f"not an error case of the component: {type(e).__name__}")


def error_of(value: Any) -> Any | None:
    """The `err` payload (a WIT `error` value) of a `result<T, error>`, or None for `ok`.

    `error` always lifts to a `Variant`. When `T` lifts to something else, wasmtime-py hands the
    result over untagged; when `T` is a tagged variant too (`progress`, `admission`), the result
    comes tagged `ok`/`err` (`error` has no case of either name, so the two never mix up)."""
    if isinstance(value, Variant):
        if value.tag == "ok":
            return None
        if value.tag == "err":
            return value.payload
        return value
    return None


def unwrap(value: Any, describe: Callable[[Any], str] | None = None) -> Any:
    """The `ok` payload of a `result<T, error>`, or raises the `err` case as its exception,
    with `describe(error)` as its text (`None`: asks the shared runtime)."""
    error = error_of(value)
    if error is not None:
        raise lift_error(error, describe(error) if describe is not None else None)
    if isinstance(value, Variant) and value.tag == "ok":
        return value.payload
    return value


# --------------------------------------------------------------------------------------------
# the storage import: what the component hands a store, and what a store hands back


def lift_writes(rs: Iterable[Any]) -> list[t.Write]:
    writes = []
    for r in rs:
        tag, payload = _case(_get(r, "op"), lambda v: ("delete", None) if v is None else ("put", v))
        op: t.WriteOp = t.Put(bytes(payload)) if tag == "put" else t.Delete()
        writes.append(t.Write(key=_get(r, "key"), expected_version=_get(r, "expected-version"), op=op))
    return writes
