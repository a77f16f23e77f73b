//! What `open` checks on the server before it hands out the store, on its first connection:
//! that acknowledged commits will be durable (`check_durability`: the AOF settings and the
//! eviction policy, refused or only logged as `durability` says), and that the keys under the
//! prefix are a store of a schema version this build understands (`check_schema`, which writes
//! the marker of a new store). Apart from the calls because they run once per open and decide
//! whether the store may be used at all.

use std::collections::HashMap;

use anyhow::Context as _;

use super::KeySpace;
use super::url::Durability;
use crate::storage::{OpenError, OpenErrorKind};

/// The layout this build writes under a store's prefix. Bump it with a migration in
/// `check_schema`.
const SCHEMA_VERSION: u64 = 1;

/// Reads `CONFIG GET name`; `None` when the server has no such setting.
fn config_get(conn: &mut redis::Connection, name: &str) -> redis::RedisResult<Option<String>> {
    let mut found: HashMap<String, String> =
        redis::cmd("CONFIG").arg("GET").arg(name).query(conn)?;
    Ok(found.remove(name))
}

pub(super) fn check_durability(
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
pub(super) fn check_schema(conn: &mut redis::Connection, keys: &KeySpace) -> anyhow::Result<()> {
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
