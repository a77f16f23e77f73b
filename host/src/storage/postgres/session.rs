//! Everything between the store and the server once it is open: pooled sessions (a connection
//! with its prepared statements, made by `SessionManager` for r2d2), the store's SQL text
//! (`Query`), and how failures become the guest's `storage` errors, including which ones are
//! worth another attempt (`with_session`: a stale pooled connection, a transaction the server
//! rolled back). Kept together because the retry rules depend on both: which statements have
//! run on a session decides whether a failed call may run again.

use std::fmt;
use std::sync::Arc;

use postgres::error::SqlState;
use postgres::{Client, Statement};
use r2d2::ManageConnection;
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::Shared;
use crate::storage::StorageError;

/// How often a commit is tried again after the server rolled it back to break a deadlock or a
/// serialization failure (neither happens between this store's own commits, see `commit`).
const ROLLED_BACK_RETRIES: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Pooled sessions: a connection plus its prepared statements.

/// The store's statements, spliced with its (validated) schema name once.
#[derive(Clone, Copy)]
pub(super) enum Query {
    Get,
    ListAll,
    ListFrom,
    ListRange,
    Put,
    PutIfAbsent,
    PutIfVersion,
    Delete,
    DeleteIfVersion,
    LockKey,
}

const QUERY_COUNT: usize = 10;

pub(super) struct Queries([String; QUERY_COUNT]);

impl Queries {
    pub(super) fn new(schema: &str) -> Self {
        let t = format!("\"{schema}\".ckpt_entries");
        let next = format!("nextval('\"{schema}\".ckpt_versions')");
        let sql = |q: Query| match q {
            Query::Get => format!("SELECT value, version FROM {t} WHERE key = $1"),
            Query::ListAll => format!("SELECT key FROM {t} ORDER BY key"),
            Query::ListFrom => format!("SELECT key FROM {t} WHERE key >= $1 ORDER BY key"),
            Query::ListRange => {
                format!("SELECT key FROM {t} WHERE key >= $1 AND key < $2 ORDER BY key")
            }
            Query::Put => format!(
                "INSERT INTO {t} (key, value, version) VALUES ($1, $2, {next})
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version
                 RETURNING version"
            ),
            Query::PutIfAbsent => format!(
                "INSERT INTO {t} (key, value, version) VALUES ($1, $2, {next})
                 ON CONFLICT (key) DO NOTHING RETURNING version"
            ),
            Query::PutIfVersion => format!(
                "UPDATE {t} SET value = $3, version = {next} WHERE key = $1 AND version = $2
                 RETURNING version"
            ),
            Query::Delete => format!("DELETE FROM {t} WHERE key = $1"),
            Query::DeleteIfVersion => format!("DELETE FROM {t} WHERE key = $1 AND version = $2"),
            // Locks the key's row whether it exists or not: an absent key gets a placeholder
            // (version 0) that holds its slot in the primary key until the transaction ends.
            // Answers the version the key had (0: absent).
            Query::LockKey => format!(
                "INSERT INTO {t} AS e (key, value, version) VALUES ($1, '\\x'::bytea, 0)
                 ON CONFLICT (key) DO UPDATE SET version = e.version RETURNING version"
            ),
        };
        Self(
            [
                Query::Get,
                Query::ListAll,
                Query::ListFrom,
                Query::ListRange,
                Query::Put,
                Query::PutIfAbsent,
                Query::PutIfVersion,
                Query::Delete,
                Query::DeleteIfVersion,
                Query::LockKey,
            ]
            .map(sql),
        )
    }
}

/// One pooled connection and the statements it has prepared so far.
pub(super) struct Session {
    pub(super) client: Client,
    queries: Arc<Queries>,
    statements: [Option<Statement>; QUERY_COUNT],
    /// Set when a call saw the connection fail; the pool then drops it instead of reusing it.
    pub(super) broken: bool,
}

impl Session {
    /// The prepared statement for `query`, prepared on first use on this connection.
    pub(super) fn statement(&mut self, query: Query) -> Result<Statement, postgres::Error> {
        let slot = &mut self.statements[query as usize];
        if let Some(statement) = slot {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&self.queries.0[query as usize])?;
        *slot = Some(statement.clone());
        Ok(statement)
    }
}

/// r2d2's PostgreSQL manager, extended to keep prepared statements with each connection.
pub(super) struct SessionManager {
    /// Plain or TLS as the URL's `sslmode` says (the config's mode decides whether the
    /// connector is ever called).
    pub(super) inner: PostgresConnectionManager<MakeRustlsConnect>,
    pub(super) queries: Arc<Queries>,
}

/// A failed connection attempt, with the whole error chain (the pool reports only its text).
#[derive(Debug)]
pub(super) struct ConnectError(String);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl ManageConnection for SessionManager {
    type Connection = Session;
    type Error = ConnectError;

