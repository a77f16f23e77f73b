//! The on-disk artifact cache: a compiled component is stored once per component digest and
//! engine configuration, checked before wasmtime maps it, and written atomically.

use std::fs;
use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};

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

pub(super) fn load_component(
    engine: &Engine,
    bytes: &[u8],
    digest: Option<&str>,
    cache_dir: Option<&Path>,
) -> anyhow::Result<(Component, ArtifactSource, Option<PathBuf>)> {
    let path = cache_dir.map(|dir| {
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
                return Ok((component, ArtifactSource::Cache, Some(path.clone())));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = format!("{e:#}"),
                "ignoring a damaged artifact cache entry; recompiling"
            ),
        }
    }
    let component = Component::new(engine, bytes)
        .map_err(anyhow::Error::from)
        .context("cannot compile the checkpoint component")?;
    if let Some(path) = &path
        && let Err(e) = write_cached(&component, path)
    {
        tracing::warn!(
            path = %path.display(),
            error = format!("{e:#}"),
            "cannot write the artifact cache entry; continuing without it"
        );
    }
    Ok((component, ArtifactSource::Compiled, path))
}

/// The cached component at `path`: `Ok(None)` when there is no entry, `Err` when the entry
/// is damaged or does not fit this engine.
fn read_cached(engine: &Engine, path: &Path) -> anyhow::Result<Option<Component>> {
    let file = match fs::read(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("cannot read the cache entry"),
    };
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
    // artifact (the name keys the component and the engine settings). The cache directory is
    // trusted like the executable: whoever can write it in place could also replace this
    // program; the checksum is there to catch damage, not an attacker.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize_file(engine, path) }
        .map_err(anyhow::Error::from)
        .context("wasmtime refused the cached artifact")?;
    Ok(Some(component))
}

/// Writes the serialized component to `path` atomically: a temporary file in the same
/// directory, synced, renamed over the entry, then the directory synced.
fn write_cached(component: &Component, path: &Path) -> anyhow::Result<()> {
    let artifact = component
        .serialize()
        .map_err(anyhow::Error::from)
        .context("cannot serialize the compiled component")?;
    let dir = path.parent().context("the cache entry has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
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
        let mut file = fs::File::create(&tmp)?;
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
}
