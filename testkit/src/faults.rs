//! Fault-injecting wrappers for tests: storage and consumers that fail on cue, and a store that
//! freezes its durable state across a simulated crash.
//!
//! - [`FaultyStorage`] wraps any [`Storage`] and, scripted through a [`FaultScript`], fails the
//!   nth `get`, `commit` or `list-keys` call (`unavailable`, `timeout`, `failed`), answers
//!   `conflict(i)` instead of committing, or applies a commit and then answers `timeout` (the
//!   ambiguous case the WIT warns about).
//! - [`FaultyConsumer`] wraps any [`Consumer`] and, scripted through an [`AckScript`], fails the
//!   nth ack.
//! - [`FreezingStorage`] is an in-memory store in the spirit of redb's crash tests: it keeps only
//!   what was durably committed, can be told to crash before or after the next commit becomes
//!   durable, and [`FreezingStorage::reboot`]s into a fresh handle over exactly the durable state.
//!
//! Call counts are 1-based and counted from the last `reset` (or from creation), so a test can
//! script "the 2nd commit of this step" without knowing what ran before.
//!
//! ```
//! use checkpoint_testkit::faults::{FaultyStorage, StorageCall, StorageFault};
//! use checkpoint_host::storage::MemoryStorage;
//! use checkpoint_host::{Storage, StorageError};
//!
//! let mut storage = FaultyStorage::new(MemoryStorage::new());
//! storage.script().inject(StorageCall::Get, 1, StorageFault::Unavailable);
//! assert!(matches!(storage.get("k"), Err(StorageError::Unavailable(_))));
//! assert!(storage.get("k").is_ok()); // only the 1st call was scripted
//! ```

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use checkpoint_host::consumer::Consumer;
use checkpoint_host::storage::{
    CommitOutcome, Entry, Lookup, MemoryStorage, Storage, StorageError, Write,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the script from the others.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One method of the [`Storage`] trait.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageCall {
    /// [`Storage::get`].
    Get,
    /// [`Storage::commit`].
    Commit,
    /// [`Storage::list_keys`].
    ListKeys,
}

impl StorageCall {
    /// The WIT name of the call: `get`, `commit`, `list-keys`.
    pub fn name(self) -> &'static str {
        match self {
            StorageCall::Get => "get",
            StorageCall::Commit => "commit",
            StorageCall::ListKeys => "list-keys",
        }
    }

    fn index(self) -> usize {
        match self {
            StorageCall::Get => 0,
            StorageCall::Commit => 1,
            StorageCall::ListKeys => 2,
        }
    }
}

/// What a scripted storage call does instead of (or besides) its normal work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageFault {
    /// Answer `unavailable`; nothing is applied.
    Unavailable,
    /// Answer `timeout`; nothing is applied.
    Timeout,
    /// Answer `failed`; nothing is applied.
    Failed,
    /// For a commit: answer `conflict(i)` without applying anything (`i` is clamped to the last
    /// write of the batch). On `get` and `list-keys`, answered as `failed`.
    Conflict(u32),
    /// Do the call (a commit is applied and durable), then answer timeout: the caller cannot
    /// tell whether it happened.
    TimeoutAfterApply,
    /// Do the call, then answer outside the storage contract, as a buggy store would: `get`
    /// answers the value (empty when missing) with version 0, `commit` one version more than
    /// the batch has writes, `list-keys` the keys plus `!`, which lacks the prefix. The
    /// component must answer `broken-store`.
    BreakContract,
}

/// A shared script of faults for a [`FaultyStorage`]. Clones are handles to the same script,
/// so a test keeps one while the storage is inside a checkpointer.
#[derive(Clone, Debug, Default)]
pub struct FaultScript {
    inner: Arc<Mutex<Script>>,
}

#[derive(Debug, Default)]
struct Script {
    counts: [u32; 3],
    faults: Vec<(StorageCall, u32, StorageFault)>,
    log: Vec<StorageCall>,
}

impl FaultScript {
    /// An empty script: every call passes through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the `nth` (1-based, counted since the last [`FaultScript::reset`]) call of `call`
    /// do `fault`. A later injection for the same call and `nth` wins.
    pub fn inject(&self, call: StorageCall, nth: u32, fault: StorageFault) {
        let mut script = lock(&self.inner);
        script.faults.retain(|(c, n, _)| !(*c == call && *n == nth));
        script.faults.push((call, nth, fault));
    }

