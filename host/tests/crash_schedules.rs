//! Crash schedules: random driver workloads on the real component over [`FreezingStorage`], with
//! a crash before or after a randomly chosen storage call or ack, then a reboot from the durable
//! state and a resume, until every message is processed. After every step it checks:
//!
//! - no ack before the checkpoint covering it is durable (checked inside the consumer);
//! - every durable checkpoint survives: a reboot resumes at or past the last receipt returned;
//! - the durable latest never regresses (sequence and offset);
//! - by the end every message is durably processed (the durable latest is at the last offset).
//!
//! The same schedules also run grouped: three stages at once on one SQLite file, their commits
//! sharing transactions and syncs (group commit), on a disk that keeps only what was synced
//! (`checkpoint_testkit::power_loss`); the crash strikes at the nth write or sync of the disk,
//! and every ack is checked against a copy of the durable bytes.
//!
//! The operator tools get schedules of their own (`operator`): resets, savepoints and writes
//! of a stale owner mixed with writes, each call checked against a model.
//!
//! A property test: proptest generates the workload (policy, retention, when to flush) and the
//! crash points, and shrinks a failing schedule to a minimal one. `CRASH_SCHEDULES=n` sets how
//! many schedules run (default 256: about a second, small enough for `make test`; `make soak`
//! runs 10,000).

// In a directory of its own: a file directly under tests/ would be a test crate of its own.
#[path = "crash_schedules/operator.rs"]
mod operator;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use checkpoint_host::storage::{SqliteOptions, SqliteStorage};
use checkpoint_host::{
    Checkpointer, CommitOutcome, Consumer, DriverOptions, Lookup, Options, OverflowPolicy, Policy,
    ProcessedMessage, Progress, ResumeOrigin, Runtime, RuntimeConfig, Storage, StorageError, Write,
};
use checkpoint_testkit::faults::FreezingStorage;
use checkpoint_testkit::power_loss::{Disk, VFS_NAME};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const LATEST: &str = "ckpt/crash/run/stage/latest";
const MESSAGES: u64 = 24;

/// `(sequence, offset)` of a stored checkpoint, read straight from FORMAT.md's layout so the
/// check does not depend on the component it checks.
fn sequence_and_offset(bytes: &[u8]) -> (u64, u64) {
    let u32_at = |at: usize| {
        let mut le = [0; 4];
        le.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(le) as usize
    };
    let u64_at = |at: usize| {
        let mut le = [0; 8];
        le.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(le)
    };
    let run_end = 16 + u32_at(12);
    let stage_end = run_end + 4 + u32_at(run_end);
    (u64_at(stage_end), u64_at(stage_end + 16))
}

fn durable_latest(disk: &FreezingStorage) -> Option<(u64, u64)> {
    disk.durable_raw(LATEST)
        .map(|(bytes, _)| sequence_and_offset(&bytes))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the scheduled crash strikes: before or after the nth I/O (storage call or ack).
#[derive(Default)]
struct Schedule {
    io: u32,
    crash_at: Option<(u32, bool)>,
    violations: Vec<String>,
}

impl Schedule {
    /// Counts one I/O; `Some(after)` when the crash strikes at it.
    fn tick(&mut self) -> Option<bool> {
        self.io += 1;
        match self.crash_at {
            Some((at, after)) if at == self.io => {
                self.crash_at = None;
                Some(after)
            }
            _ => None,
        }
    }
}

fn crashed() -> StorageError {
    StorageError::Unavailable("the process crashed (scheduled)".into())
}

struct CrashingStorage {
    disk: FreezingStorage,
    schedule: Arc<Mutex<Schedule>>,
}

impl CrashingStorage {
    fn around<T>(
        &mut self,
        call: impl FnOnce(&mut FreezingStorage) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let strike = lock(&self.schedule).tick();
        match strike {
            None => call(&mut self.disk),
            Some(false) => {
                self.disk.crash();
                Err(crashed())
            }
            Some(true) => {
                let _ = call(&mut self.disk);
                self.disk.crash();
                Err(crashed())
            }
        }
    }
}

impl Storage for CrashingStorage {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        self.around(|d| d.get(key))
    }
    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        self.around(|d| d.commit(writes))
    }
    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.around(|d| d.list_keys(prefix))
    }
}

