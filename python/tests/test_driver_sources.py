"""The driver for real sources through the real component: `begin` / `complete` / `flush` with
state (out-of-order completion, the in-flight cap, partitions, redeliveries of covered and
uncovered messages), ack recovery (`recover_acks`, `open_driver` + `recovered_acks`) and the
whole checkpoint a resume comes from (`Resume.checkpoint`), also after a fallback."""

from __future__ import annotations

import pytest

from pipeline_checkpoint import (
    AckFailed,
    Acked,
    Admitted,
    Backpressure,
    BatchProgress,
    Checkpoint,
    Checkpointed,
    Checkpointer,
    Completion,
    Covered,
    DictStorage,
    DriverOptions,
    ExplicitFlush,
    Fallback,
    Fresh,
    InvalidInput,
    Latest,
    Message,
    OperatorState,
    Options,
    Pending,
    PerBatch,
    PerMessage,
    ProcessedMessage,
    Put,
    RecordingConsumer,
    Regression,
    SinkPosition,
    StageState,
    Watermark,
    Write,
)
from pipeline_checkpoint.faults import AckScript, FaultyConsumer

OPTIONS = Options(namespace="test", max_retained=3, max_checkpoint_bytes=65536)
LATEST = "ckpt/test/run/stage/latest"
HISTORY = "ckpt/test/run/stage/h/0000000000000000000"  # + one digit: a retained copy


def driver_on(storage, consumer=None, *, policy=None, **options) -> tuple[Checkpointer, object]:
    checkpointer = Checkpointer.open(storage, consumer, OPTIONS)
    driver = checkpointer.open_driver(
        DriverOptions("run", "stage", 1, policy or ExplicitFlush(), **options)
    )
    return checkpointer, driver


def admitted(driver, message: Message) -> int:
    admission = driver.begin(message)
    assert isinstance(admission, Admitted), admission
    return admission.ticket



# ---------------------------------------------------------------------------------------------
# out-of-order completion


def test_out_of_order_completion_releases_in_begin_order_and_checkpoints_only_the_prefix(
    storage, consumer
) -> None:
    checkpointer, driver = driver_on(storage, consumer)
    tickets = [admitted(driver, Message(f"m{i}", offset=i, event_time_ms=i)) for i in range(3)]
    assert tickets == [1, 2, 3]  # deterministic per driver
    assert driver.complete(3) == Completion(released=(), due=False)
    assert driver.complete(1) == Completion(released=(1,), due=False)
    assert consumer.acks == []  # nothing is acked before a durable checkpoint
    progress = driver.flush(10)
    assert isinstance(progress, Checkpointed) and progress.receipt.acks == Acked(1)
    assert consumer.acks == [["m0"]]
    assert checkpointer.get("run", "stage").watermark == Watermark(1, 0)  # m2 is not covered
    assert driver.complete(2) == Completion(released=(2, 3), due=False)
    assert driver.flush(11).receipt.acks == Acked(2)  # type: ignore[union-attr]
    assert consumer.acks == [["m0"], ["m1", "m2"]]
    assert checkpointer.get("run", "stage").watermark == Watermark(3, 2)
    assert driver.flush(12) == Pending(0)


def test_per_message_policy_says_due_at_each_release(consumer) -> None:
    _, driver = driver_on(DictStorage(), consumer, policy=PerMessage())
    ticket = admitted(driver, Message("a", offset=7))
    assert driver.complete(ticket) == Completion(released=(ticket,), due=True)
    assert consumer.acks == []  # `complete` never writes: the caller flushes
    assert isinstance(driver.flush(1), Checkpointed)
    assert consumer.acks == [["a"]]


def test_an_unknown_or_completed_ticket_is_invalid() -> None:
    _, driver = driver_on(DictStorage())
    ticket = admitted(driver, Message("a", offset=0))
    driver.complete(ticket)
    for bad in (ticket, 99):
        with pytest.raises(InvalidInput) as e:
            driver.complete(bad)
        assert e.value.field == "ticket"
    with pytest.raises(InvalidInput, match="ticket"):
        driver.complete(-1)  # refused before the component: not a u64


# ---------------------------------------------------------------------------------------------
# the in-flight cap


def test_at_the_cap_begin_answers_backpressure_and_complete_says_due(consumer) -> None:
    _, driver = driver_on(DictStorage(), consumer, max_in_flight=2)
    first = admitted(driver, Message("a", offset=0))
    second = admitted(driver, Message("b", offset=1))
    assert driver.begin(Message("c", offset=2)) == Backpressure(2)
    # At the cap with released work: a checkpoint is due even under explicit-flush.
    assert driver.complete(first) == Completion(released=(first,), due=True)
    assert driver.complete(second) == Completion(released=(second,), due=True)
    assert driver.begin(Message("c", offset=2)) == Backpressure(2)  # released is not durable
    assert isinstance(driver.flush(1), Checkpointed)
    assert isinstance(driver.begin(Message("c", offset=2)), Admitted)
    assert consumer.acks == [["a", "b"]]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_in_flight": 0}, "max-in-flight"),
        ({"max_in_flight": 4097}, "max-in-flight"),
        ({"max_in_flight": 4, "policy": PerBatch(5)}, "policy"),
    ],
)
def test_driver_options_out_of_their_bounds_are_invalid(options, field) -> None:
    checkpointer = Checkpointer.open(DictStorage(), None, OPTIONS)
    policy = options.pop("policy", PerMessage())
    with pytest.raises(InvalidInput) as e:
        checkpointer.open_driver(DriverOptions("run", "stage", 1, policy, **options))
    assert e.value.field == field


