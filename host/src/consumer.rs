//! Consumers for the component's `consumer` import: where acks go.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Acknowledges input messages to their source: what the component's `consumer` import needs
/// from the host.
///
/// The component calls [`Consumer::ack`] only after a checkpoint covering the messages is
/// durable, and never with an empty list.
pub trait Consumer: Send + 'static {
    /// Acknowledges `message_ids`: the source may forget them.
    ///
    /// Must be idempotent: the same ids may be acked again after a retry, a replayed write or
    /// a restart, and acking an id twice must be harmless. On failure return a message; the
    /// component reports it in the receipt (`ack-outcome.failed`) and the checkpoint stays
    /// durable, so the caller can retry or rely on redelivery.
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String>;
}

/// A consumer that accepts every ack and does nothing with it.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullConsumer;

impl Consumer for NullConsumer {
    fn ack(&mut self, _message_ids: Vec<String>) -> Result<(), String> {
        Ok(())
    }
}

/// A consumer that records every ack, for tests and demos. Clones are handles to the same
/// record, so a test keeps one and hands another to the checkpointer.
#[derive(Clone, Debug, Default)]
pub struct RecordingConsumer {
    inner: Arc<Mutex<Recording>>,
}

#[derive(Debug, Default)]
struct Recording {
    acks: Vec<Vec<String>>,
    failed: Vec<Vec<String>>,
    fail_next: u32,
}

impl RecordingConsumer {
    /// A consumer with nothing recorded, whose acks succeed.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Recording> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The batches acked successfully, in call order.
    pub fn acks(&self) -> Vec<Vec<String>> {
        self.lock().acks.clone()
    }

    /// The batches whose ack was made to fail by [`RecordingConsumer::fail_next`], in call
    /// order.
    pub fn failed(&self) -> Vec<Vec<String>> {
        self.lock().failed.clone()
    }

    /// Makes the next `n` ack calls fail (they are recorded in [`RecordingConsumer::failed`],
    /// not in [`RecordingConsumer::acks`]). Replaces any earlier count.
    pub fn fail_next(&self, n: u32) {
        self.lock().fail_next = n;
    }
}

impl Consumer for RecordingConsumer {
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String> {
        let mut rec = self.lock();
        if rec.fail_next > 0 {
            rec.fail_next -= 1;
            rec.failed.push(message_ids);
            return Err("injected ack failure (RecordingConsumer::fail_next)".to_owned());
        }
        rec.acks.push(message_ids);
        Ok(())
    }
}