struct CheckingConsumer {
    disk: FreezingStorage,
    schedule: Arc<Mutex<Schedule>>,
}

impl Consumer for CheckingConsumer {
    fn ack(&mut self, ids: Vec<String>) -> Result<(), String> {
        let mut schedule = lock(&self.schedule);
        if self.disk.is_crashed() {
            return Err("the process crashed".into());
        }
        let strike = schedule.tick();
        if strike == Some(false) {
            self.disk.crash();
            return Err("the process crashed before the ack".into());
        }
        let durable_offset = durable_latest(&self.disk).map_or(0, |(_, offset)| offset);
        for id in &ids {
            let offset: u64 = id[1..].parse().expect("id m<offset>");
            if offset >= durable_offset {
                schedule.violations.push(format!(
                    "{id} acked while the durable latest offset is {durable_offset}"
                ));
            }
        }
        if strike == Some(true) {
            self.disk.crash();
            return Err("the process crashed after the ack".into());
        }
        Ok(())
    }
}

/// One generated schedule: the workload and where the crashes strike.
#[derive(Clone, Debug)]
struct Plan {
    policy: Policy,
    max_retained: u32,
    /// One entry per process incarnation, while they last: crash at the nth I/O after the
    /// (re)start, before (`false`) or after (`true`) it. Incarnations beyond the list run clean.
    crashes: Vec<(u32, bool)>,
    /// Whether step i (cyclically) is an explicit flush instead of the next message.
    flushes: Vec<bool>,
}

fn plans() -> impl Strategy<Value = Plan> {
    let policy = prop_oneof![
        Just(Policy::PerMessage),
        (1u32..5).prop_map(Policy::PerBatch),
        Just(Policy::ExplicitFlush),
    ];
    (
        policy,
        1u32..4,
        prop::collection::vec((1u32..40, any::<bool>()), 0..=3),
        prop::collection::vec(prop::bool::weighted(0.2), 1..32),
    )
        .prop_map(|(policy, max_retained, crashes, flushes)| Plan {
            policy,
            max_retained,
            crashes,
            flushes,
        })
}

