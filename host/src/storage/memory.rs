//! An in-process store: a `BTreeMap` behind a shared handle. For tests and demos.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{
    CommitOutcome, Entry, Lookup, Storage, StorageError, Write, WriteOp, check_distinct_keys,
};

/// An in-memory [`Storage`]. Clones are handles to the same data, so a test can keep one to
/// inspect or damage what a checkpointer wrote through another.
///
/// "Durable" here means visible to every handle; nothing survives the process.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<String, (Vec<u8>, u64)>,
    /// Last version handed out; versions come from here so none is ever reused.
    last_version: u64,
}

impl Inner {
    fn next_version(&mut self) -> u64 {
        self.last_version += 1;
        self.last_version
    }

    fn version_of(&self, key: &str) -> u64 {
        self.entries.get(key).map_or(0, |(_, v)| *v)
    }
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch: commit checks every
        // condition before it changes anything, and the changes themselves do not panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every stored key, in ascending byte order (test helper).
    pub fn keys(&self) -> Vec<String> {
        self.lock().entries.keys().cloned().collect()
    }

    /// The stored bytes and version of `key`, if any (test helper).
    pub fn raw(&self, key: &str) -> Option<(Vec<u8>, u64)> {
        self.lock().entries.get(key).cloned()
    }

    /// Replaces the bytes of `key` behind the component's back, to simulate damage in tests.
    ///
    /// An existing key keeps its version (as bit rot would); an absent key is created with a
    /// fresh version.
    pub fn set_raw(&self, key: &str, bytes: Vec<u8>) {
        let mut inner = self.lock();
        match inner.entries.get_mut(key) {
            Some((value, _)) => *value = bytes,
            None => {
                let version = inner.next_version();
                inner.entries.insert(key.to_owned(), (bytes, version));
            }
        }
    }
}

impl Storage for MemoryStorage {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        Ok(match self.lock().entries.get(key) {
            Some((value, version)) => Lookup::Found(Entry {
                value: value.clone(),
                version: *version,
            }),
            None => Lookup::Missing,
        })
    }

    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        check_distinct_keys(&writes)?;
        let mut inner = self.lock();
        for (index, write) in writes.iter().enumerate() {
            if let Some(expected) = write.expected_version
                && inner.version_of(&write.key) != expected
            {
                let index = u32::try_from(index).map_err(|_| {
                    StorageError::Failed("batch has more than u32::MAX writes".to_owned())
                })?;
                return Ok(CommitOutcome::Conflict(index));
            }
        }
        let mut versions = Vec::with_capacity(writes.len());
        for write in writes {
            match write.op {
                WriteOp::Put(value) => {
                    let version = inner.next_version();
                    inner.entries.insert(write.key, (value, version));
                    versions.push(version);
                }
                WriteOp::Delete => {
                    inner.entries.remove(&write.key);
                    versions.push(0);
                }
            }
        }
        Ok(CommitOutcome::Committed(versions))
    }

    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        // `String` orders by bytes, so the range starts at the first key >= prefix and every
        // key with the prefix follows contiguously.
        Ok(self
            .lock()
            .entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(prefix))
            .cloned()
            .collect())
    }
}
