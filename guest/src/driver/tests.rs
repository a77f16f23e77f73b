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
    assert!(matches!(d.flush(5).unwrap(), Progress::Checkpointed(_)));
    let calls = d.checkpointer_mut().storage_mut().calls.len();
    assert_eq!(d.flush(6).unwrap(), Progress::Pending(0));
    assert_eq!(d.checkpointer_mut().storage_mut().calls.len(), calls);
}

#[test]
fn per_batch_zero_is_invalid() {
    assert!(
        matches!(Driver::open(checkpointer(), options(Policy::PerBatch(0))), Err(Error::Invalid(ref i)) if i.field == "policy")
    );
}

#[test]
fn an_offset_below_the_cursor_is_rejected_before_any_storage_call() {
    let mut d = Driver::open(checkpointer(), options(Policy::PerMessage)).unwrap();
    d.record_processed(message(4), 0).unwrap(); // cursor at 5
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
    d.flush(0).unwrap();
    let mut ahead = d.checkpointer_mut().get("run", "stage").unwrap();
    ahead.sequence = 5;
    ahead.watermark.offset = 7;
    d.checkpointer_mut().write(&ahead, &[]).unwrap();
    d.record_processed(message(5), 0).unwrap(); // next offset 6
    let err = d.flush(0).unwrap_err();
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
    let Progress::Checkpointed(receipt) = d.flush(0).unwrap() else {
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
    let mut d = Driver::open(checkpointer(), options(Policy::PerBatch(100))).unwrap();
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
