//! Crash schedules for sources that redeliver: the driver's `begin` / `complete` / `flush` path
//! on the real component over [`FreezingStorage`], fed by a [`RedeliveringQueue`] of 1 to 4
//! partitions (offset-style, with gaps between offsets, or id-only; sometimes the stage's own
//! unnamed input), worked by a pool that completes messages in random order under a
//! `max-in-flight` cap, keeping operator state (per partition: count, sum and an
//! order-sensitive digest of the values) and writing one row per message to a sink table that
//! is durable at once and that a restarted worker truncates to the sink position of the
//! checkpoint it resumed from.
//!
//! Faults strike at the nth I/O (storage `get`, `commit`, `list-keys`, consumer `ack`, sink row
//! write), before or after it: a crash (the process dies: [`FreezingStorage::crash`], the
//! queue redelivers every unacked message to the next process, which opens a new checkpointer
//! and driver over the durable state) or a transient failure (the call fails, the process goes
//! on: a storage error, applied or not; a failed ack, applied or not). A crash after a commit
//! or before an ack is the crash between the commit and the ack. Once the work is done the
//! worker restarts once more without faults, as a consumer does, so that the queue redelivers
//! what is still pending.
//!
//! Checked during every schedule:
//! - no ack of a message that the durable latest does not cover (checked inside the consumer,
//!   against the bytes on the "disk": by offset for offset-style messages, by the count of the
//!   operator state for id-only ones);
//! - `begin` admits no message the durable latest covers, and calls `covered` none it does not;
//! - every durable latest carries state that goes with its position (the count of each
//!   partition's state is the number of its messages below the position; the sink position is
//!   the total);
//! - the durable latest never moves backwards, and a restart resumes exactly from it (never
//!   from before a receipt, never a fallback);
//! - tickets are released oldest first within each partition;
//! - no driver error other than the storage errors the faults caused.
//!
//! When the work is done: nothing pending in the queue unless an ack failed (a crash between a
//! commit and its acks is repaired by the next driver's ack recovery, with no code from the
//! worker). And at the end of every schedule: every message processed; the final state equals
//! the crash-free result (every message folded once, in partition order); the sink holds every
//! output exactly once (0 duplicates, 0 missing, in partition order); every message is acked
//! (nothing pending forever).
//!
//! A property test: proptest generates the queue, the policy, the cap, the worker's choices
//! (a seed) and the faults, and shrinks a failing schedule. `CRASH_SCHEDULES=n` sets how many
//! schedules run (default 512, about a second: `make test`; `make soak` runs 10,000). It prints
//! its figures (`crash schedules (sources): ...`), which `scripts/reliability.sh` reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use checkpoint_host::{
    Admission, CheckpointError, Checkpointer, CommitOutcome, Consumer, DriverOptions, Error,
    Lookup, Message, OperatorState, Options, OverflowPolicy, Policy, Progress, ResumeOrigin,
    SinkPosition, StageState, Storage, StorageError, Write,
};
use checkpoint_testkit::faults::FreezingStorage;
use checkpoint_testkit::queue::{QueuedMessage, RedeliveringQueue, Session};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const RUN: &str = "run";
const STAGE: &str = "stage";
const LATEST: &str = "ckpt/sources/run/stage/latest";
const SINK: &str = "table";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The durable latest, read straight from FORMAT.md's layout so that the checks do not depend on
// the component they check.

/// What the durable latest says, as far as these checks need it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Durable {
    sequence: u64,
    /// The stage's own input: the watermark's offset.
    offset: u64,
    /// Named inputs: name -> next offset.
    sources: BTreeMap<String, u64>,
    sinks: BTreeMap<String, u64>,
    states: BTreeMap<String, Vec<u8>>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        slice
    }
    fn u32(&mut self) -> usize {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes")) as usize
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = self.u32();
        self.take(n).to_vec()
    }
    fn string(&mut self) -> String {
        String::from_utf8(self.bytes()).expect("UTF-8")
    }
}

fn parse(bytes: &[u8]) -> Durable {
    // Header: magic, version, flags, body length; the body starts at 12.
    let mut r = Reader { bytes, at: 12 };
    let (_run, _stage) = (r.string(), r.string());
    let sequence = r.u64();
    let _epoch = r.u64();
    let offset = r.u64();
    let (_event_time, _at_ms, _key) = (r.u64(), r.u64(), r.string());
    let mut durable = Durable {
        sequence,
        offset,
        ..Durable::default()
    };
    for _ in 0..r.u32() {
        let name = r.string();
        let (_sequence, next, _event_time) = (r.u64(), r.u64(), r.u64());
        durable.sources.insert(name, next);
    }
    for _ in 0..r.u32() {
        let name = r.string();
        durable.sinks.insert(name, r.u64());
    }
    for _ in 0..r.u32() {
        let name = r.string();
        durable.states.insert(name, r.bytes());
    }
    durable
}

