//! `ckpt demo --source redis-stream://HOST:PORT[/DB][?partitions=N&group=NAME&stream=NAME]`:
//! the crash demo on a real Redis stream.
//!
//! The demo appends `--messages` entries (field `n`) to `partitions` new streams, then reads
//! them through a consumer group with the library's Redis Streams source and a driver
//! (`begin` / `complete` / `flush`, policy per-batch), keeping the sum of `n` as operator state
//! and writing one row per entry (the running sum) to a SQLite sink table next to the store.
//! At seeded random deliveries the worker is dropped without a flush (source, driver and sink
//! with it) and started again: the group redelivers what was never acked, the driver acks
//! again what its checkpoint covers and skips it, the sink truncates what the checkpoint does
//! not record. Every ack is checked, when it happens, against the durable checkpoint read on a
//! separate connection; at the end the group must have nothing pending, the sink one row per
//! entry, and the sum the expected one.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use checkpoint_guest::keys::StageKeys;
use checkpoint_host::sinks::{Sink, SqliteSink};
use checkpoint_host::sources::redis_streams::{
    Fields, RedisStreams, RedisStreamsConsumer, RedisStreamsOptions, StreamProducer, entry_offset,
    message_id, split_message_id,
};
use checkpoint_host::{
    Admission, Checkpoint, Checkpointer, Codec, Consumer, Driver, DriverOptions, Lookup,
    OperatorState, Options, OverflowPolicy, Policy, Progress, StageState, Storage,
};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde::Serialize;

use super::verifier::Progression;
use super::{DEMO_MAX_RETAINED, DemoArgs, EPOCH, STAGE, crash_schedule, demo_store, utc_stamp};
use crate::commands::now_ms;
use crate::output::Output;
use crate::{GlobalArgs, fail, open_store};

const SINK_TABLE: &str = "outputs";
const SUM: &str = "sum";
const CONSUMER: &str = "demo-worker";
const EXAMPLES: usize = 5;

/// What `--source redis-stream://...` asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamSource {
    /// The server, as the Redis client takes it (`redis://` or `rediss://`).
    redis_url: String,
    partitions: usize,
    group: String,
    /// Streams are `{stream}:{partition}`; a fresh name per run unless given.
    stream: Option<String>,
}

/// Parses `redis-stream://[user:password@]HOST[:PORT][/DB][?partitions=N&group=NAME&stream=NAME]`
/// (`rediss-stream://` for TLS).
pub fn parse_source(url: &str) -> Result<StreamSource> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let redis_scheme = match scheme {
        "redis-stream" => "redis",
        "rediss-stream" => "rediss",
        _ => bail!(
            "--source {}: expected redis-stream://HOST:PORT[/DB][?partitions=N&group=NAME&stream=NAME]",
            checkpoint_host::storage::redact_url(url)
        ),
    };
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut source = StreamSource {
        redis_url: format!("{redis_scheme}://{base}"),
        partitions: 1,
        group: "ckpt-demo".to_owned(),
        stream: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "partitions" => {
                source.partitions = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .with_context(|| format!("partitions={value:?}: expected 1 to 64"))?;
            }
            "group" if !value.is_empty() => value.clone_into(&mut source.group),
            "stream" if !value.is_empty() => source.stream = Some(value.to_owned()),
            _ => bail!(
                "--source: unknown or empty parameter {name:?} (known: partitions, group, stream)"
            ),
        }
    }
    Ok(source)
}

