//! A sink table in a SQLite file.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

use super::{Sink, SinkError, check_table, recorded_position};
use crate::{Checkpoint, SinkPosition};

/// How long a writer waits for another connection's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Sink`] on a table of a SQLite file: `(position INTEGER PRIMARY KEY, key TEXT, value
/// BLOB)`, in WAL mode with `synchronous=FULL`, so a committed row survives a power loss.
///
/// The file may be the checkpoint store's or one of its own; the table is created when
/// missing.
pub struct SqliteSink {
    conn: Connection,
    table: String,
    position: u64,
    truncated: u64,
    queued: Vec<(String, Vec<u8>)>,
    broken: bool,
}

impl std::fmt::Debug for SqliteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSink")
            .field("table", &self.table)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl SqliteSink {
    /// Opens table `table` of the file at `path` at the position `resumed` records for it (0
    /// without a checkpoint): see [`Sink`] for what opening does.
    pub fn open(
        path: impl AsRef<Path>,
        table: &str,
        resumed: Option<&Checkpoint>,
    ) -> Result<Self, SinkError> {
        Self::open_at(path, table, recorded_position(resumed, table))
    }

    /// Opens table `table` of the file at `path` at `position`.
    pub fn open_at(path: impl AsRef<Path>, table: &str, position: u64) -> Result<Self, SinkError> {
        check_table(table)?;
        let db = |e: rusqlite::Error| SinkError::Database {
            name: table.to_owned(),
            detail: format!("{}: {e}", path.as_ref().display()),
        };
        let mut conn = Connection::open(path.as_ref()).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        let recorded = i64::try_from(position).map_err(|_| {
            SinkError::Config(format!("sink {table}: position {position} is out of range"))
        })?;

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (\
             position INTEGER PRIMARY KEY, key TEXT NOT NULL, value BLOB NOT NULL)"
        ))
        .map_err(db)?;
        let (count, max): (i64, i64) = tx
            .query_row(
                &format!(
                    "SELECT count(*), coalesce(max(position), 0) FROM \"{table}\" \
                     WHERE position BETWEEN 1 AND ?1"
                ),
                params![recorded],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(db)?;
        if count != recorded || max != recorded {
            // Positions are unique integers, so count and max equal to n mean rows 1..=n.
            return Err(SinkError::Lost {
                name: table.to_owned(),
                recorded: position,
                found: if count == max {
                    u64::try_from(count).unwrap_or(0)
                } else {
                    0
                },
            });
        }
        let truncated = tx
            .execute(
                &format!("DELETE FROM \"{table}\" WHERE position > ?1 OR position < 1"),
                params![recorded],
            )
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(Self {
            conn,
            table: table.to_owned(),
            position,
            truncated: truncated as u64,
            queued: Vec::new(),
            broken: false,
        })
    }

    /// How many rows past the recorded position opening removed.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// The committed rows `(position, key, value)`, in position order: the output, read back.
    pub fn rows(&self) -> Result<Vec<(u64, String, Vec<u8>)>, SinkError> {
        let db = |e: rusqlite::Error| SinkError::Database {
            name: self.table.clone(),
            detail: e.to_string(),
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT position, key, value FROM \"{}\" ORDER BY position",
                self.table
            ))
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })
            .map_err(db)?;
        rows.map(|row| {
            row.map(|(p, k, v)| (u64::try_from(p).unwrap_or(0), k, v))
                .map_err(db)
        })
        .collect()
    }

    fn write_queued(&mut self) -> Result<(), rusqlite::Error> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO \"{}\" (position, key, value) VALUES (?1, ?2, ?3)",
                self.table
            ))?;
            let mut at = self.position;
            for (key, value) in &self.queued {
                at += 1;
                // Positions stay far below i64::MAX: one per row written.
                insert.execute(params![i64::try_from(at).unwrap_or(i64::MAX), key, value])?;
            }
        }
        tx.commit()
    }
}

impl Sink for SqliteSink {
    fn name(&self) -> &str {
        &self.table
    }

    fn append(&mut self, key: &str, value: &[u8]) {
        self.queued.push((key.to_owned(), value.to_vec()));
    }

    fn commit(&mut self) -> Result<SinkPosition, SinkError> {
        if self.broken {
            return Err(SinkError::Broken(self.table.clone()));
        }
        if !self.queued.is_empty() {
            if let Err(e) = self.write_queued() {
                self.broken = true;
                return Err(SinkError::Database {
                    name: self.table.clone(),
                    detail: e.to_string(),
                });
            }
            self.position += self.queued.len() as u64;
            self.queued.clear();
        }
        Ok(self.position())
    }

    fn position(&self) -> SinkPosition {
        SinkPosition {
            name: self.table.clone(),
            position: self.position,
        }
    }

    fn queued(&self) -> usize {
        self.queued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(path: &Path) -> Vec<(i64, String)> {
        let conn = Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare("SELECT position, key FROM totals ORDER BY position")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn reopening_at_a_position_truncates_rows_past_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sink.db");
        let mut sink = SqliteSink::open_at(&path, "totals", 0).expect("open");
        for key in ["a", "b", "c"] {
            sink.append(key, b"v");
        }
        assert_eq!(sink.queued(), 3);
        assert_eq!(sink.commit().expect("commit").position, 3);
        sink.append("d", b"v");
        assert_eq!(sink.commit().expect("commit").position, 4);
        drop(sink);

        // The checkpoint recorded 3: row 4 came from input that is processed again.
        let sink = SqliteSink::open_at(&path, "totals", 3).expect("reopen");
        assert_eq!(sink.truncated(), 1);
        assert_eq!(sink.position().position, 3);
        assert_eq!(
            rows(&path),
            [(1, "a".into()), (2, "b".into()), (3, "c".into())]
        );
    }

    #[test]
    fn a_table_shorter_than_the_recorded_position_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sink.db");
        let mut sink = SqliteSink::open_at(&path, "totals", 0).expect("open");
        sink.append("a", b"v");
        sink.commit().expect("commit");
        drop(sink);
        match SqliteSink::open_at(&path, "totals", 5) {
            Err(SinkError::Lost {
                recorded: 5,
                found: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(rows(&path), [(1, "a".into())]);
    }

    #[test]
    fn a_fresh_start_empties_the_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sink.db");
        let mut sink = SqliteSink::open(&path, "totals", None).expect("open");
        sink.append("a", b"v");
        sink.commit().expect("commit");
        drop(sink);
        let sink = SqliteSink::open(&path, "totals", None).expect("reopen");
        assert_eq!((sink.truncated(), sink.position().position), (1, 0));
        assert!(rows(&path).is_empty());
    }
}
