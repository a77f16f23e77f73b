//! Rust bindings of the WIT world `pipeline:checkpoint/checkpoint-component`.
//!
//! Every import is trappable: host functions return `Result`, and
//! [`crate::error::HostStorageError`] is the one place that decides what the guest sees
//! (a stable `storage-error`) and what traps (host bugs only).

wasmtime::component::bindgen!({
    world: "checkpoint-component",
    path: "../wit",
    imports: { default: trappable },
    trappable_error_type: {
        "pipeline:checkpoint/storage.storage-error" => crate::error::HostStorageError,
    },
    // Names must match the generator's own derives exactly so they are deduplicated.
    additional_derives: [Clone, PartialEq, serde::Serialize, serde::Deserialize],
});

pub use exports::pipeline::checkpoint::checkpointer as checkpointer_api;
pub use pipeline::checkpoint::{consumer, storage, types};
