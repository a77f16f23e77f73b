use super::*;
use crate::memory::{MemoryStorage, RecordingConsumer};
use crate::model::{AckOutcome, ChangeKind, Options, OverflowPolicy, ResumeOrigin, StorageError};

type Fixture = Driver<MemoryStorage, RecordingConsumer>;

fn checkpointer() -> Checkpointer<MemoryStorage, RecordingConsumer> {
    let options = Options {
        namespace: "ns".into(),
        max_retained: 2,
        max_checkpoint_bytes: 4096,
    };
    Checkpointer::open(
        options,
        MemoryStorage::default(),
        RecordingConsumer::default(),
    )
    .unwrap()
}

fn options(policy: Policy) -> DriverOptions {
    DriverOptions {
        run_id: "run".into(),
        stage: "stage".into(),
        epoch: 1,
        policy,
        changelog_capacity: 64,
        overflow: OverflowPolicy::OverwriteOldest,
        max_in_flight: 64,
    }
}

fn message(i: u64) -> ProcessedMessage {
    ProcessedMessage {
        id: format!("m{i}"),
        next_offset: i + 1,
        event_time_ms: i as i64 * 10,
    }
}

fn commits(d: &mut Fixture) -> usize {
    d.checkpointer_mut()
        .storage_mut()
        .calls
        .iter()
        .filter(|c| **c == "commit")
        .count()
}

#[test]
fn per_batch_ten_commits_exactly_once_on_the_tenth_message() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerBatch(10))).unwrap();
    for i in 0..9 {
        assert_eq!(
            d.record_processed(message(i), 0).unwrap(),
            Progress::Pending(i as u32 + 1)
        );
    }
    assert_eq!(commits(&mut d), 0);
    assert!(d.checkpointer_mut().consumer_mut().acks.is_empty());
    let Progress::Checkpointed(receipt) = d.record_processed(message(9), 0).unwrap() else {
        panic!()
    };
    assert_eq!(
        (receipt.sequence, receipt.acks.clone()),
        (1, AckOutcome::Acked(10))
    );
    assert_eq!(commits(&mut d), 1);
    assert_eq!(d.cursor().watermark.offset, 10);
}

#[test]
fn a_second_flush_is_a_no_op_without_storage_calls() {
    let mut d = Driver::open(checkpointer(), options(Policy::ExplicitFlush)).unwrap();
    d.record_processed(message(0), 0).unwrap();
    assert!(matches!(
        d.flush(None, 5).unwrap(),
        Progress::Checkpointed(_)
    ));
    let calls = d.checkpointer_mut().storage_mut().calls.len();
    assert_eq!(d.flush(None, 6).unwrap(), Progress::Pending(0));
    assert_eq!(d.checkpointer_mut().storage_mut().calls.len(), calls);
}

#[test]
fn per_batch_zero_is_invalid() {
    assert!(
        matches!(Driver::open(checkpointer(), options(Policy::PerBatch(0))), Err(Error::Invalid(ref i)) if i.field == "policy")
    );
}

#[test]
fn an_offset_below_a_pending_one_is_rejected_before_any_storage_call() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerBatch(10))).unwrap();
    d.record_processed(message(4), 0).unwrap(); // pending at 5, nothing durable
    let calls = d.checkpointer_mut().storage_mut().calls.len();
    let err = d
        .record_processed(
            ProcessedMessage {
                id: "late".into(),
                next_offset: 4,
                event_time_ms: 0,
            },
            0,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Regression(ref i) if i.field == "offset"),
        "{err:?}"
    );
    assert_eq!(d.checkpointer_mut().storage_mut().calls.len(), calls);
}

