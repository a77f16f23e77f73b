//! Worker processes that share one store, killed and restarted at random: 4 workers on 2 (run,
//! stage) pairs, 2 competing per pair, on SQLite, PostgreSQL and Redis.
//!
//! Every worker is this test binary re-run as `worker_process` (as `concurrency.rs` does). It
//! opens its own connection, checkpointer and driver with the epoch the parent gave it, reads
//! the resume point and claims the stage (writes it back under its epoch, see [`claim`]), then
//! feeds a deterministic source (message `n` follows from `n`) to the driver until the source
//! ends or it is fenced (exit code [`FENCED_EXIT`]). It logs what it saw to a file of its own,
//! one fact a line: resume points, durable checkpoints, acks (its consumer first checks each
//! ack against the durable latest read on a second connection).
//!
//! The parent SIGKILLs workers at seeded random moments and restarts every worker that died or
//! was fenced with the next epoch of its pair, so a restarted worker fences the stale one. When
//! every worker has finished, it reads the store back and checks:
//! - no lost update: every durable checkpoint a worker was told of is in the retained history
//!   (every checkpoint is retained) with the same offset and epoch, the final latest is the
//!   source's end, and every acked message is below it;
//! - no regression: the history's sequences and offsets grow (a claim repeats the offset under
//!   a newer epoch) and its epochs never decrease; every resume point is at or past every
//!   checkpoint known durable when the worker started; no resume point comes from a fallback
//!   (damaged data), except the counted read race described at `log_resume`;
//! - no ack before durability: no worker's consumer saw an ack its durable latest did not cover;
//! - stale writers fenced: fenced exits and fenced errors are counted; at least one per backend.
//!
//! `MANY_PROCESSES_SEED=n` replays a schedule of decisions (which worker is killed after which
//! pause); the processes' own timing still varies from run to run.

use checkpoint_testkit::servers as common;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use checkpoint_guest::keys::StageKeys;
use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::storage::open_storage;
use checkpoint_host::{
    Checkpoint, CheckpointError, Checkpointer, Codec, Consumer, DriverOptions, Error, Lookup,
    Options, OverflowPolicy, Policy, Resume, ResumeOrigin, Storage,
};
use common::{ServerKind, source_message, source_offset};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// The (run-id, stage) pairs; each has [`WORKERS_PER_PAIR`] workers.
const PAIRS: [(&str, &str); 2] = [("run-1", "parse"), ("run-2", "enrich")];
const WORKERS_PER_PAIR: usize = 2;
/// Messages per pair: the source ends at this offset.
const END: u64 = 3_000;
/// The driver checkpoints every `BATCH` messages; a worker feeds it `BATCH` at a time, so each
/// call writes exactly one checkpoint.
const BATCH: u32 = 10;
/// Far above the checkpoints a pair can write (END / BATCH), so every checkpoint is retained
/// and every durable receipt can be looked up in the history.
const MAX_RETAINED: u32 = 2_000;
/// How long a worker works on one chunk of `BATCH` messages before recording them: the run
/// lasts a few seconds, so that kills land all along it, not after it.
const WORK_PER_CHUNK: Duration = Duration::from_millis(8);
/// Exit code of a worker stopped by `fenced`.
const FENCED_EXIT: i32 = 17;
/// Kills per backend; after these the workers run undisturbed, so the run ends.
const MAX_KILLS: u32 = 16;
/// A run that needs more worker starts than this is stuck: the test fails.
const MAX_STARTS: usize = 600;

const ENV_URL: &str = "MANY_WORKER_URL";
const ENV_NAMESPACE: &str = "MANY_WORKER_NAMESPACE";
const ENV_PAIR: &str = "MANY_WORKER_PAIR";
const ENV_EPOCH: &str = "MANY_WORKER_EPOCH";
const ENV_LOG: &str = "MANY_WORKER_LOG";

