//! The shared store for pipelines on many machines: tables in one PostgreSQL schema.
//!
//! Keys and values are `bytea` (PostgreSQL `text` cannot hold NUL, and `bytea` compares
//! byte-wise, which is the order `list_keys` must give). Every put takes its version from one
//! sequence, so a version is never handed out twice, not even after a delete. A commit is one
//! READ COMMITTED transaction of row-locking conditional statements (see `commit` for why that
//! isolation level is enough). Connections come from an r2d2 pool shared by every clone.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use postgres::error::{Severity, SqlState};
use postgres::{Client, NoTls, Statement};
use r2d2::ManageConnection;
use r2d2_postgres::PostgresConnectionManager;

use super::{
    CommitOutcome, Entry, Lookup, OpenError, OpenErrorKind, Storage, StorageError, Write, WriteOp,
    check_distinct_keys,
};

/// The schema this build writes. Bump it with a migration step in `migrate`.
const SCHEMA_VERSION: i32 = 1;

/// The PostgreSQL schema that holds the store when the URL names none.
const DEFAULT_SCHEMA: &str = "checkpoint";
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_POOL_SIZE: u32 = 4;
/// Above this, a pool would exhaust a default server (`max_connections = 100`) by itself.
const MAX_POOL_SIZE: u32 = 64;

/// Serialises schema creation and migration of every store in a database (opens are rare, so
/// one lock for all schemas is simpler than one per schema and costs nothing).
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"ckpt-ddl");

/// How often a commit is tried again after the server rolled it back to break a deadlock or a
/// serialization failure (neither happens between this store's own commits, see `commit`).
const ROLLED_BACK_RETRIES: u32 = 3;

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
///
/// Every other param is the client library's (`postgres` crate, libpq-style names:
/// `application_name`, `options`, `keepalives_idle`, `tcp_user_timeout`, `host` with a socket
/// directory, ...). There is no TLS support in this build: `sslmode=require` fails to connect.
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

