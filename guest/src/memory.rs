//! In-process implementations of the ports: the native baseline for benchmarks and the fixture
//! of the unit tests. Not durable: a process crash loses everything.

use crate::model::{CommitOutcome, Entry, Lookup, StorageError, Write, WriteOp};
use crate::ports::{Consumer, Storage};
use std::collections::BTreeMap;

/// A `BTreeMap` store that keeps the storage contract: atomic conditional batches, versions
/// that are never reused for a key (one counter for the whole store).
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    entries: BTreeMap<String, Entry>,
    last_version: u64,
    /// Every call, in order, as `get`/`commit`/`list-keys`: lets tests prove what did no I/O.
    pub calls: Vec<&'static str>,
    /// When set, the next commit fails with this error instead of applying.
    pub fail_next_commit: Option<StorageError>,
}

impl MemoryStorage {
    /// Every stored key, ascending.
    pub fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// The raw bytes and version under `key`.
    pub fn raw(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Removes a key, as loss from outside would.
    pub fn remove_raw(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Replaces the bytes under an existing or new key, as damage from outside would.
    pub fn set_raw(&mut self, key: &str, value: Vec<u8>) {
        self.last_version += 1;
        self.entries.insert(
            key.to_string(),
            Entry {
                value,
                version: self.last_version,
            },
        );
    }
}

impl Storage for MemoryStorage {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        self.calls.push("get");
        Ok(self
            .entries
            .get(key)
            .cloned()
            .map_or(Lookup::Missing, Lookup::Found))
    }

    fn commit(&mut self, writes: &[Write]) -> Result<CommitOutcome, StorageError> {
        self.calls.push("commit");
        if let Some(error) = self.fail_next_commit.take() {
            return Err(error);
        }
        for (index, write) in writes.iter().enumerate() {
            let current = self.entries.get(&write.key).map_or(0, |e| e.version);
            if write
                .expected_version
                .is_some_and(|expected| expected != current)
            {
                return Ok(CommitOutcome::Conflict(index as u32));
            }
        }
        let mut versions = Vec::with_capacity(writes.len());
        for write in writes {
            match &write.op {
                WriteOp::Put(value) => {
                    self.last_version += 1;
                    self.entries.insert(
                        write.key.clone(),
                        Entry {
                            value: value.clone(),
                            version: self.last_version,
                        },
                    );
                    versions.push(self.last_version);
                }
                WriteOp::Delete => {
                    self.entries.remove(&write.key);
                    versions.push(0);
                }
            }
        }
        Ok(CommitOutcome::Committed(versions))
    }

    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.calls.push("list-keys");
        Ok(self
            .entries
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect())
    }
}

/// Records every ack; can be told to fail.
#[derive(Clone, Debug, Default)]
pub struct RecordingConsumer {
    /// Every successful ack call, in order.
    pub acks: Vec<Vec<String>>,
    /// How many of the next calls fail.
    pub fail_next: u32,
}

impl Consumer for RecordingConsumer {
    fn ack(&mut self, message_ids: &[String]) -> Result<(), String> {
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Err("consumer unavailable".to_string());
        }
        self.acks.push(message_ids.to_vec());
        Ok(())
    }
}
