//! The memory backend's test helpers and shared handles.

use checkpoint_host::storage::{MemoryStorage, Storage};
use checkpoint_host::{CommitOutcome, Entry, Lookup, Write, WriteOp};

fn put(key: &str, value: &[u8]) -> Write {
    Write {
        key: key.to_owned(),
        expected_version: None,
        op: WriteOp::Put(value.to_vec()),
    }
}

#[test]
fn clones_are_handles_to_the_same_data() {
    let inspector = MemoryStorage::new();
    let mut writer: Box<dyn Storage> = Box::new(inspector.clone());
    let outcome = writer
        .commit(vec![put("b", b"2"), put("a", b"1")])
        .expect("commit");
    let CommitOutcome::Committed(versions) = outcome else {
        panic!("conflict")
    };
    assert_eq!(inspector.keys(), vec!["a".to_owned(), "b".to_owned()]);
    assert_eq!(inspector.raw("a"), Some((b"1".to_vec(), versions[1])));
    assert_eq!(inspector.raw("missing"), None);
}

#[test]
fn set_raw_damages_bytes_but_keeps_the_version() {
    let mut store = MemoryStorage::new();
    let CommitOutcome::Committed(v) = store.commit(vec![put("k", b"good")]).expect("commit") else {
        panic!("conflict")
    };
    store.set_raw("k", b"bad".to_vec());
    assert_eq!(
        store.get("k").expect("get"),
        Lookup::Found(Entry {
            value: b"bad".to_vec(),
            version: v[0]
        })
    );
    // An absent key gets a fresh version that was never handed out before.
    store.set_raw("new", b"x".to_vec());
    let (_, version) = store.raw("new").expect("created");
    assert!(version > v[0]);
}
