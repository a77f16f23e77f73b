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
//!   after it and resumes from `resume-point`.
//!
//! Checked: during the outage every write, flush and read fails with a `storage` error and the
//! consumers record no ack; after the restart every worker recovers (a reopened one resumes
//! exactly at its last durable checkpoint), and at the end each stage's latest is at the
//! source's end, every message was acked and every ack is covered, the history only grows, and
//! every receipt a worker was given is in it.

mod common;

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
                    .open_driver(&DriverOptions {
                        run_id: RUN.into(),
                        stage: self.stage().into(),
                        epoch: 1,
                        policy: Policy::PerBatch(BATCH),
                        changelog_capacity: 0,
                        overflow: OverflowPolicy::DropNew,
                    })
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
                    match driver.flush(now_ms())? {
                        Progress::Checkpointed(_) => true,
                        Progress::Pending(n) => panic!("flush left {n} messages pending"),
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

    // Up to a third of the source with the server up.
    run_round_robin(&mut workers, END / 3);
    let acked_before: Vec<usize> = workers.iter().map(Worker::acked_ids).collect();
    let durable_before: Vec<(u64, u64)> = workers
        .iter()
        .map(|w| (w.sequence, w.durable_offset))
        .collect();

    server.stop();
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

    // Read everything back on a connection of its own.
    let storage = open_storage(&url).expect("opening the store to read it back");
    let mut reader = Checkpointer::open(
        storage,
        Box::new(checkpoint_host::consumer::NullConsumer),
        &options(),
    )
    .expect("opening the reader");
    let mut lost = Vec::new();
    let mut regressions = Vec::new();
    let mut finals = Vec::new();
    let mut acked_distinct = 0;
    for w in &workers {
        assert!(w.finished());
        let latest = reader.get(RUN, w.stage()).expect("the final latest");
        let history = reader.history(RUN, w.stage()).expect("the final history");
        finals.push(latest.watermark.offset);
        if latest.watermark.offset != END {
            lost.push(format!(
                "{}: final latest at {}, the source ends at {END}",
                w.stage(),
                latest.watermark.offset
            ));
        }
        for pair in history.windows(2) {
            if pair[1].sequence <= pair[0].sequence
                || pair[1].watermark.offset <= pair[0].watermark.offset
            {
                regressions.push(format!(
                    "{}: history goes from seq {} offset {} to seq {} offset {}",
                    w.stage(),
                    pair[0].sequence,
                    pair[0].watermark.offset,
                    pair[1].sequence,
                    pair[1].watermark.offset
                ));
            }
        }
        for &(sequence, offset) in &w.receipts {
            if !history
                .iter()
                .any(|c| c.sequence == sequence && c.watermark.offset == offset)
            {
                lost.push(format!(
                    "{}: durable seq {sequence} (offset {offset}) is not in the history",
                    w.stage()
                ));
            }
        }
        let mut acked = vec![false; END as usize];
        for id in w.consumer.acks().concat() {
            match source_offset(&id) {
                Some(offset) if offset < latest.watermark.offset => acked[offset as usize] = true,
                _ => lost.push(format!(
                    "{}: acked {id}, not covered by the final latest {}",
                    w.stage(),
                    latest.watermark.offset
                )),
            }
        }
        let distinct = acked.iter().filter(|a| **a).count();
        if distinct != END as usize {
            lost.push(format!("{}: {distinct} of {END} messages acked", w.stage()));
        }
        acked_distinct += distinct;
    }

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
