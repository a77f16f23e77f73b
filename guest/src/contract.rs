//! Every answer of the host's `storage` is checked against the WIT contract before the logic
//! acts on it, here and only here, so that every host (Rust, Python, Node, or one written
//! later) gets the same answer to a store that breaks it: `error.broken-store`, never a trap,
//! and never a checkpoint built on a wrong version.

use crate::errors::{broken_store, storage};
use crate::model::{CommitOutcome, Error, Lookup, Write, WriteOp};
use crate::ports::Storage;

/// `storage.get`, checked: a found entry has a version of at least 1.
pub(crate) fn get(store: &mut impl Storage, key: &str, doing: &str) -> Result<Lookup, Error> {
    let lookup = store.get(key).map_err(|e| storage(doing, e))?;
    if let Lookup::Found(entry) = &lookup
        && entry.version == 0
    {
        return Err(broken_store(
            doing,
            &format!("`get` found key {key:?} with version 0 (versions start at 1)"),
        ));
    }
    Ok(lookup)
}

/// `storage.commit`, checked: one version per write, positive for a put and 0 for a delete;
/// a conflict names a write of the batch that had a condition.
pub(crate) fn commit(
    store: &mut impl Storage,
    writes: &[Write],
    doing: &str,
) -> Result<CommitOutcome, Error> {
    let outcome = store.commit(writes).map_err(|e| storage(doing, e))?;
    let breach = match &outcome {
        CommitOutcome::Committed(versions) if versions.len() != writes.len() => Some(format!(
            "`commit` answered {} versions for a batch of {} writes",
            versions.len(),
            writes.len()
        )),
        CommitOutcome::Committed(versions) => writes
            .iter()
            .zip(versions)
            .enumerate()
            .find_map(|(i, (write, &version))| match (&write.op, version) {
                (WriteOp::Put(_), 0) => Some(format!(
                    "`commit` answered version 0 for write {i}, a put (a put's version is at least 1)"
                )),
                (WriteOp::Delete, v) if v != 0 => Some(format!(
                    "`commit` answered version {v} for write {i}, a delete (a delete's is 0)"
                )),
                _ => None,
            }),
        CommitOutcome::Conflict(index) => match writes.get(*index as usize) {
            None => Some(format!(
                "`commit` answered a conflict at write {index} of a batch of {} writes",
                writes.len()
            )),
            Some(write) if write.expected_version.is_none() => Some(format!(
                "`commit` answered a conflict at write {index}, which has no condition"
            )),
            Some(_) => None,
        },
    };
    match breach {
        Some(what) => Err(broken_store(doing, &what)),
        None => Ok(outcome),
    }
}