fn durable_latest(disk: &FreezingStorage) -> Durable {
    disk.durable_raw(LATEST)
        .map(|(bytes, _)| parse(&bytes))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The stage's work: values, operator state, sink rows.

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: a fixed, well-spread function of the message.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The value a message carries (what the operator sums and the sink receives).
fn value(m: &QueuedMessage) -> u64 {
    mix(((m.partition as u64) << 32) | m.index as u64) % 1000
}

fn event_time(m: &QueuedMessage) -> i64 {
    // Not monotonic within a partition: the watermarks keep the maximum.
    m.index as i64 * 10 + (value(m) % 25) as i64
}

/// One partition's operator state. `digest` depends on the order of the values, so a message
/// applied twice, skipped or out of order changes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Fold {
    count: u64,
    sum: u64,
    digest: u64,
}

impl Fold {
    fn apply(&mut self, value: u64) {
        self.count += 1;
        self.sum += value;
        self.digest = (self.digest.rotate_left(5) ^ value).wrapping_mul(0x0000_0100_0000_01b3);
    }
    fn encode(&self) -> Vec<u8> {
        [self.count, self.sum, self.digest]
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .collect()
    }
    fn decode(bytes: &[u8]) -> Option<Fold> {
        let n = |i: usize| Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?));
        (bytes.len() == 24).then_some(())?;
        Some(Fold {
            count: n(0)?,
            sum: n(8)?,
            digest: n(16)?,
        })
    }
}

fn state_name(source: &str) -> String {
    format!("sum/{source}")
}

/// One row of the sink table: the output of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    id: String,
    partition: usize,
    index: usize,
    value: u64,
}

// ---------------------------------------------------------------------------------------------
// Faults.

/// What a scheduled fault does to the I/O it strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The process dies before the call does anything.
    CrashBefore,
    /// The call takes effect (a commit is durable, an ack reaches the queue, a row is written),
    /// then the process dies before it returns.
    CrashAfter,
    /// The call fails and does nothing; the process goes on. (On a sink write: a crash.)
    FailBefore,
    /// The call takes effect, then reports a failure (the ambiguous storage timeout, an ack
    /// that reached the queue but answered an error); the process goes on. (On a sink write:
    /// a crash after the row.)
    FailAfter,
}

/// Which I/O a fault struck.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Io {
    Get,
    Commit,
    ListKeys,
    Ack,
    Sink,
}

/// The fault plan of one schedule, its I/O count, and what the checks inside the I/O found.
#[derive(Default)]
struct Schedule {
    io: u64,
    armed: Option<(u64, Fault)>,
    /// Faults still to arm: strike at the nth I/O after the previous one struck.
    plan: Vec<(u32, Fault)>,
    violations: Vec<String>,
    /// Faults that struck, by I/O kind and fault.
    struck: BTreeMap<(Io, bool, bool), u64>,
    /// Transient faults (the process went on) so far.
    transient: u64,
    /// Ids acked while the durable latest did not cover them.
    early_acks: u64,
    /// Recent events, printed with a failure.
    trace: Vec<String>,
}

impl Schedule {
    fn arm_next(&mut self) {
        self.armed = (!self.plan.is_empty()).then(|| {
            let (gap, fault) = self.plan.remove(0);
            (self.io + u64::from(gap), fault)
        });
    }

    /// Counts one I/O; the fault that strikes it, if any.
    fn tick(&mut self, io: Io) -> Option<Fault> {
        self.io += 1;
        match self.armed {
            Some((at, fault)) if at == self.io => {
                self.arm_next();
                let crash = matches!(fault, Fault::CrashBefore | Fault::CrashAfter);
                let after = matches!(fault, Fault::CrashAfter | Fault::FailAfter);
                *self.struck.entry((io, crash, after)).or_default() += 1;
                if !crash && io != Io::Sink {
                    self.transient += 1;
                }
                self.note(format!("fault {fault:?} at {io:?} (io {})", self.io));
                Some(fault)
            }
            _ => None,
        }
    }

    fn note(&mut self, event: String) {
        self.trace.push(event);
    }

    fn violation(&mut self, v: String) {
        self.note(format!("VIOLATION {v}"));
        self.violations.push(v);
    }
}

type Shared = Arc<Mutex<Schedule>>;

struct FaultyDisk {
    disk: FreezingStorage,
    schedule: Shared,
}

impl FaultyDisk {
    fn around<T>(
        &mut self,
        io: Io,
        call: impl FnOnce(&mut FreezingStorage) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if self.disk.is_crashed() {
            return call(&mut self.disk); // answers `unavailable`: the process is gone
        }
        let strike = lock(&self.schedule).tick(io);
        match strike {
            None => call(&mut self.disk),
            Some(Fault::CrashBefore) => {
                self.disk.crash();
                Err(StorageError::Unavailable("crashed (scheduled)".into()))
            }
            Some(Fault::CrashAfter) => {
                let _ = call(&mut self.disk);
                self.disk.crash();
                Err(StorageError::Unavailable("crashed (scheduled)".into()))
            }
            Some(Fault::FailBefore) => Err(StorageError::Unavailable(
                "injected fault, not applied".into(),
            )),
            Some(Fault::FailAfter) => {
                call(&mut self.disk)?;
                Err(StorageError::Timeout("injected fault, applied".into()))
            }
        }
    }
}

