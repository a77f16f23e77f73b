//! The sandbox holds against a hostile component and hostile input: a call that never ends is
//! stopped by the deadline, a memory bomb by the memory limit, a trap breaks only its own
//! instance, the component reaches no file, environment variable or socket, and the runtime
//! keeps serving new instances after each of these.
//!
//! Time spent in a store callback counts against the deadline too (epoch interruption counts
//! wall time): a store call that returns after the deadline ends the component call with the
//! deadline error when control is back in the guest, and the runtime keeps serving.
//!
//! `sandbox_summary` plays the three headline cases once more (endless loop, memory bomb, slow
//! store callback), each followed by a new instance that must serve, and prints one line for
//! `make reliability` (scripts/reliability.sh): `sandbox rust: ...`.
//!
//! The hostile component is `tests/hostile-guest`, built to `target/hostile.wasm` by
//! `scripts/build-hostile.sh` (`make test` runs it first). It exports the same world as the
//! real guest and misbehaves on the command given as a run id (see its crate docs).

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::storage::MemoryStorage;
use checkpoint_host::{
    Checkpoint, CheckpointError, Checkpointer, Codec, CommitOutcome, Error, Lookup, Options,
    Runtime, RuntimeConfig, RuntimeErrorKind, Storage, StorageError, Watermark, Write,
};

const DEADLINE: Duration = Duration::from_millis(200);
const MEMORY_LIMIT: usize = 64 << 20;

fn hostile_component() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/hostile.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the hostile component {}: {e}; build it with `bash \
             scripts/build-hostile.sh` (`make test` does)",
            path.display()
        )
    })
}

fn config(cache_dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        call_deadline: DEADLINE,
        max_memory_bytes: MEMORY_LIMIT,
        max_instances: 4,
        cache_dir: Some(cache_dir.to_owned()),
    }
}

fn hostile_runtime(cache_dir: &Path) -> Runtime {
    Runtime::with_component(config(cache_dir), &hostile_component())
        .expect("the hostile component loads: it exports the checkpoint world")
}

/// The hostile component with a long deadline: on a loaded machine the memory bomb must meet
/// the memory limit, not the clock.
fn roomy_hostile_runtime(cache_dir: &Path) -> Runtime {
    let config = RuntimeConfig {
        call_deadline: Duration::from_secs(30),
        ..config(cache_dir)
    };
    Runtime::with_component(config, &hostile_component()).expect("the hostile component loads")
}

/// A valid checkpoint whose run id is the hostile guest's command.
fn command(run_id: &str) -> Checkpoint {
    Checkpoint {
        run_id: run_id.into(),
        stage: "s".into(),
        sequence: 1,
        epoch: 1,
        watermark: Watermark {
            offset: 1,
            event_time_ms: 0,
        },
        sources: vec![],
        sinks: vec![],
        operator_states: vec![],
        idempotency_key: String::new(),
        at_ms: 0,
    }
}

fn runtime_error(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::Runtime(e)) => format!("{e:#}"),
        other => panic!("expected a runtime error (trap), got {other:?}"),
    }
}

/// What a probe of the hostile guest reported back (`invalid { field: probe:.., reason }`).
fn probe(runtime: &Runtime, what: &str) -> String {
    let mut codec = Codec::new_in(runtime).expect("instance");
    match codec.validate(&command(what)) {
        Err(Error::Checkpoint(CheckpointError::Invalid(i)))
            if i.field == format!("probe:{what}") =>
        {
            eprintln!("probe {what}: {}", i.reason);
            i.reason
        }
        other => panic!("expected the probe's report, got {other:?}"),
    }
}

fn assert_runtime_keeps_serving(runtime: &Runtime) {
    let mut fresh = Codec::new_in(runtime).expect("a new instance after the failure");
    fresh
        .validate(&command("well-behaved"))
        .expect("a new instance serves calls");
}

#[test]
fn endless_loop_is_stopped_by_the_deadline_and_the_runtime_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = hostile_runtime(dir.path());
    let mut codec = Codec::new_in(&runtime).expect("instance");

    let start = Instant::now();
    let message = runtime_error(codec.validate(&command("loop")));
    let stopped_after = start.elapsed();
    eprintln!("loop stopped after {stopped_after:?} (deadline {DEADLINE:?}): {message}");
    assert!(
        message.contains("`codec.validate` ran past its deadline of 200ms and was interrupted"),
        "{message}"
    );
    assert!(
        stopped_after >= DEADLINE,
        "stopped early: {stopped_after:?}"
    );
    // Generous: the deadline's resolution is 10 ms, but test machines may be overloaded.
    assert!(
        stopped_after < DEADLINE * 10,
        "stopped late: {stopped_after:?}"
    );

    let again = runtime_error(codec.validate(&command("well-behaved")));
    assert!(
        again.contains("cannot call `codec.validate`: this instance of the component is unusable")
            && again.contains("open a new one"),
        "{again}"
    );
    assert_runtime_keeps_serving(&runtime);
}

