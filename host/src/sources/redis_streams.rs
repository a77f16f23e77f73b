//! A Redis Streams consumer group as a source: every stream is a partition, entries are read
//! with `XREADGROUP` and acked with `XACK` once a durable checkpoint covers them.
//!
//! ```no_run
//! use checkpoint_host::sources::redis_streams::{RedisStreams, RedisStreamsOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = RedisStreamsOptions::new("billing", "worker-1", ["orders"]);
//! let mut source = RedisStreams::open("redis://127.0.0.1:6379/", options)?;
//! let consumer = source.consumer(); // hand it to `Checkpointer::open`: it does the XACKs
//! for entry in source.read()? {
//!     // driver.begin(&entry.message) ... complete ... flush
//!     let _amount = entry.field("amount");
//! }
//! # drop(consumer);
//! # Ok(())
//! # }
//! ```
//!
//! # One group per stage
//! The consumer group belongs to one stage, and one worker (the driver's epoch owner) reads it
//! at a time. Offsets are per stream, so the checkpoint covers a stream up to an entry id: a
//! second worker in the same group would get entries below that id that the first never saw,
//! and the first would take them for covered ones. Scale out with more streams (partitions),
//! each worker with its own streams, or its own group and stage.
//!
//! # What a restart reads
//! [`RedisStreams::open`] creates the group when missing (`XGROUP CREATE ... MKSTREAM`, from
//! the stream's start by default: nothing is skipped), then takes over the entries that other
//! consumers of the group left pending for at least
//! [`claim_min_idle`](RedisStreamsOptions::claim_min_idle) (`XAUTOCLAIM`): those of an earlier
//! incarnation that ran under another consumer name. It waits (up to that idle time and one
//! second more) for younger ones, so that every entry delivered before comes back before any
//! new one. [`RedisStreams::read`] then reads the consumer's own pending entries (`XREADGROUP`
//! with id `0`: taken before a crash, never acked) and only then new ones (`>`). Each stream's
//! entries come in id order, which is what [`Driver::begin`](crate::Driver::begin) needs:
//! redelivered entries that a durable checkpoint covers are acked and answered `covered`, the
//! others are processed again.
//!
//! A read whose reply is lost may still have moved entries into the consumer's pending list;
//! the next read re-reads that list after the last entry it delivered, so none is skipped.
//!
//! # Offsets
//! An entry id `MS-SEQ` maps to the offset `MS << 20 | SEQ` ([`entry_offset`]), which keeps
//! the ids' order; ids whose time needs more than 44 bits (after the year 2527), whose sequence
//! needs more than 20 bits (over 1,048,575 entries in one millisecond), or that map to
//! `u64::MAX` are refused with [`StreamError::EntryId`]. The event time is the id's `MS`.
//!
//! # Message ids
//! A [`Message`]'s id is `STREAM/MS-SEQ` (the stream's name, a slash, the entry id): acks go
//! to the stream named in the id, so streams whose entries share ids stay apart. Its source is
//! the stream's name, at most 256 bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use redis::{FromRedisValue, Value};

use crate::Message;
use crate::consumer::Consumer;

/// Bits of an offset that hold the `SEQ` part of an entry id `MS-SEQ`.
pub const SEQ_BITS: u32 = 20;
/// Largest `SEQ` an offset holds: 2^20 - 1.
pub const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;
/// Largest `MS` an offset holds: 2^44 - 1 (in the year 2527).
pub const MAX_MS: u64 = u64::MAX >> SEQ_BITS;
/// Longest stream name: a checkpoint's source name is at most 256 bytes.
pub const MAX_STREAM_NAME_BYTES: usize = 256;

/// Entries claimed per `XAUTOCLAIM` call.
const CLAIM_BATCH: usize = 100;
/// How much longer than `claim_min_idle` `open` waits for other consumers' entries to age.
const CLAIM_GRACE: Duration = Duration::from_secs(1);
const CLAIM_POLL: Duration = Duration::from_millis(50);

/// Where a group created by [`RedisStreams::open`] starts reading a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupStart {
    /// At the stream's first entry (`XGROUP CREATE ... 0`): nothing already in it is skipped.
    #[default]
    Beginning,
    /// After the stream's last entry (`$`): only entries added from now on.
    End,
}

