//! The demo's checks, done against what is on disk rather than what the worker believes.
//!
//! `Verifier` is the pipeline's consumer: at every ack it reads the durable latest checkpoint
//! through its own store connection and its own codec instance, and counts every acked
//! message that this checkpoint does not cover. `Progression` checks that nothing the worker
//! was told is durable ever goes back, across crashes.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result};
use checkpoint_host::{
    AckOutcome, Checkpoint, Codec, Consumer, Lookup, Receipt, Resume, ResumeOrigin, ResumePoint,
    Storage,
};

use super::source::Source;
use crate::open_store;

/// How many examples of each failure a report keeps.
const EXAMPLES: usize = 5;

/// Checks acks against the durable state; shared by every consumer the restarts create.
#[derive(Clone)]
pub struct Verifier {
    state: Arc<Mutex<AckState>>,
}

struct AckState {
    /// A connection of its own: it sees only what the worker's connection committed.
    storage: Box<dyn Storage>,
    codec: Codec,
    latest_key: String,
    acked: Vec<bool>,
    acks: u64,
    ack_calls: u64,
    violations: u64,
    examples: Vec<String>,
}

/// What the acks looked like.
pub struct AckSummary {
    pub acks: u64,
    pub ack_calls: u64,
    pub acked_messages: u64,
    pub unacked: u64,
    pub violations: u64,
    pub examples: Vec<String>,
}

impl Verifier {
    /// Opens a separate connection to `url` to watch the checkpoint stored under `latest_key`.
    pub fn open(url: &str, latest_key: String, messages: u64) -> Result<Self> {
        let storage = open_store(url)?;
        let codec = Codec::new().context("loading the checkpoint component for the verifier")?;
        let len = usize::try_from(messages).context("too many messages for this machine")?;
        Ok(Self {
            state: Arc::new(Mutex::new(AckState {
                storage,
                codec,
                latest_key,
                acked: vec![false; len],
                acks: 0,
                ack_calls: 0,
                violations: 0,
                examples: Vec::new(),
            })),
        })
    }

    /// A consumer for one worker's checkpointer.
    pub fn consumer(&self) -> Box<dyn Consumer> {
        Box::new(self.clone())
    }

    /// The durable latest checkpoint, read on the verifier's own connection.
    pub fn durable_latest(&self) -> Result<Option<Checkpoint>> {
        self.lock().durable_latest().map_err(anyhow::Error::msg)
    }

    /// The component's signature of a chain, on the verifier's codec instance.
    pub fn chain_signature(&self, chain: &[Checkpoint]) -> Result<String> {
        self.lock()
            .codec
            .chain_signature(chain)
            .context("signing the history chain")
    }

