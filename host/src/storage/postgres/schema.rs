//! What `open` does on the server before the store is used, once per open and on one direct
//! connection: check that the session's commits will be durable (`check_session`), and create,
//! check or upgrade the store's tables and sequence (`migrate`) under an advisory lock. The
//! schema version lives here, beside the only code that reads or writes it; the statements the
//! store runs on those tables afterwards are in `session`.

use postgres::Client;

use crate::storage::{OpenError, OpenErrorKind};

/// The schema this build writes. Bump it with a migration step in `migrate`.
const SCHEMA_VERSION: i32 = 1;

/// Serialises schema creation and migration of every store in a database (opens are rare, so
/// one lock for all schemas is simpler than one per schema and costs nothing).
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"ckpt-ddl");

/// Refuses a session whose commits would not be durable when they return.
pub(super) fn check_session(client: &mut Client) -> anyhow::Result<()> {
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
pub(super) fn migrate(client: &mut Client, schema: &str) -> anyhow::Result<()> {
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
    // Looked up in the catalog rather than CREATE TABLE IF NOT EXISTS, which needs CREATE on
    // the schema even when the table exists: a role that may only read and write the store's
    // tables (docs/deployment.md) opens an existing store without it.
    let has_marker: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = $1 AND c.relname = 'ckpt_schema')",
            &[&schema],
        )?
        .try_get(0)?;
    if !has_marker {
        tx.batch_execute(&format!(
            "CREATE TABLE \"{schema}\".ckpt_schema (
                 id integer PRIMARY KEY CHECK (id = 1),
                 version integer NOT NULL
             )"
        ))?;
    }
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