pub fn run(
    global: &GlobalArgs,
    out: &Output,
    args: &DemoArgs,
    source: &StreamSource,
) -> Result<()> {
    let (store, db_path) = demo_store(global, args)?;
    let sink_path = sink_path(db_path.as_deref(), args)?;
    let options = global.options(DEMO_MAX_RETAINED);
    let run_id = format!("demo-{}", now_ms());
    let prefix = source
        .stream
        .clone()
        .unwrap_or_else(|| format!("ckpt-{run_id}"));
    let streams: Vec<String> = (0..source.partitions)
        .map(|p| format!("{prefix}:{p}"))
        .collect();

    // The input: entry i goes to stream i % partitions with n = i % 1000.
    let mut producer = StreamProducer::open(&source.redis_url).context("connecting to Redis")?;
    let mut expected: HashSet<String> = HashSet::new();
    let mut expected_sum = 0i64;
    let mut per_stream: Vec<Vec<Fields>> = vec![Vec::new(); streams.len()];
    for i in 0..args.messages {
        let n = (i % 1_000) as i64;
        expected_sum += n;
        per_stream[(i % streams.len() as u64) as usize]
            .push(vec![("n".to_owned(), n.to_string().into_bytes())]);
    }
    for (stream, entries) in streams.iter().zip(per_stream) {
        for chunk in entries.chunks(1_000) {
            for id in producer.add(stream, chunk).context("adding entries")? {
                expected.insert(message_id(stream, &id));
            }
        }
    }

    let started = Instant::now();
    let driver_options = DriverOptions {
        run_id: run_id.clone(),
        stage: STAGE.to_owned(),
        epoch: EPOCH,
        policy: Policy::PerBatch(args.batch),
        changelog_capacity: 0,
        overflow: OverflowPolicy::DropNew,
        max_in_flight: 4096,
    };
    let latest_key = StageKeys::new(&options.namespace, &run_id, STAGE).latest();
    let acks = AckCheck::open(&store, latest_key)?;
    let crash_every_avg = args.crash_every_avg.unwrap_or((args.messages / 20).max(1));
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut crash_points = crash_schedule(
        &mut StdRng::seed_from_u64(seed),
        args.messages,
        crash_every_avg,
    )
    .into_iter();
    let mut next_crash = crash_points.next();
    let setup = Setup {
        redis_url: &source.redis_url,
        group: &source.group,
        streams: &streams,
        store: &store,
        options: &options,
        driver_options: &driver_options,
        sink_path: &sink_path,
    };

    let mut progression = Progression::default();
    let (mut deliveries, mut covered, mut crashes, mut truncated) = (0u64, 0u64, 0u64, 0u64);
    let mut worker = Worker::start(&setup, &acks)?;
    progression.restarted(&worker.resumed);
    truncated += worker.sink.truncated();
    loop {
        let entries = worker.source.read().context("reading the streams")?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            deliveries += 1;
            if next_crash.is_some_and(|at| deliveries >= at) {
                // Killed: what was read and not checkpointed is redelivered after the restart.
                next_crash = crash_points.next();
                crashes += 1;
                drop(worker);
                worker = Worker::start(&setup, &acks).context("restarting after a crash")?;
                progression.restarted(&worker.resumed);
                truncated += worker.sink.truncated();
                break;
            }
            loop {
                match worker.driver.begin(&entry.message)? {
                    Admission::Admitted(ticket) => {
                        let n: i64 = entry
                            .field("n")
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .and_then(|v| v.parse().ok())
                            .with_context(|| format!("entry {} has no n", entry.message.id))?;
                        worker.sum += n;
                        worker
                            .sink
                            .append(&entry.message.id, worker.sum.to_string().as_bytes());
                        if worker.driver.complete(ticket)?.due {
                            worker.checkpoint(&mut progression)?;
                        }
                        break;
                    }
                    Admission::Covered(_) => {
                        covered += 1;
                        break;
                    }
                    Admission::Backpressure(_) => worker.checkpoint(&mut progression)?,
                }
            }
        }
    }
    worker.checkpoint(&mut progression)?;
    let elapsed = started.elapsed().as_secs_f64();

    // Read the end back: the checkpoint on the verifier's connection, the group, the table.
    let last = acks.durable_latest()?;
    let pending = worker.source.pending().context("XPENDING")?;
    let rows = worker.sink.rows()?;
    let mut seen = HashSet::new();
    let duplicates = rows.iter().filter(|(_, key, _)| !seen.insert(key)).count() as u64;
    let missing = expected.iter().filter(|id| !seen.contains(id)).count() as u64;
    let sum = last
        .as_ref()
        .and_then(|c| c.operator_state(SUM))
        .and_then(|b| b.try_into().ok())
        .map(i64::from_le_bytes);
    let positions: BTreeMap<String, u64> = last
        .iter()
        .flat_map(|c| &c.sources)
        .map(|s| (s.name.clone(), s.watermark.offset))
        .collect();
    let summary = acks.summary();
    let mut report = StreamReport {
        run_id,
        store,
        sink: sink_path.display().to_string(),
        streams,
        group: source.group.clone(),
        seed,
        messages: args.messages,
        batch: args.batch,
        crash_every_avg,
        crashes,
        deliveries,
        covered,
        checkpoints: progression.checkpoints,
        acks: summary.acks,
        ack_calls: summary.calls,
        unacked: expected
            .iter()
            .filter(|id| !summary.acked.contains(*id))
            .count() as u64,
        ack_violations: summary.violations,
        ack_violation_examples: summary.examples,
        regressions: progression.regressions,
        regression_examples: progression.examples.clone(),
        pending,
        sink_rows: rows.len() as u64,
        sink_truncated: truncated,
        duplicates,
        missing,
        sum,
        expected_sum,
        positions,
        elapsed_s: elapsed,
        messages_per_s: args.messages as f64 / elapsed.max(f64::EPSILON),
        ok: false,
    };
    report.ok = report.failures().is_empty();
    out.emit(&report, || report.human())?;
    if report.ok {
        Ok(())
    } else {
        Err(fail(
            1,
            format!("demo verification failed: {}", report.failures().join("; ")),
        ))
    }
}

