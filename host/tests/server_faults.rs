//! Server faults: the PostgreSQL or Redis server is stopped while pipeline workers write
//! checkpoints, and started again. Each test runs a `PrivateServer` of its own, never the
//! shared ones.
//!
//! Three workers, each on its own (run, stage) with its own connection, checkpointer and
//! recording consumer, feed a deterministic source (message `n` follows from `n`) in chunks of
//! [`BATCH`], round robin on one thread, so the outage begins between two writes and what was
//! acked before it is exact. They meet the outage three ways:
//! - `keeps`: keeps its driver; the failed messages stay pending and `flush` retries them;
//! - `retries`: writes through the checkpointer API and retries the very same checkpoint;
//! - `reopens`: drops its connection, tries to open a new one during the outage, opens one
//!   after it and resumes from `resume-point`;
//! - `inflight`: a driver on a thread of its own that writes without pause, so the stop can
//!   catch a commit in flight (its outcome unknown to the writer); it retries through the
//!   outage with the same clock, so a retry of a commit that did land is a replay.
//!
//! Checked: during the outage every write, flush and read fails with a `storage` error and the
//! consumers record no ack (for `inflight`: every call begun after the server stopped); after the restart every worker recovers (a reopened one resumes
//! exactly at its last durable checkpoint), and at the end each stage's latest is at the
//! source's end, every message was acked and every ack is covered, the history only grows, and
//! every receipt a worker was given is in it.

use checkpoint_testkit::servers as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use checkpoint_host::consumer::RecordingConsumer;
use checkpoint_host::storage::open_storage;
use checkpoint_host::{
    Checkpoint, CheckpointError, Checkpointer, Driver, DriverOptions, Error, Options,
    OverflowPolicy, Policy, Progress, Resume, ResumeOrigin, Watermark,
};
use common::{PrivateServer, ServerKind, source_message, source_offset};

const RUN: &str = "faults";
/// Messages per stage: the source ends at this offset.
const END: u64 = 600;
/// Messages per chunk; a driver checkpoints every `BATCH`, so each chunk is one write.
const BATCH: u32 = 10;
/// Every checkpoint is retained, so every receipt can be found in the history.
const MAX_RETAINED: u32 = 1_000;
/// Writes each worker that keeps its connection attempts while the server is down.
const OUTAGE_WRITES: u32 = 3;
/// Attempts a worker gets to write again after the restart; a store that needs more never
/// reconnects, and the test fails.
const RECOVERY_ATTEMPTS: u32 = 200;
const RECOVERY_PAUSE: Duration = Duration::from_millis(25);
/// Bounds how long one call waits for a connection while the server is down (the stores'
/// default, 5 s, would make each of the outage's calls take that long).
const CONNECT_TIMEOUT_MS: &str = "500";

fn options() -> Options {
    Options {
        namespace: "faults".into(),
        max_retained: MAX_RETAINED,
        max_checkpoint_bytes: 4096,
    }
}

fn driver_options(stage: &str) -> DriverOptions {
    DriverOptions {
        run_id: RUN.into(),
        stage: stage.into(),
        epoch: 1,
        policy: Policy::PerBatch(BATCH),
        changelog_capacity: 0,
        overflow: OverflowPolicy::DropNew,
        max_in_flight: 4096,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How a worker meets the outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    KeepsDriver,
    RetriesWrite,
    Reopens,
}

impl Style {
    fn name(self) -> &'static str {
        match self {
            Style::KeepsDriver => "keeps",
            Style::RetriesWrite => "retries",
            Style::Reopens => "reopens",
        }
    }
}

enum Session {
    Driver(Box<Driver>),
    Direct(Box<Checkpointer>),
    Closed,
}

/// Why opening a worker failed.
#[derive(Debug)]
enum OpenFailure {
    /// The store refused the connection (`open_storage` failed).
    Connect(String),
    /// The component answered with an error (a `storage` one when the server is down).
    Checkpoint(Error),
}

