//! Rust bindings generated from `wit/`. The records double as the library's model types, so
//! the native library and the component share one definition of every type.
// Generated glue needs unsafe (raw ABI calls); no hand-written unsafe lives here.
#![allow(missing_docs, unsafe_code, clippy::all)]

wit_bindgen::generate!({
    path: "../wit",
    world: "checkpoint-component",
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    pub_export_macro: true,
});