#[test]
fn stored_ahead_of_the_cursor_makes_the_next_checkpoint_a_regression_that_changes_nothing() {
    // The driver's cursor is at 5; meanwhile the stored checkpoint reached 7 (same epoch).
    let mut d = Driver::open(checkpointer(), options(Policy::ExplicitFlush)).unwrap();
    d.record_processed(message(4), 0).unwrap();
    d.flush(None, 0).unwrap();
    let mut ahead = d.checkpointer_mut().get("run", "stage").unwrap();
    ahead.sequence = 5;
    ahead.watermark.offset = 7;
    d.checkpointer_mut().write(&ahead, &[]).unwrap();
    d.record_processed(message(5), 0).unwrap(); // next offset 6
    let err = d.flush(None, 0).unwrap_err();
    assert!(matches!(err, Error::Regression(_)), "{err:?}");
    assert_eq!(d.checkpointer_mut().get("run", "stage").unwrap(), ahead);
    assert_eq!(
        d.checkpointer_mut().consumer_mut().acks.len(),
        1,
        "m6 is not acked"
    );
}

#[test]
fn a_failed_commit_keeps_messages_pending_and_flush_retries_them() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerBatch(2))).unwrap();
    d.record_processed(message(0), 0).unwrap();
    d.checkpointer_mut().storage_mut().fail_next_commit =
        Some(StorageError::Timeout("slow".into()));
    assert!(matches!(
        d.record_processed(message(1), 0),
        Err(Error::Storage(_))
    ));
    assert!(d.checkpointer_mut().consumer_mut().acks.is_empty());
    let Progress::Checkpointed(receipt) = d.flush(None, 0).unwrap() else {
        panic!()
    };
    assert_eq!(receipt.acks, AckOutcome::Acked(2));
    assert_eq!(d.cursor().watermark.offset, 2);
}

#[test]
fn a_restarted_driver_resumes_from_the_durable_checkpoint() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerBatch(3))).unwrap();
    for i in 0..5 {
        d.record_processed(message(i), 0).unwrap();
    }
    // Crash: drop the driver with 2 messages pending; keep only the storage.
    let storage = d.checkpointer_mut().storage_mut().clone();
    drop(d);
    let options_ = Options {
        namespace: "ns".into(),
        max_retained: 2,
        max_checkpoint_bytes: 4096,
    };
    let c = Checkpointer::open(options_, storage, RecordingConsumer::default()).unwrap();
    let d = Driver::open(c, options(Policy::PerBatch(3))).unwrap();
    assert_eq!(d.resumed_from().origin, ResumeOrigin::Latest);
    assert_eq!(d.resumed_from().point.watermark.offset, 3);
}

#[test]
fn an_older_epoch_is_fenced_at_open() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerMessage)).unwrap();
    d.record_processed(message(0), 0).unwrap();
    let storage = d.checkpointer_mut().storage_mut().clone();
    let opts = Options {
        namespace: "ns".into(),
        max_retained: 2,
        max_checkpoint_bytes: 4096,
    };
    let mut stale = options(Policy::PerMessage);
    stale.epoch = 0;
    let c = Checkpointer::open(opts, storage, RecordingConsumer::default()).unwrap();
    assert!(matches!(Driver::open(c, stale), Err(Error::Fenced(_))));
}

#[test]
fn the_changelog_records_processed_watermark_and_checkpoint_events() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerBatch(2))).unwrap();
    d.record_processed_batch(vec![message(1), message(2)], 0)
        .unwrap();
    let kinds: Vec<ChangeKind> = d.changelog().events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Watermark,
            ChangeKind::Processed,
            ChangeKind::Watermark,
            ChangeKind::Processed,
            ChangeKind::Checkpoint
        ]
    );
}

#[test]
fn batch_api_checkpoints_at_every_batch_boundary() {
    let mut opts = options(Policy::PerBatch(100));
    opts.max_in_flight = 100;
    let mut d = Driver::open(checkpointer(), opts).unwrap();
    let progress = d
        .record_processed_batch((0..250).map(message).collect(), 0)
        .unwrap();
    assert_eq!(progress.checkpoints.len(), 2);
    assert_eq!(progress.pending, 50);
    assert_eq!(d.cursor().watermark.offset, 200);
}

