//! Group commit: the handles of one process on one SQLite file share a committer, so that
//! commits arriving while another is being made durable share its successor's sync.
//!
//! The committer is a connection and a queue. A commit joins the queue; if no commit is in
//! progress, its own thread becomes the leader: it takes every queued batch (its own first),
//! applies them in order in one `BEGIN IMMEDIATE` transaction, commits (one WAL append and one
//! sync), hands each waiting thread its answer, and passes the lead to the oldest batch that
//! arrived meanwhile. A lone writer therefore commits exactly as without grouping, and under
//! load every sync carries what queued up during the previous one.
//!
//! Each batch keeps its own conditions and atomicity: its conditions are checked (inside the
//! group's transaction, so after the batches before it) before any of its writes, so a
//! conflict leaves nothing of it to undo and fails only that batch. A statement error is rarer
//! and may leave part of a batch written, so the group is rolled back and each of its batches
//! is committed alone, in its own transaction, and gets the answer it would have got alone.
//! Savepoints per batch would isolate that error too, but SQLite copies every page a savepoint
//! touches into a statement journal, which a large operator state spills to a temporary file.
//! No thread returns before the transaction holding its batch has committed: an answer is
//! only handed over after `COMMIT` returned.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use rusqlite::{Connection, TransactionBehavior};

use super::{
    GroupCommitStats, SqliteSynchronous, VersionCounter, apply_batch, commit_alone, storage_error,
};
use crate::storage::{CommitOutcome, StorageError, Write, WriteOp};

/// At most this many batches go into one transaction, so that one sync never waits for an
/// unbounded amount of work; the rest lead the next group.
const MAX_GROUP_BATCHES: usize = 512;

/// And at most about this many value bytes (a group always takes at least one batch).
const MAX_GROUP_BYTES: usize = 64 << 20;

/// Which handles share a committer: one file, opened the same way.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) path: PathBuf,
    pub(super) vfs: Option<String>,
    pub(super) synchronous: SqliteSynchronous,
}

/// The live committers of this process, by file. Entries of dropped committers are removed
/// when the next one is created.
static GROUPS: LazyLock<Mutex<HashMap<Key, Weak<Group>>>> = LazyLock::new(Default::default);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state behind these locks is consistent between statements; a panic elsewhere must
    // not wedge every other writer of the file.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The committer of one file: its writing connection and the queue of waiting batches.
pub(super) struct Group {
    /// Only the leader uses it; the lock is never contended, it only makes the type `Sync`.
    pub(super) conn: Mutex<Connection>,
    queue: Mutex<Queue>,
    commits: AtomicU64,
    groups: AtomicU64,
    largest: AtomicU64,
}

#[derive(Default)]
struct Queue {
    /// Batches not yet taken by a leader, oldest first.
    pending: Vec<Request>,
    /// Whether some thread is leading (taking, applying or answering a group).
    leading: bool,
}

struct Request {
    writes: Vec<Write>,
    slot: Arc<Slot>,
}

/// Where a waiting thread learns what to do.
struct Slot {
    state: Mutex<SlotState>,
    changed: Condvar,
}

enum SlotState {
    Waiting,
    /// Lead the next group (this thread's batch is the oldest pending one).
    Lead,
    Done(Result<CommitOutcome, StorageError>),
}

impl Slot {
    fn new() -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(SlotState::Waiting),
            changed: Condvar::new(),
        })
    }

    fn set(&self, state: SlotState) {
        *lock(&self.state) = state;
        self.changed.notify_one();
    }

    /// Waits for the answer, or for the lead (`None`).
    fn wait(&self) -> Option<Result<CommitOutcome, StorageError>> {
        let mut state = lock(&self.state);
        loop {
            match std::mem::replace(&mut *state, SlotState::Waiting) {
                SlotState::Waiting => {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                SlotState::Lead => return None,
                SlotState::Done(result) => return Some(result),
            }
        }
    }
}

impl Group {
    /// The live committer of `key`, or a new one on a connection from `connect`.
    pub(super) fn for_file(
        key: Key,
        connect: impl FnOnce() -> anyhow::Result<Connection>,
    ) -> anyhow::Result<Arc<Group>> {
        let mut groups = lock(&GROUPS);
        if let Some(group) = groups.get(&key).and_then(Weak::upgrade) {
            return Ok(group);
        }
        groups.retain(|_, group| group.strong_count() > 0);
        let group = Arc::new(Group {
            conn: Mutex::new(connect()?),
            queue: Mutex::default(),
            commits: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        });
        groups.insert(key, Arc::downgrade(&group));
        Ok(group)
    }