    pub fn summary(&self) -> AckSummary {
        let state = self.lock();
        let acked_messages = state.acked.iter().filter(|acked| **acked).count() as u64;
        AckSummary {
            acks: state.acks,
            ack_calls: state.ack_calls,
            acked_messages,
            unacked: state.acked.len() as u64 - acked_messages,
            violations: state.violations,
            examples: state.examples.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, AckState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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

impl Consumer for Verifier {
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String> {
        let mut state = self.lock();
        state.ack_calls += 1;
        // Fail closed: an ack we cannot check against the disk counts against the component.
        let durable = match state.durable_latest() {
            Ok(Some(checkpoint)) => Some(checkpoint.watermark.offset),
            Ok(None) => None,
            Err(e) => {
                state.violation(format!(
                    "ack of {} messages: durable state unreadable: {e}",
                    message_ids.len()
                ));
                None
            }
        };
        for id in &message_ids {
            state.acks += 1;
            let offset = Source::offset_of(id);
            let slot = offset
                .and_then(|o| usize::try_from(o).ok())
                .filter(|&o| o < state.acked.len());
            let Some(slot) = slot else {
                state.violation(format!("acked {id}, which the source never sent"));
                continue;
            };
            state.acked[slot] = true;
            match durable {
                Some(covered) if (slot as u64) < covered => {}
                Some(covered) => state.violation(format!(
                    "acked {id} while the durable checkpoint only covers offsets below {covered}"
                )),
                None => state.violation(format!("acked {id} with no durable checkpoint")),
            }
        }
        Ok(())
    }
}

/// Checks that durable progress only moves forward: receipts, cursors, resume points after
/// crashes, and the retained history at the end.
#[derive(Default)]
pub struct Progression {
    last_sequence: u64,
    last_offset: u64,
    pub checkpoints: u64,
    pub replayed: u64,
    pub ack_failures: u64,
    pub regressions: u64,
    pub examples: Vec<String>,
}

impl Progression {
    fn regression(&mut self, what: String) {
        self.regressions += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what);
        }
    }

    /// Every receipt must carry a higher sequence than the one before, crashes or not.
    pub fn receipts(&mut self, receipts: &[Receipt]) {
        for receipt in receipts {
            if receipt.sequence <= self.last_sequence {
                self.regression(format!(
                    "receipt sequence {} after {}",
                    receipt.sequence, self.last_sequence
                ));
            }
            self.last_sequence = receipt.sequence;
            self.checkpoints += 1;
            self.replayed += u64::from(receipt.replayed);
            if let AckOutcome::Failed(_) = receipt.acks {
                self.ack_failures += 1;
            }
        }
    }

    /// The driver's durable cursor matches the last receipt, and its offset never goes back.
    pub fn cursor(&mut self, cursor: &ResumePoint) {
        if cursor.sequence != self.last_sequence {
            self.regression(format!(
                "cursor at sequence {}, last receipt {}",
                cursor.sequence, self.last_sequence
            ));
        }
        if cursor.watermark.offset < self.last_offset {
            self.regression(format!(
                "cursor offset {} after {}",
                cursor.watermark.offset, self.last_offset
            ));
        }
        self.last_offset = cursor.watermark.offset;
    }

    /// A restarted worker resumes exactly at the last checkpoint it was told is durable.
    pub fn restarted(&mut self, resume: &Resume) {
        let expected_origin = match resume.origin {
            ResumeOrigin::Latest => self.last_sequence > 0,
            ResumeOrigin::Fresh => self.last_sequence == 0,
            ResumeOrigin::Fallback(_) => false,
        };
        if !expected_origin {
            self.regression(format!("resumed with origin {:?}", resume.origin));
        }
        let point = &resume.point;
        if point.sequence != self.last_sequence || point.watermark.offset != self.last_offset {
            self.regression(format!(
                "resumed at sequence {} offset {}, last durable was sequence {} offset {}",
                point.sequence, point.watermark.offset, self.last_sequence, self.last_offset
            ));
        }
    }

    /// The retained chain grows strictly and ends at the last receipt.
    pub fn history(&mut self, chain: &[Checkpoint]) {
        for pair in chain.windows(2) {
            let (older, newer) = (&pair[0], &pair[1]);
            if newer.sequence <= older.sequence || newer.watermark.offset < older.watermark.offset {
                self.regression(format!(
                    "history: sequence {} offset {} after sequence {} offset {}",
                    newer.sequence, newer.watermark.offset, older.sequence, older.watermark.offset
                ));
            }
        }
        match chain.last() {
            Some(last) if last.sequence == self.last_sequence => {}
            last => self.regression(format!(
                "history ends at sequence {:?}, last receipt {}",
                last.map(|c| c.sequence),
                self.last_sequence
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use checkpoint_guest::keys::StageKeys;
    use checkpoint_host::consumer::NullConsumer;
    use checkpoint_host::{Checkpointer, Options, Watermark};

    use super::*;

    fn checkpoint(sequence: u64, offset: u64) -> Checkpoint {
        Checkpoint {
            run_id: "r".into(),
            stage: "s".into(),
            sequence,
            epoch: 1,
            watermark: Watermark {
                offset,
                event_time_ms: 0,
            },
            sources: vec![],
            sinks: vec![],
            operator_states: vec![],
            idempotency_key: String::new(),
            at_ms: 0,
        }
    }

    #[test]
    fn ack_not_covered_by_the_durable_checkpoint_is_a_violation() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite:{}", dir.path().join("c.db").display());
        let verifier = Verifier::open(&url, StageKeys::new("default", "r", "s").latest(), 20)?;
        let mut consumer = verifier.consumer();
        consumer
            .ack(vec!["m-0".into()])
            .map_err(anyhow::Error::msg)?;

        let options = Options {
            namespace: "default".into(),
            max_retained: 2,
            max_checkpoint_bytes: 1 << 20,
        };
        let mut writer = Checkpointer::open(open_store(&url)?, Box::new(NullConsumer), &options)?;
        writer.write(&checkpoint(1, 10), &[])?;
        consumer
            .ack(vec!["m-9".into(), "m-10".into()])
            .map_err(anyhow::Error::msg)?;

        let summary = verifier.summary();
        assert_eq!(summary.violations, 2, "{:?}", summary.examples);
        assert!(summary.examples[0].contains("no durable checkpoint"));
        assert!(summary.examples[1].contains("m-10"));
        assert_eq!(
            (summary.acks, summary.acked_messages, summary.unacked),
            (3, 3, 17)
        );
        Ok(())
    }

    #[test]
    fn resuming_behind_the_last_receipt_is_a_regression() {
        let mut progression = Progression::default();
        let receipt = |sequence| Receipt {
            sequence,
            version: sequence,
            replayed: false,
            pruned: 0,
            acks: AckOutcome::Acked(1),
        };
        progression.receipts(&[receipt(1), receipt(2)]);
        progression.cursor(&ResumePoint {
            run_id: "r".into(),
            stage: "s".into(),
            sequence: 2,
            epoch: 1,
            watermark: Watermark {
                offset: 200,
                event_time_ms: 0,
            },
        });
        assert_eq!(progression.regressions, 0, "{:?}", progression.examples);

        let mut behind = ResumePoint {
            run_id: "r".into(),
            stage: "s".into(),
            sequence: 1,
            epoch: 1,
            watermark: Watermark {
                offset: 100,
                event_time_ms: 0,
            },
        };
        progression.restarted(&Resume {
            point: behind.clone(),
            origin: ResumeOrigin::Latest,
            checkpoint: None,
        });
        assert_eq!(progression.regressions, 1);

        behind.sequence = 2;
        behind.watermark.offset = 200;
        progression.restarted(&Resume {
            point: behind,
            origin: ResumeOrigin::Fresh,
            checkpoint: None,
        });
        assert_eq!(
            progression.regressions, 2,
            "fresh after durable progress is a loss"
        );
        progression.receipts(&[receipt(2)]);
        assert_eq!(progression.regressions, 3, "a repeated sequence");
    }
}