struct Worker {
    style: Style,
    consumer: RecordingConsumer,
    session: Session,
    /// The next offset to process.
    position: u64,
    /// The last durable checkpoint this worker was told of.
    sequence: u64,
    durable_offset: u64,
    /// Driver styles: messages recorded but not yet covered by a durable checkpoint.
    pending: bool,
    /// `retries`: the write that failed, to be retried exactly as it was.
    unsent: Option<(Checkpoint, Vec<String>)>,
    /// (sequence, offset) of every durable checkpoint this worker was given a receipt for.
    receipts: Vec<(u64, u64)>,
}

impl Worker {
    fn new(style: Style) -> Worker {
        Worker {
            style,
            consumer: RecordingConsumer::new(),
            session: Session::Closed,
            position: 0,
            sequence: 0,
            durable_offset: 0,
            pending: false,
            unsent: None,
            receipts: Vec::new(),
        }
    }

    fn stage(&self) -> &'static str {
        self.style.name()
    }

    /// Opens a connection, a checkpointer and (driver styles) a driver; resumes from the
    /// stored resume point.
    fn open(&mut self, url: &str) -> Result<Resume, OpenFailure> {
        let storage = open_storage(url).map_err(|e| OpenFailure::Connect(format!("{e:#}")))?;
        let mut checkpointer =
            Checkpointer::open(storage, Box::new(self.consumer.clone()), &options())
                .map_err(OpenFailure::Checkpoint)?;
        let resume = match self.style {
            Style::RetriesWrite => {
                let resume = checkpointer
                    .resume_point(RUN, self.stage())
                    .map_err(OpenFailure::Checkpoint)?;
                self.session = Session::Direct(Box::new(checkpointer));
                resume
            }
            Style::KeepsDriver | Style::Reopens => {
                let mut driver = checkpointer
                    .open_driver(&driver_options(self.stage()))
                    .map_err(OpenFailure::Checkpoint)?;
                let resume = driver.resumed_from().map_err(OpenFailure::Checkpoint)?;
                self.session = Session::Driver(Box::new(driver));
                resume
            }
        };
        self.position = resume.point.watermark.offset;
        self.sequence = resume.point.sequence;
        self.pending = false;
        Ok(resume)
    }

    fn finished(&self) -> bool {
        self.position >= END && !self.pending && self.unsent.is_none()
    }

    /// One write: the next chunk, or a retry of what failed before. `Ok(true)` when a
    /// checkpoint became durable.
    fn step(&mut self) -> Result<bool, Error> {
        let chunk: Vec<_> = (self.position..(self.position + u64::from(BATCH)).min(END))
            .map(source_message)
            .collect();
        match &mut self.session {
            Session::Closed => panic!("{}: step without a session", self.stage()),
            Session::Driver(driver) => {
                let written = if self.pending {
                    match driver.flush(None, now_ms())? {
                        Progress::Checkpointed(_) => true,
                        Progress::Pending(n) => panic!("flush left {n} messages pending"),
                        Progress::Covered(_) => unreachable!("flush never answers covered"),
                    }
                } else {
                    // Whatever the write does, the chunk's messages are now the driver's.
                    self.position = chunk.last().map_or(self.position, |m| m.next_offset);
                    self.pending = true;
                    let progress = driver.record_processed_batch(&chunk, now_ms())?;
                    !progress.checkpoints.is_empty()
                };
                if written {
                    let cursor = driver.cursor()?;
                    self.pending = cursor.watermark.offset < self.position;
                    self.durable(cursor.sequence, cursor.watermark.offset);
                }
                Ok(written)
            }
            Session::Direct(checkpointer) => {
                let (checkpoint, batch) = match self.unsent.take() {
                    Some(unsent) => unsent,
                    None => {
                        let last = chunk.last().expect("a step before the end");
                        let checkpoint = Checkpoint {
                            run_id: RUN.into(),
                            stage: self.style.name().into(),
                            sequence: self.sequence + 1,
                            epoch: 1,
                            watermark: Watermark {
                                offset: last.next_offset,
                                event_time_ms: last.event_time_ms,
                            },
                            sources: vec![],
                            sinks: vec![],
                            operator_states: vec![],
                            idempotency_key: format!("chunk-{}", self.position),
                            at_ms: now_ms(),
                        };
                        (checkpoint, chunk.iter().map(|m| m.id.clone()).collect())
                    }
                };
                match checkpointer.write(&checkpoint, &batch) {
                    Ok(receipt) => {
                        assert!(
                            !receipt.replayed,
                            "a write that failed while the server was down was committed"
                        );
                        self.position = checkpoint.watermark.offset;
                        self.durable(receipt.sequence, checkpoint.watermark.offset);
                        Ok(true)
                    }
                    Err(e) => {
                        self.unsent = Some((checkpoint, batch));
                        Err(e)
                    }
                }
            }
        }
    }

    fn durable(&mut self, sequence: u64, offset: u64) {
        assert!(
            sequence > self.sequence && offset > self.durable_offset,
            "{}: durable (seq {sequence}, offset {offset}) after (seq {}, offset {})",
            self.stage(),
            self.sequence,
            self.durable_offset
        );
        self.sequence = sequence;
        self.durable_offset = offset;
        self.receipts.push((sequence, offset));
    }

    /// A read through the worker's own connection.
    fn read(&mut self) -> Result<Resume, Error> {
        let stage = self.stage();
        match &mut self.session {
            Session::Driver(driver) => driver.checkpointer().resume_point(RUN, stage),
            Session::Direct(checkpointer) => checkpointer.resume_point(RUN, stage),
            Session::Closed => panic!("{stage}: read without a session"),
        }
    }

    fn acked_ids(&self) -> usize {
        self.consumer.acks().iter().map(Vec::len).sum()
    }
}