#[test]
fn checkpointer_stopped_by_the_deadline_refuses_further_calls_and_a_new_one_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = hostile_runtime(dir.path());
    let options = Options {
        namespace: "sandbox".into(),
        max_retained: 2,
        max_checkpoint_bytes: 1 << 20,
    };
    let open = || {
        Checkpointer::open_in(
            &runtime,
            Box::new(MemoryStorage::new()),
            Box::new(NullConsumer),
            &options,
        )
        .expect("open")
    };

    let mut checkpointer = open();
    let message = runtime_error(checkpointer.get("loop", "s"));
    assert!(
        message.contains("ran past its deadline of 200ms"),
        "{message}"
    );
    let again = runtime_error(checkpointer.get("well-behaved", "s"));
    assert!(
        again.contains("unusable after an earlier failure"),
        "{again}"
    );

    let mut fresh = open();
    assert!(matches!(
        fresh.get("well-behaved", "s"),
        Err(Error::Checkpoint(CheckpointError::NotFound))
    ));
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_limit_and_the_runtime_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = roomy_hostile_runtime(dir.path());
    let mut codec = Codec::new_in(&runtime).expect("instance");

    let start = Instant::now();
    let message = runtime_error(codec.validate(&command("bomb")));
    eprintln!("bomb stopped after {:?}: {message}", start.elapsed());
    assert!(
        message.contains(&format!(
            "`codec.validate` trapped after its memory limit of {MEMORY_LIMIT} bytes refused"
        )),
        "{message}"
    );
    assert!(runtime_error(codec.validate(&command("well-behaved"))).contains("unusable"));
    assert_runtime_keeps_serving(&runtime);
}

#[test]
fn guest_panic_is_a_trap_of_its_own_instance_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = hostile_runtime(dir.path());
    let mut bystander = Codec::new_in(&runtime).expect("instance");
    let mut codec = Codec::new_in(&runtime).expect("instance");

    let message = runtime_error(codec.validate(&command("panic")));
    assert!(
        message.contains("the component call `codec.validate` trapped"),
        "{message}"
    );
    bystander
        .validate(&command("well-behaved"))
        .expect("another live instance is untouched");
    assert_runtime_keeps_serving(&runtime);
}

#[test]
fn guest_has_no_preopened_directory_and_cannot_read_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = hostile_runtime(dir.path());
    let report = probe(&runtime, "files");
    assert!(report.starts_with("preopens=0;"), "{report}");
    assert!(report.contains("read /etc/hostname: error:"), "{report}");
    assert!(report.contains("read_dir /: error:"), "{report}");
}

#[test]
fn guest_sees_no_environment_variables_or_arguments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = hostile_runtime(dir.path());
    // Something to leak, were the host's environment passed through.
    assert!(std::env::vars_os().next().is_some());
    let report = probe(&runtime, "env");
    assert!(report.starts_with("vars=0 []; args=0;"), "{report}");
}