fn options(namespace: &str) -> Options {
    Options {
        namespace: namespace.to_owned(),
        max_retained: MAX_RETAINED,
        max_checkpoint_bytes: 4096,
    }
}

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

/// What the parent tells a worker, through its environment.
struct WorkerConfig {
    url: String,
    namespace: String,
    pair: usize,
    epoch: u64,
    log: PathBuf,
}

impl WorkerConfig {
    /// The configuration of this process, when it was started as a worker.
    fn from_env() -> Option<WorkerConfig> {
        let var = |name: &str| std::env::var(name).ok();
        Some(WorkerConfig {
            url: var(ENV_URL)?,
            namespace: var(ENV_NAMESPACE)?,
            pair: var(ENV_PAIR)?.parse().ok()?,
            epoch: var(ENV_EPOCH)?.parse().ok()?,
            log: PathBuf::from(var(ENV_LOG)?),
        })
    }

    fn run_id(&self) -> &'static str {
        PAIRS[self.pair].0
    }

    fn stage(&self) -> &'static str {
        PAIRS[self.pair].1
    }
}

/// A worker's log: one fact a line, each line one `write` to a file opened for appending.
///
/// A SIGKILL cannot lose a line whose `write` returned (the kernel has it); acks are synced to
/// disk as well, as a source that forgets acked messages would need them to be.
#[derive(Clone)]
struct WorkerLog {
    file: Arc<Mutex<File>>,
}

impl WorkerLog {
    fn create(path: &Path) -> WorkerLog {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("opening the worker log {}: {e}", path.display()));
        WorkerLog {
            file: Arc::new(Mutex::new(file)),
        }
    }

    fn line(&self, text: &str, sync: bool) {
        let mut file = lock(&self.file);
        file.write_all(format!("{text}\n").as_bytes())
            .expect("writing the worker log");
        if sync {
            file.sync_data().expect("syncing the worker log");
        }
    }
}

/// The worker's consumer: checks each ack against the durable latest read on a connection of
/// its own, then records the acked offsets in the log.
struct AckLog {
    log: WorkerLog,
    watcher: Box<dyn Storage>,
    codec: Codec,
    latest_key: String,
}

impl AckLog {
    /// The offset the durable latest covers (0 when none), or why it could not be read.
    fn durable_offset(&mut self) -> Result<u64, String> {
        match self.watcher.get(&self.latest_key) {
            Ok(Lookup::Found(entry)) => self
                .codec
                .decode(&entry.value)
                .map(|c| c.watermark.offset)
                .map_err(|e| format!("decoding the latest: {e}")),
            Ok(Lookup::Missing) => Ok(0),
            Err(e) => Err(format!("reading the latest: {e:?}")),
        }
    }
}

impl Consumer for AckLog {
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String> {
        let durable = match self.durable_offset() {
            Ok(offset) => offset,
            Err(e) => {
                self.log
                    .line(&format!("violation ack unchecked: {e}"), true);
                0
            }
        };
        let mut offsets = Vec::with_capacity(message_ids.len());
        for id in &message_ids {
            match source_offset(id) {
                Some(offset) if offset < durable => offsets.push(offset.to_string()),
                Some(offset) => {
                    self.log.line(
                        &format!("violation acked {id} while the durable latest covers {durable}"),
                        true,
                    );
                    offsets.push(offset.to_string());
                }
                None => self
                    .log
                    .line(&format!("violation acked unknown {id}"), true),
            }
        }
        self.log.line(&format!("ack {}", offsets.join(" ")), true);
        Ok(())
    }
}

/// Entry point of a worker process: does nothing unless the parent set the worker's
/// environment. Exits 0 at the source's end, [`FENCED_EXIT`] when fenced; panics (101) on
/// anything unexpected.
#[test]
fn worker_process() {
    let Some(config) = WorkerConfig::from_env() else {
        return;
    };
    let code = run_worker(&config);
    std::process::exit(code);
}

