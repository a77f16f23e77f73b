//! A sink table in PostgreSQL.

use std::str::FromStr as _;
use std::time::Duration;

use postgres::{Client, NoTls};

use super::{Sink, SinkError, check_table, recorded_position};
use crate::{Checkpoint, SinkPosition};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Sink`] on a PostgreSQL table `(position bigint PRIMARY KEY, key text, value bytea)`,
/// created when missing (in the connection's `search_path`). A commit is one transaction
/// with one `INSERT` of all queued rows, committed with `synchronous_commit=on`: durable on
/// the server once it returns.
pub struct PostgresSink {
    client: Client,
    table: String,
    position: u64,
    truncated: u64,
    queued: Vec<(String, Vec<u8>)>,
    broken: bool,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("table", &self.table)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl PostgresSink {
    /// Connects with `url` (the client's own `postgres://user[:password]@host[:port]/db` or
    /// `key=value` form, without TLS; use [`PostgresSink::with_client`] for a client of your
    /// own) and opens table `table` at the position `resumed` records for it (0 without a
    /// checkpoint): see [`Sink`] for what opening does.
    pub fn open(url: &str, table: &str, resumed: Option<&Checkpoint>) -> Result<Self, SinkError> {
        check_table(table)?;
        let shown = crate::storage::redact_url(url);
        let mut config = postgres::Config::from_str(url)
            .map_err(|e| SinkError::Config(format!("sink {table}: {shown}: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let client = config.connect(NoTls).map_err(|e| SinkError::Database {
            name: table.to_owned(),
            detail: format!("connecting to {shown}: {e}"),
        })?;
        Self::with_client(client, table, recorded_position(resumed, table))
    }

    /// Opens table `table` at `position` over `client`, which the sink keeps.
    pub fn with_client(mut client: Client, table: &str, position: u64) -> Result<Self, SinkError> {
        check_table(table)?;
        let db = |e: postgres::Error| SinkError::Database {
            name: table.to_owned(),
            detail: e.to_string(),
        };
        let recorded = i64::try_from(position).map_err(|_| {
            SinkError::Config(format!("sink {table}: position {position} is out of range"))
        })?;
        client
            .batch_execute("SET synchronous_commit = on")
            .map_err(db)?;
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS \"{table}\" (\
                 position bigint PRIMARY KEY, key text NOT NULL, value bytea NOT NULL)"
            ))
            .map_err(db)?;
        let mut tx = client.transaction().map_err(db)?;
        // Writers of this table wait until the truncation is committed.
        tx.batch_execute(&format!(
            "LOCK TABLE \"{table}\" IN SHARE ROW EXCLUSIVE MODE"
        ))
        .map_err(db)?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(max(position), 0) FROM \"{table}\" \
                     WHERE position BETWEEN 1 AND $1"
                ),
                &[&recorded],
            )
            .map_err(db)?;
        let (count, max): (i64, i64) = (row.get(0), row.get(1));
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
                &format!("DELETE FROM \"{table}\" WHERE position > $1 OR position < 1"),
                &[&recorded],
            )
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(Self {
            client,
            table: table.to_owned(),
            position,
            truncated,
            queued: Vec::new(),
            broken: false,
        })
    }

    /// How many rows past the recorded position opening removed.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// The committed rows `(position, key, value)`, in position order: the output, read back.
    pub fn rows(&mut self) -> Result<Vec<(u64, String, Vec<u8>)>, SinkError> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT position, key, value FROM \"{}\" ORDER BY position",
                    self.table
                ),
                &[],
            )
            .map_err(|e| SinkError::Database {
                name: self.table.clone(),
                detail: e.to_string(),
            })?;
        Ok(rows
            .iter()
            .map(|r| {
                let position: i64 = r.get(0);
                (u64::try_from(position).unwrap_or(0), r.get(1), r.get(2))
            })
            .collect())
    }

    fn write_queued(&mut self) -> Result<(), postgres::Error> {
        let first = self.position + 1;
        let positions: Vec<i64> = (0..self.queued.len() as u64)
            .map(|i| i64::try_from(first + i).unwrap_or(i64::MAX))
            .collect();
        let keys: Vec<&str> = self.queued.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<&[u8]> = self.queued.iter().map(|(_, v)| v.as_slice()).collect();
        let mut tx = self.client.transaction()?;
        tx.execute(
            &format!(
                "INSERT INTO \"{}\" (position, key, value) \
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[])",
                self.table
            ),
            &[&positions, &keys, &values],
        )?;
        tx.commit()
    }
}

impl Sink for PostgresSink {
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
            // A commit whose reply is lost may or may not have happened: only a reopen at the
            // checkpoint's position knows again what the table holds.
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