impl Storage for FaultyDisk {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        self.around(Io::Get, |d| d.get(key))
    }
    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        self.around(Io::Commit, |d| d.commit(writes))
    }
    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.around(Io::ListKeys, |d| d.list_keys(prefix))
    }
}

/// Whether the durable latest `d` covers message `m`: by position for offset-style messages,
/// by the count of its partition's state for id-only ones (an id-only partition's covered
/// messages are a prefix of it, as they are processed in order).
fn covers(d: &Durable, m: &QueuedMessage) -> bool {
    match m.offset {
        Some(offset) => {
            let position = if m.source.is_empty() {
                d.offset
            } else {
                d.sources.get(&m.source).copied().unwrap_or(0)
            };
            offset < position
        }
        None => {
            let count = d
                .states
                .get(&state_name(&m.source))
                .and_then(|s| Fold::decode(s))
                .map_or(0, |f| f.count);
            (m.index as u64) < count
        }
    }
}

/// The queue's consumer, checking every ack against the durable latest first.
struct CheckingConsumer {
    disk: FreezingStorage,
    schedule: Shared,
    queue: RedeliveringQueue,
}

impl Consumer for CheckingConsumer {
    fn ack(&mut self, ids: Vec<String>) -> Result<(), String> {
        if self.disk.is_crashed() {
            return Err("the process crashed".into());
        }
        let strike = lock(&self.schedule).tick(Io::Ack);
        match strike {
            Some(Fault::CrashBefore) => {
                self.disk.crash();
                return Err("the process crashed before the ack".into());
            }
            Some(Fault::FailBefore) => return Err("injected ack failure, not applied".into()),
            _ => {}
        }
        let durable = durable_latest(&self.disk);
        for id in &ids {
            match self.queue.message(id) {
                Some(m) if covers(&durable, &m) => {}
                Some(_) => {
                    let mut schedule = lock(&self.schedule);
                    schedule.early_acks += 1;
                    schedule.violation(format!(
                        "{id} acked while the durable latest (sequence {}) does not cover it",
                        durable.sequence
                    ));
                }
                None => lock(&self.schedule).violation(format!("ack of unknown id {id}")),
            }
        }
        if let Err(e) = self.queue.ack(&ids) {
            lock(&self.schedule).violation(e);
        }
        lock(&self.schedule).note(format!("acked {ids:?}"));
        match strike {
            Some(Fault::CrashAfter) => {
                self.disk.crash();
                Err("the process crashed after the ack".into())
            }
            Some(Fault::FailAfter) => Err("injected ack failure, after the ack".into()),
            _ => Ok(()),
        }
    }
}

/// The sink table: durable as soon as a row is written; survives every crash.
#[derive(Clone, Default)]
struct Sink {
    rows: Arc<Mutex<Vec<Row>>>,
}

// ---------------------------------------------------------------------------------------------
// One schedule.

/// One generated schedule.
#[derive(Clone, Debug)]
struct Plan {
    /// Per partition: whether its messages have offsets, and how many there are.
    partitions: Vec<(bool, usize)>,
    /// The first partition is the stage's own (unnamed) input.
    own_input: bool,
    policy: Policy,
    max_in_flight: u32,
    max_retained: u32,
    /// Faults, each striking the nth I/O after the previous one struck.
    faults: Vec<(u32, Fault)>,
    /// The worker's choices: which partition to read, which message to complete, when to flush.
    seed: u64,
}

fn plans() -> impl Strategy<Value = Plan> {
    let fault = prop_oneof![
        3 => Just(Fault::CrashBefore),
        3 => Just(Fault::CrashAfter),
        2 => Just(Fault::FailBefore),
        2 => Just(Fault::FailAfter),
    ];
    (
        prop::collection::vec((prop::bool::weighted(0.7), 1usize..=12), 1..=4),
        prop::bool::weighted(0.25),
        1u32..=8,
        0u32..=2,
        1u32..=3,
        prop::collection::vec((1u32..=40, fault), 0..=10),
        any::<u64>(),
    )
        .prop_map(
            |(partitions, own_input, max_in_flight, policy, max_retained, faults, seed)| {
                let policy = match policy {
                    0 => Policy::PerMessage,
                    1 => Policy::PerBatch(1 + (seed % u64::from(max_in_flight)) as u32),
                    _ => Policy::ExplicitFlush,
                };
                Plan {
                    partitions,
                    own_input,
                    policy,
                    max_in_flight,
                    max_retained,
                    faults,
                    seed,
                }
            },
        )
}

/// Figures of one schedule.
#[derive(Default)]
struct Figures {
    schedules: u64,
    crashes: u64,
    transient: u64,
    messages: u64,
    redeliveries: u64,
    covered: u64,
    admitted_again: u64,
    processed_again: u64,
    backpressure: u64,
    checkpoints: u64,
    acks: u64,
    early_acks: u64,
    duplicates: u64,
    missing: u64,
    pending: u64,
    pending_after_work: u64,
    violations: u64,
    struck: BTreeMap<(Io, bool, bool), u64>,
}

