//! A shared store on a Redis server, for pipelines on many machines.
//!
//! Every commit is one Lua script, which Redis runs alone: it checks every condition of the batch
//! first and writes only when all hold, so a batch is atomic and concurrent writers on many
//! machines are serialised by the server. Connections come from an r2d2 pool shared by clones.
//!
//! This file holds the store's type, its key layout, its opening and the `Storage` calls; the
//! rest is split by concern: `url` (parameters), `checks` (durability and schema checks at
//! open), `connection` (the pool and error mapping) and `script` (the Lua commit and its call).

mod checks;
mod connection;
mod script;
mod url;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::{ErrorKind, IntoConnectionInfo as _};

use self::checks::{check_durability, check_schema};
use self::connection::{LogConnectError, Manager};
use self::url::{Settings, parse_url};
use super::tls::{load_certs, read_password_file, read_pem, tls_failure};
use super::{
    CommitOutcome, Entry, Lookup, OpenError, OpenErrorKind, Storage, StorageError, Write,
    check_distinct_keys,
};

/// A [`Storage`] on a Redis server (or a primary reached through a proxy).
///
/// # URL
/// `redis://[user[:password]@]host[:port][/db][?param=value&...]`, or `rediss://` for TLS,
/// with these parameters (the
/// client's own `protocol=resp2|resp3` passes through; any other is refused):
///
/// | parameter | default | meaning |
/// |---|---|---|
/// | `prefix=NAME` | `ckpt` | namespace of every Redis key the store uses; stores with distinct prefixes are independent. `NAME` is 1 to 128 of `A-Z a-z 0-9 _ . : -` |
/// | `connect_timeout_ms` | 5000 | bound on making a connection, and on waiting for a free pooled one |
/// | `io_timeout_ms` | 10000 | bound on each read and write of a command on a connection |
/// | `pool_size` | 8 | connections kept per store (shared by its clones), 1 to 1024 |
/// | `durability=strict\|relaxed` | `strict` | see Durability |
/// | `tls_ca_file=PATH` | the system's trust store | `rediss://` only: PEM file of the CA(s) to trust |
/// | `tls_cert_file=PATH`, `tls_key_file=PATH` | none | `rediss://` only: PEM client certificate and key, given together; the key file must not be readable by every user |
/// | `password_file=PATH` | none | a file that holds only the password (one trailing line break is dropped); not with a password in the URL; must not be readable by every user |
///
/// With `rediss://` the server's certificate is always checked (signed by a trusted CA, valid
/// for the URL's host; rustls, no system OpenSSL); a certificate that does not verify fails
/// `open` as [`OpenErrorKind::Refused`] with the host and the reason. Paths may be %-escaped.
/// Errors never show the password; they name the server as `host:port db N`.
/// `docs/deployment.md` shows TLS, secrets and the minimum ACL (the commands this store runs).
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
        let client = client(&settings)?;
        let info = client.get_connection_info();
        let tls_note = if settings.tls.is_some() { " (TLS)" } else { "" };
        let server: Arc<str> = format!(
            "{} db {}{tls_note}",
            info.addr(),
            info.redis_settings().db()
        )
        .into();
        let manager = Manager {
            client,
            connect_timeout: settings.connect_timeout,
            io_timeout: settings.io_timeout,
        };
        let keys = KeySpace::new(&settings.prefix);

        let mut first = r2d2::ManageConnection::connect(&manager)
            .map_err(|e| connect_error(&server, &settings, false, &e))?;
        // The client connects lazily: TLS, the login and the server's first answer happen at
        // the first command, so this one's failure is still a failure to connect.
        redis::cmd("PING")
            .query::<String>(&mut first.inner)
            .map_err(|e| connect_error(&server, &settings, true, &e))?;
        check_durability(&mut first.inner, &server, settings.durability)
            .map_err(|e| OpenError::marked(OpenErrorKind::Refused, format!("{e:#}")))?;
        check_schema(&mut first.inner, &keys).map_err(|e| {
            let denied = e.chain().any(|cause| {
                cause
                    .downcast_ref::<redis::RedisError>()
                    .and_then(redis::RedisError::code)
                    == Some("NOPERM")
            });
            if denied {
                OpenError::marked(
                    OpenErrorKind::Refused,
                    format!(
                        "Redis at {server}, prefix {:?}: {e:#} (the user's ACL must allow the \
                         store's commands on the keys {{{}}}:*, see docs/deployment.md)",
                        settings.prefix, settings.prefix
                    ),
                )
            } else {
                e.context(format!("Redis at {server}, prefix {:?}", settings.prefix))
            }
        })?;

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
}

