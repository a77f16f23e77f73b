//! The prebuilt checkpoint component, `pipeline:checkpoint@0.1.0`, as bytes.
//!
//! This crate ships one file, `checkpoint.wasm`: the WebAssembly component that holds every
//! checkpoint rule (validation, ordering, fencing, retention, encoding, resume points). It is
//! built from the `guest/` crate and `wit/` of the same repository by `make component`, and
//! the repository's `make test` fails when those sources changed and the file was not rebuilt.
//! Every host (the `checkpoint-host` Rust crate, the Python wheel, the npm package) runs
//! exactly these bytes.
//!
//! Most users want `checkpoint-host`, which embeds the component with wasmtime. Use this crate
//! directly to embed it in another runtime:
//!
//! ```
//! let bytes = checkpoint_component::WASM;
//! assert_eq!(&bytes[..4], b"\0asm");
//! assert_eq!(checkpoint_component::SHA256.len(), 64);
//! ```

#![deny(missing_docs)]

/// The component's bytes (a WebAssembly component, not a core module).
pub static WASM: &[u8] = include_bytes!("../checkpoint.wasm");

/// SHA-256 of [`WASM`], lowercase hex, computed at build time.
pub const SHA256: &str = env!("CHECKPOINT_COMPONENT_SHA256");

/// The WIT package the component implements (its exports and the imports a host supplies).
pub const WIT_PACKAGE: &str = "pipeline:checkpoint@0.1.0";