/// How to read a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisStreamsOptions {
    /// The streams to read, one partition each; at least one, distinct, 1 to 256 bytes.
    pub streams: Vec<String>,
    /// The consumer group (one per stage).
    pub group: String,
    /// This worker's name in the group. Keep it across restarts: the new process then reads
    /// its own pending entries. A new name works too: the old one's entries are claimed.
    pub consumer: String,
    /// Where a new group starts; an existing group keeps its position.
    pub start: GroupStart,
    /// Entries per stream and read, at least 1 (default 100).
    pub count: usize,
    /// How long a read waits for new entries before it returns none (`BLOCK`; default 1 s;
    /// zero: it does not wait).
    pub block: Duration,
    /// Entries pending on another consumer for at least this long are claimed at open
    /// (default zero: all of them, since one worker owns the group; raise it when a stalled
    /// predecessor may still be running and deserves time to ack).
    pub claim_min_idle: Duration,
    /// Bound on making a connection (default 5 s).
    pub connect_timeout: Duration,
    /// Bound on each command's reply, beyond `block` (default 10 s).
    pub io_timeout: Duration,
}

impl RedisStreamsOptions {
    /// Options with the defaults, for `streams` read by `consumer` in `group`.
    pub fn new(
        group: impl Into<String>,
        consumer: impl Into<String>,
        streams: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            streams: streams.into_iter().map(Into::into).collect(),
            group: group.into(),
            consumer: consumer.into(),
            start: GroupStart::Beginning,
            count: 100,
            block: Duration::from_secs(1),
            claim_min_idle: Duration::ZERO,
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(10),
        }
    }

    fn check(&self) -> Result<(), StreamError> {
        let bad = |what: String| Err(StreamError::Config(what));
        if self.streams.is_empty() {
            return bad("no stream to read".into());
        }
        let mut seen = BTreeSet::new();
        for stream in &self.streams {
            if stream.is_empty() || stream.len() > MAX_STREAM_NAME_BYTES {
                return bad(format!(
                    "stream name {stream:?}: 1 to {MAX_STREAM_NAME_BYTES} bytes"
                ));
            }
            if !seen.insert(stream) {
                return bad(format!("stream {stream:?} is named twice"));
            }
        }
        if self.group.is_empty() || self.consumer.is_empty() {
            return bad("the group and the consumer need a name".into());
        }
        if self.count == 0 {
            return bad("count must be at least 1".into());
        }
        Ok(())
    }
}

/// What went wrong with a Redis Streams source. Entries are never lost by an error: they stay
/// in the group's pending list until acked, and come back after a restart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A bad URL or option: fix the configuration.
    #[error("redis streams source: {0}")]
    Config(String),
    /// No connection, a lost connection or no reply in time: retry, or restart the worker.
    #[error("redis streams source: {0}")]
    Unavailable(String),
    /// The server refused a command (permissions, a key that is not a stream, no such group)
    /// or answered something unexpected: fix the server or the names.
    #[error("redis streams source: {0}")]
    Refused(String),
    /// An entry id does not map to an offset (see the module's "Offsets"): such a stream
    /// cannot be checkpointed by offset.
    #[error(
        "redis streams source: entry {id} of stream {stream:?} does not fit an offset \
         (MS at most {MAX_MS}, SEQ at most {MAX_SEQ}, not both)"
    )]
    EntryId {
        /// The stream.
        stream: String,
        /// The entry id.
        id: String,
    },
}

/// The offset of entry id `MS-SEQ`: `MS << 20 | SEQ`; `None` when it is no entry id or does
/// not fit (see the module's "Offsets").
pub fn entry_offset(id: &str) -> Option<u64> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    let ms: u64 = ms.parse().ok()?;
    let seq: u64 = seq.parse().ok()?;
    if ms > MAX_MS || seq > MAX_SEQ {
        return None;
    }
    let offset = ms << SEQ_BITS | seq;
    // `begin` takes the offset after a message's own: the last u64 has none.
    (offset != u64::MAX).then_some(offset)
}

/// The entry id `MS-SEQ` of an offset made by [`entry_offset`].
pub fn offset_entry_id(offset: u64) -> String {
    format!("{}-{}", offset >> SEQ_BITS, offset & MAX_SEQ)
}

/// The message id of entry `entry_id` of `stream`: `STREAM/MS-SEQ`.
pub fn message_id(stream: &str, entry_id: &str) -> String {
    format!("{stream}/{entry_id}")
}

