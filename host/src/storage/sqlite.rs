//! The embedded default store: one SQLite database file.
//!
//! WAL journal with `synchronous=FULL` by default, so a commit is one transaction with one
//! durable sync (`synchronous=NORMAL` on request: no sync per commit, see [`SqliteSynchronous`]);
//! a busy timeout lets several connections and processes share the file. Keys are stored as
//! TEXT with the BINARY collation (memcmp order, i.e. UTF-8 byte order) and are never used as
//! paths. The tables are in `sqlite-schema.sql`, which the Python host's store runs too, so a
//! file written by either host opens in the other.
//!
//! Handles opened in one process on one file share a committer (`group`): commits that arrive
//! while another one is being made durable are applied together, in one transaction with one
//! sync (group commit), each with its own conditions and its own answer.

mod group;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{
    CommitOutcome, Lookup, OpenError, OpenErrorKind, Storage, StorageError, Write, WriteOp,
    check_distinct_keys, conflict_at, prefix_successor, sql_lookup, stored_version,
};

/// The schema this build writes. Bump it with a migration step in `migrate` (and in the Python
/// host's `SqliteStorage`, which shares the schema).
const SCHEMA_VERSION: i64 = 1;

/// The tables of a new store; the Python host runs the same file (see its header).
const SCHEMA_SQL: &str = include_str!("sqlite-schema.sql");

/// How long a statement waits for another connection's lock before failing with `timeout`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`SqliteStorage`] is opened; [`SqliteStorage::open`] takes the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Share durable syncs with the other handles of this process on the same file (group
    /// commit; default on). Commits that arrive while another handle's commit is being made
    /// durable are applied together in one transaction with one sync; each keeps its own
    /// conditions (a conflict fails only its own batch) and returns only once the transaction
    /// that holds it is durable. Off: every commit is its own transaction and sync.
    pub group_commit: bool,
    /// The SQLite VFS to open the file with, by its registered name; `None` is SQLite's
    /// default for the platform. Tests use it to run the store over a VFS that injects faults
    /// (`checkpoint_testkit::power_loss`).
    pub vfs: Option<String>,
    /// When commits are synced: `FULL` (the default) or `NORMAL`; see [`SqliteSynchronous`].
    /// The URL's `?synchronous=full|normal` sets it.
    pub synchronous: SqliteSynchronous,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            group_commit: true,
            vfs: None,
            synchronous: SqliteSynchronous::Full,
        }
    }
}

/// SQLite's `synchronous` setting, in WAL mode: what an acknowledged commit survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqliteSynchronous {
    /// `FULL` (the default): every commit syncs the WAL before it returns, so an acknowledged
    /// checkpoint survives a crash of the process and of the machine (power loss).
    #[default]
    Full,
    /// `NORMAL`: commits are not synced. SQLite syncs the WAL only when it checkpoints it into
    /// the database file (automatically once the WAL holds 1000 pages, and when the last
    /// connection to the file closes). An acknowledged checkpoint survives a crash of the
    /// process (the operating system has the write), but checkpoints acknowledged since the last
    /// WAL sync can be lost when the machine crashes or loses power; the file stays consistent
    /// and a stage never resumes before a checkpoint that was durable at the crash. Faster
    /// commits for a bounded loss window, as Redis's `appendfsync everysec` trades.
    Normal,
    /// `OFF`: commits are never synced, not even when the WAL is checkpointed, so acknowledged
    /// commits can vanish when the machine loses power. This breaks the [`Storage`] contract
    /// and exists only so that the power-loss test can show that it detects exactly that; no
    /// URL selects it.
    #[doc(hidden)]
    UnsafeOff,
}

impl SqliteSynchronous {
    /// The pragma's value.
    fn pragma(self) -> &'static str {
        match self {
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::UnsafeOff => "OFF",
        }
    }
}

