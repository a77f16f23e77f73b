//! A checkpoint that the options and the sandbox allow is writable and readable: 1, 4 and
//! 16 MiB of operator state under a 20 MiB size limit, in a 128 MiB instance (a write needs up
//! to 6 x 20 MiB + 2 MiB = 122 MiB: `checkpointer.open` refuses the limit in the default 64 MiB).

use std::time::Instant;

use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::storage::MemoryStorage;
use checkpoint_host::{
    Checkpoint, Checkpointer, OperatorState, Options, Runtime, RuntimeConfig, Watermark,
};

#[test]
fn operator_states_of_1_4_and_16_mib_round_trip() {
    let options = Options {
        namespace: "large".into(),
        max_retained: 1,
        max_checkpoint_bytes: 20 << 20,
    };
    let runtime = Runtime::new(RuntimeConfig {
        max_memory_bytes: 128 << 20,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    for (sequence, mib) in [(1u64, 1usize), (2, 4), (3, 16)] {
        let mut checkpointer = Checkpointer::open_in(
            &runtime,
            Box::new(MemoryStorage::new()),
            Box::new(NullConsumer),
            &options,
        )
        .expect("open");
        let state: Vec<u8> = (0..mib << 20).map(|i| (i % 251) as u8).collect();
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
        let started = Instant::now();
        checkpointer.write(&checkpoint, &[]).expect("write");
        let written = started.elapsed();
        let read = checkpointer.get("run", "stage").expect("get");
        println!(
            "{mib} MiB of operator state: write {written:?}, write + read {:?}",
            started.elapsed()
        );
        assert_eq!(read, checkpoint, "{mib} MiB read back byte for byte");
    }
}
