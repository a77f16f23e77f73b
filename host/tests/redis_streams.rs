//! Redis Streams end to end: worker processes read a consumer group on a real redis-server
//! through the driver, keep a running sum per stream as operator state, write one output row
//! per entry to an exactly-once sink, and are killed with SIGKILL 20+ times.
//!
//! Every worker is this test binary re-run as `worker_process` (as `many_processes.rs` does),
//! configured through one environment variable. It reads with [`RedisStreams`] (own pending
//! entries first, then new ones; every few incarnations under a new consumer name, so that
//! the dead one's entries are taken over with `XAUTOCLAIM`), begins each entry, processes it
//! (in order, or on a pool of threads that finish out of order under a `max-in-flight` cap),
//! completes it, applies the released results in release order (sum, sink row), and at each
//! due checkpoint commits the sink and flushes the driver with the sums and the sink's
//! position. Its consumer checks every ack against the durable latest checkpoint read on a
//! connection of its own before it sends `XACK`, and logs what it saw, one fact a line.
//!
//! The parent kills each incarnation in one of three ways, at random: SIGKILL after a random
//! pause; SIGKILL of itself inside the k-th ack call (the checkpoint is durable, the `XACK` not
//! sent: between the durable write and the ack); SIGKILL of itself after the k-th sink commit
//! and before its checkpoint. After 22 kills it lets the worker finish. Then it checks, and
//! prints: every entry processed (the final checkpoint's positions at every stream's end, a
//! sink row for every entry); the sums equal to a crash-free run's (the same worker, never
//! killed, on another group of the same streams) and to the expected ones; 0 duplicate and 0
//! missing sink rows, each equal to the crash-free run's; 0 entries pending in either group
//! (`XPENDING`); 0 acks that the durable checkpoint did not cover.
//!
//! Scenarios: 1 stream in order and 4 streams on a worker pool with the SQLite store and a
//! SQLite sink; 4 streams in order and 1 stream on a worker pool with the PostgreSQL store and
//! a PostgreSQL sink. They run one at a time, so that their throughput figures are comparable;
//! each also runs a synthetic driver loop (the `ckpt demo` loop: messages from memory,
//! `record-processed`, same store and batch) for reference.

use checkpoint_testkit::servers::{self as common, ServerKind};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use checkpoint_guest::keys::StageKeys;
use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::sinks::{PostgresSink, Sink, SqliteSink};
use checkpoint_host::sources::redis_streams::{
    RedisStreams, RedisStreamsConsumer, RedisStreamsOptions, StreamEntry, entry_offset,
    split_message_id,
};
use checkpoint_host::storage::open_storage;
use checkpoint_host::{
    Admission, Checkpoint, Checkpointer, Codec, Consumer, Driver, DriverOptions, Lookup,
    OperatorState, Options, OverflowPolicy, Policy, ProcessedMessage, Progress, StageState,
    Storage,
};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

const ENV_WORKER: &str = "REDIS_STREAMS_WORKER";
const RUN_ID: &str = "streams";
const STAGE: &str = "sum";
/// Kills per scenario; after these the worker runs undisturbed, so the run ends.
const KILLS: u32 = 22;
/// A run that needs more incarnations than this is stuck: the test fails.
const MAX_STARTS: u32 = 300;
/// How long a read waits for new entries: an empty read after it means the streams are drained.
const BLOCK: Duration = Duration::from_millis(200);
/// Consumer names rotate every this many incarnations, so a dead one's entries get claimed.
const NAME_EVERY: u32 = 3;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The worker process.

#[derive(Clone, Debug, Serialize, Deserialize)]
enum SinkConfig {
    Sqlite { path: PathBuf, table: String },
    Postgres { url: String, table: String },
}

