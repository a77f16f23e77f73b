//! The embedded default store: one SQLite database file.
//!
//! WAL journal with `synchronous=FULL`, so a commit is one transaction with one durable sync;
//! a busy timeout lets several connections and processes share the file. Keys are stored as
//! TEXT with the BINARY collation (memcmp order, i.e. UTF-8 byte order) and are never used as
//! paths. The tables are in `sqlite-schema.sql`, which the Python host's store runs too, so a
//! file written by either host opens in the other.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

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

/// A [`Storage`] on one SQLite database file.
///
/// Each value opens its own connection; open one per checkpointer. Several connections (in
/// one process or many) may share a file: commits are serialised by SQLite's write lock and
/// made safe by their conditions.
pub struct SqliteStorage {
    conn: Connection,
}

impl SqliteStorage {
    /// Opens (creating when missing) the database at `path`, switches it to WAL with
    /// `synchronous=FULL`, and creates or migrates the schema. Refuses a database whose schema
    /// is newer than this build understands.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_inner(path.as_ref()).map_err(OpenError::from)
    }

    fn open_inner(path: &Path) -> anyhow::Result<Self> {
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open SQLite database {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "SQLite database {} cannot use WAL mode (journal mode is {mode:?})",
            path.display()
        );
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut conn).with_context(|| {
            format!(
                "cannot prepare the schema of SQLite database {}",
                path.display()
            )
        })?;
        Ok(Self { conn })
    }
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
        let err = |e| storage_error("commit", e);
        // IMMEDIATE takes the write lock up front, so the conditions read below cannot change
        // before this transaction commits.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut current = tx
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
                    // Dropping the transaction rolls it back: nothing was changed anyway.
                    return conflict_at(index);
                }
            }
        }
        let mut versions = Vec::with_capacity(writes.len());
        {
            let last: i64 = tx
                .prepare_cached("SELECT last_version FROM ckpt_version_counter WHERE id = 1")
                .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
                .map_err(err)?;
            let mut last = u64::try_from(last).map_err(|_| {
                StorageError::Failed(format!("sqlite: version counter {last} is negative"))
            })?;
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO ckpt_entries (key, value, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                                                     version = excluded.version",
                )
                .map_err(err)?;
            let mut delete = tx
                .prepare_cached("DELETE FROM ckpt_entries WHERE key = ?1")
                .map_err(err)?;
            for write in &writes {
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
            // The counter moves in the same transaction as the writes it numbered, so a
            // version is never handed out twice, not even across a crash.
            let last = to_sql_version(last)?;
            tx.prepare_cached("UPDATE ckpt_version_counter SET last_version = ?1 WHERE id = 1")
                .and_then(|mut stmt| stmt.execute(params![last]))
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(CommitOutcome::Committed(versions))
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
