//! Locates the guest component that the library embeds with `include_bytes!`, and computes
//! its SHA-256 (the artifact cache key) here so that a cold start does not hash it again.
//!
//! The component is built by `make build` into `<workspace>/target/checkpoint.wasm`;
//! `CKPT_COMPONENT_WASM` overrides the path (an absolute path, or one relative to this crate).
//! The script copies it into `OUT_DIR` and hashes that same read, so the embedded bytes and
//! their digest cannot come from two different builds of the component.

use std::env;
use std::path::{Path, PathBuf};
use std::process::exit;

use sha2::{Digest as _, Sha256};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CKPT_COMPONENT_WASM");

    let manifest_dir = match env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => fail("CARGO_MANIFEST_DIR is not set: build this crate with cargo"),
    };
    let workspace_dir = manifest_dir.join("..");

    let wasm = match env::var_os("CKPT_COMPONENT_WASM") {
        Some(path) if !path.is_empty() => manifest_dir.join(path),
        _ => workspace_dir.join("target").join("checkpoint.wasm"),
    };
    let wasm = std::path::absolute(&wasm).unwrap_or(wasm);
    // Cargo re-runs this script when the component changes (or appears).
    println!("cargo:rerun-if-changed={}", wasm.display());
    if !wasm.is_file() {
        fail(&format!(
            "the guest component {} does not exist: run `make build` (builds the guest component \
             first), or point CKPT_COMPONENT_WASM at a built component",
            wasm.display()
        ));
    }
    let bytes = std::fs::read(&wasm)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", wasm.display())));
    let out_dir = match env::var_os("OUT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => fail("OUT_DIR is not set: build this crate with cargo"),
    };
    let embedded = out_dir.join("checkpoint.wasm");
    std::fs::write(&embedded, &bytes)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", embedded.display())));
    println!("cargo:rustc-env=CKPT_COMPONENT_WASM={}", embedded.display());
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=CKPT_COMPONENT_SHA256={digest}");

    // The artifact cache is keyed by the wasmtime version; Cargo.lock is where it is pinned.
    let lock = workspace_dir.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let version = locked_version(&lock, "wasmtime").unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=CKPT_WASMTIME_VERSION={version}");
}

/// The version of `package` recorded in a Cargo.lock, if it is there exactly once.
fn locked_version(lock: &Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let wanted = format!("name = \"{package}\"");
    let mut found = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines
                .next()?
                .trim()
                .strip_prefix("version = \"")?
                .strip_suffix('"')?;
            if found.is_some() {
                return None;
            }
            found = Some(version.to_owned());
        }
    }
    found
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1)
}