/// What the URL says, split into the client's config and the store's own settings.
struct Settings {
    config: postgres::Config,
    schema: String,
    connect_timeout: Duration,
    statement_timeout: Duration,
    pool_size: u32,
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
        let settings = parse_url(url)
            .map_err(|e| OpenError::marked(OpenErrorKind::BadUrl, format!("{e:#}")))?;
        let target = describe_target(&settings.config, &settings.schema);
        let queries = Arc::new(Queries::new(&settings.schema));
        let manager = SessionManager {
            inner: PostgresConnectionManager::new(settings.config.clone(), NoTls),
            queries,
        };
        // One direct connection, outside the pool: it fails as soon as the server refuses
        // (the pool would keep retrying until its timeout), with the precise error.
        let mut client = manager.inner.connect().map_err(|e| {
            let message = format!("cannot connect to {target}: {}", describe(&e));
            // A server's answer (a refused login, a missing database) is not an outage.
            if e.as_db_error().is_some() {
                OpenError::marked(OpenErrorKind::Refused, message)
            } else {
                OpenError::marked(OpenErrorKind::Unreachable, message)
            }
        })?;
        check_session(&mut client).map_err(|e| {
            OpenError::marked(
                OpenErrorKind::Refused,
                format!("{target} cannot hold the store: {e:#}"),
            )
        })?;
        migrate(&mut client, &settings.schema)
            .with_context(|| format!("cannot prepare the store's schema on {target}"))?;
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

/// Splits the store's own params off `url` and builds the client's config from the rest.
fn parse_url(url: &str) -> anyhow::Result<Settings> {
    let shown = redact(url);
    anyhow::ensure!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "PostgreSQL URL {shown:?} must start with postgres:// or postgresql://"
    );
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut schema = DEFAULT_SCHEMA.to_owned();
    let mut connect_timeout_ms = None;
    let mut statement_timeout_ms = DEFAULT_STATEMENT_TIMEOUT_MS;
    let mut pool_size = DEFAULT_POOL_SIZE;
    let mut passed = Vec::new();
    let mut given = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || -> anyhow::Result<u64> {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && *n <= u64::from(u32::MAX))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "PostgreSQL URL {shown:?}: `{key}` must be a positive whole number, not {value:?}"
                    )
                })
        };
        match key {
            "schema" => {
                check_schema_name(value)
                    .with_context(|| format!("PostgreSQL URL {shown:?}: bad `schema`"))?;
                value.clone_into(&mut schema);
            }
            "connect_timeout_ms" => connect_timeout_ms = Some(number()?),
            "statement_timeout_ms" => statement_timeout_ms = number()?,
            "pool_size" => {
                let size = number()?;
                anyhow::ensure!(
                    size <= u64::from(MAX_POOL_SIZE),
                    "PostgreSQL URL {shown:?}: `pool_size` must be at most {MAX_POOL_SIZE}, not {size}"
                );
                pool_size = u32::try_from(size)?;
            }
            _ => {
                given.push(key.to_owned());
                passed.push(pair);
            }
        }
    }
    let rest = if passed.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", passed.join("&"))
    };
    let mut config: postgres::Config = rest
        .parse()
        .map_err(|e| anyhow::anyhow!("PostgreSQL URL {shown:?} is invalid: {}", describe(&e)))?;
    let gave = |name: &str| given.iter().any(|g| g == name);
    // libpq's own `connect_timeout` (seconds) counts when `connect_timeout_ms` is not given.
    let connect_timeout = match (connect_timeout_ms, config.get_connect_timeout()) {
        (Some(ms), _) => Duration::from_millis(ms),
        (None, Some(given)) if gave("connect_timeout") && !given.is_zero() => *given,
        (None, _) => Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
    };
    let statement_timeout = Duration::from_millis(statement_timeout_ms);
    config.connect_timeout(connect_timeout);
    // Startup options outrank role and database settings, and come after the URL's own
    // `options`, so these two always hold for this store's sessions.
    let options = format!(
        "{} -c synchronous_commit=on -c statement_timeout={statement_timeout_ms}",
        config.get_options().unwrap_or_default()
    );
    config.options(options.trim_start());
    if config.get_application_name().is_none() {
        config.application_name("ckpt");
    }
    if !gave("keepalives_idle") {
        config.keepalives_idle(Duration::from_secs(5));
    }
    if !gave("keepalives_interval") {
        config.keepalives_interval(Duration::from_secs(1));
    }
    if !gave("keepalives_retries") {
        config.keepalives_retries(5);
    }
    if !gave("tcp_user_timeout") {
        config.tcp_user_timeout(statement_timeout + connect_timeout);
    }
    Ok(Settings {
        config,
        schema,
        connect_timeout,
        statement_timeout,
        pool_size,
    })
}

/// Schema names are spliced into SQL text (identifiers cannot be bound), so only a plain,
/// lowercase identifier is accepted: it needs no quoting rules and means the same everywhere.
fn check_schema_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(
        first_ok && rest_ok && name.len() <= 63,
        "{name:?} is not a schema name: use 1 to 63 lowercase ASCII letters, digits and `_`, \
         starting with a letter or `_`"
    );
    anyhow::ensure!(
        !name.starts_with("pg_"),
        "schema names starting with `pg_` are reserved by PostgreSQL"
    );
    Ok(())
}

/// The URL with its password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// "PostgreSQL at HOST:PORT (database D, schema S)": what messages name, never the password.
fn describe_target(config: &postgres::Config, schema: &str) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                postgres::config::Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "(no host given)".to_owned()
    } else {
        hosts.join(",")
    };
    format!(
        "PostgreSQL at {hosts} (database {}, schema {schema})",
        config.get_dbname().unwrap_or("(default)")
    )
}

