//! Exactly-once sinks: tables whose position (how many rows they hold) is recorded in the
//! checkpoint, next to the source positions and the operator state.
//!
//! A stage writes its output rows to a [`Sink`], commits them (durable), and only then hands
//! the sink's position to [`Driver::flush`](crate::Driver::flush) in its
//! [`StageState`](crate::StageState). After a crash the sink is opened at the position of the
//! checkpoint the driver resumed from: rows written after that checkpoint (their input was
//! never acked and comes again) are removed, so each input's output is in the table once.
//!
//! ```text
//! process, append rows -> sink.commit() (rows durable) -> driver.flush(state with the sink's
//! position) (checkpoint durable) -> acks
//! ```
//!
//! A crash before the commit loses rows that were never recorded; one between the commit and
//! the checkpoint leaves rows past the recorded position, which the next open truncates; one
//! after the checkpoint loses only acks, which the next driver sends again.
//!
//! - [`SqliteSink`] (feature `sqlite`): a table in a SQLite file;
//! - [`PostgresSink`] (feature `postgres`): a table in PostgreSQL.
//!
//! One writer per table: the stage's owner. A table holds the output of one (run-id, stage):
//! a fresh start (no checkpoint) empties it.

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresSink;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteSink;

use crate::{Checkpoint, SinkPosition};

/// A table of output rows `(position, key, value)` with positions 1, 2, 3, ... and no gap,
/// whose position is recorded in checkpoints.
///
/// The contract every sink keeps:
/// - **open at a position**: the table is made to hold exactly rows `1..=position`; rows past
///   it are deleted (their input was not covered by the checkpoint and is processed again);
///   fewer rows than the position is [`SinkError::Lost`] and changes nothing;
/// - **append** queues a row in memory, after the last one; nothing is written;
/// - **commit** writes every queued row in one transaction and returns once it is durable; the
///   returned position is what the next checkpoint records. After a failed commit the sink
///   refuses every call ([`SinkError::Broken`]): restart the worker from its checkpoint.
pub trait Sink {
    /// The sink's name in the checkpoint's `sinks` (its table's name).
    fn name(&self) -> &str;

    /// Queues one row after the last: written by the next [`Sink::commit`].
    fn append(&mut self, key: &str, value: &[u8]);

    /// Writes the queued rows durably, in one transaction, and returns the new position.
    /// Without queued rows it writes nothing.
    fn commit(&mut self) -> Result<SinkPosition, SinkError>;

    /// The durable position: how many rows the table holds, as of the last commit.
    fn position(&self) -> SinkPosition;

    /// Rows queued and not committed yet.
    fn queued(&self) -> usize;
}

/// What went wrong with a sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// A bad table name or connection string: fix the configuration.
    #[error("sink: {0}")]
    Config(String),
    /// The database failed (connection, I/O, a refused statement); nothing past the last
    /// committed position counts. Restart the worker from its checkpoint.
    #[error("sink {name}: {detail}")]
    Database {
        /// The sink.
        name: String,
        /// What failed.
        detail: String,
    },
    /// The table holds fewer rows than the checkpoint recorded: output that was durable was
    /// removed behind the sink's back. Nothing was changed; restore the table, or start a new
    /// run.
    #[error(
        "sink {name}: the checkpoint records {recorded} rows, the table holds rows 1..={found} \
         without gaps; output was removed outside the sink"
    )]
    Lost {
        /// The sink.
        name: String,
        /// The position the checkpoint records.
        recorded: u64,
        /// Rows `1..=found` are there.
        found: u64,
    },
    /// An earlier commit failed, so what the table holds is unknown: open the sink again (at
    /// the checkpoint's position) in a restarted worker.
    #[error("sink {0}: an earlier commit failed; reopen it from the checkpoint")]
    Broken(String),
}

/// The position `checkpoint` records for the sink `name`; 0 without a checkpoint (a fresh
/// start) or when it records none.
pub fn recorded_position(checkpoint: Option<&Checkpoint>, name: &str) -> u64 {
    checkpoint.and_then(|c| c.sink_position(name)).unwrap_or(0)
}

// The state a driver resumes with comes back in the resumed checkpoint: these read it by name.
impl Checkpoint {
    /// The state of operator `name`, if this checkpoint carries one.
    pub fn operator_state(&self, name: &str) -> Option<&[u8]> {
        self.operator_states
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.state.as_slice())
    }

    /// The position of sink `name`, if this checkpoint records one.
    pub fn sink_position(&self, name: &str) -> Option<u64> {
        self.sinks
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.position)
    }
}

/// A table name the sinks accept unquoted in every database: 1 to 63 of `A-Z a-z 0-9 _`, not
/// starting with a digit.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn check_table(table: &str) -> Result<(), SinkError> {
    let ok = !table.is_empty()
        && table.len() <= 63
        && !table.as_bytes()[0].is_ascii_digit()
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(SinkError::Config(format!(
            "table name {table:?}: 1 to 63 of A-Z a-z 0-9 _, not starting with a digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OperatorState, Watermark};

    #[test]
    fn state_and_sink_positions_are_read_by_name() {
        let checkpoint = Checkpoint {
            run_id: "r".into(),
            stage: "s".into(),
            sequence: 1,
            epoch: 1,
            watermark: Watermark {
                offset: 0,
                event_time_ms: 0,
            },
            sources: vec![],
            sinks: vec![SinkPosition {
                name: "totals".into(),
                position: 7,
            }],
            operator_states: vec![OperatorState {
                name: "sum".into(),
                state: vec![1, 2],
            }],
            idempotency_key: String::new(),
            at_ms: 0,
        };
        assert_eq!(checkpoint.operator_state("sum"), Some(&[1u8, 2][..]));
        assert_eq!(checkpoint.operator_state("other"), None);
        assert_eq!(recorded_position(Some(&checkpoint), "totals"), 7);
        assert_eq!(recorded_position(Some(&checkpoint), "other"), 0);
        assert_eq!(recorded_position(None, "totals"), 0);
    }

    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn table_names_are_plain_identifiers() {
        for ok in ["totals", "_t", "T_1", &"a".repeat(63)] {
            assert!(check_table(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1t", "a-b", "a b", "t\"", "a;drop", &"a".repeat(64)] {
            assert!(
                matches!(check_table(bad), Err(SinkError::Config(_))),
                "{bad}"
            );
        }
    }
}
