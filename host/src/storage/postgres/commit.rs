//! One commit attempt: a READ COMMITTED transaction of conditional, row-locking statements, one
//! per write in key order (`apply`), then `COMMIT`; a failure comes back as an `Attempt`, from
//! which `with_session` decides whether to try again. It is apart from the store's type because
//! it is the one part whose correctness rests on PostgreSQL's locking rules (the reasoning is on
//! `Storage::commit` in the parent module).

use postgres::error::Severity;

use super::PostgresStorage;
use super::session::{Attempt, Query, Session, connection_lost, describe, rolled_back_by_server};
use crate::storage::{CommitOutcome, StorageError, Write, WriteOp, conflict_at, stored_version};

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
    pub(super) fn commit_once(
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
            return conflict_at(failed).map_err(Attempt::Failed);
        }
        // The sequence starts at 1, so a put's version is positive; checked before COMMIT so a
        // damaged sequence fails the batch instead of storing a version that means "absent".
        let versions: Vec<u64> = match writes
            .iter()
            .zip(versions)
            .map(|(write, raw)| match write.op {
                WriteOp::Put(_) => stored_version("postgres", raw),
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
