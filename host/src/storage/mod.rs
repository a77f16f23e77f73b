//! Storage backends for the component's `storage` import.
//!
//! One trait, [`Storage`], mirrors the import; a backend depends only on it. Pick one by URL
//! with [`open_storage`], or build it directly.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "postgres", feature = "redis"))]
mod tls;

pub use memory::MemoryStorage;
// `self::`: the module shares its name with the `postgres` crate.
#[cfg(feature = "postgres")]
pub use self::postgres::PostgresStorage;
// `self::`: the module shares its name with the `redis` crate.
#[cfg(feature = "redis")]
pub use self::redis::RedisStorage;
#[cfg(feature = "sqlite")]
pub use sqlite::{GroupCommitStats, SqliteOptions, SqliteStorage, SqliteSynchronous};

pub use crate::bindings::storage::{CommitOutcome, Entry, Lookup, StorageError, Write, WriteOp};

/// Durable key-value storage with conditional, atomic batches: what the component's
/// `storage` import needs from a backend.
///
/// # Keys and values
/// Keys are opaque UTF-8 strings built by the component. A backend stores them as data and
/// never interprets them: no key is ever a file name or a path, and every string is a valid
/// key (including ones with `%`, `_`, `/`, `..`, NUL or any Unicode). Values are opaque bytes,
/// returned exactly as committed.
///
/// # Versions
/// Every stored value has a version: a positive number (at least 1) that changes on every
/// write of its key and is never reused for that key, not even after the key is deleted and
/// written again. Version 0 means "absent". Backends meet this with one monotonically
/// increasing counter per store, advanced in the same atomic step as the write it numbers.
///
/// # Errors
/// `Err` is a failure of the backend itself (unreachable, timed out, refused), never an
/// answer such as "missing" or "conflict". The host logs the full error and hands the guest
/// the stable [`StorageError`] case. A backend that answers outside this contract (for
/// example a `committed` list of the wrong length) is a host bug: the guest call traps.
///
/// # Concurrency
/// One instance is used by one checkpointer at a time (`&mut self`). Several instances may
/// share one underlying store (handles of one [`MemoryStorage`], connections to one SQLite
/// file); conditional commits make concurrent writers safe, and a backend serialises
/// commits so that each one sees the state left by the previous.
pub trait Storage: Send + 'static {
    /// Reads one key: `Found` with its value and current version, or `Missing`.
    ///
    /// Reads see every commit that returned `Ok` before the read began. Never writes.
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError>;

    /// Applies `writes` all-or-nothing, and returns only once the result is durable.
    ///
    /// - Conditions: `expected_version: Some(v)` requires the key's current version to be `v`
    ///   (`Some(0)`: the key must be absent); `None` writes unconditionally.
    /// - If every condition holds, every write is applied atomically and durably (it survives a
    ///   crash of the process, and of the machine as far as the backend can promise) before
    ///   `Ok(Committed(versions))` returns: one entry per write in batch order, the key's new
    ///   version for a put and 0 for a delete. Deleting an absent key is not an error.
    /// - If a condition fails, nothing is applied and the answer is `Ok(Conflict(i))`, where
    ///   `i` is the index of the first write (in batch order) whose condition failed.
    /// - `Err(Timeout)` means the outcome is unknown: the batch may or may not have been
    ///   applied. Other errors mean it was not applied.
    /// - Keys in one batch are distinct; a batch that repeats a key is refused with
    ///   `Err(Failed)` and nothing is applied. An empty batch commits nothing and returns
    ///   `Committed([])`.
    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError>;

    /// Every key that starts with `prefix` (byte-wise, exactly: no pattern characters), in
    /// ascending byte order of the UTF-8 encoding. An empty prefix lists every key.
    /// Never writes.
    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError>;
}

