//! A shared store on a Redis server, for pipelines on many machines.
//!
//! Every commit is one Lua script, which Redis runs alone: it checks every condition of the batch
//! first and writes only when all hold, so a batch is atomic and concurrent writers on many
//! machines are serialised by the server. Connections come from an r2d2 pool shared by clones.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Context as _;
use redis::{Cmd, ConnectionLike as _, ErrorKind, RedisError, Script, ServerErrorKind, Value};

use super::{
    CommitOutcome, Entry, Lookup, OpenError, OpenErrorKind, Storage, StorageError, Write, WriteOp,
    check_distinct_keys,
};

/// The layout this build writes under a store's prefix. Bump it with a migration in `open`.
const SCHEMA_VERSION: u64 = 1;

const DEFAULT_PREFIX: &str = "ckpt";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(5_000);
const DEFAULT_IO_TIMEOUT: Duration = Duration::from_millis(10_000);
const DEFAULT_POOL_SIZE: u32 = 8;
const MAX_POOL_SIZE: u32 = 1_024;
const MAX_PREFIX_LEN: usize = 128;

/// The conditional, atomic commit of one batch (see [`RedisStorage`] for the layout).
///
/// Redis runs a script alone, so nothing changes between its checks and its writes. Everything
/// that could make a write fail midway (a key of the wrong type) is checked before the first
/// write, because Redis does not roll a script back; on OOM the first write is refused and so
/// nothing is applied either. Keys and values arrive as binary arguments, never as Lua source.
const COMMIT_LUA: &str = r#"
-- KEYS[1] version counter, KEYS[2] sorted set of live keys, KEYS[2 + i] hash of write i.
-- ARGV[4i-3 .. 4i]: write i's key, op ('put' or 'del'), expected version ('' = none), value.
-- Returns {1, version of each write (0 for a delete)} or {0, index of the first failing write}.
local n = #KEYS - 2
local counter = redis.call('GET', KEYS[1])
if counter and not string.match(counter, '^%d+$') then
  return redis.error_reply('CKPTDAMAGED the version counter is not a number')
end
local index_type = redis.call('TYPE', KEYS[2])['ok']
if index_type ~= 'zset' and index_type ~= 'none' then
  return redis.error_reply('CKPTDAMAGED the key index is a ' .. index_type .. ', not a zset')
end
for i = 1, n do
  local entry_type = redis.call('TYPE', KEYS[2 + i])['ok']
  if entry_type ~= 'hash' and entry_type ~= 'none' then
    return redis.error_reply('CKPTDAMAGED the entry of write ' .. (i - 1) .. ' is a '
      .. entry_type .. ', not a hash')
  end
end
for i = 1, n do
  local expected = ARGV[4 * i - 1]
  if expected ~= '' then
    local current = redis.call('HGET', KEYS[2 + i], 'ver') or '0'
    if current ~= expected then
      return {0, i - 1}
    end
  end
end
local reply = {1}
for i = 1, n do
  local key = ARGV[4 * i - 3]
  if ARGV[4 * i - 2] == 'put' then
    local version = redis.call('INCR', KEYS[1])
    redis.call('HSET', KEYS[2 + i], 'v', ARGV[4 * i], 'ver', string.format('%d', version))
    redis.call('ZADD', KEYS[2], 0, key)
    reply[i + 1] = version
  else
    redis.call('DEL', KEYS[2 + i])
    redis.call('ZREM', KEYS[2], key)
    reply[i + 1] = 0
  end
end
return reply
"#;

static COMMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMMIT_LUA));

