//! Constructors for the contract's error cases, so every call site builds them the same way.

use crate::model::{Corruption, CorruptionKind, Error, InvalidInput, StorageError};

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

pub(crate) fn storage(operation: &str, error: StorageError) -> Error {
    let (kind, message) = match error {
        StorageError::Unavailable(m) => ("unavailable", m),
        StorageError::Timeout(m) => ("timed out", m),
        StorageError::Failed(m) => ("failed", m),
    };
    Error::Storage(format!("{operation}: storage {kind}: {message}"))
}