#[test]
fn a_changelog_beyond_its_bound_is_invalid() {
    let mut too_big = options(Policy::PerMessage);
    too_big.changelog_capacity = crate::changelog::MAX_CAPACITY + 1;
    let result = Driver::open(checkpointer(), too_big);
    assert!(matches!(result, Err(Error::Invalid(ref i)) if i.field == "changelog-capacity"));
}

// ---- sources that redeliver, out-of-order completion, partitions, state ----

use crate::model::{Admission, Message, OperatorState, SinkPosition, StageState};

fn at(source: &str, id: &str, offset: Option<u64>) -> Message {
    Message {
        id: id.into(),
        source: source.into(),
        offset,
        event_time_ms: offset.unwrap_or(0) as i64 * 10,
    }
}

fn admitted(d: &mut Fixture, message: Message) -> u64 {
    match d.begin(message).unwrap() {
        Admission::Admitted(ticket) => ticket,
        other => panic!("expected admitted, got {other:?}"),
    }
}

/// A crash: the driver is lost; a new one opens over the same storage with a fresh consumer.
fn restart(mut d: Fixture, policy: Policy) -> Fixture {
    let storage = std::mem::take(d.checkpointer_mut().storage_mut());
    let checkpointer = Checkpointer::open(
        d.checkpointer_mut().options().clone(),
        storage,
        RecordingConsumer::default(),
    )
    .unwrap();
    Driver::open(checkpointer, options(policy)).unwrap()
}

fn acked(d: &mut Fixture) -> Vec<Vec<String>> {
    d.checkpointer_mut().consumer_mut().acks.clone()
}

#[test]
fn a_redelivery_at_or_below_the_durable_offset_is_acked_and_skipped() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerMessage)).unwrap();
    d.record_processed(message(4), 0).unwrap(); // durable at 5
    let calls = commits(&mut d);
    let again = d.record_processed(message(4), 0).unwrap();
    assert_eq!(again, Progress::Covered(AckOutcome::Acked(1)));
    assert_eq!(commits(&mut d), calls);
    assert_eq!(acked(&mut d).last().unwrap(), &vec!["m4".to_string()]);
    assert_eq!(d.cursor().watermark.offset, 5);
}

#[test]
fn a_crash_between_commit_and_ack_is_repaired_when_the_next_driver_opens() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerBatch(3))).unwrap();
    d.checkpointer_mut().consumer_mut().fail_next = 1;
    d.record_processed(message(0), 0).unwrap();
    d.record_processed(message(1), 0).unwrap();
    let progress = d.record_processed(message(2), 0).unwrap();
    assert!(
        matches!(progress, Progress::Checkpointed(ref r) if matches!(r.acks, AckOutcome::Failed(_)))
    );
    let mut d = restart(d, Policy::PerBatch(3));
    assert_eq!(d.recovered_acks(), &AckOutcome::Acked(3));
    assert_eq!(acked(&mut d), vec![vec!["m0", "m1", "m2"]]);
    // The source redelivers them anyway: covered, acked again, not recorded.
    for i in 0..3 {
        assert!(matches!(
            d.record_processed(message(i), 0).unwrap(),
            Progress::Covered(_)
        ));
    }
    assert_eq!(
        d.record_processed(message(3), 0).unwrap(),
        Progress::Pending(1)
    );
}

#[test]
fn a_failed_ack_is_sent_again_with_the_next_checkpoint() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerMessage)).unwrap();
    d.checkpointer_mut().consumer_mut().fail_next = 1;
    d.record_processed(message(0), 0).unwrap();
    d.record_processed(message(1), 0).unwrap();
    assert_eq!(acked(&mut d), vec![vec!["m0", "m1"]]);
}

