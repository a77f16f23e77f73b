//! Turns messages into checkpoints and acks a message only through a durable checkpoint that
//! covers it.
//!
//! Two ways in: `record_processed` for a log read in order (the policy decides when to write),
//! and `begin` / `complete` / `flush` for everything else: several inputs, redeliveries,
//! out-of-order completion and operator state. Both feed the same per-input queues. A message
//! is *taken* (it has a ticket), *released* once it and every message taken before it from the
//! same input are complete, and *durable* once a written checkpoint covers it; only then is it
//! acked.

use crate::changelog::{MAX_CAPACITY, Ring};
use crate::checkpointer::{Checkpointer, resume_point_of};
use crate::codec::{MAX_ACK_ID_BYTES, MAX_ACK_IDS};
use crate::errors::invalid;
use crate::model::{
    AckOutcome, Admission, BatchProgress, ChangeEvent, ChangeKind, Changelog, Checkpoint,
    Completion, DriverOptions, Error, FencedInfo, Message, Policy, ProcessedMessage, Progress,
    RegressionInfo, Resume, ResumePoint, SourcePosition, StageState, Watermark,
};
use crate::ports::{Consumer, Storage};
use crate::validate::{MAX_ID_BYTES, check_id};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Largest `max-in-flight`: every message in flight may end up in one checkpoint's batch, whose
/// ids are stored with it.
pub const MAX_IN_FLIGHT: u32 = MAX_ACK_IDS as u32;
/// How many ids of checkpointed messages without offset a driver remembers to recognise their
/// redelivery (besides the ids stored with the checkpoint it resumed from).
pub const REMEMBERED_IDS: usize = 1 << 16;

/// The stage's own input: its position is the checkpoint's `watermark`.
const OWN_INPUT: &str = "";

/// One writer of one (run-id, stage).
pub struct Driver<S, C> {
    checkpointer: Checkpointer<S, C>,
    epoch: u64,
    policy: Policy,
    max_in_flight: usize,
    resumed_from: Resume,
    recovered_acks: AckOutcome,
    /// The last checkpoint this driver knows to be durable.
    cursor: ResumePoint,
    /// Positions the last durable checkpoint covers.
    durable: Positions,
    /// Positions the next checkpoint will cover: `durable` moved on by the released messages.
    next: Positions,
    /// Taken messages not yet released, per input.
    inputs: BTreeMap<String, Input>,
    /// Ticket -> input, for every taken message not yet released.
    tickets: BTreeMap<u64, String>,
    last_ticket: u64,
    /// Ids of released messages that no durable checkpoint covers yet.
    released: Vec<String>,
    /// Bytes of the ids of every message taken and not yet durable.
    in_flight_id_bytes: usize,
    /// Ids whose checkpoint is durable but whose ack failed: acked again with the next one.
    unacked: Vec<String>,
    /// Ids of messages without offset that are taken and not yet durable.
    in_flight_ids: BTreeSet<String>,
    /// Ids of checkpointed messages, to recognise redeliveries of messages without offset.
    remembered: Remembered,
    /// The state the next checkpoint carries; `None`: that of the checkpoint resumed from.
    state: Option<StageState>,
    /// `state` differs from what the last durable checkpoint carries.
    state_changed: bool,
    /// Set after a failed write: the stored state is unknown (the commit may have happened, or
    /// another writer moved on), so the cursor is re-read before the next write.
    resync: bool,
    changelog: Ring,
}

/// How far a checkpoint takes the stage: its own watermark and its named inputs' positions.
#[derive(Clone)]
struct Positions {
    watermark: Watermark,
    sources: BTreeMap<String, SourcePosition>,
}

impl Positions {
    /// The next offset of `input` (0 when it has none yet).
    fn next_offset(&self, input: &str) -> u64 {
        if input == OWN_INPUT {
            self.watermark.offset
        } else {
            self.sources.get(input).map_or(0, |s| s.watermark.offset)
        }
    }
}