    /// Forgets every injected fault and restarts the call counts (the log is kept).
    pub fn reset(&self) {
        let mut script = lock(&self.inner);
        script.faults.clear();
        script.counts = [0; 3];
    }

    /// How many calls of `call` were made since the last reset.
    pub fn calls(&self, call: StorageCall) -> u32 {
        lock(&self.inner).counts[call.index()]
    }

    /// Every call made through the storage since it was created, in order.
    pub fn log(&self) -> Vec<StorageCall> {
        lock(&self.inner).log.clone()
    }

    /// Counts a call and returns its scripted fault, if any.
    fn next(&self, call: StorageCall) -> Option<StorageFault> {
        let mut script = lock(&self.inner);
        script.log.push(call);
        let count = &mut script.counts[call.index()];
        *count += 1;
        let nth = *count;
        script
            .faults
            .iter()
            .find(|(c, n, _)| *c == call && *n == nth)
            .map(|(_, _, f)| f.clone())
    }
}

/// The error of a scripted fault. Its text is fixed by tests/conformance/README.md ("Scripted
/// faults"), the same in every host: `injected fault on commit`, and for
/// `time-out-after-apply` `injected fault on commit, after the call was applied`.
fn injected(call: StorageCall, fault: &StorageFault) -> StorageError {
    let what = format!("injected fault on {}", call.name());
    match fault {
        StorageFault::Unavailable => StorageError::Unavailable(what),
        StorageFault::Timeout => StorageError::Timeout(what),
        StorageFault::TimeoutAfterApply => {
            StorageError::Timeout(format!("{what}, after the call was applied"))
        }
        StorageFault::Failed | StorageFault::Conflict(_) | StorageFault::BreakContract => {
            StorageError::Failed(what)
        }
    }
}

/// A [`Storage`] that passes calls to `inner` except where its [`FaultScript`] says otherwise.
#[derive(Debug)]
pub struct FaultyStorage<S: Storage> {
    inner: S,
    script: FaultScript,
}

impl<S: Storage> FaultyStorage<S> {
    /// Wraps `inner` with an empty script of its own.
    pub fn new(inner: S) -> Self {
        Self::with_script(inner, FaultScript::new())
    }

    /// Wraps `inner`, following `script` (shared with the caller).
    pub fn with_script(inner: S, script: FaultScript) -> Self {
        Self { inner, script }
    }

    /// A handle on this storage's script.
    pub fn script(&self) -> FaultScript {
        self.script.clone()
    }

    /// The wrapped storage.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Storage> Storage for FaultyStorage<S> {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        match self.script.next(StorageCall::Get) {
            None => self.inner.get(key),
            Some(StorageFault::TimeoutAfterApply) => {
                self.inner.get(key)?;
                Err(injected(StorageCall::Get, &StorageFault::TimeoutAfterApply))
            }
            Some(StorageFault::BreakContract) => {
                let value = match self.inner.get(key)? {
                    Lookup::Found(entry) => entry.value,
                    Lookup::Missing => Vec::new(),
                };
                Ok(Lookup::Found(Entry { value, version: 0 }))
            }
            Some(fault) => Err(injected(StorageCall::Get, &fault)),
        }
    }

    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        match self.script.next(StorageCall::Commit) {
            None => self.inner.commit(writes),
            Some(StorageFault::Conflict(index)) => {
                let last = u32::try_from(writes.len().saturating_sub(1)).unwrap_or(u32::MAX);
                Ok(CommitOutcome::Conflict(index.min(last)))
            }
            Some(StorageFault::TimeoutAfterApply) => {
                self.inner.commit(writes)?;
                Err(injected(
                    StorageCall::Commit,
                    &StorageFault::TimeoutAfterApply,
                ))
            }
            Some(StorageFault::BreakContract) => match self.inner.commit(writes)? {
                CommitOutcome::Committed(mut versions) => {
                    versions.push(versions.iter().max().copied().unwrap_or_default() + 1);
                    Ok(CommitOutcome::Committed(versions))
                }
                conflict => Ok(conflict),
            },
            Some(fault) => Err(injected(StorageCall::Commit, &fault)),
        }
    }

    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        match self.script.next(StorageCall::ListKeys) {
            None => self.inner.list_keys(prefix),
            Some(StorageFault::TimeoutAfterApply) => {
                self.inner.list_keys(prefix)?;
                Err(injected(
                    StorageCall::ListKeys,
                    &StorageFault::TimeoutAfterApply,
                ))
            }
            Some(StorageFault::BreakContract) => {
                let mut keys = self.inner.list_keys(prefix)?;
                keys.push("!".to_owned());
                Ok(keys)
            }
            Some(fault) => Err(injected(StorageCall::ListKeys, &fault)),
        }
    }
}

