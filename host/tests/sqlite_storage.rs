//! What the SQLite backend promises beyond the shared contract: persistence across opens,
//! sharing one file between connections, schema versioning, and its error mapping.

use std::time::{Duration, Instant};

use checkpoint_host::storage::{SqliteStorage, Storage, open_storage};
use checkpoint_host::{CommitOutcome, Lookup, StorageError, Write, WriteOp};

fn put(key: &str, expected: Option<u64>, value: &[u8]) -> Write {
    Write {
        key: key.to_owned(),
        expected_version: expected,
        op: WriteOp::Put(value.to_vec()),
    }
}

fn committed(s: &mut dyn Storage, writes: Vec<Write>) -> Vec<u64> {
    match s.commit(writes).expect("commit succeeds") {
        CommitOutcome::Committed(versions) => versions,
        CommitOutcome::Conflict(i) => panic!("unexpected conflict at {i}"),
    }
}

#[test]
fn committed_data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let v = {
        let mut s = SqliteStorage::open(&path).expect("open");
        committed(&mut s, vec![put("k", Some(0), b"durable")])[0]
    };
    let mut s = SqliteStorage::open(&path).expect("reopen");
    match s.get("k").expect("get") {
        Lookup::Found(entry) => {
            assert_eq!(entry.value, b"durable");
            assert_eq!(entry.version, v);
        }
        Lookup::Missing => panic!("the committed key is gone after reopening"),
    }
}

#[test]
fn versions_are_not_reused_across_reopen_after_delete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let v1 = {
        let mut s = SqliteStorage::open(&path).expect("open");
        let v1 = committed(&mut s, vec![put("k", Some(0), b"one")])[0];
        committed(
            &mut s,
            vec![Write {
                key: "k".into(),
                expected_version: Some(v1),
                op: WriteOp::Delete,
            }],
        );
        v1
    };
    let mut s = SqliteStorage::open(&path).expect("reopen");
    let v2 = committed(&mut s, vec![put("k", Some(0), b"two")])[0];
    assert!(v2 > v1, "version {v2} after reopen does not follow {v1}");
}

#[test]
fn two_connections_on_one_file_see_each_others_commits_and_conflict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let mut a = SqliteStorage::open(&path).expect("open a");
    let mut b = SqliteStorage::open(&path).expect("open b");
    let v = committed(&mut a, vec![put("k", Some(0), b"from a")])[0];
    assert_eq!(b.list_keys("").expect("list"), vec!["k".to_owned()]);
    // b read nothing yet and believes the key absent: its conditional write must lose.
    assert_eq!(
        b.commit(vec![put("k", Some(0), b"from b")])
            .expect("commit"),
        CommitOutcome::Conflict(0)
    );
    let v2 = committed(&mut b, vec![put("k", Some(v), b"from b")])[0];
    assert!(v2 > v);
    match a.get("k").expect("get") {
        Lookup::Found(entry) => assert_eq!(entry.value, b"from b"),
        Lookup::Missing => panic!("missing"),
    }
}

#[test]
fn a_database_with_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    drop(SqliteStorage::open(&path).expect("create"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.execute("UPDATE ckpt_schema SET version = 99 WHERE id = 1", [])
        .expect("bump schema");
    drop(conn);
    let err = SqliteStorage::open(&path)
        .err()
        .expect("a newer schema must be refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("schema version 99"),
        "unclear error: {message}"
    );
    assert!(message.contains("newer"), "unclear error: {message}");
}

#[test]
fn a_commit_blocked_by_another_writer_times_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let mut s = SqliteStorage::open(&path).expect("open");
    let blocker = rusqlite::Connection::open(&path).expect("raw open");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let started = Instant::now();
    let result = s.commit(vec![put("k", None, b"v")]);
    assert!(
        matches!(result, Err(StorageError::Timeout(_))),
        "got {result:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "gave up before the busy timeout"
    );
    blocker.execute_batch("ROLLBACK").expect("release");
    // Reads are not blocked by a writer in WAL mode, and the failed commit left nothing.
    assert_eq!(s.get("k").expect("get"), Lookup::Missing);
    committed(&mut s, vec![put("k", None, b"v")]);
}

#[test]
fn open_storage_accepts_memory_and_sqlite_urls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut memory = open_storage("memory:").expect("memory:");
    committed(&mut *memory, vec![put("k", None, b"v")]);

    let path = dir.path().join("by-url.db");
    let mut sqlite = open_storage(&format!("sqlite:{}", path.display())).expect("sqlite:PATH");
    committed(&mut *sqlite, vec![put("k", None, b"v")]);
    assert!(path.is_file());

    let path2 = dir.path().join("by-url2.db");
    open_storage(&format!("sqlite://{}", path2.display())).expect("sqlite://PATH");
    assert!(path2.is_file());
}

#[test]
fn open_storage_rejects_unknown_urls_naming_the_accepted_schemes() {
    for url in [
        "postgresx://db",
        "checkpoints.db",
        "memory:extra",
        "sqlite:",
        "",
    ] {
        let message = match open_storage(url) {
            Ok(_) => panic!("{url:?} was accepted"),
            Err(e) => format!("{e:#}"),
        };
        if url != "sqlite:" {
            assert!(
                message.contains("memory:") && message.contains("sqlite:PATH"),
                "{url:?}: {message}"
            );
        }
    }
}
