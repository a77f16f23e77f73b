//! The artifact cache is trusted code: a directory someone else could write is never read or
//! written (the component is compiled in memory instead, and the runtime says why), a new one
//! is private, and the cache stays under its size cap.

#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use checkpoint_host::{
    ArtifactCacheErrorKind, ArtifactSource, CACHE_MAX_BYTES, Codec, Runtime, RuntimeConfig,
};

fn open_runtime(cache_dir: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache_dir.to_owned()),
        max_instances: 2,
        ..RuntimeConfig::default()
    })
    .expect("a runtime, whatever the cache directory")
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// What is in `dir` (for a file in its place: its size).
fn names(dir: &Path) -> Vec<String> {
    if !dir.is_dir() {
        return vec![fs::metadata(dir).expect("stat").len().to_string()];
    }
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A runtime whose cache directory was refused still works, wrote nothing there, and names
/// the reason.
fn assert_refused(dir: &Path, expected: ArtifactCacheErrorKind) {
    let before = names(dir);
    let runtime = open_runtime(dir);
    let error = runtime
        .artifact_cache_error()
        .unwrap_or_else(|| panic!("{} was used as the cache", dir.display()));
    assert_eq!(error.kind(), expected, "{error}");
    assert_eq!(error.dir(), dir);
    assert!(
        error.to_string().contains(&dir.display().to_string()),
        "the message names the directory: {error}"
    );
    assert_eq!(runtime.artifact_source(), ArtifactSource::Compiled);
    assert_eq!(runtime.artifact_path(), None);
    Codec::new_in(&runtime).expect("the compiled component works");
    assert_eq!(
        names(dir),
        before,
        "nothing was written to a refused directory"
    );
}

/// A directory made by this process, so owned by its effective user.
fn private_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o700);
    dir
}

#[test]
fn a_missing_cache_dir_and_its_parents_are_created_with_mode_0700() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root
        .path()
        .join("home")
        .join(".cache")
        .join("checkpoint-component");
    let runtime = open_runtime(&dir);
    assert!(runtime.artifact_cache_error().is_none());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&root.path().join("home")), 0o700);
    let entry = runtime.artifact_path().expect("an entry").to_owned();
    assert!(entry.starts_with(fs::canonicalize(&dir).expect("canonical")));
    assert_eq!(mode(&entry), 0o600);

    // An own directory that others may read but not write is used as it is.
    let open = private_dir(root.path(), "readable");
    chmod(&open, 0o755);
    let runtime = open_runtime(&open);
    assert!(runtime.artifact_cache_error().is_none());
    assert!(runtime.artifact_path().is_some_and(Path::is_file));
    assert_eq!(
        mode(&open),
        0o755,
        "an existing directory's mode is left alone"
    );
}

#[test]
fn a_world_writable_cache_dir_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = private_dir(root.path(), "cache");
    chmod(&dir, 0o777);
    assert_refused(&dir, ArtifactCacheErrorKind::WritableByOthers);
}

#[test]
fn a_group_writable_cache_dir_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = private_dir(root.path(), "cache");
    chmod(&dir, 0o770);
    assert_refused(&dir, ArtifactCacheErrorKind::WritableByOthers);
}

#[test]
fn a_cache_dir_that_is_a_symlink_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let real = private_dir(root.path(), "real");
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    assert_refused(&link, ArtifactCacheErrorKind::Symlink);
    assert!(
        names(&real).is_empty(),
        "nothing was written through the link"
    );
}

#[test]
fn a_file_in_place_of_the_cache_dir_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let file = root.path().join("cache");
    fs::write(&file, b"").expect("write");
    assert_refused(&file, ArtifactCacheErrorKind::NotADirectory);
}

#[test]
fn a_cache_dir_another_user_owns_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let me = fs::metadata(root.path()).expect("stat").uid();
    let dir = if me == 0 {
        // Root can hand a directory to another user; 65534 is `nobody` by convention.
        let dir = private_dir(root.path(), "theirs");
        std::os::unix::fs::chown(&dir, Some(65534), None).expect("chown as root");
        dir
    } else {
        // Not root: `/` belongs to root, another user.
        PathBuf::from("/")
    };
    assert_refused(&dir, ArtifactCacheErrorKind::OtherOwner);
}

#[test]
fn a_cache_dir_under_a_directory_others_may_write_is_refused_unless_sticky() {
    let root = tempfile::tempdir().expect("temp dir");
    let shared = private_dir(root.path(), "shared");
    let dir = private_dir(&shared, "cache");
    // Anyone could rename `cache` away and put their own in its place.
    chmod(&shared, 0o777);
    assert_refused(&dir, ArtifactCacheErrorKind::UnsafeParent);

    // With the sticky bit (as /tmp has) only the owner may rename it: safe.
    chmod(&shared, 0o1777);
    let runtime = open_runtime(&dir);
    assert!(
        runtime.artifact_cache_error().is_none(),
        "{:?}",
        runtime.artifact_cache_error()
    );
    assert!(runtime.artifact_path().is_some_and(Path::is_file));
}

#[test]
fn the_size_cap_evicts_the_least_recently_used_entries_first() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = private_dir(root.path(), "cache");
    // Three old entries of other builds, each just under half the cap (sparse: no disk used),
    // oldest first. With the new entry the total is over the cap; dropping the oldest fits.
    let old = SystemTime::now() - Duration::from_secs(3 * 24 * 3600);
    let entry = |name: &str, age_rank: u64| {
        let path = dir.join(format!("{name}-0000000000000000.cwasm"));
        let file = fs::File::create(&path).expect("create");
        file.set_len(CACHE_MAX_BYTES * 45 / 100).expect("size");
        file.set_modified(old + Duration::from_secs(age_rank * 3600))
            .expect("time");
        path
    };
    let oldest = entry("a", 0);
    let older = entry("b", 1);
    let newer = entry("c", 2);
    let unrelated = dir.join("README");
    fs::write(&unrelated, b"not an entry").expect("write");

    let runtime = open_runtime(&dir);
    let written = runtime.artifact_path().expect("an entry").to_owned();
    assert!(written.is_file());
    assert!(
        !oldest.exists(),
        "the least recently used entry was evicted"
    );
    assert!(
        older.exists() && newer.exists(),
        "only as much as needed was evicted"
    );
    assert!(unrelated.exists(), "only entries are evicted");
    let total: u64 = fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").metadata().expect("stat"))
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert!(total <= CACHE_MAX_BYTES, "{total} bytes left");
}

#[test]
fn a_cache_hit_marks_the_entry_recently_used() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = private_dir(root.path(), "cache");
    let entry = open_runtime(&dir)
        .artifact_path()
        .expect("an entry")
        .to_owned();
    let long_ago = SystemTime::now() - Duration::from_secs(30 * 24 * 3600);
    fs::File::options()
        .write(true)
        .open(&entry)
        .expect("open")
        .set_modified(long_ago)
        .expect("time");

    let again = open_runtime(&dir);
    assert_eq!(again.artifact_source(), ArtifactSource::Cache);
    let modified = fs::metadata(&entry)
        .expect("stat")
        .modified()
        .expect("mtime");
    assert!(
        modified > long_ago,
        "a hit did not refresh the entry's time"
    );
}