/// The client for the URL: its password from `password_file` when given, and for `rediss://`
/// the CA and client certificate files (checked here, so a bad file is named before any
/// connection is tried).
fn client(settings: &Settings) -> anyhow::Result<redis::Client> {
    let bad_url = |e: redis::RedisError| {
        OpenError::marked(OpenErrorKind::BadUrl, format!("invalid Redis URL: {e}"))
    };
    let mut info = settings
        .client_url
        .as_str()
        .into_connection_info()
        .map_err(bad_url)?;
    // No `CLIENT SETINFO` on connect: a least-privilege ACL (docs/deployment.md) need not
    // allow it, and servers before 7.2 do not know it.
    let redis = info.redis_settings().clone().set_skip_set_lib_name();
    info = info.set_redis_settings(redis);
    if let Some(path) = &settings.password_file {
        if info.redis_settings().password().is_some() {
            return Err(OpenError::marked(
                OpenErrorKind::BadUrl,
                "the Redis URL gives a password and a `password_file`: give it once".to_owned(),
            ));
        }
        let password = read_password_file(path)?;
        let redis = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(redis);
    }
    let Some(files) = &settings.tls else {
        return redis::Client::open(info).map_err(bad_url);
    };
    let root_cert = match &files.ca_file {
        Some(path) => {
            load_certs("CA file", path)?;
            Some(read_pem("CA file", path, false)?)
        }
        None => None,
    };
    let client_tls = match &files.client {
        Some((cert, key)) => {
            load_certs("client certificate", cert)?;
            Some(redis::ClientTlsConfig {
                client_cert: read_pem("client certificate", cert, false)?,
                client_key: read_pem("client key", key, true)?,
            })
        }
        None => None,
    };
    // The Redis client builds its TLS config with rustls's process-wide provider; this build
    // enables only ring, and installing it (when nothing else did) keeps that working in a
    // process whose other crates enable a second provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| {
        OpenError::marked(
            OpenErrorKind::Refused,
            format!("cannot set up TLS for Redis: {e}"),
        )
    })
}

/// Why the first connection failed, and what kind of failure it is: a certificate that does
/// not verify, a refused login or permission, or a TLS port spoken to in plain text is the
/// operator's to fix (`Refused`); anything else is an outage (`Unreachable`).
/// `answered`: the TCP connection was made and the failure came with the first command.
fn connect_error(
    server: &str,
    settings: &Settings,
    answered: bool,
    e: &redis::RedisError,
) -> anyhow::Error {
    if let Some(reason) = tls_failure(e) {
        return OpenError::marked(
            OpenErrorKind::Refused,
            format!("Redis at {server} refused over TLS: {reason}"),
        );
    }
    // An answer (wrong password, unknown user) is not an outage: say which it was.
    if e.code().is_some() || e.kind() == ErrorKind::AuthenticationFailed {
        return OpenError::marked(
            OpenErrorKind::Refused,
            format!("Redis at {server} refused the connection: {e}"),
        );
    }
    let hint = if settings.tls.is_none()
        && answered
        && matches!(e.kind(), ErrorKind::Io | ErrorKind::Parse)
    {
        // A TLS-only port accepts the TCP connection, then drops it (or answers with a TLS
        // alert, which is no Redis reply) at the first plain-text command.
        " (the server accepted the connection but dropped it, or answered outside Redis's \
         protocol, at the first command: if this port speaks TLS only, use rediss://)"
    } else {
        ""
    };
    OpenError::marked(
        OpenErrorKind::Unreachable,
        format!(
            "Redis at {server} is unavailable: {e} (connect timeout {} ms){hint}",
            settings.connect_timeout.as_millis()
        ),
    )
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
        self.run_commit_script(&writes)
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
}
