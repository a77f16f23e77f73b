//! The synthetic input: a log of messages that can be read again from any offset, as a
//! Kafka partition or a file can.

use checkpoint_host::ProcessedMessage;

/// Event time of message 0; message `i` happened `i * 10` ms later.
const BASE_EVENT_TIME_MS: i64 = 1_700_000_000_000;
const EVENT_SPACING_MS: i64 = 10;

/// Messages `m-0` .. `m-{len-1}` at offsets 0 .. len-1.
pub struct Source {
    len: u64,
}

impl Source {
    pub fn new(len: u64) -> Self {
        Self { len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The messages at offsets `from .. to` (clamped to the log's end), as processed.
    pub fn read(&self, from: u64, to: u64) -> Vec<ProcessedMessage> {
        (from..to.min(self.len)).map(message).collect()
    }

    /// The offset of a message id of this source.
    pub fn offset_of(id: &str) -> Option<u64> {
        id.strip_prefix("m-")?.parse().ok()
    }
}

fn message(offset: u64) -> ProcessedMessage {
    let step = i64::try_from(offset)
        .unwrap_or(i64::MAX)
        .saturating_mul(EVENT_SPACING_MS);
    ProcessedMessage {
        id: format!("m-{offset}"),
        next_offset: offset + 1,
        event_time_ms: BASE_EVENT_TIME_MS.saturating_add(step),
    }
}