/// The stream and entry id of a message id made by [`message_id`].
pub fn split_message_id(id: &str) -> Option<(&str, &str)> {
    let (stream, entry) = id.rsplit_once('/')?;
    (!stream.is_empty() && entry_offset(entry).is_some()).then_some((stream, entry))
}

/// An entry's fields and values, in the order they were added.
pub type Fields = Vec<(String, Vec<u8>)>;

/// One entry of a stream, ready for [`Driver::begin`](crate::Driver::begin).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEntry {
    /// Id `STREAM/MS-SEQ`, source the stream, offset from the entry id, event time its `MS`.
    pub message: Message,
    /// The entry's fields and values, in the order they were added.
    pub fields: Fields,
    /// The entry was deleted or trimmed from the stream while it was pending: it has no
    /// fields left. Pass it through `begin` and `complete` like any other, so that it is
    /// acked once a checkpoint covers it.
    pub deleted: bool,
}

impl StreamEntry {
    /// The value of the first field named `name`.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_slice())
    }
}

/// A consumer group read by one consumer, over its own connection.
pub struct RedisStreams {
    link: Link,
    options: RedisStreamsOptions,
    /// Per stream: `Some(id)` while its pending entries after `id` are to be re-read, `None`
    /// once it reads new ones.
    history: Vec<Option<String>>,
    /// Per stream: the last entry id handed out.
    delivered: Vec<Option<String>>,
    claimed: u64,
}