fn run_schedule(plan: &Plan) -> Result<u32, String> {
    let schedule = Arc::new(Mutex::new(Schedule::default()));
    let mut disk = FreezingStorage::new();
    let policy = plan.policy;
    let options = Options {
        namespace: "crash".into(),
        max_retained: plan.max_retained,
        max_checkpoint_bytes: 4096,
    };
    let (mut steps, mut last_was_flush) = (0usize, false);
    let (mut last_receipt, mut last_durable, mut crashes) = ((0u64, 0u64), (0u64, 0u64), 0u32);
    let mut now = 0u64;
    'process: for incarnation in 0..20 {
        if let Some(&(gap, after)) = plan.crashes.get(incarnation) {
            let io = lock(&schedule).io;
            lock(&schedule).crash_at = Some((io + gap, after));
        }
        let storage = CrashingStorage {
            disk: disk.clone(),
            schedule: Arc::clone(&schedule),
        };
        let consumer = CheckingConsumer {
            disk: disk.clone(),
            schedule: Arc::clone(&schedule),
        };
        let checkpointer = Checkpointer::open(Box::new(storage), Box::new(consumer), &options)
            .map_err(|e| format!("open: {e}"))?;
        let driver = checkpointer.open_driver(&DriverOptions {
            run_id: "run".into(),
            stage: "stage".into(),
            epoch: 1,
            policy,
            changelog_capacity: 0,
            overflow: OverflowPolicy::DropNew,
            max_in_flight: 4096,
        });
        let mut driver = match driver {
            Ok(d) => d,
            Err(_) if disk.is_crashed() => {
                crashes += 1;
                disk = disk.reboot();
                continue;
            }
            Err(e) => return Err(format!("open-driver: {e}")),
        };
        let resume = driver.resumed_from().map_err(|e| e.to_string())?;
        if resume.point.sequence < last_receipt.0 || resume.point.watermark.offset < last_receipt.1
        {
            return Err(format!(
                "resumed at {:?} before the last receipt {last_receipt:?}",
                resume.point
            ));
        }
        if matches!(resume.origin, ResumeOrigin::Fallback(_)) {
            return Err("fell back although nothing was damaged".into());
        }
        let mut offset = resume.point.watermark.offset;
        while offset < MESSAGES || matches!(policy, Policy::ExplicitFlush | Policy::PerBatch(_)) {
            now += 1;
            steps += 1;
            // Never two flushes in a row before the end, so every schedule makes progress.
            let flush =
                offset >= MESSAGES || (plan.flushes[steps % plan.flushes.len()] && !last_was_flush);
            last_was_flush = flush;
            let step = if flush {
                driver.flush(None, now)
            } else {
                let message = ProcessedMessage {
                    id: format!("m{offset}"),
                    next_offset: offset + 1,
                    event_time_ms: offset as i64,
                };
                offset += 1;
                driver.record_processed(&message, now)
            };
            match step {
                Ok(Progress::Checkpointed(receipt)) => {
                    let at = driver.cursor().map_err(|e| e.to_string())?;
                    last_receipt = (receipt.sequence, at.watermark.offset);
                }
                Ok(Progress::Pending(0)) if offset >= MESSAGES => break 'process,
                Ok(Progress::Pending(_)) => {}
                Ok(Progress::Covered(_)) => {
                    return Err(format!(
                        "message {offset} past the resume point was covered"
                    ));
                }
                Err(_) if disk.is_crashed() => {
                    crashes += 1;
                    disk = disk.reboot();
                    continue 'process;
                }
                Err(e) => return Err(format!("unexpected error without a crash: {e}")),
            }
            if let Some(latest) = durable_latest(&disk) {
                if latest.0 < last_durable.0 || latest.1 < last_durable.1 {
                    return Err(format!(
                        "latest regressed from {last_durable:?} to {latest:?}"
                    ));
                }
                last_durable = latest;
            }
            if offset >= MESSAGES && matches!(policy, Policy::PerMessage) {
                break 'process;
            }
        }
        break;
    }
    let schedule = lock(&schedule);
    if let Some(v) = schedule.violations.first() {
        return Err(v.clone());
    }
    // A crash between a durable commit and its ack loses those acks for good: the restart
    // resumes past them, and acking a log source is only moving its read position, which the
    // durable checkpoint already records. So the end state is "every message durably processed",
    // not "every message acked".
    match durable_latest(&disk) {
        Some((_, offset)) if offset == MESSAGES => Ok(crashes),
        other => Err(format!(
            "finished with durable latest {other:?}, not offset {MESSAGES}"
        )),
    }
}

