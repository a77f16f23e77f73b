//! The floor component: it makes exactly the import calls of a steady-state
//! `checkpointer.write` and of a `checkpointer.get`, with the same payloads, and nothing else.
//! `make bench` times each host's real `write` and `get` against it, so that what a host adds
//! on top of its runtime's own cost shows (BENCHMARKS.md, "Host floors"). See `wit/floor.wit`
//! for what each function does.

#![allow(unsafe_code, missing_docs)]

mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit", "wit"],
        world: "pipeline:floor/floor-component",
        // The checkpoint package is parsed for its interfaces, which this crate does not own.
        generate_all,
    });
}

use std::sync::atomic::{AtomicU64, Ordering};

use bindings::exports::pipeline::floor::floor::Guest;
use bindings::pipeline::checkpoint::consumer;
use bindings::pipeline::checkpoint::storage::{self, CommitOutcome, Lookup, Write, WriteOp};

/// Calls of `write-floor` in this instance: numbers the retained copies.
static WRITES: AtomicU64 = AtomicU64::new(0);

struct Component;

impl Guest for Component {
    fn noop() {}

    fn write_floor(
        key: String,
        payload: Vec<u8>,
        max_retained: u32,
        ids: Vec<String>,
    ) -> Result<u64, String> {
        let n = WRITES.fetch_add(1, Ordering::Relaxed) + 1;
        let expected = match storage::get(&key).map_err(|e| format!("get: {e:?}"))? {
            Lookup::Found(entry) => entry.version,
            Lookup::Missing => 0,
        };
        // The real write's batch, in its order: the retained copy, the pruning, the latest.
        let mut writes = Vec::with_capacity(3);
        if max_retained > 1 {
            writes.push(Write {
                key: format!("{key}/h/{n:020}"),
                expected_version: None,
                op: WriteOp::Put(payload.clone()),
            });
            if n > u64::from(max_retained) {
                writes.push(Write {
                    key: format!("{key}/h/{:020}", n - u64::from(max_retained)),
                    expected_version: None,
                    op: WriteOp::Delete,
                });
            }
        }
        writes.push(Write {
            key,
            expected_version: Some(expected),
            op: WriteOp::Put(payload),
        });
        let version = match storage::commit(&writes).map_err(|e| format!("commit: {e:?}"))? {
            CommitOutcome::Committed(versions) => versions.last().copied().unwrap_or_default(),
            CommitOutcome::Conflict(index) => return Err(format!("conflict at write {index}")),
        };
        consumer::ack(&ids).map_err(|e| format!("ack: {e}"))?;
        Ok(version)
    }

    fn get_floor(key: String) -> Result<Vec<u8>, String> {
        match storage::get(&key).map_err(|e| format!("get: {e:?}"))? {
            Lookup::Found(entry) => Ok(entry.value),
            Lookup::Missing => Err(format!("{key} holds nothing")),
        }
    }
}

bindings::export!(Component with_types_in bindings);
