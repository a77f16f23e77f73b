//! The memory bound `checkpointer.open` enforces is real: repeated writes of a large operator
//! state over a stored one (with a retained copy), each acking the largest batch a write takes
//! (4,096 ids, 1 MiB of id bytes), keep the instance's linear memory within
//! `WRITE_MEMORY_FACTOR` x (the checkpoint + the ids' bytes) + `CALL_MEMORY_BASE`: the figure
//! the component uses to refuse options a sandbox cannot serve.

use checkpoint_guest::codec::{MAX_ACK_ID_BYTES, MAX_ACK_IDS};
use checkpoint_guest::{CALL_MEMORY_BASE, WRITE_MEMORY_FACTOR};
use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::storage::MemoryStorage;
use checkpoint_host::{
    Checkpoint, Checkpointer, OperatorState, Options, Runtime, RuntimeConfig, Watermark,
};
use std::io::Write as _;

#[test]
fn repeated_large_writes_stay_within_the_bound_open_checks() {
    let runtime = Runtime::new(RuntimeConfig {
        max_memory_bytes: 512 << 20,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    for mib in [1usize, 4, 16] {
        let options = Options {
            namespace: "memory".into(),
            max_retained: 3,
            max_checkpoint_bytes: ((mib << 20) + 4096) as u32,
        };
        let mut checkpointer = Checkpointer::open_in(
            &runtime,
            Box::new(MemoryStorage::new()),
            Box::new(NullConsumer),
            &options,
        )
        .expect("open");
        for sequence in 1..=4u64 {
            let state: Vec<u8> = (0..mib << 20)
                .map(|i| (i as u64 * 31 + sequence) as u8)
                .collect();
            let checkpoint = Checkpoint {
                run_id: "run".into(),
                stage: "stage".into(),
                sequence,
                epoch: 1,
                watermark: Watermark {
                    offset: sequence,
                    event_time_ms: 0,
                },
                sources: vec![],
                sinks: vec![],
                operator_states: vec![OperatorState {
                    name: "window".into(),
                    state,
                }],
                idempotency_key: String::new(),
                at_ms: 0,
            };
            // The largest batch: 4,096 ids of 256 bytes less their share of the 1 MiB bound.
            let id_len = MAX_ACK_ID_BYTES / MAX_ACK_IDS;
            let batch: Vec<String> = (0..MAX_ACK_IDS)
                .map(|i| format!("{sequence}-{i:0>width$}", width = id_len - 8))
                .collect();
            assert!(batch.iter().map(String::len).sum::<usize>() <= MAX_ACK_ID_BYTES);
            checkpointer.write(&checkpoint, &batch).expect("write");
        }
        let used = checkpointer.linear_memory_bytes() as u64;
        let bound = (u64::from(options.max_checkpoint_bytes) + MAX_ACK_ID_BYTES as u64)
            * WRITE_MEMORY_FACTOR
            + CALL_MEMORY_BASE;
        let _ = writeln!(
            std::io::stderr().lock(),
            "write memory: {mib} MiB states, 4 writes of 4,096 ids: linear memory {used} bytes = \
             {:.2} x the state (bound {bound} = {WRITE_MEMORY_FACTOR} x (limit + 1 MiB of ids) \
             + {CALL_MEMORY_BASE})",
            used as f64 / (mib << 20) as f64
        );
        assert!(
            used <= bound,
            "{used} bytes of linear memory, over the bound {bound}"
        );
    }
}