def test_values_out_of_their_wit_range_are_refused_before_the_component() -> None:
    checkpointer = Checkpointer.open(DictStorage(), None, OPTIONS)
    with pytest.raises(InvalidInput, match="max-in-flight"):
        checkpointer.open_driver(DriverOptions("run", "stage", 1, PerMessage(), max_in_flight=-1))
    driver = checkpointer.open_driver(DriverOptions("run", "stage", 1, PerMessage()))
    with pytest.raises(InvalidInput, match="message.offset"):
        driver.begin(Message("a", offset="7"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="message.source"):
        driver.begin(Message("a", source=None))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="state"):
        driver.flush(0, {"sinks": []})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"state.sinks\[0\]"):
        driver.flush(0, StageState(sinks=[OperatorState("x", b"")]))  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# redeliveries


def test_a_covered_redelivery_is_acked_and_skipped_by_offset_and_by_id(storage, consumer) -> None:
    _, driver = driver_on(storage, consumer)
    for message in (Message("m0", offset=0), Message("q1")):
        driver.complete(admitted(driver, message))
    driver.flush(1)
    assert consumer.acks == [["m0", "q1"]]
    assert driver.begin(Message("m0", offset=0)) == Covered(Acked(1))
    assert driver.begin(Message("q1")) == Covered(Acked(1))
    assert consumer.acks == [["m0", "q1"], ["m0"], ["q1"]]
    assert driver.flush(2) == Pending(0)  # nothing was taken again
    # record_processed answers the same for a log: at or below the durable offset is covered.
    assert driver.record_processed(ProcessedMessage("m0", 1), 3) == Covered(Acked(1))
    batch = driver.record_processed_batch(
        [ProcessedMessage("m0", 1), ProcessedMessage("m1", 2)], 4
    )
    assert batch == BatchProgress(checkpoints=(), pending=1, covered=1)


def test_moving_back_inside_the_uncheckpointed_window_is_a_regression() -> None:
    _, driver = driver_on(DictStorage())
    admitted(driver, Message("m5", offset=5))
    with pytest.raises(Regression) as e:
        driver.begin(Message("m3", offset=3))
    assert e.value.field == "offset"
    with pytest.raises(Regression):
        driver.begin(Message("m5", offset=5))  # at the position of one taken: not durable yet
    admitted(driver, Message("q"))
    with pytest.raises(Regression) as e:
        driver.begin(Message("q"))  # an id in flight
    assert e.value.field == "id"


def test_a_failed_ack_is_sent_again_with_the_next_checkpoint(consumer) -> None:
    script = AckScript()
    _, driver = driver_on(DictStorage(), FaultyConsumer(consumer, script), policy=PerMessage())
    script.fail_nth(1)
    progress = driver.record_processed(ProcessedMessage("m0", 1), 0)
    assert isinstance(progress, Checkpointed)
    assert progress.receipt.acks == AckFailed("injected ack failure")
    assert consumer.acks == []
    driver.record_processed(ProcessedMessage("m1", 2), 0)
    assert consumer.acks == [["m0", "m1"]]


# ---------------------------------------------------------------------------------------------
# ack recovery and crashes


def test_a_crash_between_commit_and_ack_is_repaired_by_the_next_driver(consumer) -> None:
    store, script = DictStorage(), AckScript()
    checkpointer, driver = driver_on(store, FaultyConsumer(consumer, script))
    for i in range(2):
        driver.complete(admitted(driver, Message(f"m{i}", offset=i)))
    script.fail_nth(1)  # the ack after the durable write fails, then the process dies
    assert driver.flush(5).receipt.acks == AckFailed("injected ack failure")  # type: ignore[union-attr]
    checkpointer.close()
    assert consumer.acks == []

    assert Checkpointer.open(store, consumer, OPTIONS).recover_acks("run", "stage") == Acked(2)
    assert consumer.acks == [["m0", "m1"]]
    _, driver = driver_on(store, consumer)
    assert driver.recovered_acks() == Acked(2)  # acks are idempotent: sending again is harmless
    assert consumer.acks == [["m0", "m1"], ["m0", "m1"]]


def test_recovery_with_nothing_stored_acks_nothing(consumer) -> None:
    checkpointer, driver = driver_on(DictStorage(), consumer)
    assert checkpointer.recover_acks("run", "stage") == Acked(0)
    assert driver.recovered_acks() == Acked(0)
    assert consumer.acks == []