/// `storage.list-keys`, checked: every key has the prefix, in strictly ascending byte order.
pub(crate) fn list_keys(
    store: &mut impl Storage,
    prefix: &str,
    doing: &str,
) -> Result<Vec<String>, Error> {
    let keys = store.list_keys(prefix).map_err(|e| storage(doing, e))?;
    if let Some(key) = keys.iter().find(|key| !key.starts_with(prefix)) {
        return Err(broken_store(
            doing,
            &format!("`list-keys` answered key {key:?}, which lacks the prefix {prefix:?}"),
        ));
    }
    // String order is the byte order of UTF-8.
    if let Some(pair) = keys.windows(2).find(|pair| pair[0] >= pair[1]) {
        return Err(broken_store(
            doing,
            &format!(
                "`list-keys` answered {:?} before {:?} (keys come once each, in ascending byte order)",
                pair[0], pair[1]
            ),
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Checkpointer;
    use crate::memory::{MemoryStorage, RecordingConsumer};
    use crate::model::{Checkpoint, Options, StorageError, Watermark};

    /// A store that answers one kind of call with a scripted lie, and the truth otherwise.
    #[derive(Default)]
    struct Lying {
        inner: MemoryStorage,
        get: Option<Lookup>,
        commit: Option<CommitOutcome>,
        list: Option<Vec<String>>,
    }

    impl Storage for Lying {
        fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
            match self.get.clone() {
                Some(lie) => Ok(lie),
                None => self.inner.get(key),
            }
        }
        fn commit(&mut self, writes: &[Write]) -> Result<CommitOutcome, StorageError> {
            let truth = self.inner.commit(writes)?;
            Ok(self.commit.clone().unwrap_or(truth))
        }
        fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
            match self.list.clone() {
                Some(lie) => Ok(lie),
                None => self.inner.list_keys(prefix),
            }
        }
    }

    fn checkpoint(sequence: u64) -> Checkpoint {
        Checkpoint {
            run_id: "run".into(),
            stage: "stage".into(),
            sequence,
            epoch: 1,
            watermark: Watermark {
                offset: sequence * 10,
                event_time_ms: 0,
            },
            sources: vec![],
            sinks: vec![],
            operator_states: vec![],
            idempotency_key: String::new(),
            at_ms: 0,
        }
    }

    fn open(store: Lying) -> Checkpointer<Lying, RecordingConsumer> {
        let options = Options {
            namespace: "ns".into(),
            max_retained: 3,
            max_checkpoint_bytes: 4096,
        };
        Checkpointer::open(options, store, RecordingConsumer::default()).expect("open")
    }

    fn broken(result: Result<impl std::fmt::Debug, Error>, says: &str) {
        match result {
            Err(Error::BrokenStore(message)) => {
                assert!(message.contains(says), "{message:?} does not say {says:?}")
            }
            other => panic!("expected broken-store saying {says:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_commit_answer_of_the_wrong_shape_is_a_broken_store_and_nothing_is_acked() {
        let lies = [
            (
                CommitOutcome::Committed(vec![7]),
                "1 versions for a batch of 2",
            ),
            (
                CommitOutcome::Committed(vec![0, 7]),
                "version 0 for write 0, a put",
            ),
            (
                CommitOutcome::Conflict(5),
                "conflict at write 5 of a batch of 2",
            ),
            (
                CommitOutcome::Conflict(0),
                "write 0, which has no condition",
            ),
        ];
        for (lie, says) in lies {
            let mut store = open(Lying {
                commit: Some(lie),
                ..Lying::default()
            });
            broken(store.write(&checkpoint(1), &["m-1".into()]), says);
            assert!(
                store.consumer_mut().acks.is_empty(),
                "acked after a broken answer"
            );
        }
    }

    #[test]
    fn a_delete_answered_with_a_version_is_a_broken_store() {
        let mut store = open(Lying::default());
        store.write(&checkpoint(1), &[]).expect("write");
        store.storage_mut().commit = Some(CommitOutcome::Committed(vec![0, 9]));
        broken(
            store.delete("run", "stage"),
            "version 9 for write 1, a delete",
        );
    }

    #[test]
    fn an_entry_found_with_version_zero_is_a_broken_store() {
        let mut store = open(Lying {
            get: Some(Lookup::Found(crate::model::Entry {
                value: vec![1, 2, 3],
                version: 0,
            })),
            ..Lying::default()
        });
        broken(store.get("run", "stage"), "with version 0");
        broken(store.resume_point("run", "stage"), "with version 0");
    }

    #[test]
    fn listed_keys_outside_the_prefix_or_out_of_order_are_a_broken_store() {
        let mut store = open(Lying::default());
        store.write(&checkpoint(1), &[]).expect("write");
        store.write(&checkpoint(2), &[]).expect("write");
        let listed = store.storage_mut().inner.keys();
        let history: Vec<String> = listed.into_iter().filter(|k| k.contains("/h/")).collect();
        assert_eq!(history.len(), 2);

        store.storage_mut().list = Some(vec!["elsewhere".into()]);
        broken(store.history("run", "stage"), "lacks the prefix");
        store.storage_mut().list = Some(vec![history[1].clone(), history[0].clone()]);
        broken(store.history("run", "stage"), "ascending byte order");
        store.storage_mut().list = Some(vec![history[0].clone(), history[0].clone()]);
        broken(store.history("run", "stage"), "ascending byte order");
    }
}