/// What the outage did.
#[derive(Default)]
struct Outage {
    writes: u32,
    writes_failed_storage: u32,
    reads: u32,
    reads_failed_storage: u32,
    opens: u32,
    opens_refused: u32,
    /// Anything that did not fail as it should: a success, or another error.
    unexpected: Vec<String>,
    sample: Option<String>,
}

impl Outage {
    /// Counts one call made while the server is down; it must fail with `storage`. Returns
    /// whether it did.
    fn expect_storage<T: std::fmt::Debug>(&mut self, what: &str, r: Result<T, Error>) -> bool {
        match r {
            Err(Error::Checkpoint(CheckpointError::Storage(m))) => {
                self.sample.get_or_insert(m);
                true
            }
            other => {
                self.unexpected.push(format!("{what}: {other:?}"));
                false
            }
        }
    }
}

/// Where the server is, as the `inflight` writer sees it when a call begins.
const SERVER_UP: u8 = 0;
/// Set once `stop` has returned: a call begun now cannot reach the server until `restart`.
const SERVER_DOWN: u8 = 1;
/// Set just before `restart` begins.
const SERVER_RESTARTING: u8 = 2;
/// The `inflight` writer's pause between writes: enough writes to span the outage, few
/// enough that its whole history stays retained.
const INFLIGHT_PAUSE: Duration = Duration::from_millis(3);

/// What the test thread and the `inflight` writer share.
struct InflightSignals {
    server: AtomicU8,
    wrap_up: AtomicBool,
    receipts: AtomicU32,
    calls_while_down: AtomicU32,
}

impl InflightSignals {
    fn new() -> InflightSignals {
        InflightSignals {
            server: AtomicU8::new(SERVER_UP),
            wrap_up: AtomicBool::new(false),
            receipts: AtomicU32::new(0),
            calls_while_down: AtomicU32::new(0),
        }
    }
}

