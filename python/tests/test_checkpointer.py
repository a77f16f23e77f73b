"""The checkpointer, driver and codec API through the real component: results, every error
case, range checks before wasm, and failures of user stores and consumers."""

from __future__ import annotations

import pytest

from pipeline_checkpoint import (
    AckFailed,
    Acked,
    ChangeKind,
    Checkpoint,
    CheckpointError,
    Checkpointed,
    Checkpointer,
    Codec,
    CommitConflict,
    Committed,
    ComponentFailure,
    Conflict,
    Corrupt,
    CorruptionKind,
    DictStorage,
    DriverOptions,
    Entry,
    ExplicitFlush,
    Fallback,
    Fenced,
    Fresh,
    InvalidInput,
    Latest,
    NotFound,
    OperatorState,
    Options,
    OverflowPolicy,
    Pending,
    PerBatch,
    PerMessage,
    ProcessedMessage,
    Put,
    Regression,
    Runtime,
    SinkPosition,
    SourcePosition,
    StorageFailure,
    StorageTimeout,
    StorageUnavailable,
    TooLarge,
    Watermark,
    Write,
)
from pipeline_checkpoint.faults import FaultScript, FaultyStorage, StorageFault
from conftest import REPO, Lying

OPTIONS = Options(namespace="test", max_retained=3, max_checkpoint_bytes=65536)
LATEST = "ckpt/test/run/stage/latest"


def cp(sequence: int, offset: int = 0, *, epoch: int = 1, at_ms: int = 0, **fields) -> Checkpoint:
    return Checkpoint(
        run_id="run",
        stage="stage",
        sequence=sequence,
        epoch=epoch,
        watermark=Watermark(offset, 0),
        at_ms=at_ms,
        **fields,
    )


def open_on(storage, consumer=None, options: Options = OPTIONS) -> Checkpointer:
    return Checkpointer.open(storage, consumer, options)


# ---------------------------------------------------------------------------------------------
# results


def test_write_then_read_back_every_field(storage, consumer) -> None:
    checkpointer = open_on(storage, consumer)
    full = Checkpoint(
        run_id="run",
        stage="stage",
        sequence=7,
        epoch=3,
        watermark=Watermark(offset=2**64 - 1, event_time_ms=-(2**63)),
        sources=[SourcePosition("topic-0", 12, Watermark(11, 5))],
        sinks=[SinkPosition("out", 9)],
        operator_states=[OperatorState("window", b"\x00\xffstate")],
        idempotency_key="k-7",
        at_ms=1_700_000_000_000,
    )
    receipt = checkpointer.write(full, ["m-1", "m-2"])
    assert (receipt.sequence, receipt.replayed, receipt.pruned, receipt.acks) == (
        7,
        False,
        0,
        Acked(2),
    )
    assert receipt.version >= 1
    assert checkpointer.get("run", "stage") == full
    assert checkpointer.history("run", "stage") == [full]
    assert consumer.acks == [["m-1", "m-2"]]


def test_resume_point_is_fresh_then_latest(storage) -> None:
    checkpointer = open_on(storage)
    fresh = checkpointer.resume_point("run", "stage")
    assert fresh.origin == Fresh()
    assert (fresh.point.sequence, fresh.point.watermark.offset) == (0, 0)
    checkpointer.write(cp(1, offset=42))
    latest = checkpointer.resume_point("run", "stage")
    assert latest.origin == Latest()
    assert (latest.point.sequence, latest.point.watermark.offset) == (1, 42)


def test_retention_prunes_and_delete_removes_everything(storage) -> None:
    checkpointer = open_on(storage)
    receipts = [checkpointer.write(cp(n, offset=n)) for n in range(1, 6)]
    assert [r.pruned for r in receipts] == [0, 0, 0, 1, 1]
    assert [c.sequence for c in checkpointer.history("run", "stage")] == [3, 4, 5]
    assert checkpointer.delete("run", "stage") == 4  # latest + 3 retained copies
    assert storage.list_keys("") == []
    with pytest.raises(NotFound):
        checkpointer.get("run", "stage")


def test_replayed_write_is_accepted_and_acked_again(consumer) -> None:
    checkpointer = open_on(DictStorage(), consumer)
    first = checkpointer.write(cp(1, offset=5), ["m"])
    again = checkpointer.write(cp(1, offset=5), ["m"])
    assert (first.replayed, again.replayed) == (False, True)
    assert consumer.acks == [["m"], ["m"]]


# ---------------------------------------------------------------------------------------------
# one exception per WIT error case, with its payload