/// A shared script of ack failures for a [`FaultyConsumer`]. Clones share the script.
#[derive(Clone, Debug, Default)]
pub struct AckScript {
    inner: Arc<Mutex<Acks>>,
}

#[derive(Debug, Default)]
struct Acks {
    count: u32,
    fail: Vec<u32>,
    fail_all: bool,
    failed: Vec<Vec<String>>,
}

impl AckScript {
    /// An empty script: every ack passes through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the `nth` ack (1-based, counted since the last [`AckScript::reset`]) fail.
    pub fn fail_nth(&self, nth: u32) {
        lock(&self.inner).fail.push(nth);
    }

    /// Makes every ack fail until the next reset.
    pub fn fail_all(&self) {
        lock(&self.inner).fail_all = true;
    }

    /// Forgets the scripted failures and restarts the count (the failed log is kept).
    pub fn reset(&self) {
        let mut acks = lock(&self.inner);
        acks.count = 0;
        acks.fail.clear();
        acks.fail_all = false;
    }

    /// How many acks were attempted since the last reset.
    pub fn calls(&self) -> u32 {
        lock(&self.inner).count
    }

    /// The batches whose ack was made to fail, in call order (never reset).
    pub fn failed(&self) -> Vec<Vec<String>> {
        lock(&self.inner).failed.clone()
    }
}

/// A [`Consumer`] that passes acks to `inner` except those its [`AckScript`] makes fail (which
/// `inner` never sees).
#[derive(Debug)]
pub struct FaultyConsumer<C: Consumer> {
    inner: C,
    script: AckScript,
}

impl<C: Consumer> FaultyConsumer<C> {
    /// Wraps `inner` with an empty script of its own.
    pub fn new(inner: C) -> Self {
        Self::with_script(inner, AckScript::new())
    }

    /// Wraps `inner`, following `script` (shared with the caller).
    pub fn with_script(inner: C, script: AckScript) -> Self {
        Self { inner, script }
    }

    /// A handle on this consumer's script.
    pub fn script(&self) -> AckScript {
        self.script.clone()
    }
}

impl<C: Consumer> Consumer for FaultyConsumer<C> {
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String> {
        {
            let mut acks = lock(&self.script.inner);
            acks.count += 1;
            let nth = acks.count;
            if acks.fail_all || acks.fail.contains(&nth) {
                acks.failed.push(message_ids);
                // Fixed by tests/conformance/README.md ("Scripted faults"), as in every host.
                return Err("injected ack failure".to_owned());
            }
        }
        self.inner.ack(message_ids)
    }
}

/// Where the next commit of a [`FreezingStorage`] crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// The process dies before the commit becomes durable: nothing of it survives.
    BeforeDurable,
    /// The commit becomes durable, then the process dies before the call returns.
    AfterDurable,
}

/// The "disk" shared by every handle of a [`FreezingStorage`].
#[derive(Default)]
struct Disk {
    durable: MemoryStorage,
    /// Handles of older generations are dead: they belong to a process that crashed.
    generation: u64,
    crashed: bool,
    crash_next_commit: Option<CrashPoint>,
    commits: u64,
}

/// An in-memory store that keeps only what was durably committed and survives simulated
/// crashes, as redb's `crash_consistency` tests do.
///
/// A commit is durable once it returns `Ok` (the [`Storage`] contract), so the durable state is
/// every commit that returned, plus one that crashed at [`CrashPoint::AfterDurable`]. After a
/// crash (scripted with [`FreezingStorage::crash_on_next_commit`], or at once with
/// [`FreezingStorage::crash`]) the handle and its clones answer every call with
/// `unavailable` (the process is gone); [`FreezingStorage::reboot`] gives a fresh handle over
/// exactly the durable state.
///
/// Clones are handles of the same generation (the same "process").
#[derive(Clone, Default)]
pub struct FreezingStorage {
    disk: Arc<Mutex<Disk>>,
    generation: u64,
}

impl std::fmt::Debug for FreezingStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreezingStorage")
            .field("generation", &self.generation)
            .field("crashed", &self.is_crashed())
            .finish_non_exhaustive()
    }
}

