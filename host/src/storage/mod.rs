//! Storage backends for the component's `storage` import.
//!
//! One trait, [`Storage`], mirrors the import; a backend depends only on it. Pick one by URL
//! with [`open_storage`], or build it directly.

mod memory;
mod postgres;
mod redis;
mod sqlite;

pub use memory::MemoryStorage;
// `self::`: the module shares its name with the `postgres` crate.
pub use self::postgres::PostgresStorage;
// `self::`: the module shares its name with the `redis` crate.
pub use self::redis::RedisStorage;
pub use sqlite::SqliteStorage;

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
/// - `sqlite:PATH` - a [`SqliteStorage`] on the database file `PATH` (created when missing;
///   `sqlite://PATH` is accepted too);
/// - `postgres://user[:password]@host[:port]/dbname[?params]` (or `postgresql://`) - a
///   [`PostgresStorage`] (parameters such as `schema=NAME`, `connect_timeout_ms`,
///   `statement_timeout_ms` and `pool_size` are listed there);
/// - `redis://[user:password@]host[:port][/db][?params]` - a [`RedisStorage`] (parameters such as
///   `prefix=NAME` and `durability=strict|relaxed` are listed there; `rediss://` is refused).
pub fn open_storage(url: &str) -> anyhow::Result<Box<dyn Storage>> {
    const ACCEPTED: &str = "accepted: `memory:`, `sqlite:PATH`, \
        `postgres://USER@HOST[:PORT]/DB[?schema=NAME&...]`, `redis://HOST[:PORT][/DB]`";
    let (scheme, rest) = url
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("storage URL {url:?} has no scheme ({ACCEPTED})"))?;
    match scheme {
        "memory" if rest.is_empty() => Ok(Box::new(MemoryStorage::new())),
        "sqlite" => {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            anyhow::ensure!(
                !path.is_empty(),
                "storage URL {url:?} names no database file"
            );
            Ok(Box::new(SqliteStorage::open(path)?))
        }
        // Their errors never echo `url`, which may hold a password.
        "postgres" | "postgresql" => Ok(Box::new(PostgresStorage::open(url)?)),
        "redis" | "rediss" => Ok(Box::new(RedisStorage::open(url)?)),
        _ => anyhow::bail!("unsupported storage URL {url:?} ({ACCEPTED})"),
    }
}

/// Why opening a shared store failed when its server could not be reached (refused, timed
/// out, gone): an outage, not a wrong URL or a refused login. Retry later. Found in the error
/// chain of [`open_storage`]; the CLI exits with the `storage` code (9) for it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// The URL with any password replaced by `***`, for messages and reports: a store URL may
/// carry credentials (`postgres://user:secret@host/db`), and errors must not show them.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The userinfo ends at the last `@` before the path; a password may itself contain `@`.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => {
                format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
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

/// A boxed backend is a backend, so wrappers such as
/// [`FaultyStorage`](crate::faults::FaultyStorage) can wrap one picked at run time.
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
    }
}
