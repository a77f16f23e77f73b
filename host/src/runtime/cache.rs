//! The on-disk artifact cache: a compiled component is stored once per component digest and
//! engine configuration, checked before wasmtime maps it, written atomically, and pruned to
//! [`CACHE_MAX_BYTES`].
//!
//! # The cache is trusted code
//! An entry is native machine code that wasmtime maps and runs as this program
//! (`Component::deserialize_file` cannot check it; the CRC only catches damage). So the
//! directory is used only if nobody but this user (and root) can change what is in it:
//! - it is created with mode 0700 (missing parents too);
//! - it must be a real directory (not a symbolic link), owned by the effective user, and not
//!   writable by its group or by everyone;
//! - every directory above it must be owned by this user or root, and not writable by others
//!   unless it has the sticky bit (as `/tmp` has), so nobody else can swap it;
//! - an entry must be a regular file owned by this user and not writable by others.
//!
//! A directory that fails these checks is never read or written: the component is compiled in
//! memory instead (slower start, same behaviour), a warning names the reason and the fix, and
//! [`Runtime::artifact_cache_error`](crate::Runtime::artifact_cache_error) returns it as an
//! [`ArtifactCacheError`]. A cache is an optimisation, so it never stops a program from
//! starting; but it is never trusted when someone else could have written it.

use std::fs;
use std::hash::{Hash as _, Hasher as _};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::ArtifactSource;

/// A cache file is the artifact exactly as `Component::serialize` wrote it, then this magic,
/// then the artifact's CRC32C (little-endian). A trailer rather than a header, so that wasmtime
/// can map the file itself (`Component::deserialize_file`): copying the artifact into fresh
/// memory was most of a cold start. Version 1 (a header with a SHA-256) and version 2 (a
/// header with the CRC32C) lack this trailer, so they fail the check and are recompiled once.
const CACHE_MAGIC: &[u8; 12] = b"ckpt-cwasm3\n";

/// Bytes of the checksum after [`CACHE_MAGIC`].
const CACHE_CHECKSUM_LEN: usize = 4;

/// Bytes of the trailer: [`CACHE_MAGIC`] and the checksum.
const CACHE_TRAILER_LEN: usize = CACHE_MAGIC.len() + CACHE_CHECKSUM_LEN;

/// Largest total size of the entries (`*.cwasm`) kept in one cache directory. After each new
/// entry is written, the least recently used ones (by modification time, which a cache hit
/// refreshes) are removed until the rest fit; the new entry is always kept. One entry of the
/// shipped component is about 0.5 MiB, so this keeps over a hundred builds or configurations.
pub const CACHE_MAX_BYTES: u64 = 64 << 20;

/// A temporary file older than this was left by a writer that died: pruning removes it.
const STALE_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

/// Why the artifact cache directory was not used (see [`ArtifactCacheErrorKind`]).
///
/// Not an error of the runtime: it compiled the component in memory and works; this says why
/// the next start will not be faster, and what to fix.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ArtifactCacheError {
    kind: ArtifactCacheErrorKind,
    dir: PathBuf,
    message: String,
}

/// What is wrong with a refused artifact cache directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArtifactCacheErrorKind {
    /// The directory cannot be created or inspected (a file in the way, no permission, an I/O
    /// error). The message has the cause.
    Unavailable,
    /// Something other than a directory is at the path.
    NotADirectory,
    /// The path is a symbolic link. Name the real directory instead.
    Symlink,
    /// Another user owns the directory: its entries would run as this program. Use a
    /// directory of your own.
    OtherOwner,
    /// Its group or everyone may write the directory (mode bits `0o020` or `0o002`).
    /// `chmod 700` it, or use another directory.
    WritableByOthers,
    /// A directory above it lets another user replace it: owned by someone other than this
    /// user or root, or writable by others without the sticky bit.
    UnsafeParent,
}

impl ArtifactCacheError {
    fn new(kind: ArtifactCacheErrorKind, dir: &Path, message: String) -> Self {
        ArtifactCacheError {
            kind,
            dir: dir.to_owned(),
            message,
        }
    }

    /// What is wrong with the directory.
    pub fn kind(&self) -> ArtifactCacheErrorKind {
        self.kind
    }