impl std::fmt::Debug for RedisStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreams")
            .field("server", &self.link.server)
            .field("streams", &self.options.streams)
            .field("group", &self.options.group)
            .field("consumer", &self.options.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisStreams {
    /// Connects to the server of `url` (`redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` for TLS with the system's trusted CAs), creates the group on every stream
    /// when missing, and claims what other consumers left pending (see the module's "What a
    /// restart reads").
    pub fn open(url: &str, options: RedisStreamsOptions) -> Result<Self, StreamError> {
        options.check()?;
        let read_timeout = options.io_timeout + options.block;
        let mut link = Link::open(url, options.connect_timeout, read_timeout)?;
        for stream in &options.streams {
            let start = match options.start {
                GroupStart::Beginning => "0",
                GroupStart::End => "$",
            };
            let mut create = redis::cmd("XGROUP");
            create
                .arg("CREATE")
                .arg(stream)
                .arg(&options.group)
                .arg(start)
                .arg("MKSTREAM");
            match link.run::<Value>("XGROUP CREATE", &create) {
                Ok(_) => {}
                // The group exists: it keeps its position.
                Err(StreamError::Refused(text)) if text.contains("BUSYGROUP") => {}
                Err(e) => return Err(e),
            }
        }
        let streams = options.streams.len();
        let mut source = Self {
            link,
            options,
            history: vec![Some("0".to_owned()); streams],
            delivered: vec![None; streams],
            claimed: 0,
        };
        source.claim_from_others()?;
        Ok(source)
    }

    /// A consumer that acks (`XACK`) this group's entries by their message ids, over a
    /// connection of its own; for [`Checkpointer::open`](crate::Checkpointer::open).
    pub fn consumer(&self) -> RedisStreamsConsumer {
        RedisStreamsConsumer {
            link: self
                .link
                .sibling(self.options.connect_timeout, self.options.io_timeout),
            group: self.options.group.clone(),
        }
    }

    /// The options this source reads with.
    pub fn options(&self) -> &RedisStreamsOptions {
        &self.options
    }

    /// How many entries [`RedisStreams::open`] claimed from other consumers.
    pub fn claimed(&self) -> u64 {
        self.claimed
    }

    /// The next entries: first this consumer's own pending ones (taken before a restart and
    /// never acked, or claimed at open), then new ones, waiting up to
    /// [`block`](RedisStreamsOptions::block) for them. Each stream's entries come in id order.
    /// Empty when nothing new arrived in that time.
    pub fn read(&mut self) -> Result<Vec<StreamEntry>, StreamError> {
        let history: Vec<usize> = (0..self.history.len())
            .filter(|&i| self.history[i].is_some())
            .collect();
        if !history.is_empty() {
            let ids: Vec<String> = history
                .iter()
                .map(|&i| self.history[i].clone().unwrap_or_default())
                .collect();
            let mut reply = self.xreadgroup(&history, &ids, None)?;
            let mut entries = Vec::new();
            for i in history {
                let found = take_stream(&mut reply, &self.options.streams[i]);
                match found.last() {
                    // Nothing after the cursor: this stream's history is read.
                    None => self.history[i] = None,
                    Some(last) => self.history[i] = Some(last.id.clone()),
                }
                entries.extend(self.deliver(i, found)?);
            }
            if !entries.is_empty() {
                return Ok(entries);
            }
        }
        let all: Vec<usize> = (0..self.options.streams.len()).collect();
        let ids = vec![">".to_owned(); all.len()];
        let block = self.options.block;
        let mut reply = match self.xreadgroup(&all, &ids, Some(block)) {
            Ok(reply) => reply,
            Err(e) => {
                // The reply may be lost after the server moved entries into our pending list:
                // read that list again after the last entry handed out, so none is skipped.
                for i in all {
                    self.history[i] = Some(self.delivered[i].clone().unwrap_or_else(|| "0".into()));
                }
                return Err(e);
            }
        };
        let mut entries = Vec::new();
        for i in all {
            let found = take_stream(&mut reply, &self.options.streams[i]);
            entries.extend(self.deliver(i, found)?);
        }
        Ok(entries)
    }

    /// Entries delivered to some consumer of the group and not acked yet, over every stream
    /// (`XPENDING`).
    pub fn pending(&mut self) -> Result<u64, StreamError> {
        let mut total = 0;
        for stream in self.options.streams.clone() {
            total += self
                .pending_summary(&stream)?
                .values()
                .copied()
                .sum::<u64>();
        }
        Ok(total)
    }

    fn xreadgroup(
        &mut self,
        streams: &[usize],
        ids: &[String],
        block: Option<Duration>,
    ) -> Result<Vec<RawStream>, StreamError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.options.group)
            .arg(&self.options.consumer)
            .arg("COUNT")
            .arg(self.options.count);
        if let Some(block) = block.filter(|b| !b.is_zero()) {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS");
        for &i in streams {
            cmd.arg(&self.options.streams[i]);
        }
        for id in ids {
            cmd.arg(id);
        }
        let reply: Value = self.link.run("XREADGROUP", &cmd)?;
        parse_read_reply(reply).map_err(|what| {
            StreamError::Refused(format!(
                "XREADGROUP at {}: unexpected reply: {what}",
                self.link.server
            ))
        })
    }

    /// Turns the raw entries of stream `i` into messages, in order.
    fn deliver(&mut self, i: usize, raw: Vec<RawEntry>) -> Result<Vec<StreamEntry>, StreamError> {
        let stream = &self.options.streams[i];
        let mut out = Vec::with_capacity(raw.len());
        for entry in raw {
            let offset = entry_offset(&entry.id).ok_or_else(|| StreamError::EntryId {
                stream: stream.clone(),
                id: entry.id.clone(),
            })?;
            let ms = offset >> SEQ_BITS;
            out.push(StreamEntry {
                message: Message {
                    id: message_id(stream, &entry.id),
                    source: stream.clone(),
                    offset: Some(offset),
                    // MS is below 2^44, so it fits.
                    event_time_ms: i64::try_from(ms).unwrap_or(i64::MAX),
                },
                deleted: entry.fields.is_none(),
                fields: entry.fields.unwrap_or_default(),
            });
            self.delivered[i] = Some(entry.id);
        }
        Ok(out)
    }

    /// Pending entries of `stream` per consumer.
    fn pending_summary(&mut self, stream: &str) -> Result<BTreeMap<String, u64>, StreamError> {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(stream).arg(&self.options.group);
        let reply: Value = self.link.run("XPENDING", &cmd)?;
        parse_pending_summary(&reply).ok_or_else(|| {
            StreamError::Refused(format!(
                "XPENDING at {}: unexpected reply {reply:?}",
                self.link.server
            ))
        })
    }

    /// Pending entries of other consumers, per stream.
    fn others_pending(&mut self) -> Result<Vec<u64>, StreamError> {
        let me = self.options.consumer.clone();
        let mut counts = Vec::new();
        for stream in self.options.streams.clone() {
            let summary = self.pending_summary(&stream)?;
            counts.push(
                summary
                    .iter()
                    .filter(|(consumer, _)| **consumer != me)
                    .map(|(_, n)| n)
                    .sum(),
            );
        }
        Ok(counts)
    }

    /// Moves other consumers' pending entries to this one (`XAUTOCLAIM`), waiting for those
    /// not idle for `claim_min_idle` yet, up to that long and `CLAIM_GRACE` more.
    fn claim_from_others(&mut self) -> Result<(), StreamError> {
        let min_idle = self.options.claim_min_idle;
        let deadline = Instant::now() + min_idle + CLAIM_GRACE;
        loop {
            let others = self.others_pending()?;
            if others.iter().all(|&n| n == 0) {
                return Ok(());
            }
            for (i, _) in others.iter().enumerate().filter(|(_, n)| **n > 0) {
                self.claimed += self.autoclaim(i, min_idle)?;
            }
            let left: u64 = self.others_pending()?.iter().sum();
            if left == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    server = %self.link.server,
                    group = %self.options.group,
                    left,
                    "redis streams: other consumers still hold entries that are not idle for \
                     claim_min_idle; is another worker reading this group?"
                );
                return Ok(());
            }
            std::thread::sleep(CLAIM_POLL.min(deadline - now));
        }
    }

    /// Claims every entry of stream `i` idle for at least `min_idle`; returns how many.
    fn autoclaim(&mut self, i: usize, min_idle: Duration) -> Result<u64, StreamError> {
        let stream = self.options.streams[i].clone();
        let mut cursor = "0-0".to_owned();
        let mut claimed = 0;
        loop {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(&stream)
                .arg(&self.options.group)
                .arg(&self.options.consumer)
                .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
                .arg(&cursor)
                .arg("COUNT")
                .arg(CLAIM_BATCH)
                // Ids only: the entries are read from the pending list next.
                .arg("JUSTID");
            let reply: Value = self.link.run("XAUTOCLAIM", &cmd)?;
            let (next, ids) = parse_autoclaim(&reply).ok_or_else(|| {
                StreamError::Refused(format!(
                    "XAUTOCLAIM at {}: unexpected reply {reply:?}",
                    self.link.server
                ))
            })?;
            claimed += ids as u64;
            if next == "0-0" {
                return Ok(claimed);
            }
            cursor = next;
        }
    }
}