/// Where a worker dies by its own SIGKILL.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
enum KillPoint {
    /// In its k-th ack call: the checkpoint is durable, `XACK` not sent.
    Ack(u32),
    /// After its k-th sink commit, before the checkpoint recording it.
    SinkCommit(u32),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct WorkerConfig {
    redis_url: String,
    streams: Vec<String>,
    group: String,
    consumer: String,
    store_url: String,
    namespace: String,
    sink: SinkConfig,
    /// 0: process in order on the driver's thread; n: a pool of n threads.
    pool: usize,
    batch: u32,
    max_in_flight: u32,
    kill: Option<KillPoint>,
    /// The first ack call fails (usually the ack recovery at open), as on a Redis hiccup: the
    /// entries it covers come again from the pending list and are answered `covered`.
    fail_first_ack: bool,
    log: PathBuf,
    seed: u64,
}

fn checkpoint_options(namespace: &str) -> Options {
    Options {
        namespace: namespace.to_owned(),
        max_retained: 3,
        max_checkpoint_bytes: 1 << 20,
    }
}

fn sum_name(stream: &str) -> String {
    format!("sum:{stream}")
}

/// A worker's log: one fact a line, each line one `write` to a file opened for appending, so a
/// SIGKILL cannot lose a line whose `write` returned.
#[derive(Clone)]
struct WorkerLog {
    file: Arc<Mutex<File>>,
}

impl WorkerLog {
    fn create(path: &Path) -> Result<WorkerLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening the worker log {}", path.display()))?;
        Ok(WorkerLog {
            file: Arc::new(Mutex::new(file)),
        })
    }

    fn line(&self, text: &str) {
        let mut file = lock(&self.file);
        file.write_all(format!("{text}\n").as_bytes())
            .expect("writing the worker log");
    }
}

/// Dies the way a crash does: SIGKILL, no destructor, no flush.
fn kill_myself(log: &WorkerLog, why: &str) -> ! {
    log.line(&format!("kill {why}"));
    let _ = Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The worker's consumer: checks each ack against the durable latest checkpoint, read on a
/// store connection of its own, and only then sends the `XACK`.
struct CheckedAcks {
    inner: RedisStreamsConsumer,
    watcher: Box<dyn Storage>,
    codec: Codec,
    latest_key: String,
    log: WorkerLog,
    kill_at: Option<u32>,
    fail_first: bool,
    calls: u32,
}

impl CheckedAcks {
    fn durable(&mut self) -> Result<Option<Checkpoint>, String> {
        match self.watcher.get(&self.latest_key) {
            Ok(Lookup::Found(entry)) => self
                .codec
                .decode(&entry.value)
                .map(Some)
                .map_err(|e| format!("decoding the latest: {e}")),
            Ok(Lookup::Missing) => Ok(None),
            Err(e) => Err(format!("reading the latest: {e:?}")),
        }
    }
}

impl Consumer for CheckedAcks {
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String> {
        self.calls += 1;
        let durable = self.durable().unwrap_or_else(|e| {
            self.log.line(&format!("violation unchecked ack: {e}"));
            None
        });
        let mut violations = 0;
        for id in &message_ids {
            let covered = split_message_id(id).and_then(|(stream, entry)| {
                let offset = entry_offset(entry)?;
                let position = durable
                    .as_ref()?
                    .sources
                    .iter()
                    .find(|s| s.name == stream)?
                    .watermark
                    .offset;
                Some(offset < position)
            });
            if covered != Some(true) {
                violations += 1;
                self.log.line(&format!(
                    "violation acked {id} not covered by the durable checkpoint"
                ));
            }
        }
        self.log
            .line(&format!("ack {} {violations}", message_ids.len()));
        if Some(self.calls) == self.kill_at {
            kill_myself(&self.log, "ack");
        }
        if self.fail_first && self.calls == 1 {
            self.log.line("ack-failed");
            return Err("injected ack failure".into());
        }
        self.inner.ack(message_ids)
    }
}

/// What processing an entry yields, before its effects are applied in release order.
struct Done {
    stream: String,
    id: String,
    value: i64,
}

fn work(entry: &StreamEntry) -> Done {
    let value = entry
        .field("n")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("entry {} has no number n", entry.message.id));
    Done {
        stream: entry.message.source.clone(),
        id: entry.message.id.clone(),
        value,
    }
}

/// Runs `work` in order on this thread, or on a pool of threads that finish in any order.
enum Executor {
    Inline(Vec<(u64, Done)>),
    Pool {
        jobs: mpsc::Sender<(u64, StreamEntry)>,
        results: mpsc::Receiver<(u64, Done)>,
        outstanding: usize,
    },
}