/// Opens a backend from a URL.
///
/// Accepted schemes:
/// - `memory:` - a new, empty [`MemoryStorage`] (lost when the process ends);
/// - `sqlite:PATH[?synchronous=full|normal]` - a `SqliteStorage` on the database file `PATH`
///   (created when missing; `sqlite://PATH` is accepted too; the first `?` starts the
///   parameters): `synchronous=normal` skips the sync per commit, see `SqliteSynchronous`;
///   feature `sqlite` (on by default);
/// - `postgres://user[:password]@host[:port]/dbname[?params]` (or `postgresql://`) - a
///   `PostgresStorage` (parameters such as `schema=NAME`, `connect_timeout_ms`,
///   `statement_timeout_ms`, `pool_size`, TLS with `sslmode=verify-full&sslrootcert=PATH` and
///   `password_file=PATH` are listed there); feature `postgres`;
/// - `redis://[user[:password]@]host[:port][/db][?params]`, or `rediss://` for TLS - a
///   `RedisStorage` (parameters such as `prefix=NAME`, `durability=strict|relaxed`,
///   `tls_ca_file=PATH` and `password_file=PATH` are listed there); feature `redis`.
///
/// Errors never contain the URL's password; [`OpenError::kind`] says what to do. See
/// `docs/deployment.md` for TLS, secrets and the least privileges each store needs.
pub fn open_storage(url: &str) -> Result<Box<dyn Storage>, OpenError> {
    const ACCEPTED: &str = "accepted: `memory:`, `sqlite:PATH`, \
        `postgres://USER@HOST[:PORT]/DB[?schema=NAME&...]`, `redis://HOST[:PORT][/DB]`, \
        `rediss://HOST[:PORT][/DB]`";
    let shown = redact_url(url);
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(OpenError::new(
            OpenErrorKind::BadUrl,
            format!("storage URL {shown:?} has no scheme ({ACCEPTED})"),
        ));
    };
    match scheme {
        "memory" if rest.is_empty() => Ok(Box::new(MemoryStorage::new())),
        "sqlite" => open_sqlite(url, rest),
        // Their errors never echo `url`, which may hold a password.
        "postgres" | "postgresql" => open_postgres(url),
        "redis" | "rediss" => open_redis(url),
        _ => Err(OpenError::new(
            OpenErrorKind::BadUrl,
            format!("unsupported storage URL {shown:?} ({ACCEPTED})"),
        )),
    }
}

/// The database file a `sqlite:PATH[?params]` URL names (without its parameters), `None` for
/// any other scheme; a malformed SQLite URL is [`OpenErrorKind::BadUrl`]. For tools that must
/// prepare the file's directory or put files beside it.
#[cfg(feature = "sqlite")]
pub fn sqlite_file(url: &str) -> Result<Option<&str>, OpenError> {
    match url.strip_prefix("sqlite:") {
        Some(rest) => sqlite::parse_url(url, rest).map(|(path, _)| Some(path)),
        None => Ok(None),
    }
}

#[cfg(feature = "sqlite")]
fn open_sqlite(url: &str, rest: &str) -> Result<Box<dyn Storage>, OpenError> {
    let (path, options) = sqlite::parse_url(url, rest)?;
    Ok(Box::new(SqliteStorage::open_with(path, &options)?))
}

#[cfg(not(feature = "sqlite"))]
fn open_sqlite(_url: &str, _rest: &str) -> Result<Box<dyn Storage>, OpenError> {
    Err(OpenError::feature_disabled("sqlite", "sqlite"))
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str) -> Result<Box<dyn Storage>, OpenError> {
    Ok(Box::new(PostgresStorage::open(url)?))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_url: &str) -> Result<Box<dyn Storage>, OpenError> {
    Err(OpenError::feature_disabled("postgres", "postgres"))
}

#[cfg(feature = "redis")]
fn open_redis(url: &str) -> Result<Box<dyn Storage>, OpenError> {
    Ok(Box::new(RedisStorage::open(url)?))
}

#[cfg(not(feature = "redis"))]
fn open_redis(_url: &str) -> Result<Box<dyn Storage>, OpenError> {
    Err(OpenError::feature_disabled("redis", "redis"))
}

/// Why a store could not be opened. [`OpenError::kind`] says what to do; the message names
/// the store (never its password) and every cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OpenError {
    kind: OpenErrorKind,
    message: String,
}

/// What kind of failure an [`OpenError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpenErrorKind {
    /// The URL is malformed: unknown scheme or parameter, a value out of range, no path.
    /// Fix the URL.
    BadUrl,
    /// The URL names a store this build of the library leaves out: enable the Cargo feature
    /// the message names (`sqlite`, `postgres`, `redis`).
    FeatureDisabled,
    /// The server could not be reached (connection refused, timed out, gone): an outage.
    /// Retry later; nothing was changed.
    Unreachable,
    /// The store was created or migrated by a newer version of this library. Upgrade the
    /// library; the store is left untouched.
    SchemaTooNew,
    /// The server or file answered and refused: a rejected login or permission, a setting the
    /// durability contract needs (Redis `appendfsync`, a PostgreSQL standby), a file that is
    /// not a store of this library. Fix the server, the credentials or the path.
    Refused,
    /// Any other failure (I/O, an unexpected server error). The message says what happened.
    Failed,
}

impl OpenError {
    pub(crate) fn new(kind: OpenErrorKind, message: String) -> Self {
        OpenError { kind, message }
    }

    #[allow(dead_code, reason = "used only when a store's feature is disabled")]
    fn feature_disabled(scheme: &str, feature: &str) -> Self {
        OpenError::new(
            OpenErrorKind::FeatureDisabled,
            format!(
                "`{scheme}` stores need the `{feature}` feature of checkpoint-host, which this \
                 build leaves out"
            ),
        )
    }

