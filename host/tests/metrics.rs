//! What the checkpointers record through the `metrics` facade: read back from an in-memory
//! recorder, series by series, with their `store` and `namespace` labels.

use std::collections::BTreeMap;

use checkpoint_guest::keys::StageKeys;
use checkpoint_host::consumer::RecordingConsumer;
use checkpoint_host::metrics::{
    ACK_CALLS_TOTAL, ACK_FAILURES_TOTAL, ACKED_MESSAGES_TOTAL, CHECKPOINT_SIZE_BYTES,
    COMMIT_DURATION_SECONDS, ERRORS_TOTAL, FALLBACKS_TOTAL, READ_DURATION_SECONDS, REPLAYS_TOTAL,
    RESUMES_TOTAL, STORAGE_ERRORS_TOTAL, STORAGE_READ_DURATION_SECONDS, WRITE_DURATION_SECONDS,
    WRITES_TOTAL,
};
use checkpoint_host::storage::MemoryStorage;
use checkpoint_host::{
    AckOutcome, Checkpoint, CheckpointError, Checkpointer, DriverOptions, Error, Options,
    OverflowPolicy, Policy, ProcessedMessage, ResumeOrigin, Watermark,
};
use checkpoint_testkit::faults::{
    AckScript, FaultyConsumer, FaultyStorage, StorageCall, StorageFault,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

/// One series: its name and its labels as `k=v` pairs, sorted.
type Series = (String, Vec<String>);

/// Counter values, and the number of observations of each histogram.
#[derive(Debug, Default)]
struct Recorded {
    counters: BTreeMap<Series, u64>,
    histograms: BTreeMap<Series, Vec<f64>>,
}

impl Recorded {
    fn counter(&self, name: &str, labels: &[impl AsRef<str>]) -> u64 {
        self.counters
            .get(&series(name, labels))
            .copied()
            .unwrap_or(0)
    }

    fn observations(&self, name: &str, labels: &[impl AsRef<str>]) -> &[f64] {
        self.histograms
            .get(&series(name, labels))
            .map_or(&[], Vec::as_slice)
    }
}

fn series(name: &str, labels: &[impl AsRef<str>]) -> Series {
    let mut labels: Vec<String> = labels.iter().map(|l| l.as_ref().to_owned()).collect();
    labels.sort();
    (name.to_owned(), labels)
}

/// Runs `f` with a fresh recorder for this thread, and returns what it recorded.
fn record(f: impl FnOnce()) -> Recorded {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, f);
    let mut recorded = Recorded::default();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let series = (key.name().to_owned(), labels);
        match value {
            DebugValue::Counter(n) => {
                recorded.counters.insert(series, n);
            }
            DebugValue::Histogram(values) => {
                recorded
                    .histograms
                    .insert(series, values.into_iter().map(|v| v.0).collect());
            }
            DebugValue::Gauge(_) => {}
        }
    }
    recorded
}

fn options(namespace: &str) -> Options {
    Options {
        namespace: namespace.into(),
        max_retained: 3,
        max_checkpoint_bytes: 1 << 20,
    }
}

