//! The contract's records, as generated from `wit/` (see `types.wit`, `storage.wit`,
//! `checkpointer.wit` for the meaning of every field).

pub use crate::bindings::exports::pipeline::checkpoint::checkpointer::{
    AckOutcome, Admission, BatchProgress, ChangeEvent, ChangeKind, Changelog, Completion,
    DriverOptions, Fallback, HistoryEntry, HistoryPage, HistoryRequest, ImportAction,
    ImportReceipt, Message, Options, OverflowPolicy, Policy, ProcessedMessage, Progress, Receipt,
    ResetOrigin, ResetReceipt, ResetRequest, Resume, ResumeOrigin, SavepointInfo, StageExport,
    StageState, StageSummary, StoredCopy, StoredSavepoint,
};
pub use crate::bindings::pipeline::checkpoint::storage::{
    CommitOutcome, Entry, Lookup, StorageError, Write, WriteOp,
};
pub use crate::bindings::pipeline::checkpoint::types::{
    Checkpoint, Corruption, CorruptionKind, Error, FencedInfo, InvalidInput, OperatorState,
    RegressionInfo, ResumePoint, SinkPosition, SourcePosition, TooLargeInfo, Watermark,
};