def test_work_in_flight_at_a_crash_is_admitted_again_and_covered_work_is_skipped(consumer) -> None:
    store = DictStorage()
    checkpointer, driver = driver_on(store, consumer)
    tickets = [admitted(driver, Message(f"m{i}", offset=i)) for i in range(4)]
    driver.complete(tickets[0])
    driver.flush(1)
    driver.complete(tickets[2])  # done out of order, never durable
    checkpointer.close()  # crash: m1 in flight, m2 done, m3 in flight; none of them acked
    assert consumer.acks == [["m0"]]

    _, driver = driver_on(store, consumer)
    assert driver.resumed_from().point.watermark.offset == 1
    assert driver.begin(Message("m0", offset=0)) == Covered(Acked(1))
    assert [admitted(driver, Message(f"m{i}", offset=i)) for i in (1, 2, 3)] == [1, 2, 3]


# ---------------------------------------------------------------------------------------------
# partitions and state


def test_partitions_are_kept_in_sources_and_come_back_at_resume(consumer) -> None:
    store = DictStorage()
    checkpointer, driver = driver_on(store, consumer)
    p0 = admitted(driver, Message("p0-4", source="p0", offset=4, event_time_ms=40))
    p1 = admitted(driver, Message("p1-9", source="p1", offset=9, event_time_ms=90))
    assert driver.complete(p1).released == (p1,)  # partitions release on their own
    assert driver.complete(p0).released == (p0,)
    driver.flush(1)
    stored = checkpointer.get("run", "stage")
    assert [(s.name, s.sequence, s.watermark) for s in stored.sources] == [
        ("p0", 1, Watermark(5, 40)),
        ("p1", 1, Watermark(10, 90)),
    ]
    assert stored.watermark == Watermark(0, 90)  # the own input did not move

    _, driver = driver_on(store, consumer)
    assert driver.resumed_from().checkpoint == stored
    assert driver.begin(Message("p1-9", source="p1", offset=9)) == Covered(Acked(1))
    assert isinstance(driver.begin(Message("p0-9", source="p0", offset=9)), Admitted)


STATE = StageState(sinks=[SinkPosition("out", 2)], operator_states=[OperatorState("sum", b"\x03")])


def test_state_given_to_flush_is_carried_and_returned_at_resume(storage) -> None:
    checkpointer, driver = driver_on(storage)
    driver.complete(admitted(driver, Message("m0", offset=0)))
    driver.flush(1, STATE)
    resume = checkpointer.resume_point("run", "stage")
    assert resume.origin == Latest() and resume.checkpoint is not None
    assert (resume.checkpoint.sinks, resume.checkpoint.operator_states) == (
        STATE.sinks,
        STATE.operator_states,
    )
    assert driver.flush(2, STATE) == Pending(0)  # the same state again: nothing to write

    # A new driver carries the resumed state into its checkpoints until it is given another.
    _, driver = driver_on(storage)
    assert driver.resumed_from().checkpoint == resume.checkpoint
    driver.complete(admitted(driver, Message("m1", offset=1)))
    driver.flush(3)
    assert checkpointer.get("run", "stage").operator_states == STATE.operator_states
    newer = StageState(operator_states=[OperatorState("sum", b"\x04")])
    assert isinstance(driver.flush(4, newer), Checkpointed)  # a state alone is written
    stored = checkpointer.get("run", "stage")
    assert (stored.sequence, stored.sinks, stored.operator_states) == (3, (), newer.operator_states)


def test_after_a_fallback_the_resume_carries_the_older_checkpoint_whole() -> None:
    store = DictStorage()
    checkpointer, driver = driver_on(store)
    driver.complete(admitted(driver, Message("m0", offset=0)))
    driver.flush(1, STATE)
    older = checkpointer.get("run", "stage")
    driver.complete(admitted(driver, Message("m1", offset=1)))
    driver.flush(2, StageState(operator_states=[OperatorState("sum", b"\x09")]))
    # The latest and its retained copy damaged: the newest intact one is sequence 1.
    store.commit([Write(k, None, Put(b"garbage")) for k in (LATEST, f"{HISTORY}2")])

    resume = checkpointer.resume_point("run", "stage")
    assert isinstance(resume.origin, Fallback) and resume.checkpoint == older
    _, driver = driver_on(store)
    assert driver.resumed_from().checkpoint == older
    assert driver.resumed_from().checkpoint.operator_states == STATE.operator_states


def test_a_fresh_resume_has_no_checkpoint() -> None:
    checkpointer = Checkpointer.open(DictStorage(), None, OPTIONS)
    resume = checkpointer.resume_point("run", "stage")
    assert resume.origin == Fresh() and resume.checkpoint is None


def test_a_write_batch_past_its_bound_is_invalid_and_writes_nothing() -> None:
    store = DictStorage()
    checkpointer = Checkpointer.open(store, RecordingConsumer(), OPTIONS)
    checkpoint = Checkpoint("run", "stage", 1, 1, Watermark(1, 0), at_ms=0)
    with pytest.raises(InvalidInput) as e:
        checkpointer.write(checkpoint, [f"m{i}" for i in range(4097)])
    assert e.value.field == "batch"
    assert store.list_keys("") == []
    assert checkpointer.write(checkpoint, [f"m{i}" for i in range(4096)]).acks == Acked(4096)