/// The whole error chain in one line: `postgres::Error`'s own text names only its kind.
fn describe(e: &postgres::Error) -> String {
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

/// Refuses a session whose commits would not be durable when they return.
fn check_session(client: &mut Client) -> anyhow::Result<()> {
    let row = client.query_one(
        "SELECT current_setting('synchronous_commit'), current_setting('fsync'), \
                pg_is_in_recovery()",
        &[],
    )?;
    let (synchronous_commit, fsync, in_recovery): (String, String, bool) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    anyhow::ensure!(
        synchronous_commit == "on",
        "synchronous_commit is {synchronous_commit:?} although the session asked for \"on\""
    );
    anyhow::ensure!(
        !in_recovery,
        "the server is a standby (in recovery): it cannot take writes"
    );
    if fsync != "on" {
        tracing::warn!(
            "PostgreSQL runs with fsync={fsync}: a commit that returned is not durable across a \
             crash of the server's machine"
        );
    }
    Ok(())
}

/// Creates the schema, or checks and upgrades an existing one, in one transaction under an
/// advisory lock, so concurrent opens of a new store create it exactly once.
fn migrate(client: &mut Client, schema: &str) -> anyhow::Result<()> {
    // READ COMMITTED whatever the server's default: each statement after the lock must see
    // what an opener that held the lock before committed (a snapshot taken before the lock
    // was granted, as REPEATABLE READ keeps, would not).
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::ReadCommitted)
        .start()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // Checked first: CREATE SCHEMA IF NOT EXISTS needs CREATE rights even when it exists.
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )?
        .try_get(0)?;
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA \"{schema}\""))?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".ckpt_schema (
             id integer PRIMARY KEY CHECK (id = 1),
             version integer NOT NULL
         )"
    ))?;
    let found: Option<i32> = tx
        .query_opt(
            &format!("SELECT version FROM \"{schema}\".ckpt_schema WHERE id = 1"),
            &[],
        )?
        .map(|row| row.try_get(0))
        .transpose()?;
    match found {
        None => {
            // Version 0 marks only the placeholder row a delete writes to lock an absent key
            // (see `delete`); it never outlives its transaction.
            tx.batch_execute(&format!(
                "CREATE TABLE \"{schema}\".ckpt_entries (
                     key bytea PRIMARY KEY,
                     value bytea NOT NULL,
                     version bigint NOT NULL CHECK (version >= 0)
                 );
                 CREATE SEQUENCE \"{schema}\".ckpt_versions AS bigint MINVALUE 1 NO CYCLE;"
            ))?;
            tx.execute(
                &format!("INSERT INTO \"{schema}\".ckpt_schema (id, version) VALUES (1, $1)"),
                &[&SCHEMA_VERSION],
            )?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(v) if v > SCHEMA_VERSION => Err(OpenError::marked(
            OpenErrorKind::SchemaTooNew,
            format!(
                "schema {schema} has store version {v}, newer than this build understands \
                 ({SCHEMA_VERSION}): it was written by a newer version; upgrade this program"
            ),
        ))?,
        Some(v) => anyhow::bail!("schema {schema} has unknown store version {v}"),
    }
    tx.commit()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pooled sessions: a connection plus its prepared statements.

