//! The shipped component (component/checkpoint.wasm) through the host, on every native backend.
//! Each case runs once per backend; the SQLite cases inspect the file through a second
//! connection, so what they see is what was committed.

use checkpoint_host::consumer::RecordingConsumer;
use checkpoint_host::storage::{MemoryStorage, SqliteStorage};
use checkpoint_host::{
    AckOutcome, Checkpoint, CheckpointError, Checkpointer, Codec, CommitOutcome, CorruptionKind,
    DriverOptions, Error, Lookup, Options, OverflowPolicy, Policy, ProcessedMessage, Progress,
    ResumeOrigin, Storage, StorageError, Watermark, Write, WriteOp,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tempfile::TempDir;

/// A backend under test: how to open a connection, and a second one to look behind the
/// component's back.
struct Backend {
    name: &'static str,
    open: Box<dyn Fn() -> Box<dyn Storage>>,
    _dir: Option<TempDir>,
}

fn backends() -> Vec<Backend> {
    let memory = MemoryStorage::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("checkpoints.db");
    vec![
        Backend {
            name: "memory",
            open: Box::new(move || Box::new(memory.clone())),
            _dir: None,
        },
        Backend {
            name: "sqlite",
            open: Box::new(move || Box::new(SqliteStorage::open(&path).expect("open sqlite"))),
            _dir: Some(dir),
        },
    ]
}

fn options(max_retained: u32) -> Options {
    Options {
        namespace: "test".into(),
        max_retained,
        max_checkpoint_bytes: 64 * 1024,
    }
}

fn at(sequence: u64, offset: u64) -> Checkpoint {
    Checkpoint {
        run_id: "run".into(),
        stage: "stage".into(),
        sequence,
        epoch: 1,
        watermark: Watermark {
            offset,
            event_time_ms: offset as i64,
        },
        sources: vec![],
        sinks: vec![],
        operator_states: vec![],
        idempotency_key: String::new(),
        at_ms: 1_000 + sequence,
    }
}

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn keys(backend: &Backend) -> Vec<String> {
    (backend.open)().list_keys("").expect("list keys")
}

fn open(backend: &Backend, max_retained: u32, consumer: &RecordingConsumer) -> Checkpointer {
    Checkpointer::open(
        (backend.open)(),
        Box::new(consumer.clone()),
        &options(max_retained),
    )
    .expect("open")
}

fn put_raw(backend: &Backend, key: &str, value: Vec<u8>) {
    let write = Write {
        key: key.into(),
        expected_version: None,
        op: WriteOp::Put(value),
    };
    assert!(matches!(
        (backend.open)().commit(vec![write]),
        Ok(CommitOutcome::Committed(_))
    ));
}

fn raw(backend: &Backend, key: &str) -> Vec<u8> {
    match (backend.open)().get(key).expect("get") {
        Lookup::Found(entry) => entry.value,
        Lookup::Missing => panic!("{key} missing"),
    }
}

const LATEST: &str = "ckpt/test/run/stage/latest";

fn checkpoint_error(result: Result<impl std::fmt::Debug, Error>) -> CheckpointError {
    match result {
        Err(Error::Checkpoint(e)) => e,
        other => panic!("expected a checkpoint error, got {other:?}"),
    }
}

#[test]
fn regression_below_the_stored_offset_changes_nothing() {
    for b in backends() {
        let consumer = RecordingConsumer::new();
        let mut c = open(&b, 2, &consumer);
        c.write(&at(1, 7), &ids(&["m6"])).unwrap();
        let before = keys(&b);
        let err = checkpoint_error(c.write(&at(2, 6), &ids(&["m5"])));
        assert!(
            matches!(err, CheckpointError::Regression(ref r) if r.field == "offset"),
            "{}: {err:?}",
            b.name
        );
        assert_eq!(keys(&b), before, "{}", b.name);
        assert_eq!(c.get("run", "stage").unwrap(), at(1, 7), "{}", b.name);
        assert_eq!(consumer.acks(), [ids(&["m6"])], "{}", b.name);
    }
}

#[test]
fn resume_with_nothing_stored_is_fresh_and_writes_nothing() {
    for b in backends() {
        let mut c = open(&b, 4, &RecordingConsumer::new());
        let resume = c.resume_point("run", "stage").unwrap();
        assert_eq!(resume.origin, ResumeOrigin::Fresh, "{}", b.name);
        assert_eq!(resume.point.watermark.offset, 0);
        assert!(matches!(
            checkpoint_error(c.get("run", "stage")),
            CheckpointError::NotFound
        ));
        assert!(keys(&b).is_empty(), "{}: reads must not write", b.name);
    }
}

fn driver_options(policy: Policy) -> DriverOptions {
    DriverOptions {
        run_id: "run".into(),
        stage: "stage".into(),
        epoch: 1,
        policy,
        changelog_capacity: 16,
        overflow: OverflowPolicy::DropNew,
    }
}

fn message(i: u64) -> ProcessedMessage {
    ProcessedMessage {
        id: format!("m{i}"),
        next_offset: i + 1,
        event_time_ms: i as i64,
    }
}

#[test]
fn per_batch_ten_commits_once_on_the_tenth_and_a_second_flush_is_a_no_op() {
    for b in backends() {
        let consumer = RecordingConsumer::new();
        let mut d = open(&b, 1, &consumer)
            .open_driver(&driver_options(Policy::PerBatch(10)))
            .unwrap();
        for i in 0..9 {
            assert_eq!(
                d.record_processed(&message(i), 0).unwrap(),
                Progress::Pending(i as u32 + 1)
            );
        }
        assert!(keys(&b).is_empty(), "{}: nine messages, no commit", b.name);
        let Progress::Checkpointed(receipt) = d.record_processed(&message(9), 0).unwrap() else {
            panic!("{}: the tenth message must checkpoint", b.name)
        };
        assert_eq!(receipt.acks, AckOutcome::Acked(10));
        assert_eq!(keys(&b), [LATEST]);
        let version = (b.open)().get(LATEST).unwrap();
        assert_eq!(d.flush(5).unwrap(), Progress::Pending(0));
        assert_eq!(
            (b.open)().get(LATEST).unwrap(),
            version,
            "{}: flush with nothing pending",
            b.name
        );
        assert_eq!(consumer.acks().len(), 1);
    }
}

/// Fails the next `n` commits, passing everything else through.
struct FailingCommits {
    inner: Box<dyn Storage>,
    remaining: Arc<AtomicU32>,
}

impl Storage for FailingCommits {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        self.inner.get(key)
    }
    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        if self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StorageError::Unavailable("injected commit failure".into()));
        }
        self.inner.commit(writes)
    }
    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list_keys(prefix)
    }
}

