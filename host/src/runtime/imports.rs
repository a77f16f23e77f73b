//! The host ends of the component's imports: `storage` calls go to the `Storage` backend,
//! `consumer` calls to the `Consumer`; failures are logged in full and handed to the guest as
//! their stable WIT value.

use super::instance::HostState;
use crate::bindings::storage::{CommitOutcome, Lookup, StorageError, Write};
use crate::bindings::{consumer, storage, types};
use crate::error::storage_error_text;
use crate::metrics::StorageOp;

impl types::Host for HostState {}

/// Logs a backend failure in full and passes its stable value on to the guest.
fn logged<T>(
    op: &str,
    result: Result<T, StorageError>,
) -> wasmtime::Result<Result<T, StorageError>> {
    if let Err(e) = &result {
        tracing::warn!(op, error = %storage_error_text(e), "storage backend failed");
    }
    Ok(result)
}

// Answers are passed on as they are: the component checks them against the contract.
impl storage::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Lookup, StorageError>> {
        let result = self.metrics.read(StorageOp::Get, || self.storage.get(&key));
        logged("get", result)
    }

    fn commit(
        &mut self,
        writes: Vec<Write>,
    ) -> wasmtime::Result<Result<CommitOutcome, StorageError>> {
        let result = self.metrics.commit(writes, |w| self.storage.commit(w));
        logged("commit", result)
    }

    fn list_keys(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<String>, StorageError>> {
        let result = self
            .metrics
            .read(StorageOp::ListKeys, || self.storage.list_keys(&prefix));
        logged("list-keys", result)
    }
}

impl consumer::Host for HostState {
    fn ack(&mut self, message_ids: Vec<String>) -> wasmtime::Result<Result<(), String>> {
        let count = message_ids.len();
        let result = self.consumer.ack(message_ids);
        self.metrics.ack(count, &result);
        if let Err(message) = &result {
            tracing::warn!(count, error = %message, "consumer ack failed; the checkpoint stays durable");
        }
        Ok(result)
    }
}
