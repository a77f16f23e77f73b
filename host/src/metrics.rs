//! What the checkpointers do, as metrics: latencies, checkpoint sizes and outcome counts,
//! labelled by store and namespace.
//!
//! The library records through the [`metrics`](https://docs.rs/metrics) facade and installs
//! nothing: without a recorder every update is a no-op. To export them, install a recorder
//! (for Prometheus, `metrics-exporter-prometheus`; `ckpt demo --metrics ADDR` does that) before
//! opening checkpointers, since each checkpointer resolves its handles once, on first use.
//! Call [`describe`] once after installing it to give every metric its unit and help text.
//!
//! Every metric has the labels `store` (see [`Checkpointer::set_metrics_store`]; `unknown`
//! until set) and `namespace` (the checkpointer's [`Options::namespace`]). The names, their
//! extra labels and what each counts are in `docs/metrics.md`, and in the constants below.
//!
//! [`Checkpointer::set_metrics_store`]: crate::Checkpointer::set_metrics_store
//! [`Options::namespace`]: crate::Options::namespace
//!
//! ```
//! use checkpoint_host::consumer::NullConsumer;
//! use checkpoint_host::storage::open_storage;
//! use checkpoint_host::{Checkpointer, Options, metrics};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // (Install your recorder here, then:)
//! metrics::describe();
//! let url = "memory:";
//! let options = Options { namespace: "orders".into(), max_retained: 3, max_checkpoint_bytes: 1 << 20 };
//! let mut checkpointer = Checkpointer::open(open_storage(url)?, Box::new(NullConsumer), &options)?;
//! checkpointer.set_metrics_store(metrics::store_kind(url)); // store="memory", namespace="orders"
//! # Ok(())
//! # }
//! ```

use std::cell::OnceCell;
use std::time::{Duration, Instant};

use ::metrics::{Counter, Histogram, Key, Label, Level, Metadata, SharedString, Unit};

use crate::bindings::checkpointer_api::{
    AckOutcome, Admission, BatchProgress, Completion, HistoryPage, ImportReceipt, Progress,
    Receipt, ResetReceipt, Resume, ResumeOrigin, SavepointInfo, StageExport, StageSummary,
};
use crate::bindings::storage::{CommitOutcome, StorageError, Write, WriteOp};
use crate::bindings::types::{Checkpoint, Error as CheckpointError};
use crate::error::{Error, RuntimeErrorKind};

/// Histogram, seconds, label `call` (`write`, `record_processed`, `record_processed_batch`,
/// `flush`): how long a call that writes checkpoints took, as its caller saw it (validation,
/// the read of the stored latest, the commit and the acks). `write` is observed on every call;
/// a driver call only when it wrote a checkpoint or failed (one observation for a batch call,
/// however many checkpoints it wrote).
pub const WRITE_DURATION_SECONDS: &str = "checkpoint_write_duration_seconds";
/// Histogram, seconds, label `call` (`get`, `resume_point`, `history`, `open_driver`): how
/// long a reading call took.
pub const READ_DURATION_SECONDS: &str = "checkpoint_read_duration_seconds";
/// Histogram, seconds: how long the store took for one `commit` (the durable, atomic write),
/// whatever its outcome.
pub const COMMIT_DURATION_SECONDS: &str = "checkpoint_commit_duration_seconds";
/// Histogram, seconds, label `op` (`get`, `list_keys`): how long the store took for one read.
pub const STORAGE_READ_DURATION_SECONDS: &str = "checkpoint_storage_read_duration_seconds";
/// Histogram, bytes: the encoded size of each checkpoint a commit made durable.
pub const CHECKPOINT_SIZE_BYTES: &str = "checkpoint_size_bytes";
/// Counter: checkpoints made durable (commits that stored one; replays are not counted).
pub const WRITES_TOTAL: &str = "checkpoint_writes_total";
/// Counter: writes whose checkpoint was already the stored latest (a retry whose first attempt
/// had committed): nothing was written, the batch was acked again.
pub const REPLAYS_TOTAL: &str = "checkpoint_replays_total";
/// Counter, labels `call` and `error`: calls that failed, by the component's error case
/// (`invalid`, `regression`, `fenced`, `conflict`, `not-found`, `corrupt`, `storage`,
/// `too-large`, `broken-store`) or the runtime failure (`deadline`, `memory-limit`, `trap`,
/// `unusable`, `instantiate`, `load`).
pub const ERRORS_TOTAL: &str = "checkpoint_errors_total";
/// Counter, labels `op` (`get`, `commit`, `list_keys`) and `error` (`unavailable`, `timeout`,
/// `failed`): store calls that failed (the component then answers `storage`).
pub const STORAGE_ERRORS_TOTAL: &str = "checkpoint_storage_errors_total";
/// Counter, label `origin` (`latest`, `fallback`, `fresh`): resume points handed out, by
/// `resume_point` and by opening a driver.
pub const RESUMES_TOTAL: &str = "checkpoint_resumes_total";
/// Counter: resume points that fell back to an older intact checkpoint because the latest is
/// damaged or missing (each is also a `resumes_total{origin="fallback"}`). Alert on it.
pub const FALLBACKS_TOTAL: &str = "checkpoint_fallbacks_total";
/// Counter: calls of the consumer's `ack` (never made for an empty batch).
pub const ACK_CALLS_TOTAL: &str = "checkpoint_ack_calls_total";
/// Counter: message ids acked by `ack` calls that succeeded.
pub const ACKED_MESSAGES_TOTAL: &str = "checkpoint_acked_messages_total";
/// Counter: `ack` calls that failed. Their checkpoints are durable; the messages are
/// redelivered or acked again later.
pub const ACK_FAILURES_TOTAL: &str = "checkpoint_ack_failures_total";

