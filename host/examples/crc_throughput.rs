//! Throughput of the codec inside a component, for comparing builds of the guest's CRC32C.
//!
//! ```sh
//! cargo run --release -p checkpoint-host --example crc_throughput [-- a.wasm b.wasm ...]
//! # a build to compare, e.g. without simd128:
//! CKPT_GUEST_SIMD=0 bash scripts/build-guest.sh --out target/tmp/no-simd.wasm
//! ```
//!
//! For each component (default: the embedded one) it prints GB/s of `codec.encode` and
//! `codec.decode` on 1 KiB and 1 MiB operator-state checkpoints, and on 1 MiB isolates the CRC: `decode` of the
//! frame with a damaged CRC copies the bytes in, computes the CRC and stops; with a damaged
//! magic it copies the bytes in and stops at once. The difference of the two is the CRC alone.

use std::time::Instant;

use anyhow::{Context, ensure};
use checkpoint_host::{
    Checkpoint, CheckpointError, Codec, CorruptionKind, Error, OperatorState, Runtime,
    RuntimeConfig, Watermark,
};

const STATE_LENS: [usize; 2] = [1024, 1024 * 1024];
/// Bytes each timed run goes through, whatever the checkpoint size.
const BYTES_PER_RUN: usize = 256 << 20;
/// Smallest frame for which the CRC-alone figure is printed.
const CRC_ALONE_MIN_LEN: usize = 64 * 1024;

fn main() -> anyhow::Result<()> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        return report("embedded component", &mut Codec::new()?);
    }
    for path in paths {
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {path}"))?;
        let runtime = Runtime::with_component(RuntimeConfig::default(), &bytes)?;
        report(&path, &mut Codec::new_in(&runtime)?)?;
    }
    Ok(())
}

fn checkpoint_with_state(len: usize) -> Checkpoint {
    // Incompressible-looking bytes; the CRC does not care, but a reader of the figures might.
    let state = (0..len as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    Checkpoint {
        run_id: "run-1".into(),
        stage: "parse".into(),
        sequence: 1,
        epoch: 1,
        watermark: Watermark {
            offset: 1,
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
    }
}

fn report(name: &str, codec: &mut Codec) -> anyhow::Result<()> {
    println!("{name}:");
    for len in STATE_LENS {
        report_size(name, codec, &checkpoint_with_state(len))?;
    }
    Ok(())
}

fn report_size(name: &str, codec: &mut Codec, checkpoint: &Checkpoint) -> anyhow::Result<()> {
    let encoded = codec.encode(checkpoint)?;
    ensure!(codec.decode(&encoded)? == *checkpoint, "{name}: round trip");
    let mut bad_crc = encoded.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let mut bad_magic = encoded.clone();
    bad_magic[0] ^= 1;
    for (bytes, kind) in [
        (&bad_crc, CorruptionKind::CrcMismatch),
        (&bad_magic, CorruptionKind::BadMagic),
    ] {
        match codec.decode(bytes) {
            Err(Error::Checkpoint(CheckpointError::Corrupt(c))) if c.kind == kind => {}
            other => anyhow::bail!("{name}: expected {kind:?}, got {other:?}"),
        }
    }
    let refused = |codec: &mut Codec, bytes: &[u8]| match codec.decode(bytes) {
        Err(Error::Checkpoint(CheckpointError::Corrupt(_))) => Ok(()),
        other => other.map(drop),
    };

    let len = encoded.len();
    let rounds = (BYTES_PER_RUN / len).max(1);
    let encode = seconds_per_call(rounds, || codec.encode(checkpoint).map(drop))?;
    let decode = seconds_per_call(rounds, || codec.decode(&encoded).map(drop))?;
    let copy_and_crc = seconds_per_call(rounds, || refused(codec, &bad_crc))?;
    let copy_only = seconds_per_call(rounds, || refused(codec, &bad_magic))?;
    let mut rows = vec![
        ("encode", encode),
        ("decode", decode),
        ("decode, bad magic (copy in only)", copy_only),
        ("decode, bad CRC (copy in + CRC)", copy_and_crc),
    ];
    // On small frames the call itself dominates and the difference is noise.
    if len >= CRC_ALONE_MIN_LEN {
        rows.push(("CRC alone (difference)", copy_and_crc - copy_only));
    }
    println!("  {len} bytes:");
    for (what, seconds) in rows {
        println!("    {what:34} {:6.2} GB/s", len as f64 / seconds / 1e9);
    }
    Ok(())
}

/// Best of five runs of `rounds` calls: the machine is shared, the minimum is the stable figure.
fn seconds_per_call(
    rounds: usize,
    mut call: impl FnMut() -> Result<(), Error>,
) -> anyhow::Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..rounds {
            call()?;
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best / rounds as f64)
}