/// Splits the part of a `sqlite:` URL after the scheme (`PATH` or `//PATH`, then optionally
/// `?synchronous=full|normal`) into the file's path and the options. The first `?` starts the
/// parameters. Unknown parameters and values are refused as [`OpenErrorKind::BadUrl`].
/// `url` is the whole URL, for messages (a SQLite URL holds no password).
pub(super) fn parse_url<'u>(
    url: &str,
    rest: &'u str,
) -> Result<(&'u str, SqliteOptions), OpenError> {
    let bad = |message: String| OpenError::new(OpenErrorKind::BadUrl, message);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(bad(format!("storage URL {url:?} names no database file")));
    }
    let mut options = SqliteOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "synchronous" => {
                options.synchronous = if value.eq_ignore_ascii_case("full") {
                    SqliteSynchronous::Full
                } else if value.eq_ignore_ascii_case("normal") {
                    SqliteSynchronous::Normal
                } else {
                    return Err(bad(format!(
                        "sqlite URL parameter synchronous={value:?}: expected full (the default: \
                         every commit synced) or normal (no sync per commit: checkpoints acked \
                         since the last WAL sync can be lost on a machine crash)"
                    )));
                }
            }
            _ => {
                return Err(bad(format!(
                    "unknown sqlite URL parameter {name:?} (known: synchronous=full|normal)"
                )));
            }
        }
    }
    Ok((path, options))
}

/// How often commits of one file shared a sync: counts since the file's committer was created
/// (when the first grouped handle of this process opened the file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Commits (batches) made durable or answered by the committer.
    pub commits: u64,
    /// Transactions it ran for them: `commits / groups` batches shared each sync on average.
    pub groups: u64,
    /// The most batches one transaction held.
    pub largest_group: u64,
}

/// A [`Storage`] on one SQLite database file.
///
/// Each value opens its own connection, for its reads; open one per checkpointer. Values of
/// one process on one file commit through one shared connection that groups concurrent
/// commits into one transaction and one sync (see [`SqliteOptions::group_commit`]). Several
/// processes may share a file too: their commits are serialised by SQLite's write lock and
/// made safe by their conditions.
pub struct SqliteStorage {
    /// This handle's own connection: reads, and commits when group commit is off.
    conn: Connection,
    /// The committer shared by this process's handles on the file, when grouping.
    group: Option<Arc<group::Group>>,
}

impl SqliteStorage {
    /// Opens (creating when missing) the database at `path`, switches it to WAL with
    /// `synchronous=FULL` ([`SqliteOptions::synchronous`] for `NORMAL`), and creates or
    /// migrates the schema. Refuses a database whose schema
    /// is newer than this build understands. Commits are grouped with those of the other
    /// handles of this process on the same file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(path, &SqliteOptions::default())
    }

    /// [`SqliteStorage::open`] with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<Self, OpenError> {
        Self::open_inner(path.as_ref(), options).map_err(OpenError::from)
    }

    fn open_inner(path: &Path, options: &SqliteOptions) -> anyhow::Result<Self> {
        let mut conn = connect(path, options)?;
        migrate(&mut conn).with_context(|| {
            format!(
                "cannot prepare the schema of SQLite database {}",
                path.display()
            )
        })?;
        let group = if options.group_commit {
            let key = group::Key {
                path: file_identity(path),
                vfs: options.vfs.clone(),
                synchronous: options.synchronous,
            };
            Some(group::Group::for_file(key, || connect(path, options))?)
        } else {
            None
        };
        Ok(Self { conn, group })
    }

    /// How this handle's file has grouped commits so far; `None` when this handle does not
    /// group ([`SqliteOptions::group_commit`] off).
    pub fn group_commit_stats(&self) -> Option<GroupCommitStats> {
        self.group.as_ref().map(|g| g.stats())
    }
}

/// Opens one configured connection: busy timeout, WAL, and the sync mode (per connection, so
/// handles of one file may differ; each mode has its own committer).
fn connect(path: &Path, options: &SqliteOptions) -> anyhow::Result<Connection> {
    let conn = match &options.vfs {
        None => Connection::open(path),
        Some(vfs) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs.as_str()),
    }
    .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode = wal_mode(&conn)?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "SQLite database {} cannot use WAL mode (journal mode is {mode:?})",
        path.display()
    );
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())?;
    Ok(conn)
}