/// The `store` label of a checkpointer whose store kind was not given.
pub const UNKNOWN_STORE: &str = "unknown";

/// The `store` label for a storage URL, as [`open_storage`](crate::storage::open_storage)
/// reads it: `memory`, `sqlite`, `postgres` or `redis`; `other` for any other scheme.
pub fn store_kind(url: &str) -> &'static str {
    match url.split_once(':').map_or("", |(scheme, _)| scheme) {
        "memory" => "memory",
        "sqlite" => "sqlite",
        "postgres" | "postgresql" => "postgres",
        "redis" | "rediss" => "redis",
        _ => "other",
    }
}

/// Gives every metric of this library its unit and help text in the installed recorder (an
/// exporter shows them as `# HELP` lines). Optional; call it once after installing the recorder.
pub fn describe() {
    use ::metrics::{describe_counter, describe_histogram};
    describe_histogram!(
        WRITE_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of checkpointer calls that write checkpoints (write; driver calls that wrote or failed)."
    );
    describe_histogram!(
        READ_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of checkpointer calls that read checkpoints (get, resume_point, history, open_driver)."
    );
    describe_histogram!(
        COMMIT_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of one store commit (the durable, atomic write)."
    );
    describe_histogram!(
        STORAGE_READ_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of one store read (get, list_keys)."
    );
    describe_histogram!(
        CHECKPOINT_SIZE_BYTES,
        Unit::Bytes,
        "Encoded size of each checkpoint made durable."
    );
    describe_counter!(WRITES_TOTAL, "Checkpoints made durable (replays excluded).");
    describe_counter!(
        REPLAYS_TOTAL,
        "Writes of a checkpoint that was already the stored latest (nothing written, batch acked again)."
    );
    describe_counter!(
        ERRORS_TOTAL,
        "Failed checkpointer calls, by call and error case."
    );
    describe_counter!(
        STORAGE_ERRORS_TOTAL,
        "Failed store calls, by operation and error."
    );
    describe_counter!(
        RESUMES_TOTAL,
        "Resume points handed out, by origin (latest, fallback, fresh)."
    );
    describe_counter!(
        FALLBACKS_TOTAL,
        "Resume points that fell back to an older checkpoint because the latest is damaged or missing."
    );
    describe_counter!(ACK_CALLS_TOTAL, "Calls of the consumer's ack.");
    describe_counter!(
        ACKED_MESSAGES_TOTAL,
        "Message ids acked by successful ack calls."
    );
    describe_counter!(
        ACK_FAILURES_TOTAL,
        "Failed ack calls (their checkpoints stay durable)."
    );
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The `store` and `namespace` labels every metric of one checkpointer carries.
#[derive(Clone, Debug)]
pub(crate) struct Labels(Vec<Label>);

impl Labels {
    pub(crate) fn new(store: &str, namespace: &str) -> Self {
        Labels(vec![
            Label::new("store", SharedString::from(store.to_owned())),
            Label::new("namespace", SharedString::from(namespace.to_owned())),
        ])
    }

    fn key(&self, name: &'static str, extra: &[(&'static str, &'static str)]) -> Key {
        let mut labels = self.0.clone();
        labels.extend(extra.iter().map(|&(k, v)| Label::from_static_parts(k, v)));
        Key::from_parts(name, labels)
    }

    fn counter(&self, name: &'static str, extra: &[(&'static str, &'static str)]) -> Counter {
        let key = self.key(name, extra);
        ::metrics::with_recorder(|r| r.register_counter(&key, &METADATA))
    }

    fn histogram(&self, name: &'static str, extra: &[(&'static str, &'static str)]) -> Histogram {
        let key = self.key(name, extra);
        ::metrics::with_recorder(|r| r.register_histogram(&key, &METADATA))
    }
}

// Labels hold the namespace, so keys cannot be static: each checkpointer resolves a handle the
// first time it needs one (a registry lookup), and afterwards an update is one atomic
// operation on the handle. A handle never used is never registered, so a checkpointer that
// only writes does not create read series, and opening one costs nothing here.
fn lazy_counter<'a>(
    cell: &'a OnceCell<Counter>,
    labels: &Labels,
    name: &'static str,
    extra: &[(&'static str, &'static str)],
) -> &'a Counter {
    cell.get_or_init(|| labels.counter(name, extra))
}

