"""Exceptions: one per case of the WIT `error` variant, the errors a store raises, and the one
for a component that could not run a call.

- `CheckpointError` and its subclasses are answers of the component: the call completed and
  refused. Each says what to do (see the class docs, taken from `wit/types.wit`).
- `StorageError` and its subclasses are what a `Storage` implementation raises when the backend
  itself fails; the component then answers `StorageFailure` for the call.
- `ComponentFailure` means the call did not complete (a trap, or a component that could not be
  loaded). A checkpointer that raised it once refuses further calls: open a new one.
"""

from __future__ import annotations

from .types import Corruption, FencedInfo, RegressionInfo, TooLargeInfo, Watermark


def _wm(w: Watermark) -> str:
    return f"offset {w.offset}, event time {w.event_time_ms}"


class CheckpointError(Exception):
    """A refusal of the component. `case` is the WIT case name (`invalid`, `not-found`, ...)."""

    case: str = ""


class InvalidInput(CheckpointError, ValueError):
    """The input breaks a rule; nothing was read or written. Fix the input.

    Also raised by the adapter, before any call into the component, for values the WIT types
    cannot carry (an int out of range, a string that is not valid Unicode).
    """

    case = "invalid"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid input: `{field}`: {reason}")
        self.field = field
        self.reason = reason


class Regression(CheckpointError):
    """The write would move the stage backwards; nothing written or acked. Do not retry: call
    `resume_point` and continue from there."""

    case = "regression"

    def __init__(self, info: RegressionInfo) -> None:
        super().__init__(
            f"regression: the {info.field} would move backwards (stored sequence "
            f"{info.stored_sequence} at {_wm(info.stored_watermark)}, attempted sequence "
            f"{info.attempted_sequence} at {_wm(info.attempted_watermark)}); continue from the "
            "resume point"
        )
        self.info = info
        self.stored_sequence = info.stored_sequence
        self.stored_watermark = info.stored_watermark
        self.attempted_sequence = info.attempted_sequence
        self.attempted_watermark = info.attempted_watermark
        self.field = info.field


class Fenced(CheckpointError):
    """A writer with a newer epoch owns the stage; nothing written or acked. Stop this writer."""

    case = "fenced"

    def __init__(self, info: FencedInfo) -> None:
        super().__init__(
            f"fenced: the stage is owned by epoch {info.stored_epoch}, this writer has epoch "
            f"{info.attempted_epoch}; stop this writer"
        )
        self.info = info
        self.stored_epoch = info.stored_epoch
        self.attempted_epoch = info.attempted_epoch


class Conflict(CheckpointError):
    """The stage changed between read and commit; nothing written or acked. Re-read and retry."""

    case = "conflict"

    def __init__(self, message: str) -> None:
        super().__init__(f"conflict: {message}; re-read the stage and retry")
        self.message = message


class NotFound(CheckpointError):
    """Nothing is stored for this (run-id, stage), or a list had no checkpoint of the stage."""

    case = "not-found"

    def __init__(self) -> None:
        super().__init__("not found: nothing is stored for this run and stage")


class Corrupt(CheckpointError):
    """Stored or given bytes are damaged; nothing written or acked. Never start from zero: use
    `resume_point` (it falls back to an intact retained checkpoint) or repair the data."""

    case = "corrupt"

    def __init__(self, corruption: Corruption) -> None:
        where = f" at key {corruption.key!r}" if corruption.key else ""
        super().__init__(f"corrupt ({corruption.kind.value}){where}: {corruption.detail}")
        self.corruption = corruption
        self.kind = corruption.kind
        self.key = corruption.key
        self.detail = corruption.detail


class StorageFailure(CheckpointError):
    """The storage backend failed; nothing was acked. Retry the same write (a committed one is
    accepted as a replay)."""

    case = "storage"

    def __init__(self, message: str) -> None:
        super().__init__(f"storage failed: {message}")
        self.message = message


class TooLarge(CheckpointError):
    """The encoded checkpoint is over the configured limit; nothing written. Shrink the operator
    state or raise `max_checkpoint_bytes`."""

    case = "too-large"

    def __init__(self, info: TooLargeInfo) -> None:
        super().__init__(f"too large: {info.size} bytes encoded, the limit is {info.limit}")
        self.info = info
        self.size = info.size
        self.limit = info.limit


class ComponentFailure(RuntimeError):
    """The component could not run the call (trap, or load/instantiation failure). The
    checkpointer, driver or codec that raised it refuses further calls: open a new one."""


# --------------------------------------------------------------------------------------------
# Raised by Storage implementations (the WIT `storage-error` cases).


class StorageError(Exception):
    """A failure of a storage backend itself, raised by a `Storage` method. `case` is the WIT
    `storage-error` case. Any other exception a store raises is reported as `failed`."""

    case = "failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageUnavailable(StorageError):
    """The backend cannot be reached; retrying later may work. Nothing was applied."""

    case = "unavailable"


class StorageTimeout(StorageError):
    """The operation did not finish in time; a commit may or may not have been applied."""

    case = "timeout"


class StorageFailed(StorageError):
    """The backend refused or failed the operation for another reason. Nothing was applied."""

    case = "failed"
