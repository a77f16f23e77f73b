"""Durable checkpoints for stream pipelines: the Python host of the checkpoint component.

The checkpoint logic runs in the WebAssembly component `target/checkpoint.wasm` (the same one
the Rust and Node hosts embed), under wasmtime-py; this package supplies its two imports
(`storage`, `consumer`) and a typed API over its exports (`checkpointer`, `codec`)::

    from checkpoint import Checkpointer, Checkpoint, DictStorage, Options, RecordingConsumer

    consumer = RecordingConsumer()
    cp = Checkpointer.open(DictStorage(), consumer, Options(namespace="orders"))
    cp.write(Checkpoint(run_id="run-1", stage="enrich", sequence=1), ["m-1"])
"""

from ._runtime import Runtime, default_component_path
from .checkpointer import Checkpointer, Codec, Driver
from .consumer import Consumer, NullConsumer, RecordingConsumer
from .errors import (
    CheckpointError,
    ComponentFailure,
    Conflict,
    Corrupt,
    Fenced,
    InvalidInput,
    NotFound,
    Regression,
    StorageError,
    StorageFailed,
    StorageFailure,
    StorageTimeout,
    StorageUnavailable,
    TooLarge,
)
from .storage import DictStorage, SqliteStorage, Storage
from .types import (
    AckFailed,
    Acked,
    AckOutcome,
    BatchProgress,
    ChangeEvent,
    ChangeKind,
    Changelog,
    Checkpoint,
    Checkpointed,
    CommitConflict,
    CommitOutcome,
    Committed,
    Corruption,
    CorruptionKind,
    Delete,
    DriverOptions,
    Entry,
    ExplicitFlush,
    Fallback,
    FencedInfo,
    Fresh,
    InvalidInputInfo,
    Latest,
    OperatorState,
    Options,
    OverflowPolicy,
    Pending,
    PerBatch,
    PerMessage,
    Policy,
    ProcessedMessage,
    Progress,
    Put,
    Receipt,
    RegressionInfo,
    Resume,
    ResumeOrigin,
    ResumePoint,
    SinkPosition,
    SourcePosition,
    TooLargeInfo,
    Watermark,
    Write,
    WriteOp,
)

__all__ = [name for name in dir() if not name.startswith("_")]