impl Figures {
    fn add(&mut self, f: Figures) {
        self.schedules += f.schedules;
        self.crashes += f.crashes;
        self.transient += f.transient;
        self.messages += f.messages;
        self.redeliveries += f.redeliveries;
        self.covered += f.covered;
        self.admitted_again += f.admitted_again;
        self.processed_again += f.processed_again;
        self.backpressure += f.backpressure;
        self.checkpoints += f.checkpoints;
        self.acks += f.acks;
        self.early_acks += f.early_acks;
        self.duplicates += f.duplicates;
        self.missing += f.missing;
        self.pending += f.pending;
        self.pending_after_work += f.pending_after_work;
        self.violations += f.violations;
        for (k, n) in f.struck {
            *self.struck.entry(k).or_default() += n;
        }
    }
}

/// A small deterministic generator for the worker's choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(1);
        (mix(self.0) % n as u64) as usize
    }
}

/// Why an incarnation ended.
enum End {
    /// The process crashed: restart it.
    Crashed,
    /// Every delivered message is processed and durable.
    Done,
}

/// The world that outlives a process: queue, disk, sink, fault schedule, and what was seen.
struct World {
    plan: Plan,
    queue: RedeliveringQueue,
    names: Vec<String>,
    disk: FreezingStorage,
    sink: Sink,
    schedule: Shared,
    /// The highest durable latest seen so far.
    high: Durable,
    processed: HashMap<String, u32>,
    rng: Rng,
    now: u64,
    figures: Figures,
}

/// One process: a checkpointer and driver over the disk, a queue session, and the worker pool.
struct Process {
    driver: checkpoint_host::Driver,
    session: Session,
    folds: Vec<Fold>,
    /// Begun, being processed.
    pool: Vec<(u64, QueuedMessage)>,
    /// Completed, waiting for the messages begun before them in their partition.
    completed: HashMap<u64, QueuedMessage>,
    /// A message refused with backpressure, offered again later.
    held: Option<QueuedMessage>,
    /// Backpressure answered: complete or flush before offering again.
    blocked: bool,
    /// Messages released since the last durable checkpoint.
    unflushed: usize,
    /// Per partition: the index of the last released message.
    last_released: Vec<Option<usize>>,
}

impl World {
    fn new(plan: &Plan) -> World {
        let mut rng = Rng(plan.seed);
        let names: Vec<String> = (0..plan.partitions.len())
            .map(|p| {
                if p == 0 && plan.own_input {
                    String::new()
                } else {
                    format!("p{p}")
                }
            })
            .collect();
        let partitions = plan
            .partitions
            .iter()
            .zip(&names)
            .map(|(&(with_offsets, len), name)| {
                let mut offset = rng.below(3) as u64;
                let offsets = (0..len)
                    .map(|_| {
                        let this = offset;
                        offset += 1 + rng.below(3) as u64;
                        with_offsets.then_some(this)
                    })
                    .collect();
                (name.clone(), offsets)
            })
            .collect();
        let mut schedule = Schedule {
            plan: plan.faults.clone(),
            ..Schedule::default()
        };
        schedule.arm_next();
        World {
            plan: plan.clone(),
            queue: RedeliveringQueue::new(partitions),
            names,
            disk: FreezingStorage::new(),
            sink: Sink::default(),
            schedule: Arc::new(Mutex::new(schedule)),
            high: Durable::default(),
            processed: HashMap::new(),
            rng,
            now: 0,
            figures: Figures::default(),
        }
    }

    fn violation(&self, v: String) {
        lock(&self.schedule).violation(v);
    }

    fn note(&self, event: String) {
        lock(&self.schedule).note(event);
    }

    fn crashed(&self) -> bool {
        self.disk.is_crashed()
    }

    fn transient_faults(&self) -> u64 {
        lock(&self.schedule).transient
    }

    /// The storage error an injected transient fault caused is expected; anything else is not.
    fn unexpected(&self, call: &str, e: &Error, transient_before: u64) {
        let storage = matches!(e, Error::Checkpoint(CheckpointError::Storage(_)));
        if !(storage && self.transient_faults() > transient_before) {
            self.violation(format!("{call}: unexpected error without a crash: {e}"));
        }
    }

    /// Checks the durable latest after a step: state goes with position, nothing moved back.
    fn check_durable(&mut self) {
        let d = durable_latest(&self.disk);
        let mut total = 0;
        for p in 0..self.names.len() {
            let count = d
                .states
                .get(&state_name(&self.names[p]))
                .map_or(Some(Fold::default()), |s| Fold::decode(s));
            let Some(fold) = count else {
                self.violation(format!("undecodable state of partition {p} in {d:?}"));
                continue;
            };
            total += fold.count;
            let messages = self.queue.partition(p);
            if messages.first().is_some_and(|m| m.offset.is_some()) {
                let below = messages.iter().filter(|m| covers(&d, m)).count() as u64;
                if below != fold.count {
                    self.violation(format!(
                        "durable sequence {}: partition {p} state counts {} messages, its \
                         position covers {below}",
                        d.sequence, fold.count
                    ));
                }
            }
            let high = self
                .high
                .states
                .get(&state_name(&self.names[p]))
                .and_then(|s| Fold::decode(s))
                .map_or(0, |f| f.count);
            if fold.count < high {
                self.violation(format!(
                    "partition {p}: durable count went back from {high} to {}",
                    fold.count
                ));
            }
        }
        let sink = d.sinks.get(SINK).copied().unwrap_or(0);
        if sink != total {
            self.violation(format!(
                "durable sequence {}: sink position {sink}, states count {total}",
                d.sequence
            ));
        }
        let back = d.sequence < self.high.sequence
            || d.offset < self.high.offset
            || self
                .high
                .sources
                .iter()
                .any(|(name, at)| d.sources.get(name).copied().unwrap_or(0) < *at);
        if back {
            self.violation(format!(
                "durable latest moved back from {:?} to {d:?}",
                self.high
            ));
        }
        if d.sequence > self.high.sequence {
            self.figures.checkpoints += 1;
        }
        self.high = d;
    }