#[test]
fn crash_schedules_keep_every_durability_promise() {
    let schedules: u32 = std::env::var("CRASH_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    let crashes = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: schedules,
        // The schedules are cheap and deterministic per plan: no need to persist failures to
        // files in the source tree; a failure prints the minimal plan.
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&plans(), |plan| {
        let n = run_schedule(&plan).map_err(TestCaseError::fail)?;
        crashes.set(crashes.get() + n);
        Ok(())
    });
    let violations = u32::from(result.is_err());
    println!(
        "crash schedules: {schedules} run, {} crashes, {violations} violations",
        crashes.get()
    );
    if let Err(e) = result {
        panic!("a schedule broke a durability promise: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Grouped commits: several stages on one SQLite file, their commits sharing transactions and
// syncs (group commit), on a disk that loses every write not yet synced when the power goes.

/// Stages of a grouped schedule, each its own thread, checkpointer and store handle.
const GROUPED_STAGES: usize = 3;

/// `(sequence, offset)` of the durable latest of `stage`, as the disk would hold it if the
/// power went now: read from a copy of its durable bytes.
fn durable_latest_on(disk: &Disk, stage: &str) -> Result<Option<(u64, u64)>, String> {
    let copy = disk.durable_copy();
    let options = SqliteOptions {
        group_commit: false,
        ..sqlite_options()
    };
    let mut store = SqliteStorage::open_with(copy.path("ckpt.db"), &options)
        .map_err(|e| format!("the durable copy does not open: {e}"))?;
    let key = checkpoint_guest::keys::StageKeys::new("crash", "run", stage).latest();
    match store.get(&key) {
        Ok(Lookup::Found(entry)) => Ok(Some(sequence_and_offset(&entry.value))),
        Ok(Lookup::Missing) => Ok(None),
        Err(e) => Err(format!("the durable copy cannot be read: {e}")),
    }
}

fn sqlite_options() -> SqliteOptions {
    SqliteOptions {
        vfs: Some(VFS_NAME.into()),
        ..SqliteOptions::default()
    }
}

/// Checks at every ack that the durable latest of its stage covers every acked message.
struct DurableAckCheck {
    disk: Arc<Disk>,
    stage: String,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Consumer for DurableAckCheck {
    fn ack(&mut self, ids: Vec<String>) -> Result<(), String> {
        let durable = match durable_latest_on(&self.disk, &self.stage) {
            Ok(latest) => latest.map_or(0, |(_, offset)| offset),
            Err(e) => {
                lock(&self.violations).push(e);
                return Ok(());
            }
        };
        for id in &ids {
            let offset: u64 = id[1..].parse().expect("id m<offset>");
            if offset >= durable {
                lock(&self.violations).push(format!(
                    "{}: {id} acked while the durable latest offset is {durable}",
                    self.stage
                ));
            }
        }
        Ok(())
    }
}

/// One stage's incarnation: open, resume (checked against `last_receipt`), then drive the
/// plan's workload until done or the power goes. Returns the last receipt and whether the
/// stage finished.
fn grouped_stage(
    runtime: &Runtime,
    disk: &Arc<Disk>,
    plan: &Plan,
    stage: &str,
    last_receipt: (u64, u64),
    violations: &Arc<Mutex<Vec<String>>>,
) -> Result<((u64, u64), bool), String> {
    let mut last_receipt = last_receipt;
    let storage = match SqliteStorage::open_with(disk.path("ckpt.db"), &sqlite_options()) {
        Ok(s) => s,
        Err(_) if disk.is_crashed() => return Ok((last_receipt, false)),
        Err(e) => return Err(format!("{stage}: open without a crash: {e}")),
    };
    let consumer = DurableAckCheck {
        disk: Arc::clone(disk),
        stage: stage.into(),
        violations: Arc::clone(violations),
    };
    let options = Options {
        namespace: "crash".into(),
        max_retained: plan.max_retained,
        max_checkpoint_bytes: 4096,
    };
    let checkpointer =
        match Checkpointer::open_in(runtime, Box::new(storage), Box::new(consumer), &options) {
            Ok(c) => c,
            Err(_) if disk.is_crashed() => return Ok((last_receipt, false)),
            Err(e) => return Err(format!("{stage}: open: {e}")),
        };
    let driver = checkpointer.open_driver(&DriverOptions {
        run_id: "run".into(),
        stage: stage.into(),
        epoch: 1,
        policy: plan.policy,
        changelog_capacity: 0,
        overflow: OverflowPolicy::DropNew,
        max_in_flight: 4096,
    });
    let mut driver = match driver {
        Ok(d) => d,
        Err(_) if disk.is_crashed() => return Ok((last_receipt, false)),
        Err(e) => return Err(format!("{stage}: open-driver: {e}")),
    };
    let resume = driver.resumed_from().map_err(|e| e.to_string())?;
    if resume.point.sequence < last_receipt.0 || resume.point.watermark.offset < last_receipt.1 {
        return Err(format!(
            "{stage}: resumed at {:?} before the last receipt {last_receipt:?}",
            resume.point
        ));
    }
    if matches!(resume.origin, ResumeOrigin::Fallback(_)) {
        return Err(format!("{stage}: fell back although nothing was damaged"));
    }
    let mut offset = resume.point.watermark.offset;
    let (mut steps, mut last_was_flush, mut now) = (0usize, false, 0u64);
    loop {
        now += 1;
        steps += 1;
        let flush =
            offset >= MESSAGES || (plan.flushes[steps % plan.flushes.len()] && !last_was_flush);
        last_was_flush = flush;
        let step = if flush {
            driver.flush(None, now)
        } else {
            let message = ProcessedMessage {
                id: format!("m{offset}"),
                next_offset: offset + 1,
                event_time_ms: offset as i64,
            };
            offset += 1;
            driver.record_processed(&message, now)
        };
        match step {
            Ok(Progress::Checkpointed(receipt)) => {
                let at = driver.cursor().map_err(|e| e.to_string())?;
                last_receipt = (receipt.sequence, at.watermark.offset);
                if at.watermark.offset >= MESSAGES {
                    return Ok((last_receipt, true));
                }
            }
            Ok(Progress::Pending(0)) if offset >= MESSAGES => return Ok((last_receipt, true)),
            Ok(Progress::Pending(_)) => {}
            Ok(Progress::Covered(_)) => {
                return Err(format!(
                    "{stage}: message {offset} past the resume point was covered"
                ));
            }
            Err(_) if disk.is_crashed() => return Ok((last_receipt, false)),
            Err(e) => return Err(format!("{stage}: unexpected error without a crash: {e}")),
        }
    }
}

fn run_grouped_schedule(plan: &Plan, runtime: &Runtime) -> Result<u32, String> {
    let disk = Arc::new(Disk::new());
    // Syncs take a while, as on a disk, so that the stages' commits queue and group.
    disk.set_sync_delay(std::time::Duration::from_micros(100));
    let violations = Arc::new(Mutex::new(Vec::new()));
    let stages: Vec<String> = (0..GROUPED_STAGES).map(|i| format!("stage-{i}")).collect();
    let mut receipts = vec![(0u64, 0u64); GROUPED_STAGES];
    let mut durable = vec![(0u64, 0u64); GROUPED_STAGES];
    let mut crashes = 0;
    for incarnation in 0..20 {
        if let Some(&(gap, after)) = plan.crashes.get(incarnation) {
            disk.crash_at_io(u64::from(gap) * 4, after);
        }
        let outcomes: Vec<StageOutcome> = std::thread::scope(|scope| {
            let threads: Vec<_> = stages
                .iter()
                .zip(&receipts)
                .map(|(stage, &receipt)| {
                    let (disk, violations) = (&disk, &violations);
                    scope.spawn(move || {
                        grouped_stage(runtime, disk, plan, stage, receipt, violations)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("stage thread"))
                .collect()
        });
        let mut finished = true;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let (receipt, done) = outcome?;
            receipts[i] = receipt;
            finished &= done;
        }
        if let Some(v) = lock(&violations).first() {
            return Err(v.clone());
        }
        // The power goes after a finished run too: what was acked must survive it.
        if !disk.is_crashed() {
            disk.crash();
        }
        crashes += 1;
        disk.reboot();
        for (i, stage) in stages.iter().enumerate() {
            let latest = durable_latest_on(&disk, stage)?.unwrap_or((0, 0));
            if latest.0 < durable[i].0 || latest.1 < durable[i].1 {
                return Err(format!(
                    "{stage}: latest regressed from {:?} to {latest:?}",
                    durable[i]
                ));
            }
            if latest.0 < receipts[i].0 || latest.1 < receipts[i].1 {
                return Err(format!(
                    "{stage}: receipt {:?} lost, the durable latest is {latest:?}",
                    receipts[i]
                ));
            }
            durable[i] = latest;
        }
        if finished {
            break;
        }
    }
    for (stage, latest) in stages.iter().zip(&durable) {
        if latest.1 != MESSAGES {
            return Err(format!(
                "{stage}: finished with durable latest {latest:?}, not offset {MESSAGES}"
            ));
        }
    }
    Ok(crashes)
}

#[test]
fn grouped_sqlite_crash_schedules_keep_every_durability_promise() {
    // Each schedule runs several stages on real SQLite: a quarter as many as the others.
    let schedules: u32 = std::env::var("CRASH_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .map_or(64, |n: u32| (n / 4).max(1));
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 16,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let crashes = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config {
        cases: schedules,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&plans(), |plan| {
        let n = run_grouped_schedule(&plan, &runtime).map_err(TestCaseError::fail)?;
        crashes.set(crashes.get() + n);
        Ok(())
    });
    let violations = u32::from(result.is_err());
    println!(
        "crash schedules (grouped SQLite, power loss): {schedules} run, {} crashes, {violations} violations",
        crashes.get()
    );
    if let Err(e) = result {
        panic!("a grouped schedule broke a durability promise: {e}");
    }
}

/// One stage's end of an incarnation: its last (sequence, offset) receipt and whether it finished,
/// or the violation it found.
type StageOutcome = Result<((u64, u64), bool), String>;
