//! Crash schedules of the operator tools: generated workloads mix writes with resets (`reset`,
//! `restore-savepoint`), savepoints (`create-savepoint`, `delete-savepoint`) and writes of a
//! stale owner, on the real component over [`FreezingStorage`], with a crash before or after a
//! randomly chosen storage call or ack. A model predicts every call's answer and the durable
//! state after it. After a crash the call in flight either committed or did not (the durable
//! state must be one of the two), the process reboots, and the call is retried, as a worker or
//! an operator would (a committed write comes back as a replay). After every call and reboot:
//!
//! - no acknowledged call is lost: the durable state is the model's, so the durable latest is
//!   the last acked write or reset, or the one in flight at the crash if it committed;
//! - the latest never goes back except through a committed reset, which moves the position
//!   and raises the epoch; from then on writes of an older epoch are `fenced` and change
//!   nothing;
//! - a created savepoint survives retention, writes and resets, byte for byte, until it is
//!   deleted; a retained copy is kept for exactly the newest `max-retained` checkpoints;
//! - an ack happens only once the checkpoint covering it is the durable latest, and resets ack
//!   nothing;
//! - after a reboot `resume-point` answers (from the latest, never a fallback) at the model's
//!   latest, `list-savepoints` lists exactly the model's savepoints, and a write of the epoch
//!   before a reset is fenced.
//!
//! `CRASH_SCHEDULES=n` sets how many schedules run (default 256, as the others).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use checkpoint_guest::keys::StageKeys;
use checkpoint_host::{
    Checkpoint, CheckpointError, Checkpointer, Consumer, Error, Options, ResetRequest,
    ResumeOrigin, Watermark,
};
use checkpoint_testkit::faults::FreezingStorage;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{CrashingStorage, Schedule, lock};

const NAMESPACE: &str = "ops";
const RUN: &str = "run";
const STAGE: &str = "stage";
/// The savepoint names a workload uses: few, so that creates meet taken names and deletes
/// meet existing savepoints.
const NAMES: [&str; 3] = ["keep", "pre-deploy", "nightly"];
/// FORMAT.md: the header flag of a stored reset record.
const RESET_FLAG: u16 = 0x0002;

/// A stored checkpoint's position (event time is its offset throughout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Point {
    sequence: u64,
    epoch: u64,
    offset: u64,
}

/// A checkpoint of the stage's chain: its position and whether it was a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    point: Point,
    reset: bool,
}

/// Reads position and reset flag straight from FORMAT.md's layout, so the check does not
/// depend on the component it checks.
fn decode(bytes: &[u8]) -> Link {
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
    let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
    let run_end = 16 + u32_at(12);
    let stage_end = run_end + 4 + u32_at(run_end);
    Link {
        point: Point {
            sequence: u64_at(stage_end),
            epoch: u64_at(stage_end + 8),
            offset: u64_at(stage_end + 16),
        },
        reset: flags & RESET_FLAG != 0,
    }
}

/// What the disk holds for the stage.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Durable {
    latest: Option<Link>,
    /// Retained copies, oldest first.
    retained: Vec<Link>,
    savepoints: BTreeMap<String, Point>,
}

fn keys() -> StageKeys {
    StageKeys::new(NAMESPACE, RUN, STAGE)
}

fn observe(disk: &FreezingStorage) -> Durable {
    let keys = keys();
    let raw = |key: &str| disk.durable_raw(key).map(|(bytes, _)| decode(&bytes));
    let mut durable = Durable {
        latest: raw(&keys.latest()),
        retained: Vec::new(),
        savepoints: BTreeMap::new(),
    };
    for key in disk.durable_keys() {
        if keys.history_sequence(&key).is_some() {
            durable.retained.extend(raw(&key));
        } else if let Some(name) = keys.savepoint_name(&key) {
            // Savepoints pin the checkpoint alone: no reset record.
            let pinned = raw(&key).expect("a listed key").point;
            durable.savepoints.insert(name.to_owned(), pinned);
        }
    }
    durable.retained.sort_by_key(|link| link.point.sequence);
    durable
}

/// What the model expects of the durable state, and of the calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Model {
    /// Every committed checkpoint, oldest first (sequences 1, 2, ...).
    chain: Vec<Link>,
    savepoints: BTreeMap<String, Point>,
}