    /// Starts a process: a new queue session, checkpointer and driver; state restored and the
    /// sink truncated from the checkpoint resumed from. `None` if it crashed on the way.
    fn start(&mut self) -> Option<Process> {
        self.disk = self.disk.reboot();
        let session = self.queue.connect();
        let options = Options {
            namespace: "sources".into(),
            max_retained: self.plan.max_retained,
            max_checkpoint_bytes: 1 << 16,
        };
        let driver_options = DriverOptions {
            run_id: RUN.into(),
            stage: STAGE.into(),
            epoch: 1,
            policy: self.plan.policy,
            changelog_capacity: 0,
            overflow: OverflowPolicy::DropNew,
            max_in_flight: self.plan.max_in_flight,
        };
        let mut driver = loop {
            let storage = FaultyDisk {
                disk: self.disk.clone(),
                schedule: Arc::clone(&self.schedule),
            };
            let consumer = CheckingConsumer {
                disk: self.disk.clone(),
                schedule: Arc::clone(&self.schedule),
                queue: self.queue.clone(),
            };
            let checkpointer =
                match Checkpointer::open(Box::new(storage), Box::new(consumer), &options) {
                    Ok(c) => c,
                    Err(e) => {
                        self.violation(format!("open: {e}"));
                        return None;
                    }
                };
            let transient = self.transient_faults();
            match checkpointer.open_driver(&driver_options) {
                Ok(driver) => break driver,
                Err(_) if self.crashed() => return None,
                // A transient storage fault: open again, in the same process.
                Err(e) => self.unexpected("open-driver", &e, transient),
            }
            if !lock(&self.schedule).violations.is_empty() {
                return None;
            }
        };
        if self.crashed() {
            return None; // the recovered acks crashed the process
        }
        let resume = match driver.resumed_from() {
            Ok(resume) => resume,
            Err(e) => {
                self.violation(format!("resumed-from: {e}"));
                return None;
            }
        };
        let recovered = driver.recovered_acks();
        self.note(format!(
            "started at sequence {} ({:?}), recovered acks {recovered:?}",
            resume.point.sequence, resume.origin
        ));
        // Resumes exactly from the durable latest: never before it, never a fallback.
        let durable = durable_latest(&self.disk);
        if matches!(resume.origin, ResumeOrigin::Fallback(_)) {
            self.violation("fell back although nothing was damaged".into());
        }
        if resume.point.sequence != durable.sequence || resume.point.sequence < self.high.sequence {
            self.violation(format!(
                "resumed at sequence {} while the durable latest is {} (highest seen {})",
                resume.point.sequence, durable.sequence, self.high.sequence
            ));
        }
        let checkpoint = resume
            .checkpoint
            .unwrap_or_else(|| checkpoint_host::Checkpoint {
                run_id: RUN.into(),
                stage: STAGE.into(),
                sequence: 0,
                epoch: 0,
                watermark: resume.point.watermark,
                sources: vec![],
                sinks: vec![],
                operator_states: vec![],
                idempotency_key: String::new(),
                at_ms: 0,
            });
        let resumed_sources: BTreeMap<String, u64> = checkpoint
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.watermark.offset))
            .collect();
        if checkpoint.watermark.offset != durable.offset || resumed_sources != durable.sources {
            self.violation(format!(
                "resumed positions {:?} / {resumed_sources:?} differ from the durable latest's \
                 {} / {:?}",
                checkpoint.watermark, durable.offset, durable.sources
            ));
        }
        // Restore the state and truncate the sink from the checkpoint resumed from.
        let mut folds = vec![Fold::default(); self.names.len()];
        for (p, fold) in folds.iter_mut().enumerate() {
            let name = state_name(&self.names[p]);
            if let Some(state) = checkpoint.operator_states.iter().find(|s| s.name == name) {
                match Fold::decode(&state.state) {
                    Some(f) => *fold = f,
                    None => self.violation(format!("resumed state {name} undecodable")),
                }
            }
        }
        let position = checkpoint
            .sinks
            .iter()
            .find(|s| s.name == SINK)
            .map_or(0, |s| s.position);
        let mut rows = lock(&self.sink.rows);
        if (rows.len() as u64) < position {
            self.violation(format!(
                "the sink has {} rows, fewer than the resumed position {position}",
                rows.len()
            ));
        }
        rows.truncate(position as usize);
        drop(rows);
        Some(Process {
            driver,
            session,
            folds,
            pool: Vec::new(),
            completed: HashMap::new(),
            held: None,
            blocked: false,
            unflushed: 0,
            last_released: vec![None; self.names.len()],
        })
    }

    fn stage_state(&self, process: &Process) -> StageState {
        let total: u64 = process.folds.iter().map(|f| f.count).sum();
        StageState {
            sinks: vec![SinkPosition {
                name: SINK.into(),
                position: total,
            }],
            operator_states: self
                .names
                .iter()
                .zip(&process.folds)
                .map(|(name, fold)| OperatorState {
                    name: state_name(name),
                    state: fold.encode(),
                })
                .collect(),
        }
    }

    /// Writes one sink row; `false` if the process crashed (before or after the row).
    fn write_row(&self, row: Row) -> bool {
        if self.crashed() {
            return false;
        }
        let strike = lock(&self.schedule).tick(Io::Sink);
        match strike {
            None => {
                lock(&self.sink.rows).push(row);
                true
            }
            Some(Fault::CrashBefore | Fault::FailBefore) => {
                self.disk.crash();
                false
            }
            Some(Fault::CrashAfter | Fault::FailAfter) => {
                lock(&self.sink.rows).push(row);
                self.disk.crash();
                false
            }
        }
    }

    /// Flushes with the current state; `Some(true)` when a checkpoint is durable with nothing
    /// released after it, `None` when the process crashed.
    fn flush(&mut self, process: &mut Process) -> Option<bool> {
        self.now += 1;
        let state = self.stage_state(process);
        let transient = self.transient_faults();
        let step = process.driver.flush(Some(&state), self.now);
        if self.crashed() {
            return None;
        }
        match step {
            Ok(Progress::Checkpointed(receipt)) => {
                let durable = durable_latest(&self.disk);
                if durable.sequence != receipt.sequence {
                    self.violation(format!(
                        "receipt for sequence {}, durable latest is {}",
                        receipt.sequence, durable.sequence
                    ));
                }
                self.note(format!(
                    "checkpoint {} (acks {:?})",
                    receipt.sequence, receipt.acks
                ));
                process.unflushed = 0;
                process.blocked = false;
            }
            Ok(Progress::Pending(n)) => {
                if n != 0 || process.unflushed != 0 {
                    self.violation(format!(
                        "flush answered pending({n}) with {} messages released",
                        process.unflushed
                    ));
                }
            }
            Ok(Progress::Covered(_)) => self.violation("flush answered covered".into()),
            Err(e) => self.unexpected("flush", &e, transient),
        }
        self.check_durable();
        Some(process.unflushed == 0)
    }

    /// Offers the held message, or the next of a random partition, to `begin`.
    fn offer(&mut self, process: &mut Process) -> Option<()> {
        let m = match process.held.take() {
            Some(m) => m,
            None => {
                let open = process.session.open_partitions();
                let p = open[self.rng.below(open.len())];
                process.session.next(p).expect("an open partition")
            }
        };
        let message = Message {
            id: m.id.clone(),
            source: m.source.clone(),
            offset: m.offset,
            event_time_ms: event_time(&m),
        };
        let durable = durable_latest(&self.disk);
        let answer = process.driver.begin(&message);
        if self.crashed() {
            return None;
        }
        match answer {
            Ok(Admission::Admitted(ticket)) => {
                if covers(&durable, &m) {
                    self.violation(format!("{} admitted although durable covers it", m.id));
                }
                if self.queue.deliveries(&m.id) > 1 {
                    self.figures.admitted_again += 1;
                }
                if self.processed.get(&m.id).copied().unwrap_or(0) > 0 {
                    self.figures.processed_again += 1;
                }
                process.pool.push((ticket, m));
            }
            Ok(Admission::Covered(outcome)) => {
                if !covers(&durable, &m) {
                    self.violation(format!(
                        "{} answered covered, durable does not cover it",
                        m.id
                    ));
                }
                self.note(format!("{} covered, ack {outcome:?}", m.id));
                self.figures.covered += 1;
            }
            Ok(Admission::Backpressure(n)) => {
                let in_flight = process.pool.len() + process.completed.len() + process.unflushed;
                if n != self.plan.max_in_flight || in_flight != n as usize {
                    self.violation(format!(
                        "backpressure({n}) with {in_flight} in flight, cap {}",
                        self.plan.max_in_flight
                    ));
                }
                self.figures.backpressure += 1;
                process.held = Some(m);
                process.blocked = true;
            }
            Err(e) => self.violation(format!("begin {}: {e}", m.id)),
        }
        self.check_durable();
        Some(())
    }

    /// Completes a random message of the pool and applies what it releases.
    fn complete(&mut self, process: &mut Process) -> Option<()> {
        let (ticket, m) = process.pool.swap_remove(self.rng.below(process.pool.len()));
        *self.processed.entry(m.id.clone()).or_default() += 1;
        process.completed.insert(ticket, m);
        let completion = match process.driver.complete(ticket) {
            Ok(c) => c,
            Err(e) => {
                self.violation(format!("complete {ticket}: {e}"));
                return Some(());
            }
        };
        process.blocked = false;
        for released in completion.released {
            let Some(m) = process.completed.remove(&released) else {
                self.violation(format!("released ticket {released}, never completed"));
                continue;
            };
            if process.last_released[m.partition].is_some_and(|last| last >= m.index) {
                self.violation(format!(
                    "{} released after index {:?} of its partition",
                    m.id, process.last_released[m.partition]
                ));
            }
            process.last_released[m.partition] = Some(m.index);
            process.folds[m.partition].apply(value(&m));
            process.unflushed += 1;
            let row = Row {
                id: m.id.clone(),
                partition: m.partition,
                index: m.index,
                value: value(&m),
            };
            if !self.write_row(row) {
                return None;
            }
        }
        if completion.due && self.rng.below(100) < 85 {
            self.flush(process)?;
        }
        Some(())
    }

    /// Runs one process until it crashes or has nothing left to do.
    fn run(&mut self, process: &mut Process) -> End {
        for _ in 0..100_000 {
            if !lock(&self.schedule).violations.is_empty() {
                return End::Done;
            }
            let can_offer = process.held.is_some() || !process.session.open_partitions().is_empty();
            let step = if process.blocked {
                if process.pool.is_empty() {
                    self.flush(process).map(drop)
                } else {
                    self.complete(process)
                }
            } else {
                let r = self.rng.below(100);
                if r < 8 {
                    self.flush(process).map(drop)
                } else if can_offer && (r < 55 || process.pool.is_empty()) {
                    self.offer(process)
                } else if !process.pool.is_empty() {
                    self.complete(process)
                } else {
                    // Nothing to read, nothing in flight: make the rest durable, then stop.
                    match self.flush(process) {
                        Some(true) => return End::Done,
                        Some(false) => Some(()),
                        None => None,
                    }
                }
            };
            if step.is_none() {
                return End::Crashed;
            }
        }
        self.violation("no progress after 100,000 steps".into());
        End::Done
    }
}

