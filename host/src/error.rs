//! The library's error type, and the one conversion that decides what a storage failure
//! does to the guest.

use std::fmt;

use crate::bindings::storage::StorageError;
use crate::bindings::types::{Corruption, CorruptionKind, Error as CheckpointError, Watermark};

/// Every failure of the library.
///
/// `Checkpoint` is an answer of the component: the call completed and refused (each case says
/// what the caller should do). `Runtime` means the call did not complete: the component
/// trapped, ran past its deadline, or could not be loaded or instantiated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component refused the call; see [`CheckpointError`] for what to do about each case.
    #[error("{}", Describe(.0))]
    Checkpoint(CheckpointError),
    /// The component could not run the call (trap, deadline, load or instantiation failure).
    /// A checkpointer that returned this once refuses further calls: open a new one.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Why the component could not run: it could not be loaded or instantiated, or a call did not
/// complete. [`RuntimeError::kind`] says which; the message carries the whole chain of causes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    kind: RuntimeErrorKind,
    message: String,
}

/// What kind of failure a [`RuntimeError`] is, and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuntimeErrorKind {
    /// The engine could not be built or the component could not be compiled, linked or read
    /// from its cache (a bad [`RuntimeConfig`](crate::RuntimeConfig), or a component that does
    /// not fit this host). Fix the configuration or the component; retrying will not help.
    Load,
    /// A new instance could not be made: usually every pool slot is taken
    /// ([`RuntimeConfig::max_instances`](crate::RuntimeConfig::max_instances)). Close handles
    /// you no longer need, or raise the limit.
    Instantiate,
    /// The call ran past [`RuntimeConfig::call_deadline`](crate::RuntimeConfig::call_deadline)
    /// and was interrupted. Open a new handle; a store call that hangs is the usual cause.
    Deadline,
    /// The call trapped after the instance's memory limit refused to grow its memory
    /// ([`RuntimeConfig::max_memory_bytes`](crate::RuntimeConfig::max_memory_bytes)). Lower
    /// the size limits in the options, or raise the memory limit.
    MemoryLimit,
    /// The component trapped for another reason (a bug, or a storage backend that broke its
    /// contract). Open a new handle; report it if it repeats.
    Trap,
    /// This handle's instance failed earlier (any of the above) and refuses every call:
    /// open a new handle.
    Unusable,
}

impl RuntimeError {
    pub(crate) fn new(kind: RuntimeErrorKind, message: String) -> Self {
        RuntimeError { kind, message }
    }

    /// Keeps the whole chain of causes in one message (`outer: inner: ...`).
    pub(crate) fn from_chain(kind: RuntimeErrorKind, error: &anyhow::Error) -> Self {
        RuntimeError {
            kind,
            message: format!("{error:#}"),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> RuntimeErrorKind {
        self.kind
    }

    /// The message, with every cause (the same text as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl Error {
    /// The process exit code for this error, as the CLI uses it. Never 0.
    ///
    /// not-found 3, corrupt 4, conflict 5, fenced 6, invalid 7, regression 8, storage 9,
    /// too-large 10, broken-store 11; a runtime failure (trap, deadline, load) 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Checkpoint(e) => match e {
                CheckpointError::NotFound => 3,
                CheckpointError::Corrupt(_) => 4,
                CheckpointError::Conflict(_) => 5,
                CheckpointError::Fenced(_) => 6,
                CheckpointError::Invalid(_) => 7,
                CheckpointError::Regression(_) => 8,
                CheckpointError::Storage(_) => 9,
                CheckpointError::TooLarge(_) => 10,
                CheckpointError::BrokenStore(_) => 11,
            },
            Error::Runtime(_) => 1,
        }
    }
}

impl From<CheckpointError> for Error {
    fn from(e: CheckpointError) -> Self {
        Error::Checkpoint(e)
    }
}