fn lazy_histogram<'a>(
    cell: &'a OnceCell<Histogram>,
    labels: &Labels,
    name: &'static str,
    extra: &[(&'static str, &'static str)],
) -> &'a Histogram {
    cell.get_or_init(|| labels.histogram(name, extra))
}

/// A call of a [`Checkpointer`](crate::Checkpointer) or [`Driver`](crate::Driver).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    Open,
    Write,
    Get,
    ResumePoint,
    History,
    Delete,
    RecoverAcks,
    Reset,
    Savepoint,
    ListStages,
    /// `export-stage` and `import-stage` (`ckpt copy`).
    Transfer,
    OpenDriver,
    RecordProcessed,
    RecordProcessedBatch,
    Begin,
    Complete,
    Flush,
}

const CALLS: usize = 17;

/// Which duration histogram a call goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Write,
    Read,
    /// Counted only when it fails.
    Untimed,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Open => "open",
            Call::Write => "write",
            Call::Get => "get",
            Call::ResumePoint => "resume_point",
            Call::History => "history",
            Call::Delete => "delete",
            Call::RecoverAcks => "recover_acks",
            Call::Reset => "reset",
            Call::Savepoint => "savepoint",
            Call::ListStages => "list_stages",
            Call::Transfer => "transfer",
            Call::OpenDriver => "open_driver",
            Call::RecordProcessed => "record_processed",
            Call::RecordProcessedBatch => "record_processed_batch",
            Call::Begin => "begin",
            Call::Complete => "complete",
            Call::Flush => "flush",
        }
    }

    fn class(self) -> Class {
        match self {
            Call::Write | Call::RecordProcessed | Call::RecordProcessedBatch | Call::Flush => {
                Class::Write
            }
            Call::Get | Call::ResumePoint | Call::History | Call::OpenDriver => Class::Read,
            Call::Open
            | Call::Delete
            | Call::RecoverAcks
            | Call::Reset
            | Call::Savepoint
            | Call::ListStages
            | Call::Transfer
            | Call::Begin
            | Call::Complete => Class::Untimed,
        }
    }
}

/// The error case of a failed call, as the `error` label names it.
fn error_name(error: &Error) -> &'static str {
    match error {
        Error::Checkpoint(e) => match e {
            CheckpointError::Invalid(_) => "invalid",
            CheckpointError::Regression(_) => "regression",
            CheckpointError::Fenced(_) => "fenced",
            CheckpointError::Conflict(_) => "conflict",
            CheckpointError::NotFound => "not-found",
            CheckpointError::Corrupt(_) => "corrupt",
            CheckpointError::Storage(_) => "storage",
            CheckpointError::TooLarge(_) => "too-large",
            CheckpointError::BrokenStore(_) => "broken-store",
        },
        Error::Runtime(e) => match e.kind() {
            RuntimeErrorKind::Load => "load",
            RuntimeErrorKind::Instantiate => "instantiate",
            RuntimeErrorKind::Deadline => "deadline",
            RuntimeErrorKind::MemoryLimit => "memory-limit",
            RuntimeErrorKind::Trap => "trap",
            RuntimeErrorKind::Unusable => "unusable",
        },
    }
}

/// What a successful call returned that the metrics count: receipts (replays) and resume
/// points (origins, fallbacks).
pub(crate) trait Observed {
    fn receipts(&self) -> &[Receipt] {
        &[]
    }

    fn resume(&self) -> Option<&Resume> {
        None
    }
}

impl Observed for Receipt {
    fn receipts(&self) -> &[Receipt] {
        std::slice::from_ref(self)
    }
}

impl Observed for Progress {
    fn receipts(&self) -> &[Receipt] {
        match self {
            Progress::Pending(_) | Progress::Covered(_) => &[],
            Progress::Checkpointed(receipt) => std::slice::from_ref(receipt),
        }
    }
}