fn run_schedule(plan: &Plan) -> (Figures, Result<(), String>) {
    let mut world = World::new(plan);
    let mut draining = false;
    let mut drained = false;
    for _ in 0..200 {
        let Some(mut process) = world.start() else {
            if !lock(&world.schedule).violations.is_empty() {
                break;
            }
            world.figures.crashes += 1;
            continue;
        };
        match world.run(&mut process) {
            End::Crashed => {
                world.figures.crashes += 1;
                world.note("crashed".into());
            }
            End::Done if draining => {
                drained = true;
                break;
            }
            End::Done => {
                // Only a failed ack leaves a durable message pending: a crash between a commit
                // and its acks is repaired by the next driver's ack recovery, with no code here.
                let pending = world.queue.unacked();
                world.figures.pending_after_work = pending.len() as u64;
                let mut schedule = lock(&world.schedule);
                let ack_failed = schedule
                    .struck
                    .keys()
                    .any(|&(io, crash, _)| io == Io::Ack && !crash);
                if !pending.is_empty() && !ack_failed {
                    schedule.violation(format!(
                        "pending when the work was done although no ack failed: {pending:?}"
                    ));
                }
                // A consumer that restarts gets what is still pending: run once more, without
                // faults, so that the queue redelivers it and the driver acks it.
                schedule.armed = None;
                schedule.plan.clear();
                schedule.note("work done; restarting once to drain the queue".into());
                draining = true;
            }
        }
        if !lock(&world.schedule).violations.is_empty() {
            break;
        }
    }
    let mut schedule = lock(&world.schedule);
    if schedule.violations.is_empty() && !drained {
        schedule.violation("did not finish within 200 processes".into());
    }
    let stats = world.queue.stats();
    let mut figures = std::mem::take(&mut world.figures);
    figures.schedules = 1;
    figures.messages = (0..world.names.len())
        .map(|p| world.queue.partition(p).len() as u64)
        .sum();
    figures.redeliveries = stats.redeliveries;
    figures.acks = stats.acks;
    figures.early_acks = schedule.early_acks;
    figures.transient = schedule.transient;
    figures.struck = std::mem::take(&mut schedule.struck);
    if schedule.violations.is_empty() {
        final_checks(&world, &mut schedule, &mut figures);
    }
    figures.violations = schedule.violations.len() as u64;
    if schedule.violations.is_empty() {
        return (figures, Ok(()));
    }
    let from = schedule.trace.len().saturating_sub(60);
    let failure = format!(
        "{}\nlast events:\n  {}",
        schedule.violations.join("\n"),
        schedule.trace[from..].join("\n  ")
    );
    (figures, Err(failure))
}