#[test]
fn out_of_order_completion_checkpoints_only_the_completed_prefix() {
    let mut d = Driver::open(checkpointer(), options(Policy::ExplicitFlush)).unwrap();
    let t: Vec<u64> = (0..4)
        .map(|i| admitted(&mut d, at("", &format!("m{i}"), Some(i))))
        .collect();
    assert!(d.complete(t[2]).unwrap().released.is_empty());
    assert_eq!(d.complete(t[0]).unwrap().released, vec![t[0]]);
    let Progress::Checkpointed(receipt) = d.flush(None, 7).unwrap() else {
        panic!("expected a checkpoint");
    };
    assert_eq!(receipt.acks, AckOutcome::Acked(1));
    assert_eq!(d.cursor().watermark.offset, 1);
    assert_eq!(d.complete(t[1]).unwrap().released, vec![t[1], t[2]]);
    d.flush(None, 8).unwrap();
    assert_eq!(d.cursor().watermark.offset, 3);
    assert_eq!(acked(&mut d), vec![vec!["m0"], vec!["m1", "m2"]]);
    // Completing twice, or a ticket never given, is invalid.
    assert!(matches!(d.complete(t[1]), Err(Error::Invalid(ref i)) if i.field == "ticket"));
    assert!(matches!(d.complete(99), Err(Error::Invalid(ref i)) if i.field == "ticket"));
}

#[test]
fn the_in_flight_cap_answers_backpressure_until_a_checkpoint_covers_work() {
    let mut opts = options(Policy::ExplicitFlush);
    opts.max_in_flight = 2;
    let mut d = Driver::open(checkpointer(), opts).unwrap();
    let a = admitted(&mut d, at("", "a", Some(0)));
    let b = admitted(&mut d, at("", "b", Some(1)));
    assert_eq!(
        d.begin(at("", "c", Some(2))).unwrap(),
        Admission::Backpressure(2)
    );
    d.complete(b).unwrap();
    let done = d.complete(a).unwrap();
    assert!(done.due, "the cap makes a checkpoint due");
    assert_eq!(
        d.begin(at("", "c", Some(2))).unwrap(),
        Admission::Backpressure(2)
    );
    d.flush(None, 0).unwrap();
    admitted(&mut d, at("", "c", Some(2)));
}

#[test]
fn at_a_crash_work_not_covered_is_admitted_again_and_covered_work_is_skipped() {
    let mut d = Driver::open(checkpointer(), options(Policy::ExplicitFlush)).unwrap();
    let t: Vec<u64> = (0..3)
        .map(|i| admitted(&mut d, at("", &format!("m{i}"), Some(i))))
        .collect();
    d.complete(t[0]).unwrap();
    d.complete(t[2]).unwrap();
    d.flush(None, 0).unwrap(); // covers m0 only
    let mut d = restart(d, Policy::ExplicitFlush);
    assert_eq!(d.resumed_from().point.watermark.offset, 1);
    assert!(matches!(
        d.begin(at("", "m0", Some(0))).unwrap(),
        Admission::Covered(AckOutcome::Acked(1))
    ));
    admitted(&mut d, at("", "m1", Some(1)));
    admitted(&mut d, at("", "m2", Some(2)));
}

#[test]
fn an_offset_at_or_below_one_in_flight_is_a_regression() {
    let mut d = Driver::open(checkpointer(), options(Policy::ExplicitFlush)).unwrap();
    admitted(&mut d, at("", "m5", Some(5)));
    for offset in [5, 3] {
        let err = d.begin(at("", "again", Some(offset))).unwrap_err();
        assert!(
            matches!(err, Error::Regression(ref i) if i.field == "offset"),
            "{err:?}"
        );
    }
}