/// A [`Storage`] on a Redis server (or a primary reached through a proxy).
///
/// # URL
/// `redis://[user:password@]host[:port][/db][?param=value&...]`, with these parameters (the
/// client's own `protocol=resp2|resp3` passes through; any other is refused):
///
/// | parameter | default | meaning |
/// |---|---|---|
/// | `prefix=NAME` | `ckpt` | namespace of every Redis key the store uses; stores with distinct prefixes are independent. `NAME` is 1 to 128 of `A-Z a-z 0-9 _ . : -` |
/// | `connect_timeout_ms` | 5000 | bound on making a connection, and on waiting for a free pooled one |
/// | `io_timeout_ms` | 10000 | bound on each read and write of a command on a connection |
/// | `pool_size` | 8 | connections kept per store (shared by its clones), 1 to 1024 |
/// | `durability=strict\|relaxed` | `strict` | see Durability |
///
/// `rediss://` (TLS) is refused: this build's Redis client has no TLS support. Errors never
/// show the password; they name the server as `host:port db N`.
///
/// # Layout
/// Every Redis key starts with the hash tag `{NAME}`, so a store's keys share one cluster slot
/// and one script may touch them all: `{NAME}:version` (the store-wide version counter),
/// `{NAME}:keys` (a sorted set of the live keys, all scores 0, so `ZRANGEBYLEX` lists them in
/// byte order), `{NAME}:e:KEY` (a hash: `v` the value, `ver` the version) and `{NAME}:schema`.
/// Keys and values travel as binary arguments: NUL or any other byte is data.
///
/// # Durability
/// `commit` returns `Ok` once Redis acknowledged the script, and Redis acknowledges once its
/// append-only file (AOF) has the write. How durable that is depends on the server:
/// - `appendonly yes` + `appendfsync always`: the AOF is fsynced before the reply, so an acked
///   checkpoint survives a crash of Redis and of its machine. `durability=strict` (the default)
///   requires exactly this and refuses to open otherwise.
/// - `appendfsync everysec`: a crash of the machine (not of Redis alone) loses up to about one
///   second of acknowledged checkpoints, and so their acked input is not replayed.
/// - `appendfsync no`: the OS decides when to flush; a machine crash loses up to its flush
///   interval (typically 30 s) of acknowledged checkpoints.
/// - `appendonly no`: only RDB snapshots, if any; a crash loses everything since the last one.
///
/// `maxmemory-policy allkeys-*` is refused too (Redis could evict checkpoints); the `volatile-*`
/// policies never evict these keys, which carry no TTL. Replication is asynchronous: a replica
/// promoted after a failover may miss acknowledged commits, and `WAIT` does not change that (it
/// counts replicas that received a write, not ones that made it durable). Point the store at one
/// primary with the AOF on.
///
/// `durability=relaxed` opens whatever the settings (and when `CONFIG` is disabled, as on many
/// managed services, so they cannot be read), after logging a warning: the operator then vouches
/// for them. Settings are checked once, at open.
///
/// # Errors
/// Unreachable server, connection refused, no connection within `connect_timeout_ms`, a server
/// that is loading, busy, read-only or cannot persist: `unavailable`. Every call first checks its
/// pooled connection with a `PING` (one round trip), so a server that restarted meanwhile costs
/// a reconnect, not an error, and one that hangs before the call fails it as `unavailable`. No
/// reply within `io_timeout_ms` to a read: `timeout`. A connection that fails or times out while
/// a commit is in flight: `timeout`, since the commit may or may not have been applied. Other
/// refusals of the server (out of memory, permissions, foreign data under the prefix): `failed`.
/// A connection that failed once is discarded, so calls work again once the server is back.
#[derive(Clone)]
pub struct RedisStorage {
    pool: r2d2::Pool<Manager>,
    keys: Arc<KeySpace>,
    /// `host:port db N`, for messages: never the URL, which may hold a password.
    server: Arc<str>,
    io_timeout: Duration,
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage")
            .field("server", &self.server)
            .field("prefix", &self.keys.name)
            .finish_non_exhaustive()
    }
}

/// The Redis key names of one store.
struct KeySpace {
    name: String,
    counter: Vec<u8>,
    index: Vec<u8>,
    schema: Vec<u8>,
    entry_prefix: Vec<u8>,
}

impl KeySpace {
    fn new(name: &str) -> Self {
        let tagged = |suffix: &str| format!("{{{name}}}:{suffix}").into_bytes();
        Self {
            name: name.to_owned(),
            counter: tagged("version"),
            index: tagged("keys"),
            schema: tagged("schema"),
            entry_prefix: tagged("e:"),
        }
    }