/// The sink goes next to a SQLite store, else into the data directory.
fn sink_path(db_path: Option<&str>, args: &DemoArgs) -> Result<PathBuf> {
    let dir = match (db_path.and_then(|p| Path::new(p).parent()), &args.data_dir) {
        (Some(dir), _) => dir.to_owned(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => {
            PathBuf::from("ckpt-data").join(format!("demo-{}", utc_stamp(SystemTime::now())))
        }
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    Ok(dir.join("outputs.db"))
}

struct Setup<'a> {
    redis_url: &'a str,
    group: &'a str,
    streams: &'a [String],
    store: &'a str,
    options: &'a Options,
    driver_options: &'a DriverOptions,
    sink_path: &'a Path,
}

/// One incarnation of the pipeline: source, driver and sink on connections of their own.
/// Dropping it is the crash: nothing is flushed or committed.
struct Worker {
    source: RedisStreams,
    driver: Driver,
    sink: SqliteSink,
    sum: i64,
    resumed: checkpoint_host::Resume,
}

impl Worker {
    fn start(setup: &Setup<'_>, acks: &AckCheck) -> Result<Worker> {
        let mut options =
            RedisStreamsOptions::new(setup.group, CONSUMER, setup.streams.iter().cloned());
        options.block = std::time::Duration::from_millis(200);
        let source = RedisStreams::open(setup.redis_url, options).context("opening the streams")?;
        let consumer = acks.consumer(source.consumer());
        let mut checkpointer =
            Checkpointer::open(open_store(setup.store)?, consumer, setup.options)
                .context("opening the checkpointer")?;
        checkpointer.set_metrics_store(checkpoint_host::metrics::store_kind(setup.store));
        let mut driver = checkpointer
            .open_driver(setup.driver_options)
            .context("opening the driver")?;
        let resumed = driver.resumed_from().context("reading the resume point")?;
        let checkpoint = resumed.checkpoint.as_ref();
        let sum = match checkpoint.and_then(|c| c.operator_state(SUM)) {
            Some(bytes) => i64::from_le_bytes(bytes.try_into().context("a sum of 8 bytes")?),
            None => 0,
        };
        let sink = SqliteSink::open(setup.sink_path, SINK_TABLE, checkpoint)
            .context("opening the sink")?;
        Ok(Worker {
            source,
            driver,
            sink,
            sum,
            resumed,
        })
    }

    /// Rows durable first, then the checkpoint recording them with the sum, then the acks.
    fn checkpoint(&mut self, progression: &mut Progression) -> Result<()> {
        let state = StageState {
            sinks: vec![self.sink.commit()?],
            operator_states: vec![OperatorState {
                name: SUM.to_owned(),
                state: self.sum.to_le_bytes().to_vec(),
            }],
        };
        if let Progress::Checkpointed(receipt) = self.driver.flush(Some(&state), now_ms())? {
            progression.receipts(&[receipt]);
            progression.cursor(&self.driver.cursor()?);
        }
        Ok(())
    }
}

/// Checks every ack against the durable checkpoint, read on a store connection of its own,
/// before the `XACK` goes out; shared by every incarnation's consumer.
#[derive(Clone)]
struct AckCheck {
    state: Arc<Mutex<AckState>>,
}

struct AckState {
    storage: Box<dyn Storage>,
    codec: Codec,
    latest_key: String,
    acked: HashSet<String>,
    acks: u64,
    calls: u64,
    violations: u64,
    examples: Vec<String>,
}

struct AckSummary {
    acked: HashSet<String>,
    acks: u64,
    calls: u64,
    violations: u64,
    examples: Vec<String>,
}

impl AckCheck {
    fn open(url: &str, latest_key: String) -> Result<AckCheck> {
        Ok(AckCheck {
            state: Arc::new(Mutex::new(AckState {
                storage: open_store(url)?,
                codec: Codec::new().context("loading the component for the ack checks")?,
                latest_key,
                acked: HashSet::new(),
                acks: 0,
                calls: 0,
                violations: 0,
                examples: Vec::new(),
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn consumer(&self, inner: RedisStreamsConsumer) -> Box<dyn Consumer> {
        Box::new(CheckedConsumer {
            check: self.clone(),
            inner,
        })
    }

    fn durable_latest(&self) -> Result<Option<Checkpoint>> {
        self.lock().durable_latest().map_err(anyhow::Error::msg)
    }

    fn summary(&self) -> AckSummary {
        let state = self.lock();
        AckSummary {
            acked: state.acked.clone(),
            acks: state.acks,
            calls: state.calls,
            violations: state.violations,
            examples: state.examples.clone(),
        }
    }
}

impl AckState {
    fn durable_latest(&mut self) -> Result<Option<Checkpoint>, String> {
        match self.storage.get(&self.latest_key) {
            Ok(Lookup::Found(entry)) => self
                .codec
                .decode(&entry.value)
                .map(Some)
                .map_err(|e| format!("decoding: {e}")),
            Ok(Lookup::Missing) => Ok(None),
            Err(e) => Err(format!("reading {}: {e:?}", self.latest_key)),
        }
    }

    fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what);
        }
    }
}

struct CheckedConsumer {
    check: AckCheck,
    inner: RedisStreamsConsumer,
}

impl Consumer for CheckedConsumer {
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String> {
        {
            let mut state = self.check.lock();
            state.calls += 1;
            // Fail closed: an ack that cannot be checked counts as a violation.
            let durable = state.durable_latest().unwrap_or_else(|e| {
                state.violation(format!("an ack unchecked: {e}"));
                None
            });
            for id in &message_ids {
                state.acks += 1;
                let covered = split_message_id(id).and_then(|(stream, entry)| {
                    let offset = entry_offset(entry)?;
                    let source = durable
                        .as_ref()?
                        .sources
                        .iter()
                        .find(|s| s.name == stream)?;
                    Some(offset < source.watermark.offset)
                });
                if covered != Some(true) {
                    state.violation(format!(
                        "acked {id}, which the durable checkpoint does not cover"
                    ));
                }
                state.acked.insert(id.clone());
            }
        }
        self.inner.ack(message_ids)
    }
}

#[derive(Debug, Serialize)]
struct StreamReport {
    run_id: String,
    store: String,
    sink: String,
    streams: Vec<String>,
    group: String,
    seed: u64,
    messages: u64,
    batch: u32,
    crash_every_avg: u64,
    crashes: u64,
    /// Entries handed to `begin`, redeliveries included.
    deliveries: u64,
    /// Redeliveries a durable checkpoint covered: acked again, not processed.
    covered: u64,
    checkpoints: u64,
    acks: u64,
    ack_calls: u64,
    unacked: u64,
    ack_violations: u64,
    ack_violation_examples: Vec<String>,
    regressions: u64,
    regression_examples: Vec<String>,
    /// Entries pending in the group at the end (`XPENDING`).
    pending: u64,
    sink_rows: u64,
    /// Rows past the recorded position removed when the sink was opened after a crash.
    sink_truncated: u64,
    duplicates: u64,
    missing: u64,
    sum: Option<i64>,
    expected_sum: i64,
    /// Each stream's position in the last checkpoint.
    positions: BTreeMap<String, u64>,
    elapsed_s: f64,
    messages_per_s: f64,
    ok: bool,
}

impl StreamReport {
    fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if self.ack_violations > 0 {
            failed.push(format!(
                "{} ack(s) before a covering durable checkpoint",
                self.ack_violations
            ));
        }
        if self.regressions > 0 {
            failed.push(format!("{} regression(s)", self.regressions));
        }
        if self.unacked > 0 {
            failed.push(format!("{} entries never acked", self.unacked));
        }
        if self.pending > 0 {
            failed.push(format!("{} entries pending in the group", self.pending));
        }
        if self.duplicates > 0 || self.missing > 0 || self.sink_rows != self.messages {
            failed.push(format!(
                "sink rows {} for {} entries ({} duplicates, {} missing)",
                self.sink_rows, self.messages, self.duplicates, self.missing
            ));
        }
        if self.sum != Some(self.expected_sum) {
            failed.push(format!(
                "sum {:?}, expected {}",
                self.sum, self.expected_sum
            ));
        }
        failed
    }

    fn human(&self) -> String {
        use std::fmt::Write as _;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "demo {}: {} entries in {} stream(s) ({}), group {}, checkpoint every {}, seed {}",
            self.run_id,
            self.messages,
            self.streams.len(),
            self.streams.join(", "),
            self.group,
            self.batch,
            self.seed
        );
        let _ = writeln!(
            t,
            "  crashes        {} (about one every {} deliveries)",
            self.crashes, self.crash_every_avg
        );
        let _ = writeln!(
            t,
            "  deliveries     {} ({} covered redeliveries acked again and skipped)",
            self.deliveries, self.covered
        );
        let _ = writeln!(t, "  checkpoints    {}", self.checkpoints);
        let _ = writeln!(
            t,
            "  acks           {} ids in {} XACK calls; {} entries never acked",
            self.acks, self.ack_calls, self.unacked
        );
        let _ = writeln!(
            t,
            "  violations     {} (every ack checked against the durable checkpoint on a separate connection)",
            self.ack_violations
        );
        let _ = writeln!(t, "  regressions    {}", self.regressions);
        let _ = writeln!(t, "  pending        {} (XPENDING at the end)", self.pending);
        let _ = writeln!(
            t,
            "  sink           {} rows, {} duplicates, {} missing ({} rows past a checkpoint truncated after crashes)",
            self.sink_rows, self.duplicates, self.missing, self.sink_truncated
        );
        let sum = self
            .sum
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        let _ = writeln!(
            t,
            "  state          sum {sum} (expected {})",
            self.expected_sum
        );
        let _ = writeln!(
            t,
            "  elapsed        {:.2} s, {:.0} entries/s",
            self.elapsed_s, self.messages_per_s
        );
        let _ = writeln!(
            t,
            "  data           {}; sink {}",
            checkpoint_host::storage::redact_url(&self.store),
            self.sink
        );
        for example in self
            .ack_violation_examples
            .iter()
            .chain(&self.regression_examples)
        {
            let _ = writeln!(t, "  ! {example}");
        }
        if self.ok {
            t.push_str(
                "ok: every entry processed once, every ack after a durable checkpoint covering it, nothing pending\n",
            );
        } else {
            let _ = writeln!(t, "FAILED: {}", self.failures().join("; "));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_sources_parse_into_a_redis_url_and_the_demo_parameters() {
        let s = parse_source("redis-stream://127.0.0.1:6379/2?partitions=4&group=g&stream=s")
            .expect("parses");
        assert_eq!(
            s,
            StreamSource {
                redis_url: "redis://127.0.0.1:6379/2".into(),
                partitions: 4,
                group: "g".into(),
                stream: Some("s".into()),
            }
        );
        let s = parse_source("rediss-stream://h:1/").expect("parses");
        assert_eq!(s.redis_url, "rediss://h:1/");
        assert_eq!((s.partitions, s.group.as_str()), (1, "ckpt-demo"));
        for bad in [
            "redis://h/",
            "redis-stream://h/?partitions=0",
            "redis-stream://h/?partitions=65",
            "redis-stream://h/?group=",
            "redis-stream://h/?prefix=x",
        ] {
            assert!(parse_source(bad).is_err(), "{bad}");
        }
    }
}