/// A call's answer, as the model predicts it and as the component gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Written,
    Replayed,
    Fenced,
    Regression,
    Reset,
    Created,
    Deleted(bool),
    NotFound,
    Invalid,
}

impl Model {
    fn latest(&self) -> Option<Link> {
        self.chain.last().copied()
    }

    fn durable(&self, max_retained: u32) -> Durable {
        // The new copy counts as one of max-retained, so max-retained 1 keeps none.
        let keep = if max_retained > 1 {
            max_retained as usize
        } else {
            0
        };
        Durable {
            latest: self.latest(),
            retained: self.chain[self.chain.len().saturating_sub(keep)..].to_vec(),
            savepoints: self.savepoints.clone(),
        }
    }

    /// The checkpoint `get-at` finds: one of the newest `max_retained` (the latest always).
    fn retained(&self, sequence: u64, max_retained: u32) -> Option<Point> {
        let latest = self.latest()?.point.sequence;
        if sequence == 0 || sequence > latest || latest - sequence >= u64::from(max_retained) {
            return None;
        }
        self.chain
            .iter()
            .find(|link| link.point.sequence == sequence)
            .map(|link| link.point)
    }

    /// The answer to `call` and the model after it.
    fn predict(&self, call: &Call, max_retained: u32) -> (Answer, Model) {
        let mut next = self.clone();
        let answer = match call {
            Call::Write(point) => match self.latest() {
                Some(latest) if latest.point == *point && !latest.reset => Answer::Replayed,
                Some(latest) if point.epoch < latest.point.epoch => Answer::Fenced,
                Some(latest)
                    if point.sequence <= latest.point.sequence
                        || point.offset < latest.point.offset =>
                {
                    Answer::Regression
                }
                _ => {
                    next.chain.push(Link {
                        point: *point,
                        reset: false,
                    });
                    Answer::Written
                }
            },
            Call::Reset { offset, epoch, .. } => next.reset(*offset, *epoch),
            Call::Restore { name, epoch, .. } => match self.savepoints.get(*name) {
                Some(pinned) => next.reset(pinned.offset, *epoch),
                None => Answer::NotFound,
            },
            Call::Create { name, sequence } => {
                let target = match sequence {
                    None => self.latest().map(|link| link.point),
                    Some(sequence) => self.retained(*sequence, max_retained),
                };
                match (target, self.savepoints.get(*name)) {
                    (None, _) => Answer::NotFound,
                    (Some(target), Some(pinned)) if target == *pinned => Answer::Created,
                    (Some(_), Some(_)) => Answer::Invalid,
                    (Some(target), None) => {
                        next.savepoints.insert((*name).to_owned(), target);
                        Answer::Created
                    }
                }
            }
            Call::Delete { name } => Answer::Deleted(next.savepoints.remove(*name).is_some()),
        };
        (answer, next)
    }

    fn reset(&mut self, offset: u64, epoch: Option<u64>) -> Answer {
        let (sequence, stored_epoch) = self
            .latest()
            .map_or((0, 0), |link| (link.point.sequence, link.point.epoch));
        let epoch = match epoch {
            Some(epoch) if epoch <= stored_epoch => return Answer::Invalid,
            Some(epoch) => epoch,
            None => stored_epoch + 1,
        };
        self.chain.push(Link {
            point: Point {
                sequence: sequence + 1,
                epoch,
                offset,
            },
            reset: true,
        });
        Answer::Reset
    }
}

/// One generated step of a workload, made concrete ([`Call`]) against the model when it runs.
#[derive(Clone, Debug)]
enum Op {
    /// The owner writes the next checkpoint, `advance` messages on.
    Write {
        advance: u64,
    },
    /// A writer of the epoch before the latest's (the owner a reset took over from) writes.
    StaleWrite,
    /// `reset` to `to`, with the stored epoch + `bump` (none: the component's default).
    Reset {
        to: u64,
        bump: Option<u64>,
    },
    /// `create-savepoint` of the latest, or of the retained one `back` sequences before it.
    Create {
        name: usize,
        back: Option<u64>,
    },
    Delete {
        name: usize,
    },
    Restore {
        name: usize,
        bump: Option<u64>,
    },
}

/// A call with every argument fixed, so that a retry after a crash repeats it exactly.
#[derive(Clone, Debug)]
enum Call {
    Write(Point),
    Reset {
        offset: u64,
        epoch: Option<u64>,
        at_ms: u64,
    },
    Restore {
        name: &'static str,
        epoch: Option<u64>,
        at_ms: u64,
    },
    Create {
        name: &'static str,
        sequence: Option<u64>,
    },
    Delete {
        name: &'static str,
    },
}

