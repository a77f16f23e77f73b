"""Fault-injecting wrappers for tests, as in the Rust `checkpoint_testkit::faults`.

- `FaultyStorage` wraps any `Storage` and, scripted through a `FaultScript`, fails the nth
  `get`, `commit` or `list-keys` call (`unavailable`, `timeout`, `failed`), answers
  `conflict(i)` instead of committing, applies a call and then answers `timeout` (the
  ambiguous case), or applies it and answers outside the storage contract (`break-contract`).
- `FaultyConsumer` wraps any `Consumer` and, scripted through an `AckScript`, fails the nth ack.

The texts of the injected errors are fixed by tests/conformance/README.md ("Scripted faults"),
the same in every host: `injected fault on commit`, `injected fault on get, after the call was
applied`, `injected ack failure`.

Counts are 1-based, from the last `reset()` (or creation), so a test can script "the 2nd commit
of this step" without knowing what ran before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

from .consumer import Consumer
from .errors import StorageError, StorageFailed, StorageTimeout, StorageUnavailable
from .storage import Storage
from .types import CommitConflict, CommitOutcome, Committed, Entry, Write

CALLS = ("get", "commit", "list-keys")
FAULTS = ("unavailable", "timeout", "failed", "conflict", "time-out-after-apply", "break-contract")


@dataclass(frozen=True)
class StorageFault:
    """What a scripted call does: one of `FAULTS`; `index` is the conflict index (clamped to the
    batch's last write). `conflict` on `get`/`list-keys` answers `failed`. A conflict must name
    a write with a condition (in a checkpointer's write, the latest: the last write), or the
    component answers `BrokenStore`, as for any store. `break-contract` makes the call, then
    answers as a buggy store would: `get` the value (empty when missing) with version 0,
    `commit` one version more than the batch has writes, `list-keys` the keys plus `"!"`, which
    lacks the prefix; the component answers `BrokenStore`."""

    kind: str
    index: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"unknown storage fault {self.kind!r} (known: {', '.join(FAULTS)})")


class FaultScript:
    """A script of storage faults, shared between a test and its `FaultyStorage`s."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(CALLS, 0)
        self._faults: dict[tuple[str, int], StorageFault] = {}

    def inject(self, call: str, nth: int, fault: StorageFault) -> None:
        """Makes the `nth` call of `call` (since the last reset) do `fault`; a later
        injection for the same call and nth wins."""
        if call not in CALLS:
            raise ValueError(f"unknown storage call {call!r} (known: {', '.join(CALLS)})")
        with self._lock:
            self._faults[(call, nth)] = fault

    def reset(self) -> None:
        """Forgets every injected fault and restarts the counts."""
        with self._lock:
            self._faults.clear()
            self._counts = dict.fromkeys(CALLS, 0)

    def calls(self, call: str) -> int:
        """How many calls of `call` were made since the last reset."""
        with self._lock:
            return self._counts[call]

    def next(self, call: str) -> StorageFault | None:
        """Counts a call and returns its scripted fault, if any."""
        with self._lock:
            self._counts[call] += 1
            return self._faults.get((call, self._counts[call]))


def _injected(call: str, fault: StorageFault) -> StorageError:
    what = f"injected fault on {call}"
    if fault.kind == "unavailable":
        return StorageUnavailable(what)
    if fault.kind == "timeout":
        return StorageTimeout(what)
    if fault.kind == "time-out-after-apply":
        return StorageTimeout(f"{what}, after the call was applied")
    return StorageFailed(what)


class FaultyStorage:
    """A `Storage` that passes calls to `inner` except where its `FaultScript` says otherwise."""

    def __init__(self, inner: Storage, script: FaultScript | None = None) -> None:
        self.inner = inner
        self.script = script if script is not None else FaultScript()

    def get(self, key: str) -> Entry | None:
        fault = self.script.next("get")
        if fault is None:
            return self.inner.get(key)
        if fault.kind == "break-contract":
            found = self.inner.get(key)
            return Entry(found.value if found is not None else b"", 0)
        if fault.kind == "time-out-after-apply":
            self.inner.get(key)
        raise _injected("get", fault)

    def commit(self, writes: Sequence[Write]) -> CommitOutcome:
        fault = self.script.next("commit")
        if fault is None:
            return self.inner.commit(writes)
        if fault.kind == "conflict":
            return CommitConflict(min(fault.index, max(len(writes) - 1, 0)))
        if fault.kind == "break-contract":
            outcome = self.inner.commit(writes)
            if isinstance(outcome, Committed):
                return Committed((*outcome.versions, max(outcome.versions, default=0) + 1))
            return outcome
        if fault.kind == "time-out-after-apply":
            self.inner.commit(writes)
        raise _injected("commit", fault)

    def list_keys(self, prefix: str) -> list[str]:
        fault = self.script.next("list-keys")
        if fault is None:
            return self.inner.list_keys(prefix)
        if fault.kind == "break-contract":
            return [*self.inner.list_keys(prefix), "!"]
        if fault.kind == "time-out-after-apply":
            self.inner.list_keys(prefix)
        raise _injected("list-keys", fault)


class AckScript:
    """A script of ack failures, shared between a test and its `FaultyConsumer`s."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._fail: set[int] = set()
        self._failed: list[list[str]] = []

    def fail_nth(self, nth: int) -> None:
        """Makes the `nth` ack since the last reset fail."""
        with self._lock:
            self._fail.add(nth)

    def reset(self) -> None:
        """Forgets the scripted failures and restarts the count (the failed log is kept)."""
        with self._lock:
            self._count = 0
            self._fail.clear()

    def calls(self) -> int:
        """How many acks were attempted since the last reset."""
        with self._lock:
            return self._count

    @property
    def failed(self) -> list[list[str]]:
        """Every batch whose ack was made to fail, in order."""
        with self._lock:
            return [list(b) for b in self._failed]

    def next(self, ids: list[str]) -> bool:
        """Counts an ack; True when it must fail (its ids go to the failed log)."""
        with self._lock:
            self._count += 1
            if self._count in self._fail:
                self._failed.append(list(ids))
                return True
            return False


class InjectedAckFailure(Exception):
    """The scripted failure of a `FaultyConsumer`."""


class FaultyConsumer:
    """A `Consumer` that passes acks to `inner` except where its `AckScript` says to fail
    (those ids are not passed on)."""

    def __init__(self, inner: Consumer, script: AckScript | None = None) -> None:
        self.inner = inner
        self.script = script if script is not None else AckScript()

    def ack(self, message_ids: list[str]) -> None:
        if self.script.next(message_ids):
            raise InjectedAckFailure("injected ack failure")
        self.inner.ack(message_ids)