impl FreezingStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next commit (through any live handle) crash at `point`.
    pub fn crash_on_next_commit(&self, point: CrashPoint) {
        lock(&self.disk).crash_next_commit = Some(point);
    }

    /// Crashes now: every handle of this generation is dead.
    pub fn crash(&self) {
        lock(&self.disk).crashed = true;
    }

    /// Whether this handle's process has crashed.
    pub fn is_crashed(&self) -> bool {
        let disk = lock(&self.disk);
        disk.crashed || disk.generation != self.generation
    }

    /// A fresh handle over exactly the durable state, as after a restart. Every handle of
    /// earlier generations is dead from now on, crashed or not.
    pub fn reboot(&self) -> FreezingStorage {
        let mut disk = lock(&self.disk);
        disk.generation += 1;
        disk.crashed = false;
        disk.crash_next_commit = None;
        FreezingStorage {
            disk: Arc::clone(&self.disk),
            generation: disk.generation,
        }
    }

    /// The durable keys, in ascending byte order.
    pub fn durable_keys(&self) -> Vec<String> {
        lock(&self.disk).durable.keys()
    }

    /// The durable bytes and version of `key`.
    pub fn durable_raw(&self, key: &str) -> Option<(Vec<u8>, u64)> {
        lock(&self.disk).durable.raw(key)
    }

    /// How many commits became durable since the store was created.
    pub fn durable_commits(&self) -> u64 {
        lock(&self.disk).commits
    }

    fn live(&self) -> Result<MutexGuard<'_, Disk>, StorageError> {
        let disk = lock(&self.disk);
        if disk.crashed || disk.generation != self.generation {
            return Err(StorageError::Unavailable(
                "the process crashed (FreezingStorage): reboot".to_owned(),
            ));
        }
        Ok(disk)
    }
}

