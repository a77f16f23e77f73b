"""Exceptions: one per case of the WIT `error` variant, the errors a store raises, and the one
for a component that could not run a call.

- `CheckpointError` and its subclasses are answers of the component: the call completed and
  refused. Each says what to do (see the class docs, taken from `wit/types.wit`). Their text
  (`str(exc)`) is the component's own (`codec.describe`), the same words the Rust and Node hosts
  show; this module writes none of it. The payload is on the exception as attributes.
- `StorageError` and its subclasses are what a `Storage` implementation raises when the backend
  itself fails; the component then answers `StorageFailure` for the call.
- `ComponentFailure` means the call did not complete (a trap, the deadline, or a component that
  could not be loaded); `Deadline`, `MemoryLimit`, `Trap` and `Unusable` are its cases, named as
  in the Rust host's `RuntimeErrorKind`. A checkpointer that raised it once refuses further
  calls: open a new one.
"""

from __future__ import annotations

from .types import Corruption, FencedInfo, RegressionInfo, TooLargeInfo


class CheckpointError(Exception):
    """A refusal of the component. `case` is the WIT case name (`invalid`, `not-found`, ...).

    `str(exc)` is the component's description of the error (`codec.describe`). Raised from a
    call, it comes from the instance that answered; an exception made by hand (or by the adapter,
    for a value the WIT cannot carry) asks the component for it when it is made, unless
    `text` is given."""

    case: str = ""

    def __init__(self, text: str | None) -> None:
        super().__init__(text if text is not None else _describe(self))


def _describe(error: CheckpointError) -> str:
    # Late import: `_runtime` imports this module.
    from ._runtime import describe_error

    return describe_error(error)


class InvalidInput(CheckpointError, ValueError):
    """The input breaks a rule; nothing was read or written. Fix the input.

    Also raised by the adapter, before any call into the component, for values the WIT types
    cannot carry (an int out of range, a string that is not valid Unicode).
    """

    case = "invalid"

    def __init__(self, field: str, reason: str, *, text: str | None = None) -> None:
        self.field = field
        self.reason = reason
        super().__init__(text)


class Regression(CheckpointError):
    """The write would move the stage backwards; nothing written or acked. Do not retry: call
    `resume_point` and continue from there."""

    case = "regression"

    def __init__(self, info: RegressionInfo, *, text: str | None = None) -> None:
        self.info = info
        self.stored_sequence = info.stored_sequence
        self.stored_watermark = info.stored_watermark
        self.attempted_sequence = info.attempted_sequence
        self.attempted_watermark = info.attempted_watermark
        self.field = info.field
        super().__init__(text)


class Fenced(CheckpointError):
    """A writer with a newer epoch owns the stage; nothing written or acked. Stop this writer."""

    case = "fenced"

    def __init__(self, info: FencedInfo, *, text: str | None = None) -> None:
        self.info = info
        self.stored_epoch = info.stored_epoch
        self.attempted_epoch = info.attempted_epoch
        super().__init__(text)


class Conflict(CheckpointError):
    """The stage changed between read and commit; nothing written or acked. Re-read and retry.
    `message` is the payload (what changed)."""

    case = "conflict"

    def __init__(self, message: str, *, text: str | None = None) -> None:
        self.message = message
        super().__init__(text)


class NotFound(CheckpointError):
    """Nothing is stored for this (run-id, stage), or a list had no checkpoint of the stage."""

    case = "not-found"

    def __init__(self, *, text: str | None = None) -> None:
        super().__init__(text)


class Corrupt(CheckpointError):
    """Stored or given bytes are damaged; nothing written or acked. Never start from zero: use
    `resume_point` (it falls back to an intact retained checkpoint) or repair the data."""

    case = "corrupt"

    def __init__(self, corruption: Corruption, *, text: str | None = None) -> None:
        self.corruption = corruption
        self.kind = corruption.kind
        self.key = corruption.key
        self.detail = corruption.detail
        super().__init__(text)


class StorageFailure(CheckpointError):
    """The storage backend failed; nothing was acked. Retry the same write (a committed one is
    accepted as a replay). `message` is the payload (the host's message)."""

    case = "storage"

    def __init__(self, message: str, *, text: str | None = None) -> None:
        self.message = message
        super().__init__(text)


class TooLarge(CheckpointError):
    """The encoded checkpoint is over the configured limit; nothing written. Shrink the operator
    state or raise `max_checkpoint_bytes`."""

    case = "too-large"

    def __init__(self, info: TooLargeInfo, *, text: str | None = None) -> None:
        self.info = info
        self.size = info.size
        self.limit = info.limit
        super().__init__(text)


class BrokenStore(CheckpointError):
    """The store answered outside the storage contract (`wit/storage.wit`): a found entry with
    version 0, a `committed` list of the wrong length or with a wrong version for a put or a
    delete, a conflict at a write that does not exist or has no condition, listed keys outside
    the prefix or out of order. Found by the component, the same in every host. Nothing was
    acked (a commit the store answered wrongly may have been applied). Do not retry on this
    store: fix or replace it, then call `resume_point`. `message` is the payload (the operation
    and the broken rule)."""

    case = "broken-store"

    def __init__(self, message: str, *, text: str | None = None) -> None:
        self.message = message
        super().__init__(text)


class ComponentFailure(RuntimeError):
    """The component could not run the call (trap, deadline, or load/instantiation failure).
    The checkpointer, driver or codec that raised it refuses further calls: open a new one.

    `kind` names the case as the Rust host's `RuntimeErrorKind` does: `"Deadline"`,
    `"MemoryLimit"`, `"Trap"` and `"Unusable"` (each with its own subclass), `"Load"`,
    `"Instantiate"`; `None` for a closed handle or a re-entrant call."""

    kind: str | None = None

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class Deadline(ComponentFailure):
    """The call ran past the runtime's `call_deadline_s` (time in store and consumer callbacks
    counts) and was interrupted. Open a new handle; a store call that hangs is the usual
    cause."""

    kind = "Deadline"


class MemoryLimit(ComponentFailure):
    """The call trapped after the runtime's `max_memory_bytes` refused to grow the instance's
    memory. Lower the size limits in the options, or raise the memory limit."""

    kind = "MemoryLimit"


class Trap(ComponentFailure):
    """The component trapped for another reason (a bug, or a store that broke its contract).
    Open a new handle; report it if it repeats."""

    kind = "Trap"


class Unusable(ComponentFailure):
    """This handle's instance failed earlier (any of the above) and refuses every call: open a
    new handle."""

    kind = "Unusable"


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