/// The end of a schedule: every message processed and acked, its output in the sink exactly
/// once and in order, and the final state that of a run without crashes.
fn final_checks(world: &World, schedule: &mut Schedule, figures: &mut Figures) {
    let messages: Vec<QueuedMessage> = (0..world.names.len())
        .flat_map(|p| world.queue.partition(p))
        .collect();
    let rows = lock(&world.sink.rows).clone();
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for row in &rows {
        *seen.entry(row.id.as_str()).or_default() += 1;
    }
    figures.duplicates = seen.values().map(|n| n - 1).sum();
    let missing: Vec<&str> = messages
        .iter()
        .map(|m| m.id.as_str())
        .filter(|id| !seen.contains_key(id))
        .collect();
    figures.missing = missing.len() as u64;
    if figures.duplicates > 0 || !missing.is_empty() {
        schedule.violation(format!(
            "sink: {} duplicate rows, missing {missing:?}",
            figures.duplicates
        ));
    }
    for p in 0..world.names.len() {
        let expected: Vec<Row> = world
            .queue
            .partition(p)
            .iter()
            .map(|m| Row {
                id: m.id.clone(),
                partition: p,
                index: m.index,
                value: value(m),
            })
            .collect();
        let got: Vec<Row> = rows.iter().filter(|r| r.partition == p).cloned().collect();
        if got != expected && figures.duplicates == 0 && missing.is_empty() {
            schedule.violation(format!("sink rows of partition {p} out of order"));
        }
    }
    let unprocessed: Vec<&str> = messages
        .iter()
        .map(|m| m.id.as_str())
        .filter(|id| !world.processed.contains_key(*id))
        .collect();
    if !unprocessed.is_empty() {
        schedule.violation(format!("never processed: {unprocessed:?}"));
    }
    let pending = world.queue.unacked();
    figures.pending = pending.len() as u64;
    if !pending.is_empty() {
        schedule.violation(format!("left pending in the queue: {pending:?}"));
    }
    // The final state equals the crash-free result: every value folded once, in order.
    let durable = durable_latest(&world.disk);
    for p in 0..world.names.len() {
        let mut expected = Fold::default();
        for m in world.queue.partition(p) {
            expected.apply(value(&m));
        }
        let got = durable
            .states
            .get(&state_name(&world.names[p]))
            .and_then(|s| Fold::decode(s))
            .unwrap_or_default();
        if got != expected {
            schedule.violation(format!(
                "final state of partition {p} is {got:?}, a crash-free run gives {expected:?}"
            ));
        }
    }
}

