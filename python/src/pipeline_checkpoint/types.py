"""The records, enums and variants of the WIT package `pipeline:checkpoint@0.1.0`, as Python.

Every WIT record is a frozen dataclass whose fields are the WIT fields in snake_case; every WIT
enum is an `enum.Enum` whose values are the WIT case names; every WIT variant is a small set of
classes (one per case; a case without payload is a class with no fields). Integers are plain
`int`: the adapter checks their range (u32, u64, s64) before a value reaches the component.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Union

# --------------------------------------------------------------------------------------------
# interface types


@dataclass(frozen=True)
class Watermark:
    """How far a stage has read: the next offset to read, and the event time reached."""

    offset: int
    """The next offset to read after the last processed message (u64)."""
    event_time_ms: int
    """Event time in milliseconds since the Unix epoch (s64, negative allowed)."""


@dataclass(frozen=True)
class SourcePosition:
    """The position of one named input of a stage."""

    name: str
    sequence: int
    watermark: Watermark


@dataclass(frozen=True)
class SinkPosition:
    """The position of one named output of a stage."""

    name: str
    position: int


@dataclass(frozen=True)
class OperatorState:
    """Opaque state of one named operator, stored byte for byte."""

    name: str
    state: bytes


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of one stage of one pipeline run (see `wit/types.wit` for every rule).

    Required, as in the Rust and Node hosts: `run_id`, `stage`, `sequence`, `epoch`,
    `watermark`, `at_ms` (positional in that order, or by name). Optional, by name only:
    `sources`, `sinks`, `operator_states` (default empty) and `idempotency_key` (default "")."""

    run_id: str
    stage: str
    sequence: int
    epoch: int
    watermark: Watermark
    sources: tuple[SourcePosition, ...] = field(default=(), kw_only=True)
    sinks: tuple[SinkPosition, ...] = field(default=(), kw_only=True)
    operator_states: tuple[OperatorState, ...] = field(default=(), kw_only=True)
    idempotency_key: str = field(default="", kw_only=True)
    at_ms: int
    """Wall-clock time of the checkpoint, ms since the Unix epoch: the caller's clock (u64)."""

    def __post_init__(self) -> None:
        # Lists given by the caller become tuples, so a checkpoint stays hashable and frozen.
        for name in ("sources", "sinks", "operator_states"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class ResumePoint:
    """Where a stage should restart reading (sequence and epoch are 0 when nothing is stored)."""

    run_id: str
    stage: str
    sequence: int
    epoch: int
    watermark: Watermark


@dataclass(frozen=True)
class InvalidInputInfo:
    """An input that breaks a rule: the field path and what is wrong with it."""

    field: str
    reason: str


@dataclass(frozen=True)
class RegressionInfo:
    """A write that would move a stage backwards."""

    stored_sequence: int
    stored_watermark: Watermark
    attempted_sequence: int
    attempted_watermark: Watermark
    field: str
    """Which rule was broken: `sequence`, `offset` or `event-time`."""


@dataclass(frozen=True)
class FencedInfo:
    """A write from a writer whose epoch is older than the stored one."""

    stored_epoch: int
    attempted_epoch: int


class CorruptionKind(enum.Enum):
    """What is wrong with bytes that failed to decode (values are the WIT case names)."""

    TRUNCATED = "truncated"
    BAD_MAGIC = "bad-magic"
    CRC_MISMATCH = "crc-mismatch"
    UNKNOWN_VERSION = "unknown-version"
    UNKNOWN_FLAGS = "unknown-flags"
    TRAILING_BYTES = "trailing-bytes"
    INVALID_UTF8 = "invalid-utf8"
    MALFORMED = "malformed"
    MISPLACED = "misplaced"


@dataclass(frozen=True)
class Corruption:
    """Damaged or foreign bytes: the kind of damage, the storage key ("" if passed in), details."""

    kind: CorruptionKind
    key: str
    detail: str


@dataclass(frozen=True)
class TooLargeInfo:
    """An encoded checkpoint over the configured limit."""

    size: int
    limit: int


# --------------------------------------------------------------------------------------------
# interface checkpointer


@dataclass(frozen=True)
class Options:
    """How a checkpointer stores checkpoints. Every field is required, as in the Rust and Node
    hosts."""

    namespace: str
    """1 to 64 bytes of `A-Z a-z 0-9 _ - .`."""
    max_retained: int
    """Checkpoints kept per (run-id, stage), at least 1 (u32)."""
    max_checkpoint_bytes: int
    """Largest encoding accepted, in bytes, at least 64 (u32)."""


@dataclass(frozen=True)
class Acked:
    """`ack-outcome.acked`: the consumer acknowledged this many messages (0: empty batch)."""

    count: int


@dataclass(frozen=True)
class AckFailed:
    """`ack-outcome.failed`: the consumer failed with this message; the checkpoint is durable."""

    message: str


AckOutcome = Union[Acked, AckFailed]


@dataclass(frozen=True)
class Receipt:
    """Proof that a checkpoint is durable, and what became of its acks."""

    sequence: int
    version: int
    replayed: bool
    pruned: int
    acks: AckOutcome


@dataclass(frozen=True)
class Latest:
    """`resume-origin.latest`: the latest checkpoint, intact."""


@dataclass(frozen=True)
class Fallback:
    """`resume-origin.fallback`: the latest is damaged or missing; these newer ones were skipped."""

    skipped: tuple[Corruption, ...]


@dataclass(frozen=True)
class Fresh:
    """`resume-origin.fresh`: nothing is stored; start from offset 0."""


ResumeOrigin = Union[Latest, Fallback, Fresh]


@dataclass(frozen=True)
class Resume:
    """A resume point, where it comes from, and the whole checkpoint it comes from."""

    point: ResumePoint
    origin: ResumeOrigin
    checkpoint: Checkpoint | None = None
    """The checkpoint the point comes from (the fallback one after a fallback); `None` when
    `Fresh`. Restore operator state, sink and source positions from it, so that state and
    position always come from the same checkpoint."""


@dataclass(frozen=True)
class PerMessage:
    """`policy.per-message`: checkpoint after every processed message."""


@dataclass(frozen=True)
class PerBatch:
    """`policy.per-batch(n)`: checkpoint after every n processed messages (n >= 1)."""

    n: int


@dataclass(frozen=True)
class ExplicitFlush:
    """`policy.explicit-flush`: checkpoint only when `flush` is called."""


Policy = Union[PerMessage, PerBatch, ExplicitFlush]


class OverflowPolicy(enum.Enum):
    """What a driver's changelog does when full."""

    DROP_NEW = "drop-new"
    OVERWRITE_OLDEST = "overwrite-oldest"


@dataclass(frozen=True)
class DriverOptions:
    """How to run a driver for one (run-id, stage). Required, as in the Node host: `run_id`,
    `stage`, `epoch`, `policy`; optional: `changelog_capacity` (default 0: no changelog),
    `overflow` (default `DROP_NEW`) and `max_in_flight` (default 1024)."""

    run_id: str
    stage: str
    epoch: int
    policy: Policy
    changelog_capacity: int = 0
    overflow: OverflowPolicy = OverflowPolicy.DROP_NEW
    max_in_flight: int = 1024
    """Most messages taken (by `begin` or `record_processed`) and not yet covered by a durable
    checkpoint, 1 to 4096 (u32). At the cap `begin` answers `Backpressure`. A `PerBatch(n)`
    above it is `InvalidInput`."""


@dataclass(frozen=True)
class Message:
    """One message from a source, before it is processed (`Driver.begin`). Required: `id`;
    optional: `source` ("" for a stage with one input), `offset` (`None` for a queue without
    positions: its redeliveries are recognised by id) and `event_time_ms` (0)."""

    id: str
    """Id to ack once a durable checkpoint covers it (a stream entry id, a delivery tag)."""
    source: str = ""
    """The input (partition, stream) it comes from; its position is kept in the checkpoint's
    `sources` under this name. "": the stage's own input, whose position is the `watermark`."""
    offset: int | None = None
    """The message's own position in its input (not the next one), u64; `None`: no position."""
    event_time_ms: int = 0
    """Event time in milliseconds (s64)."""


@dataclass(frozen=True)
class Admitted:
    """`admission.admitted(ticket)`: process the message, then `Driver.complete(ticket)`."""

    ticket: int


@dataclass(frozen=True)
class Covered:
    """`admission.covered` / `progress.covered`: a durable checkpoint already covers the message
    (a redelivery): do not process it again. It has been acked now, with this outcome."""

    acks: AckOutcome


@dataclass(frozen=True)
class Backpressure:
    """`admission.backpressure(n)`: n messages are taken and not yet durable (the cap). The
    message was not taken: complete and flush earlier work, then offer it again."""

    in_flight: int


Admission = Union[Admitted, Covered, Backpressure]


@dataclass(frozen=True)
class Completion:
    """What `Driver.complete` did: the tickets released with this call, oldest first (apply
    their effects in this order before the next `flush`), and whether a checkpoint is due."""

    released: tuple[int, ...]
    due: bool


@dataclass(frozen=True)
class StageState:
    """The state a checkpoint carries besides its position (`Driver.flush(now_ms, state)`)."""

    sinks: tuple[SinkPosition, ...] = ()
    operator_states: tuple[OperatorState, ...] = ()

    def __post_init__(self) -> None:
        for name in ("sinks", "operator_states"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))