/// Switches to WAL (a no-op when the file already is) and returns the journal mode now set.
///
/// Switching a new database needs its exclusive lock, for which SQLite does not wait (no busy
/// handler), so several connections creating one file at once would fail with `database is
/// locked`: retry for as long as the busy timeout.
fn wal_mode(conn: &Connection) -> rusqlite::Result<String> {
    let start = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::DatabaseBusy && start.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// The name under which handles on one file find each other's committer: the canonical path
/// when the file is on disk (symlinks and relative paths resolved), else the absolute path as
/// given (a VFS that keeps files elsewhere).
fn file_identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

/// Creates the schema, or checks and upgrades an existing one, in one transaction.
fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The version is read only where its table exists: the schema file creates that table
    // with the others, when there is no version yet.
    let has_schema_table: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ckpt_schema')",
        [],
        |row| row.get(0),
    )?;
    let found: Option<i64> = if has_schema_table {
        tx.query_row("SELECT version FROM ckpt_schema WHERE id = 1", [], |row| {
            row.get(0)
        })
        .optional()?
    } else {
        None
    };
    match found {
        None => {
            tx.execute_batch(SCHEMA_SQL)?;
            tx.execute(
                "INSERT INTO ckpt_schema (id, version) VALUES (1, ?1)",
                params![SCHEMA_VERSION],
            )?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(v) if v > SCHEMA_VERSION => {
            return Err(OpenError::marked(
                OpenErrorKind::SchemaTooNew,
                format!(
                    "the database has schema version {v}, newer than this build understands \
                     ({SCHEMA_VERSION}): it was written by a newer version; upgrade this program"
                ),
            ));
        }
        Some(v) => {
            return Err(OpenError::marked(
                OpenErrorKind::Refused,
                format!("the database has unknown schema version {v}"),
            ));
        }
    }
    tx.commit()?;
    Ok(())
}

/// Maps a SQLite failure to the stable storage error the guest sees. The full error text is
/// kept in the message; the host also logs it.
fn storage_error(op: &str, e: rusqlite::Error) -> StorageError {
    let code = match &e {
        rusqlite::Error::SqliteFailure(failure, _) => Some(failure.code),
        _ => None,
    };
    match code {
        Some(ErrorCode::DatabaseBusy) => StorageError::Timeout(format!(
            "sqlite {op}: the database stayed locked by another connection for more than {}s: {e}",
            BUSY_TIMEOUT.as_secs()
        )),
        Some(ErrorCode::DatabaseLocked) => {
            StorageError::Unavailable(format!("sqlite {op}: the table is locked: {e}"))
        }
        Some(ErrorCode::CannotOpen) => {
            StorageError::Unavailable(format!("sqlite {op}: cannot open the database file: {e}"))
        }
        _ => StorageError::Failed(format!("sqlite {op}: {e}")),
    }
}

fn to_sql_version(version: u64) -> Result<i64, StorageError> {
    i64::try_from(version).map_err(|_| {
        StorageError::Failed(format!("version {version} does not fit SQLite's INTEGER"))
    })
}

/// Commits one batch in a transaction of its own: the path of a handle that does not group,
/// and of a group that holds one batch.
fn commit_alone(conn: &mut Connection, writes: &[Write]) -> Result<CommitOutcome, StorageError> {
    let err = |e| storage_error("commit", e);
    // IMMEDIATE takes the write lock up front, so the conditions read below cannot change
    // before this transaction commits.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut counter = VersionCounter::read(&tx)?;
    let outcome = apply_batch(&tx, writes, &mut counter)?;
    if let CommitOutcome::Committed(_) = outcome {
        counter.store(&tx)?;
        tx.commit().map_err(err)?;
    }
    // A conflict changed nothing: dropping the transaction rolls it back.
    Ok(outcome)
}

/// The store's version counter, read once per transaction and advanced in memory by every put
/// in it; [`VersionCounter::store`] writes it back in the same transaction, so a version is
/// never handed out twice, not even across a crash.
#[derive(Clone, Copy)]
struct VersionCounter {
    last: u64,
    read: u64,
}

impl VersionCounter {
    fn read(conn: &Connection) -> Result<Self, StorageError> {
        let last: i64 = conn
            .prepare_cached("SELECT last_version FROM ckpt_version_counter WHERE id = 1")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
            .map_err(|e| storage_error("commit", e))?;
        let last = u64::try_from(last).map_err(|_| {
            StorageError::Failed(format!("sqlite: version counter {last} is negative"))
        })?;
        Ok(Self { last, read: last })
    }