fn run_worker(config: &WorkerConfig) -> i32 {
    let log = WorkerLog::create(&config.log);
    let driver_options = DriverOptions {
        run_id: config.run_id().to_owned(),
        stage: config.stage().to_owned(),
        epoch: config.epoch,
        policy: Policy::PerBatch(BATCH),
        changelog_capacity: 0,
        overflow: OverflowPolicy::DropNew,
        max_in_flight: 4096,
    };
    let latest_key = StageKeys::new(&config.namespace, config.run_id(), config.stage()).latest();
    // One session per pass: own connections, checkpointer and driver. A session ends when a
    // peer moved the stage under it (`conflict`, `regression`) or the store failed: the next
    // one re-reads the resume point.
    loop {
        let storage = open_storage(&config.url).expect("opening the store");
        let consumer = AckLog {
            log: log.clone(),
            watcher: open_storage(&config.url).expect("opening the ack watcher's store"),
            codec: Codec::new().expect("loading the component for the ack watcher"),
            latest_key: latest_key.clone(),
        };
        let mut checkpointer =
            Checkpointer::open(storage, Box::new(consumer), &options(&config.namespace))
                .expect("opening the checkpointer");
        match claim(&mut checkpointer, config, &log) {
            Ok(()) => {}
            Err(SessionEnd::Fenced) => return FENCED_EXIT,
            Err(SessionEnd::Reopen) => continue,
        }
        let mut driver = match checkpointer.open_driver(&driver_options) {
            Ok(driver) => driver,
            Err(e) => match session_end(&e, &log) {
                SessionEnd::Fenced => return FENCED_EXIT,
                SessionEnd::Reopen => continue,
            },
        };
        let resume = driver.resumed_from().expect("reading the resume point");
        log_resume(&log, &resume);
        let mut position = resume.point.watermark.offset;
        while position < END {
            let chunk: Vec<_> = (position..(position + u64::from(BATCH)).min(END))
                .map(source_message)
                .collect();
            std::thread::sleep(WORK_PER_CHUNK);
            match driver.record_processed_batch(&chunk, now_ms()) {
                Ok(progress) => {
                    if let Some(receipt) = progress.checkpoints.last() {
                        let cursor = driver.cursor().expect("reading the driver's cursor");
                        assert_eq!(cursor.sequence, receipt.sequence, "cursor behind receipt");
                        log.line(
                            &format!(
                                "durable {} {} {}",
                                cursor.sequence, cursor.watermark.offset, cursor.epoch
                            ),
                            false,
                        );
                    }
                    position = chunk.last().map_or(position, |m| m.next_offset);
                }
                Err(e) => match session_end(&e, &log) {
                    SessionEnd::Fenced => return FENCED_EXIT,
                    SessionEnd::Reopen => break,
                },
            }
        }
        if position >= END {
            // END is a multiple of BATCH, so nothing is pending; a flush proves it.
            let last = driver.flush(None, now_ms()).expect("flushing at the end");
            assert!(
                matches!(last, checkpoint_host::Progress::Pending(0)),
                "messages pending at the end: {last:?}"
            );
            log.line(&format!("done {position}"), false);
            return 0;
        }
    }
}

/// Why a worker's session ended early.
enum SessionEnd {
    /// A newer epoch owns the stage: the worker stops.
    Fenced,
    /// A peer moved the stage, or the store failed: a new session re-reads the resume point.
    Reopen,
}

/// Logs an error that ends a session and says which end it is; panics on any other error.
fn session_end(error: &Error, log: &WorkerLog) -> SessionEnd {
    match error {
        Error::Checkpoint(CheckpointError::Fenced(f)) => {
            log.line(
                &format!("fenced {} {}", f.stored_epoch, f.attempted_epoch),
                false,
            );
            SessionEnd::Fenced
        }
        Error::Checkpoint(CheckpointError::Conflict(_)) => {
            log.line("reopen conflict", false);
            SessionEnd::Reopen
        }
        Error::Checkpoint(CheckpointError::Regression(_)) => {
            log.line("reopen regression", false);
            SessionEnd::Reopen
        }
        Error::Checkpoint(CheckpointError::Storage(m)) => {
            log.line(&format!("reopen storage {m}"), false);
            SessionEnd::Reopen
        }
        e => panic!("unexpected error: {e}"),
    }
}

