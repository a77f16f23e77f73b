"""A store that answers outside the storage contract (`wit/storage.wit`) gets `BrokenStore`,
found by the component itself (the same answer in every host): never a trap, never a
`StorageFailure`, and nothing is acked. One test per kind of breach."""

from __future__ import annotations

import pytest

from pipeline_checkpoint import (
    BrokenStore,
    Checkpoint,
    Checkpointer,
    Codec,
    CommitConflict,
    Committed,
    Entry,
    Options,
    RecordingConsumer,
    Watermark,
)
from conftest import Lying

OPTIONS = Options(namespace="test", max_retained=3, max_checkpoint_bytes=65536)


def cp(sequence: int) -> Checkpoint:
    return Checkpoint("run", "stage", sequence, 1, Watermark(sequence * 10, 0), 0)


# (call that lies, its nth call, the lie, what the component's message says). The first write
# of a checkpointer with max_retained 3 calls get (latest), list-keys (retained copies), then
# commits [history put, latest put]; the 4th write also deletes the oldest retained copy:
# [history put, delete, latest put].
BREACHES = {
    "get: an entry with version 0": (
        "get", 1, lambda key: Entry(b"\x00", 0), "found key",
    ),
    "commit: fewer versions than writes": (
        "commit", 1, lambda writes: Committed(()), "answered 0 versions for a batch of 2 writes",
    ),
    "commit: more versions than writes": (
        "commit", 1, lambda writes: Committed((5, 6, 7)), "3 versions for a batch of 2 writes",
    ),
    "commit: version 0 for a put": (
        "commit", 1, lambda writes: Committed((0, 9)), "version 0 for write 0, a put",
    ),
    "commit: a version for a delete": (
        "commit", 4, lambda writes: Committed((11, 7, 12)), "version 7 for write 1, a delete",
    ),
    "commit: a conflict outside the batch": (
        "commit", 1, lambda writes: CommitConflict(2), "conflict at write 2 of a batch of 2",
    ),
    "commit: a conflict at a write without condition": (
        "commit", 1, lambda writes: CommitConflict(0), "write 0, which has no condition",
    ),
    "list-keys: a key outside the prefix": (
        "list-keys", 1, lambda prefix: ["elsewhere/h/1"], "lacks the prefix",
    ),
    "list-keys: keys in descending order": (
        "list-keys", 1, lambda prefix: [prefix + "b", prefix + "a"], "ascending byte order",
    ),
    "list-keys: a key listed twice": (
        "list-keys", 1, lambda prefix: [prefix + "a", prefix + "a"], "ascending byte order",
    ),
}  # fmt: skip


@pytest.mark.parametrize("breach", BREACHES)
def test_a_breach_of_the_storage_contract_is_broken_store_and_nothing_is_acked(breach) -> None:
    call, nth, lie, says = BREACHES[breach]
    consumer = RecordingConsumer()
    checkpointer = Checkpointer.open(Lying(call, lie, nth), consumer, OPTIONS)
    honest = [[f"m-{s}"] for s in range(1, nth)] if call == "commit" else []
    for sequence in range(1, nth):  # the calls before the lie are answered truthfully
        checkpointer.write(cp(sequence), [f"m-{sequence}"])
    assert consumer.acks == honest

    with pytest.raises(BrokenStore) as e:
        checkpointer.write(cp(nth), [f"m-{nth}"])

    assert e.value.case == "broken-store"
    assert says in e.value.message, e.value.message
    assert e.value.message.startswith("committing checkpoint:" if call == "commit" else "")
    assert str(e.value) == Codec().describe(e.value)
    assert str(e.value).startswith("broken store: ")
    assert consumer.acks == honest  # nothing acked after the broken answer
    # An answer, not a trap: the instance keeps serving (the store tells the truth again).
    checkpointer.resume_point("run", "stage")


def test_get_and_history_report_broken_store_too() -> None:
    checkpointer = Checkpointer.open(Lying("get", lambda key: Entry(b"", 0)), None, OPTIONS)
    with pytest.raises(BrokenStore, match="with version 0"):
        checkpointer.get("run", "stage")
    # History lists the retained copies only when a latest is stored: store one, then lie.
    disordered = Lying("list-keys", lambda prefix: [prefix + "2", prefix + "1"], nth=0)
    checkpointer = Checkpointer.open(disordered, None, OPTIONS)
    checkpointer.write(cp(1))
    disordered.nth = disordered.calls["list-keys"] + 1
    with pytest.raises(BrokenStore, match="ascending byte order"):
        checkpointer.history("run", "stage")


def test_delete_answered_with_versions_is_broken_store() -> None:
    store = Lying("commit", lambda writes: Committed(tuple(1 for _ in writes)), nth=2)
    checkpointer = Checkpointer.open(store, None, OPTIONS)
    checkpointer.write(cp(1))
    with pytest.raises(BrokenStore, match="a delete"):
        checkpointer.delete("run", "stage")
