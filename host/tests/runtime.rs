//! The runtime: artifact cache, configuration checks and the instance pool.
//!
//! These run the embedded component (the shipped `component/checkpoint.wasm`) only as far as
//! instantiating it, so they pass with any component that implements the world.

use std::fs;
use std::path::Path;
use std::time::Duration;

use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::storage::MemoryStorage;
use checkpoint_host::{ArtifactSource, Codec, Error, Runtime, RuntimeConfig};

fn config(cache_dir: &Path, max_instances: u32) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(cache_dir.to_owned()),
        max_instances,
        ..RuntimeConfig::default()
    }
}

fn cache_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn second_runtime_loads_the_compiled_component_from_the_cache() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Runtime::new(config(dir.path(), 2)).expect("first runtime");
    assert_eq!(first.artifact_source(), ArtifactSource::Compiled);
    let path = first.artifact_path().expect("a cache path").to_owned();
    assert!(path.is_file(), "no cache entry at {}", path.display());
    // Only the entry: the temporary file was renamed, not left behind.
    assert_eq!(cache_entries(dir.path()).len(), 1);

    let second = Runtime::new(config(dir.path(), 2)).expect("second runtime");
    assert_eq!(second.artifact_source(), ArtifactSource::Cache);
    assert_eq!(second.artifact_path(), Some(path.as_path()));
    // The cached artifact is usable.
    Codec::new_in(&second).expect("instantiate from the cached artifact");
}

#[test]
fn garbage_cache_entry_is_recompiled_and_replaced_not_trusted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = Runtime::new(config(dir.path(), 2))
        .expect("runtime")
        .artifact_path()
        .expect("a cache path")
        .to_owned();
    fs::write(&path, b"this is not a compiled component").expect("write garbage");

    let runtime = Runtime::new(config(dir.path(), 2)).expect("runtime despite garbage");
    assert_eq!(runtime.artifact_source(), ArtifactSource::Compiled);
    Codec::new_in(&runtime).expect("instantiate the recompiled component");
    // The garbage was overwritten with a good entry.
    let again = Runtime::new(config(dir.path(), 2)).expect("runtime");
    assert_eq!(again.artifact_source(), ArtifactSource::Cache);
}

#[test]
fn cache_entry_with_a_flipped_byte_is_recompiled_not_trusted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = Runtime::new(config(dir.path(), 2))
        .expect("runtime")
        .artifact_path()
        .expect("a cache path")
        .to_owned();
    let mut bytes = fs::read(&path).expect("read entry");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&path, &bytes).expect("damage entry");

    let runtime = Runtime::new(config(dir.path(), 2)).expect("runtime despite damage");
    assert_eq!(runtime.artifact_source(), ArtifactSource::Compiled);
    Codec::new_in(&runtime).expect("instantiate the recompiled component");
}

#[test]
fn unwritable_cache_dir_still_gives_a_working_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A file where the cache directory should be: nothing can be created under it.
    let blocked = dir.path().join("not-a-dir");
    fs::write(&blocked, b"").expect("write file");
    let runtime = Runtime::new(config(&blocked.join("cache"), 2)).expect("runtime");
    assert_eq!(runtime.artifact_source(), ArtifactSource::Compiled);
    Codec::new_in(&runtime).expect("instantiate");
}

#[test]
fn invalid_runtime_config_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = [
        RuntimeConfig {
            call_deadline: Duration::ZERO,
            ..config(dir.path(), 2)
        },
        RuntimeConfig {
            max_instances: 0,
            ..config(dir.path(), 2)
        },
        RuntimeConfig {
            max_memory_bytes: 1024,
            ..config(dir.path(), 2)
        },
        RuntimeConfig {
            max_memory_bytes: usize::MAX,
            ..config(dir.path(), 2)
        },
    ];
    for config in bad {
        assert!(Runtime::new(config.clone()).is_err(), "accepted {config:?}");
    }
}

#[test]
fn full_instance_pool_fails_cleanly_and_recovers_when_one_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(config(dir.path(), 3)).expect("runtime");
    let mut live: Vec<Codec> = (0..3)
        .map(|_| Codec::new_in(&runtime).expect("instance"))
        .collect();
    let err = Codec::new_in(&runtime).expect_err("a fourth instance does not fit the pool");
    assert!(matches!(err, Error::Runtime(_)), "{err:?}");
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string().contains("instantiate"),
        "unclear error: {err}"
    );
    live.pop();
    Codec::new_in(&runtime).expect("a slot is free again");
}

#[test]
fn checkpointer_opens_on_its_own_runtime_with_memory_storage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(config(dir.path(), 2)).expect("runtime");
    let options = checkpoint_host::Options {
        namespace: "tests".into(),
        max_retained: 2,
        max_checkpoint_bytes: 4096,
    };
    checkpoint_host::Checkpointer::open_in(
        &runtime,
        Box::new(MemoryStorage::new()),
        Box::new(NullConsumer),
        &options,
    )
    .expect("open");
}

#[test]
fn handles_can_move_between_threads_and_the_runtime_can_be_shared() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<checkpoint_host::Checkpointer>();
    send::<checkpoint_host::Driver>();
    send::<Codec>();
    send_sync::<Runtime>();
    send::<Error>();
}