#[derive(Default)]
struct InflightOutcome {
    /// Where it stopped: the end of its source.
    end: u64,
    /// (sequence, offset) of every receipt.
    receipts: Vec<(u64, u64)>,
    /// Receipts that were replays: a retried commit had landed before the stop.
    replayed: u32,
    calls_while_down: u32,
    storage_errors_while_down: u32,
    /// Storage errors by kind (unavailable, timed out, failed), whenever they happened.
    storage_errors: std::collections::BTreeMap<String, u32>,
    /// The first whole message of each kind that is not a read, for the report: a commit cut
    /// off in flight should say `timed out` (outcome unknown), not `unavailable`.
    write_error_samples: std::collections::BTreeMap<String, String>,
    unexpected: Vec<String>,
    acks: Vec<Vec<String>>,
}

/// What failed and how, from a storage error's message: the component writes it as
/// `{operation}: storage {unavailable | timed out | failed}: {detail}`.
fn storage_error_kind(message: &str) -> String {
    message
        .splitn(3, ": ")
        .take(2)
        .collect::<Vec<_>>()
        .join(": ")
}

/// The `inflight` writer: chunks of `BATCH` through a driver until told to wrap up. Its clock
/// is the offset, so a flush that retries a failed write writes the very same checkpoint.
fn inflight_writer(url: &str, signals: &InflightSignals) -> InflightOutcome {
    let mut out = InflightOutcome::default();
    let consumer = RecordingConsumer::new();
    let storage = open_storage(url).expect("opening the inflight writer's store");
    let checkpointer = Checkpointer::open(storage, Box::new(consumer.clone()), &options())
        .expect("opening the inflight writer's checkpointer");
    let mut driver = checkpointer
        .open_driver(&driver_options("inflight"))
        .expect("opening the inflight writer's driver");
    let mut position = 0;
    let mut pending = false;
    while pending || !signals.wrap_up.load(Ordering::SeqCst) {
        let began = signals.server.load(Ordering::SeqCst);
        let acks_before = consumer.acks().len();
        let result = if pending {
            driver.flush(None, position).map(|progress| match progress {
                Progress::Checkpointed(receipt) => Some(receipt),
                Progress::Pending(_) | Progress::Covered(_) => None,
            })
        } else {
            let chunk: Vec<_> = (position..position + u64::from(BATCH))
                .map(source_message)
                .collect();
            position += u64::from(BATCH);
            pending = true;
            driver
                .record_processed_batch(&chunk, position)
                .map(|progress| progress.checkpoints.last().cloned())
        };
        // Down for the whole call: it began after `stop` returned and ended before `restart`
        // began (the test thread marks both, in that order).
        let down = began == SERVER_DOWN && signals.server.load(Ordering::SeqCst) == SERVER_DOWN;
        if down {
            out.calls_while_down += 1;
            signals.calls_while_down.fetch_add(1, Ordering::SeqCst);
            if consumer.acks().len() > acks_before {
                out.unexpected
                    .push(format!("acked while the server was down: {result:?}"));
            }
        }
        match result {
            Ok(Some(receipt)) => {
                if down {
                    out.unexpected.push(format!(
                        "a write succeeded while the server was down: {receipt:?}"
                    ));
                }
                let cursor = driver.cursor().expect("reading the inflight cursor");
                out.receipts
                    .push((cursor.sequence, cursor.watermark.offset));
                out.replayed += u32::from(receipt.replayed);
                pending = false;
                signals.receipts.fetch_add(1, Ordering::SeqCst);
            }
            Ok(None) => {
                out.unexpected
                    .push("a full batch wrote no checkpoint".to_owned());
                break;
            }
            Err(Error::Checkpoint(CheckpointError::Storage(m))) => {
                let kind = storage_error_kind(&m);
                if !kind.starts_with("reading") {
                    out.write_error_samples.entry(kind.clone()).or_insert(m);
                }
                *out.storage_errors.entry(kind).or_default() += 1;
                if down {
                    out.storage_errors_while_down += 1;
                }
                std::thread::sleep(RECOVERY_PAUSE);
            }
            Err(e) => {
                out.unexpected.push(format!("write failed with: {e}"));
                break;
            }
        }
        std::thread::sleep(INFLIGHT_PAUSE);
    }
    out.end = position;
    out.acks = consumer.acks();
    out
}