@dataclass(frozen=True)
class ProcessedMessage:
    """One processed message: its id, the offset after it, and its event time."""

    id: str
    next_offset: int
    event_time_ms: int = 0


@dataclass(frozen=True)
class Pending:
    """`progress.pending(n)`: no checkpoint written; n messages wait for one."""

    count: int


@dataclass(frozen=True)
class Checkpointed:
    """`progress.checkpointed(receipt)`: a checkpoint was written and its messages acked."""

    receipt: Receipt


Progress = Union[Pending, Checkpointed, Covered]


@dataclass(frozen=True)
class BatchProgress:
    """The checkpoints a batch of messages caused, in order, how many messages still wait, and
    how many a durable checkpoint already covered (acked, not recorded)."""

    checkpoints: tuple[Receipt, ...]
    pending: int
    covered: int = 0


class ChangeKind(enum.Enum):
    """The kind of a changelog event."""

    PROCESSED = "processed"
    WATERMARK = "watermark"
    CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class ChangeEvent:
    """One event in a driver's changelog."""

    kind: ChangeKind
    sequence: int
    watermark: Watermark


@dataclass(frozen=True)
class Changelog:
    """A copy of a driver's changelog: events oldest first, overflow count and capacity."""

    events: tuple[ChangeEvent, ...]
    overflow_count: int
    capacity: int