    fn entry(&self, key: &str) -> Vec<u8> {
        let mut name = Vec::with_capacity(self.entry_prefix.len() + key.len());
        name.extend_from_slice(&self.entry_prefix);
        name.extend_from_slice(key.as_bytes());
        name
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    Strict,
    Relaxed,
}

/// What `open` takes from the URL: our parameters, and the URL left for the client.
struct Settings {
    client_url: String,
    prefix: String,
    connect_timeout: Duration,
    io_timeout: Duration,
    pool_size: u32,
    durability: Durability,
}

fn parse_url(url: &str) -> anyhow::Result<Settings> {
    let (scheme, _) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("a Redis URL starts with redis://"))?;
    match scheme {
        "redis" => {}
        "rediss" => anyhow::bail!(
            "rediss:// (Redis over TLS) is not supported: this build's Redis client has no TLS \
             support; use redis:// on a trusted network or through a TLS tunnel"
        ),
        other => anyhow::bail!("{other}:// is not a Redis URL (expected redis://)"),
    }
    anyhow::ensure!(
        !url.contains('#'),
        "a Redis URL has no #fragment (put options in ?param=value)"
    );
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut settings = Settings {
        client_url: base.to_owned(),
        prefix: DEFAULT_PREFIX.to_owned(),
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        io_timeout: DEFAULT_IO_TIMEOUT,
        pool_size: DEFAULT_POOL_SIZE,
        durability: Durability::Strict,
    };
    let mut passed = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "prefix" => {
                anyhow::ensure!(
                    !value.is_empty()
                        && value.len() <= MAX_PREFIX_LEN
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b)),
                    "prefix={value:?}: a prefix is 1 to {MAX_PREFIX_LEN} of A-Z a-z 0-9 _ . : -"
                );
                value.clone_into(&mut settings.prefix);
            }
            "connect_timeout_ms" => settings.connect_timeout = millis(name, value)?,
            "io_timeout_ms" => settings.io_timeout = millis(name, value)?,
            "pool_size" => {
                settings.pool_size = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                    .ok_or_else(|| {
                        anyhow::anyhow!("pool_size={value:?}: expected 1 to {MAX_POOL_SIZE}")
                    })?;
            }
            "durability" => {
                settings.durability = match value {
                    "strict" => Durability::Strict,
                    "relaxed" => Durability::Relaxed,
                    _ => anyhow::bail!("durability={value:?}: expected strict or relaxed"),
                }
            }
            // The client's own parameter.
            "protocol" => passed.push(pair),
            _ => anyhow::bail!(
                "unknown Redis URL parameter {name:?} (known: prefix, connect_timeout_ms, \
                 io_timeout_ms, pool_size, durability, protocol)"
            ),
        }
    }
    if !passed.is_empty() {
        settings.client_url = format!("{base}?{}", passed.join("&"));
    }
    Ok(settings)
}

fn millis(name: &str, value: &str) -> anyhow::Result<Duration> {
    value
        .parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| anyhow::anyhow!("{name}={value:?}: expected a positive number of ms"))
}

/// Makes pooled connections with the store's timeouts, and throws away any that failed.
struct Manager {
    client: redis::Client,
    connect_timeout: Duration,
    io_timeout: Duration,
}

/// A pooled connection. `broken` is set after any failed call: a timed-out or half-read reply
/// may still be on the wire, so the connection is never reused.
struct Connection {
    inner: redis::Connection,
    broken: bool,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = RedisError;

    fn connect(&self) -> Result<Connection, RedisError> {
        let inner = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        inner.set_read_timeout(Some(self.io_timeout))?;
        inner.set_write_timeout(Some(self.io_timeout))?;
        Ok(Connection {
            inner,
            broken: false,
        })
    }

    // Checked out connections are pinged first, so one left over from a server that has since
    // restarted is replaced instead of failing (and making a commit's outcome unknown).
    fn is_valid(&self, conn: &mut Connection) -> Result<(), RedisError> {
        let pong = redis::cmd("PING").query::<String>(&mut conn.inner);
        conn.broken = pong.is_err();
        pong.map(drop)
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.broken || !conn.inner.is_open()
    }
}

/// The pool retries connections in the background while the server is down; the caller gets
/// the last error, so these go to debug only.
#[derive(Debug)]
struct LogConnectError {
    server: Arc<str>,
}

impl r2d2::HandleError<RedisError> for LogConnectError {
    fn handle_error(&self, error: RedisError) {
        tracing::debug!(server = %self.server, %error, "redis: connection attempt failed");
    }
}

impl RedisStorage {
    /// Connects to the server of `url` (format and parameters above), checks its durability
    /// settings (refusing a non-durable server unless `durability=relaxed`), and creates or
    /// checks the store's schema marker. Fails when the server is unreachable.
    pub fn open(url: &str) -> Result<Self, OpenError> {
        Self::open_inner(url).map_err(OpenError::from)
    }

