//! Pooled connections and what their failures mean: the r2d2 manager (timeouts, a `PING` on
//! checkout, a connection that failed once is never reused), the store's way to get one and to
//! run a read on it, and the mapping of Redis errors to the guest's `storage` errors, which
//! depends on whether a commit was in flight (`Stage`). Kept together because whether a
//! connection may be reused and what its failure means are one decision.

use std::sync::Arc;
use std::time::Duration;

use redis::{Cmd, ConnectionLike as _, ErrorKind, RedisError};

use super::RedisStorage;
use crate::storage::StorageError;

/// Makes pooled connections with the store's timeouts, and throws away any that failed.
pub(super) struct Manager {
    pub(super) client: redis::Client,
    pub(super) connect_timeout: Duration,
    pub(super) io_timeout: Duration,
}

/// A pooled connection. `broken` is set after any failed call: a timed-out or half-read reply
/// may still be on the wire, so the connection is never reused.
pub(super) struct Connection {
    pub(super) inner: redis::Connection,
    pub(super) broken: bool,
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
pub(super) struct LogConnectError {
    pub(super) server: Arc<str>,
}

impl r2d2::HandleError<RedisError> for LogConnectError {
    fn handle_error(&self, error: RedisError) {
        tracing::debug!(server = %self.server, %error, "redis: connection attempt failed");
    }
}

impl RedisStorage {
    pub(super) fn connection(
        &self,
        op: &str,
    ) -> Result<r2d2::PooledConnection<Manager>, StorageError> {
        self.pool.get().map_err(|e| {
            StorageError::Unavailable(format!(
                "redis {op}: no connection to {} within {} ms: {e}",
                self.server,
                self.pool.connection_timeout().as_millis()
            ))
        })
    }

    /// Runs a command that changes nothing; any error discards the connection.
    pub(super) fn read<T: redis::FromRedisValue>(
        &self,
        op: &str,
        cmd: &Cmd,
    ) -> Result<T, StorageError> {
        let mut conn = self.connection(op)?;
        cmd.query(&mut conn.inner).map_err(|e| {
            conn.broken = true;
            self.error(op, Stage::NotApplied, &e)
        })
    }

    pub(super) fn error(&self, op: &str, stage: Stage, e: &RedisError) -> StorageError {
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
}

/// Whether a failed command may have changed the store.
#[derive(Clone, Copy)]
pub(super) enum Stage {
    /// A read, or a commit that was never sent.
    NotApplied,
    /// The commit script was sent: its outcome is unknown when no reply came.
    InFlight,
}
