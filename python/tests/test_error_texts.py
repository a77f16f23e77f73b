"""The words people read for each error are the component's (`codec.describe`): `str(exc)` of
every `CheckpointError` equals it, whether the error came from a call, from the adapter's own
checks, or was made by hand. The Rust host's `Display` and Node's `err.message` say the same."""

from __future__ import annotations

import pytest

from pipeline_checkpoint import (
    BrokenStore,
    Checkpoint,
    CheckpointError,
    Checkpointer,
    Codec,
    CommitConflict,
    Conflict,
    Corrupt,
    Corruption,
    CorruptionKind,
    DictStorage,
    Fenced,
    FencedInfo,
    InvalidInput,
    NotFound,
    OperatorState,
    Options,
    Put,
    Regression,
    RegressionInfo,
    StorageFailure,
    StorageUnavailable,
    TooLarge,
    TooLargeInfo,
    Watermark,
    Write,
)
from conftest import Lying

OPTIONS = Options(namespace="test", max_retained=3, max_checkpoint_bytes=65536)
LATEST = "ckpt/test/run/stage/latest"


def cp(sequence: int, offset: int = 0, epoch: int = 1, **fields) -> Checkpoint:
    return Checkpoint("run", "stage", sequence, epoch, Watermark(offset, 0), 0, **fields)


def every_case() -> list[CheckpointError]:
    """One of each case, made by hand (the same values as host/tests/error_texts.rs)."""
    return [
        InvalidInput("run-id", "must not be empty"),
        Regression(RegressionInfo(7, Watermark(70, -5), 6, Watermark(60, 1), "sequence")),
        Fenced(FencedInfo(3, 2)),
        Conflict("ckpt/ns/run/stage/latest changed"),
        NotFound(),
        Corrupt(
            Corruption(
                CorruptionKind.CRC_MISMATCH,
                'ckpt/ns/r\xe9n/"s"/latest',
                "stored 0x1, computed 0x2",
            )
        ),
        Corrupt(Corruption(CorruptionKind.TRUNCATED, "", "")),
        StorageFailure("reading latest: storage unavailable: down"),
        TooLarge(TooLargeInfo(70_000, 65_536)),
        BrokenStore("listing: the storage broke its contract: order"),
    ]


@pytest.mark.parametrize("error", every_case(), ids=lambda e: e.case)
def test_the_text_of_an_error_made_by_hand_is_the_components(error) -> None:
    described = Codec().describe(error)
    assert str(error) == described
    assert described and "\n" not in described


def test_every_case_is_covered() -> None:
    assert {e.case for e in every_case()} == {c.case for c in CheckpointError.__subclasses__()}


def test_known_texts() -> None:
    # A few words of the component's texts, so that an empty or foreign text cannot pass.
    texts = [str(e) for e in every_case()]
    assert texts[0] == "invalid input: `run-id`: must not be empty"
    assert texts[4] == "not found: nothing is stored for this run and stage"
    assert texts[9] == (
        "broken store: listing: the storage broke its contract: order; nothing was acked: fix or "
        "replace the store, then resume"
    )


def raised_by_calls() -> list[CheckpointError]:
    """One of each case, raised by a real call (or by the adapter's checks before one)."""
    errors: list[CheckpointError] = []

    def catch(call) -> None:
        with pytest.raises(CheckpointError) as e:
            call()
        errors.append(e.value)

    store = DictStorage()
    checkpointer = Checkpointer.open(store, None, OPTIONS)
    catch(lambda: checkpointer.write(cp(0)))  # invalid, from the component
    catch(lambda: checkpointer.write(cp(-1)))  # invalid, from the adapter's range check
    checkpointer.write(cp(2, offset=10, epoch=5))
    catch(lambda: checkpointer.write(cp(3, offset=9, epoch=5)))  # regression
    catch(lambda: checkpointer.write(cp(3, offset=11, epoch=4)))  # fenced
    catch(lambda: checkpointer.get("run", "other"))  # not-found
    damaged = bytearray(store.get(LATEST).value)
    damaged[-1] ^= 1
    store.commit([Write(LATEST, None, Put(bytes(damaged)))])
    catch(lambda: checkpointer.get("run", "stage"))  # corrupt, at a key
    catch(lambda: Codec().decode(b"short"))  # corrupt, in given bytes
    small = Checkpointer.open(DictStorage(), None, Options("test", 1, 100))
    catch(lambda: small.write(cp(1, operator_states=[OperatorState("s", b"x" * 200)])))

    def unavailable(key):
        raise StorageUnavailable("server down")

    catch(lambda: Checkpointer.open(Lying("get", unavailable), None, OPTIONS).get("run", "stage"))
    conflicting = Lying("commit", lambda writes: CommitConflict(len(writes) - 1))
    catch(lambda: Checkpointer.open(conflicting, None, OPTIONS).write(cp(1)))
    breaking = Lying("list-keys", lambda prefix: ["elsewhere"])
    catch(lambda: Checkpointer.open(breaking, None, OPTIONS).write(cp(1)))
    return errors


def test_the_text_of_every_error_a_call_raises_is_the_components() -> None:
    errors = raised_by_calls()
    assert {e.case for e in errors} == {c.case for c in CheckpointError.__subclasses__()}
    codec = Codec()
    for error in errors:
        assert str(error) == codec.describe(error), error.case