    fn store(&self, conn: &Connection) -> Result<(), StorageError> {
        if self.last == self.read {
            return Ok(());
        }
        let last = to_sql_version(self.last)?;
        conn.prepare_cached("UPDATE ckpt_version_counter SET last_version = ?1 WHERE id = 1")
            .and_then(|mut stmt| stmt.execute(params![last]))
            .map_err(|e| storage_error("commit", e))?;
        Ok(())
    }
}

/// Applies one batch inside the open transaction on `conn`: checks every condition first, so a
/// conflict returns before anything of the batch is written, then writes. An `Err` may leave
/// part of the batch written: the caller rolls the transaction back.
fn apply_batch(
    conn: &Connection,
    writes: &[Write],
    counter: &mut VersionCounter,
) -> Result<CommitOutcome, StorageError> {
    let err = |e| storage_error("commit", e);
    {
        let mut current = conn
            .prepare_cached("SELECT version FROM ckpt_entries WHERE key = ?1")
            .map_err(err)?;
        for (index, write) in writes.iter().enumerate() {
            let Some(expected) = write.expected_version else {
                continue;
            };
            let found: Option<i64> = current
                .query_row(params![write.key], |row| row.get(0))
                .optional()
                .map_err(err)?;
            let found = match found {
                Some(raw) => stored_version("sqlite", raw)?,
                None => 0,
            };
            if found != expected {
                return conflict_at(index);
            }
        }
    }
    let mut versions = Vec::with_capacity(writes.len());
    let mut put = conn
        .prepare_cached(
            "INSERT INTO ckpt_entries (key, value, version) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                             version = excluded.version",
        )
        .map_err(err)?;
    let mut delete = conn
        .prepare_cached("DELETE FROM ckpt_entries WHERE key = ?1")
        .map_err(err)?;
    let mut last = counter.last;
    for write in writes {
        match &write.op {
            WriteOp::Put(value) => {
                last += 1;
                put.execute(params![write.key, value, to_sql_version(last)?])
                    .map_err(err)?;
                versions.push(last);
            }
            WriteOp::Delete => {
                delete.execute(params![write.key]).map_err(err)?;
                versions.push(0);
            }
        }
    }
    counter.last = last;
    Ok(CommitOutcome::Committed(versions))
}