impl Executor {
    fn new(threads: usize, seed: u64) -> Executor {
        if threads == 0 {
            return Executor::Inline(Vec::new());
        }
        let (jobs, job_rx) = mpsc::channel::<(u64, StreamEntry)>();
        let (done_tx, results) = mpsc::channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for t in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let mut rng = StdRng::seed_from_u64(seed ^ t as u64);
            std::thread::spawn(move || {
                loop {
                    let job = lock(&job_rx).recv();
                    let Ok((ticket, entry)) = job else { return };
                    // Uneven work, so that entries finish out of order.
                    std::thread::sleep(Duration::from_micros(rng.random_range(0..400)));
                    if done_tx.send((ticket, work(&entry))).is_err() {
                        return;
                    }
                }
            });
        }
        Executor::Pool {
            jobs,
            results,
            outstanding: 0,
        }
    }

    fn submit(&mut self, ticket: u64, entry: &StreamEntry) {
        match self {
            Executor::Inline(ready) => ready.push((ticket, work(entry))),
            Executor::Pool {
                jobs, outstanding, ..
            } => {
                jobs.send((ticket, entry.clone())).expect("pool alive");
                *outstanding += 1;
            }
        }
    }

    fn outstanding(&self) -> usize {
        match self {
            Executor::Inline(ready) => ready.len(),
            Executor::Pool { outstanding, .. } => *outstanding,
        }
    }

    /// A finished entry: waits for one when `wait`, else only takes one that is ready.
    fn next(&mut self, wait: bool) -> Option<(u64, Done)> {
        match self {
            Executor::Inline(ready) => ready.pop(),
            Executor::Pool {
                results,
                outstanding,
                ..
            } => {
                if *outstanding == 0 {
                    return None;
                }
                let got = if wait {
                    results.recv().ok()
                } else {
                    results.try_recv().ok()
                };
                if got.is_some() {
                    *outstanding -= 1;
                }
                got
            }
        }
    }
}

struct Stage {
    driver: Driver,
    sink: Box<dyn Sink>,
    sums: BTreeMap<String, i64>,
    finished: HashMap<u64, Done>,
    log: WorkerLog,
    commits: u32,
    kill_at_commit: Option<u32>,
}