/// Acks entries of one group by their message ids (`STREAM/MS-SEQ`), with `XACK`: for
/// [`Checkpointer::open`](crate::Checkpointer::open). Acking an entry twice, or one that is
/// no longer pending, is harmless (Redis answers 0 for it).
pub struct RedisStreamsConsumer {
    link: Link,
    group: String,
}

impl std::fmt::Debug for RedisStreamsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamsConsumer")
            .field("server", &self.link.server)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl RedisStreamsConsumer {
    /// Acks `ids` (message ids of this source), grouped per stream, in one round trip; a
    /// connection that failed is replaced and the acks sent once more.
    pub fn ack_ids(&mut self, ids: &[String]) -> Result<(), StreamError> {
        let mut per_stream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for id in ids {
            let (stream, entry) = split_message_id(id).ok_or_else(|| {
                StreamError::Config(format!("{id:?} is not a message id STREAM/MS-SEQ"))
            })?;
            per_stream.entry(stream).or_default().push(entry);
        }
        let mut pipe = redis::pipe();
        for (stream, entries) in &per_stream {
            pipe.cmd("XACK")
                .arg(*stream)
                .arg(&self.group)
                .arg(entries)
                .ignore();
        }
        match self.link.run_pipe("XACK", &pipe) {
            // Acks are idempotent, so a second try after a lost connection is safe.
            Err(StreamError::Unavailable(_)) => self.link.run_pipe("XACK", &pipe),
            other => other,
        }
    }
}

impl Consumer for RedisStreamsConsumer {
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String> {
        self.ack_ids(&message_ids).map_err(|e| e.to_string())
    }
}

/// Appends entries to streams (`XADD`), for producers, tests and demos; not needed to read.
pub struct StreamProducer {
    link: Link,
}

impl std::fmt::Debug for StreamProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamProducer")
            .field("server", &self.link.server)
            .finish_non_exhaustive()
    }
}

impl StreamProducer {
    /// Connects to the server of `url` (as [`RedisStreams::open`] does), with the default
    /// timeouts of [`RedisStreamsOptions`].
    pub fn open(url: &str) -> Result<Self, StreamError> {
        let defaults = RedisStreamsOptions::new("-", "-", ["-"]);
        Ok(Self {
            link: Link::open(url, defaults.connect_timeout, defaults.io_timeout)?,
        })
    }