#[test]
fn crash_schedules_of_redelivering_sources_keep_state_and_output_exactly_once() {
    let schedules: u32 = std::env::var("CRASH_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512);
    let total = std::cell::RefCell::new(Figures::default());
    let failed = std::cell::Cell::new(false);
    let mut runner = TestRunner::new(Config {
        cases: schedules,
        // Deterministic per plan: a failure prints the minimal plan, nothing is persisted.
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&plans(), |plan| {
        let (figures, outcome) = run_schedule(&plan);
        // The figures are those of the schedules run up to the first failure, that one
        // included; not of the runs that shrink it.
        if !failed.get() {
            total.borrow_mut().add(figures);
            failed.set(outcome.is_err());
        }
        outcome.map_err(TestCaseError::fail)
    });
    let t = total.into_inner();
    let at =
        |io: Io, crash: bool, after: bool| t.struck.get(&(io, crash, after)).copied().unwrap_or(0);
    println!(
        "crash schedules (sources): {} run, {} crashes, {} transient faults, {} messages, {} \
         redeliveries ({} covered and skipped, {} admitted again, {} processed again), {} \
         checkpoints, {} backpressure answers, {} acks ({} before a durable checkpoint covered \
         them), {} duplicate rows, {} missing rows, {} pending at the end ({} after the work, \
         left by failed acks, acked after a restart), {} violations",
        t.schedules,
        t.crashes,
        t.transient,
        t.messages,
        t.redeliveries,
        t.covered,
        t.admitted_again,
        t.processed_again,
        t.checkpoints,
        t.backpressure,
        t.acks,
        t.early_acks,
        t.duplicates,
        t.missing,
        t.pending,
        t.pending_after_work,
        t.violations,
    );
    println!(
        "crash schedules (sources) crash points: get {}/{}, commit {}/{} (after: durable, not \
         acked), list-keys {}/{}, ack {}/{}, sink row {}/{} (before/after); transient: \
         storage {}/{}, ack {}/{} (not applied/applied)",
        at(Io::Get, true, false),
        at(Io::Get, true, true),
        at(Io::Commit, true, false),
        at(Io::Commit, true, true),
        at(Io::ListKeys, true, false),
        at(Io::ListKeys, true, true),
        at(Io::Ack, true, false),
        at(Io::Ack, true, true),
        at(Io::Sink, true, false) + at(Io::Sink, false, false),
        at(Io::Sink, true, true) + at(Io::Sink, false, true),
        at(Io::Get, false, false) + at(Io::Commit, false, false) + at(Io::ListKeys, false, false),
        at(Io::Get, false, true) + at(Io::Commit, false, true) + at(Io::ListKeys, false, true),
        at(Io::Ack, false, false),
        at(Io::Ack, false, true),
    );
    if let Err(e) = result {
        panic!("a schedule broke a promise of the driver:\n{e}");
    }
}