fn checkpoint(sequence: u64, offset: u64) -> Checkpoint {
    Checkpoint {
        run_id: "run-1".into(),
        stage: "enrich".into(),
        sequence,
        epoch: 1,
        watermark: Watermark {
            offset,
            event_time_ms: 1_700_000_000_000,
        },
        sources: vec![],
        sinks: vec![],
        operator_states: vec![],
        idempotency_key: String::new(),
        at_ms: 1_700_000_000_500,
    }
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

const ORDERS: [&str; 2] = ["store=memory", "namespace=orders"];

/// `labels` and `extra`, as one label set.
fn with(labels: &[&str], extra: &[&str]) -> Vec<String> {
    labels
        .iter()
        .chain(extra)
        .map(|l| (*l).to_owned())
        .collect()
}

#[test]
fn writes_replays_sizes_errors_and_acks_are_counted_per_store_and_namespace() {
    let recorded = record(|| {
        let acks = AckScript::new();
        acks.fail_nth(2);
        let consumer = FaultyConsumer::with_script(RecordingConsumer::new(), acks);
        let mut checkpointer = Checkpointer::open(
            Box::new(MemoryStorage::new()),
            Box::new(consumer),
            &options("orders"),
        )
        .expect("open");
        checkpointer.set_metrics_store("memory");

        checkpointer
            .write(&checkpoint(1, 10), &ids(&["m-9"]))
            .expect("first write");
        let second = checkpointer
            .write(&checkpoint(2, 20), &ids(&["m-18", "m-19"]))
            .expect("second write, its ack fails");
        assert!(matches!(second.acks, AckOutcome::Failed(_)));
        let replay = checkpointer
            .write(&checkpoint(2, 20), &ids(&["m-18", "m-19"]))
            .expect("a replay");
        assert!(replay.replayed);
        let regression = checkpointer.write(&checkpoint(1, 10), &[]);
        assert!(matches!(
            regression,
            Err(Error::Checkpoint(CheckpointError::Regression(_)))
        ));

        checkpointer.get("run-1", "enrich").expect("get");
        let missing = checkpointer.get("run-1", "other");
        assert!(matches!(
            missing,
            Err(Error::Checkpoint(CheckpointError::NotFound))
        ));
        let resume = checkpointer
            .resume_point("run-1", "enrich")
            .expect("resume");
        assert_eq!(resume.origin, ResumeOrigin::Latest);
        assert_eq!(
            checkpointer
                .history("run-1", "enrich")
                .expect("history")
                .len(),
            2
        );
    });

    let write = |call: &str| with(&ORDERS, &[call]);
    assert_eq!(recorded.counter(WRITES_TOTAL, &ORDERS), 2, "{recorded:#?}");
    assert_eq!(recorded.counter(REPLAYS_TOTAL, &ORDERS), 1);
    let sizes = recorded.observations(CHECKPOINT_SIZE_BYTES, &ORDERS);
    assert_eq!(sizes.len(), 2);
    assert!(sizes.iter().all(|&size| size > 0.0));
    assert_eq!(
        recorded
            .observations(COMMIT_DURATION_SECONDS, &ORDERS)
            .len(),
        2,
        "the replay and the regression committed nothing"
    );
    assert_eq!(
        recorded
            .observations(WRITE_DURATION_SECONDS, &write("call=write"))
            .len(),
        4
    );
    assert_eq!(
        recorded.counter(
            ERRORS_TOTAL,
            &with(&ORDERS, &["call=write", "error=regression"])
        ),
        1
    );
    assert_eq!(
        recorded.counter(
            ERRORS_TOTAL,
            &with(&ORDERS, &["call=get", "error=not-found"])
        ),
        1
    );
    for (call, count) in [
        ("call=get", 2),
        ("call=resume_point", 1),
        ("call=history", 1),
    ] {
        assert_eq!(
            recorded
                .observations(READ_DURATION_SECONDS, &with(&ORDERS, &[call]))
                .len(),
            count,
            "{call}"
        );
    }
    assert_eq!(
        recorded.counter(RESUMES_TOTAL, &with(&ORDERS, &["origin=latest"])),
        1
    );
    assert_eq!(recorded.counter(FALLBACKS_TOTAL, &ORDERS), 0);
    assert!(
        !recorded
            .observations(STORAGE_READ_DURATION_SECONDS, &with(&ORDERS, &["op=get"]))
            .is_empty()
    );
    // Three ack calls (the replay acks again); the second failed.
    assert_eq!(recorded.counter(ACK_CALLS_TOTAL, &ORDERS), 3);
    assert_eq!(recorded.counter(ACKED_MESSAGES_TOTAL, &ORDERS), 3);
    assert_eq!(recorded.counter(ACK_FAILURES_TOTAL, &ORDERS), 1);
    // Every series carries the labels given: nothing was recorded as `unknown`.
    let all = recorded.counters.keys().chain(recorded.histograms.keys());
    for (name, labels) in all {
        assert!(
            labels.contains(&"store=memory".to_owned())
                && labels.contains(&"namespace=orders".to_owned()),
            "{name} {labels:?}"
        );
    }
}

#[test]
fn a_fallback_and_store_failures_are_counted() {
    let recorded = record(|| {
        let storage = MemoryStorage::new();
        let mut checkpointer = Checkpointer::open(
            Box::new(storage.clone()),
            Box::new(RecordingConsumer::new()),
            &options("orders"),
        )
        .expect("open");
        checkpointer.set_metrics_store("memory");
        checkpointer.write(&checkpoint(1, 10), &[]).expect("write");
        checkpointer.write(&checkpoint(2, 20), &[]).expect("write");
        let latest = StageKeys::new("orders", "run-1", "enrich").latest();
        storage.set_raw(&latest, b"bit rot".to_vec());
        let resume = checkpointer
            .resume_point("run-1", "enrich")
            .expect("resume");
        assert!(matches!(resume.origin, ResumeOrigin::Fallback(_)));

        // Another namespace on a store whose first commit fails.
        let faulty = FaultyStorage::new(MemoryStorage::new());
        faulty
            .script()
            .inject(StorageCall::Commit, 1, StorageFault::Unavailable);
        let mut payments = Checkpointer::open(
            Box::new(faulty),
            Box::new(RecordingConsumer::new()),
            &options("payments"),
        )
        .expect("open");
        payments.set_metrics_store("memory");
        let failed = payments.write(&checkpoint(1, 10), &ids(&["m-9"]));
        assert!(matches!(
            failed,
            Err(Error::Checkpoint(CheckpointError::Storage(_)))
        ));
        payments
            .write(&checkpoint(1, 10), &ids(&["m-9"]))
            .expect("the retry");
    });

    assert_eq!(
        recorded.counter(FALLBACKS_TOTAL, &ORDERS),
        1,
        "{recorded:#?}"
    );
    assert_eq!(
        recorded.counter(RESUMES_TOTAL, &with(&ORDERS, &["origin=fallback"])),
        1
    );
    assert_eq!(recorded.counter(WRITES_TOTAL, &ORDERS), 2);

    let payments = ["store=memory", "namespace=payments"];
    assert_eq!(
        recorded.counter(
            STORAGE_ERRORS_TOTAL,
            &with(&payments, &["op=commit", "error=unavailable"])
        ),
        1
    );
    assert_eq!(
        recorded.counter(
            ERRORS_TOTAL,
            &with(&payments, &["call=write", "error=storage"])
        ),
        1
    );
    assert_eq!(recorded.counter(WRITES_TOTAL, &payments), 1);
    assert_eq!(
        recorded.counter(ACK_CALLS_TOTAL, &payments),
        1,
        "nothing acked on failure"
    );
    assert_eq!(
        recorded
            .observations(COMMIT_DURATION_SECONDS, &payments)
            .len(),
        2,
        "a failed commit is timed too"
    );
}

#[test]
fn a_driver_records_its_writes_and_resumes_and_an_unlabelled_store_is_unknown() {
    let recorded = record(|| {
        let checkpointer = Checkpointer::open(
            Box::new(MemoryStorage::new()),
            Box::new(RecordingConsumer::new()),
            &options("orders"),
        )
        .expect("open");
        let mut driver = checkpointer
            .open_driver(&DriverOptions {
                run_id: "run-1".into(),
                stage: "enrich".into(),
                epoch: 1,
                policy: Policy::PerBatch(2),
                changelog_capacity: 0,
                overflow: OverflowPolicy::DropNew,
                max_in_flight: 16,
            })
            .expect("open driver");
        let messages: Vec<ProcessedMessage> = (0..5)
            .map(|offset| ProcessedMessage {
                id: format!("m-{offset}"),
                next_offset: offset + 1,
                event_time_ms: 0,
            })
            .collect();
        let progress = driver
            .record_processed_batch(&messages, 1_700_000_000_000)
            .expect("batch");
        assert_eq!(progress.checkpoints.len(), 2);
        driver.flush(None, 1_700_000_000_001).expect("flush");
        // Nothing pending: no write, so no write duration.
        driver.flush(None, 1_700_000_000_002).expect("empty flush");
    });

    let unknown = ["store=unknown", "namespace=orders"];
    assert_eq!(recorded.counter(WRITES_TOTAL, &unknown), 3, "{recorded:#?}");
    assert_eq!(
        recorded.counter(RESUMES_TOTAL, &with(&unknown, &["origin=fresh"])),
        1
    );
    assert_eq!(
        recorded
            .observations(
                READ_DURATION_SECONDS,
                &with(&unknown, &["call=open_driver"])
            )
            .len(),
        1
    );
    assert_eq!(
        recorded
            .observations(
                WRITE_DURATION_SECONDS,
                &with(&unknown, &["call=record_processed_batch"])
            )
            .len(),
        1,
        "one observation for a batch call, however many checkpoints it wrote"
    );
    assert_eq!(
        recorded
            .observations(WRITE_DURATION_SECONDS, &with(&unknown, &["call=flush"]))
            .len(),
        1
    );
    assert_eq!(recorded.counter(ACKED_MESSAGES_TOTAL, &unknown), 5);
}
