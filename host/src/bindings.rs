//! Rust bindings of the WIT world `pipeline:checkpoint/checkpoint-component`.
//!
//! Every import is trappable (host functions return `wasmtime::Result`), but the host never
//! traps on a backend's answer: failures reach the guest as their `storage-error` value, and
//! the guest itself checks every answer against the storage contract (`error.broken-store`),
//! the same for every host.

wasmtime::component::bindgen!({
    world: "checkpoint-component",
    path: "wit",
    imports: { default: trappable },
    // Names must match the generator's own derives exactly so they are deduplicated.
    additional_derives: [Clone, PartialEq, serde::Serialize, serde::Deserialize],
});

pub use exports::pipeline::checkpoint::checkpointer as checkpointer_api;
pub use pipeline::checkpoint::{consumer, storage, types};