    fn open_inner(url: &str) -> anyhow::Result<Self> {
        let settings = parse_url(url)
            .map_err(|e| OpenError::marked(OpenErrorKind::BadUrl, format!("{e:#}")))?;
        let client = redis::Client::open(settings.client_url.as_str()).map_err(|e| {
            OpenError::marked(OpenErrorKind::BadUrl, format!("invalid Redis URL: {e}"))
        })?;
        let info = client.get_connection_info();
        let server: Arc<str> = format!("{} db {}", info.addr(), info.redis_settings().db()).into();
        let manager = Manager {
            client,
            connect_timeout: settings.connect_timeout,
            io_timeout: settings.io_timeout,
        };
        let keys = KeySpace::new(&settings.prefix);

        let mut first = r2d2::ManageConnection::connect(&manager).map_err(|e| {
            // An answer (wrong password, unknown user) is not an outage: say which it was.
            if e.code().is_some() || e.kind() == ErrorKind::AuthenticationFailed {
                OpenError::marked(
                    OpenErrorKind::Refused,
                    format!("Redis at {server} refused the connection: {e}"),
                )
            } else {
                OpenError::marked(
                    OpenErrorKind::Unreachable,
                    format!(
                        "Redis at {server} is unavailable: {e} (connect timeout {} ms)",
                        settings.connect_timeout.as_millis()
                    ),
                )
            }
        })?;
        check_durability(&mut first.inner, &server, settings.durability)
            .map_err(|e| OpenError::marked(OpenErrorKind::Refused, format!("{e:#}")))?;
        check_schema(&mut first.inner, &keys)
            .with_context(|| format!("Redis at {server}, prefix {:?}", settings.prefix))?;

        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size)
            // Connections are made on demand: nothing retries in the background while idle.
            .min_idle(Some(0))
            .connection_timeout(settings.connect_timeout)
            .test_on_check_out(true)
            .error_handler(Box::new(LogConnectError {
                server: Arc::clone(&server),
            }))
            .build_unchecked(manager);
        Ok(Self {
            pool,
            keys: Arc::new(keys),
            server,
            io_timeout: settings.io_timeout,
        })
    }

    fn connection(&self, op: &str) -> Result<r2d2::PooledConnection<Manager>, StorageError> {
        self.pool.get().map_err(|e| {
            StorageError::Unavailable(format!(
                "redis {op}: no connection to {} within {} ms: {e}",
                self.server,
                self.pool.connection_timeout().as_millis()
            ))
        })
    }

    /// Runs a command that changes nothing; any error discards the connection.
    fn read<T: redis::FromRedisValue>(&self, op: &str, cmd: &Cmd) -> Result<T, StorageError> {
        let mut conn = self.connection(op)?;
        cmd.query(&mut conn.inner).map_err(|e| {
            conn.broken = true;
            self.error(op, Stage::NotApplied, &e)
        })
    }

    fn error(&self, op: &str, stage: Stage, e: &RedisError) -> StorageError {
        let server = &self.server;
        if let Some(code) = e.code() {
            let text = format!("redis {op} at {server}: the server answered: {e}");
            return match code {
                // The server cannot take the command now; it ran nothing.
                "LOADING" | "BUSY" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "READONLY"
                | "MISCONF" | "NOREPLICAS" => StorageError::Unavailable(text),
                "MOVED" | "ASK" => StorageError::Failed(format!(
                    "{text}; this store talks to one node and follows no cluster redirect: \
                     connect it to the node that owns the slot of {{{}}}",
                    self.keys.name
                )),
                _ => StorageError::Failed(text),
            };
        }
        match (stage, e.kind()) {
            (Stage::InFlight, ErrorKind::Io | ErrorKind::Parse) => StorageError::Timeout(format!(
                "redis {op} at {server}: {e}; the connection failed while the commit was in \
                 flight, so it may or may not have been applied"
            )),
            (_, ErrorKind::Io) if e.is_timeout() => StorageError::Timeout(format!(
                "redis {op} at {server}: no reply within {} ms: {e}",
                self.io_timeout.as_millis()
            )),
            (_, ErrorKind::Io | ErrorKind::Parse) => {
                StorageError::Unavailable(format!("redis {op} at {server}: connection lost: {e}"))
            }
            _ => StorageError::Failed(format!("redis {op} at {server}: {e}")),
        }
    }

    fn commit_command(&self, writes: &[Write]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(COMMIT_SCRIPT.get_hash())
            .arg(writes.len() + 2)
            .arg(&self.keys.counter)
            .arg(&self.keys.index);
        for write in writes {
            cmd.arg(self.keys.entry(&write.key));
        }
        for write in writes {
            let expected = write
                .expected_version
                .map_or_else(String::new, |v| v.to_string());
            cmd.arg(write.key.as_bytes());
            match &write.op {
                WriteOp::Put(value) => cmd.arg("put").arg(expected).arg(value.as_slice()),
                WriteOp::Delete => cmd.arg("del").arg(expected).arg(&[] as &[u8]),
            };
        }
        cmd
    }
}

