//! The two capabilities the logic needs, mirroring the component's imports (`storage.wit`,
//! `consumer.wit`). Inside the component they call the host; natively any implementation will do.

use crate::model::{CommitOutcome, Lookup, StorageError, Write};

/// Durable key-value storage with conditional, all-or-nothing batches.
///
/// Contract (the same as the `storage` import): `commit` applies every write or none, and returns
/// `Ok(Committed(..))` only once the batch is durable. Versions are at least 1, change on every
/// write of a key and are never reused for it, not even after a delete; `expected_version`
/// `Some(0)` means "must be absent" and `None` means "unconditional". `list_keys` returns keys in
/// ascending byte order.
pub trait Storage {
    /// Reads one key.
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError>;
    /// Applies a conditional batch atomically and durably.
    fn commit(&mut self, writes: &[Write]) -> Result<CommitOutcome, StorageError>;
    /// Keys starting with `prefix`, ascending.
    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError>;
}

/// Acknowledges messages to their source. Must be idempotent: ids may be acked again.
pub trait Consumer {
    /// Acks `message_ids`; an `Err` carries the reason, reported in the receipt.
    fn ack(&mut self, message_ids: &[String]) -> Result<(), String>;
}