    /// An error of `kind`, to raise inside a backend's opening code (where failures travel
    /// as `anyhow::Error` with context); [`OpenError::from`] finds it again in the chain.
    #[allow(dead_code, reason = "used by the optional backends")]
    pub(crate) fn marked(kind: OpenErrorKind, message: String) -> anyhow::Error {
        anyhow::Error::new(OpenError::new(kind, message))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> OpenErrorKind {
        self.kind
    }

    /// The message, with every cause (the same text as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A backend's failure chain becomes one message; its kind is that of the innermost
/// [`OpenError::marked`] in the chain, else `Failed`.
impl From<anyhow::Error> for OpenError {
    fn from(e: anyhow::Error) -> Self {
        let kind = e
            .chain()
            .filter_map(|cause| cause.downcast_ref::<OpenError>())
            .last()
            .map_or(OpenErrorKind::Failed, OpenError::kind);
        OpenError::new(kind, format!("{e:#}"))
    }
}

/// The URL with any password replaced by `***`, for messages and reports: a store URL may
/// carry credentials (`postgres://user:secret@host/db`, or `?password=secret`, which the
/// PostgreSQL client accepts too), and errors must not show them.
///
/// Errs on the side of hiding: the userinfo ends at the last `@` before the first `/`, `?` or
/// `#` after the first `@`. So a password holding `@`, `/`, `?` or `#` is hidden whole: a URL
/// should percent-encode them, but the PostgreSQL client reads the userinfo raw, up to the
/// first `@`. A `password` query parameter is hidden up to the next `&` (or `#`, or the end).
/// A `password_file=PATH` parameter names a file, not a secret, and is shown.
pub fn redact_url(url: &str) -> String {
    redact_query_password(&redact_userinfo(url))
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some(first_at) = rest.find('@') else {
        return url.to_owned();
    };
    let authority_end = rest[first_at..]
        .find(['/', '?', '#'])
        .map_or(rest.len(), |end| first_at + end);
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn redact_query_password(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("password") => {
                // A fragment after the password stays; the password itself never shows.
                let fragment = value.find('#').map_or("", |at| &value[at..]);
                format!("{key}=***{fragment}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// `value` of a URL query parameter with its `%XX` escapes decoded (file paths may hold
/// spaces or `&`); `what` names the parameter in the error.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) fn percent_decode(what: &str, value: &str) -> anyhow::Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                anyhow::bail!("`{what}` has a bad %-escape: {value:?}");
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow::anyhow!("`{what}` is not UTF-8 once decoded"))
}

/// Checks a batch for repeated keys; shared by the backends so they refuse alike.
pub(crate) fn check_distinct_keys(writes: &[Write]) -> Result<(), StorageError> {
    let mut keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
    keys.sort_unstable();
    match keys.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(StorageError::Failed(format!(
            "batch writes key {:?} more than once",
            pair[0]
        ))),
        None => Ok(()),
    }
}

/// The conflict answer for the write at `index` of a batch.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn conflict_at(index: usize) -> Result<CommitOutcome, StorageError> {
    u32::try_from(index)
        .map(CommitOutcome::Conflict)
        .map_err(|_| StorageError::Failed("batch has more than u32::MAX writes".to_owned()))
}

/// A version read back from a SQL store (`store` names it in the message): positive, or the
/// store is damaged, since 0 would mean "absent".
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn stored_version(store: &str, raw: i64) -> Result<u64, StorageError> {
    u64::try_from(raw).ok().filter(|v| *v > 0).ok_or_else(|| {
        StorageError::Failed(format!("{store}: stored version {raw} is not positive"))
    })
}

/// The answer to `get` from a SQL store's row (value and version), or from no row.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn sql_lookup(store: &str, row: Option<(Vec<u8>, i64)>) -> Result<Lookup, StorageError> {
    Ok(match row {
        Some((value, version)) => Lookup::Found(Entry {
            value,
            version: stored_version(store, version)?,
        }),
        None => Lookup::Missing,
    })
}

/// The smallest byte string above every string that starts with `prefix`, or `None` when
/// there is none: the exclusive upper end of a range scan for `list_keys`. UTF-8 never contains
/// 0xFF, so for a non-empty key prefix this is the prefix with its last byte incremented
/// (possibly not valid UTF-8, so a store compares it as raw bytes).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bound = prefix.to_vec();
    while let Some(last) = bound.pop() {
        if last < u8::MAX {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

/// A boxed backend is a backend, so wrappers such as
/// `checkpoint_testkit::faults::FaultyStorage` can wrap one picked at run time.
impl Storage for Box<dyn Storage> {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        (**self).get(key)
    }

    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        (**self).commit(writes)
    }

    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        (**self).list_keys(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_show_in_a_redacted_url() {
        assert_eq!(
            redact_url("postgres://u:pw@127.0.0.1:5/db?schema=x"),
            "postgres://u:***@127.0.0.1:5/db?schema=x"
        );
        assert_eq!(redact_url("redis://:p@ss@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:/tmp/a@b:c.db"), "sqlite:/tmp/a@b:c.db");
        assert_eq!(redact_url("memory:"), "memory:");
        // A fragment ends the authority; a password never reaches it.
        assert_eq!(redact_url("redis://u:pw@h:1/0#x"), "redis://u:***@h:1/0#x");
        assert_eq!(redact_url("redis://u:pw@h#x@y"), "redis://u:***@h#x@y");
        // `@` in the path or query when there is no password: nothing to hide.
        assert_eq!(
            redact_url("postgres://u@h/db?application_name=a@b"),
            "postgres://u@h/db?application_name=a@b"
        );
    }

    #[test]
    fn password_query_parameters_are_hidden_and_password_files_are_shown() {
        for (url, redacted) in [
            (
                "postgres://u@h/db?password=s3cret&schema=x",
                "postgres://u@h/db?password=***&schema=x",
            ),
            (
                "postgres://u:pw@h/db?sslmode=verify-full&PASSWORD=s3cret",
                "postgres://u:***@h/db?sslmode=verify-full&PASSWORD=***",
            ),
            (
                "postgres://u@h/db?password=s3cret#f",
                "postgres://u@h/db?password=***#f",
            ),
            // A file's path is not a secret: operators need to see which file was read.
            (
                "rediss://app@h:6380/0?password_file=/run/secrets/redis&tls_ca_file=/ca.pem",
                "rediss://app@h:6380/0?password_file=/run/secrets/redis&tls_ca_file=/ca.pem",
            ),
            (
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&password_file=/pw",
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem&password_file=/pw",
            ),
            (
                "rediss://:p@ss@h:1/0?prefix=a",
                "rediss://:***@h:1/0?prefix=a",
            ),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
            assert!(!redact_url(url).contains("s3cret"), "{url}");
        }
    }

    #[cfg(any(feature = "postgres", feature = "redis"))]
    #[test]
    fn percent_escapes_in_parameters_are_decoded() {
        use super::percent_decode;
        assert_eq!(
            percent_decode("sslrootcert", "/a%20b/c%26d.pem").expect("valid"),
            "/a b/c&d.pem"
        );
        assert!(percent_decode("sslrootcert", "/a%2").is_err());
        assert!(percent_decode("sslrootcert", "%zz").is_err());
    }

    #[test]
    fn passwords_holding_url_delimiters_are_hidden_whole() {
        for (url, redacted) in [
            // The PostgreSQL client reads these passwords raw, up to the first `@`.
            ("postgres://u:p#w@h/db", "postgres://u:***@h/db"),
            ("postgres://u:p/w@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u:p?w@h:5/db?schema=x",
                "postgres://u:***@h:5/db?schema=x",
            ),
            ("postgresql://u:p:q@h", "postgresql://u:***@h"),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
    }
}

#[cfg(all(test, any(feature = "sqlite", feature = "postgres")))]
mod sql_tests {
    use super::{
        CommitOutcome, Entry, Lookup, StorageError, conflict_at, prefix_successor, sql_lookup,
    };

    #[test]
    fn prefix_successor_bounds_exactly_the_keys_with_the_prefix() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"run/a\0"), Some(b"run/a\x01".to_vec()));
        // A trailing 0xFF cannot be incremented: the bound moves to the byte before it.
        assert_eq!(prefix_successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        // Multi-byte UTF-8: the bound need not be valid UTF-8, and sorts above every key with
        // the prefix and below every other key above it.
        let prefix = "é".as_bytes();
        let end = prefix_successor(prefix).expect("a bound");
        assert_eq!(end, b"\xc3\xaa");
        for key in ["é", "é/x", "é\u{10ffff}"] {
            assert!(
                key.as_bytes() >= prefix && key.as_bytes() < end.as_slice(),
                "{key}"
            );
        }
        for key in ["ê", "f", "e\u{10ffff}"] {
            let key = key.as_bytes();
            assert!(key < prefix || key >= end.as_slice(), "{key:?}");
        }
    }

    #[test]
    fn sql_rows_become_lookups_and_a_non_positive_version_is_damage() {
        assert_eq!(sql_lookup("sqlite", None), Ok(Lookup::Missing));
        assert_eq!(
            sql_lookup("sqlite", Some((vec![7], 3))),
            Ok(Lookup::Found(Entry {
                value: vec![7],
                version: 3
            }))
        );
        for raw in [0, -1] {
            assert_eq!(
                sql_lookup("postgres", Some((vec![], raw))),
                Err(StorageError::Failed(format!(
                    "postgres: stored version {raw} is not positive"
                )))
            );
        }
        assert_eq!(conflict_at(2), Ok(CommitOutcome::Conflict(2)));
    }
}