    /// Appends one entry per item of `entries` to `stream`, in one round trip, with ids the
    /// server assigns (`*`); returns those ids, in order.
    pub fn add(&mut self, stream: &str, entries: &[Fields]) -> Result<Vec<String>, StreamError> {
        let mut pipe = redis::pipe();
        for fields in entries {
            let cmd = pipe.cmd("XADD").arg(stream).arg("*");
            for (name, value) in fields {
                cmd.arg(name).arg(value.as_slice());
            }
        }
        self.link.run_pipe_values("XADD", &pipe)
    }
}

/// One connection, made again after it failed; its messages name the server, never the URL.
struct Link {
    client: redis::Client,
    conn: Option<redis::Connection>,
    /// `host:port db N`.
    server: String,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Link {
    /// Connects now, so that a wrong URL or an unreachable server fails `open`.
    fn open(
        url: &str,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Self, StreamError> {
        let shown = crate::storage::redact_url(url);
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(StreamError::Config(format!(
                "{shown}: a Redis URL starts with redis:// or rediss://"
            )));
        }
        let client = redis::Client::open(url)
            .map_err(|e| StreamError::Config(format!("invalid Redis URL {shown}: {e}")))?;
        let info = client.get_connection_info();
        let server = format!("{} db {}", info.addr(), info.redis_settings().db());
        let mut link = Self {
            client,
            conn: None,
            server,
            connect_timeout,
            read_timeout,
        };
        link.connection()?;
        Ok(link)
    }

    /// A link to the same server that connects on first use.
    fn sibling(&self, connect_timeout: Duration, read_timeout: Duration) -> Self {
        Self {
            client: self.client.clone(),
            conn: None,
            server: self.server.clone(),
            connect_timeout,
            read_timeout,
        }
    }

    fn connection(&mut self) -> Result<&mut redis::Connection, StreamError> {
        if self.conn.is_none() {
            let conn = self
                .client
                .get_connection_with_timeout(self.connect_timeout)
                .and_then(|c| {
                    c.set_read_timeout(Some(self.read_timeout))?;
                    c.set_write_timeout(Some(self.read_timeout))?;
                    Ok(c)
                })
                .map_err(|e| {
                    if e.code().is_some() || e.kind() == redis::ErrorKind::AuthenticationFailed {
                        StreamError::Refused(format!("Redis at {} refused: {e}", self.server))
                    } else {
                        StreamError::Unavailable(format!(
                            "Redis at {} is unavailable: {e} (connect timeout {} ms)",
                            self.server,
                            self.connect_timeout.as_millis()
                        ))
                    }
                })?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    fn run<T: FromRedisValue>(&mut self, op: &str, cmd: &redis::Cmd) -> Result<T, StreamError> {
        let conn = self.connection()?;
        let result = cmd.query(conn);
        result.map_err(|e| self.failed(op, &e))
    }

    fn run_pipe(&mut self, op: &str, pipe: &redis::Pipeline) -> Result<(), StreamError> {
        self.run_pipe_values(op, pipe)
    }

    fn run_pipe_values<T: FromRedisValue>(
        &mut self,
        op: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T, StreamError> {
        let conn = self.connection()?;
        let result = pipe.query(conn);
        result.map_err(|e| self.failed(op, &e))
    }

    /// The error of a failed command; a connection that failed (not merely refused a
    /// command) is dropped, since a late reply may still be on the wire.
    fn failed(&mut self, op: &str, e: &redis::RedisError) -> StreamError {
        if e.code().is_some() {
            return StreamError::Refused(format!(
                "{op} at {}: the server answered: {e}",
                self.server
            ));
        }
        self.conn = None;
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            StreamError::Unavailable(format!("{op} at {}: {e}", self.server))
        } else {
            StreamError::Refused(format!("{op} at {}: {e}", self.server))
        }
    }
}

/// One entry of a read reply: its id and its fields (`None`: deleted while pending).
struct RawEntry {
    id: String,
    fields: Option<Fields>,
}

struct RawStream {
    name: String,
    entries: Vec<RawEntry>,
}

/// The entries of stream `name` in a reply, moved out of it.
fn take_stream(reply: &mut [RawStream], name: &str) -> Vec<RawEntry> {
    reply
        .iter_mut()
        .find(|s| s.name == name)
        .map(|s| std::mem::take(&mut s.entries))
        .unwrap_or_default()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

/// `XREADGROUP`'s reply: nil (nothing), or per stream its name and entries, as an array of
/// pairs (RESP2) or a map (RESP3).
fn parse_read_reply(reply: Value) -> Result<Vec<RawStream>, String> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(mut pair) if pair.len() == 2 => {
                    let entries = pair.pop().unwrap_or(Value::Nil);
                    let name = pair.pop().unwrap_or(Value::Nil);
                    Ok((name, entries))
                }
                other => Err(format!("a stream {other:?}")),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("{other:?}")),
    };
    let mut streams = Vec::with_capacity(pairs.len());
    for (name, entries) in pairs {
        let name = text(&name).ok_or_else(|| format!("a stream name {name:?}"))?;
        let entries = match entries {
            Value::Array(entries) => entries,
            Value::Nil => Vec::new(),
            other => return Err(format!("entries {other:?}")),
        };
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            parsed.push(parse_entry(entry)?);
        }
        streams.push(RawStream {
            name,
            entries: parsed,
        });
    }
    Ok(streams)
}