    /// The cache directory that was refused, as configured.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

pub(super) fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty("CKPT_CACHE_DIR")
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|d| d.join("checkpoint-component")))
        .or_else(|| non_empty("HOME").map(|d| d.join(".cache").join("checkpoint-component")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache file name: the component's SHA-256 (hex) and a hash of the engine settings that
/// affect compiled code, which covers the wasmtime version too (so two configurations or two
/// wasmtime versions never fight over one entry).
fn cache_file_name(engine: &Engine, component_sha256: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{component_sha256}-{:016x}.cwasm", hasher.finish())
}

/// The compiled component and where it came from.
pub(super) struct Loaded {
    pub(super) component: Component,
    pub(super) source: ArtifactSource,
    /// The cache entry read or written, when the directory was usable.
    pub(super) path: Option<PathBuf>,
    /// Why the configured cache directory was refused, if it was.
    pub(super) cache_error: Option<ArtifactCacheError>,
}

pub(super) fn load_component(
    engine: &Engine,
    bytes: &[u8],
    digest: Option<&str>,
    cache_dir: Option<&Path>,
) -> anyhow::Result<Loaded> {
    let (dir, cache_error) = match cache_dir.map(open_cache_dir) {
        None => (None, None),
        Some(Ok(dir)) => (Some(dir), None),
        Some(Err(e)) => {
            tracing::warn!(
                dir = %e.dir().display(),
                error = %e,
                "not using the artifact cache; compiling the component in memory"
            );
            (None, Some(e))
        }
    };
    let path = dir.map(|dir| {
        let name = match digest {
            Some(digest) => cache_file_name(engine, digest),
            None => cache_file_name(engine, &hex(&Sha256::digest(bytes))),
        };
        dir.join(name)
    });
    if let Some(path) = &path {
        match read_cached(engine, path) {
            Ok(Some(component)) => {
                tracing::debug!(path = %path.display(), "loaded the compiled component from the cache");
                return Ok(Loaded {
                    component,
                    source: ArtifactSource::Cache,
                    path: Some(path.clone()),
                    cache_error,
                });
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = format!("{e:#}"),
                "ignoring a damaged or untrusted artifact cache entry; recompiling"
            ),
        }
    }
    let component = Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("cannot compile the checkpoint component")?;
    if let Some(path) = &path {
        match write_cached(&component, path) {
            Ok(()) => prune_logged(path),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = format!("{e:#}"),
                "cannot write the artifact cache entry; continuing without it"
            ),
        }
    }
    Ok(Loaded {
        component,
        source: ArtifactSource::Compiled,
        path,
        cache_error,
    })
}

/// Opens the cache directory, creating it (and missing parents) with mode 0700, and checks
/// that only this user can change it (see the module doc). Returns its canonical path: every
/// later access goes through it, so no symbolic link on the way can be swapped after the check.
pub(super) fn open_cache_dir(dir: &Path) -> Result<PathBuf, ArtifactCacheError> {
    use ArtifactCacheErrorKind as Kind;
    let shown = dir.display();
    let unavailable = |what: &str, e: std::io::Error| {
        ArtifactCacheError::new(
            Kind::Unavailable,
            dir,
            format!("cannot {what} the artifact cache directory {shown}: {e}"),
        )
    };
    let leaf = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(dir).map_err(|e| unavailable("create", e))?;
            fs::symlink_metadata(dir).map_err(|e| unavailable("inspect", e))?
        }
        Err(e) => return Err(unavailable("inspect", e)),
    };
    if leaf.file_type().is_symlink() {
        return Err(ArtifactCacheError::new(
            Kind::Symlink,
            dir,
            format!(
                "the artifact cache directory {shown} is a symbolic link; name the directory it \
                 points to instead"
            ),
        ));
    }
    if !leaf.is_dir() {
        return Err(ArtifactCacheError::new(
            Kind::NotADirectory,
            dir,
            format!("the artifact cache directory {shown} is not a directory"),
        ));
    }
    let canonical = fs::canonicalize(dir).map_err(|e| unavailable("resolve", e))?;
    private::check_dir(dir, &canonical)?;
    Ok(canonical)
}

/// Creates `dir` with mode 0700, and its missing parents with mode 0700 too (as the XDG base
/// directory specification asks of `$XDG_CACHE_HOME`).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        builder.recursive(true).create(parent)?;
    }
    match builder.recursive(false).create(dir) {
        Ok(()) => {}
        // Another process created it meanwhile: it is checked like any existing directory.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    // The umask may have taken bits away (a umask of 0277 leaves 0500); set exactly 0700.
    #[cfg(unix)]
    fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}

/// The ownership and mode checks (Unix); elsewhere the directory's ACLs are trusted as they are.
#[cfg(unix)]
mod private {
    use std::fs::Metadata;
    use std::os::unix::fs::MetadataExt as _;
    use std::path::Path;