#[test]
fn a_failed_commit_acks_nothing_changes_nothing_and_a_retry_succeeds() {
    for b in backends() {
        let consumer = RecordingConsumer::new();
        let remaining = Arc::new(AtomicU32::new(0));
        let storage = FailingCommits {
            inner: (b.open)(),
            remaining: remaining.clone(),
        };
        let mut c =
            Checkpointer::open(Box::new(storage), Box::new(consumer.clone()), &options(2)).unwrap();
        c.write(&at(1, 5), &ids(&["a"])).unwrap();
        let before: Vec<(String, Vec<u8>)> = keys(&b)
            .into_iter()
            .map(|k| (k.clone(), raw(&b, &k)))
            .collect();
        remaining.store(1, Ordering::SeqCst);
        let err = checkpoint_error(c.write(&at(2, 9), &ids(&["b"])));
        assert!(
            matches!(err, CheckpointError::Storage(ref m) if m.contains("injected")),
            "{}: {err:?}",
            b.name
        );
        assert_eq!(consumer.acks(), [ids(&["a"])], "{}: nothing acked", b.name);
        let after: Vec<(String, Vec<u8>)> = keys(&b)
            .into_iter()
            .map(|k| (k.clone(), raw(&b, &k)))
            .collect();
        assert_eq!(after, before, "{}: state unchanged", b.name);
        let receipt = c.write(&at(2, 9), &ids(&["b"])).unwrap();
        assert_eq!(receipt.acks, AckOutcome::Acked(1));
        assert_eq!(c.get("run", "stage").unwrap(), at(2, 9));
    }
}