#[test]
fn partitions_keep_their_own_positions_in_one_checkpoint() {
    let mut d = Driver::open(checkpointer(), options(Policy::ExplicitFlush)).unwrap();
    let p0 = admitted(&mut d, at("p0", "a", Some(5)));
    let p1 = admitted(&mut d, at("p1", "b", Some(7)));
    let slow = admitted(&mut d, at("p1", "c", Some(8)));
    d.complete(p1).unwrap();
    d.complete(p0).unwrap();
    d.flush(None, 0).unwrap();
    let stored = d.checkpointer_mut().get("run", "stage").unwrap();
    let positions: Vec<(String, u64, u64)> = stored
        .sources
        .iter()
        .map(|s| (s.name.clone(), s.sequence, s.watermark.offset))
        .collect();
    assert_eq!(positions, vec![("p0".into(), 1, 6), ("p1".into(), 1, 8)]);
    let _ = slow;
    let mut d = restart(d, Policy::ExplicitFlush);
    let resumed = d.resumed_from().checkpoint.clone().unwrap();
    assert_eq!(resumed.sources, stored.sources);
    assert!(matches!(
        d.begin(at("p0", "a", Some(5))).unwrap(),
        Admission::Covered(_)
    ));
    assert!(matches!(
        d.begin(at("p1", "b", Some(7))).unwrap(),
        Admission::Covered(_)
    ));
    admitted(&mut d, at("p1", "c", Some(8)));
}

#[test]
fn messages_without_offset_are_recognised_by_id() {
    let mut d = Driver::open(checkpointer(), options(Policy::ExplicitFlush)).unwrap();
    let a = admitted(&mut d, at("", "a", None));
    let err = d.begin(at("", "a", None)).unwrap_err();
    assert!(
        matches!(err, Error::Regression(ref i) if i.field == "id"),
        "{err:?}"
    );
    d.complete(a).unwrap();
    d.flush(None, 0).unwrap();
    assert!(matches!(
        d.begin(at("", "a", None)).unwrap(),
        Admission::Covered(_)
    ));
    let mut d = restart(d, Policy::ExplicitFlush);
    assert!(matches!(
        d.begin(at("", "a", None)).unwrap(),
        Admission::Covered(_)
    ));
    admitted(&mut d, at("", "b", None));
}

fn state(sum: u8, rows: u64) -> StageState {
    StageState {
        sinks: vec![SinkPosition {
            name: "out".into(),
            position: rows,
        }],
        operator_states: vec![OperatorState {
            name: "sum".into(),
            state: vec![sum],
        }],
    }
}

#[test]
fn state_given_to_flush_goes_with_the_position_and_comes_back_at_resume() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerMessage)).unwrap();
    let t = admitted(&mut d, at("", "m0", Some(0)));
    d.complete(t).unwrap();
    d.flush(Some(state(3, 1)), 0).unwrap();
    // Nothing new: no write.
    assert_eq!(d.flush(Some(state(3, 1)), 0).unwrap(), Progress::Pending(0));
    // record-processed carries the last state unchanged.
    d.record_processed(message(1), 0).unwrap();
    let d = restart(d, Policy::PerMessage);
    let resumed = d.resumed_from().checkpoint.clone().unwrap();
    assert_eq!(resumed.watermark.offset, 2);
    assert_eq!(resumed.sinks, state(3, 1).sinks);
    assert_eq!(resumed.operator_states, state(3, 1).operator_states);
    // A new driver carries the resumed state until it is given another.
    let mut d = d;
    d.record_processed(message(2), 0).unwrap();
    let stored = d.checkpointer_mut().get("run", "stage").unwrap();
    assert_eq!(stored.operator_states, state(3, 1).operator_states);
    // A state change alone is written.
    assert!(matches!(
        d.flush(Some(state(4, 1)), 0).unwrap(),
        Progress::Checkpointed(_)
    ));
}

#[test]
fn max_in_flight_is_bounded_and_per_batch_must_fit_in_it() {
    for bad in [0, MAX_IN_FLIGHT + 1] {
        let mut opts = options(Policy::PerMessage);
        opts.max_in_flight = bad;
        let result = Driver::open(checkpointer(), opts);
        assert!(matches!(result, Err(Error::Invalid(ref i)) if i.field == "max-in-flight"));
    }
    let result = Driver::open(checkpointer(), options(Policy::PerBatch(65)));
    assert!(matches!(result, Err(Error::Invalid(ref i)) if i.field == "policy"));
}
