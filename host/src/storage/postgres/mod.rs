//! The shared store for pipelines on many machines: tables in one PostgreSQL schema.
//!
//! Keys and values are `bytea` (PostgreSQL `text` cannot hold NUL, and `bytea` compares
//! byte-wise, which is the order `list_keys` must give). Every put takes its version from one
//! sequence, so a version is never handed out twice, not even after a delete. A commit is one
//! READ COMMITTED transaction of row-locking conditional statements (see `commit` for why that
//! isolation level is enough). Connections come from an r2d2 pool shared by every clone.
//!
//! This file holds the store's type, its opening and the `Storage` calls; the rest is split by
//! concern, so that each part reads on its own: `url` (parameters and the client config),
//! `passfile` (the password from a file), `tls` (the connector and its certificate checks),
//! `schema` (the durability check and migration at open), `session` (pooled sessions, the SQL,
//! error mapping and retries) and `commit` (one commit attempt, the part that rests on
//! PostgreSQL's locking rules).

mod commit;
mod passfile;
mod schema;
mod session;
mod tls;
mod url;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use r2d2::ManageConnection;
use r2d2_postgres::PostgresConnectionManager;

use self::schema::{check_session, migrate};
use self::session::{Queries, Query, SessionManager, describe, read_attempt};
use self::url::{TlsMode, describe_target, parse_url};
use super::{
    CommitOutcome, Lookup, OpenError, OpenErrorKind, Storage, StorageError, Write,
    check_distinct_keys, prefix_successor, sql_lookup,
};

/// A [`Storage`] on a PostgreSQL schema, for pipelines whose workers run on many machines.
///
/// # URL
///
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?PARAMS]` (`postgresql://` too). `PARAMS`
/// are `&`-separated `key=value` pairs. These are the store's own, removed before the rest is
/// handed to the client library:
///
/// | param | default | meaning |
/// |---|---|---|
/// | `schema` | `checkpoint` | the PostgreSQL schema holding the store's tables, created on open. Distinct schemas are independent stores. Lowercase ASCII letters, digits and `_`, starting with a letter or `_`, at most 63 bytes, not starting with `pg_`. |
/// | `connect_timeout_ms` | 5000 | how long opening a connection may take (libpq's `connect_timeout`, in seconds, is honoured when this is absent); also how long a call waits for a pooled connection before failing with `unavailable` |
/// | `statement_timeout_ms` | 10000 | the server cancels a statement running longer (the call fails with `timeout`) |
/// | `pool_size` | 4 | connections shared by every clone of this value (1 to 64) |
/// | `sslmode` | `disable`, or `verify-full` when `sslrootcert`, `sslcert` or `sslkey` is given | `disable` (plain TCP), `require` (encrypted; the certificate is checked only when `sslrootcert` is given, as libpq does), `verify-ca` (signed by a trusted CA), `verify-full` (signed by a trusted CA and valid for the URL's host name). `allow` and `prefer` are refused: they fall back to plain text without telling |
/// | `sslrootcert` | the system's trust store | PEM file of the CA(s) to trust (`system`: the system's trust store) |
/// | `sslcert`, `sslkey` | none | PEM client certificate (chain) and its private key, given together; the key file must not be readable by every user |
/// | `password_file` | none | a file that holds only the password (one trailing line break is dropped); not with a password in the URL; must not be readable by every user |
/// | `passfile` | `PGPASSFILE`, else `~/.pgpass` | libpq's password file (`host:port:database:user:password` lines), read when the URL gives no password and no `password_file`; ignored, as by libpq, when missing or open to group or others |
///
/// Every other param is the client library's (`postgres` crate, libpq-style names:
/// `application_name`, `options`, `keepalives_idle`, `tcp_user_timeout`, `host` with a socket
/// directory, `hostaddr`, ...). Paths may be %-escaped. TLS is rustls (no system OpenSSL);
/// a certificate that does not verify is refused with the host and the reason
/// ([`OpenErrorKind::Refused`](crate::storage::OpenErrorKind::Refused)). `docs/deployment.md`
/// shows TLS, secrets and the minimum grants.
///
/// Each session runs with `synchronous_commit=on` (set at connection start, where it overrides
/// any role or database setting), so a commit that returned `Ok` is flushed to the server's
/// disk. Unless the URL sets them, TCP keepalives probe an idle connection after 5 s and
/// `tcp_user_timeout` is the statement timeout plus the connect timeout, so a call never waits
/// forever on a server whose machine vanished.
///
/// # Sharing
///
/// Clones share one connection pool: open one value per process and clone it for each
/// checkpointer. A call takes a connection from the pool for its own duration only. Several
/// processes and machines may use one schema; conditional commits make that safe.
///
/// # Errors
///
/// `open` fails with a message naming the server's host and port (never the password) when
/// the server cannot be reached within the connect timeout, and refuses a schema written by a
/// newer version. Calls fail with `unavailable` when no connection can be had (server down,
/// restarting, out of connections), with `timeout` when a statement ran out of time or the
/// connection broke while `COMMIT` was in flight (the outcome is unknown), and with `failed`
/// otherwise. A connection that broke (for example when the server restarted) is discarded;
/// calls work again as soon as the server is back.
#[derive(Clone)]
pub struct PostgresStorage {
    shared: Arc<Shared>,
}