impl Observed for BatchProgress {
    fn receipts(&self) -> &[Receipt] {
        &self.checkpoints
    }
}

impl Observed for Resume {
    fn resume(&self) -> Option<&Resume> {
        Some(self)
    }
}

impl Observed for Checkpoint {}
impl Observed for Vec<Checkpoint> {}
impl Observed for u32 {}
impl Observed for Admission {}
impl Observed for Completion {}
impl Observed for AckOutcome {}
impl Observed for bool {}
impl Observed for HistoryPage {}
impl Observed for ResetReceipt {}
impl Observed for SavepointInfo {}
impl Observed for Vec<SavepointInfo> {}
impl Observed for Vec<StageSummary> {}
impl Observed for StageExport {}
impl Observed for ImportReceipt {}

/// An opened checkpointer: its instance and handle.
impl<A, B> Observed for (A, B) {}

/// A driver just opened, with where it resumed.
pub(crate) struct OpenedDriver<D> {
    pub(crate) driver: D,
    pub(crate) resumed: Resume,
}

impl<D> Observed for OpenedDriver<D> {
    fn resume(&self) -> Option<&Resume> {
        Some(&self.resumed)
    }
}

/// The metrics of one checkpointer's calls (and its driver's).
pub(crate) struct CallMetrics {
    labels: Labels,
    durations: [OnceCell<Histogram>; CALLS],
    replays: OnceCell<Counter>,
    fallbacks: OnceCell<Counter>,
    /// By origin: latest, fallback, fresh.
    resumes: [OnceCell<Counter>; 3],
}

impl CallMetrics {
    pub(crate) fn new(labels: Labels) -> Self {
        CallMetrics {
            labels,
            durations: Default::default(),
            replays: OnceCell::new(),
            fallbacks: OnceCell::new(),
            resumes: Default::default(),
        }
    }

    /// Runs `f`, the body of `call`, and records its duration and outcome.
    pub(crate) fn call<T: Observed>(
        &self,
        call: Call,
        f: impl FnOnce() -> Result<T, Error>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = f();
        self.observe(call, started.elapsed(), &result);
        result
    }

    fn observe<T: Observed>(&self, call: Call, elapsed: Duration, result: &Result<T, Error>) {
        let timed = match result {
            Ok(value) => {
                let receipts = value.receipts();
                let replays = receipts.iter().filter(|r| r.replayed).count() as u64;
                if replays > 0 {
                    lazy_counter(&self.replays, &self.labels, REPLAYS_TOTAL, &[])
                        .increment(replays);
                }
                if let Some(resume) = value.resume() {
                    self.resumed(&resume.origin);
                }
                match call.class() {
                    Class::Write => call == Call::Write || !receipts.is_empty(),
                    Class::Read => true,
                    Class::Untimed => false,
                }
            }
            Err(error) => {
                // Errors are rare: resolved when they happen rather than held per case.
                self.labels
                    .counter(
                        ERRORS_TOTAL,
                        &[("call", call.name()), ("error", error_name(error))],
                    )
                    .increment(1);
                call.class() != Class::Untimed
            }
        };
        if timed {
            let name = match call.class() {
                Class::Write => WRITE_DURATION_SECONDS,
                _ => READ_DURATION_SECONDS,
            };
            lazy_histogram(
                &self.durations[call as usize],
                &self.labels,
                name,
                &[("call", call.name())],
            )
            .record(elapsed.as_secs_f64());
        }
    }

    fn resumed(&self, origin: &ResumeOrigin) {
        let (slot, name) = match origin {
            ResumeOrigin::Latest => (0, "latest"),
            ResumeOrigin::Fallback(_) => (1, "fallback"),
            ResumeOrigin::Fresh => (2, "fresh"),
        };
        lazy_counter(
            &self.resumes[slot],
            &self.labels,
            RESUMES_TOTAL,
            &[("origin", name)],
        )
        .increment(1);
        if slot == 1 {
            lazy_counter(&self.fallbacks, &self.labels, FALLBACKS_TOTAL, &[]).increment(1);
        }
    }
}

/// The metrics of one instance's storage and consumer imports. Disabled (records nothing, not
/// even the time) for instances that are not a checkpointer's, such as a codec's.
#[derive(Default)]
pub(crate) struct StorageMetrics {
    labels: Option<Labels>,
    commit: OnceCell<Histogram>,
    get: OnceCell<Histogram>,
    list_keys: OnceCell<Histogram>,
    size: OnceCell<Histogram>,
    writes: OnceCell<Counter>,
    ack_calls: OnceCell<Counter>,
    acked: OnceCell<Counter>,
    ack_failures: OnceCell<Counter>,
}