impl Stage {
    /// A finished entry: completes it and applies every released one, in release order.
    fn done(&mut self, ticket: u64, done: Done) -> Result<()> {
        self.finished.insert(ticket, done);
        let completion = self.driver.complete(ticket)?;
        for released in completion.released {
            let done = self
                .finished
                .remove(&released)
                .context("a released ticket that never finished")?;
            let sum = self.sums.entry(done.stream).or_insert(0);
            *sum += done.value;
            self.sink.append(&done.id, sum.to_string().as_bytes());
        }
        if completion.due {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The sink's rows durable, then the checkpoint that records them with the sums.
    fn checkpoint(&mut self) -> Result<()> {
        let position = self.sink.commit()?;
        self.commits += 1;
        if Some(self.commits) == self.kill_at_commit {
            kill_myself(&self.log, "sink");
        }
        let state = StageState {
            sinks: vec![position],
            operator_states: self
                .sums
                .iter()
                .map(|(stream, sum)| OperatorState {
                    name: sum_name(stream),
                    state: sum.to_le_bytes().to_vec(),
                })
                .collect(),
        };
        if let Progress::Checkpointed(receipt) = self.driver.flush(Some(&state), now_ms())? {
            self.log.line(&format!("durable {}", receipt.sequence));
        }
        Ok(())
    }
}

fn run_worker(config: &WorkerConfig) -> Result<()> {
    let log = WorkerLog::create(&config.log)?;
    log.line(&format!("start {}", std::process::id()));
    let mut options =
        RedisStreamsOptions::new(&config.group, &config.consumer, config.streams.clone());
    options.count = 50;
    options.block = BLOCK;
    let mut source = RedisStreams::open(&config.redis_url, options)?;
    log.line(&format!("claimed {}", source.claimed()));

    let (kill_at_ack, kill_at_commit) = match config.kill {
        Some(KillPoint::Ack(k)) => (Some(k), None),
        Some(KillPoint::SinkCommit(k)) => (None, Some(k)),
        None => (None, None),
    };
    let consumer = CheckedAcks {
        inner: source.consumer(),
        watcher: open_storage(&config.store_url)?,
        codec: Codec::new()?,
        latest_key: StageKeys::new(&config.namespace, RUN_ID, STAGE).latest(),
        log: log.clone(),
        kill_at: kill_at_ack,
        fail_first: config.fail_first_ack,
        calls: 0,
    };
    let storage = open_storage(&config.store_url)?;
    let checkpointer = Checkpointer::open(
        storage,
        Box::new(consumer),
        &checkpoint_options(&config.namespace),
    )?;
    let mut driver = checkpointer.open_driver(&DriverOptions {
        run_id: RUN_ID.into(),
        stage: STAGE.into(),
        epoch: 1,
        policy: Policy::PerBatch(config.batch),
        changelog_capacity: 0,
        overflow: OverflowPolicy::DropNew,
        max_in_flight: config.max_in_flight,
    })?;
    let resumed = driver.resumed_from()?.checkpoint;
    let mut sums = BTreeMap::new();
    for stream in &config.streams {
        let sum = match resumed
            .as_ref()
            .and_then(|c| c.operator_state(&sum_name(stream)))
        {
            Some(bytes) => i64::from_le_bytes(bytes.try_into()?),
            None => 0,
        };
        sums.insert(stream.clone(), sum);
    }
    let resumed = resumed.as_ref();
    let sink: Box<dyn Sink> = match &config.sink {
        SinkConfig::Sqlite { path, table } => {
            let sink = SqliteSink::open(path, table, resumed)?;
            log.line(&format!("truncated {}", sink.truncated()));
            Box::new(sink)
        }
        SinkConfig::Postgres { url, table } => {
            let sink = PostgresSink::open(url, table, resumed)?;
            log.line(&format!("truncated {}", sink.truncated()));
            Box::new(sink)
        }
    };
    let mut stage = Stage {
        driver,
        sink,
        sums,
        finished: HashMap::new(),
        log: log.clone(),
        commits: 0,
        kill_at_commit,
    };
    let mut executor = Executor::new(config.pool, config.seed);
    loop {
        let entries = source.read()?;
        if entries.is_empty() {
            break;
        }
        log.line(&format!("read {}", entries.len()));
        for entry in &entries {
            loop {
                match stage.driver.begin(&entry.message)? {
                    Admission::Admitted(ticket) => {
                        executor.submit(ticket, entry);
                        break;
                    }
                    Admission::Covered(_) => {
                        log.line(&format!("covered {}", entry.message.id));
                        break;
                    }
                    // The cap: finish earlier work (a checkpoint falls due at the cap).
                    Admission::Backpressure(_) => match executor.next(true) {
                        Some((ticket, done)) => stage.done(ticket, done)?,
                        None => stage.checkpoint()?,
                    },
                }
            }
            while let Some((ticket, done)) = executor.next(false) {
                stage.done(ticket, done)?;
            }
        }
    }
    while executor.outstanding() > 0 {
        if let Some((ticket, done)) = executor.next(true) {
            stage.done(ticket, done)?;
        }
    }
    stage.checkpoint()?;
    log.line("done");
    Ok(())
}

/// Entry point of a worker process: does nothing unless the parent set its environment.
/// Exits 0 once the streams are drained; 1 with the error on stderr otherwise.
#[test]
fn worker_process() {
    let Ok(config) = std::env::var(ENV_WORKER) else {
        return;
    };
    let config: WorkerConfig = serde_json::from_str(&config).expect("worker configuration");
    let code = match run_worker(&config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker failed: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------------
// The parent.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SinkKind {
    Sqlite,
    Postgres,
}

struct Scenario {
    what: &'static str,
    partitions: usize,
    pool: usize,
    sink: SinkKind,
    entries: u64,
    batch: u32,
    max_in_flight: u32,
}

/// The streams and what a correct run makes of them: entry `i` goes to stream
/// `i % partitions` with the number `n`; each entry's sink row holds its stream's running sum.
struct Input {
    redis: redis::Connection,
    streams: Vec<String>,
    added: u64,
    rows: BTreeMap<String, String>,
    sums: BTreeMap<String, i64>,
    ends: BTreeMap<String, u64>,
}

impl Input {
    fn new(redis_url: &str, streams: Vec<String>) -> Input {
        let redis = redis::Client::open(redis_url)
            .and_then(|c| c.get_connection())
            .expect("connecting to redis");
        Input {
            redis,
            streams,
            added: 0,
            rows: BTreeMap::new(),
            sums: BTreeMap::new(),
            ends: BTreeMap::new(),
        }
    }

    /// Appends `count` entries (`XADD`, one pipeline).
    fn add(&mut self, count: u64) {
        let mut pipe = redis::pipe();
        let mut values = Vec::new();
        for i in self.added..self.added + count {
            let stream = &self.streams[(i % self.streams.len() as u64) as usize];
            let n = (i as i64 * 7_919) % 1_009 - 300;
            pipe.cmd("XADD").arg(stream).arg("*").arg("n").arg(n);
            values.push((stream.clone(), n));
        }
        let ids: Vec<String> = pipe.query(&mut self.redis).expect("XADD");
        for ((stream, n), id) in values.into_iter().zip(ids) {
            let sum = self.sums.entry(stream.clone()).or_insert(0);
            *sum += n;
            self.rows.insert(format!("{stream}/{id}"), sum.to_string());
            let end = entry_offset(&id).expect("an id that fits an offset") + 1;
            self.ends.insert(stream, end);
        }
        self.added += count;
    }

    /// Entries pending in `group` over every stream (`XPENDING`).
    fn pending(&mut self, group: &str) -> u64 {
        let mut total = 0;
        for stream in &self.streams {
            let reply: redis::Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(group)
                .query(&mut self.redis)
                .expect("XPENDING");
            total += match reply {
                redis::Value::Array(parts) => match parts.first() {
                    Some(redis::Value::Int(n)) => u64::try_from(*n).expect("a count"),
                    other => panic!("XPENDING count {other:?}"),
                },
                other => panic!("XPENDING reply {other:?}"),
            };
        }
        total
    }
}

/// One group's run over the streams: its own store, sink and log.
struct Run {
    group: String,
    store_url: String,
    namespace: String,
    sink: SinkConfig,
    log: PathBuf,
}

/// What the log of a run says.
#[derive(Default, Debug)]
struct LogSummary {
    starts: u64,
    reads: u64,
    covered: u64,
    claimed: u64,
    truncated: u64,
    acked: u64,
    violations: Vec<String>,
    kills_ack: u64,
    kills_sink: u64,
    failed_acks: u64,
}

fn summarize(log: &Path) -> LogSummary {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut s = LogSummary::default();
    for line in text.lines() {
        let mut words = line.split(' ');
        let number = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
        match words.next() {
            Some("start") => s.starts += 1,
            Some("read") => s.reads += number(words.next()),
            Some("covered") => s.covered += 1,
            Some("claimed") => s.claimed += number(words.next()),
            Some("truncated") => s.truncated += number(words.next()),
            Some("ack") => {
                s.acked += number(words.next());
                if number(words.next()) > 0 {
                    s.violations.push(line.to_owned());
                }
            }
            Some("violation") => s.violations.push(line.to_owned()),
            Some("ack-failed") => s.failed_acks += 1,
            Some("kill") if line == "kill ack" => s.kills_ack += 1,
            Some("kill") => s.kills_sink += 1,
            _ => {}
        }
    }
    s
}

/// What a killed run did.
struct Kills {
    kills: u32,
    timed: u32,
    elapsed: Duration,
    /// Entries added because a worker finished before the last kill.
    added: u64,
}

struct Parent {
    exe: PathBuf,
    redis_url: String,
    scenario: &'static Scenario,
    dir: PathBuf,
    rng: StdRng,
}

impl Parent {
    fn config(
        &self,
        input: &Input,
        run: &Run,
        consumer: &str,
        kill: Option<KillPoint>,
        fail_first_ack: bool,
        seed: u64,
    ) -> WorkerConfig {
        WorkerConfig {
            redis_url: self.redis_url.clone(),
            streams: input.streams.clone(),
            group: run.group.clone(),
            consumer: consumer.to_owned(),
            store_url: run.store_url.clone(),
            namespace: run.namespace.clone(),
            sink: run.sink.clone(),
            pool: self.scenario.pool,
            batch: self.scenario.batch,
            max_in_flight: self.scenario.max_in_flight,
            kill,
            fail_first_ack,
            log: run.log.clone(),
            seed,
        }
    }

    fn spawn(&self, config: &WorkerConfig, n: u32) -> (Child, PathBuf) {
        let stderr = self.dir.join(format!("{}-{n}.stderr", config.group));
        let child = Command::new(&self.exe)
            .args(["worker_process", "--exact", "--test-threads=1"])
            .env(
                ENV_WORKER,
                serde_json::to_string(config).expect("config as JSON"),
            )
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("worker stderr file"))
            .spawn()
            .expect("starting a worker process");
        (child, stderr)
    }

    /// Runs one never-killed worker to the streams' end; returns how long it took.
    fn crash_free(&self, input: &Input, run: &Run) -> Duration {
        let started = Instant::now();
        let config = self.config(input, run, "reference", None, false, 1);
        let (mut child, stderr) = self.spawn(&config, 0);
        let status = child.wait().expect("waiting for the worker");
        assert!(
            status.success(),
            "the crash-free worker failed ({status}):\n{}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
        started.elapsed()
    }

    /// Starts workers until one finishes after `KILLS` kills: each of the first `KILLS` dies
    /// by a SIGKILL, from the parent after a pause of up to `pause_bound`, or its own at a
    /// kill point. A worker that finishes before is given more entries.
    fn killed(&mut self, input: &mut Input, run: &Run, pause_bound: Duration) -> Kills {
        let started = Instant::now();
        let (mut kills, mut timed, mut added) = (0u32, 0u32, 0u64);
        for n in 0..MAX_STARTS {
            let consumer = format!("worker-{}", n / NAME_EVERY);
            let mut pause = None;
            let mut kill = None;
            if kills < KILLS {
                match self.rng.random_range(0..3) {
                    0 => {
                        let bound = u64::try_from(pause_bound.as_micros()).unwrap_or(u64::MAX);
                        pause = Some(Duration::from_micros(self.rng.random_range(0..=bound)));
                    }
                    1 => kill = Some(KillPoint::Ack(self.rng.random_range(2..=4))),
                    _ => kill = Some(KillPoint::SinkCommit(self.rng.random_range(1..=3))),
                }
            }
            let (fail_first_ack, seed) = (self.rng.random_bool(0.5), self.rng.random());
            let config = self.config(input, run, &consumer, kill, fail_first_ack, seed);
            let (mut child, stderr) = self.spawn(&config, n);
            let spawned = Instant::now();
            let mut signalled = false;
            let status = loop {
                if let Some(status) = child.try_wait().expect("polling the worker") {
                    break status;
                }
                if pause.is_some_and(|p| spawned.elapsed() >= p) {
                    // It may have ended just now: then the signal finds it gone.
                    child.kill().expect("SIGKILL");
                    signalled = true;
                    break child.wait().expect("reaping the worker");
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            if status.success() {
                if kills >= KILLS {
                    return Kills {
                        kills,
                        timed,
                        elapsed: started.elapsed(),
                        added,
                    };
                }
                // Done before its kill: the producer goes on.
                let more = self.scenario.entries / 10;
                input.add(more);
                added += more;
                continue;
            }
            assert_eq!(
                status.signal(),
                Some(9),
                "worker {n} failed ({status}):\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
            kills += 1;
            timed += u32::from(signalled);
        }
        panic!("no worker finished in {MAX_STARTS} starts");
    }
}

/// The rows of a sink table, in position order.
fn sink_rows(sink: &SinkConfig) -> Vec<(i64, String, Vec<u8>)> {
    match sink {
        SinkConfig::Sqlite { path, table } => {
            let conn = rusqlite::Connection::open(path).expect("opening the sink file");
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT position, key, value FROM \"{table}\" ORDER BY position"
                ))
                .expect("reading the sink");
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("reading the sink")
                .collect::<Result<_, _>>()
                .expect("sink rows")
        }
        SinkConfig::Postgres { url, table } => {
            let mut client =
                postgres::Client::connect(url, postgres::NoTls).expect("connecting for the sink");
            client
                .query(
                    &format!("SELECT position, key, value FROM \"{table}\" ORDER BY position"),
                    &[],
                )
                .expect("reading the sink")
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        }
    }
}

/// The latest checkpoint of a run's stage.
fn latest(run: &Run) -> Checkpoint {
    let storage = open_storage(&run.store_url).expect("opening the store");
    let mut reader = Checkpointer::open(
        storage,
        Box::new(NullConsumer),
        &checkpoint_options(&run.namespace),
    )
    .expect("a checkpointer");
    reader.get(RUN_ID, STAGE).expect("the final checkpoint")
}

/// The synthetic driver loop of `ckpt demo` (messages from memory, `record-processed`) on a
/// fresh store of the same kind, same batch: entries per second.
fn synthetic_rate(store_url: &str, entries: u64, batch: u32) -> f64 {
    let started = Instant::now();
    let storage = open_storage(store_url).expect("opening the store");
    let checkpointer = Checkpointer::open(
        storage,
        Box::new(NullConsumer),
        &checkpoint_options("synthetic"),
    )
    .expect("a checkpointer");
    let mut driver = checkpointer
        .open_driver(&DriverOptions {
            run_id: RUN_ID.into(),
            stage: STAGE.into(),
            epoch: 1,
            policy: Policy::PerBatch(batch),
            changelog_capacity: 0,
            overflow: OverflowPolicy::DropNew,
            max_in_flight: 4096,
        })
        .expect("a driver");
    let mut offset = 0;
    while offset < entries {
        let chunk: Vec<ProcessedMessage> = (offset..entries.min(offset + 500))
            .map(common::source_message)
            .collect();
        offset += chunk.len() as u64;
        driver
            .record_processed_batch(&chunk, now_ms())
            .expect("recording");
    }
    driver.flush(None, now_ms()).expect("the last flush");
    entries as f64 / started.elapsed().as_secs_f64()
}

fn rows_by_key(rows: &[(i64, String, Vec<u8>)]) -> BTreeMap<String, String> {
    rows.iter()
        .map(|(_, k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

fn sums_of(checkpoint: &Checkpoint, streams: &[String]) -> BTreeMap<String, i64> {
    streams
        .iter()
        .map(|s| {
            let bytes = checkpoint
                .operator_state(&sum_name(s))
                .expect("a sum per stream");
            (
                s.clone(),
                i64::from_le_bytes(bytes.try_into().expect("8 bytes")),
            )
        })
        .collect()
}

/// One scenario at a time: their figures are compared with each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn run_scenario(scenario: &'static Scenario) {
    let _serial = lock(&SERIAL);
    let what = scenario.what;
    let Some(redis_url) = common::shared_server_url(ServerKind::Redis, what) else {
        return;
    };
    let postgres_url = match scenario.sink {
        SinkKind::Postgres => match common::shared_server_url(ServerKind::Postgres, what) {
            Some(url) => Some(url),
            None => return,
        },
        SinkKind::Sqlite => None,
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let name = common::unique_store_name("streams");
    let streams: Vec<String> = (0..scenario.partitions)
        .map(|p| format!("{name}:p{p}"))
        .collect();
    let mut input = Input::new(&redis_url, streams.clone());
    input.add(scenario.entries);

    let new_run = |group: &str| -> Run {
        let (store_url, sink) = match &postgres_url {
            Some(pg) => (
                common::fresh_store_url(ServerKind::Postgres, pg, "streams"),
                SinkConfig::Postgres {
                    url: pg.clone(),
                    table: common::unique_store_name("sink"),
                },
            ),
            None => (
                format!(
                    "sqlite:{}",
                    dir.path().join(format!("{group}-ck.db")).display()
                ),
                SinkConfig::Sqlite {
                    path: dir.path().join(format!("{group}-sink.db")),
                    table: "totals".into(),
                },
            ),
        };
        Run {
            group: group.to_owned(),
            store_url,
            namespace: group.to_owned(),
            sink,
            log: dir.path().join(format!("{group}.log")),
        }
    };
    let seed = std::env::var("REDIS_STREAMS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut parent = Parent {
        exe: std::env::current_exe().expect("test binary"),
        redis_url: redis_url.clone(),
        scenario,
        dir: dir.path().to_owned(),
        rng: StdRng::seed_from_u64(seed),
    };

    let reference = new_run("reference");
    let crash_free = parent.crash_free(&input, &reference);
    let main = new_run("main");
    // Pauses up to a quarter of a crash-free run: most timed kills land mid-run.
    let killed = parent.killed(&mut input, &main, crash_free / 4);
    if killed.added > 0 {
        // The crash-free run reads what the producer added meanwhile.
        parent.crash_free(&input, &reference);
    }
    let log = summarize(&main.log);
    let reference_log = summarize(&reference.log);
    let entries = input.added;

    // Every entry processed: every stream read to its end, a sink row per entry.
    let last = latest(&main);
    let reference_last = latest(&reference);
    let positions: BTreeMap<String, u64> = last
        .sources
        .iter()
        .map(|s| (s.name.clone(), s.watermark.offset))
        .collect();
    let rows = sink_rows(&main.sink);
    let reference_rows = sink_rows(&reference.sink);
    let dense = rows
        .iter()
        .enumerate()
        .all(|(i, (p, _, _))| *p == i as i64 + 1);
    let mut seen = BTreeSet::new();
    let duplicates = rows
        .iter()
        .filter(|(_, k, _)| !seen.insert(k.clone()))
        .count();
    let missing = input.rows.keys().filter(|k| !seen.contains(*k)).count();
    let same_state = sums_of(&last, &streams) == sums_of(&reference_last, &streams);
    let pending_main = input.pending(&main.group);
    let pending_reference = input.pending(&reference.group);
    let synthetic = synthetic_rate(
        &match &postgres_url {
            Some(pg) => common::fresh_store_url(ServerKind::Postgres, pg, "synthetic"),
            None => format!("sqlite:{}", dir.path().join("synthetic.db").display()),
        },
        scenario.entries,
        scenario.batch,
    );
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    // Straight to stderr, past libtest's capture: `make test` shows the figures.
    let _ = writeln!(
        std::io::stderr().lock(),
        "redis streams [{what}]: {entries} entries ({} added during the run), {} kills ({} \
         at a random moment, {} between the durable write and the ack, {} between the sink \
         commit and the checkpoint) over {} starts; {} deliveries ({} covered and acked again, \
         {} processed again; {} ack calls failed on purpose), {} claimed from dead consumers, {} sink rows truncated at \
         reopen; sink rows {} ({duplicates} duplicates, {missing} missing); state equal to the \
         crash-free run: {same_state}; pending at the end {pending_main} (crash-free run \
         {pending_reference}); {} ids acked, {} before a durable checkpoint; throughput \
         crash-free {:.0} entries/s, with kills {:.0} entries/s, synthetic driver loop {:.0} \
         entries/s (seed {seed})",
        killed.added,
        killed.kills,
        killed.timed,
        log.kills_ack,
        log.kills_sink,
        log.starts,
        log.reads,
        log.covered,
        log.reads.saturating_sub(entries + log.covered),
        log.failed_acks,
        log.claimed,
        log.truncated,
        rows.len(),
        log.acked,
        log.violations.len(),
        rate(scenario.entries, crash_free),
        rate(entries, killed.elapsed),
        synthetic,
    );

    assert!(killed.kills >= 20, "{what}: only {} kills", killed.kills);
    assert!(
        log.violations.is_empty() && reference_log.violations.is_empty(),
        "{what}: acks before a durable checkpoint: {:?} {:?}",
        log.violations,
        reference_log.violations
    );
    assert_eq!(
        positions, input.ends,
        "{what}: streams not read to their end"
    );
    assert_eq!(
        (duplicates, missing),
        (0, 0),
        "{what}: duplicate and missing sink rows"
    );
    assert!(dense, "{what}: sink positions are not 1..=n");
    assert_eq!(rows.len() as u64, entries, "{what}: sink rows");
    assert_eq!(
        rows_by_key(&rows),
        input.rows,
        "{what}: sink rows differ from the expected ones"
    );
    assert_eq!(
        rows_by_key(&rows),
        rows_by_key(&reference_rows),
        "{what}: sink rows differ from the crash-free run's"
    );
    assert_eq!(sums_of(&last, &streams), input.sums, "{what}: final sums");
    assert!(
        same_state,
        "{what}: state differs from the crash-free run's"
    );
    assert_eq!(pending_main, 0, "{what}: entries left pending in the group");
    assert_eq!(
        pending_reference, 0,
        "{what}: entries left pending by the crash-free run"
    );
    assert!(
        log.acked >= entries,
        "{what}: {} acks for {entries} entries",
        log.acked
    );
}

static ONE_STREAM_IN_ORDER_SQLITE: Scenario = Scenario {
    what: "1 stream, in order, SQLite store and sink",
    partitions: 1,
    pool: 0,
    sink: SinkKind::Sqlite,
    entries: 3_000,
    batch: 20,
    max_in_flight: 256,
};

static FOUR_STREAMS_POOL_SQLITE: Scenario = Scenario {
    what: "4 streams, pool of 4 out of order, max-in-flight 24, SQLite store and sink",
    partitions: 4,
    pool: 4,
    sink: SinkKind::Sqlite,
    entries: 4_000,
    batch: 16,
    max_in_flight: 24,
};

static FOUR_STREAMS_IN_ORDER_POSTGRES: Scenario = Scenario {
    what: "4 streams, in order, PostgreSQL store and sink",
    partitions: 4,
    pool: 0,
    sink: SinkKind::Postgres,
    entries: 4_000,
    batch: 20,
    max_in_flight: 256,
};

static ONE_STREAM_POOL_POSTGRES: Scenario = Scenario {
    what: "1 stream, pool of 4 out of order, max-in-flight 24, PostgreSQL store and sink",
    partitions: 1,
    pool: 4,
    sink: SinkKind::Postgres,
    entries: 3_000,
    batch: 16,
    max_in_flight: 24,
};

#[test]
fn one_stream_in_order_is_processed_exactly_once_across_kills() {
    run_scenario(&ONE_STREAM_IN_ORDER_SQLITE);
}

#[test]
fn four_partitions_on_a_worker_pool_are_processed_exactly_once_across_kills() {
    run_scenario(&FOUR_STREAMS_POOL_SQLITE);
}

#[test]
fn four_partitions_with_a_postgres_sink_are_processed_exactly_once_across_kills() {
    run_scenario(&FOUR_STREAMS_IN_ORDER_POSTGRES);
}

#[test]
fn out_of_order_completion_with_a_postgres_sink_is_exactly_once_across_kills() {
    run_scenario(&ONE_STREAM_POOL_POSTGRES);
}
