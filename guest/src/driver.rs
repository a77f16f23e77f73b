//! Turns processed messages into checkpoints by policy; acks them only through a durable write.

use crate::changelog::{MAX_CAPACITY, Ring};
use crate::checkpointer::{Checkpointer, resume_point_of};
use crate::errors::invalid;
use crate::model::{
    BatchProgress, ChangeEvent, ChangeKind, Changelog, Checkpoint, DriverOptions, Error,
    FencedInfo, Policy, ProcessedMessage, Progress, RegressionInfo, Resume, ResumePoint, Watermark,
};
use crate::ports::{Consumer, Storage};
use crate::validate::check_id;

/// One writer of one (run-id, stage).
pub struct Driver<S, C> {
    checkpointer: Checkpointer<S, C>,
    epoch: u64,
    policy: Policy,
    resumed_from: Resume,
    /// The last checkpoint this driver knows to be durable.
    cursor: ResumePoint,
    /// Where the pending messages have taken the stage.
    pending_watermark: Watermark,
    pending_ids: Vec<String>,
    /// Set after a failed write: the stored state is unknown (the commit may have happened, or
    /// another writer moved on), so the cursor is re-read before the next write.
    resync: bool,
    changelog: Ring,
}

impl<S: Storage, C: Consumer> Driver<S, C> {
    /// Validates `options`, reads the resume point and refuses an epoch older than the stored one.
    pub fn open(
        mut checkpointer: Checkpointer<S, C>,
        options: DriverOptions,
    ) -> Result<Self, Error> {
        check_id("run-id", &options.run_id)?;
        check_id("stage", &options.stage)?;
        if options.policy == Policy::PerBatch(0) {
            return Err(invalid("policy", "per-batch size must be at least 1"));
        }
        if options.changelog_capacity > MAX_CAPACITY {
            return Err(invalid(
                "changelog-capacity",
                format!("{}, at most {MAX_CAPACITY}", options.changelog_capacity),
            ));
        }
        let resumed_from = checkpointer.resume_point(&options.run_id, &options.stage)?;
        let cursor = resumed_from.point.clone();
        fence(&cursor, options.epoch)?;
        Ok(Self {
            checkpointer,
            epoch: options.epoch,
            policy: options.policy,
            pending_watermark: cursor.watermark,
            resumed_from,
            cursor,
            pending_ids: Vec::new(),
            resync: false,
            changelog: Ring::new(options.changelog_capacity, options.overflow),
        })
    }

    /// Where this driver resumed.
    pub fn resumed_from(&self) -> &Resume {
        &self.resumed_from
    }

    /// The last durable checkpoint this driver knows.
    pub fn cursor(&self) -> &ResumePoint {
        &self.cursor
    }

    /// The checkpointer underneath, for reads.
    pub fn checkpointer_mut(&mut self) -> &mut Checkpointer<S, C> {
        &mut self.checkpointer
    }

    /// Records one processed message; checkpoints when the policy says so.
    pub fn record_processed(
        &mut self,
        message: ProcessedMessage,
        now_ms: u64,
    ) -> Result<Progress, Error> {
        self.record(message)?;
        let due = match self.policy {
            Policy::PerMessage => true,
            Policy::PerBatch(n) => self.pending_ids.len() >= n as usize,
            Policy::ExplicitFlush => false,
        };
        if due {
            self.flush(now_ms)
        } else {
            Ok(Progress::Pending(self.pending_ids.len() as u32))
        }
    }

    /// Records messages in order; stops at the first error, keeping what came before it.
    pub fn record_processed_batch(
        &mut self,
        messages: Vec<ProcessedMessage>,
        now_ms: u64,
    ) -> Result<BatchProgress, Error> {
        let mut checkpoints = Vec::new();
        for message in messages {
            if let Progress::Checkpointed(receipt) = self.record_processed(message, now_ms)? {
                checkpoints.push(receipt);
            }
        }
        Ok(BatchProgress {
            checkpoints,
            pending: self.pending_ids.len() as u32,
        })
    }

    /// Writes a checkpoint covering the pending messages, if there are any.
    pub fn flush(&mut self, now_ms: u64) -> Result<Progress, Error> {
        if self.pending_ids.is_empty() {
            return Ok(Progress::Pending(0));
        }
        if self.resync {
            self.resync_cursor()?;
        }
        let checkpoint = Checkpoint {
            run_id: self.cursor.run_id.clone(),
            stage: self.cursor.stage.clone(),
            sequence: self.cursor.sequence + 1,
            epoch: self.epoch,
            watermark: self.pending_watermark,
            sources: Vec::new(),
            sinks: Vec::new(),
            operator_states: Vec::new(),
            idempotency_key: format!("{}-{}", self.epoch, self.cursor.sequence + 1),
            at_ms: now_ms,
        };
        let receipt = match self.checkpointer.write(&checkpoint, &self.pending_ids) {
            Ok(receipt) => receipt,
            Err(error) => {
                // Invalid and too-large touched no storage; anything else leaves it unknown.
                self.resync = !matches!(error, Error::Invalid(_) | Error::TooLarge(_));
                return Err(error);
            }
        };
        self.cursor = resume_point_of(&checkpoint);
        self.pending_ids.clear();
        self.changelog.push(ChangeEvent {
            kind: ChangeKind::Checkpoint,
            sequence: checkpoint.sequence,
            watermark: checkpoint.watermark,
        });
        Ok(Progress::Checkpointed(receipt))
    }

    /// A copy of the recent events.
    pub fn changelog(&self) -> Changelog {
        self.changelog.snapshot()
    }

    fn record(&mut self, message: ProcessedMessage) -> Result<(), Error> {
        if message.next_offset < self.pending_watermark.offset {
            return Err(Error::Regression(RegressionInfo {
                stored_sequence: self.cursor.sequence,
                stored_watermark: self.pending_watermark,
                attempted_sequence: self.cursor.sequence + 1,
                attempted_watermark: Watermark {
                    offset: message.next_offset,
                    event_time_ms: message.event_time_ms,
                },
                field: "offset".to_string(),
            }));
        }
        self.pending_watermark.offset = message.next_offset;
        if message.event_time_ms > self.pending_watermark.event_time_ms {
            self.pending_watermark.event_time_ms = message.event_time_ms;
            self.changelog.push(self.event(ChangeKind::Watermark));
        }
        self.pending_ids.push(message.id);
        self.changelog.push(self.event(ChangeKind::Processed));
        Ok(())
    }

    fn event(&self, kind: ChangeKind) -> ChangeEvent {
        ChangeEvent {
            kind,
            sequence: self.cursor.sequence,
            watermark: self.pending_watermark,
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
