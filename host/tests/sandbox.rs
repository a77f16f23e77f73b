//! The sandbox holds against a hostile component and hostile input: a call that never ends is
//! stopped by the deadline, a memory bomb by the memory limit, a trap breaks only its own
//! instance, the component reaches no file, environment variable or socket, and the runtime
//! keeps serving new instances after each of these.
//!
//! The hostile component is `tests/hostile-guest`, built to `target/hostile.wasm` by
//! `scripts/build-hostile.sh` (`make test` runs it first). It exports the same world as the
//! real guest and misbehaves on the command given as a run id (see its crate docs).

use std::path::Path;
use std::time::{Duration, Instant};

use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::storage::MemoryStorage;
use checkpoint_host::{
    Checkpoint, CheckpointError, Checkpointer, Codec, Error, Options, Runtime, RuntimeConfig,
    Watermark,
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
    let runtime = hostile_runtime(dir.path());
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