#[test]
fn max_retained_two_keeps_the_two_newest_after_three_writes() {
    for b in backends() {
        let mut c = open(&b, 2, &RecordingConsumer::new());
        for s in 1..=3 {
            c.write(&at(s, s * 10), &[]).unwrap();
        }
        assert_eq!(
            keys(&b),
            [
                "ckpt/test/run/stage/h/00000000000000000002",
                "ckpt/test/run/stage/h/00000000000000000003",
                LATEST
            ],
            "{}",
            b.name
        );
        let history: Vec<u64> = c
            .history("run", "stage")
            .unwrap()
            .iter()
            .map(|c| c.sequence)
            .collect();
        assert_eq!(history, [2, 3]);
    }
}

#[test]
fn ids_with_slashes_and_colons_round_trip_and_never_collide() {
    for b in backends() {
        let mut c = open(&b, 2, &RecordingConsumer::new());
        let pairs = [
            ("a/b", "c"),
            ("a", "b/c"),
            ("a:b", "c"),
            ("a", "b:c"),
            ("a%2Fb", "c"),
            ("../..", "\0\n"),
            ("ü", "%"),
        ];
        for (i, (run, stage)) in pairs.iter().enumerate() {
            let mut cp = at(1, i as u64);
            cp.run_id = run.to_string();
            cp.stage = stage.to_string();
            c.write(&cp, &[]).unwrap();
        }
        for (i, (run, stage)) in pairs.iter().enumerate() {
            let got = c.get(run, stage).unwrap();
            assert_eq!(
                (
                    got.run_id.as_str(),
                    got.stage.as_str(),
                    got.watermark.offset
                ),
                (*run, *stage, i as u64),
                "{}",
                b.name
            );
        }
        assert_eq!(
            keys(&b).len(),
            pairs.len() * 2,
            "{}: one latest and one copy per pair",
            b.name
        );
        assert!(
            keys(&b)
                .iter()
                .all(|k| k.starts_with("ckpt/test/") && !k.contains(".."))
        );
    }
}

#[test]
fn a_corrupt_latest_fails_closed_and_resume_falls_back_to_an_intact_copy() {
    for b in backends() {
        let consumer = RecordingConsumer::new();
        let mut c = open(&b, 3, &consumer);
        c.write(&at(1, 10), &[]).unwrap();
        c.write(&at(2, 20), &[]).unwrap();
        let mut damaged = raw(&b, LATEST);
        damaged[30] ^= 0x08;
        put_raw(&b, LATEST, damaged.clone());

        let err = checkpoint_error(c.write(&at(3, 30), &ids(&["x"])));
        assert!(
            matches!(err, CheckpointError::Corrupt(ref k) if k.kind == CorruptionKind::CrcMismatch),
            "{}: {err:?}",
            b.name
        );
        assert_eq!(raw(&b, LATEST), damaged, "{}: never overwritten", b.name);
        assert!(consumer.acks().is_empty());

        let resume = c.resume_point("run", "stage").unwrap();
        let ResumeOrigin::Fallback(fallback) = resume.origin else {
            panic!("{}: {resume:?}", b.name)
        };
        assert_eq!(fallback.skipped[0].key, LATEST);
        assert_eq!(
            resume.point.sequence, 2,
            "{}: the intact copy of the latest",
            b.name
        );
        assert_eq!(raw(&b, LATEST), damaged, "{}: resume never writes", b.name);
    }
}