/// Waits for the `inflight` writer to reach `condition`, or to have stopped (its outcome then
/// says why).
fn wait_for(writer: &std::thread::JoinHandle<InflightOutcome>, condition: impl Fn() -> bool) {
    while !condition() && !writer.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the final read-back found wrong.
#[derive(Default)]
struct Findings {
    lost: Vec<String>,
    regressions: Vec<String>,
}

impl Findings {
    /// Checks one stage's stored end state against what its writer was told: the latest is at
    /// `end`, the history only grows, every receipt is in it, every message below `end` was
    /// acked and every ack is covered. `repeats_allowed`: a writer that retried a commit of
    /// unknown outcome may have stored the same offset twice (its driver adopts the landed
    /// commit and writes the pending messages again under the next sequence).
    /// Returns the latest's offset and how many distinct messages were acked.
    fn check_stage(
        &mut self,
        reader: &mut Checkpointer,
        stage: &str,
        end: u64,
        receipts: &[(u64, u64)],
        acks: &[Vec<String>],
        repeats_allowed: bool,
    ) -> (u64, usize) {
        let latest = reader.get(RUN, stage).expect("the final latest");
        let history = reader.history(RUN, stage).expect("the final history");
        assert!(
            history.len() < MAX_RETAINED as usize,
            "{stage}: history pruned, receipts cannot all be checked"
        );
        let last = latest.watermark.offset;
        if last != end {
            self.lost.push(format!(
                "{stage}: final latest at {last}, the source ends at {end}"
            ));
        }
        for pair in history.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let offset_ok = b.watermark.offset > a.watermark.offset
                || repeats_allowed && b.watermark.offset == a.watermark.offset;
            if b.sequence <= a.sequence || !offset_ok {
                self.regressions.push(format!(
                    "{stage}: history goes from seq {} offset {} to seq {} offset {}",
                    a.sequence, a.watermark.offset, b.sequence, b.watermark.offset
                ));
            }
        }
        for &(sequence, offset) in receipts {
            if !history
                .iter()
                .any(|c| c.sequence == sequence && c.watermark.offset == offset)
            {
                self.lost.push(format!(
                    "{stage}: durable seq {sequence} (offset {offset}) is not in the history"
                ));
            }
        }
        let mut acked = vec![false; usize::try_from(end).expect("end fits memory")];
        for id in acks.concat() {
            match source_offset(&id) {
                Some(offset) if offset < last => acked[offset as usize] = true,
                _ => self.lost.push(format!(
                    "{stage}: acked {id}, not covered by the final latest {last}"
                )),
            }
        }
        let distinct = acked.iter().filter(|a| **a).count();
        if distinct as u64 != end {
            self.lost
                .push(format!("{stage}: {distinct} of {end} messages acked"));
        }
        (last, distinct)
    }
}

fn run_round_robin(workers: &mut [Worker], until: u64) {
    while workers.iter().any(|w| w.position < until || w.pending) {
        for w in workers.iter_mut() {
            if w.position < until || w.pending {
                w.step()
                    .unwrap_or_else(|e| panic!("{} writing: {e}", w.stage()));
            }
        }
    }
}