#[test]
fn guest_is_denied_sockets_and_name_lookup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = hostile_runtime(dir.path());
    let report = probe(&runtime, "socket");
    let (tcp, lookup) = report.split_once("; ").expect("two answers");
    assert!(
        tcp.starts_with("create-tcp-socket: error:") && tcp.contains(r#"name: "access-denied""#),
        "{report}"
    );
    // wasmtime-wasi's answer when name lookup is not allowed.
    assert!(
        lookup.starts_with("resolve-addresses localhost: error:")
            && lookup.contains(r#"name: "permanent-resolver-failure""#),
        "{report}"
    );
}

#[test]
fn decode_of_100_mib_over_the_64_mib_limit_fails_cleanly_and_the_runtime_keeps_serving() {
    // The real, embedded guest: hostile input, not a hostile component.
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(config(dir.path())).expect("runtime");
    let mut codec = Codec::new_in(&runtime).expect("instance");
    let huge = vec![0xa5u8; 100 << 20];

    let start = Instant::now();
    let message = runtime_error(codec.decode(&huge));
    eprintln!(
        "100 MiB decode refused after {:?}: {message}",
        start.elapsed()
    );
    assert!(
        message.contains(&format!(
            "`codec.decode` trapped after its memory limit of {MEMORY_LIMIT} bytes refused"
        )),
        "{message}"
    );

    let mut fresh = Codec::new_in(&runtime).expect("a new instance after the failure");
    let bytes = fresh.encode(&command("run-1")).expect("encode");
    assert_eq!(fresh.decode(&bytes).expect("decode"), command("run-1"));
}

// ---------------------------------------------------------------------------------------------
// A store whose calls are slow: time in a callback counts against the deadline.

/// A memory store whose `get` and `commit` sleep for the delays set in `SlowDelays` (0: none)
/// before answering. Clones share the data and the delays.
#[derive(Clone, Default)]
struct SlowStorage {
    inner: MemoryStorage,
    delays: Arc<SlowDelays>,
}

#[derive(Default)]
struct SlowDelays {
    get_ms: AtomicU64,
    commit_ms: AtomicU64,
}

impl SlowStorage {
    fn nap(ms: &AtomicU64) {
        let ms = ms.load(Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
}

impl Storage for SlowStorage {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        Self::nap(&self.delays.get_ms);
        self.inner.get(key)
    }
    fn commit(&mut self, writes: Vec<Write>) -> Result<CommitOutcome, StorageError> {
        Self::nap(&self.delays.commit_ms);
        self.inner.commit(writes)
    }
    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.inner.list_keys(prefix)
    }
}

/// Far past the 200 ms deadline, so that no tick resolution or loaded machine blurs it.
const SLOW_CALLBACK: Duration = Duration::from_millis(1000);

fn sandbox_options() -> Options {
    Options {
        namespace: "sandbox".into(),
        max_retained: 2,
        max_checkpoint_bytes: 1 << 20,
    }
}

fn open_slow(runtime: &Runtime, storage: &SlowStorage) -> Checkpointer {
    Checkpointer::open_in(
        runtime,
        Box::new(storage.clone()),
        Box::new(NullConsumer),
        &sandbox_options(),
    )
    .expect("open")
}

/// The deadline error of a call stopped by it, with its message.
fn deadline_error<T: std::fmt::Debug>(result: Result<T, Error>) -> Result<String, String> {
    match result {
        Err(Error::Runtime(e)) if e.kind() == RuntimeErrorKind::Deadline => Ok(format!("{e:#}")),
        other => Err(format!("expected the deadline error, got {other:?}")),
    }
}

/// A store call that returns after the deadline ends the component call with the deadline
/// error, and the instance answers `Unusable` after it; a new checkpointer on the same store,
/// answering in time, serves. Returns how long the stopped call took.
fn slow_store_callback(runtime: &Runtime) -> Result<Duration, String> {
    let storage = SlowStorage::default();
    let mut checkpointer = open_slow(runtime, &storage);
    let first = command("run-1");
    checkpointer
        .write(&first, &[])
        .map_err(|e| format!("a write in time: {e}"))?;

    storage
        .delays
        .get_ms
        .store(SLOW_CALLBACK.as_millis() as u64, Ordering::SeqCst);
    let start = Instant::now();
    let message = deadline_error(checkpointer.get("run-1", "s"))?;
    let stopped_after = start.elapsed();
    storage.delays.get_ms.store(0, Ordering::SeqCst);
    if !message.contains("`checkpointer.get` ran past its deadline of 200ms and was interrupted") {
        return Err(format!("unexpected message: {message}"));
    }
    if stopped_after < SLOW_CALLBACK {
        return Err(format!(
            "the call ended after {stopped_after:?}, before the store answered"
        ));
    }
    match checkpointer.get("run-1", "s") {
        Err(Error::Runtime(e)) if e.kind() == RuntimeErrorKind::Unusable => {}
        other => {
            return Err(format!(
                "expected Unusable after the deadline, got {other:?}"
            ));
        }
    }
    let read = open_slow(runtime, &storage)
        .get("run-1", "s")
        .map_err(|e| format!("a new checkpointer after the deadline: {e}"))?;
    if read != first {
        return Err(format!("read back {read:?}, not {first:?}"));
    }
    Ok(stopped_after)
}

#[test]
fn a_store_get_slower_than_the_deadline_ends_the_call_with_the_deadline_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The real component: the time is spent in the host, not in guest code.
    let runtime = Runtime::new(config(dir.path())).expect("runtime");
    let stopped_after = slow_store_callback(&runtime).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("slow get stopped after {stopped_after:?} (deadline {DEADLINE:?})");
    assert!(
        stopped_after < SLOW_CALLBACK + DEADLINE * 10,
        "stopped late: {stopped_after:?}"
    );
}

