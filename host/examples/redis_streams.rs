//! Adds up the amounts of a Redis stream, exactly once across crashes and redeliveries.

use std::error::Error;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use checkpoint_host::sinks::{Sink, SqliteSink};
use checkpoint_host::sources::redis_streams::{RedisStreams, RedisStreamsOptions};
use checkpoint_host::storage::open_storage;
use checkpoint_host::{
    Admission, Checkpointer, Driver, DriverOptions, OperatorState, Options, OverflowPolicy, Policy,
    StageState,
};

fn main() -> Result<(), Box<dyn Error>> {
    let redis_url = std::env::args()
        .nth(1)
        .unwrap_or("redis://127.0.0.1:6379/".into());
    let dir = std::env::args().nth(2).unwrap_or("ckpt-data/orders".into());
    std::fs::create_dir_all(&dir)?;
    println!("total {}", run(&redis_url, Path::new(&dir))?);
    Ok(())
}

/// Adds up the `amount` of every entry of the stream `orders`, writes the running total after
/// each entry to the table `totals`, and returns the total once nothing new arrives.
pub fn run(redis_url: &str, dir: &Path) -> Result<i64, Box<dyn Error>> {
    let options = RedisStreamsOptions::new("totals", "worker-1", ["orders"]);
    let mut source = RedisStreams::open(redis_url, options)?;
    let storage = open_storage(&format!("sqlite:{}", dir.join("checkpoints.db").display()))?;
    let options = Options {
        namespace: "orders".into(),
        max_retained: 3,
        max_checkpoint_bytes: 1 << 20,
    };
    // The source's consumer acks (XACK) what a durable checkpoint covers, and nothing else.
    let checkpointer = Checkpointer::open(storage, Box::new(source.consumer()), &options)?;
    let mut driver = checkpointer.open_driver(&DriverOptions {
        run_id: "orders".into(),
        stage: "totals".into(),
        epoch: 1,
        policy: Policy::PerBatch(50),
        changelog_capacity: 0,
        overflow: OverflowPolicy::DropNew,
        max_in_flight: 1000,
    })?;

    // State and output come back from the checkpoint the driver resumed from.
    let resumed = driver.resumed_from()?.checkpoint;
    let mut total = match resumed.as_ref().and_then(|c| c.operator_state("total")) {
        Some(bytes) => i64::from_le_bytes(bytes.try_into()?),
        None => 0,
    };
    let mut sink = SqliteSink::open(dir.join("totals.db"), "totals", resumed.as_ref())?;

    loop {
        let entries = source.read()?; // entries taken before a crash first, then new ones
        if entries.is_empty() {
            checkpoint(&mut driver, &mut sink, total)?;
            return Ok(total);
        }
        for entry in &entries {
            match driver.begin(&entry.message)? {
                Admission::Admitted(ticket) => {
                    let amount = std::str::from_utf8(entry.field("amount").unwrap_or(b"0"))?;
                    total += amount.parse::<i64>()?;
                    sink.append(&entry.message.id, total.to_string().as_bytes());
                    if driver.complete(ticket)?.due {
                        checkpoint(&mut driver, &mut sink, total)?;
                    }
                }
                // A redelivery that a durable checkpoint covers: the driver has acked it.
                Admission::Covered(_) => {}
                Admission::Backpressure(_) => unreachable!("checkpoints fall due below the cap"),
            }
        }
    }
}

/// The output first (durable), then the checkpoint that records it with the state, then the
/// acks of the entries it covers.
fn checkpoint(
    driver: &mut Driver,
    sink: &mut SqliteSink,
    total: i64,
) -> Result<(), Box<dyn Error>> {
    let state = StageState {
        sinks: vec![sink.commit()?],
        operator_states: vec![OperatorState {
            name: "total".into(),
            state: total.to_le_bytes().to_vec(),
        }],
    };
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    driver.flush(Some(&state), now_ms)?;
    Ok(())
}