/// Whether a failed command may have changed the store.
#[derive(Clone, Copy)]
enum Stage {
    /// A read, or a commit that was never sent.
    NotApplied,
    /// The commit script was sent: its outcome is unknown when no reply came.
    InFlight,
}

/// Reads `CONFIG GET name`; `None` when the server has no such setting.
fn config_get(conn: &mut redis::Connection, name: &str) -> redis::RedisResult<Option<String>> {
    let mut found: HashMap<String, String> =
        redis::cmd("CONFIG").arg("GET").arg(name).query(conn)?;
    Ok(found.remove(name))
}

fn check_durability(
    conn: &mut redis::Connection,
    server: &str,
    durability: Durability,
) -> anyhow::Result<()> {
    const FIX: &str = "set `appendonly yes` and `appendfsync always` (in redis.conf, or \
                       CONFIG SET then CONFIG REWRITE), or add durability=relaxed to the URL to \
                       accept losing acknowledged checkpoints in a crash";
    let settings = ["appendonly", "appendfsync", "maxmemory-policy"]
        .map(|name| config_get(conn, name).map(|value| (name, value)));
    let settings: Result<Vec<_>, _> = settings.into_iter().collect();
    let settings = match settings {
        Ok(settings) => settings,
        Err(e) => {
            let problem = format!(
                "cannot read the durability settings of Redis at {server}: CONFIG GET failed \
                 ({e}); managed services often disable CONFIG"
            );
            return match durability {
                Durability::Relaxed => {
                    tracing::warn!(
                        "{problem}; opening anyway (durability=relaxed): acked checkpoints are \
                         only as durable as the server's unseen settings"
                    );
                    Ok(())
                }
                Durability::Strict => anyhow::bail!(
                    "{problem}. If the server runs with appendonly yes and appendfsync always, \
                     add durability=relaxed to the URL to open it without this check"
                ),
            };
        }
    };
    let mut problems = Vec::new();
    for (name, value) in settings {
        let value = value.unwrap_or_default();
        match name {
            "appendonly" if value != "yes" => problems.push(format!(
                "appendonly is {value:?}: without the append-only file a crash loses every \
                 checkpoint since the last snapshot"
            )),
            "appendfsync" if value == "everysec" => problems.push(
                "appendfsync is \"everysec\": a machine crash loses up to ~1 s of acknowledged \
                 checkpoints"
                    .to_owned(),
            ),
            "appendfsync" if value != "always" => problems.push(format!(
                "appendfsync is {value:?}: a machine crash loses what the OS had not flushed yet"
            )),
            "maxmemory-policy" if value.starts_with("allkeys-") => problems.push(format!(
                "maxmemory-policy is {value:?}: Redis may evict checkpoints when memory is full \
                 (use noeviction)"
            )),
            _ => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let problems = problems.join("; ");
    match durability {
        Durability::Relaxed => {
            tracing::warn!(
                "Redis at {server} is not configured for durable checkpoints ({problems}); \
                 opening anyway (durability=relaxed)"
            );
            Ok(())
        }
        Durability::Strict => anyhow::bail!(
            "Redis at {server} is not configured for durable checkpoints: {problems}. To fix: \
             {FIX}"
        ),
    }
}

/// Writes the schema marker of a new store, or checks the one of an existing store. An open
/// of an existing store writes nothing (so it costs no fsync).
fn check_schema(conn: &mut redis::Connection, keys: &KeySpace) -> anyhow::Result<()> {
    let read = |conn: &mut redis::Connection| {
        redis::cmd("GET")
            .arg(&keys.schema)
            .query::<Option<String>>(conn)
            .context("cannot read the schema marker")
    };
    let mut found = read(conn)?;
    if found.is_none() {
        // NX: of two processes creating the store at once, one writes and both read it.
        redis::cmd("SET")
            .arg(&keys.schema)
            .arg(SCHEMA_VERSION)
            .arg("NX")
            .query::<()>(conn)
            .context("cannot write the schema marker")?;
        found = read(conn)?;
    }
    match found.as_deref().map(str::parse::<u64>) {
        Some(Ok(SCHEMA_VERSION)) => Ok(()),
        Some(Ok(v)) if v > SCHEMA_VERSION => Err(OpenError::marked(
            OpenErrorKind::SchemaTooNew,
            format!(
                "the store has schema version {v}, newer than this build understands \
                 ({SCHEMA_VERSION}): it was written by a newer version; upgrade this program"
            ),
        )),
        other => anyhow::bail!("the store's schema marker is unreadable: {other:?}"),
    }
}

fn parse_version(raw: &[u8]) -> Result<u64, StorageError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            StorageError::Failed(format!(
                "redis: stored version {:?} is not a positive number",
                String::from_utf8_lossy(raw)
            ))
        })
}