/// The messages taken from one input and not yet released, oldest first.
#[derive(Default)]
struct Input {
    /// Above every offset taken so far (a `record_processed` message may repeat it).
    taken_next: u64,
    queue: VecDeque<Taken>,
}

struct Taken {
    ticket: u64,
    id: String,
    /// The offset after this message; `None` for a message without offset.
    next_offset: Option<u64>,
    event_time_ms: i64,
    done: bool,
}

/// A bounded set of ids, oldest forgotten first.
#[derive(Default)]
struct Remembered {
    order: VecDeque<String>,
    set: BTreeSet<String>,
}

impl Remembered {
    fn insert(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > REMEMBERED_IDS
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

impl<S: Storage, C: Consumer> Driver<S, C> {
    /// Validates `options`, reads the resume point, refuses an epoch older than the stored one,
    /// then acks again the ids stored with the checkpoint it resumes from.
    pub fn open(
        mut checkpointer: Checkpointer<S, C>,
        options: DriverOptions,
    ) -> Result<Self, Error> {
        check_id("run-id", &options.run_id)?;
        check_id("stage", &options.stage)?;
        if options.max_in_flight == 0 || options.max_in_flight > MAX_IN_FLIGHT {
            return Err(invalid(
                "max-in-flight",
                format!("{}, must be 1 to {MAX_IN_FLIGHT}", options.max_in_flight),
            ));
        }
        match options.policy {
            Policy::PerBatch(0) => {
                return Err(invalid("policy", "per-batch size must be at least 1"));
            }
            Policy::PerBatch(n) if n > options.max_in_flight => {
                return Err(invalid(
                    "policy",
                    format!(
                        "per-batch({n}) is above max-in-flight {}: the cap would always \
                         checkpoint first; raise max-in-flight or lower the batch",
                        options.max_in_flight
                    ),
                ));
            }
            _ => {}
        }
        if options.changelog_capacity > MAX_CAPACITY {
            return Err(invalid(
                "changelog-capacity",
                format!("{}, at most {MAX_CAPACITY}", options.changelog_capacity),
            ));
        }
        let (resumed_from, stored_ids) =
            checkpointer.resume_with_ack_ids(&options.run_id, &options.stage)?;
        let cursor = resumed_from.point.clone();
        fence(&cursor, options.epoch)?;

        let durable = Positions {
            watermark: cursor.watermark,
            sources: resumed_from
                .checkpoint
                .iter()
                .flat_map(|c| c.sources.iter())
                .map(|s| (s.name.clone(), s.clone()))
                .collect(),
        };
        let recovered_acks = checkpointer.ack(&stored_ids);
        let unacked = match recovered_acks {
            AckOutcome::Failed(_) => stored_ids.clone(),
            AckOutcome::Acked(_) => Vec::new(),
        };
        let mut remembered = Remembered::default();
        for id in stored_ids {
            remembered.insert(id);
        }
        Ok(Self {
            checkpointer,
            epoch: options.epoch,
            policy: options.policy,
            max_in_flight: options.max_in_flight as usize,
            resumed_from,
            recovered_acks,
            cursor,
            next: durable.clone(),
            durable,
            inputs: BTreeMap::new(),
            tickets: BTreeMap::new(),
            last_ticket: 0,
            released: Vec::new(),
            in_flight_id_bytes: 0,
            unacked,
            in_flight_ids: BTreeSet::new(),
            remembered,
            state: None,
            state_changed: false,
            resync: false,
            changelog: Ring::new(options.changelog_capacity, options.overflow),
        })
    }

    /// Where this driver resumed.
    pub fn resumed_from(&self) -> &Resume {
        &self.resumed_from
    }

    /// What became of the acks sent again at open.
    pub fn recovered_acks(&self) -> &AckOutcome {
        &self.recovered_acks
    }

    /// The last durable checkpoint this driver knows.
    pub fn cursor(&self) -> &ResumePoint {
        &self.cursor
    }

    /// The checkpointer underneath, for reads.
    pub fn checkpointer_mut(&mut self) -> &mut Checkpointer<S, C> {
        &mut self.checkpointer
    }

    /// Records one processed message of the stage's own input, in order; checkpoints when the
    /// policy says so.
    pub fn record_processed(
        &mut self,
        message: ProcessedMessage,
        now_ms: u64,
    ) -> Result<Progress, Error> {
        let next_offset = message.next_offset;
        if next_offset > 0 && next_offset <= self.durable.watermark.offset {
            return Ok(Progress::Covered(self.checkpointer.ack(&[message.id])));
        }
        let taken_next = self.input(OWN_INPUT).taken_next;
        if next_offset < taken_next {
            return Err(Error::Regression(RegressionInfo {
                stored_sequence: self.cursor.sequence,
                stored_watermark: Watermark {
                    offset: taken_next,
                    event_time_ms: self.next.watermark.event_time_ms,
                },
                attempted_sequence: self.cursor.sequence + 1,
                attempted_watermark: Watermark {
                    offset: next_offset,
                    event_time_ms: message.event_time_ms,
                },
                field: "offset".to_string(),
            }));
        }
        if self.at_cap(&message.id) {
            if self.released.is_empty() {
                return Err(invalid(
                    "message",
                    format!(
                        "{} messages are taken by `begin` and not complete (max-in-flight {}): \
                         complete some first",
                        self.in_flight(),
                        self.max_in_flight
                    ),
                ));
            }
            self.flush(None, now_ms)?;
        }
        let ticket = self.take(
            OWN_INPUT,
            message.id,
            Some(next_offset),
            message.event_time_ms,
        )?;
        let input = self.inputs.get_mut(OWN_INPUT).expect("just taken");
        input.taken_next = input.taken_next.max(next_offset);
        self.finish(ticket)?;
        if self.due() {
            self.flush(None, now_ms)
        } else {
            Ok(Progress::Pending(self.released.len() as u32))
        }
    }

    /// Records messages in order; stops at the first error, keeping what came before it.
    pub fn record_processed_batch(
        &mut self,
        messages: Vec<ProcessedMessage>,
        now_ms: u64,
    ) -> Result<BatchProgress, Error> {
        let mut checkpoints = Vec::new();
        let mut covered = 0;
        for message in messages {
            match self.record_processed(message, now_ms)? {
                Progress::Checkpointed(receipt) => checkpoints.push(receipt),
                Progress::Covered(_) => covered += 1,
                Progress::Pending(_) => {}
            }
        }
        Ok(BatchProgress {
            checkpoints,
            pending: self.released.len() as u32,
            covered,
        })
    }

    /// Takes a message before it is processed, or says it is covered already or must wait.
    pub fn begin(&mut self, message: Message) -> Result<Admission, Error> {
        if message.source.len() > MAX_ID_BYTES {
            return Err(invalid(
                "message.source",
                format!("{} bytes, at most {MAX_ID_BYTES}", message.source.len()),
            ));
        }
        if message.id.len() > MAX_ACK_ID_BYTES {
            return Err(invalid(
                "message.id",
                format!("{} bytes, at most {MAX_ACK_ID_BYTES}", message.id.len()),
            ));
        }
        let next_offset = match message.offset {
            Some(offset) => Some(offset.checked_add(1).ok_or_else(|| {
                invalid("message.offset", "18446744073709551615 has no next offset")
            })?),
            None => None,
        };
        match next_offset {
            Some(next) => {
                if next <= self.durable.next_offset(&message.source) {
                    return Ok(Admission::Covered(self.checkpointer.ack(&[message.id])));
                }
                let taken_next = self.input(&message.source).taken_next;
                if next <= taken_next {
                    return Err(self.input_regression(&message, taken_next, next, "offset"));
                }
            }
            None => {
                if self.remembered.set.contains(&message.id) {
                    return Ok(Admission::Covered(self.checkpointer.ack(&[message.id])));
                }
                if self.in_flight_ids.contains(&message.id) {
                    let at = self.next.next_offset(&message.source);
                    return Err(self.input_regression(&message, at, at, "id"));
                }
            }
        }
        if self.at_cap(&message.id) {
            return Ok(Admission::Backpressure(self.in_flight() as u32));
        }
        if next_offset.is_none() {
            self.in_flight_ids.insert(message.id.clone());
        }
        let ticket = self.take(
            &message.source,
            message.id,
            next_offset,
            message.event_time_ms,
        )?;
        if let Some(next) = next_offset {
            self.inputs
                .get_mut(&message.source)
                .expect("just taken")
                .taken_next = next;
        }
        Ok(Admission::Admitted(ticket))
    }

    /// Marks a taken message done and releases the completed prefix of its input.
    pub fn complete(&mut self, ticket: u64) -> Result<Completion, Error> {
        let released = self.finish(ticket)?;
        Ok(Completion {
            released,
            due: self.due(),
        })
    }

    /// Writes a checkpoint covering the released messages and carrying `state` (or the last
    /// state), if there is anything new to write.
    pub fn flush(&mut self, state: Option<StageState>, now_ms: u64) -> Result<Progress, Error> {
        if let Some(state) = state {
            let same = match &self.state {
                Some(held) => *held == state,
                None => self.resumed_state_is(&state),
            };
            if !same {
                self.state = Some(state);
                self.state_changed = true;
            }
        }
        if self.released.is_empty() && !self.state_changed {
            return Ok(Progress::Pending(0));
        }
        if self.resync {
            self.resync_cursor()?;
        }
        let (sinks, operator_states) = self.take_state();
        let checkpoint = Checkpoint {
            run_id: self.cursor.run_id.clone(),
            stage: self.cursor.stage.clone(),
            sequence: self.cursor.sequence + 1,
            epoch: self.epoch,
            watermark: self.next.watermark,
            sources: self.next.sources.values().cloned().collect(),
            sinks,
            operator_states,
            idempotency_key: format!("{}-{}", self.epoch, self.cursor.sequence + 1),
            at_ms: now_ms,
        };
        let batch = self.batch();
        let written = self.checkpointer.write(&checkpoint, &batch);
        let Checkpoint {
            sinks,
            operator_states,
            sequence,
            watermark,
            ..
        } = checkpoint;
        self.put_state(sinks, operator_states);
        let receipt = match written {
            Ok(receipt) => receipt,
            Err(error) => {
                // Invalid and too-large touched no storage; anything else leaves it unknown.
                self.resync = !matches!(error, Error::Invalid(_) | Error::TooLarge(_));
                return Err(error);
            }
        };
        self.cursor.sequence = sequence;
        self.cursor.epoch = self.epoch;
        self.cursor.watermark = watermark;
        self.durable = self.next.clone();
        self.state_changed = false;
        self.unacked = match receipt.acks {
            AckOutcome::Acked(_) => Vec::new(),
            AckOutcome::Failed(_) => batch,
        };
        for id in std::mem::take(&mut self.released) {
            self.in_flight_id_bytes -= id.len();
            if self.in_flight_ids.remove(&id) {
                self.remembered.insert(id);
            }
        }
        self.changelog.push(ChangeEvent {
            kind: ChangeKind::Checkpoint,
            sequence,
            watermark,
        });
        Ok(Progress::Checkpointed(receipt))
    }

    /// A copy of the recent events.
    pub fn changelog(&self) -> Changelog {
        self.changelog.snapshot()
    }

    fn input(&mut self, name: &str) -> &mut Input {
        if !self.inputs.contains_key(name) {
            let input = Input {
                taken_next: self.next.next_offset(name),
                queue: VecDeque::new(),
            };
            self.inputs.insert(name.to_string(), input);
        }
        self.inputs.get_mut(name).expect("inserted above")
    }

    /// Messages taken and not yet covered by a durable checkpoint.
    fn in_flight(&self) -> usize {
        self.tickets.len() + self.released.len()
    }

    /// Taking one more message (with this id) would pass a bound of the next checkpoint's batch.
    fn at_cap(&self, id: &str) -> bool {
        self.in_flight() >= self.max_in_flight
            || self.in_flight_id_bytes + id.len() > MAX_ACK_ID_BYTES
    }

    fn take(
        &mut self,
        input: &str,
        id: String,
        next_offset: Option<u64>,
        event_time_ms: i64,
    ) -> Result<u64, Error> {
        self.last_ticket += 1;
        let ticket = self.last_ticket;
        self.in_flight_id_bytes += id.len();
        self.input(input).queue.push_back(Taken {
            ticket,
            id,
            next_offset,
            event_time_ms,
            done: false,
        });
        self.tickets.insert(ticket, input.to_string());
        Ok(ticket)
    }

    /// Marks `ticket` done and releases the completed prefix of its input, oldest first.
    fn finish(&mut self, ticket: u64) -> Result<Vec<u64>, Error> {
        let unknown = || {
            invalid(
                "ticket",
                format!(
                    "{ticket} is not in flight: never given by `begin`, already completed, or \
                     from a driver before a restart"
                ),
            )
        };
        let name = self.tickets.get(&ticket).ok_or_else(unknown)?.clone();
        let input = self.inputs.get_mut(&name).ok_or_else(unknown)?;
        let at = input
            .queue
            .binary_search_by_key(&ticket, |t| t.ticket)
            .map_err(|_| unknown())?;
        if input.queue[at].done {
            return Err(unknown());
        }
        input.queue[at].done = true;
        let mut released = Vec::new();
        while input.queue.front().is_some_and(|t| t.done) {
            let taken = input.queue.pop_front().expect("front exists");
            released.push(taken);
        }
        let mut tickets = Vec::with_capacity(released.len());
        for taken in released {
            self.tickets.remove(&taken.ticket);
            tickets.push(taken.ticket);
            self.release(&name, taken);
        }
        Ok(tickets)
    }

    /// Moves the next checkpoint's positions over a released message.
    fn release(&mut self, input: &str, taken: Taken) {
        let time = taken.event_time_ms;
        if input == OWN_INPUT {
            if let Some(next) = taken.next_offset {
                self.next.watermark.offset = self.next.watermark.offset.max(next);
            }
        } else {
            let position = self
                .next
                .sources
                .entry(input.to_string())
                .or_insert_with(|| SourcePosition {
                    name: input.to_string(),
                    sequence: 0,
                    watermark: Watermark {
                        offset: 0,
                        event_time_ms: time,
                    },
                });
            position.sequence += 1;
            if let Some(next) = taken.next_offset {
                position.watermark.offset = position.watermark.offset.max(next);
            }
            position.watermark.event_time_ms = position.watermark.event_time_ms.max(time);
        }
        if time > self.next.watermark.event_time_ms {
            self.next.watermark.event_time_ms = time;
            self.changelog.push(self.event(ChangeKind::Watermark));
        }
        self.released.push(taken.id);
        self.changelog.push(self.event(ChangeKind::Processed));
    }

    /// The policy, or the in-flight cap, calls for a checkpoint of the released messages.
    fn due(&self) -> bool {
        let pending = self.released.len();
        let by_policy = match self.policy {
            Policy::PerMessage => true,
            Policy::PerBatch(n) => pending >= n as usize,
            Policy::ExplicitFlush => false,
        };
        pending > 0 && (by_policy || self.in_flight() >= self.max_in_flight)
    }

    /// The ids the next checkpoint acks (and stores): earlier failed acks, then the released.
    /// Failed acks beyond the bounds are dropped, oldest first: their checkpoints are durable,
    /// so their redelivery is recognised by offset (or, without offset, by id while remembered).
    fn batch(&mut self) -> Vec<String> {
        let released_bytes: usize = self.released.iter().map(String::len).sum();
        let mut room_ids = MAX_ACK_IDS.saturating_sub(self.released.len());
        let mut room_bytes = MAX_ACK_ID_BYTES.saturating_sub(released_bytes);
        let mut kept: Vec<String> = Vec::new();
        for id in self.unacked.iter().rev() {
            if room_ids == 0 || id.len() > room_bytes {
                break;
            }
            room_ids -= 1;
            room_bytes -= id.len();
            kept.push(id.clone());
        }
        kept.reverse();
        kept.extend(self.released.iter().cloned());
        kept
    }

    /// The state for the next checkpoint, moved out (put back by `put_state`).
    fn take_state(
        &mut self,
    ) -> (
        Vec<crate::model::SinkPosition>,
        Vec<crate::model::OperatorState>,
    ) {
        let state = match &mut self.state {
            Some(state) => state,
            None => match &mut self.resumed_from.checkpoint {
                Some(resumed) => {
                    return (
                        std::mem::take(&mut resumed.sinks),
                        std::mem::take(&mut resumed.operator_states),
                    );
                }
                None => return (Vec::new(), Vec::new()),
            },
        };
        (
            std::mem::take(&mut state.sinks),
            std::mem::take(&mut state.operator_states),
        )
    }

    fn put_state(
        &mut self,
        sinks: Vec<crate::model::SinkPosition>,
        operator_states: Vec<crate::model::OperatorState>,
    ) {
        match (&mut self.state, &mut self.resumed_from.checkpoint) {
            (Some(state), _) => {
                state.sinks = sinks;
                state.operator_states = operator_states;
            }
            (None, Some(resumed)) => {
                resumed.sinks = sinks;
                resumed.operator_states = operator_states;
            }
            (None, None) => {}
        }
    }

    /// `state` equals what the checkpoint resumed from carries.
    fn resumed_state_is(&self, state: &StageState) -> bool {
        match &self.resumed_from.checkpoint {
            Some(resumed) => {
                resumed.sinks == state.sinks && resumed.operator_states == state.operator_states
            }
            None => state.sinks.is_empty() && state.operator_states.is_empty(),
        }
    }

    fn input_regression(
        &self,
        message: &Message,
        taken_next: u64,
        attempted_next: u64,
        field: &str,
    ) -> Error {
        Error::Regression(RegressionInfo {
            stored_sequence: self.cursor.sequence,
            stored_watermark: Watermark {
                offset: taken_next,
                event_time_ms: self.next.watermark.event_time_ms,
            },
            attempted_sequence: self.cursor.sequence + 1,
            attempted_watermark: Watermark {
                offset: attempted_next,
                event_time_ms: message.event_time_ms,
            },
            field: field.to_string(),
        })
    }

    fn event(&self, kind: ChangeKind) -> ChangeEvent {
        ChangeEvent {
            kind,
            sequence: self.cursor.sequence,
            watermark: self.next.watermark,
        }
    }

    /// Adopts the stored latest as the cursor after a failed write.
    fn resync_cursor(&mut self) -> Result<(), Error> {
        match self
            .checkpointer
            .get(&self.cursor.run_id, &self.cursor.stage)
        {
            Ok(stored) => {
                fence(&resume_point_of(&stored), self.epoch)?;
                if stored.sequence > self.cursor.sequence {
                    self.cursor = resume_point_of(&stored);
                }
            }
            Err(Error::NotFound) => {}
            Err(error) => return Err(error),
        }
        self.resync = false;
        Ok(())
    }
}

fn fence(stored: &ResumePoint, epoch: u64) -> Result<(), Error> {
    if stored.sequence > 0 && epoch < stored.epoch {
        return Err(Error::Fenced(FencedInfo {
            stored_epoch: stored.epoch,
            attempted_epoch: epoch,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