impl Op {
    /// The call this step makes now; `None` for a stale write when no reset happened yet
    /// (there is no older owner).
    fn call(&self, model: &Model, step: usize) -> Option<Call> {
        let latest = model.latest().map(|link| link.point);
        let (sequence, epoch, offset) =
            latest.map_or((0, 1, 0), |p| (p.sequence, p.epoch, p.offset));
        // Resets are told apart from writes by their at-ms (writes have 0).
        let at_ms = step as u64 + 1;
        Some(match *self {
            Op::Write { advance } => Call::Write(Point {
                sequence: sequence + 1,
                epoch,
                offset: offset + advance,
            }),
            Op::StaleWrite if epoch > 1 => Call::Write(Point {
                sequence: sequence + 1,
                epoch: epoch - 1,
                offset: offset + 1,
            }),
            Op::StaleWrite => return None,
            Op::Reset { to, bump } => Call::Reset {
                offset: to,
                epoch: bump.map(|b| latest.map_or(0, |p| p.epoch) + b),
                at_ms,
            },
            Op::Create { name, back } => Call::Create {
                name: NAMES[name],
                sequence: back.map(|b| sequence.saturating_sub(b)),
            },
            Op::Delete { name } => Call::Delete { name: NAMES[name] },
            Op::Restore { name, bump } => Call::Restore {
                name: NAMES[name],
                epoch: bump.map(|b| latest.map_or(0, |p| p.epoch) + b),
                at_ms,
            },
        })
    }
}

fn checkpoint(point: &Point) -> Checkpoint {
    Checkpoint {
        run_id: RUN.into(),
        stage: STAGE.into(),
        sequence: point.sequence,
        epoch: point.epoch,
        watermark: Watermark {
            offset: point.offset,
            event_time_ms: point.offset as i64,
        },
        sources: vec![],
        sinks: vec![],
        operator_states: vec![],
        idempotency_key: String::new(),
        at_ms: 0,
    }
}

/// The id a write acks: its checkpoint's position.
fn ack_id(point: &Point) -> String {
    format!("{}.{}.{}", point.sequence, point.epoch, point.offset)
}

