//! Checkpoint logic for stream pipelines: validation, ordering, fencing, retention, the codec
//! and resume points, written once.
//!
//! The same code runs in two places. Compiled to `wasm32-wasip2` it is the checkpoint component
//! that every host embeds (the glue is in `component`, built only for wasm32). Compiled natively
//! it is a plain library: its unit tests run here, and benchmarks use it as the native baseline.
//!
//! The records are generated from the WIT package in `wit/`, so the contract has one source of
//! truth; this crate re-exports them from [`model`]. Storage and acks come in through the
//! [`Storage`] and [`Consumer`] traits, which mirror the component's two imports.
//!
//! ```
//! use checkpoint_guest::{Checkpointer, MemoryStorage, RecordingConsumer, model::*};
//!
//! let options = Options { namespace: "demo".into(), max_retained: 2, max_checkpoint_bytes: 4096 };
//! let mut checkpointer =
//!     Checkpointer::open(options, MemoryStorage::default(), RecordingConsumer::default())?;
//! let checkpoint = Checkpoint {
//!     run_id: "run-1".into(), stage: "parse".into(), sequence: 1, epoch: 1,
//!     watermark: Watermark { offset: 10, event_time_ms: 1_000 },
//!     sources: vec![], sinks: vec![], operator_states: vec![],
//!     idempotency_key: String::new(), at_ms: 0,
//! };
//! let receipt = checkpointer.write(&checkpoint, &["m-9".to_string()])?;
//! assert_eq!(receipt.acks, AckOutcome::Acked(1));
//! let resume = checkpointer.resume_point("run-1", "parse")?;
//! assert_eq!(resume.point.watermark.offset, 10);
//! # Ok::<(), checkpoint_guest::model::Error>(())
//! ```

mod bindings;
mod changelog;
mod checkpointer;
pub mod codec;
pub mod crc;
// The export macro expands to the ABI entry points, which are unsafe by nature.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod component;
mod contract;
mod driver;
pub mod errors;
pub mod keys;
pub mod labels;
mod memory;
pub mod model;
mod ports;
pub mod validate;

pub use checkpointer::{CALL_MEMORY_BASE, Checkpointer, WRITE_MEMORY_FACTOR};
pub use driver::Driver;
pub use memory::{MemoryStorage, RecordingConsumer};
pub use ports::{Consumer, Storage};