def test_invalid_checkpoint_names_the_field_and_does_no_io() -> None:
    script = FaultScript()
    checkpointer = open_on(FaultyStorage(DictStorage(), script))
    with pytest.raises(InvalidInput) as e:
        checkpointer.write(cp(0))
    assert e.value.field == "sequence" and e.value.reason
    assert (script.calls("get"), script.calls("commit")) == (0, 0)


def test_open_refuses_objects_that_are_not_stores_or_consumers() -> None:
    with pytest.raises(TypeError, match="storage must have get, commit and list_keys"):
        Checkpointer.open({}, None, OPTIONS)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="consumer must have ack"):
        Checkpointer.open(DictStorage(), print, OPTIONS)  # type: ignore[arg-type]


def test_invalid_options_fail_open() -> None:
    with pytest.raises(InvalidInput) as e:
        Checkpointer.open(DictStorage(), None, Options("bad/namespace", 3, 65536))
    assert e.value.field == "namespace"


def test_regression_carries_stored_and_attempted_positions(storage) -> None:
    checkpointer = open_on(storage)
    checkpointer.write(cp(2, offset=10))
    with pytest.raises(Regression) as e:
        checkpointer.write(cp(3, offset=9))
    r = e.value
    assert (r.field, r.stored_sequence, r.attempted_sequence) == ("offset", 2, 3)
    assert (r.stored_watermark.offset, r.attempted_watermark.offset) == (10, 9)


def test_fenced_carries_both_epochs(storage) -> None:
    checkpointer = open_on(storage)
    checkpointer.write(cp(1, epoch=5))
    with pytest.raises(Fenced) as e:
        checkpointer.write(cp(2, epoch=4))
    assert (e.value.stored_epoch, e.value.attempted_epoch) == (5, 4)


def test_conflict_when_the_commit_condition_fails(consumer) -> None:
    script = FaultScript()
    checkpointer = open_on(FaultyStorage(DictStorage(), script), consumer)
    # The index is clamped to the batch's last write: the latest, the one with a condition (a
    # conflict at a write without one would be a broken store).
    script.inject("commit", 1, StorageFault("conflict", index=99))
    with pytest.raises(Conflict) as e:
        checkpointer.write(cp(1), ["m"])
    assert e.value.message
    assert consumer.acks == []  # nothing acked


def test_corrupt_latest_fails_closed_and_resume_falls_back(storage) -> None:
    checkpointer = open_on(storage)
    checkpointer.write(cp(1, offset=1))
    checkpointer.write(cp(2, offset=2))
    damaged = bytearray(storage.get(LATEST).value)
    damaged[-1] ^= 0x01
    storage.commit([Write(LATEST, None, Put(bytes(damaged)))])
    with pytest.raises(Corrupt) as e:
        checkpointer.get("run", "stage")
    assert (e.value.kind, e.value.key) == (CorruptionKind.CRC_MISMATCH, LATEST)
    with pytest.raises(Corrupt):
        checkpointer.write(cp(3, offset=3))  # never overwrites damaged data
    resume = checkpointer.resume_point("run", "stage")
    assert isinstance(resume.origin, Fallback)
    assert [c.key for c in resume.origin.skipped] == [LATEST]
    assert resume.point.sequence == 2  # the retained copy of sequence 2 is intact


def test_too_large_carries_size_and_limit() -> None:
    checkpointer = open_on(DictStorage(), options=Options("test", 1, 100))
    with pytest.raises(TooLarge) as e:
        checkpointer.write(cp(1, operator_states=[OperatorState("s", b"x" * 200)]))
    assert e.value.limit == 100 and e.value.size > 100