#[test]
fn a_store_commit_slower_than_the_deadline_ends_the_write_with_the_deadline_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(config(dir.path())).expect("runtime");
    let storage = SlowStorage::default();
    let mut checkpointer = open_slow(&runtime, &storage);
    storage
        .delays
        .commit_ms
        .store(SLOW_CALLBACK.as_millis() as u64, Ordering::SeqCst);
    let message = deadline_error(checkpointer.write(&command("run-1"), &[]))
        .unwrap_or_else(|e| panic!("{e}"));
    storage.delays.commit_ms.store(0, Ordering::SeqCst);
    assert!(
        message.contains("`checkpointer.write` ran past its deadline of 200ms"),
        "{message}"
    );
    // The store applied the commit, late: the write's outcome was unknown to the caller, and
    // a new checkpointer finds it (as after a store timeout) and writes the next one.
    let mut fresh = open_slow(&runtime, &storage);
    assert_eq!(
        fresh.get("run-1", "s").expect("the late commit"),
        command("run-1")
    );
    let mut next = command("run-1");
    next.sequence = 2;
    next.watermark.offset = 2;
    fresh.write(&next, &[]).expect("the runtime keeps serving");
}

/// The headline cases once more, each followed by a new instance that must serve, with one
/// summary line for scripts/reliability.sh. The line is printed before the assertion, so a
/// failure shows in it too.
#[test]
fn sandbox_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hostile = hostile_runtime(dir.path());
    let roomy = roomy_hostile_runtime(dir.path());
    let real = Runtime::new(config(dir.path())).expect("runtime");
    let serving = |runtime: &Runtime| -> Result<(), String> {
        Codec::new_in(runtime)
            .and_then(|mut c| c.validate(&command("well-behaved")))
            .map_err(|e| format!("the runtime no longer serves: {e}"))
    };
    let ms = |d: Duration| d.as_millis();
    let mut held = 0;
    let mut failures = Vec::new();

    let start = Instant::now();
    let loop_case = Codec::new_in(&hostile)
        .map_err(|e| e.to_string())
        .and_then(|mut c| deadline_error(c.validate(&command("loop"))))
        .and_then(|_| serving(&hostile));
    let loop_ms = ms(start.elapsed());
    match loop_case {
        Ok(()) => held += 1,
        Err(e) => failures.push(format!("endless loop: {e}")),
    }

    let start = Instant::now();
    let bomb_case = Codec::new_in(&roomy)
        .map_err(|e| e.to_string())
        .and_then(|mut c| match c.validate(&command("bomb")) {
            Err(Error::Runtime(e)) if e.kind() == RuntimeErrorKind::MemoryLimit => Ok(()),
            other => Err(format!("expected the memory limit error, got {other:?}")),
        })
        .and_then(|()| serving(&roomy));
    let bomb_ms = ms(start.elapsed());
    match bomb_case {
        Ok(()) => held += 1,
        Err(e) => failures.push(format!("memory bomb: {e}")),
    }

    let slow_case = slow_store_callback(&real).and_then(|d| serving(&real).map(|()| d));
    let slow_ms = slow_case.as_ref().map_or(0, |d| ms(*d));
    match slow_case {
        Ok(_) => held += 1,
        Err(e) => failures.push(format!("slow store callback: {e}")),
    }

    let _ = writeln!(
        std::io::stderr().lock(),
        "sandbox rust: {held} of 3 held: endless loop stopped after {loop_ms} ms (deadline {} \
         ms), memory bomb refused at the {} MiB limit after {bomb_ms} ms, slow store callback \
         ({} ms) stopped after {slow_ms} ms (deadline {} ms); host still serving after each{}",
        DEADLINE.as_millis(),
        MEMORY_LIMIT >> 20,
        SLOW_CALLBACK.as_millis(),
        DEADLINE.as_millis(),
        if failures.is_empty() {
            String::new()
        } else {
            format!("; FAILED: {}", failures.join("; "))
        }
    );
    assert!(failures.is_empty(), "{failures:?}");
}
