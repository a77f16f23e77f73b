//! Embeds the checkpoint component (`pipeline:checkpoint@0.1.0`) with wasmtime.
//!
//! The checkpoint logic (validation, ordering, fencing, retention, encoding, resume points)
//! runs inside the WebAssembly component; this crate supplies what it imports (a [`Storage`]
//! backend and a [`Consumer`] for acks) and typed handles on what it exports
//! ([`Checkpointer`], [`Driver`], [`Codec`]). One [`Runtime`] per process compiles the
//! component once (cached on disk) and gives every handle its own sandboxed instance, with a
//! memory limit and a deadline on every call.
//!
//! For sources that redeliver and stages with state and output, [`sources`] has a Redis
//! Streams consumer group (`sources::redis_streams`, feature `redis`) and [`sinks`] has
//! exactly-once tables (SQLite, PostgreSQL) whose position is recorded in the checkpoint.
//!
//! ```no_run
//! use checkpoint_host::consumer::NullConsumer;
//! use checkpoint_host::storage::open_storage;
//! use checkpoint_host::{Checkpoint, Checkpointer, Options, Watermark};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let storage = open_storage("sqlite:checkpoints.db")?;
//! let options = Options {
//!     namespace: "orders".into(),
//!     max_retained: 3,
//!     max_checkpoint_bytes: 1 << 20,
//! };
//! let mut checkpointer = Checkpointer::open(storage, Box::new(NullConsumer), &options)?;
//!
//! let checkpoint = Checkpoint {
//!     run_id: "run-1".into(),
//!     stage: "enrich".into(),
//!     sequence: 1,
//!     epoch: 1,
//!     watermark: Watermark { offset: 42, event_time_ms: 1_700_000_000_000 },
//!     sources: vec![],
//!     sinks: vec![],
//!     operator_states: vec![],
//!     idempotency_key: String::new(),
//!     at_ms: 1_700_000_000_500,
//! };
//! // Durable first, then the messages are acked.
//! let receipt = checkpointer.write(&checkpoint, &["m-41".to_string()])?;
//! assert_eq!(receipt.sequence, 1);
//!
//! let resume = checkpointer.resume_point("run-1", "enrich")?;
//! assert_eq!(resume.point.watermark.offset, 42);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

/// The README's Rust example, run as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

#[allow(
    missing_docs,
    reason = "generated from the WIT; its docs come from the WIT comments"
)]
mod bindings;
mod checkpointer;
pub mod consumer;
mod error;
pub mod metrics;
mod runtime;
pub mod sinks;
pub mod sources;
pub mod storage;

pub use checkpointer::{Checkpointer, Codec, Driver};
pub use consumer::Consumer;
pub use error::{Error, RuntimeError, RuntimeErrorKind, corruption_kind_name, storage_error_text};
pub use runtime::{
    ArtifactCacheError, ArtifactCacheErrorKind, ArtifactSource, CACHE_MAX_BYTES, Runtime,
    RuntimeConfig,
};
pub use storage::Storage;

pub use bindings::checkpointer_api::{
    AckOutcome, Admission, BatchProgress, ChangeEvent, ChangeKind, Changelog, Completion,
    DriverOptions, Fallback, HistoryEntry, HistoryPage, HistoryRequest, ImportAction,
    ImportReceipt, Message, Options, OverflowPolicy, Policy, ProcessedMessage, Progress, Receipt,
    ResetOrigin, ResetReceipt, ResetRequest, Resume, ResumeOrigin, SavepointInfo, StageExport,
    StageState, StageSummary, StoredCopy, StoredSavepoint,
};
pub use bindings::storage::{CommitOutcome, Entry, Lookup, StorageError, Write, WriteOp};
pub use bindings::types::{
    Checkpoint, Corruption, CorruptionKind, Error as CheckpointError, FencedInfo, InvalidInput,
    OperatorState, RegressionInfo, ResumePoint, SinkPosition, SourcePosition, TooLargeInfo,
    Watermark,
};