struct Shared {
    pool: r2d2::Pool<SessionManager>,
    /// "PostgreSQL at HOST:PORT (database D, schema S)", for messages; holds no password.
    target: String,
    pool_wait: Duration,
    statement_timeout: Duration,
    max_sessions: u32,
}

impl fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl PostgresStorage {
    /// Connects to the server named by `url` (see the type's docs for the format), creates or
    /// migrates the store's schema, and returns a store whose clones share one pool.
    ///
    /// Fails within the connect timeout when the server cannot be reached; refuses a schema
    /// whose version is newer than this build understands.
    pub fn open(url: &str) -> Result<Self, OpenError> {
        Self::open_inner(url).map_err(OpenError::from)
    }

    fn open_inner(url: &str) -> anyhow::Result<Self> {
        let mut settings = parse_url(url)
            .map_err(|e| OpenError::marked(OpenErrorKind::BadUrl, format!("{e:#}")))?;
        let target = describe_target(&settings.config, &settings.schema);
        passfile::resolve_password(&mut settings)
            .with_context(|| format!("cannot get the password for {target}"))?;
        let connector = tls::connector(&settings.tls)
            .with_context(|| format!("cannot set up TLS for {target}"))?;
        let queries = Arc::new(Queries::new(&settings.schema));
        let manager = SessionManager {
            inner: PostgresConnectionManager::new(settings.config.clone(), connector),
            queries,
        };
        // One direct connection, outside the pool: it fails as soon as the server refuses
        // (the pool would keep retrying until its timeout), with the precise error.
        let mut client = manager
            .inner
            .connect()
            .map_err(|e| connect_error(&target, settings.tls.mode, &e))?;
        check_session(&mut client).map_err(|e| {
            OpenError::marked(
                OpenErrorKind::Refused,
                format!("{target} cannot hold the store: {e:#}"),
            )
        })?;
        migrate(&mut client, &settings.schema).map_err(|e| {
            let message = format!("cannot prepare the store's schema on {target}: {e:#}");
            let denied = e.chain().any(|cause| {
                cause
                    .downcast_ref::<postgres::Error>()
                    .and_then(postgres::Error::code)
                    == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
            });
            if denied {
                OpenError::marked(
                    OpenErrorKind::Refused,
                    format!(
                        "{message} (the role lacks a privilege the store needs: see the \
                         grants in docs/deployment.md)"
                    ),
                )
            } else {
                e.context(format!("cannot prepare the store's schema on {target}"))
            }
        })?;
        drop(client);
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            // Connections open on demand: a store that many tests or checkpointers open
            // briefly does not hold idle connections it never used.
            .min_idle(Some(0))
            // Checking a connection on every checkout costs a round trip per call; instead a
            // call whose first round trip finds the connection broken retries on another
            // (see `with_session`), and a connection that failed is never returned.
            .test_on_check_out(false)
            .connection_timeout(settings.connect_timeout)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        Ok(Self {
            shared: Arc::new(Shared {
                pool,
                target,
                pool_wait: settings.connect_timeout,
                statement_timeout: settings.statement_timeout,
                max_sessions: settings.pool_size,
            }),
        })
    }
}