// The generated `Display` of the WIT error types is their `Debug` form; this is the one for
// people.
struct Describe<'a>(&'a CheckpointError);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            CheckpointError::Invalid(i) => write!(f, "invalid input: `{}`: {}", i.field, i.reason),
            CheckpointError::Regression(r) => write!(
                f,
                "regression: the {} would move backwards (stored sequence {} at {}, attempted \
                 sequence {} at {}); nothing was written or acked: continue from the resume point",
                r.field,
                r.stored_sequence,
                WatermarkText(&r.stored_watermark),
                r.attempted_sequence,
                WatermarkText(&r.attempted_watermark),
            ),
            CheckpointError::Fenced(x) => write!(
                f,
                "fenced: the stage is owned by epoch {}, this writer has epoch {}; nothing was \
                 written or acked: stop this writer",
                x.stored_epoch, x.attempted_epoch
            ),
            CheckpointError::Conflict(m) => write!(
                f,
                "conflict: {m}; nothing was written or acked: re-read the stage and retry"
            ),
            CheckpointError::NotFound => {
                write!(f, "not found: nothing is stored for this run and stage")
            }
            CheckpointError::Corrupt(c) => write!(f, "corrupt data: {}", CorruptionText(c)),
            CheckpointError::Storage(m) => write!(
                f,
                "storage failure: {m}; nothing was acked: retry the same write (a committed one \
                 is accepted as a replay)"
            ),
            CheckpointError::TooLarge(t) => write!(
                f,
                "checkpoint too large: {} bytes encoded, the limit is {} bytes; nothing was written",
                t.size, t.limit
            ),
            CheckpointError::BrokenStore(m) => write!(
                f,
                "broken store: {m}; nothing was acked: fix or replace the store, then resume"
            ),
        }
    }
}

struct WatermarkText<'a>(&'a Watermark);

impl fmt::Display for WatermarkText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offset {}, event time {} ms",
            self.0.offset, self.0.event_time_ms
        )
    }
}

/// One line for a [`Corruption`]: its kind, where it was found and the details.
pub(crate) struct CorruptionText<'a>(pub(crate) &'a Corruption);

impl fmt::Display for CorruptionText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        write!(f, "{}", corruption_kind_name(c.kind))?;
        if c.key.is_empty() {
            write!(f, " in the given bytes")?;
        } else {
            write!(f, " at key {:?}", c.key)?;
        }
        if !c.detail.is_empty() {
            write!(f, ": {}", c.detail)?;
        }
        Ok(())
    }
}

/// The WIT name of a corruption kind (`crc-mismatch`, `misplaced`, ...), as the CLI's JSON and
/// `ckpt verify` report it.
pub fn corruption_kind_name(kind: CorruptionKind) -> &'static str {
    match kind {
        CorruptionKind::Truncated => "truncated",
        CorruptionKind::BadMagic => "bad-magic",
        CorruptionKind::CrcMismatch => "crc-mismatch",
        CorruptionKind::UnknownVersion => "unknown-version",
        CorruptionKind::UnknownFlags => "unknown-flags",
        CorruptionKind::TrailingBytes => "trailing-bytes",
        CorruptionKind::InvalidUtf8 => "invalid-utf8",
        CorruptionKind::Malformed => "malformed",
        CorruptionKind::Misplaced => "misplaced",
    }
}

/// One line for a [`StorageError`], for logs and messages: `storage unavailable: ...`,
/// `storage timed out: ...` or `storage failed: ...`. (The generated `Display` of the WIT type
/// is its `Debug` form.)
pub fn storage_error_text(e: &StorageError) -> String {
    match e {
        StorageError::Unavailable(m) => format!("storage unavailable: {m}"),
        StorageError::Timeout(m) => format!("storage timed out: {m}"),
        StorageError::Failed(m) => format!("storage failed: {m}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_exit_with_one_and_keep_their_context_chain() {
        let chain =
            anyhow::anyhow!("deadline exceeded").context("the component call `write` trapped");
        let error = Error::Runtime(RuntimeError::from_chain(RuntimeErrorKind::Deadline, &chain));
        assert_eq!(error.exit_code(), 1);
        assert_eq!(
            error.to_string(),
            "the component call `write` trapped: deadline exceeded"
        );
        let Error::Runtime(runtime) = error else {
            unreachable!()
        };
        assert_eq!(runtime.kind(), RuntimeErrorKind::Deadline);
    }
}