fn server_stops_mid_run(kind: ServerKind) {
    let what = "server_faults";
    let Some(server) = PrivateServer::start(kind, what) else {
        return;
    };
    let url = common::with_params(&server.url, &[("connect_timeout_ms", CONNECT_TIMEOUT_MS)]);
    let name = kind.name();
    let mut workers: Vec<Worker> = [Style::KeepsDriver, Style::RetriesWrite, Style::Reopens]
        .into_iter()
        .map(Worker::new)
        .collect();
    for w in &mut workers {
        let resume = w.open(&url).expect("opening a worker");
        assert_eq!(resume.origin, ResumeOrigin::Fresh);
    }

    let signals = Arc::new(InflightSignals::new());
    let inflight = {
        let (url, signals) = (url.clone(), Arc::clone(&signals));
        std::thread::spawn(move || inflight_writer(&url, &signals))
    };

    // Up to a third of the source with the server up; the inflight writer is under way.
    run_round_robin(&mut workers, END / 3);
    wait_for(&inflight, || signals.receipts.load(Ordering::SeqCst) >= 3);
    let acked_before: Vec<usize> = workers.iter().map(Worker::acked_ids).collect();
    let durable_before: Vec<(u64, u64)> = workers
        .iter()
        .map(|w| (w.sequence, w.durable_offset))
        .collect();

    server.stop();
    signals.server.store(SERVER_DOWN, Ordering::SeqCst);
    let mut outage = Outage::default();
    for w in &mut workers {
        let writes = if w.style == Style::Reopens {
            1
        } else {
            OUTAGE_WRITES
        };
        for _ in 0..writes {
            outage.writes += 1;
            let r = w.step();
            outage.writes_failed_storage += u32::from(outage.expect_storage("write", r));
        }
        outage.reads += 1;
        let r = w.read();
        outage.reads_failed_storage += u32::from(outage.expect_storage("read", r));
        if w.style == Style::Reopens {
            w.session = Session::Closed;
            outage.opens += 1;
            match w.open(&url) {
                Err(OpenFailure::Connect(m)) => {
                    outage.opens_refused += 1;
                    outage.sample.get_or_insert(m);
                }
                Err(OpenFailure::Checkpoint(e)) => {
                    // A store that connects lazily opens, and its first read fails.
                    outage.opens_refused +=
                        u32::from(outage.expect_storage("open", Err::<(), _>(e)));
                }
                Ok(resume) => outage
                    .unexpected
                    .push(format!("open during the outage: {resume:?}")),
            }
        }
    }
    let acked_during: usize = workers
        .iter()
        .zip(&acked_before)
        .map(|(w, before)| w.acked_ids() - before)
        .sum();

    // The inflight writer has met the outage at least once before it ends.
    wait_for(&inflight, || {
        signals.calls_while_down.load(Ordering::SeqCst) >= 1
    });
    signals.server.store(SERVER_RESTARTING, Ordering::SeqCst);
    let restart_began = Instant::now();
    server.restart();
    let restarted = Instant::now();
    let mut recovery = Vec::new();
    let mut retries_after_restart = 0;
    for (w, &(sequence, offset)) in workers.iter_mut().zip(&durable_before) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(
                attempts <= RECOVERY_ATTEMPTS,
                "{name}: worker {} did not recover after {RECOVERY_ATTEMPTS} attempts",
                w.stage()
            );
            if matches!(w.session, Session::Closed) {
                match w.open(&url) {
                    Ok(resume) => {
                        // Nothing was written during the outage, and nothing durable is lost.
                        assert_eq!(resume.origin, ResumeOrigin::Latest);
                        assert_eq!(
                            (resume.point.sequence, resume.point.watermark.offset),
                            (sequence, offset),
                            "{name}: {} resumed elsewhere than its last durable checkpoint",
                            w.stage()
                        );
                    }
                    Err(OpenFailure::Connect(_))
                    | Err(OpenFailure::Checkpoint(Error::Checkpoint(CheckpointError::Storage(
                        _,
                    )))) => {
                        retries_after_restart += 1;
                        std::thread::sleep(RECOVERY_PAUSE);
                        continue;
                    }
                    Err(e) => panic!("{name}: reopening {}: {e:?}", w.stage()),
                }
            }
            match w.step() {
                Ok(true) => break,
                Ok(false) => {}
                Err(Error::Checkpoint(CheckpointError::Storage(_))) => {
                    retries_after_restart += 1;
                    std::thread::sleep(RECOVERY_PAUSE);
                }
                Err(e) => panic!("{name}: {} after the restart: {e}", w.stage()),
            }
        }
        recovery.push((w.stage(), restarted.elapsed()));
    }

    run_round_robin(&mut workers, END);
    signals.wrap_up.store(true, Ordering::SeqCst);
    let inflight = inflight.join().expect("the inflight writer");

    // Read everything back on a connection of its own.
    let storage = open_storage(&url).expect("opening the store to read it back");
    let mut reader = Checkpointer::open(
        storage,
        Box::new(checkpoint_host::consumer::NullConsumer),
        &options(),
    )
    .expect("opening the reader");
    let mut findings = Findings::default();
    let mut finals = Vec::new();
    let mut acked_distinct = 0;
    for w in &workers {
        assert!(w.finished());
        let (last, acked) = findings.check_stage(
            &mut reader,
            w.stage(),
            END,
            &w.receipts,
            &w.consumer.acks(),
            false,
        );
        finals.push(last);
        acked_distinct += acked;
    }
    let (inflight_last, inflight_acked) = findings.check_stage(
        &mut reader,
        "inflight",
        inflight.end,
        &inflight.receipts,
        &inflight.acks,
        true,
    );
    let Findings { lost, regressions } = findings;

    let recovered: Vec<String> = recovery
        .iter()
        .map(|(stage, t)| format!("{stage} {:.3} s", t.as_secs_f64()))
        .collect();
    println!(
        "server-faults {name}: outage: {} writes attempted, {} failed as storage errors; {} reads, \
         {} failed as storage errors; {} opens, {} refused; acks during outage {acked_during}",
        outage.writes,
        outage.writes_failed_storage,
        outage.reads,
        outage.reads_failed_storage,
        outage.opens,
        outage.opens_refused,
    );
    println!(
        "server-faults {name}: outage error e.g. {:?}",
        outage.sample.as_deref().unwrap_or("")
    );
    println!(
        "server-faults {name}: restart took {:.2} s; first durable write after it: {} \
         ({retries_after_restart} failed attempts first); final offsets {finals:?} of {END}; \
         acked {acked_distinct} distinct of {}; lost {}; regressions {}",
        (restarted - restart_began).as_secs_f64(),
        recovered.join(", "),
        END * workers.len() as u64,
        lost.len(),
        regressions.len()
    );
    println!(
        "server-faults {name}: inflight writer: {} calls begun during the outage, {} failed as \
         storage errors; storage errors by kind {:?}; {} receipts ({} replays of a commit that \
         had landed); final offset {inflight_last} of {}; acked {inflight_acked} distinct of {}",
        inflight.calls_while_down,
        inflight.storage_errors_while_down,
        inflight.storage_errors,
        inflight.receipts.len(),
        inflight.replayed,
        inflight.end,
        inflight.end,
    );
    for message in inflight.write_error_samples.values() {
        println!("server-faults {name}: inflight writer's write error: {message:?}");
    }
    assert!(
        inflight.unexpected.is_empty(),
        "{name}: the inflight writer: {:#?}",
        inflight.unexpected
    );
    assert!(
        inflight.calls_while_down >= 1,
        "{name}: the inflight writer never met the outage"
    );
    assert_eq!(
        inflight.calls_while_down,
        inflight.storage_errors_while_down
    );
    assert!(
        outage.unexpected.is_empty(),
        "{name}: calls during the outage that did not fail with `storage`: {:#?}",
        outage.unexpected
    );
    assert_eq!(outage.writes, outage.writes_failed_storage);
    assert_eq!(outage.reads, outage.reads_failed_storage);
    assert_eq!(outage.opens, outage.opens_refused);
    assert_eq!(acked_during, 0, "{name}: acks while the server was down");
    assert!(lost.is_empty(), "{name}: lost: {lost:#?}");
    assert!(
        regressions.is_empty(),
        "{name}: regressions: {regressions:#?}"
    );
}

#[test]
fn postgres_stopped_mid_run_fails_writes_as_storage_acks_nothing_and_resumes_without_loss() {
    server_stops_mid_run(ServerKind::Postgres);
}

#[test]
fn redis_stopped_mid_run_fails_writes_as_storage_acks_nothing_and_resumes_without_loss() {
    server_stops_mid_run(ServerKind::Redis);
}