    use super::{ArtifactCacheError, ArtifactCacheErrorKind as Kind};

    const WRITABLE_BY_OTHERS: u32 = 0o022;
    const STICKY: u32 = 0o1000;

    fn euid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    /// `dir` as configured, `canonical` its resolved path (which the checks read).
    pub(super) fn check_dir(dir: &Path, canonical: &Path) -> Result<(), ArtifactCacheError> {
        let me = euid();
        let shown = dir.display();
        let meta = std::fs::metadata(canonical).map_err(|e| {
            ArtifactCacheError::new(
                Kind::Unavailable,
                dir,
                format!("cannot inspect the artifact cache directory {shown}: {e}"),
            )
        })?;
        if meta.uid() != me {
            return Err(ArtifactCacheError::new(
                Kind::OtherOwner,
                dir,
                format!(
                    "the artifact cache directory {shown} is owned by uid {}, not by this \
                     process's user (uid {me}): its compiled code would run as this program; \
                     use a directory of your own (CKPT_CACHE_DIR or RuntimeConfig::cache_dir)",
                    meta.uid()
                ),
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & WRITABLE_BY_OTHERS != 0 {
            return Err(ArtifactCacheError::new(
                Kind::WritableByOthers,
                dir,
                format!(
                    "the artifact cache directory {shown} has mode {mode:04o}: its group or \
                     everyone may write it, and its compiled code would run as this program; \
                     run `chmod 700 {shown}` or use another directory"
                ),
            ));
        }
        for parent in canonical.ancestors().skip(1) {
            let meta = std::fs::metadata(parent).map_err(|e| {
                ArtifactCacheError::new(
                    Kind::Unavailable,
                    dir,
                    format!(
                        "cannot inspect {} above the artifact cache: {e}",
                        parent.display()
                    ),
                )
            })?;
            if let Some(why) = unsafe_parent(&meta, me) {
                return Err(ArtifactCacheError::new(
                    Kind::UnsafeParent,
                    dir,
                    format!(
                        "{} above the artifact cache directory {shown} {why}, so another user \
                         could replace the cache; use a directory under one only you (or root) \
                         can write",
                        parent.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn unsafe_parent(meta: &Metadata, me: u32) -> Option<String> {
        if meta.uid() != me && meta.uid() != 0 {
            return Some(format!("is owned by uid {}", meta.uid()));
        }
        let mode = meta.mode() & 0o7777;
        (mode & WRITABLE_BY_OTHERS != 0 && mode & STICKY == 0)
            .then(|| format!("has mode {mode:04o} (writable by others, no sticky bit)"))
    }

    /// An entry must be a regular file of this user that nobody else may write.
    pub(super) fn check_entry(meta: &Metadata) -> anyhow::Result<()> {
        anyhow::ensure!(
            meta.file_type().is_file(),
            "the cache entry is not a regular file"
        );
        let me = euid();
        anyhow::ensure!(
            meta.uid() == me,
            "the cache entry is owned by uid {}, not by this process's user (uid {me})",
            meta.uid()
        );
        let mode = meta.mode() & 0o7777;
        anyhow::ensure!(
            mode & WRITABLE_BY_OTHERS == 0,
            "the cache entry has mode {mode:04o}: others may write it"
        );
        Ok(())
    }
}

#[cfg(not(unix))]
mod private {
    use std::fs::Metadata;
    use std::path::Path;

    use super::ArtifactCacheError;

    pub(super) fn check_dir(_dir: &Path, _canonical: &Path) -> Result<(), ArtifactCacheError> {
        Ok(())
    }

    pub(super) fn check_entry(meta: &Metadata) -> anyhow::Result<()> {
        anyhow::ensure!(
            meta.file_type().is_file(),
            "the cache entry is not a regular file"
        );
        Ok(())
    }
}

/// The cached component at `path`: `Ok(None)` when there is no entry, `Err` when the entry
/// is damaged, not this user's, or does not fit this engine.
fn read_cached(engine: &Engine, path: &Path) -> anyhow::Result<Option<Component>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("cannot inspect the cache entry"),
    };
    private::check_entry(&meta)?;
    let mut handle = fs::File::open(path).context("cannot open the cache entry")?;
    let mut file = Vec::new();
    handle
        .read_to_end(&mut file)
        .context("cannot read the cache entry")?;
    let artifact_len = file
        .len()
        .checked_sub(CACHE_TRAILER_LEN)
        .context("the cache entry is truncated")?;
    let (artifact, trailer) = file.split_at(artifact_len);
    let (magic, checksum) = trailer.split_at(CACHE_MAGIC.len());
    anyhow::ensure!(
        magic == CACHE_MAGIC.as_slice(),
        "the cache entry has no trailer of this format"
    );
    anyhow::ensure!(
        crc32c::crc32c(artifact).to_le_bytes().as_slice() == checksum,
        "the cache entry's checksum does not match its contents"
    );
    drop(file);
    // SAFETY: `Component::deserialize_file` trusts the file to hold an artifact produced by
    // `Component::serialize` with a compatible engine, and to stay unchanged while mapped.
    // The file was just read whole and its CRC32C matches, so it is exactly what
    // `write_cached` wrote (neither truncated nor damaged); wasmtime itself rejects an artifact
    // from another wasmtime version or engine configuration, and ignores the trailer (it reads
    // the artifact's sections by their recorded offsets). Entries are never changed in place:
    // `write_cached` renames a complete, synced file over the path, so one mapped here (even a
    // newer one renamed in since the read) was complete when it arrived, and holds the same
    // artifact (the name keys the component and the engine settings). The directory passed
    // `open_cache_dir`: only this user (and root) can write it or any directory above it, and
    // the entry is this user's own file, so nobody else can have put code here; the checksum
    // is there to catch damage, not an attacker.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize_file(engine, path) }
        .map_err(anyhow::Error::from)
        .context("wasmtime refused the cached artifact")?;
    // A hit makes the entry the most recently used, so pruning removes it last. Best effort:
    // an entry that keeps its old time is only pruned sooner.
    let _ = handle.set_modified(SystemTime::now());
    Ok(Some(component))
}

/// Writes the serialized component to `path` atomically: a temporary file (mode 0600) in the
/// same directory, synced, renamed over the entry, then the directory synced.
fn write_cached(component: &Component, path: &Path) -> anyhow::Result<()> {
    let artifact = component
        .serialize()
        .map_err(anyhow::Error::from)
        .context("cannot serialize the compiled component")?;
    let dir = path.parent().context("the cache entry has no directory")?;
    let file_name = path
        .file_name()
        .context("the cache entry has no file name")?;
    let tmp = dir.join(format!(
        ".{}.{}-{:016x}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&artifact)?;
        file.write_all(CACHE_MAGIC)?;
        file.write_all(&crc32c::crc32c(&artifact).to_le_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Prunes the directory of `kept` (the entry just written), logging what it did.
fn prune_logged(kept: &Path) {
    let Some(dir) = kept.parent() else { return };
    match prune(dir, kept, CACHE_MAX_BYTES) {
        Ok(0) => {}
        Ok(removed) => tracing::debug!(
            dir = %dir.display(),
            removed,
            "removed the least recently used artifact cache entries"
        ),
        Err(e) => tracing::warn!(
            dir = %dir.display(),
            error = %e,
            "cannot prune the artifact cache; it may grow past its cap"
        ),
    }
}

/// Removes the least recently used entries (`*.cwasm`, oldest modification time first) of
/// `dir` until their total size is at most `max_bytes`, never `kept`; and temporary files older
/// than [`STALE_TEMP_AGE`]. Nothing else in the directory is touched. Returns how many entries
/// were removed. Another process may prune at the same time: a file already gone is skipped,
/// and one it has mapped stays valid for it (Unix keeps an unlinked file until it is unmapped).
fn prune(dir: &Path, kept: &Path, max_bytes: u64) -> std::io::Result<usize> {
    let now = SystemTime::now();
    let kept_name = kept.file_name();
    let mut entries = Vec::new();
    let mut total = 0u64;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // Does not follow symbolic links: a link is not an entry, and is left alone.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if name.starts_with('.') && name.ends_with(".tmp") {
            if now
                .duration_since(modified)
                .is_ok_and(|age| age > STALE_TEMP_AGE)
            {
                let _ = fs::remove_file(entry.path());
            }
            continue;
        }
        if !name.ends_with(".cwasm") {
            continue;
        }
        total = total.saturating_add(meta.len());
        if Some(entry.file_name().as_os_str()) != kept_name {
            entries.push((modified, meta.len(), entry.path()));
        }
    }
    entries.sort_by_key(|(modified, _, _)| *modified);
    let mut removed = 0;
    for (_, len, path) in entries {
        if total <= max_bytes {
            break;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        total = total.saturating_sub(len);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuntimeConfig;

    #[test]
    fn build_time_digest_is_the_sha256_of_the_embedded_component() {
        assert_eq!(
            checkpoint_component::SHA256,
            hex(&Sha256::digest(checkpoint_component::WASM))
        );
    }

    /// Only an entry `write_cached` wrote is mapped: anything else is refused (and so
    /// recompiled), even a valid wasmtime artifact whose integrity nothing vouches for.
    #[test]
    fn cache_entries_of_other_formats_are_refused() {
        let config = RuntimeConfig {
            max_instances: 1,
            ..RuntimeConfig::default()
        };
        let engine =
            Engine::new(&super::super::engine_config(&config).expect("config")).expect("engine");
        let component = Component::new(&engine, checkpoint_component::WASM).expect("compile");
        let artifact = component.serialize().expect("serialize");
        let dir = tempfile::tempdir().expect("temp dir");
        let entry = |name: &str, parts: &[&[u8]]| {
            let path = dir.path().join(name);
            fs::write(&path, parts.concat()).expect("write entry");
            path
        };
        let checksum = crc32c::crc32c(&artifact).to_le_bytes();

        let good = dir.path().join("good.cwasm");
        write_cached(&component, &good).expect("write entry");
        assert!(matches!(read_cached(&engine, &good), Ok(Some(_))));
        assert!(matches!(
            read_cached(&engine, &dir.path().join("absent.cwasm")),
            Ok(None)
        ));

        let refused = [
            // A bare artifact, as `wasmtime compile` or another program would write it.
            entry("bare.cwasm", &[&artifact]),
            // The previous format: magic and checksum in front of the artifact.
            entry("v2.cwasm", &[b"ckpt-cwasm2\n", &checksum, &artifact]),
            // The trailer cut short.
            entry("cut.cwasm", &[&artifact, CACHE_MAGIC, &checksum[..2]]),
            // A trailer whose checksum is not the artifact's.
            entry("other.cwasm", &[&artifact, CACHE_MAGIC, &[0, 0, 0, 0]]),
            // The trailer alone.
            entry(
                "empty.cwasm",
                &[CACHE_MAGIC, &crc32c::crc32c(b"").to_le_bytes()],
            ),
        ];
        for path in refused {
            assert!(
                read_cached(&engine, &path).is_err(),
                "{} was accepted",
                path.display()
            );
        }
    }

    /// A good entry that others may write, or that is a link to one, is not mapped.
    #[cfg(unix)]
    #[test]
    fn entries_others_could_write_or_that_are_links_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;

        let config = RuntimeConfig {
            max_instances: 1,
            ..RuntimeConfig::default()
        };
        let engine =
            Engine::new(&super::super::engine_config(&config).expect("config")).expect("engine");
        let component = Component::new(&engine, checkpoint_component::WASM).expect("compile");
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("good.cwasm");
        write_cached(&component, &good).expect("write entry");
        let mode = fs::metadata(&good).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "entries are written with mode 0600");

        let link = dir.path().join("link.cwasm");
        std::os::unix::fs::symlink(&good, &link).expect("symlink");
        assert!(read_cached(&engine, &link).is_err(), "a link was followed");

        fs::set_permissions(&good, fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(
            read_cached(&engine, &good).is_err(),
            "a world-writable entry was mapped"
        );
    }

    #[test]
    fn pruning_removes_the_oldest_entries_first_and_never_the_kept_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = SystemTime::now() - Duration::from_secs(10_000);
        let write = |name: &str, len: usize, age_rank: u64| {
            let path = dir.path().join(name);
            fs::write(&path, vec![0u8; len]).expect("write");
            let file = fs::File::options().write(true).open(&path).expect("open");
            file.set_modified(base + Duration::from_secs(age_rank * 100))
                .expect("set time");
            path
        };
        let oldest = write("a.cwasm", 400, 1);
        let middle = write("b.cwasm", 400, 2);
        let newest = write("c.cwasm", 400, 3);
        // Kept although it is the oldest of all.
        let kept = write("kept.cwasm", 400, 0);
        let other = write("notes.txt", 10_000, 0);
        let stale_temp = write(".x.cwasm.1-2.tmp", 10, 0);

        assert_eq!(prune(dir.path(), &kept, 1_000).expect("prune"), 2);
        assert!(!oldest.exists() && !middle.exists());
        assert!(newest.exists() && kept.exists());
        assert!(other.exists(), "files that are not entries are left alone");
        assert!(!stale_temp.exists(), "a stale temporary file is removed");
        assert_eq!(prune(dir.path(), &kept, 1_000).expect("prune"), 0);
    }
}