/// Reads the script's reply: `[1, version...]` or `[0, index]`.
fn commit_outcome(reply: &Value, writes: &[Write]) -> Option<CommitOutcome> {
    let Value::Array(items) = reply else {
        return None;
    };
    let ints: Option<Vec<i64>> = items
        .iter()
        .map(|v| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        })
        .collect();
    match ints?.as_slice() {
        [0, index] => {
            let index = u32::try_from(*index).ok()?;
            (usize::try_from(index).ok()? < writes.len()).then_some(CommitOutcome::Conflict(index))
        }
        [1, versions @ ..] if versions.len() == writes.len() => {
            let versions: Option<Vec<u64>> = versions
                .iter()
                .zip(writes)
                .map(|(v, w)| {
                    let v = u64::try_from(*v).ok()?;
                    let ok = match w.op {
                        WriteOp::Put(_) => v > 0,
                        WriteOp::Delete => v == 0,
                    };
                    ok.then_some(v)
                })
                .collect();
            Some(CommitOutcome::Committed(versions?))
        }
        _ => None,
    }
}

/// The exclusive upper end of the keys that start with `prefix`, as a `ZRANGEBYLEX` bound. UTF-8
/// never contains 0xFF, so every key with the prefix sorts below `prefix ++ 0xFF`, and every key
/// at or above `prefix` that sorts below it starts with `prefix`.
fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let mut min = Vec::with_capacity(prefix.len() + 1);
    min.push(b'[');
    min.extend_from_slice(prefix.as_bytes());
    let mut max = Vec::with_capacity(prefix.len() + 2);
    max.push(b'(');
    max.extend_from_slice(prefix.as_bytes());
    max.push(0xFF);
    (min, max)
}