# --------------------------------------------------------------------------------------------
# interface checkpointer: operator tools (reset, savepoints, paged history, stage listing)


@dataclass(frozen=True)
class ResetOrigin:
    """Where a reset moved a stage from. Stored beside the reset checkpoint (not part of it:
    `get` and `Codec.encode` leave it out), so the history says which checkpoint was a reset."""

    from_sequence: int
    """Sequence of the latest before the reset; 0 when nothing was stored."""
    from_epoch: int
    """Epoch of the latest before the reset (the owner the reset fenced); 0 when nothing was
    stored."""
    from_watermark: Watermark
    """Watermark of the latest before the reset."""
    savepoint: str | None = None
    """The savepoint the reset restored; `None` for a reset to a given position."""


@dataclass(frozen=True)
class ResetRequest:
    """A deliberate move of a stage's position, backwards or forwards (`Checkpointer.reset`).

    Required: `run_id`, `stage`, `watermark` (positional in that order, or by name) and `at_ms`
    (the reset checkpoint's `at_ms`). Optional, by name only: `sources` (the named inputs'
    positions, replacing the stored ones; default empty), `state` (`None`, the default, keeps
    the stored latest's sinks and operator states) and `epoch` (`None`, the default: the stored
    epoch + 1; else above the stored one)."""

    run_id: str
    stage: str
    watermark: Watermark
    """The position to resume from (every field may go backwards)."""
    sources: tuple[SourcePosition, ...] = field(default=(), kw_only=True)
    state: StageState | None = field(default=None, kw_only=True)
    epoch: int | None = field(default=None, kw_only=True)
    at_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.sources, tuple):
            object.__setattr__(self, "sources", tuple(self.sources))


@dataclass(frozen=True)
class ResetReceipt:
    """What a reset did: the reset checkpoint (now the durable latest), the storage version of
    the latest after it, how many retained copies it pruned, and where the stage was before."""

    checkpoint: Checkpoint
    version: int
    pruned: int
    origin: ResetOrigin


@dataclass(frozen=True)
class HistoryRequest:
    """A page of a stage's history (`Checkpointer.history_page`).

    Required: `max_checkpoints` (at least 1; positional, or by name). Optional, by name only:
    `after_sequence` (start after this sequence; default 0, from the oldest retained) and
    `max_bytes` (at most this many encoded bytes, a page holds at least one checkpoint; default
    0: the largest page the checkpointer serves, a quarter of its memory limit)."""

    after_sequence: int = field(default=0, kw_only=True)
    max_checkpoints: int
    max_bytes: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class HistoryEntry:
    """One retained checkpoint with what is stored beside it."""

    checkpoint: Checkpoint
    encoded_bytes: int
    """Its encoded size in bytes (as `Codec.encode` gives it)."""
    reset: ResetOrigin | None = None
    """Set when this checkpoint is a reset: where the stage was before."""