/// Why the first connection failed, and what kind of failure that is: a certificate that does
/// not verify or a server that refuses (a login, a plain connection where it wants TLS) is
/// `Refused`, not an outage.
fn connect_error(target: &str, mode: TlsMode, e: &postgres::Error) -> anyhow::Error {
    if let Some(reason) = crate::storage::tls::tls_failure(e) {
        return OpenError::marked(
            OpenErrorKind::Refused,
            format!("cannot connect to {target} over TLS (sslmode={mode}): {reason}"),
        );
    }
    let mut message = format!("cannot connect to {target}: {}", describe(e));
    let Some(db) = e.as_db_error() else {
        return OpenError::marked(OpenErrorKind::Unreachable, message);
    };
    // The server's refusal of a plain connection (pg_hba `hostssl` only) reads
    // "... no encryption"; say what to change.
    if mode == TlsMode::Disable && db.message().contains("no encryption") {
        message.push_str(
            " (the server accepts this login over TLS only: add sslmode=verify-full and \
             sslrootcert=CA-FILE to the URL)",
        );
    }
    OpenError::marked(OpenErrorKind::Refused, message)
}

fn key_of(raw: Vec<u8>) -> Result<String, StorageError> {
    String::from_utf8(raw).map_err(|e| {
        StorageError::Failed(format!(
            "postgres: a stored key is not UTF-8 (written by something else?): {e}"
        ))
    })
}

impl Storage for PostgresStorage {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        let shared = &*self.shared;
        let row = shared.with_session("get", |session| {
            session
                .statement(Query::Get)
                .and_then(|stmt| session.client.query_opt(&stmt, &[&key.as_bytes()]))
                .and_then(|row| {
                    row.map(|r| Ok((r.try_get::<_, Vec<u8>>(0)?, r.try_get::<_, i64>(1)?)))
                        .transpose()
                })
                .map_err(|e| read_attempt(shared, "get", e))
        })?;
        sql_lookup("postgres", row)
    }

    /// One transaction, READ COMMITTED, with one conditional statement per write; a failed
    /// condition rolls it back and answers the first failing index.
    ///
    /// Why READ COMMITTED is enough: no condition is checked by a plain read. Each write is one
    /// statement that locks the key's row, or for an absent key its slot in the primary key (an
    /// inserted row, or the placeholder of `Query::LockKey`), and decides on the row's newest
    /// committed version: PostgreSQL re-evaluates an UPDATE's or DELETE's WHERE clause after a
    /// concurrent writer of the row commits, and an INSERT ... ON CONFLICT waits for a
    /// concurrent insert of the key to end. Every lock is held to the end of the transaction, so
    /// commits that share a key are serialised on it (two-phase locking), which is what the
    /// contract asks; REPEATABLE READ or SERIALIZABLE would add only aborts to retry.
    ///
    /// Statements run in ascending key order, so two commits always lock shared keys in the
    /// same order and can never deadlock. Versions come from one sequence: never reused (a
    /// rolled-back batch just leaves a gap), and flushed with the commit that stores them.
    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        check_distinct_keys(&writes)?;
        if writes.is_empty() {
            return Ok(CommitOutcome::Committed(Vec::new()));
        }
        let mut order: Vec<usize> = (0..writes.len()).collect();
        order.sort_by(|&a, &b| writes[a].key.cmp(&writes[b].key));
        self.shared.with_session("commit", |session| {
            self.commit_once(session, &writes, &order)
        })
    }

    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let shared = &*self.shared;
        // A range scan on the primary key, not LIKE: `%` and `_` in a prefix are data.
        let start = prefix.as_bytes();
        let end = prefix_successor(start);
        let raw: Vec<Vec<u8>> = shared.with_session("list-keys", |session| {
            let rows = match (&end, start.is_empty()) {
                (_, true) => session
                    .statement(Query::ListAll)
                    .and_then(|stmt| session.client.query(&stmt, &[])),
                (Some(end), false) => session
                    .statement(Query::ListRange)
                    .and_then(|stmt| session.client.query(&stmt, &[&start, end])),
                (None, false) => session
                    .statement(Query::ListFrom)
                    .and_then(|stmt| session.client.query(&stmt, &[&start])),
            };
            rows.and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
                .map_err(|e| read_attempt(shared, "list-keys", e))
        })?;
        raw.into_iter().map(key_of).collect()
    }
}