fn parse_entry(entry: Value) -> Result<RawEntry, String> {
    let Value::Array(parts) = entry else {
        return Err(format!("an entry {entry:?}"));
    };
    let id = parts
        .first()
        .and_then(text)
        .ok_or_else(|| format!("an entry id {:?}", parts.first()))?;
    let fields = match parts.get(1) {
        None | Some(Value::Nil) => None,
        Some(Value::Array(flat)) => {
            if flat.len() % 2 != 0 {
                return Err(format!("entry {id}: an odd field list"));
            }
            let mut fields = Vec::with_capacity(flat.len() / 2);
            for pair in flat.chunks(2) {
                let name = bytes(&pair[0]).ok_or_else(|| format!("entry {id}: a field name"))?;
                let value = bytes(&pair[1]).ok_or_else(|| format!("entry {id}: a value"))?;
                fields.push((String::from_utf8_lossy(&name).into_owned(), value));
            }
            Some(fields)
        }
        Some(Value::Map(pairs)) => {
            let mut fields = Vec::with_capacity(pairs.len());
            for (name, value) in pairs {
                let name = bytes(name).ok_or_else(|| format!("entry {id}: a field name"))?;
                let value = bytes(value).ok_or_else(|| format!("entry {id}: a value"))?;
                fields.push((String::from_utf8_lossy(&name).into_owned(), value));
            }
            Some(fields)
        }
        Some(other) => return Err(format!("entry {id}: fields {other:?}")),
    };
    Ok(RawEntry { id, fields })
}

/// `XAUTOCLAIM ... JUSTID`'s reply: the next cursor and how many ids were claimed (Redis 7
/// adds the deleted ids, which it has dropped from the pending list itself).
fn parse_autoclaim(reply: &Value) -> Option<(String, usize)> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let next = text(parts.first()?)?;
    let claimed = match parts.get(1)? {
        Value::Array(ids) => ids.len(),
        _ => return None,
    };
    Some((next, claimed))
}

