//! Constructors for the contract's error cases, so every call site builds them the same way,
//! and the one text for people that every host shows for them.

use crate::model::{Corruption, CorruptionKind, Error, InvalidInput, StorageError, Watermark};

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid(InvalidInput {
        field: field.into(),
        reason: reason.into(),
    })
}

pub(crate) fn corruption(kind: CorruptionKind, detail: impl Into<String>) -> Corruption {
    Corruption {
        kind,
        key: String::new(),
        detail: detail.into(),
    }
}

/// Attaches the storage key the damaged bytes came from.
pub(crate) fn at_key(mut corruption: Corruption, key: &str) -> Corruption {
    corruption.key = key.to_string();
    corruption
}

/// The host's storage answered outside its contract while doing `operation`.
pub(crate) fn broken_store(operation: &str, what: &str) -> Error {
    Error::BrokenStore(format!(
        "{operation}: the storage broke its contract: {what}"
    ))
}

pub(crate) fn storage(operation: &str, error: StorageError) -> Error {
    let (kind, message) = match error {
        StorageError::Unavailable(m) => ("unavailable", m),
        StorageError::Timeout(m) => ("timed out", m),
        StorageError::Failed(m) => ("failed", m),
    };
    Error::Storage(format!("{operation}: storage {kind}: {message}"))
}

/// One line for people about an error: what happened and what to do. Every host shows this
/// text (`codec.describe`), so the words are the same in Rust, Python and Node.
pub fn describe(error: &Error) -> String {
    match error {
        Error::Invalid(i) => format!("invalid input: `{}`: {}", i.field, i.reason),
        Error::Regression(r) => format!(
            "regression: the {} would move backwards (stored sequence {} at {}, attempted \
             sequence {} at {}); nothing was written or acked: continue from the resume point",
            r.field,
            r.stored_sequence,
            watermark_text(&r.stored_watermark),
            r.attempted_sequence,
            watermark_text(&r.attempted_watermark),
        ),
        Error::Fenced(x) => format!(
            "fenced: the stage is owned by epoch {}, this writer has epoch {}; nothing was \
             written or acked: stop this writer",
            x.stored_epoch, x.attempted_epoch
        ),
        Error::Conflict(m) => {
            format!("conflict: {m}; nothing was written or acked: re-read the stage and retry")
        }
        Error::NotFound => "not found: nothing is stored for this run and stage".to_string(),
        Error::Corrupt(c) => format!("corrupt data: {}", corruption_text(c)),
        Error::Storage(m) => format!(
            "storage failure: {m}; nothing was acked: retry the same write (a committed one is \
             accepted as a replay)"
        ),
        Error::TooLarge(t) => format!(
            "checkpoint too large: {} bytes encoded, the limit is {} bytes; nothing was written",
            t.size, t.limit
        ),
        Error::BrokenStore(m) => {
            format!("broken store: {m}; nothing was acked: fix or replace the store, then resume")
        }
    }
}

fn watermark_text(w: &Watermark) -> String {
    format!("offset {}, event time {} ms", w.offset, w.event_time_ms)
}

/// Kind, where the damage was found, and the details.
fn corruption_text(c: &Corruption) -> String {
    let mut text = corruption_kind_name(c.kind).to_string();
    if c.key.is_empty() {
        text.push_str(" in the given bytes");
    } else {
        text.push_str(&format!(" at key {:?}", c.key));
    }
    if !c.detail.is_empty() {
        text.push_str(": ");
        text.push_str(&c.detail);
    }
    text
}

/// The WIT name of a corruption kind (`crc-mismatch`, `misplaced`, ...).
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
