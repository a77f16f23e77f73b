"""Consumers for the component's `consumer` import: where acks go."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable


@runtime_checkable
class Consumer(Protocol):
    """Acknowledges input messages to their source.

    The component calls `ack` only after a checkpoint covering the messages is durable, and
    never with an empty list. It must be idempotent: the same ids may be acked again after a
    retry, a replayed write or a restart. To fail, raise any exception: its message is reported
    in the receipt (`AckFailed`) and the checkpoint stays durable; the checkpointer stays usable.
    """

    def ack(self, message_ids: list[str]) -> None:
        """Acknowledges `message_ids`: the source may forget them."""
        ...


class NullConsumer:
    """Accepts every ack and does nothing with it."""

    def ack(self, message_ids: list[str]) -> None:
        return None


class RecordingConsumer:
    """Records every successful ack, in call order: for tests and demos. Thread-safe."""

    def __init__(self) -> None:
        self._acks: list[list[str]] = []
        self._lock = threading.Lock()

    def ack(self, message_ids: list[str]) -> None:
        with self._lock:
            self._acks.append(list(message_ids))

    @property
    def acks(self) -> list[list[str]]:
        """A copy of the batches acked so far, in call order."""
        with self._lock:
            return [list(batch) for batch in self._acks]

    @property
    def acked_ids(self) -> list[str]:
        """Every acked id, in order (an id acked twice appears twice)."""
        with self._lock:
            return [i for batch in self._acks for i in batch]
