"""Typed handles on the component's exports: `Checkpointer`, `Driver` and `Codec`.

Each checkpointer (and the drivers opened from it) owns one instance of the component in its
own wasmtime store. `close()` drops the store at once: no guest code runs and nothing is
flushed, which is exactly what a crash looks like to the stored state.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import wasmtime

from . import _wit
from . import types as t
from ._runtime import CHECKPOINTER, CODEC, Host, Instance, Runtime
from .consumer import Consumer, NullConsumer
from .errors import CheckpointError, ComponentFailure, InvalidInput
from .storage import DictStorage, Storage

def _runtime(runtime: Any) -> Runtime:
    if isinstance(runtime, Runtime):
        return runtime
    return Runtime.shared(runtime)


def _ids(run_id: Any, stage: Any) -> tuple[str, str]:
    return _wit.string(run_id, "run-id"), _wit.string(stage, "stage")


class Checkpointer:
    """Writes and reads the checkpoints of one namespace of a store, through the component.

    Use one from one thread at a time. Every method raises a `CheckpointError` subclass for an
    answer of the component (see `pipeline_checkpoint.errors`), and `ComponentFailure` when the
    component could not run the call (after which this checkpointer refuses every call: open a
    new one).
    """

    def __init__(self, instance: Instance, handle: Any) -> None:
        # Use `Checkpointer.open`.
        self._instance = instance
        self._handle = handle

    @classmethod
    def open(
        cls,
        storage: Storage,
        consumer: Consumer | None,
        options: t.Options,
        *,
        runtime: Runtime | str | os.PathLike[str] | None = None,
    ) -> "Checkpointer":
        """Opens a checkpointer in its own instance over `storage`, acking through `consumer`
        (`None`: acks go nowhere). Raises `InvalidInput` for bad options; does no storage I/O.

        `runtime` is a `Runtime`, a path to a component, or `None` for the shared runtime of the
        component shipped inside this package."""
        if not isinstance(storage, Storage):
            raise TypeError(
                f"storage must have get, commit and list_keys (pipeline_checkpoint.Storage), "
                f"not {type(storage).__name__}"
            )
        if consumer is not None and not isinstance(consumer, Consumer):
            raise TypeError(
                f"consumer must have ack (pipeline_checkpoint.Consumer), "
                f"not {type(consumer).__name__}"
            )
        lowered = _wit.lower_options(options)
        instance = _runtime(runtime).instantiate(
            Host(storage, consumer if consumer is not None else NullConsumer())
        )
        # The component checks the options against this instance's memory limit.
        handle = instance.call_result(
            CHECKPOINTER, "[static]checkpointer.open", lowered, instance.runtime.max_memory_bytes
        )
        return cls(instance, handle)

    def _call(self, name: str, *args: Any) -> Any:
        # Every method returns a result or a plain value; `call_result` passes the latter on.
        return self._instance.call_result(CHECKPOINTER, name, self._handle, *args)

    def write(self, checkpoint: t.Checkpoint, batch: Iterable[str] = ()) -> t.Receipt:
        """Makes `checkpoint` the durable latest of its (run-id, stage), then acks `batch`.

        Refuses before any write: invalid or too large input, a damaged stored latest
        (`Corrupt`), a move backwards (`Regression`), an older epoch (`Fenced`); `Conflict` when
        the stage changed concurrently; `StorageFailure` when the backend failed (nothing acked;
        retry). An ack failure does not fail the call: see `Receipt.acks`."""
        cp = _wit.lower_checkpoint(checkpoint)
        if not isinstance(batch, (list, tuple, str, bytes)):
            batch = list(batch)  # any iterable of ids; a bare str is refused, not split
        ids = _wit.strings(batch, "batch")
        return _wit.lift_receipt(self._call("[method]checkpointer.write", cp, ids))

    def recover_acks(self, run_id: str, stage: str) -> t.AckOutcome:
        """Acks again the ids stored with the checkpoint `resume_point` would resume from (the
        batch of the write that made it): repairs a crash between a commit and its acks. Acks
        are idempotent, so this is harmless when they went through. `Acked(0)` when nothing is
        stored. Fails like `resume_point`; never writes."""
        return _wit.lift_ack_outcome(
            self._call("[method]checkpointer.recover-acks", *_ids(run_id, stage))
        )

    def get(self, run_id: str, stage: str) -> t.Checkpoint:
        """The latest checkpoint of (run_id, stage): `NotFound` when none, `Corrupt` when
        damaged. Never writes."""
        return _wit.lift_checkpoint(self._call("[method]checkpointer.get", *_ids(run_id, stage)))

    def resume_point(self, run_id: str, stage: str) -> t.Resume:
        """Where (run_id, stage) should restart, and whether that is the latest checkpoint
        (`Latest`), an older intact one (`Fallback`) or a fresh start (`Fresh`). Never writes."""
        return _wit.lift_resume(
            self._call("[method]checkpointer.resume-point", *_ids(run_id, stage))
        )

    def history(self, run_id: str, stage: str) -> list[t.Checkpoint]:
        """The retained checkpoints of (run_id, stage), oldest first, ending with the latest;
        empty when none. `Corrupt` when one of them is damaged. Read page by page (the
        checkpoints of `history_entries`, as the Rust host's `history`), so a history larger
        than the largest answer the checkpointer serves (a quarter of its memory limit) is read
        all the same; each page reads the latest again, so a writer committing meanwhile may add
        its checkpoints to the end. Never writes."""
        return [entry.checkpoint for entry in self.history_entries(run_id, stage)]

    def history_page(self, run_id: str, stage: str, request: t.HistoryRequest) -> t.HistoryPage:
        """One page of the retained checkpoints of (run_id, stage), oldest first: those after
        `request.after_sequence`, at most `request.max_checkpoints` (at least 1, else
        `InvalidInput`) and `request.max_bytes` (0: the largest page served). The last page ends
        with the latest and has `next_after` None; else ask again from `next_after`. Each entry
        says which checkpoint was a reset, and from where. Never writes."""
        lowered = _wit.lower_history_request(request)
        return _wit.lift_history_page(
            self._call("[method]checkpointer.history-page", *_ids(run_id, stage), lowered)
        )

    def history_entries(self, run_id: str, stage: str) -> list[t.HistoryEntry]:
        """Every retained checkpoint of (run_id, stage) with what is stored beside it, oldest
        first, read page by page (as the Rust host's `history_entries`), so a history larger
        than one answer is read all the same. Each page reads the latest again, so a writer
        committing meanwhile may add its checkpoints to the end. Never writes."""
        run_id, stage = _ids(run_id, stage)
        request = t.HistoryRequest(max_checkpoints=_wit.U32_MAX)
        entries: list[t.HistoryEntry] = []
        while True:
            page = self.history_page(run_id, stage, request)
            entries.extend(page.entries)
            if page.next_after is None:
                return entries
            request = t.HistoryRequest(after_sequence=page.next_after, max_checkpoints=_wit.U32_MAX)

    def get_at(self, run_id: str, stage: str, sequence: int) -> t.Checkpoint:
        """The retained checkpoint of (run_id, stage) with `sequence` (the latest included,
        even when its retained copy is gone). `NotFound` when that sequence is not retained;
        `Corrupt` when its bytes are damaged. Never writes."""
        return _wit.lift_checkpoint(
            self._call(
                "[method]checkpointer.get-at",
                *_ids(run_id, stage),
                _wit.u64(sequence, "sequence"),
            )
        )

    def reset(self, request: t.ResetRequest) -> t.ResetReceipt:
        """Moves (run-id, stage) to `request.watermark`, backwards or forwards, and takes the
        stage over: the reset checkpoint has the next sequence and an epoch above the stored one,
        so every writer of an older epoch is `Fenced` from then on. One conditional commit;
        retention prunes as a write does, savepoints are never touched, nothing is acked.
        `InvalidInput` (field `epoch`) for an epoch not above the stored one; `Corrupt` when the
        stored latest is damaged (restore or delete it first); `Conflict` when a writer committed
        meanwhile (retry)."""
        return _wit.lift_reset_receipt(
            self._call("[method]checkpointer.reset", _wit.lower_reset_request(request))
        )

    def create_savepoint(
        self, run_id: str, stage: str, name: str, sequence: int | None = None
    ) -> t.SavepointInfo:
        """Pins a checkpoint of (run_id, stage) under `name` (1 to 128 bytes): the latest, or the
        retained one with `sequence`. Retention, writes, resets and `delete` never remove it.
        Creating the same savepoint again is harmless; another checkpoint under a taken name is
        `InvalidInput` (field `name`). `NotFound` when the stage (or that sequence) is not
        stored."""
        return _wit.lift_savepoint(
            self._call(
                "[method]checkpointer.create-savepoint",
                *_ids(run_id, stage),
                _wit.string(name, "name"),
                _wit.option_u64(sequence, "sequence"),
            )
        )

    def list_savepoints(self, run_id: str, stage: str) -> list[t.SavepointInfo]:
        """The savepoints of (run_id, stage), by name. `Corrupt` when one is damaged."""
        return [
            _wit.lift_savepoint(r)
            for r in self._call("[method]checkpointer.list-savepoints", *_ids(run_id, stage))
        ]

    def get_savepoint(self, run_id: str, stage: str, name: str) -> t.Checkpoint:
        """The checkpoint the savepoint `name` pins; `NotFound` when there is none."""
        return _wit.lift_checkpoint(
            self._call(
                "[method]checkpointer.get-savepoint",
                *_ids(run_id, stage),
                _wit.string(name, "name"),
            )
        )

    def restore_savepoint(
        self, run_id: str, stage: str, name: str, *, at_ms: int, epoch: int | None = None
    ) -> t.ResetReceipt:
        """Resets (run_id, stage) to the savepoint `name`: its watermark, sources, sinks and
        operator states, as `reset` does (same fencing and errors; `epoch` None: the stored one
        + 1), recording the savepoint's name in the reset's origin. `at_ms` becomes the reset
        checkpoint's `at_ms`."""
        return _wit.lift_reset_receipt(
            self._call(
                "[method]checkpointer.restore-savepoint",
                *_ids(run_id, stage),
                _wit.string(name, "name"),
                _wit.option_u64(epoch, "epoch"),
                _wit.u64(at_ms, "at-ms"),
            )
        )

    def delete_savepoint(self, run_id: str, stage: str, name: str) -> bool:
        """Removes the savepoint `name`; True when it existed (False: nothing to do, safe to
        repeat)."""
        return self._call(
            "[method]checkpointer.delete-savepoint", *_ids(run_id, stage), _wit.string(name, "name")
        )

    def list_stages(self, run_id: str | None = None) -> list[t.StageSummary]:
        """Every stage stored in this namespace (of one run, when given), ordered by run and
        stage, with its latest position. A damaged latest is reported in its summary
        (`damage`), not raised, so that an operator sees every stage. Never writes."""
        return [
            _wit.lift_stage_summary(r)
            for r in self._call(
                "[method]checkpointer.list-stages", _wit.option_string(run_id, "run-id")
            )
        ]

    def export_stage(self, run_id: str, stage: str) -> t.StageExport:
        """Everything stored for (run_id, stage), as stored: the latest, the retained copies and
        the savepoints (`import_stage` recreates it in another store or namespace; `ckpt copy`
        does both). Checks every entry first, so that damage is not copied: `Corrupt` when one
        is damaged or misplaced. `NotFound` when nothing is stored; `InvalidInput` (field
        `stage`) when the stage's bytes exceed the largest answer (a quarter of the memory
        limit): open with a larger `Runtime(max_memory_bytes=...)`. Never writes."""
        return _wit.lift_stage_export(
            self._call("[method]checkpointer.export-stage", *_ids(run_id, stage))
        )

    def import_stage(
        self, exported: t.StageExport, replace_older: bool = False, dry_run: bool = False
    ) -> t.ImportReceipt:
        """Recreates an exported stage in this checkpointer's store and namespace, byte for
        byte, as one conditional commit: puts every entry not already here with the same bytes
        and, when the export has a latest, removes retained copies it does not hold. Savepoints
        here under other names stay. Importing the same export again is `IDENTICAL` and writes
        nothing.

        Refuses, writing nothing: an export too large or with an entry twice (`InvalidInput`,
        field `exported`); an entry that does not decode or belong to the export (`Corrupt`);
        a latest here of a later epoch (`Fenced`) or, if different, of the same or a later
        sequence (`Regression`); a damaged latest here (`Corrupt`); a savepoint here with the
        same name and other bytes (`InvalidInput`, field `savepoints`); an older latest here
        without `replace_older` (`InvalidInput`, field `replace-older`). `Conflict` when a
        writer changed the stage meanwhile (export and import again). With `dry_run` it
        refuses the same way and answers what it would do, writing nothing. Acks nothing."""
        lowered = _wit.lower_stage_export(exported)
        return _wit.lift_import_receipt(
            self._call(
                "[method]checkpointer.import-stage",
                lowered,
                _wit.boolean(replace_older, "replace-older"),
                _wit.boolean(dry_run, "dry-run"),
            )
        )

    def delete(self, run_id: str, stage: str) -> int:
        """Removes every checkpoint of (run_id, stage) in one commit; returns how many entries
        were removed. Also forgets the stage's epoch: only delete a stage no writer uses (to move
        a live stage, `reset` it). Savepoints are kept: remove them with `delete_savepoint`."""
        return self._call("[method]checkpointer.delete", *_ids(run_id, stage))

    def open_driver(self, options: t.DriverOptions) -> "Driver":
        """Opens a driver for one (run-id, stage) on this checkpointer's instance. Fails like
        `resume_point`, and with `Fenced` when `options.epoch` is below the stored one. Then
        acks again the ids stored with the checkpoint it resumes from (`recovered_acks` tells
        how that went; a failure does not fail the open: they are re-sent with the next
        checkpoint)."""
        handle = self._call("[method]checkpointer.open-driver", _wit.lower_driver_options(options))
        return Driver(self, handle)

    def close(self) -> None:
        """Drops the instance at once (no guest code runs; a driver's pending messages are
        lost). Later calls raise `ComponentFailure`."""
        self._instance.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Driver:
    """Turns processed messages into checkpoints by policy, acking each message once a durable
    checkpoint covers it. Lives in its checkpointer's instance (`driver.checkpointer`).

    Two ways to feed it: `record_processed` for a log read in order by one worker with no state;
    `begin` / `complete` / `flush(now_ms, state)` for everything else (queues that redeliver,
    partitions, workers that finish out of order, operator state and sinks). At a crash, every
    message taken and not yet covered by a durable checkpoint was never acked: the source
    delivers it again and the next driver admits it."""

    def __init__(self, checkpointer: Checkpointer, handle: Any) -> None:
        self.checkpointer = checkpointer
        self._handle = handle

    def _call(self, name: str, *args: Any) -> Any:
        if self._handle is None:
            raise ComponentFailure("this driver was closed; open a new one")
        return self.checkpointer._instance.call_result(CHECKPOINTER, name, self._handle, *args)

    def close(self) -> None:
        """Frees the driver inside the component (its changelog and pending messages; nothing
        is flushed or acked). The checkpointer stays open. Later calls raise
        `ComponentFailure`. A driver that is only dropped keeps its guest memory until its
        checkpointer is closed."""
        handle, self._handle = self._handle, None
        instance = self.checkpointer._instance
        if handle is None or instance.store is None or instance.failure is not None:
            return
        try:
            instance.drop_resource(handle)
        except wasmtime.WasmtimeError as e:
            instance.failure = f"dropping a driver: {e}".splitlines()[0]
            raise ComponentFailure(f"dropping the driver failed: {e}") from e

    def __enter__(self) -> "Driver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resumed_from(self) -> t.Resume:
        """Where this driver resumed: read input from `point.watermark.offset` (and each
        source's position in `checkpoint.sources`); restore state from `checkpoint`."""
        return _wit.lift_resume(self._call("[method]driver.resumed-from"))

    def recovered_acks(self) -> t.AckOutcome:
        """What became of the acks that opening this driver sent again for the checkpoint it
        resumed from (`Acked(0)` when it stored no ids)."""
        return _wit.lift_ack_outcome(self._call("[method]driver.recovered-acks"))

    def cursor(self) -> t.ResumePoint:
        """The sequence, epoch and watermark of the last durable checkpoint this driver knows."""
        return _wit.lift_point(self._call("[method]driver.cursor"))

    def record_processed(self, message: t.ProcessedMessage, now_ms: int) -> t.Progress:
        """Records one processed message; writes a checkpoint when the policy says so
        (`Checkpointed`), else `Pending(n)`. `now_ms` becomes the checkpoint's `at_ms`. On a
        failed write the messages stay pending: `flush` retries."""
        return _wit.lift_progress(
            self._call(
                "[method]driver.record-processed",
                _wit.lower_message(message),
                _wit.u64(now_ms, "now-ms"),
            )
        )

    def record_processed_batch(
        self, messages: Sequence[t.ProcessedMessage], now_ms: int
    ) -> t.BatchProgress:
        """Records messages in order, as `record_processed` would, in one call. Stops at the
        first error; messages before it keep their effect."""
        lowered = [
            _wit.lower_message(m, f"messages[{i}]")
            for i, m in enumerate(_wit.sequence_of(messages, "messages"))
        ]
        return _wit.lift_batch_progress(
            self._call("[method]driver.record-processed-batch", lowered, _wit.u64(now_ms, "now-ms"))
        )

    def begin(self, message: t.Message) -> t.Admission:
        """Takes a message before it is processed: `Admitted(ticket)` (process it, then
        `complete(ticket)`), `Covered(acks)` (a durable checkpoint covers it already: skip it;
        it was acked now) or `Backpressure(n)` (the `max_in_flight` cap: complete and flush
        earlier work, then offer it again). `Regression` for a message at or below the position
        of one taken and not yet durable, or with the id of one in flight. Acks covered messages
        only; no other storage call."""
        return _wit.lift_admission(
            self._call("[method]driver.begin", _wit.lower_source_message(message))
        )

    def complete(self, ticket: int) -> t.Completion:
        """Marks a taken message done, in any order. Returns the tickets released with this call
        (their input's completed prefix, oldest first: apply their effects in that order before
        the next `flush`) and whether a checkpoint is `due`. Never does I/O; an unknown or
        already completed ticket is `InvalidInput` (field `ticket`)."""
        return _wit.lift_completion(
            self._call("[method]driver.complete", _wit.u64(ticket, "ticket"))
        )

    def flush(self, now_ms: int, state: t.StageState | None = None) -> t.Progress:
        """Writes a checkpoint covering every released message (and the pending ones of
        `record_processed`), then acks them. With `state`, the checkpoint carries it (and later
        ones too, until the next state); without, the last one given (or the resumed
        checkpoint's). `Pending(0)` and no storage call when nothing is released and the state
        is unchanged. On a failed write nothing is lost from the driver: flush again."""
        lowered = _wit.lower_stage_state(state)
        return _wit.lift_progress(
            self._call("[method]driver.flush", lowered, _wit.u64(now_ms, "now-ms"))
        )

    def changelog(self) -> t.Changelog:
        """A copy of the driver's recent events."""
        return _wit.lift_changelog(self._call("[method]driver.changelog"))


class Codec:
    """The checkpoint binary format, run by the component: encode, decode, validate, sign.

    Has its own instance over an empty dict store; it does no I/O. The codec holds no state, so
    after a trap (say, a decode past the memory limit) that call raises `ComponentFailure` and
    the next call runs in a fresh instance."""

    def __init__(self, *, runtime: Runtime | str | os.PathLike[str] | None = None) -> None:
        self._runtime = _runtime(runtime)
        self._instance = self._new_instance()

    def _new_instance(self) -> Instance:
        return self._runtime.instantiate(Host(DictStorage(), NullConsumer()))

    def _call(self, name: str, *args: Any) -> Any:
        if self._instance.failure is not None:
            self._instance = self._new_instance()
        return self._instance.call_result(CODEC, name, *args)

    def encode(self, checkpoint: t.Checkpoint) -> bytes:
        """The canonical bytes of `checkpoint`; `InvalidInput` when `validate` would fail."""
        return bytes(self._call("encode", _wit.lower_checkpoint(checkpoint)))

    def decode(self, data: bytes) -> t.Checkpoint:
        """Decodes bytes made by `encode`; `Corrupt` naming the damage otherwise."""
        return _wit.lift_checkpoint(self._call("decode", _wit.byte_string(data, "bytes")))

    def validate(self, checkpoint: t.Checkpoint) -> None:
        """Checks the rules of a checkpoint without I/O; `InvalidInput` names the first broken."""
        self._call("validate", _wit.lower_checkpoint(checkpoint))

    def chain_signature(self, checkpoints: Sequence[t.Checkpoint]) -> str:
        """Lowercase hex SHA-256 of the chain (see `wit/codec.wit`); equal on every host."""
        return self._call("chain-signature", _wit.lower_checkpoints(checkpoints))

    def resume_point_for_stage(self, checkpoints: Sequence[t.Checkpoint], stage: str) -> t.ResumePoint:
        """The resume point of `stage` from a list: the highest sequence of that stage.
        `NotFound` when none; `InvalidInput` when two differ at the highest sequence."""
        return _wit.lift_point(
            self._call(
                "resume-point-for-stage",
                _wit.lower_checkpoints(checkpoints),
                _wit.string(stage, "stage"),
            )
        )

    def describe(self, error: CheckpointError) -> str:
        """The component's one line for people about `error` (`codec.describe`): what happened
        and what to do. The text every `CheckpointError` carries, the same in every host."""
        if not isinstance(error, CheckpointError):
            raise TypeError(f"error must be a CheckpointError, not {type(error).__name__}")
        try:
            value = _wit.lower_error(error)
        except ValueError as e:
            raise InvalidInput("error", str(e)) from None
        return self._call("describe", value)

    def watermark_label(self, watermark: t.Watermark) -> str:
        """One stable line about a watermark (FORMAT.md "Labels"), the same in every host:
        `offset 42, event time 2024-12-03T15:16:23.000Z` (milliseconds outside years 0 to
        9999)."""
        return self._call("watermark-label", _wit.lower_watermark(watermark, "watermark"))

    def checkpoint_label(self, checkpoint: t.Checkpoint) -> str:
        """One stable line about a checkpoint: run and stage quoted (escaped like JSON strings),
        sequence, epoch, watermark, the counts of sources, sinks and operator states, and the
        encoded size."""
        return self._call("checkpoint-label", _wit.lower_checkpoint(checkpoint))

    def resume_point_label(self, point: t.ResumePoint) -> str:
        """One stable line about a resume point: where the stage restarts and from which
        checkpoint, or that it starts fresh (sequence 0)."""
        return self._call("resume-point-label", _wit.lower_point(point))


__all__ = ["Checkpointer", "Codec", "ComponentFailure", "Driver"]