/// The store's statements, spliced with its (validated) schema name once.
#[derive(Clone, Copy)]
enum Query {
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

struct Queries([String; QUERY_COUNT]);

impl Queries {
    fn new(schema: &str) -> Self {
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
struct Session {
    client: Client,
    queries: Arc<Queries>,
    statements: [Option<Statement>; QUERY_COUNT],
    /// Set when a call saw the connection fail; the pool then drops it instead of reusing it.
    broken: bool,
}

impl Session {
    /// The prepared statement for `query`, prepared on first use on this connection.
    fn statement(&mut self, query: Query) -> Result<Statement, postgres::Error> {
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
struct SessionManager {
    inner: PostgresConnectionManager<NoTls>,
    queries: Arc<Queries>,
}

/// A failed connection attempt, with the whole error chain (the pool reports only its text).
#[derive(Debug)]
struct ConnectError(String);

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

/// True when `e` means the connection itself is gone: the transport failed, or the server
/// ended the session (shutdown, crash, or a connection-class error).
fn connection_lost(e: &postgres::Error) -> bool {
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
fn rolled_back_by_server(e: &postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
    })
}

impl Shared {
    /// Maps a failure of a statement that cannot have applied anything (a read, or any
    /// statement of a commit before `COMMIT` was sent).
    fn error(&self, op: &str, e: &postgres::Error) -> StorageError {
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
    fn with_session<T>(
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
enum Attempt {
    /// The first round trip failed because the connection is gone; nothing was done.
    Stale(postgres::Error),
    /// The server rolled the transaction back (deadlock, serialization); nothing was applied.
    RolledBack(postgres::Error),
    /// A final answer.
    Failed(StorageError),
}

fn to_version(raw: i64) -> Result<u64, StorageError> {
    u64::try_from(raw).ok().filter(|v| *v > 0).ok_or_else(|| {
        StorageError::Failed(format!("postgres: stored version {raw} is not positive"))
    })
}

fn key_of(raw: Vec<u8>) -> Result<String, StorageError> {
    String::from_utf8(raw).map_err(|e| {
        StorageError::Failed(format!(
            "postgres: a stored key is not UTF-8 (written by something else?): {e}"
        ))
    })
}

/// The smallest byte string above every string that starts with `prefix`, or `None` when
/// there is none. UTF-8 never contains 0xFF, so for a non-empty key prefix this is the prefix
/// with its last byte incremented.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bound = prefix.to_vec();
    while let Some(last) = bound.pop() {
        if last < u8::MAX {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Commit

/// A write's condition, in the database's terms.
#[derive(Clone, Copy)]
enum Condition {
    Any,
    Absent,
    Version(i64),
    /// A version above `bigint`'s range: never a key's current version.
    Impossible,
}

impl Condition {
    fn of(expected: Option<u64>) -> Self {
        match expected {
            None => Condition::Any,
            Some(0) => Condition::Absent,
            Some(v) => i64::try_from(v).map_or(Condition::Impossible, Condition::Version),
        }
    }
}

/// Applies one write inside the open transaction. `Ok(None)`: its condition does not hold.
/// `Ok(Some(v))`: applied; `v` is the new version as stored (0 for a delete). Every statement locks the
/// key's row (or, for an absent key, its slot in the primary key) before it decides, and keeps
/// the lock until the transaction ends.
fn apply(session: &mut Session, write: &Write) -> Result<Option<i64>, postgres::Error> {
    let key = write.key.as_bytes();
    let condition = Condition::of(write.expected_version);
    let returned = |row: Option<postgres::Row>| -> Result<Option<i64>, postgres::Error> {
        row.map(|r| r.try_get::<_, i64>(0)).transpose()
    };
    match (&write.op, condition) {
        (_, Condition::Impossible) => Ok(None),
        (WriteOp::Put(value), condition) => {
            let row = match condition {
                Condition::Any => {
                    let stmt = session.statement(Query::Put)?;
                    session.client.query_opt(&stmt, &[&key, value])?
                }
                Condition::Absent => {
                    let stmt = session.statement(Query::PutIfAbsent)?;
                    session.client.query_opt(&stmt, &[&key, value])?
                }
                Condition::Version(v) => {
                    let stmt = session.statement(Query::PutIfVersion)?;
                    session.client.query_opt(&stmt, &[&key, &v, value])?
                }
                Condition::Impossible => None,
            };
            returned(row)
        }
        (WriteOp::Delete, Condition::Version(v)) => {
            let stmt = session.statement(Query::DeleteIfVersion)?;
            let deleted = session.client.execute(&stmt, &[&key, &v])?;
            Ok((deleted == 1).then_some(0))
        }
        (WriteOp::Delete, Condition::Any) => {
            let stmt = session.statement(Query::Delete)?;
            if session.client.execute(&stmt, &[&key])? == 1 {
                return Ok(Some(0));
            }
            // Absent: lock its slot, so no other commit can write the key before this one
            // ends (without it, this delete could be ordered both before and after a
            // concurrent put of the key). Whatever now holds the slot is deleted.
            delete_locked(session, key)?;
            Ok(Some(0))
        }
        (WriteOp::Delete, Condition::Absent) => {
            if delete_locked(session, key)? == 0 {
                Ok(Some(0))
            } else {
                Ok(None)
            }
        }
    }
}

/// Locks `key` (see [`Query::LockKey`]), then deletes it when it was absent (the placeholder)
/// or when the caller does not care. Returns the version the key had before (0: absent); a key
/// that was present and must stay so is left alone, locked, for the caller to roll back.
fn delete_locked(session: &mut Session, key: &[u8]) -> Result<i64, postgres::Error> {
    let lock = session.statement(Query::LockKey)?;
    let had: i64 = session.client.query_one(&lock, &[&key])?.try_get(0)?;
    let delete = session.statement(Query::Delete)?;
    session.client.execute(&delete, &[&key])?;
    Ok(had)
}

impl PostgresStorage {
    /// One attempt at a commit, on one session. See `Storage::commit` for the reasoning.
    fn commit_once(
        &self,
        session: &mut Session,
        writes: &[Write],
        order: &[usize],
    ) -> Result<CommitOutcome, Attempt> {
        let shared = &*self.shared;
        if let Err(e) = session
            .client
            .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        {
            return Err(if connection_lost(&e) {
                Attempt::Stale(e)
            } else {
                session.broken = true;
                Attempt::Failed(shared.error("commit", &e))
            });
        }
        let mut versions = vec![0i64; writes.len()];
        let mut first_failed: Option<usize> = None;
        for &index in order {
            // Conditions are on distinct keys, so which ones fail does not depend on the order
            // they are checked in; once one failed, only earlier writes can still matter.
            if first_failed.is_some_and(|failed| index > failed) {
                continue;
            }
            match apply(session, &writes[index]) {
                Ok(Some(version)) => versions[index] = version,
                Ok(None) => first_failed = Some(index),
                Err(e) => {
                    rollback(session);
                    return Err(if rolled_back_by_server(&e) {
                        Attempt::RolledBack(e)
                    } else {
                        if connection_lost(&e) {
                            session.broken = true;
                        }
                        Attempt::Failed(shared.error("commit", &e))
                    });
                }
            }
        }
        if let Some(failed) = first_failed {
            // Nothing was committed either way: if this ROLLBACK fails, the connection is
            // dropped and the server rolls back.
            rollback(session);
            let index = u32::try_from(failed).map_err(|_| {
                Attempt::Failed(StorageError::Failed(
                    "batch has more than u32::MAX writes".to_owned(),
                ))
            })?;
            return Ok(CommitOutcome::Conflict(index));
        }
        // The sequence starts at 1, so a put's version is positive; checked before COMMIT so a
        // damaged sequence fails the batch instead of storing a version that means "absent".
        let versions: Vec<u64> = match writes
            .iter()
            .zip(versions)
            .map(|(write, raw)| match write.op {
                WriteOp::Put(_) => to_version(raw),
                WriteOp::Delete => Ok(0),
            })
            .collect()
        {
            Ok(versions) => versions,
            Err(e) => {
                rollback(session);
                return Err(Attempt::Failed(e));
            }
        };
        match session.client.batch_execute("COMMIT") {
            Ok(()) => Ok(CommitOutcome::Committed(versions)),
            // An ERROR reply to COMMIT means the server rolled the transaction back (once the
            // commit record is written, a failure is a server PANIC, never an ERROR).
            Err(e)
                if !connection_lost(&e)
                    && e.as_db_error()
                        .is_some_and(|db| db.parsed_severity() == Some(Severity::Error)) =>
            {
                Err(Attempt::Failed(shared.error("commit", &e)))
            }
            // The connection failed or the session ended while COMMIT was in flight: it may
            // have been applied, and only a later read can tell.
            Err(e) => {
                session.broken = true;
                Err(Attempt::Failed(StorageError::Timeout(format!(
                    "postgres commit: the connection to {} failed while COMMIT was in flight; \
                     the batch may or may not be applied: {}",
                    shared.target,
                    describe(&e)
                ))))
            }
        }
    }
}

/// Ends an open transaction without applying it; a connection where that fails is dropped
/// (closing it makes the server roll back).
fn rollback(session: &mut Session) {
    if session.client.batch_execute("ROLLBACK").is_err() {
        session.broken = true;
    }
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
        Ok(match row {
            Some((value, version)) => Lookup::Found(Entry {
                value,
                version: to_version(version)?,
            }),
            None => Lookup::Missing,
        })
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

/// Classifies a failed read: reads can always run again, so a lost connection is `Stale`.
fn read_attempt(shared: &Shared, op: &str, e: postgres::Error) -> Attempt {
    if connection_lost(&e) {
        return Attempt::Stale(e);
    }
    Attempt::Failed(shared.error(op, &e))
}