    fn connect(&self) -> Result<Session, ConnectError> {
        let client = self
            .inner
            .connect()
            .map_err(|e| ConnectError(describe(&e)))?;
        Ok(Session {
            client,
            queries: Arc::clone(&self.queries),
            statements: Default::default(),
            broken: false,
        })
    }

    fn is_valid(&self, session: &mut Session) -> Result<(), ConnectError> {
        self.inner
            .is_valid(&mut session.client)
            .map_err(|e| ConnectError(describe(&e)))
    }

    fn has_broken(&self, session: &mut Session) -> bool {
        session.broken || self.inner.has_broken(&mut session.client)
    }
}

// ---------------------------------------------------------------------------------------------
// Error mapping

/// The whole error chain in one line: `postgres::Error`'s own text names only its kind.
pub(super) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// True when `e` means the connection itself is gone: the transport failed, or the server
/// ended the session (shutdown, crash, or a connection-class error).
pub(super) fn connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || code.code().starts_with("08")
        }
        // Not the server's answer: the socket or the protocol failed.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// True when the server rolled the transaction back to resolve a race; trying again is safe.
pub(super) fn rolled_back_by_server(e: &postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
    })
}

impl Shared {
    /// Maps a failure of a statement that cannot have applied anything (a read, or any
    /// statement of a commit before `COMMIT` was sent).
    pub(super) fn error(&self, op: &str, e: &postgres::Error) -> StorageError {
        let target = &self.target;
        let text = describe(e);
        if connection_lost(e) {
            return StorageError::Unavailable(format!(
                "postgres {op}: lost the connection to {target}: {text}"
            ));
        }
        let Some(code) = e.code() else {
            return StorageError::Failed(format!("postgres {op} on {target}: {text}"));
        };
        match code.code() {
            "57014" => StorageError::Timeout(format!(
                "postgres {op}: {target} cancelled the statement (statement_timeout {} ms): \
                 {text}",
                self.statement_timeout.as_millis()
            )),
            "55P03" => StorageError::Timeout(format!(
                "postgres {op}: {target} gave up waiting for a lock: {text}"
            )),
            "25006" => StorageError::Unavailable(format!(
                "postgres {op}: {target} is read-only (a standby?): {text}"
            )),
            class if class.starts_with("53") => StorageError::Unavailable(format!(
                "postgres {op}: {target} is out of resources: {text}"
            )),
            "42P01" | "3F000" => StorageError::Failed(format!(
                "postgres {op}: the store's tables are gone from {target} (dropped after open?): \
                 {text}"
            )),
            _ => StorageError::Failed(format!("postgres {op} on {target}: {text}")),
        }
    }

    fn pool_error(&self, op: &str, e: &r2d2::Error) -> StorageError {
        StorageError::Unavailable(format!(
            "postgres {op}: no connection to {} within {} ms: {e}",
            self.target,
            self.pool_wait.as_millis()
        ))
    }

    /// Runs `call` on a pooled session. When the call finds the connection gone before it did
    /// anything (the server restarted while the connection sat in the pool), the connection is
    /// dropped and the call runs again on another: `call` must be safe to repeat when it fails
    /// that way, which reads are and a commit is until `COMMIT` is sent. While the server is
    /// down the next attempt fails to get a connection, which ends the loop.
    pub(super) fn with_session<T>(
        &self,
        op: &str,
        mut call: impl FnMut(&mut Session) -> Result<T, Attempt>,
    ) -> Result<T, StorageError> {
        // Every pooled connection may be stale after a restart, plus one fresh connection.
        let mut stale_left = self.max_sessions + 1;
        let mut rolled_back_left = ROLLED_BACK_RETRIES;
        loop {
            let mut session = self.pool.get().map_err(|e| self.pool_error(op, &e))?;
            match call(&mut session) {
                Ok(value) => return Ok(value),
                Err(Attempt::Stale(e)) => {
                    session.broken = true;
                    drop(session);
                    stale_left -= 1;
                    if stale_left == 0 {
                        return Err(self.error(op, &e));
                    }
                    tracing::debug!(
                        "postgres {op}: dropped a stale connection: {}",
                        describe(&e)
                    );
                }
                Err(Attempt::RolledBack(e)) => {
                    rolled_back_left -= 1;
                    if rolled_back_left == 0 {
                        return Err(self.error(op, &e));
                    }
                }
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
    }
}

/// How one attempt of a call failed.
pub(super) enum Attempt {
    /// The first round trip failed because the connection is gone; nothing was done.
    Stale(postgres::Error),
    /// The server rolled the transaction back (deadlock, serialization); nothing was applied.
    RolledBack(postgres::Error),
    /// A final answer.
    Failed(StorageError),
}

/// Classifies a failed read: reads can always run again, so a lost connection is `Stale`.
pub(super) fn read_attempt(shared: &Shared, op: &str, e: postgres::Error) -> Attempt {
    if connection_lost(&e) {
        return Attempt::Stale(e);
    }
    Attempt::Failed(shared.error(op, &e))
}
