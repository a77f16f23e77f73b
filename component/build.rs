//! Hashes the shipped component once at build time, so that no host hashes 0.5 MiB on every
//! cold start (it keys the compiled-artifact cache).

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

fn main() {
    println!("cargo:rerun-if-changed=checkpoint.wasm");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let path = manifest_dir.join("checkpoint.wasm");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!(
                "error: cannot read the shipped component {}: {e}",
                path.display()
            );
            std::process::exit(1);
        }
    };
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=CHECKPOINT_COMPONENT_SHA256={digest}");
}