fn log_resume(log: &WorkerLog, resume: &Resume) {
    let origin = match &resume.origin {
        ResumeOrigin::Latest => "latest",
        ResumeOrigin::Fresh => "fresh",
        // Nothing damages the store here, so any fallback is a violation. (A peer's first
        // write landing between `resume-point`'s read of the latest and its listing once
        // showed up as one; the component now reads the latest again in that case.)
        ResumeOrigin::Fallback(_) => "fallback",
    };
    log.line(
        &format!(
            "resume {} {} {} {origin}",
            resume.point.sequence, resume.point.watermark.offset, resume.point.epoch
        ),
        false,
    );
}

/// Takes the stage over before processing anything: reads the resume point and writes it
/// back under this worker's epoch (same offset, next sequence, nothing to ack). From then on
/// every older writer is fenced at its next write. Without the claim a new owner that needs
/// longer from its resume point to its first write than the old owner needs between two
/// writes would lose every race (`regression`) and never take over.
fn claim(
    checkpointer: &mut Checkpointer,
    config: &WorkerConfig,
    log: &WorkerLog,
) -> Result<(), SessionEnd> {
    loop {
        let read = |checkpointer: &mut Checkpointer| {
            let resume = checkpointer
                .resume_point(config.run_id(), config.stage())
                .map_err(|e| session_end(&e, log))?;
            log_resume(log, &resume);
            Ok(resume)
        };
        let resume = read(checkpointer)?;
        let point = resume.point;
        let claim = Checkpoint {
            run_id: config.run_id().to_owned(),
            stage: config.stage().to_owned(),
            sequence: point.sequence + 1,
            epoch: config.epoch,
            watermark: point.watermark,
            sources: vec![],
            sinks: vec![],
            operator_states: vec![],
            idempotency_key: format!("claim-{}", config.epoch),
            at_ms: now_ms(),
        };
        match checkpointer.write(&claim, &[]) {
            Ok(receipt) => {
                log.line(
                    &format!(
                        "durable {} {} {}",
                        receipt.sequence, claim.watermark.offset, claim.epoch
                    ),
                    false,
                );
                return Ok(());
            }
            // A peer wrote between the read and the write: read again and claim again.
            Err(Error::Checkpoint(
                CheckpointError::Conflict(_) | CheckpointError::Regression(_),
            )) => log.line("reclaim", false),
            Err(e) => return Err(session_end(&e, log)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What a worker's log says.

#[derive(Debug)]
enum Fact {
    Resume {
        sequence: u64,
        offset: u64,
        origin: String,
    },
    Durable {
        sequence: u64,
        offset: u64,
        epoch: u64,
    },
    Ack(Vec<u64>),
    Violation(String),
    Fenced {
        stored: u64,
        attempted: u64,
    },
    Reopen(String),
    Done,
}

/// The facts of a log, in order. A line still being written (no newline yet) is left out.
fn read_log(path: &Path) -> Vec<Fact> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(parse_fact).collect()
}

fn parse_fact(line: &str) -> Fact {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let numbers = || -> Vec<u64> {
        rest.split(' ')
            .filter_map(|n| n.parse().ok())
            .collect::<Vec<u64>>()
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let number = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("worker log line {line:?}: field {i} is no number"))
    };
    match word {
        "resume" => Fact::Resume {
            sequence: number(0),
            offset: number(1),
            origin: fields.get(3).copied().unwrap_or_default().to_owned(),
        },
        "durable" => Fact::Durable {
            sequence: number(0),
            offset: number(1),
            epoch: number(2),
        },
        "ack" => Fact::Ack(numbers()),
        "violation" => Fact::Violation(rest.to_owned()),
        "fenced" => Fact::Fenced {
            stored: number(0),
            attempted: number(1),
        },
        "reopen" => Fact::Reopen(fields.first().copied().unwrap_or_default().to_owned()),
        "reclaim" => Fact::Reopen("reclaim".to_owned()),
        "done" => Fact::Done,
        _ => panic!("unknown worker log line {line:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: starts, kills and restarts workers.

/// How a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Done,
    Fenced,
    Killed,
}

/// One started worker process.
struct Incarnation {
    pair: usize,
    epoch: u64,
    log: PathBuf,
    stderr: PathBuf,
    /// The highest offset any worker of the pair had logged as durable before this one
    /// started: its resume point must not be below it.
    floor: u64,
    ending: Option<Ending>,
}

/// A place for one worker; when its process ends (other than done) a new one takes it.
struct Slot {
    pair: usize,
    running: Option<(Child, usize)>,
    restart_at: Option<Instant>,
    done: bool,
}

struct Fleet {
    exe: PathBuf,
    url: String,
    namespace: String,
    dir: PathBuf,
    rng: StdRng,
    slots: Vec<Slot>,
    incarnations: Vec<Incarnation>,
    next_epoch: [u64; PAIRS.len()],
    kills: u32,
}

impl Fleet {
    fn start(&mut self, slot: usize) {
        assert!(
            self.incarnations.len() < MAX_STARTS,
            "the pairs did not reach offset {END} after {MAX_STARTS} worker starts"
        );
        let pair = self.slots[slot].pair;
        let epoch = self.next_epoch[pair];
        self.next_epoch[pair] += 1;
        let index = self.incarnations.len();
        let log = self.dir.join(format!("worker-{index}.log"));
        let stderr = self.dir.join(format!("worker-{index}.stderr"));
        let floor = self.durable_floor(pair);
        let child = Command::new(&self.exe)
            .args(["worker_process", "--exact", "--test-threads=1"])
            .env(ENV_URL, &self.url)
            .env(ENV_NAMESPACE, &self.namespace)
            .env(ENV_PAIR, pair.to_string())
            .env(ENV_EPOCH, epoch.to_string())
            .env(ENV_LOG, &log)
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("worker stderr file"))
            .spawn()
            .expect("starting a worker process");
        self.incarnations.push(Incarnation {
            pair,
            epoch,
            log,
            stderr,
            floor,
            ending: None,
        });
        self.slots[slot].running = Some((child, index));
        self.slots[slot].restart_at = None;
    }

    /// The highest durable offset logged so far by the workers of `pair`.
    fn durable_floor(&self, pair: usize) -> u64 {
        self.incarnations
            .iter()
            .filter(|i| i.pair == pair)
            .flat_map(|i| read_log(&i.log))
            .filter_map(|fact| match fact {
                Fact::Durable { offset, .. } => Some(offset),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Records how the process of `slot` ended and schedules its successor.
    fn ended(&mut self, slot: usize, status: ExitStatus, killed: bool) {
        let Some((_, index)) = self.slots[slot].running.take() else {
            return;
        };
        let ending = match status.code() {
            Some(0) => Ending::Done,
            Some(FENCED_EXIT) => Ending::Fenced,
            None if killed => Ending::Killed,
            _ => panic!(
                "worker {index} failed ({status}); stderr:\n{}",
                std::fs::read_to_string(&self.incarnations[index].stderr).unwrap_or_default()
            ),
        };
        self.incarnations[index].ending = Some(ending);
        let now = Instant::now();
        match ending {
            Ending::Done => self.slots[slot].done = true,
            // A supervisor restarts a killed worker at once; a fenced one stands by a little
            // while, as a standby would, and then takes the stage over.
            Ending::Killed => self.slots[slot].restart_at = Some(now),
            Ending::Fenced => {
                let pause = Duration::from_millis(self.rng.random_range(0..=300));
                self.slots[slot].restart_at = Some(now + pause);
            }
        }
    }

    fn run(&mut self) {
        for slot in 0..self.slots.len() {
            self.start(slot);
        }
        while !self.slots.iter().all(|s| s.done) {
            std::thread::sleep(Duration::from_millis(self.rng.random_range(5..=60)));
            for slot in 0..self.slots.len() {
                let status = match &mut self.slots[slot].running {
                    Some((child, _)) => child.try_wait().expect("polling a worker"),
                    None => None,
                };
                if let Some(status) = status {
                    self.ended(slot, status, false);
                }
            }
            if self.kills < MAX_KILLS && self.rng.random_ratio(1, 8) {
                let running: Vec<usize> = (0..self.slots.len())
                    .filter(|&s| self.slots[s].running.is_some())
                    .collect();
                if !running.is_empty() {
                    let slot = running[self.rng.random_range(0..running.len())];
                    if let Some((child, _)) = &mut self.slots[slot].running {
                        // It may have ended on its own just now: its status says which.
                        let _ = child.kill();
                        let status = child.wait().expect("waiting for a killed worker");
                        self.kills += u32::from(status.code().is_none());
                        self.ended(slot, status, true);
                    }
                }
            }
            let now = Instant::now();
            for slot in 0..self.slots.len() {
                if self.slots[slot].restart_at.is_some_and(|at| at <= now) {
                    self.start(slot);
                }
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // A failing run leaves no worker behind.
        for slot in &mut self.slots {
            if let Some((child, _)) = &mut slot.running {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The checks.

#[derive(Default)]
struct Summary {
    started: usize,
    kills: u32,
    fenced_exits: usize,
    fenced_errors: usize,
    checkpoints: usize,
    acked: usize,
    distinct_acked: usize,
    reopens: BTreeMap<String, usize>,
    lost: Vec<String>,
    regressions: Vec<String>,
    violations: Vec<String>,
}

fn check(fleet: &Fleet, reader: &mut Checkpointer) -> Summary {
    let mut summary = Summary {
        started: fleet.incarnations.len(),
        kills: fleet.kills,
        ..Summary::default()
    };
    for (pair, (run_id, stage)) in PAIRS.iter().enumerate() {
        let latest = reader.get(run_id, stage).expect("reading the final latest");
        let history = reader.history(run_id, stage).expect("reading the history");
        if latest.watermark.offset != END {
            summary.lost.push(format!(
                "{run_id}/{stage}: final latest at offset {}, the source ends at {END}",
                latest.watermark.offset
            ));
        }
        assert!(
            history.len() < MAX_RETAINED as usize,
            "{run_id}/{stage}: history pruned, receipts cannot all be checked"
        );
        check_history(run_id, stage, &history, &latest, &mut summary);
        summary.checkpoints += history.len();
        let by_sequence: BTreeMap<u64, &Checkpoint> =
            history.iter().map(|c| (c.sequence, c)).collect();
        let mut acked = vec![false; END as usize];
        for (index, incarnation) in fleet.incarnations.iter().enumerate() {
            if incarnation.pair != pair {
                continue;
            }
            check_incarnation(
                index,
                incarnation,
                &by_sequence,
                latest.watermark.offset,
                &mut acked,
                &mut summary,
            );
        }
        summary.distinct_acked += acked.iter().filter(|a| **a).count();
    }
    summary.fenced_exits = fleet
        .incarnations
        .iter()
        .filter(|i| i.ending == Some(Ending::Fenced))
        .count();
    summary
}

/// The retained chain: sequences grow, offsets grow (a claim keeps the offset under a newer
/// epoch), epochs never go back, and the latest is the last.
fn check_history(
    run_id: &str,
    stage: &str,
    history: &[Checkpoint],
    latest: &Checkpoint,
    summary: &mut Summary,
) {
    for pair in history.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        // Only a claim (a new epoch taking over) repeats the offset before it.
        let offset_ok = b.watermark.offset > a.watermark.offset
            || b.watermark.offset == a.watermark.offset && b.epoch > a.epoch;
        if b.sequence <= a.sequence || !offset_ok || b.epoch < a.epoch {
            summary.regressions.push(format!(
                "{run_id}/{stage}: history goes from (seq {}, offset {}, epoch {}) to (seq {}, \
                 offset {}, epoch {})",
                a.sequence, a.watermark.offset, a.epoch, b.sequence, b.watermark.offset, b.epoch
            ));
        }
    }
    if history.last() != Some(latest) {
        summary.regressions.push(format!(
            "{run_id}/{stage}: the latest (seq {}) is not the history's last",
            latest.sequence
        ));
    }
}

/// One worker's log against the store: its resume points never go back, its durable
/// checkpoints are all in the history, its acks are all covered.
fn check_incarnation(
    index: usize,
    incarnation: &Incarnation,
    history: &BTreeMap<u64, &Checkpoint>,
    final_offset: u64,
    acked: &mut [bool],
    summary: &mut Summary,
) {
    let who = format!("worker {index} (epoch {})", incarnation.epoch);
    // Everything known durable before this point in the worker's life.
    let mut known = incarnation.floor;
    let mut last_sequence = 0;
    for fact in read_log(&incarnation.log) {
        match fact {
            Fact::Resume {
                sequence,
                offset,
                origin,
            } => {
                if offset < known {
                    summary.regressions.push(format!(
                        "{who}: resumed at offset {offset}, below {known} known durable"
                    ));
                }
                if origin == "fallback" {
                    summary
                        .violations
                        .push(format!("{who}: resumed from a fallback (damaged latest)"));
                }
                known = known.max(offset);
                last_sequence = last_sequence.max(sequence);
            }
            Fact::Durable {
                sequence,
                offset,
                epoch,
            } => {
                if sequence <= last_sequence || offset < known {
                    summary.regressions.push(format!(
                        "{who}: durable (seq {sequence}, offset {offset}) after seq \
                         {last_sequence}, offset {known}"
                    ));
                }
                if epoch != incarnation.epoch {
                    summary
                        .violations
                        .push(format!("{who}: durable checkpoint with epoch {epoch}"));
                }
                match history.get(&sequence) {
                    Some(c) if c.watermark.offset == offset && c.epoch == epoch => {}
                    Some(c) => summary.lost.push(format!(
                        "{who}: durable seq {sequence} (offset {offset}, epoch {epoch}) was \
                         overwritten by offset {}, epoch {}",
                        c.watermark.offset, c.epoch
                    )),
                    None => summary.lost.push(format!(
                        "{who}: durable seq {sequence} (offset {offset}) is not in the history"
                    )),
                }
                known = known.max(offset);
                last_sequence = sequence;
            }
            Fact::Ack(offsets) => {
                for offset in offsets {
                    summary.acked += 1;
                    if offset >= final_offset {
                        summary.lost.push(format!(
                            "{who}: acked m-{offset}, beyond the final latest {final_offset}"
                        ));
                    }
                    if let Some(slot) = acked.get_mut(offset as usize) {
                        *slot = true;
                    }
                }
            }
            Fact::Violation(what) => summary.violations.push(format!("{who}: {what}")),
            Fact::Fenced { stored, attempted } => {
                summary.fenced_errors += 1;
                if attempted != incarnation.epoch || stored <= attempted {
                    summary.violations.push(format!(
                        "{who}: fenced by epoch {stored} with attempted epoch {attempted}"
                    ));
                }
            }
            Fact::Reopen(reason) => *summary.reopens.entry(reason).or_default() += 1,
            Fact::Done => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The runs.

/// One backend at a time: the workers of two backends would compete for the 2 cores and make
/// each run slower, not more thorough.
static ONE_BACKEND_AT_A_TIME: Mutex<()> = Mutex::new(());

fn seed() -> u64 {
    match std::env::var("MANY_PROCESSES_SEED") {
        Ok(text) => text.parse().expect("MANY_PROCESSES_SEED must be a number"),
        Err(_) => rand::random(),
    }
}

fn run_backend(backend: &str, url: &str) {
    let _one = lock(&ONE_BACKEND_AT_A_TIME);
    let started = Instant::now();
    let seed = seed();
    println!("many-processes {backend}: seed {seed} (MANY_PROCESSES_SEED={seed} replays it)");
    let dir = tempfile::tempdir().expect("temp dir for the worker logs");
    // A namespace of its own: the shared servers hold other tests' data too.
    let namespace = format!("many-{}-{}", std::process::id(), now_ms() % 1_000_000_000);
    let mut fleet = Fleet {
        exe: std::env::current_exe().expect("test binary"),
        url: url.to_owned(),
        namespace: namespace.clone(),
        dir: dir.path().to_owned(),
        rng: StdRng::seed_from_u64(seed),
        slots: (0..PAIRS.len() * WORKERS_PER_PAIR)
            .map(|i| Slot {
                pair: i / WORKERS_PER_PAIR,
                running: None,
                restart_at: None,
                done: false,
            })
            .collect(),
        incarnations: Vec::new(),
        next_epoch: [1; PAIRS.len()],
        kills: 0,
    };
    fleet.run();

    let storage = open_storage(url).expect("opening the store to read it back");
    let mut reader = Checkpointer::open(storage, Box::new(NullConsumer), &options(&namespace))
        .expect("opening the reader");
    let s = check(&fleet, &mut reader);
    let reopens: Vec<String> = s.reopens.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "many-processes {backend}: workers started {}, kills {}, restarts {}, fenced {} exits / \
         {} errors, checkpoints {}, acked messages {} ({} distinct of {}), lost {}, \
         regressions {}, violations {}, reopens [{}], \
         {:.1} s",
        s.started,
        s.kills,
        s.started - fleet.slots.len(),
        s.fenced_exits,
        s.fenced_errors,
        s.checkpoints,
        s.acked,
        s.distinct_acked,
        END * PAIRS.len() as u64,
        s.lost.len(),
        s.regressions.len(),
        s.violations.len(),
        reopens.join(", "),
        started.elapsed().as_secs_f64()
    );
    assert!(s.lost.is_empty(), "{backend}: lost updates: {:#?}", s.lost);
    assert!(
        s.regressions.is_empty(),
        "{backend}: regressions: {:#?}",
        s.regressions
    );
    assert!(
        s.violations.is_empty(),
        "{backend}: violations: {:#?}",
        s.violations
    );
    assert!(
        s.fenced_exits > 0 && s.fenced_errors > 0,
        "{backend}: no stale writer was fenced, though two workers compete per pair"
    );
}

fn is_worker() -> bool {
    WorkerConfig::from_env().is_some()
}

#[test]
fn four_worker_processes_on_sqlite_lose_nothing_and_fence_stale_writers() {
    if is_worker() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("many.db");
    // The schema exists before the workers race on checkpoints.
    drop(open_storage(&format!("sqlite:{}", path.display())).expect("create sqlite"));
    run_backend("sqlite", &format!("sqlite:{}", path.display()));
}

fn on_server(kind: ServerKind) {
    if is_worker() {
        return;
    }
    let what = "many_processes";
    let Some(url) = common::shared_server_url(kind, what) else {
        return;
    };
    // A store of its own on the shared server, besides a namespace of its own.
    let store = format!("many_{}_{}", std::process::id(), now_ms() % 1_000_000_000);
    run_backend(kind.name(), &common::isolated_url(kind, &url, &store));
}

#[test]
fn four_worker_processes_on_postgres_lose_nothing_and_fence_stale_writers() {
    on_server(ServerKind::Postgres);
}

#[test]
fn four_worker_processes_on_redis_lose_nothing_and_fence_stale_writers() {
    on_server(ServerKind::Redis);
}
