//! An in-memory queue that redelivers, as real brokers do: Redis Streams' pending entries,
//! RabbitMQ's requeue when a connection drops, SQS's visibility timeout.
//!
//! A [`RedeliveringQueue`] holds partitions of [`QueuedMessage`]s, each with an id and either an
//! offset (a log, a stream) or none (an id-only queue). A consumer [`connect`]s and gets a
//! [`Session`], which delivers every message that was not acked at the moment it connected, in
//! each partition's order. A message stays pending until acked ([`RedeliveringQueue::ack`], or
//! the queue as a [`Consumer`]); a consumer that crashes and connects again is sent every
//! pending message again. Acks are idempotent.
//!
//! Clones are handles to the same queue, so a test keeps one while another sits inside a
//! checkpointer as its consumer.
//!
//! [`connect`]: RedeliveringQueue::connect
//!
//! ```
//! use checkpoint_testkit::queue::{QueuedMessage, RedeliveringQueue};
//!
//! let queue = RedeliveringQueue::new(vec![("p0".to_owned(), vec![Some(10), Some(11)])]);
//! let mut session = queue.connect();
//! let first: QueuedMessage = session.next(0).unwrap();
//! assert_eq!((first.id.as_str(), first.offset), ("p0-0", Some(10)));
//! let _second = session.next(0).unwrap();
//! queue.ack(&[first.id]).unwrap();
//! // The consumer crashes; connecting again, it gets what was not acked, and only that.
//! let mut again = queue.connect();
//! assert_eq!(again.next(0).unwrap().id, "p0-1");
//! assert!(again.next(0).is_none());
//! assert_eq!(queue.stats().redeliveries, 1);
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use checkpoint_host::consumer::Consumer;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the queue from the others.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One message of a [`RedeliveringQueue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Unique over the queue: `{partition name}-{index}` (`q-3`, or `-3` for an unnamed one).
    pub id: String,
    /// Which partition, as its index in the queue.
    pub partition: usize,
    /// The partition's name.
    pub source: String,
    /// Position within its partition: 0, 1, 2, ...
    pub index: usize,
    /// The message's own offset in its partition, strictly growing; `None` in an id-only
    /// partition.
    pub offset: Option<u64>,
}

/// Counts of what a [`RedeliveringQueue`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages handed to consumers, redeliveries included.
    pub deliveries: u64,
    /// Deliveries of a message that had been delivered before (to an earlier session).
    pub redeliveries: u64,
    /// Sessions opened by [`RedeliveringQueue::connect`].
    pub connections: u64,
    /// Ids acked, counting each ack of each id (repeated acks included).
    pub acks: u64,
    /// Acks of an id that was already acked (harmless: acks are idempotent).
    pub repeated_acks: u64,
}

#[derive(Default)]
struct State {
    names: Vec<String>,
    partitions: Vec<Vec<QueuedMessage>>,
    by_id: HashMap<String, (usize, usize)>,
    /// Per partition, per message: how often it was delivered and acked.
    delivered: Vec<Vec<u32>>,
    acked: Vec<Vec<u32>>,
    stats: QueueStats,
}

/// A queue of partitions that redelivers every unacked message to a consumer that connects
/// again. See the [module docs](self).
#[derive(Clone, Default)]
pub struct RedeliveringQueue {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for RedeliveringQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedeliveringQueue")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl RedeliveringQueue {
    /// A queue with one partition per `(name, offsets)`: one message per entry, with that
    /// offset, or without offset for `None`. Offsets given for a partition must grow strictly.
    ///
    /// # Panics
    ///
    /// If a partition's offsets do not grow strictly, or two partitions share a name.
    pub fn new(partitions: Vec<(String, Vec<Option<u64>>)>) -> Self {
        let mut state = State::default();
        for (p, (name, offsets)) in partitions.into_iter().enumerate() {
            let given: Vec<u64> = offsets.iter().flatten().copied().collect();
            assert!(
                given.windows(2).all(|w| w[0] < w[1]),
                "offsets of partition {name:?} must grow strictly"
            );
            assert!(
                !state.names.contains(&name),
                "two partitions named {name:?}"
            );
            state.names.push(name.clone());
            let messages: Vec<QueuedMessage> = offsets
                .into_iter()
                .enumerate()
                .map(|(index, offset)| QueuedMessage {
                    id: format!("{name}-{index}"),
                    partition: p,
                    source: name.clone(),
                    index,
                    offset,
                })
                .collect();
            for m in &messages {
                state.by_id.insert(m.id.clone(), (p, m.index));
            }
            state.delivered.push(vec![0; messages.len()]);
            state.acked.push(vec![0; messages.len()]);
            state.partitions.push(messages);
        }
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// A new consumer connection: it will be delivered every message not acked now, in each
    /// partition's order (a message acked after this call is still delivered to it).
    pub fn connect(&self) -> Session {
        let mut state = lock(&self.state);
        state.stats.connections += 1;
        let pending = state
            .acked
            .iter()
            .map(|acked| {
                acked
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n == 0)
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        Session {
            queue: self.clone(),
            pending,
        }
    }

    /// Acks `ids`: they are not delivered to later sessions. Idempotent. Fails, acking none of
    /// them, when an id is not in the queue.
    pub fn ack(&self, ids: &[String]) -> Result<(), String> {
        let mut state = lock(&self.state);
        let mut at = Vec::with_capacity(ids.len());
        for id in ids {
            match state.by_id.get(id) {
                Some(&pi) => at.push(pi),
                None => return Err(format!("ack of {id:?}, which is not in the queue")),
            }
        }
        for (p, i) in at {
            if state.acked[p][i] > 0 {
                state.stats.repeated_acks += 1;
            }
            state.acked[p][i] += 1;
            state.stats.acks += 1;
        }
        Ok(())
    }

    /// The message with this id.
    pub fn message(&self, id: &str) -> Option<QueuedMessage> {
        let state = lock(&self.state);
        let &(p, i) = state.by_id.get(id)?;
        Some(state.partitions[p][i].clone())
    }

    /// Every message of partition `p`, in order.
    pub fn partition(&self, p: usize) -> Vec<QueuedMessage> {
        lock(&self.state).partitions[p].clone()
    }

    /// How many partitions the queue has.
    pub fn partitions(&self) -> usize {
        lock(&self.state).partitions.len()
    }

    /// How often the message `id` was delivered (0 for an unknown id).
    pub fn deliveries(&self, id: &str) -> u32 {
        let state = lock(&self.state);
        state
            .by_id
            .get(id)
            .map_or(0, |&(p, i)| state.delivered[p][i])
    }

    /// Whether `id` was acked at least once.
    pub fn is_acked(&self, id: &str) -> bool {
        let state = lock(&self.state);
        state
            .by_id
            .get(id)
            .is_some_and(|&(p, i)| state.acked[p][i] > 0)
    }

    /// Ids never acked (pending or never delivered), partition by partition, in order.
    pub fn unacked(&self) -> Vec<String> {
        let state = lock(&self.state);
        state
            .partitions
            .iter()
            .zip(&state.acked)
            .flat_map(|(messages, acked)| {
                messages
                    .iter()
                    .zip(acked)
                    .filter(|(_, n)| **n == 0)
                    .map(|(m, _)| m.id.clone())
            })
            .collect()
    }

    /// What the queue did so far.
    pub fn stats(&self) -> QueueStats {
        lock(&self.state).stats
    }
}

/// Acks through the queue: the queue itself can be a checkpointer's consumer.
impl Consumer for RedeliveringQueue {
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String> {
        RedeliveringQueue::ack(self, &message_ids)
    }
}

/// One consumer connection of a [`RedeliveringQueue`]: delivers, per partition and in order,
/// every message that was not acked when it connected.
#[derive(Debug)]
pub struct Session {
    queue: RedeliveringQueue,
    /// Per partition: indices still to deliver.
    pending: Vec<VecDeque<usize>>,
}

impl Session {
    /// The next message of partition `p`, or `None` when this session has delivered them all.
    pub fn next(&mut self, p: usize) -> Option<QueuedMessage> {
        let i = self.pending.get_mut(p)?.pop_front()?;
        let mut state = lock(&self.queue.state);
        if state.delivered[p][i] > 0 {
            state.stats.redeliveries += 1;
        }
        state.delivered[p][i] += 1;
        state.stats.deliveries += 1;
        Some(state.partitions[p][i].clone())
    }

    /// How many messages of partition `p` this session has still to deliver.
    pub fn remaining(&self, p: usize) -> usize {
        self.pending.get(p).map_or(0, VecDeque::len)
    }

    /// Partitions with messages still to deliver.
    pub fn open_partitions(&self) -> Vec<usize> {
        (0..self.pending.len())
            .filter(|&p| !self.pending[p].is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_partitions() -> RedeliveringQueue {
        RedeliveringQueue::new(vec![
            ("a".to_owned(), vec![Some(0), Some(5), Some(6)]),
            ("b".to_owned(), vec![None, None]),
        ])
    }

    #[test]
    fn a_session_delivers_each_partition_in_order_then_nothing() {
        let queue = two_partitions();
        let mut session = queue.connect();
        let a: Vec<_> = std::iter::from_fn(|| session.next(0)).collect();
        assert_eq!(
            a.iter().map(|m| m.offset).collect::<Vec<_>>(),
            [Some(0), Some(5), Some(6)]
        );
        assert_eq!(session.open_partitions(), [1]);
        assert_eq!(session.next(1).unwrap().id, "b-0");
        assert_eq!(session.remaining(1), 1);
        assert_eq!(queue.stats().redeliveries, 0);
    }

    #[test]
    fn a_new_session_redelivers_what_was_not_acked_when_it_connected() {
        let queue = two_partitions();
        let mut first = queue.connect();
        let m0 = first.next(0).unwrap();
        let m1 = first.next(0).unwrap();
        queue.ack(std::slice::from_ref(&m0.id)).unwrap();
        let mut second = queue.connect();
        // Acked after `second` connected: still delivered to it.
        queue.ack(std::slice::from_ref(&m1.id)).unwrap();
        assert_eq!(second.next(0).unwrap().id, m1.id);
        assert_eq!(second.next(0).unwrap().id, "a-2");
        assert_eq!(queue.stats().redeliveries, 1);
        assert_eq!((queue.deliveries(&m1.id), queue.deliveries("a-2")), (2, 1));
        assert_eq!(queue.unacked(), ["a-2", "b-0", "b-1"]);
    }

    #[test]
    fn acks_are_idempotent_and_unknown_ids_fail_without_acking_any() {
        let mut queue = two_partitions();
        Consumer::ack(&mut queue, vec!["a-0".into(), "a-0".into()]).unwrap();
        assert!(queue.ack(&["b-0".into(), "nope".into()]).is_err());
        assert!(!queue.is_acked("b-0"));
        let stats = queue.stats();
        assert_eq!((stats.acks, stats.repeated_acks), (2, 1));
    }
}