/// A store call, as the `op` label names it.
#[derive(Clone, Copy)]
pub(crate) enum StorageOp {
    Get,
    ListKeys,
}

impl StorageMetrics {
    pub(crate) fn new(labels: Labels) -> Self {
        StorageMetrics {
            labels: Some(labels),
            ..StorageMetrics::default()
        }
    }

    /// Runs the store read `f` and records its duration and failure.
    pub(crate) fn read<T>(
        &self,
        op: StorageOp,
        f: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let Some(labels) = &self.labels else {
            return f();
        };
        let started = Instant::now();
        let result = f();
        let (cell, name) = match op {
            StorageOp::Get => (&self.get, "get"),
            StorageOp::ListKeys => (&self.list_keys, "list_keys"),
        };
        lazy_histogram(cell, labels, STORAGE_READ_DURATION_SECONDS, &[("op", name)])
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            storage_error(labels, name, e);
        }
        result
    }

    /// Runs the store commit `f` of `writes` and records its duration, and for a commit that
    /// stored a checkpoint, the write and its size.
    pub(crate) fn commit(
        &self,
        writes: Vec<Write>,
        f: impl FnOnce(Vec<Write>) -> Result<CommitOutcome, StorageError>,
    ) -> Result<CommitOutcome, StorageError> {
        let Some(labels) = &self.labels else {
            return f(writes);
        };
        // A checkpoint's commit puts its bytes (as the latest, and as the retained copy);
        // a delete's puts nothing.
        let size = writes
            .iter()
            .filter_map(|w| match &w.op {
                WriteOp::Put(bytes) => Some(bytes.len()),
                WriteOp::Delete => None,
            })
            .max();
        let started = Instant::now();
        let result = f(writes);
        lazy_histogram(&self.commit, labels, COMMIT_DURATION_SECONDS, &[])
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(CommitOutcome::Committed(_)) => {
                if let Some(size) = size {
                    lazy_counter(&self.writes, labels, WRITES_TOTAL, &[]).increment(1);
                    lazy_histogram(&self.size, labels, CHECKPOINT_SIZE_BYTES, &[])
                        .record(size as f64);
                }
            }
            // Counted as the call's `conflict` error, which the component answers.
            Ok(CommitOutcome::Conflict(_)) => {}
            Err(e) => storage_error(labels, "commit", e),
        }
        result
    }

    /// Records one call of the consumer's `ack` with `count` ids.
    pub(crate) fn ack(&self, count: usize, result: &Result<(), String>) {
        let Some(labels) = &self.labels else { return };
        lazy_counter(&self.ack_calls, labels, ACK_CALLS_TOTAL, &[]).increment(1);
        match result {
            Ok(()) => {
                lazy_counter(&self.acked, labels, ACKED_MESSAGES_TOTAL, &[]).increment(count as u64)
            }
            Err(_) => {
                lazy_counter(&self.ack_failures, labels, ACK_FAILURES_TOTAL, &[]).increment(1)
            }
        }
    }
}

fn storage_error(labels: &Labels, op: &'static str, error: &StorageError) {
    let error = match error {
        StorageError::Unavailable(_) => "unavailable",
        StorageError::Timeout(_) => "timeout",
        StorageError::Failed(_) => "failed",
    };
    labels
        .counter(STORAGE_ERRORS_TOTAL, &[("op", op), ("error", error)])
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_kind_follows_the_url_scheme() {
        assert_eq!(store_kind("memory:"), "memory");
        assert_eq!(store_kind("sqlite:/tmp/x.db"), "sqlite");
        assert_eq!(store_kind("postgresql://u@h/db"), "postgres");
        assert_eq!(store_kind("rediss://h"), "redis");
        assert_eq!(store_kind("dynamo://t"), "other");
        assert_eq!(store_kind("no scheme"), "other");
    }

    #[test]
    fn every_call_has_its_own_duration_slot() {
        let calls = [
            Call::Open,
            Call::Write,
            Call::Get,
            Call::ResumePoint,
            Call::History,
            Call::Delete,
            Call::RecoverAcks,
            Call::Reset,
            Call::Savepoint,
            Call::ListStages,
            Call::Transfer,
            Call::OpenDriver,
            Call::RecordProcessed,
            Call::RecordProcessedBatch,
            Call::Begin,
            Call::Complete,
            Call::Flush,
        ];
        assert_eq!(calls.len(), CALLS);
        for (i, call) in calls.iter().enumerate() {
            assert_eq!(*call as usize, i);
        }
    }
}