impl Storage for FreezingStorage {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        let disk = self.live()?;
        Ok(match disk.durable.raw(key) {
            Some((value, version)) => Lookup::Found(Entry { value, version }),
            None => Lookup::Missing,
        })
    }

    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        let mut disk = self.live()?;
        match disk.crash_next_commit.take() {
            None => {
                let outcome = disk.durable.commit(writes)?;
                if matches!(outcome, CommitOutcome::Committed(_)) {
                    disk.commits += 1;
                }
                Ok(outcome)
            }
            Some(CrashPoint::BeforeDurable) => {
                disk.crashed = true;
                Err(StorageError::Unavailable(
                    "crashed before the commit became durable (FreezingStorage)".to_owned(),
                ))
            }
            Some(CrashPoint::AfterDurable) => {
                if matches!(disk.durable.commit(writes)?, CommitOutcome::Committed(_)) {
                    disk.commits += 1;
                }
                disk.crashed = true;
                Err(StorageError::Unavailable(
                    "crashed after the commit became durable (FreezingStorage)".to_owned(),
                ))
            }
        }
    }

    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut disk = self.live()?;
        disk.durable.list_keys(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkpoint_host::consumer::RecordingConsumer;
    use checkpoint_host::storage::WriteOp;

    fn put(key: &str, value: &[u8], expected: Option<u64>) -> Write {
        Write {
            key: key.to_owned(),
            expected_version: expected,
            op: WriteOp::Put(value.to_vec()),
        }
    }

    #[test]
    fn nth_call_fails_with_the_scripted_error_and_applies_nothing() {
        let memory = MemoryStorage::new();
        let mut storage = FaultyStorage::new(memory.clone());
        let script = storage.script();
        script.inject(StorageCall::Commit, 2, StorageFault::Failed);
        script.inject(StorageCall::ListKeys, 1, StorageFault::Timeout);
        assert!(storage.commit(vec![put("a", b"1", None)]).is_ok());
        assert!(matches!(
            storage.commit(vec![put("b", b"2", None)]),
            Err(StorageError::Failed(_))
        ));
        assert!(matches!(
            storage.list_keys(""),
            Err(StorageError::Timeout(_))
        ));
        assert_eq!(storage.list_keys("").unwrap(), vec!["a".to_owned()]);
        assert_eq!(memory.keys(), vec!["a".to_owned()]);
        assert_eq!(script.calls(StorageCall::Commit), 2);
    }

    #[test]
    fn reset_restarts_the_count_and_forgets_faults() {
        let mut storage = FaultyStorage::new(MemoryStorage::new());
        let script = storage.script();
        script.inject(StorageCall::Get, 2, StorageFault::Unavailable);
        assert!(storage.get("k").is_ok());
        script.reset();
        // The 2nd call after the reset is not the scripted one: the fault was forgotten.
        assert!(storage.get("k").is_ok());
        assert!(storage.get("k").is_ok());
        script.reset();
        script.inject(StorageCall::Get, 1, StorageFault::Unavailable);
        assert!(matches!(
            storage.get("k"),
            Err(StorageError::Unavailable(_))
        ));
        assert_eq!(script.log(), vec![StorageCall::Get; 4]);
    }

    #[test]
    fn scripted_conflict_applies_nothing_and_clamps_its_index() {
        let memory = MemoryStorage::new();
        let mut storage = FaultyStorage::new(memory.clone());
        storage
            .script()
            .inject(StorageCall::Commit, 1, StorageFault::Conflict(7));
        let outcome = storage
            .commit(vec![put("a", b"1", None), put("b", b"2", None)])
            .unwrap();
        assert_eq!(outcome, CommitOutcome::Conflict(1));
        assert!(memory.keys().is_empty());
    }

    #[test]
    fn timeout_after_apply_leaves_the_commit_durable() {
        let memory = MemoryStorage::new();
        let mut storage = FaultyStorage::new(memory.clone());
        storage
            .script()
            .inject(StorageCall::Commit, 1, StorageFault::TimeoutAfterApply);
        assert!(matches!(
            storage.commit(vec![put("a", b"1", Some(0))]),
            Err(StorageError::Timeout(_))
        ));
        assert_eq!(memory.raw("a").map(|(v, _)| v), Some(b"1".to_vec()));
    }

    #[test]
    fn faulty_consumer_fails_the_nth_ack_only() {
        let recording = RecordingConsumer::new();
        let mut consumer = FaultyConsumer::new(recording.clone());
        let script = consumer.script();
        script.fail_nth(2);
        assert!(consumer.ack(vec!["a".into()]).is_ok());
        assert!(consumer.ack(vec!["b".into()]).is_err());
        assert!(consumer.ack(vec!["c".into()]).is_ok());
        assert_eq!(
            recording.acks(),
            vec![vec!["a".to_owned()], vec!["c".into()]]
        );
        assert_eq!(script.failed(), vec![vec!["b".to_owned()]]);
        script.reset();
        script.fail_all();
        assert!(consumer.ack(vec!["d".into()]).is_err());
        assert_eq!(script.calls(), 1);
    }

    #[test]
    fn crash_before_durable_loses_the_commit_and_kills_the_handle() {
        let mut storage = FreezingStorage::new();
        storage.commit(vec![put("a", b"1", Some(0))]).unwrap();
        storage.crash_on_next_commit(CrashPoint::BeforeDurable);
        assert!(storage.commit(vec![put("b", b"2", None)]).is_err());
        assert!(storage.is_crashed());
        assert!(matches!(
            storage.get("a"),
            Err(StorageError::Unavailable(_))
        ));
        let mut rebooted = storage.reboot();
        assert_eq!(rebooted.list_keys("").unwrap(), vec!["a".to_owned()]);
        assert_eq!(rebooted.durable_commits(), 1);
    }

    #[test]
    fn crash_after_durable_keeps_the_commit_though_the_call_failed() {
        let mut storage = FreezingStorage::new();
        storage.crash_on_next_commit(CrashPoint::AfterDurable);
        assert!(storage.commit(vec![put("a", b"1", Some(0))]).is_err());
        let mut rebooted = storage.reboot();
        assert!(matches!(rebooted.get("a").unwrap(), Lookup::Found(_)));
        assert_eq!(rebooted.durable_keys(), vec!["a".to_owned()]);
    }

    #[test]
    fn reboot_kills_every_older_handle() {
        let mut old = FreezingStorage::new();
        let mut new = old.reboot();
        assert!(old.get("a").is_err());
        assert!(new.commit(vec![put("a", b"1", None)]).is_ok());
        assert_eq!(new.durable_raw("a").map(|(v, _)| v), Some(b"1".to_vec()));
    }

    #[test]
    fn versions_survive_a_reboot_and_conditions_still_hold() {
        let mut storage = FreezingStorage::new();
        let CommitOutcome::Committed(v) = storage.commit(vec![put("a", b"1", Some(0))]).unwrap()
        else {
            panic!("conflict");
        };
        let mut rebooted = storage.reboot();
        assert_eq!(
            rebooted.commit(vec![put("a", b"2", Some(0))]).unwrap(),
            CommitOutcome::Conflict(0)
        );
        assert!(matches!(
            rebooted.commit(vec![put("a", b"2", Some(v[0]))]).unwrap(),
            CommitOutcome::Committed(_)
        ));
    }
}