def test_every_error_is_a_checkpoint_error_with_its_wit_case() -> None:
    cases = {c.case for c in CheckpointError.__subclasses__()}
    assert cases == {
        "invalid", "regression", "fenced", "conflict", "not-found", "corrupt", "storage",
        "too-large", "broken-store",
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------
# ints out of range never reach wasm


@pytest.mark.parametrize(
    ("checkpoint", "field"),
    [
        (cp(2**64), "sequence"),
        (cp(-1), "sequence"),
        (cp(1, offset=-1), "watermark.offset"),
        (Checkpoint("run", "stage", 1, 1, Watermark(0, 2**63), 0), "watermark.event-time-ms"),
        (cp(1, sinks=[SinkPosition("s", 2**64)]), "sinks[0].position"),
        (cp(1, epoch=True), "epoch"),
        (cp(1, at_ms=1.5), "at-ms"),
    ],
)
def test_out_of_range_values_are_refused_before_any_call(checkpoint, field) -> None:
    script = FaultScript()
    checkpointer = open_on(FaultyStorage(DictStorage(), script))
    with pytest.raises(InvalidInput) as e:
        checkpointer.write(checkpoint)
    assert e.value.field == field
    assert script.calls("get") == 0
    assert checkpointer.write(cp(1)).sequence == 1  # still usable


def test_out_of_range_options_and_driver_arguments() -> None:
    with pytest.raises(InvalidInput) as e:
        Checkpointer.open(DictStorage(), None, Options("test", 2**32, 65536))
    assert e.value.field == "max-retained"
    driver = open_on(DictStorage()).open_driver(DriverOptions("run", "stage", 1, PerMessage()))
    with pytest.raises(InvalidInput) as e:
        driver.record_processed(ProcessedMessage("m", 1), now_ms=-5)
    assert e.value.field == "now-ms"
    with pytest.raises(InvalidInput) as e:
        open_on(DictStorage()).open_driver(DriverOptions("run", "stage", 1, PerBatch(2**32)))
    assert e.value.field == "policy.per-batch"


def test_strings_that_are_not_unicode_are_refused() -> None:
    with pytest.raises(InvalidInput) as e:
        open_on(DictStorage()).get("run\udc80", "stage")
    assert e.value.field == "run-id"


# ---------------------------------------------------------------------------------------------
# failures of user stores and consumers become WIT error values; the instance stays usable


class FlakyStorage(DictStorage):
    """A dict store whose next call of a given kind raises `error`."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: dict[str, BaseException] = {}

    def get(self, key):
        if "get" in self.fail:
            raise self.fail.pop("get")
        return super().get(key)

    def commit(self, writes):
        if "commit" in self.fail:
            raise self.fail.pop("commit")
        return super().commit(writes)

    def list_keys(self, prefix):
        if "list-keys" in self.fail:
            raise self.fail.pop("list-keys")
        return super().list_keys(prefix)


@pytest.mark.parametrize("call", ["get", "commit"])
def test_exception_from_a_user_store_is_a_storage_error_and_the_checkpointer_stays_usable(
    call, consumer
) -> None:
    store = FlakyStorage()
    checkpointer = open_on(store, consumer)
    store.fail[call] = OSError("disk on fire")
    with pytest.raises(StorageFailure) as e:
        checkpointer.write(cp(1), ["m"])
    assert "OSError: disk on fire" in e.value.message
    assert consumer.acks == []  # nothing acked
    receipt = checkpointer.write(cp(1), ["m"])  # the retry goes through, same instance
    assert receipt.sequence == 1 and consumer.acks == [["m"]]


def test_storage_error_cases_keep_their_message() -> None:
    store = FlakyStorage()
    checkpointer = open_on(store)
    store.fail["get"] = StorageUnavailable("server down")
    with pytest.raises(StorageFailure) as e:
        checkpointer.get("run", "stage")
    assert "server down" in e.value.message
    store.fail["get"] = StorageTimeout("too slow")
    with pytest.raises(StorageFailure) as e:
        checkpointer.resume_point("run", "stage")
    assert "too slow" in e.value.message
    with pytest.raises(NotFound):
        checkpointer.get("run", "stage")


def test_list_keys_failure_during_delete() -> None:
    store = FlakyStorage()
    checkpointer = open_on(store)
    checkpointer.write(cp(1))
    store.fail["list-keys"] = RuntimeError("listing failed")
    with pytest.raises(StorageFailure):
        checkpointer.delete("run", "stage")
    assert checkpointer.delete("run", "stage") == 2  # latest + its retained copy


@pytest.mark.parametrize(
    ("call", "answer", "problem"),
    [
        ("commit", lambda writes: Committed(tuple(-1 for _ in writes)), "-1 is not a u64"),
        ("commit", lambda writes: CommitConflict(2**32), "not a u32"),
        ("commit", lambda writes: "committed", "not Committed or CommitConflict"),
        ("get", lambda key: Entry("text", 1), "not bytes"),
        ("get", lambda key: {"value": b"", "version": 1}, "not Entry or None"),
        ("list-keys", lambda prefix: "ckpt/", "not a list of str"),
        ("list-keys", lambda prefix: [b"ckpt/"], "is not a str"),
        ("list-keys", lambda prefix: [prefix + "\udc80"], "not valid Unicode"),
    ],
)
def test_an_answer_the_wit_cannot_carry_is_a_failed_storage_error_not_a_trap(
    call, answer, problem, consumer
) -> None:
    checkpointer = open_on(Lying(call, answer), consumer)
    with pytest.raises(StorageFailure) as e:
        checkpointer.write(cp(1), ["m"])
    assert "cannot be passed to the component" in e.value.message and problem in e.value.message
    assert consumer.acks == []
    assert checkpointer.write(cp(1), ["m"]).sequence == 1  # the lie was once: still usable


def test_keyboard_interrupt_in_a_store_is_raised_after_the_call_and_the_instance_survives() -> None:
    store = FlakyStorage()
    checkpointer = open_on(store)
    store.fail["get"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        checkpointer.get("run", "stage")
    assert checkpointer.write(cp(1)).sequence == 1


def test_a_store_calling_into_its_own_checkpointer_gets_an_error_not_a_dead_instance() -> None:
    class Reentrant(DictStorage):
        checkpointer: Checkpointer | None = None
        seen: list[str] = []

        def get(self, key):
            if self.checkpointer is not None:
                inner, self.checkpointer = self.checkpointer, None
                try:
                    inner.get("run", "stage")
                except ComponentFailure as e:
                    self.seen.append(str(e))
                    raise
            return super().get(key)

    store = Reentrant()
    checkpointer = open_on(store)
    store.checkpointer = checkpointer
    with pytest.raises(StorageFailure, match="re-entrant"):
        checkpointer.write(cp(1))
    assert store.seen and "re-entrant" in store.seen[0]
    assert checkpointer.write(cp(1)).sequence == 1  # the instance was never entered twice


def test_failing_consumer_is_reported_in_the_receipt_and_the_checkpoint_is_durable() -> None:
    class Refusing:
        def ack(self, ids):
            raise ConnectionError("broker unreachable")

    store = DictStorage()
    checkpointer = open_on(store, Refusing())
    receipt = checkpointer.write(cp(1, offset=3), ["m"])
    assert receipt.acks == AckFailed("broker unreachable")
    assert checkpointer.get("run", "stage").watermark.offset == 3


@pytest.mark.parametrize("state", [b"", bytes(range(256)) * 8])
def test_bytes_cross_the_boundary_unchanged(storage, state) -> None:
    # Bytes are converted in bulk (pipeline_checkpoint._speedups); every byte value must survive, in
    # both directions: into the guest (write, encode) and out of it (get, decode, commit).
    checkpointer = open_on(storage)
    written = cp(1, operator_states=[OperatorState("s", state)])
    checkpointer.write(written)
    assert checkpointer.get("run", "stage").operator_states[0].state == state
    codec = Codec()
    encoded = codec.encode(written)
    assert encoded == storage.get(LATEST).value
    assert codec.decode(encoded) == written


# ---------------------------------------------------------------------------------------------
# driver


def test_driver_per_batch_acks_only_after_each_checkpoint(storage, consumer) -> None:
    checkpointer = open_on(storage, consumer)
    checkpointer.write(cp(1, offset=10))
    driver = checkpointer.open_driver(
        DriverOptions("run", "stage", 1, PerBatch(2), changelog_capacity=16)
    )
    assert driver.resumed_from().point.watermark.offset == 10
    assert driver.record_processed(ProcessedMessage("m-10", 11), now_ms=1) == Pending(1)
    assert consumer.acks == []
    progress = driver.record_processed(ProcessedMessage("m-11", 12), now_ms=2)
    assert isinstance(progress, Checkpointed) and progress.receipt.sequence == 2
    assert consumer.acks == [["m-10", "m-11"]]
    batch = driver.record_processed_batch(
        [ProcessedMessage(f"m-{i}", i + 1) for i in range(12, 17)], now_ms=3
    )
    assert [r.sequence for r in batch.checkpoints] == [3, 4] and batch.pending == 1
    assert driver.flush(now_ms=4).receipt.sequence == 5  # type: ignore[union-attr]
    assert driver.flush(now_ms=5) == Pending(0)
    assert driver.cursor().watermark.offset == 17
    log = driver.changelog()
    assert log.capacity == 16 and log.overflow_count == 0
    assert [e.kind for e in log.events].count(ChangeKind.CHECKPOINT) == 4
    assert driver.checkpointer.get("run", "stage").at_ms == 4


def test_driver_explicit_flush_and_changelog_overflow() -> None:
    driver = open_on(DictStorage()).open_driver(
        DriverOptions(
            "run", "stage", 1, ExplicitFlush(), changelog_capacity=2,
            overflow=OverflowPolicy.OVERWRITE_OLDEST,
        )
    )  # fmt: skip
    for i in range(4):
        assert driver.record_processed(ProcessedMessage(f"m{i}", i + 1), 0) == Pending(i + 1)
    log = driver.changelog()
    assert len(log.events) == 2 and log.overflow_count == 2


def test_closing_a_driver_frees_it_and_keeps_the_checkpointer(consumer) -> None:
    checkpointer = open_on(DictStorage(), consumer)
    with checkpointer.open_driver(DriverOptions("run", "stage", 1, ExplicitFlush())) as first:
        first.record_processed(ProcessedMessage("lost", 1), 0)
    with pytest.raises(ComponentFailure, match="driver was closed"):
        first.flush(0)
    assert consumer.acks == []  # closing flushes nothing
    second = checkpointer.open_driver(DriverOptions("run", "stage", 1, PerMessage()))
    assert isinstance(second.record_processed(ProcessedMessage("m", 1), 0), Checkpointed)
    assert consumer.acks == [["m"]]


def test_driver_is_fenced_at_open_by_a_newer_epoch() -> None:
    checkpointer = open_on(DictStorage())
    checkpointer.write(cp(1, epoch=2))
    with pytest.raises(Fenced):
        checkpointer.open_driver(DriverOptions("run", "stage", 1, PerMessage()))


# ---------------------------------------------------------------------------------------------
# codec


def test_codec_decodes_the_golden_vector_and_encodes_it_back() -> None:
    codec = Codec()
    golden = (REPO / "tests" / "golden" / "v1-minimal.bin").read_bytes()
    decoded = codec.decode(golden)
    assert codec.encode(decoded) == golden
    codec.validate(decoded)
    assert codec.resume_point_for_stage([decoded], decoded.stage).sequence == decoded.sequence
    signature = codec.chain_signature([decoded, decoded])
    assert len(signature) == 64 and signature == codec.chain_signature([decoded, decoded])


def test_codec_names_the_damage() -> None:
    codec = Codec()
    data = codec.encode(cp(1))
    with pytest.raises(Corrupt) as e:
        codec.decode(data[:-1])
    assert e.value.kind == CorruptionKind.TRUNCATED and e.value.key == ""
    with pytest.raises(Corrupt) as e:
        codec.decode(b"nope" + data[4:])
    assert e.value.kind == CorruptionKind.BAD_MAGIC
    with pytest.raises(NotFound):
        codec.resume_point_for_stage([cp(1)], "other")


# ---------------------------------------------------------------------------------------------
# traps: the instance refuses further calls, everything else keeps working

# The component's initial linear memory: 17 pages. With no room to grow, the first large
# allocation fails and the guest traps.
NO_GROWTH = 17 * 65536


def test_options_a_sandbox_cannot_serve_are_invalid_at_open() -> None:
    # A write needs up to 6 x max-checkpoint-bytes + 2 MiB: no options fit 17 pages.
    tight = Runtime(max_memory_bytes=NO_GROWTH)
    with pytest.raises(InvalidInput) as refused:
        Checkpointer.open(DictStorage(), None, OPTIONS, runtime=tight)
    assert refused.value.field == "max-checkpoint-bytes"
    assert str(NO_GROWTH) in refused.value.reason


def test_a_trap_poisons_only_its_own_checkpointer() -> None:
    # Stored data larger than this checkpointer's options allow (written by one with a larger
    # limit) is the one thing its options do not bound: reading 8 MiB in a 12 MiB sandbox traps.
    store = DictStorage()
    roomy = Options(namespace="test", max_retained=3, max_checkpoint_bytes=9 << 20)
    big = cp(1, operator_states=[OperatorState("s", b"x" * (8 << 20))])
    assert open_on(store, options=roomy).write(big).sequence == 1
    tight = Runtime(max_memory_bytes=12 << 20)
    checkpointer = Checkpointer.open(store, None, OPTIONS, runtime=tight)
    with pytest.raises(ComponentFailure, match="wasm trap|memory"):
        checkpointer.get("run", "stage")
    with pytest.raises(ComponentFailure, match="unusable after an earlier failure"):
        checkpointer.get("run", "stage")
    other = open_on(store, options=roomy)  # another instance (default runtime) is unaffected
    assert other.get("run", "stage") == big


def test_codec_opens_a_fresh_instance_after_a_trap() -> None:
    codec = Codec(runtime=Runtime(max_memory_bytes=NO_GROWTH))
    with pytest.raises(ComponentFailure):
        codec.encode(cp(1, operator_states=[OperatorState("s", b"x" * 60_000)]))
    assert codec.decode(codec.encode(cp(1))) == cp(1)


def test_closed_checkpointer_refuses_calls() -> None:
    checkpointer = open_on(DictStorage())
    checkpointer.close()
    with pytest.raises(ComponentFailure, match="closed"):
        checkpointer.get("run", "stage")


def test_missing_component_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ComponentFailure, match="not found"):
        Runtime(tmp_path / "missing.wasm")