    pub(super) fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            largest_group: self.largest.load(Ordering::Relaxed),
        }
    }

    /// How many batches wait for a leader (tests).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        lock(&self.queue).pending.len()
    }

    /// Commits `writes` (keys already checked distinct), grouped with whatever else is queued;
    /// returns once the transaction holding it has committed (or failed).
    pub(super) fn commit(&self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        let slot = Slot::new();
        let lead = {
            let mut queue = lock(&self.queue);
            queue.pending.push(Request {
                writes,
                slot: Arc::clone(&slot),
            });
            !std::mem::replace(&mut queue.leading, true)
        };
        if !lead && let Some(result) = slot.wait() {
            return result;
        }
        self.lead(&slot)
    }

    /// Runs one group as its leader. This thread's batch is the oldest pending, so it is in
    /// the group; its answer is returned, the others are handed to their threads.
    fn lead(&self, own: &Arc<Slot>) -> Result<CommitOutcome, StorageError> {
        let batch = {
            let mut queue = lock(&self.queue);
            let (mut count, mut bytes) = (0, 0);
            for request in &queue.pending {
                bytes += request_bytes(&request.writes);
                if count > 0 && (count == MAX_GROUP_BATCHES || bytes > MAX_GROUP_BYTES) {
                    break;
                }
                count += 1;
            }
            queue.pending.drain(..count).collect::<Vec<_>>()
        };
        debug_assert!(batch.first().is_some_and(|r| Arc::ptr_eq(&r.slot, own)));
        let (slots, writes): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|r| (r.slot, r.writes)).unzip();
        let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_group(&mut lock(&self.conn), &writes)
        }));
        let results = match results {
            Ok(results) => results,
            Err(panic) => {
                // Nobody may wait forever on a group whose leader died: nothing was committed
                // (the transaction is rolled back as the connection's guard unwinds).
                for slot in &slots[1..] {
                    slot.set(SlotState::Done(Err(StorageError::Failed(
                        "sqlite commit: the thread committing this batch's group panicked".into(),
                    ))));
                }
                self.pass_lead();
                std::panic::resume_unwind(panic);
            }
        };
        self.commits
            .fetch_add(slots.len() as u64, Ordering::Relaxed);
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.largest
            .fetch_max(slots.len() as u64, Ordering::Relaxed);
        let mut results = results.into_iter();
        let own_result = results.next().unwrap_or_else(|| {
            Err(StorageError::Failed(
                "sqlite commit: the group returned no answer".into(),
            ))
        });
        for (slot, result) in slots[1..].iter().zip(results) {
            slot.set(SlotState::Done(result));
        }
        self.pass_lead();
        own_result
    }

    /// Hands the lead to the oldest pending batch's thread, or gives it up.
    fn pass_lead(&self) {
        let mut queue = lock(&self.queue);
        match queue.pending.first() {
            Some(next) => next.slot.set(SlotState::Lead),
            None => queue.leading = false,
        }
    }
}

/// The value bytes of a batch (what dominates the transaction's size).
fn request_bytes(writes: &[Write]) -> usize {
    writes
        .iter()
        .map(|w| match &w.op {
            WriteOp::Put(value) => value.len() + w.key.len(),
            WriteOp::Delete => w.key.len(),
        })
        .sum()
}

/// Applies `batches` in order, in one transaction when there are several; one answer per batch,
/// in order.
pub(super) fn run_group(
    conn: &mut Connection,
    batches: &[Vec<Write>],
) -> Vec<Result<CommitOutcome, StorageError>> {
    if let [only] = batches {
        return vec![commit_alone(conn, only)];
    }
    match try_group(conn, batches) {
        Ok(results) => results,
        // A statement of one batch failed before the commit: nothing was committed. Each
        // batch alone gets the answer it would have got without grouping.
        Err(Retry) => batches.iter().map(|b| commit_alone(conn, b)).collect(),
    }
}

/// The group was rolled back before its commit; commit its batches one by one.
struct Retry;

fn try_group(
    conn: &mut Connection,
    batches: &[Vec<Write>],
) -> Result<Vec<Result<CommitOutcome, StorageError>>, Retry> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        // Locked by another process, or the file failed: every batch gets that answer.
        Err(e) => {
            let e = storage_error("commit", e);
            return Ok(batches.iter().map(|_| Err(e.clone())).collect());
        }
    };
    let mut counter = VersionCounter::read(&tx).map_err(|_| Retry)?;
    let mut results = Vec::with_capacity(batches.len());
    for writes in batches {
        // Dropping `tx` on the way out rolls back whatever the group had written.
        results.push(Ok(
            apply_batch(&tx, writes, &mut counter).map_err(|_| Retry)?
        ));
    }
    counter.store(&tx).map_err(|_| Retry)?;
    if let Err(e) = tx.commit() {
        // The commit itself failed: as for a batch alone, its error is every batch's answer
        // (SQLite has rolled the transaction back or does so as it is dropped).
        let e = storage_error("commit", e);
        return Ok(batches.iter().map(|_| Err(e.clone())).collect());
    }
    Ok(results)
}