@dataclass(frozen=True)
class HistoryPage:
    """One page of history, oldest first; the last page ends with the latest."""

    entries: tuple[HistoryEntry, ...]
    next_after: int | None = None
    """Ask again with `after_sequence` set to this for the next page; `None` on the last."""


@dataclass(frozen=True)
class SavepointInfo:
    """A named, pinned copy of one checkpoint of a stage: retention, writes, resets and `delete`
    never remove it; only `delete_savepoint` does."""

    name: str
    point: ResumePoint
    """The pinned checkpoint's position."""
    at_ms: int
    encoded_bytes: int


@dataclass(frozen=True)
class StageSummary:
    """What is stored for one stage (`Checkpointer.list_stages`)."""

    run_id: str
    stage: str
    latest: ResumePoint | None
    """The latest's position; `None` when the stage holds only savepoints, or its latest is
    damaged (`damage`)."""
    at_ms: int
    """The latest's `at_ms`; 0 when `latest` is `None`."""
    encoded_bytes: int
    """The latest's encoded size; 0 when `latest` is `None`."""
    reset: ResetOrigin | None
    """Set when the latest is a reset."""
    damage: Corruption | None
    """Set when the latest is damaged: `resume_point` will fall back or fail."""
    retained: int
    """How many retained copies are stored."""
    savepoints: int
    """How many savepoints are stored."""


@dataclass(frozen=True)
class StoredCopy:
    """One retained copy of a stage, as stored."""

    sequence: int
    """The sequence its key names (u64)."""
    bytes: bytes
    """The stored bytes (the checkpoint with what is stored beside it)."""


@dataclass(frozen=True)
class StoredSavepoint:
    """One savepoint of a stage, as stored."""

    name: str
    bytes: bytes
    """The stored bytes."""


@dataclass(frozen=True)
class StageExport:
    """Everything stored for one stage, byte for byte (`Checkpointer.export_stage`), so that
    `Checkpointer.import_stage` recreates it in another store or namespace with its sequences,
    epochs, stored ack ids and reset records unchanged.

    Required: `run_id`, `stage`, `latest` (positional in that order, or by name). Optional, by
    name only: `retained` and `savepoints` (default empty)."""

    run_id: str
    stage: str
    latest: bytes | None
    """The latest's stored bytes; `None` when the stage holds only savepoints."""
    retained: tuple[StoredCopy, ...] = field(default=(), kw_only=True)
    """The retained copies, oldest first."""
    savepoints: tuple[StoredSavepoint, ...] = field(default=(), kw_only=True)
    """The savepoints, by name."""

    def __post_init__(self) -> None:
        for name in ("retained", "savepoints"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))


class ImportAction(enum.Enum):
    """What `Checkpointer.import_stage` did (or, for a dry run, would do) to the stage."""

    CREATED = "created"
    """Nothing of the stage was stored here: created."""
    REPLACED = "replaced"
    """This store held the stage at an older sequence (or part of it): replaced."""
    IDENTICAL = "identical"
    """Every entry was here already with the same bytes: nothing written."""


@dataclass(frozen=True)
class ImportReceipt:
    """What an import wrote (for a dry run: would write)."""

    action: ImportAction
    keys_written: int
    """Entries put (latest, retained copies, savepoints)."""
    keys_removed: int
    """Retained copies of the replaced chain removed (the export does not hold them)."""
    bytes_written: int
    """Bytes put."""


# --------------------------------------------------------------------------------------------
# interface storage (what a Storage implementation receives and returns)


@dataclass(frozen=True)
class Entry:
    """A stored value and its current version (at least 1)."""

    value: bytes
    version: int


@dataclass(frozen=True)
class Put:
    """`write-op.put`: store these bytes, replacing any value."""

    value: bytes


@dataclass(frozen=True)
class Delete:
    """`write-op.delete`: remove the key; removing an absent key is not an error."""


WriteOp = Union[Put, Delete]


@dataclass(frozen=True)
class Write:
    """One write of a batch: key, condition (`None`: unconditional; 0: must be absent), change."""

    key: str
    expected_version: int | None
    op: WriteOp


@dataclass(frozen=True)
class Committed:
    """`commit-outcome.committed`: every write applied; one new version per write (0: delete)."""

    versions: tuple[int, ...]


@dataclass(frozen=True)
class CommitConflict:
    """`commit-outcome.conflict(i)`: the condition of write i failed; nothing was applied."""

    index: int


CommitOutcome = Union[Committed, CommitConflict]