#[test]
fn ack_failure_leaves_the_checkpoint_durable_and_says_so() {
    for b in backends() {
        let consumer = RecordingConsumer::new();
        consumer.fail_next(1);
        let mut c = open(&b, 1, &consumer);
        let receipt = c.write(&at(1, 5), &ids(&["a"])).unwrap();
        assert!(matches!(receipt.acks, AckOutcome::Failed(_)), "{}", b.name);
        assert_eq!(consumer.failed(), [ids(&["a"])]);
        let mut again = open(&b, 1, &consumer);
        assert_eq!(
            again.get("run", "stage").unwrap(),
            at(1, 5),
            "{}: durable despite the ack failure",
            b.name
        );
        let replay = again.write(&at(1, 5), &ids(&["a"])).unwrap();
        assert!(
            replay.replayed && replay.acks == AckOutcome::Acked(1),
            "{}: {replay:?}",
            b.name
        );
    }
}

#[test]
fn a_stale_epoch_is_fenced_across_connections() {
    for b in backends() {
        let mut owner = open(&b, 1, &RecordingConsumer::new());
        let mut stale = open(&b, 1, &RecordingConsumer::new());
        let mut first = at(1, 1);
        first.epoch = 7;
        owner.write(&first, &[]).unwrap();
        let mut late = at(2, 2);
        late.epoch = 6;
        let err = checkpoint_error(stale.write(&late, &ids(&["z"])));
        assert!(
            matches!(err, CheckpointError::Fenced(ref f) if f.stored_epoch == 7 && f.attempted_epoch == 6),
            "{}",
            b.name
        );
        assert!(
            stale
                .open_driver(&DriverOptions {
                    epoch: 6,
                    ..driver_options(Policy::PerMessage)
                })
                .is_err()
        );
    }
}

#[test]
fn a_crashed_driver_resumes_from_the_last_durable_checkpoint() {
    for b in backends() {
        let consumer = RecordingConsumer::new();
        let mut d = open(&b, 2, &consumer)
            .open_driver(&driver_options(Policy::PerBatch(4)))
            .unwrap();
        d.record_processed_batch(&(0..10).map(message).collect::<Vec<_>>(), 0)
            .unwrap();
        drop(d); // crash: two messages pending, never flushed
        let mut d = open(&b, 2, &consumer)
            .open_driver(&driver_options(Policy::PerBatch(4)))
            .unwrap();
        let resume = d.resumed_from().unwrap();
        assert_eq!(
            (resume.origin, resume.point.watermark.offset),
            (ResumeOrigin::Latest, 8),
            "{}",
            b.name
        );
        let acked: usize = consumer.acks().iter().map(Vec::len).sum();
        assert_eq!(acked, 8, "{}: only covered messages were acked", b.name);
    }
}

#[test]
fn the_component_reads_the_golden_files_and_names_damage() {
    let mut codec = Codec::new().unwrap();
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    for name in ["v1-minimal.bin", "v1-full.bin"] {
        let bytes = std::fs::read(golden.join(name)).unwrap();
        let decoded = codec.decode(&bytes).unwrap();
        assert_eq!(
            codec.encode(&decoded).unwrap(),
            bytes,
            "{name}: canonical round trip"
        );
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0x10;
        assert!(
            matches!(checkpoint_error(codec.decode(&flipped)), CheckpointError::Corrupt(ref k) if k.kind == CorruptionKind::CrcMismatch)
        );
        let mut newer = bytes.clone();
        newer[4] = 2;
        let end = newer.len() - 4;
        let crc = crc32c::crc32c(&newer[..end]);
        newer[end..].copy_from_slice(&crc.to_le_bytes());
        assert!(
            matches!(checkpoint_error(codec.decode(&newer)), CheckpointError::Corrupt(ref k) if k.kind == CorruptionKind::UnknownVersion)
        );
    }
}