impl Storage for SqliteStorage {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        let row: Option<(Vec<u8>, i64)> = self
            .conn
            .prepare_cached("SELECT value, version FROM ckpt_entries WHERE key = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(|e| storage_error("get", e))?;
        sql_lookup("sqlite", row)
    }

    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        check_distinct_keys(&writes)?;
        match &self.group {
            Some(group) => group.commit(writes),
            None => commit_alone(&mut self.conn, &writes),
        }
    }

    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let err = |e| storage_error("list-keys", e);
        // A range scan, not LIKE: `%` and `_` in a prefix are data. The upper bound is bound as
        // a BLOB and cast, because it may not be valid UTF-8; the BINARY collation compares
        // both sides with memcmp.
        match prefix_successor(prefix.as_bytes()) {
            None => {
                let mut stmt = self
                    .conn
                    .prepare_cached("SELECT key FROM ckpt_entries ORDER BY key")
                    .map_err(err)?;
                stmt.query_map([], |row| row.get(0))
                    .and_then(Iterator::collect)
                    .map_err(err)
            }
            Some(end) => {
                let mut stmt = self
                    .conn
                    .prepare_cached(
                        "SELECT key FROM ckpt_entries
                         WHERE key >= ?1 AND key < CAST(?2 AS TEXT) ORDER BY key",
                    )
                    .map_err(err)?;
                stmt.query_map(params![prefix, end], |row| row.get(0))
                    .and_then(Iterator::collect)
                    .map_err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::group::run_group;
    use super::{SqliteOptions, SqliteStorage};
    use crate::storage::{CommitOutcome, Lookup, Storage, StorageError, Write, WriteOp};

    fn put(key: &str, expected: Option<u64>, value: &[u8]) -> Write {
        Write {
            key: key.to_owned(),
            expected_version: expected,
            op: WriteOp::Put(value.to_vec()),
        }
    }

    fn value_of(storage: &mut SqliteStorage, key: &str) -> Option<(Vec<u8>, u64)> {
        match storage.get(key).expect("get") {
            Lookup::Found(entry) => Some((entry.value, entry.version)),
            Lookup::Missing => None,
        }
    }

    #[test]
    fn a_conflict_in_a_group_fails_only_its_own_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let mut store = SqliteStorage::open(&path).expect("open");
        let mut conn = super::connect(&path, &SqliteOptions::default()).expect("connect");
        let results = run_group(
            &mut conn,
            &[
                vec![put("a", Some(0), b"a1"), put("b", Some(0), b"b1")],
                // Sees the batch before it: "a" is no longer absent.
                vec![put("c", Some(0), b"c1"), put("a", Some(0), b"a2")],
                vec![put("c", Some(0), b"c2")],
                vec![],
            ],
        );
        assert_eq!(results.len(), 4);
        assert_eq!(results[0], Ok(CommitOutcome::Committed(vec![1, 2])));
        assert_eq!(results[1], Ok(CommitOutcome::Conflict(1)));
        // Versions continue where the committed batches left them, with no gap for the
        // conflicting one, and "c" was written by the third batch only.
        assert_eq!(results[2], Ok(CommitOutcome::Committed(vec![3])));
        assert_eq!(results[3], Ok(CommitOutcome::Committed(vec![])));
        assert_eq!(value_of(&mut store, "a"), Some((b"a1".to_vec(), 1)));
        assert_eq!(value_of(&mut store, "c"), Some((b"c2".to_vec(), 3)));
        // The counter moved with the group: the next commit gets version 4.
        assert_eq!(
            store.commit(vec![put("d", None, b"d")]),
            Ok(CommitOutcome::Committed(vec![4]))
        );
    }

    #[test]
    fn a_failing_statement_in_a_group_fails_only_its_own_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let mut store = SqliteStorage::open(&path).expect("open");
        let mut conn = super::connect(&path, &SqliteOptions::default()).expect("connect");
        // A write that fails inside the database, after the batch's conditions held.
        conn.execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON ckpt_entries WHEN NEW.key = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned write'); END;",
        )
        .expect("trigger");
        let results = run_group(
            &mut conn,
            &[
                vec![put("a", Some(0), b"a")],
                vec![put("b", Some(0), b"b"), put("poison", None, b"p")],
                vec![put("c", Some(0), b"c")],
            ],
        );
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(
            matches!(&results[1], Err(StorageError::Failed(m)) if m.contains("poisoned write")),
            "{:?}",
            results[1]
        );
        assert!(results[2].is_ok(), "{:?}", results[2]);
        assert!(value_of(&mut store, "a").is_some());
        assert!(value_of(&mut store, "c").is_some());
        // All or nothing: the poisoned batch left neither of its writes.
        assert_eq!(value_of(&mut store, "b"), None);
        assert_eq!(value_of(&mut store, "poison"), None);
    }

    #[test]
    fn commits_queued_behind_a_sync_share_the_next_transaction() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let first = SqliteStorage::open(&path).expect("open");
        let group = Arc::clone(first.group.as_ref().expect("grouped by default"));
        // Another connection holds the write lock, so the first commit's leader waits in
        // `BEGIN IMMEDIATE` while the others queue behind it.
        let writers = 8;
        // Opened first: opening checks the schema, which takes the write lock too.
        let handles: Vec<_> = (0..writers)
            .map(|_| SqliteStorage::open(&path).expect("open"))
            .collect();
        let blocker = rusqlite::Connection::open(&path).expect("raw open");
        blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let threads: Vec<_> = handles
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                std::thread::spawn(move || s.commit(vec![put(&format!("k{i}"), Some(0), b"v")]))
            })
            .collect();
        // Wait (no time limit: the writers cannot finish before the lock is released) until
        // one leads and the others queue.
        while group.queued() < writers - 1 {
            std::thread::yield_now();
        }
        blocker.execute_batch("COMMIT").expect("unlock");
        for t in threads {
            assert!(matches!(
                t.join().expect("writer"),
                Ok(CommitOutcome::Committed(_))
            ));
        }
        let stats = first.group_commit_stats().expect("stats");
        assert_eq!(stats.commits, writers as u64);
        assert_eq!(stats.groups, 2, "{stats:?}");
        assert_eq!(stats.largest_group, writers as u64 - 1);
        let mut reader = first;
        for i in 0..writers {
            assert!(value_of(&mut reader, &format!("k{i}")).is_some());
        }
    }

    #[test]
    fn the_url_sets_the_sync_mode_and_refuses_what_it_does_not_know() {
        use super::{SqliteSynchronous, parse_url};
        use crate::storage::OpenErrorKind;
        for (rest, path, mode) in [
            ("/tmp/a.db", "/tmp/a.db", SqliteSynchronous::Full),
            ("//tmp/a.db", "tmp/a.db", SqliteSynchronous::Full),
            ("a.db?synchronous=normal", "a.db", SqliteSynchronous::Normal),
            ("a.db?synchronous=NORMAL", "a.db", SqliteSynchronous::Normal),
            ("a.db?synchronous=full", "a.db", SqliteSynchronous::Full),
            ("a.db?", "a.db", SqliteSynchronous::Full),
        ] {
            let (parsed, options) = parse_url(&format!("sqlite:{rest}"), rest).expect(rest);
            assert_eq!((parsed, options.synchronous), (path, mode), "{rest}");
            assert!(options.group_commit, "{rest}");
        }
        for (rest, names) in [
            ("a.db?synchronous=off", "synchronous=\"off\": expected full"),
            ("a.db?synchronous=", "synchronous=\"\": expected full"),
            ("a.db?synchronous", "synchronous=\"\": expected full"),
            ("a.db?sync=normal", "unknown sqlite URL parameter \"sync\""),
            ("?synchronous=normal", "names no database file"),
        ] {
            let err = parse_url(&format!("sqlite:{rest}"), rest).expect_err(rest);
            assert_eq!(err.kind(), OpenErrorKind::BadUrl, "{rest}");
            assert!(err.message().contains(names), "{rest}: {}", err.message());
        }
    }

    #[test]
    fn every_connection_of_a_handle_uses_its_sync_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let pragma = |conn: &rusqlite::Connection| -> i64 {
            conn.pragma_query_value(None, "synchronous", |row| row.get(0))
                .expect("pragma")
        };
        // SQLite's numbers: 1 NORMAL, 2 FULL.
        for (mode, number) in [
            (super::SqliteSynchronous::Normal, 1),
            (super::SqliteSynchronous::Full, 2),
        ] {
            for group_commit in [true, false] {
                let options = SqliteOptions {
                    group_commit,
                    synchronous: mode,
                    ..SqliteOptions::default()
                };
                let mut store = SqliteStorage::open_with(&path, &options).expect("open");
                assert_eq!(pragma(&store.conn), number, "{mode:?}");
                if let Some(group) = &store.group {
                    assert_eq!(
                        pragma(&group.conn.lock().expect("conn")),
                        number,
                        "{mode:?}"
                    );
                }
                let key = format!("{mode:?}-{group_commit}");
                assert!(matches!(
                    store.commit(vec![put(&key, Some(0), b"v")]),
                    Ok(CommitOutcome::Committed(_))
                ));
                assert!(value_of(&mut store, &key).is_some());
            }
        }
    }

    #[test]
    fn handles_without_group_commit_commit_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let options = SqliteOptions {
            group_commit: false,
            ..SqliteOptions::default()
        };
        let mut a = SqliteStorage::open_with(&path, &options).expect("open");
        let mut b = SqliteStorage::open(&path).expect("open grouped");
        assert!(a.group_commit_stats().is_none());
        assert_eq!(
            a.commit(vec![put("k", Some(0), b"a")]),
            Ok(CommitOutcome::Committed(vec![1]))
        );
        // Grouped and ungrouped handles share the file, its conditions and its counter.
        assert_eq!(
            b.commit(vec![put("k", Some(0), b"b")]),
            Ok(CommitOutcome::Conflict(0))
        );
        assert_eq!(
            b.commit(vec![put("k", Some(1), b"b")]),
            Ok(CommitOutcome::Committed(vec![2]))
        );
    }
}