/// `XPENDING key group`'s reply: pending entries per consumer.
fn parse_pending_summary(reply: &Value) -> Option<BTreeMap<String, u64>> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let mut per_consumer = BTreeMap::new();
    match parts.get(3) {
        None | Some(Value::Nil) => {}
        Some(Value::Array(consumers)) => {
            for consumer in consumers {
                let Value::Array(pair) = consumer else {
                    return None;
                };
                let name = text(pair.first()?)?;
                let count = match pair.get(1)? {
                    Value::Int(n) => u64::try_from(*n).ok()?,
                    other => text(other)?.parse().ok()?,
                };
                per_consumer.insert(name, count);
            }
        }
        Some(Value::Map(consumers)) => {
            for (name, count) in consumers {
                let count = match count {
                    Value::Int(n) => u64::try_from(*n).ok()?,
                    other => text(other)?.parse().ok()?,
                };
                per_consumer.insert(text(name)?, count);
            }
        }
        Some(_) => return None,
    }
    Some(per_consumer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_map_to_offsets_in_their_order() {
        assert_eq!(entry_offset("0-1"), Some(1));
        assert_eq!(entry_offset("1-0"), Some(1 << 20));
        assert_eq!(
            entry_offset("1700000000000-5"),
            Some(1_700_000_000_000 << 20 | 5)
        );
        let ids = ["1-0", "1-1", "1-1048575", "2-0", "1700000000000-0"];
        let offsets: Vec<u64> = ids
            .iter()
            .map(|id| entry_offset(id).expect("fits"))
            .collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        for (id, offset) in ids.iter().zip(offsets) {
            assert_eq!(offset_entry_id(offset), *id);
        }
    }

    #[test]
    fn entry_ids_that_do_not_fit_an_offset_are_refused() {
        assert_eq!(entry_offset("1-1048576"), None, "SEQ over 20 bits");
        assert_eq!(entry_offset("17592186044416-0"), None, "MS over 44 bits");
        assert_eq!(
            entry_offset("17592186044415-1048575"),
            None,
            "u64::MAX has no next"
        );
        assert!(entry_offset("17592186044415-1048574").is_some());
        for bad in ["", "1", "1-", "-1", "a-1", "1-2-3", "1.5-0", "+1-0"] {
            assert_eq!(entry_offset(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn message_ids_name_their_stream() {
        let id = message_id("orders:eu/1", "1700000000000-3");
        assert_eq!(id, "orders:eu/1/1700000000000-3");
        assert_eq!(
            split_message_id(&id),
            Some(("orders:eu/1", "1700000000000-3"))
        );
        assert_eq!(split_message_id("1700000000000-3"), None);
        assert_eq!(split_message_id("/1-0"), None);
        assert_eq!(split_message_id("s/x"), None);
    }

    #[test]
    fn options_are_checked_before_any_connection() {
        let ok = RedisStreamsOptions::new("g", "c", ["a", "b"]);
        assert!(ok.check().is_ok());
        for bad in [
            RedisStreamsOptions::new("g", "c", Vec::<String>::new()),
            RedisStreamsOptions::new("g", "c", ["a", "a"]),
            RedisStreamsOptions::new("g", "c", [""]),
            RedisStreamsOptions::new("g", "c", ["x".repeat(257)]),
            RedisStreamsOptions::new("", "c", ["a"]),
            RedisStreamsOptions::new("g", "", ["a"]),
            RedisStreamsOptions {
                count: 0,
                ..RedisStreamsOptions::new("g", "c", ["a"])
            },
        ] {
            assert!(
                matches!(bad.check(), Err(StreamError::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn read_replies_parse_in_both_protocols_and_keep_deleted_entries() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("amount"), bulk("7")]),
                ]),
                Value::Array(vec![bulk("1-1"), Value::Nil]),
            ]),
        ])]);
        let streams = parse_read_reply(resp2).expect("parses");
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].name, "s");
        assert_eq!(streams[0].entries[0].id, "1-0");
        assert_eq!(
            streams[0].entries[0].fields,
            Some(vec![("amount".to_owned(), b"7".to_vec())])
        );
        assert_eq!(streams[0].entries[1].fields, None);

        let resp3 = Value::Map(vec![(
            bulk("s"),
            Value::Array(vec![Value::Array(vec![
                bulk("2-0"),
                Value::Array(vec![bulk("k"), bulk("v")]),
            ])]),
        )]);
        let streams = parse_read_reply(resp3).expect("parses");
        assert_eq!(streams[0].entries[0].id, "2-0");
        assert!(parse_read_reply(Value::Nil).expect("nil").is_empty());
        assert!(parse_read_reply(Value::Int(3)).is_err());
    }

    #[test]
    fn pending_summaries_and_autoclaim_replies_parse() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let summary = Value::Array(vec![
            Value::Int(3),
            bulk("1-0"),
            bulk("3-0"),
            Value::Array(vec![
                Value::Array(vec![bulk("a"), bulk("2")]),
                Value::Array(vec![bulk("b"), bulk("1")]),
            ]),
        ]);
        let parsed = parse_pending_summary(&summary).expect("parses");
        assert_eq!(parsed.get("a"), Some(&2));
        assert_eq!(parsed.get("b"), Some(&1));
        let empty = Value::Array(vec![Value::Int(0), Value::Nil, Value::Nil, Value::Nil]);
        assert!(parse_pending_summary(&empty).expect("parses").is_empty());

        let claim = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![bulk("1-0"), bulk("2-0")]),
            Value::Array(vec![]),
        ]);
        assert_eq!(parse_autoclaim(&claim), Some(("0-0".to_owned(), 2)));
    }
}