fn run_call(c: &mut Checkpointer, call: &Call) -> Result<Answer, String> {
    let result = match call {
        Call::Write(point) => c.write(&checkpoint(point), &[ack_id(point)]).map(|r| {
            if r.replayed {
                Answer::Replayed
            } else {
                Answer::Written
            }
        }),
        Call::Reset {
            offset,
            epoch,
            at_ms,
        } => c
            .reset(&ResetRequest {
                run_id: RUN.into(),
                stage: STAGE.into(),
                watermark: Watermark {
                    offset: *offset,
                    event_time_ms: *offset as i64,
                },
                sources: vec![],
                state: None,
                epoch: *epoch,
                at_ms: *at_ms,
            })
            .map(|_| Answer::Reset),
        Call::Restore { name, epoch, at_ms } => c
            .restore_savepoint(RUN, STAGE, name, *epoch, *at_ms)
            .map(|_| Answer::Reset),
        Call::Create { name, sequence } => c
            .create_savepoint(RUN, STAGE, name, *sequence)
            .map(|_| Answer::Created),
        Call::Delete { name } => c.delete_savepoint(RUN, STAGE, name).map(Answer::Deleted),
    };
    match result {
        Ok(answer) => Ok(answer),
        Err(Error::Checkpoint(CheckpointError::Fenced(_))) => Ok(Answer::Fenced),
        Err(Error::Checkpoint(CheckpointError::Regression(_))) => Ok(Answer::Regression),
        Err(Error::Checkpoint(CheckpointError::NotFound)) => Ok(Answer::NotFound),
        Err(Error::Checkpoint(CheckpointError::Invalid(_))) => Ok(Answer::Invalid),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks every ack against the disk: the acked write's checkpoint is the durable latest.
/// Crashes at its tick like a storage call.
struct AckCheck {
    disk: FreezingStorage,
    schedule: Arc<Mutex<Schedule>>,
}

impl Consumer for AckCheck {
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
        let latest = observe(&self.disk).latest;
        for id in &ids {
            let durable = latest.filter(|l| !l.reset).map(|l| ack_id(&l.point));
            if durable.as_ref() != Some(id) {
                schedule
                    .violations
                    .push(format!("{id} acked while the durable latest is {latest:?}"));
            }
        }
        if strike == Some(true) {
            self.disk.crash();
            return Err("the process crashed after the ack".into());
        }
        Ok(())
    }
}

/// The latest may only change forwards (a higher sequence); back (offset) only through a reset,
/// and a reset always raises the epoch. Independent of the model.
fn check_step(before: &Durable, after: &Durable) -> Result<(), String> {
    match (before.latest, after.latest) {
        (Some(_), None) => Err(format!("the latest {:?} vanished", before.latest)),
        (Some(a), Some(b)) if a != b => {
            let (a, b_point) = (a.point, b.point);
            if b_point.sequence <= a.sequence {
                return Err(format!("the latest went from {a:?} to {b:?}"));
            }
            if b.reset && b_point.epoch <= a.epoch {
                return Err(format!(
                    "a reset from {a:?} to {b:?} did not raise the epoch"
                ));
            }
            if !b.reset && (b_point.offset < a.offset || b_point.epoch < a.epoch) {
                return Err(format!("a write moved the latest from {a:?} back to {b:?}"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// After a reboot: what a restarted worker and an operator see, on a handle with no crash
/// scheduled. Reads, plus one write that must be fenced (it changes nothing).
fn check_after_reboot(
    disk: &FreezingStorage,
    model: &Model,
    options: &Options,
) -> Result<(), String> {
    let mut c = Checkpointer::open(
        Box::new(disk.clone()),
        Box::new(checkpoint_host::consumer::NullConsumer),
        options,
    )
    .map_err(|e| format!("open after a reboot: {e}"))?;
    let resume = c
        .resume_point(RUN, STAGE)
        .map_err(|e| format!("resume-point after a reboot: {e}"))?;
    let at = Point {
        sequence: resume.point.sequence,
        epoch: resume.point.epoch,
        offset: resume.point.watermark.offset,
    };
    match model.latest() {
        None if matches!(resume.origin, ResumeOrigin::Fresh) && at.sequence == 0 => {}
        Some(latest) if matches!(resume.origin, ResumeOrigin::Latest) && at == latest.point => {}
        expected => {
            return Err(format!(
                "resume-point after a reboot answered {at:?} ({:?}), the model has {expected:?}",
                resume.origin
            ));
        }
    }
    let listed: BTreeMap<String, Point> = c
        .list_savepoints(RUN, STAGE)
        .map_err(|e| format!("list-savepoints after a reboot: {e}"))?
        .into_iter()
        .map(|info| {
            let point = Point {
                sequence: info.point.sequence,
                epoch: info.point.epoch,
                offset: info.point.watermark.offset,
            };
            (info.name, point)
        })
        .collect();
    if listed != model.savepoints {
        return Err(format!(
            "list-savepoints after a reboot: {listed:?}, the model has {:?}",
            model.savepoints
        ));
    }
    if let Some(latest) = model.latest().filter(|l| l.point.epoch > 1) {
        let stale = Point {
            sequence: latest.point.sequence + 1,
            epoch: latest.point.epoch - 1,
            offset: latest.point.offset + 1,
        };
        match run_call(&mut c, &Call::Write(stale)) {
            Ok(Answer::Fenced) => {}
            other => {
                return Err(format!(
                    "a write of epoch {} after the latest {latest:?}: {other:?}, not fenced",
                    stale.epoch
                ));
            }
        }
    }
    Ok(())
}

/// One generated workload and where the crashes strike.
#[derive(Clone, Debug)]
struct OpsPlan {
    max_retained: u32,
    ops: Vec<Op>,
    /// One entry per process incarnation, while they last: crash at the nth I/O (storage call
    /// or ack) after the (re)start, before (`false`) or after (`true`) it.
    crashes: Vec<(u32, bool)>,
}

fn ops_plans() -> impl Strategy<Value = OpsPlan> {
    let name = 0..NAMES.len();
    let bump = prop::option::of(1u64..3);
    let op = prop_oneof![
        5 => (1u64..4).prop_map(|advance| Op::Write { advance }),
        1 => Just(Op::StaleWrite),
        2 => (0u64..40, bump.clone()).prop_map(|(to, bump)| Op::Reset { to, bump }),
        3 => (name.clone(), prop::option::of(0u64..4))
            .prop_map(|(name, back)| Op::Create { name, back }),
        1 => name.clone().prop_map(|name| Op::Delete { name }),
        2 => (name, bump).prop_map(|(name, bump)| Op::Restore { name, bump }),
    ];
    (
        1u32..4,
        prop::collection::vec(op, 1..40),
        prop::collection::vec((1u32..40, any::<bool>()), 0..=4),
    )
        .prop_map(|(max_retained, ops, crashes)| OpsPlan {
            max_retained,
            ops,
            crashes,
        })
}

/// What the schedules did, for the summary line.
#[derive(Clone, Copy, Debug, Default)]
struct OpsCounts {
    crashes: u64,
    /// Calls that answered (the in-flight ones included once they are resolved).
    writes: u64,
    replays: u64,
    fenced: u64,
    resets: u64,
    created: u64,
    deleted: u64,
    /// Calls in flight at a crash that had committed, and that had not.
    in_flight_committed: u64,
    in_flight_lost: u64,
}

impl OpsCounts {
    fn count(&mut self, answer: Answer) {
        match answer {
            Answer::Written => self.writes += 1,
            Answer::Replayed => self.replays += 1,
            Answer::Fenced => self.fenced += 1,
            Answer::Reset => self.resets += 1,
            Answer::Created => self.created += 1,
            Answer::Deleted(true) => self.deleted += 1,
            Answer::Deleted(false) | Answer::NotFound | Answer::Invalid | Answer::Regression => {}
        }
    }

    fn add(&mut self, other: &OpsCounts) {
        self.crashes += other.crashes;
        self.writes += other.writes;
        self.replays += other.replays;
        self.fenced += other.fenced;
        self.resets += other.resets;
        self.created += other.created;
        self.deleted += other.deleted;
        self.in_flight_committed += other.in_flight_committed;
        self.in_flight_lost += other.in_flight_lost;
    }
}

/// The call in flight when a crash struck: what it was, what the model expected, and what it
/// answered (an answer that came back before the crash was acked to the caller).
struct InFlight {
    step: usize,
    call: Call,
    expected: Answer,
    after: Model,
    result: Result<Answer, String>,
}

fn run_ops_schedule(plan: &OpsPlan, counts: &mut OpsCounts) -> Result<(), String> {
    let schedule = Arc::new(Mutex::new(Schedule::default()));
    let mut disk = FreezingStorage::new();
    let options = Options {
        namespace: NAMESPACE.into(),
        max_retained: plan.max_retained,
        max_checkpoint_bytes: 4096,
    };
    let retained = plan.max_retained;
    let mut model = Model::default();
    let mut previous = observe(&disk);
    // The next step, and the call to retry first (the one in flight at the last crash).
    let (mut step, mut retry) = (0usize, None::<Call>);
    // One incarnation per scheduled crash, then one that runs clean to the end.
    for incarnation in 0..=plan.crashes.len() {
        if let Some(&(gap, after)) = plan.crashes.get(incarnation) {
            let io = lock(&schedule).io;
            lock(&schedule).crash_at = Some((io + gap, after));
        }
        let storage = CrashingStorage {
            disk: disk.clone(),
            schedule: Arc::clone(&schedule),
        };
        let consumer = AckCheck {
            disk: disk.clone(),
            schedule: Arc::clone(&schedule),
        };
        let mut c = Checkpointer::open(Box::new(storage), Box::new(consumer), &options)
            .map_err(|e| format!("open: {e}"))?;
        let mut in_flight = None;
        // A restarted process first asks where the stage is (and may crash doing so).
        match c.resume_point(RUN, STAGE) {
            Ok(resume) => {
                let at = (resume.point.sequence, resume.point.epoch);
                let expected = model
                    .latest()
                    .map_or((0, 0), |l| (l.point.sequence, l.point.epoch));
                if at != expected && !(expected.0 == 0 && at.0 == 0) {
                    return Err(format!("resumed at {at:?}, the model has {expected:?}"));
                }
            }
            Err(_) if disk.is_crashed() => {}
            Err(e) => return Err(format!("resume-point without a crash: {e}")),
        }
        while !disk.is_crashed() && step < plan.ops.len() {
            let call = match retry.take() {
                Some(call) => call,
                None => match plan.ops[step].call(&model, step) {
                    Some(call) => call,
                    None => {
                        step += 1;
                        continue;
                    }
                },
            };
            let (expected, after) = model.predict(&call, retained);
            let result = run_call(&mut c, &call);
            if disk.is_crashed() {
                in_flight = Some(InFlight {
                    step,
                    call,
                    expected,
                    after,
                    result,
                });
                break;
            }
            let answer = result
                .map_err(|e| format!("step {step} {call:?}: an error without a crash: {e}"))?;
            if answer != expected {
                return Err(format!(
                    "step {step} {call:?}: answered {answer:?}, the model expected {expected:?}"
                ));
            }
            let durable = observe(&disk);
            if durable != after.durable(retained) {
                return Err(format!(
                    "step {step} {call:?} ({answer:?}): the disk holds {durable:?}, the model \
                     {:?}",
                    after.durable(retained)
                ));
            }
            check_step(&previous, &durable).map_err(|e| format!("step {step} {call:?}: {e}"))?;
            previous = durable;
            model = after;
            counts.count(answer);
            step += 1;
        }
        if !disk.is_crashed() {
            break;
        }
        counts.crashes += 1;
        disk = disk.reboot();
        let durable = observe(&disk);
        if let Some(flight) = in_flight {
            let InFlight {
                step,
                call,
                expected,
                after,
                result,
            } = flight;
            let committed = if durable == after.durable(retained) {
                true
            } else if durable == model.durable(retained) {
                false
            } else {
                return Err(format!(
                    "step {step} {call:?} in flight at a crash: the disk holds {durable:?}, \
                     neither the state before it {:?} nor after it {:?}",
                    model.durable(retained),
                    after.durable(retained)
                ));
            };
            if let Ok(answer) = result {
                // It answered before the process died: the caller was told.
                if answer != expected {
                    return Err(format!(
                        "step {step} {call:?}: answered {answer:?}, the model expected {expected:?}"
                    ));
                }
                if !committed && after != model {
                    return Err(format!(
                        "step {step} {call:?} answered {answer:?} and was lost in a crash"
                    ));
                }
            }
            if committed && after != model {
                counts.in_flight_committed += 1;
                counts.count(expected);
                model = after;
            } else if after != model {
                counts.in_flight_lost += 1;
            }
            retry = Some(call);
        }
        check_step(&previous, &durable).map_err(|e| format!("after a reboot: {e}"))?;
        previous = durable;
        check_after_reboot(&disk, &model, &options)?;
    }
    if step < plan.ops.len() || retry.is_some() {
        return Err(format!("the workload stopped at step {step}"));
    }
    if let Some(v) = lock(&schedule).violations.first() {
        return Err(v.clone());
    }
    // The end of the run is a crash too: everything answered survives it.
    disk.crash();
    let disk = disk.reboot();
    let durable = observe(&disk);
    if durable != model.durable(retained) {
        return Err(format!(
            "at the end the disk holds {durable:?}, the model {:?}",
            model.durable(retained)
        ));
    }
    check_after_reboot(&disk, &model, &options)
}

#[test]
fn operator_crash_schedules_keep_every_promise_of_reset_and_savepoints() {
    let schedules: u32 = std::env::var("CRASH_SCHEDULES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    let counts = std::cell::Cell::new(OpsCounts::default());
    let mut runner = TestRunner::new(Config {
        cases: schedules,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&ops_plans(), |plan| {
        let mut mine = OpsCounts::default();
        run_ops_schedule(&plan, &mut mine).map_err(TestCaseError::fail)?;
        let mut total = counts.get();
        total.add(&mine);
        counts.set(total);
        Ok(())
    });
    let violations = u32::from(result.is_err());
    let c = counts.get();
    println!(
        "crash schedules (operator): {schedules} run, {} crashes, {} writes ({} replays), {} \
         resets and restores, {} savepoints created, {} deleted, {} stale writes fenced; in \
         flight at a crash: {} committed, {} not; {violations} violations",
        c.crashes,
        c.writes,
        c.replays,
        c.resets,
        c.created,
        c.deleted,
        c.fenced,
        c.in_flight_committed,
        c.in_flight_lost
    );
    if let Err(e) = result {
        panic!("an operator schedule broke a promise: {e}");
    }
    assert!(
        c.crashes > 0 && c.resets > 0 && c.created > 0 && c.deleted > 0 && c.fenced > 0,
        "the schedules left a kind of call or the crashes untested: {c:?}"
    );
}
