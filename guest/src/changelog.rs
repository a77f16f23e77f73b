//! A bounded ring of a driver's recent events.

use crate::model::{ChangeEvent, Changelog, OverflowPolicy};
use std::collections::VecDeque;

/// Most events a changelog may keep.
/// (65,536 events take about 2.5 MiB, well inside the host's default 64 MiB per instance.)
pub const MAX_CAPACITY: u32 = 1 << 16;

/// Keeps at most `capacity` events; what happens when full is the overflow policy's call.
pub(crate) struct Ring {
    events: VecDeque<ChangeEvent>,
    capacity: usize,
    policy: OverflowPolicy,
    overflow_count: u64,
}

impl Ring {
    /// A ring of `capacity` events; 0 keeps none. Memory grows with use, up to the capacity.
    pub(crate) fn new(capacity: u32, policy: OverflowPolicy) -> Self {
        Self {
            events: VecDeque::new(),
            capacity: capacity as usize,
            policy,
            overflow_count: 0,
        }
    }

    pub(crate) fn push(&mut self, event: ChangeEvent) {
        if self.capacity == 0 {
            return;
        }
        if self.events.len() == self.capacity {
            self.overflow_count += 1;
            match self.policy {
                OverflowPolicy::DropNew => return,
                OverflowPolicy::OverwriteOldest => {
                    self.events.pop_front();
                }
            }
        }
        self.events.push_back(event);
    }

    pub(crate) fn snapshot(&self) -> Changelog {
        Changelog {
            events: self.events.iter().copied().collect(),
            overflow_count: self.overflow_count,
            capacity: self.capacity as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeKind, Watermark};

    fn event(sequence: u64) -> ChangeEvent {
        ChangeEvent {
            kind: ChangeKind::Processed,
            sequence,
            watermark: Watermark {
                offset: sequence,
                event_time_ms: 0,
            },
        }
    }

    fn sequences(ring: &Ring) -> Vec<u64> {
        ring.snapshot().events.iter().map(|e| e.sequence).collect()
    }

    #[test]
    fn drop_new_keeps_the_oldest_and_counts_overflow() {
        let mut ring = Ring::new(2, OverflowPolicy::DropNew);
        (1..=4).for_each(|i| ring.push(event(i)));
        assert_eq!(sequences(&ring), [1, 2]);
        assert_eq!(ring.snapshot().overflow_count, 2);
    }

    #[test]
    fn overwrite_oldest_keeps_the_newest_and_counts_overflow() {
        let mut ring = Ring::new(2, OverflowPolicy::OverwriteOldest);
        (1..=4).for_each(|i| ring.push(event(i)));
        assert_eq!(sequences(&ring), [3, 4]);
        assert_eq!(ring.snapshot().overflow_count, 2);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut ring = Ring::new(0, OverflowPolicy::DropNew);
        ring.push(event(1));
        assert!(ring.snapshot().events.is_empty());
        assert_eq!(ring.snapshot().overflow_count, 0);
    }
}