impl Storage for RedisStorage {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.entry(key)).arg("v").arg("ver");
        let found: Vec<Option<Vec<u8>>> = self.read("get", &cmd)?;
        match found.as_slice() {
            [None, None] => Ok(Lookup::Missing),
            [Some(value), Some(version)] => Ok(Lookup::Found(Entry {
                value: value.clone(),
                version: parse_version(version)?,
            })),
            _ => Err(StorageError::Failed(format!(
                "redis get at {}: the entry of key {key:?} is damaged (value or version missing)",
                self.server
            ))),
        }
    }

    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        check_distinct_keys(&writes)?;
        if writes.is_empty() {
            return Ok(CommitOutcome::Committed(Vec::new()));
        }
        u32::try_from(writes.len())
            .map_err(|_| StorageError::Failed("batch has more than u32::MAX writes".to_owned()))?;
        let cmd = self.commit_command(&writes);
        let mut conn = self.connection("commit")?;
        let mut reply = cmd.query::<Value>(&mut conn.inner);
        if matches!(&reply, Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)) {
            // The server does not know the script yet (new, restarted or flushed): it ran
            // nothing. Load it and send the commit again.
            if let Err(e) = COMMIT_SCRIPT.load(&mut conn.inner) {
                conn.broken = true;
                return Err(self.error("commit (loading the script)", Stage::NotApplied, &e));
            }
            reply = cmd.query::<Value>(&mut conn.inner);
        }
        let reply = reply.map_err(|e| {
            conn.broken = true;
            self.error("commit", Stage::InFlight, &e)
        })?;
        commit_outcome(&reply, &writes).ok_or_else(|| {
            conn.broken = true;
            StorageError::Timeout(format!(
                "redis commit at {}: unexpected reply {reply:?}; whether the batch was applied \
                 is unknown",
                self.server
            ))
        })
    }

    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let (min, max) = lex_range(prefix);
        let mut cmd = redis::cmd("ZRANGEBYLEX");
        cmd.arg(&self.keys.index).arg(min).arg(max);
        let keys: Vec<Vec<u8>> = self.read("list-keys", &cmd)?;
        keys.into_iter()
            .map(|key| {
                String::from_utf8(key).map_err(|e| {
                    StorageError::Failed(format!(
                        "redis list-keys at {}: a stored key is not UTF-8: {e}",
                        self.server
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_are_ours_and_stripped_before_the_client_sees_them() {
        let s = parse_url(
            "redis://u:secret@h:7000/2?prefix=p-1&connect_timeout_ms=250&io_timeout_ms=900\
             &pool_size=3&durability=relaxed&protocol=resp3",
        )
        .expect("valid URL");
        assert_eq!(s.client_url, "redis://u:secret@h:7000/2?protocol=resp3");
        assert_eq!(s.prefix, "p-1");
        assert_eq!(s.connect_timeout, Duration::from_millis(250));
        assert_eq!(s.io_timeout, Duration::from_millis(900));
        assert_eq!(s.pool_size, 3);
        assert_eq!(s.durability, Durability::Relaxed);

        let d = parse_url("redis://h/").expect("valid URL");
        assert_eq!(d.client_url, "redis://h/");
        assert_eq!(d.prefix, DEFAULT_PREFIX);
        assert_eq!(d.durability, Durability::Strict);
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_the_password() {
        for (url, says) in [
            ("rediss://u:secret@h/", "TLS"),
            ("redis://u:secret@h/?prefix=a{b}", "prefix"),
            ("redis://u:secret@h/?prefix=", "prefix"),
            ("redis://u:secret@h/?pool_size=0", "pool_size"),
            ("redis://u:secret@h/?io_timeout_ms=0", "io_timeout_ms"),
            ("redis://u:secret@h/?durability=maybe", "durability"),
            ("redis://u:secret@h/?prefx=a", "unknown"),
            ("redis://u:secret@h/#frag", "fragment"),
            ("http://u:secret@h/", "not a Redis URL"),
        ] {
            let err = parse_url(url).err().map(|e| format!("{e:#}"));
            let err = err.unwrap_or_else(|| panic!("{url} was accepted"));
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("secret"), "{url}: {err}");
        }
    }

    #[test]
    fn lex_range_bounds_exactly_the_keys_with_the_prefix() {
        assert_eq!(lex_range(""), (b"-".to_vec(), b"+".to_vec()));
        let (min, max) = lex_range("a\0");
        assert_eq!(min, b"[a\0");
        assert_eq!(max, b"(a\0\xff");
    }

    #[test]
    fn store_keys_share_one_hash_tag_and_entries_are_raw_bytes() {
        let keys = KeySpace::new("t1");
        assert_eq!(keys.counter, b"{t1}:version");
        assert_eq!(keys.index, b"{t1}:keys");
        assert_eq!(keys.entry("a\0b"), b"{t1}:e:a\0b");
    }

    fn put(key: &str) -> Write {
        Write {
            key: key.to_owned(),
            expected_version: None,
            op: WriteOp::Put(vec![1]),
        }
    }

    #[test]
    fn script_replies_outside_the_protocol_are_not_taken_as_outcomes() {
        let writes = [put("a"), put("b")];
        let ints = |v: &[i64]| Value::Array(v.iter().map(|i| Value::Int(*i)).collect());
        assert_eq!(
            commit_outcome(&ints(&[1, 4, 5]), &writes),
            Some(CommitOutcome::Committed(vec![4, 5]))
        );
        assert_eq!(
            commit_outcome(&ints(&[0, 1]), &writes),
            Some(CommitOutcome::Conflict(1))
        );
        for bad in [
            ints(&[1, 4]),
            ints(&[1, 4, 0]),
            ints(&[0, 2]),
            ints(&[0, -1]),
            ints(&[2]),
            Value::Nil,
        ] {
            assert_eq!(commit_outcome(&bad, &writes), None, "{bad:?}");
        }
    }
}
