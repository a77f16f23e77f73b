//! `make bench`: every figure of issue 6 (P1-P6 and memory) and of issue 15 (P7 group commit,
//! P6 at 1,000 concurrent stages, a 16 MiB operator state), measured side by side in one run
//! and printed as one table. BENCHMARKS.md explains what each row measures and what bounds it.
//!
//! An own harness rather than criterion: each figure needs a partner measured in the same run
//! (component vs native, SQLite vs raw fdatasync), interleaved so that both see the same disk
//! and CPU conditions. Every timed loop is preceded by a warm-up; latencies are per-call
//! samples (or per-call means of small groups where one call is too short to time alone),
//! reported as p50 and p99.
//!
//! `BENCH_SCALE` (default 1.0) multiplies every sample count; `BENCH_DIR` picks the directory
//! of the database files (default: a temporary directory under the system's);
//! `CKPT_TEST_POSTGRES_URL` names the PostgreSQL server of P7's PostgreSQL rows
//! (scripts/bench.sh starts one).

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use checkpoint_guest::model as native;
use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::storage::{
    MemoryStorage, PostgresStorage, SqliteOptions, SqliteStorage, Storage,
};
use checkpoint_host::{
    Checkpoint, Checkpointer, Codec, DriverOptions, OperatorState, Options, OverflowPolicy, Policy,
    ProcessedMessage, Runtime, RuntimeConfig, SinkPosition, SourcePosition, Watermark, Write,
    WriteOp,
};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0);
    let n = |count: usize| ((count as f64 * scale).ceil() as usize).max(5);
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let cache = dir.path().join("artifact-cache");
    let config = RuntimeConfig {
        cache_dir: Some(cache.clone()),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config.clone())?;
    let mut table = Table::default();

    // BENCH_ONLY=P3,P4 runs only those sections (for profiling one figure).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |id: &str| only.is_empty() || only.split(',').any(|o| o.eq_ignore_ascii_case(id));
    let mut per_call = None;
    if run("P1") {
        eprintln!("[bench] P1 durable write vs raw append + fdatasync ...");
        p1_durable_write(&runtime, dir.path(), n(1000), &mut table)?;
    }
    if run("P2") {
        eprintln!("[bench] P2 in-memory write/get, component vs native ...");
        per_call = Some(p2_memory_calls(&runtime, n(300), &mut table)?);
    }
    if run("floor") {
        eprintln!("[bench] floor: write/get vs the floor component's import calls alone ...");
        floor_rows(&runtime, n(300), &mut table)?;
    }
    if run("P3") {
        eprintln!("[bench] P3 cold start and warm instantiate ...");
        p3_start(&runtime, &config, n(30), n(3000), &mut table)?;
    }
    if run("P4") {
        eprintln!("[bench] P4 codec throughput ...");
        p4_codec(&runtime, n(2000), n(60), &mut table)?;
    }
    if run("P5") {
        eprintln!("[bench] P5 driver throughput ...");
        p5_driver(&runtime, dir.path(), scale, &mut table)?;
    }
    if run("P6") {
        eprintln!("[bench] P6 write cost vs store size and stage count ...");
        p6_scaling(&runtime, dir.path(), n(300), &mut table)?;
    }
    if run("P7") {
        eprintln!("[bench] P7 group commit: 64 stages on one file vs one stage alone ...");
        p7_group_commit(&runtime, dir.path(), scale, &mut table)?;
    }
    if run("tls") {
        eprintln!("[bench] tls: first write and steady-state write, TLS vs plain ...");
        tls_rows(&runtime, n(40), n(300), &mut table)?;
    }
    if run("big") {
        eprintln!("[bench] 16 MiB operator state on SQLite vs raw write + fdatasync ...");
        big_state(&config, dir.path(), n(12), &mut table)?;
    }
    drop(runtime);
    if run("P6") {
        eprintln!("[bench] P6 1,000 concurrent stages on one SQLite file ...");
        p6_thousand_stages(&config, dir.path(), scale, &mut table)?;
    }
    if run("mem") {
        eprintln!("[bench] memory: linear memory, RSS with 1,000 live instances ...");
        memory(&config, &mut table)?;
    }

    table.print(&machine());
    // Read by scripts/bench.sh for its per-host table.
    if let Some(per_call) = per_call {
        println!(
            "per-call rust write_us={:.3} get_us={:.3} calls={}",
            per_call.write_us, per_call.get_us, per_call.calls
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Statistics and the table

/// Samples of one figure, in nanoseconds.
struct Samples(Vec<f64>);

impl Samples {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank: p99 of 1000 samples is the 990th smallest.
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
    fn p50(&self) -> f64 {
        self.percentile(50.0)
    }
    fn p99(&self) -> f64 {
        self.percentile(99.0)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn us(ns: f64) -> String {
    if ns >= 100_000.0 {
        format!("{:.0} us", ns / 1e3)
    } else if ns >= 10_000.0 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{:.2} us", ns / 1e3)
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    fn row(&mut self, id: &str, what: &str, figure: String, reference: String, verdict: String) {
        self.rows
            .push([id.into(), what.into(), figure, reference, verdict]);
    }

    fn print(&self, machine: &str) {
        let header = [
            "id",
            "measurement",
            "figure",
            "side by side",
            "ratio / target",
        ];
        let mut widths = header.map(str::len);
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                let sep = if i == 0 { "" } else { "  " };
                out.push_str(&format!("{sep}{cell:<w$}"));
            }
            println!("{}", out.trim_end());
        };
        println!("\n{machine}");
        line(header);
        line(widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str));
        for row in &self.rows {
            line(row.each_ref().map(String::as_str));
        }
    }
}

fn verdict(ratio: f64, target: f64, at_most: bool) -> String {
    let met = if at_most {
        ratio <= target
    } else {
        ratio >= target
    };
    let cmp = if at_most { "<=" } else { ">=" };
    format!(
        "{ratio:.2}x ({cmp} {target}x: {})",
        if met { "met" } else { "NOT met" }
    )
}

fn limit(figure_ns: f64, target_ns: f64) -> String {
    format!(
        "target <= {}: {}",
        us(target_ns),
        if figure_ns <= target_ns {
            "met"
        } else {
            "NOT met"
        }
    )
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    format!("machine: {cpu}, {cores} cores, load average {load} at the end of the run")
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and messages (the same content for the host and the native guest types)

/// A typical small checkpoint: two sources, one sink, 64 bytes of operator state.
fn small_checkpoint(stage: &str, sequence: u64) -> Checkpoint {
    Checkpoint {
        run_id: "bench-run".into(),
        stage: stage.into(),
        sequence,
        epoch: 1,
        watermark: Watermark {
            offset: sequence * 100,
            event_time_ms: 1_700_000_000_000 + sequence as i64,
        },
        sources: vec![
            SourcePosition {
                name: "orders".into(),
                sequence,
                watermark: Watermark {
                    offset: sequence * 60,
                    event_time_ms: 1_700_000_000_000,
                },
            },
            SourcePosition {
                name: "payments".into(),
                sequence,
                watermark: Watermark {
                    offset: sequence * 40,
                    event_time_ms: 1_700_000_000_000,
                },
            },
        ],
        sinks: vec![SinkPosition {
            name: "enriched".into(),
            position: sequence * 100,
        }],
        operator_states: vec![OperatorState {
            name: "window".into(),
            state: vec![7; 64],
        }],
        idempotency_key: format!("1-{sequence}"),
        at_ms: 1_700_000_000_500 + sequence,
    }
}

/// The same checkpoint as the native guest's type; the two types come from the same WIT.
fn to_native(c: &Checkpoint) -> native::Checkpoint {
    native::Checkpoint {
        run_id: c.run_id.clone(),
        stage: c.stage.clone(),
        sequence: c.sequence,
        epoch: c.epoch,
        watermark: native_watermark(c.watermark),
        sources: c
            .sources
            .iter()
            .map(|s| native::SourcePosition {
                name: s.name.clone(),
                sequence: s.sequence,
                watermark: native_watermark(s.watermark),
            })
            .collect(),
        sinks: c
            .sinks
            .iter()
            .map(|s| native::SinkPosition {
                name: s.name.clone(),
                position: s.position,
            })
            .collect(),
        operator_states: c
            .operator_states
            .iter()
            .map(|s| native::OperatorState {
                name: s.name.clone(),
                state: s.state.clone(),
            })
            .collect(),
        idempotency_key: c.idempotency_key.clone(),
        at_ms: c.at_ms,
    }
}

fn native_watermark(w: Watermark) -> native::Watermark {
    native::Watermark {
        offset: w.offset,
        event_time_ms: w.event_time_ms,
    }
}

fn options(max_retained: u32) -> Options {
    Options {
        namespace: "bench".into(),
        max_retained,
        max_checkpoint_bytes: 4 << 20,
    }
}

fn native_options(max_retained: u32) -> native::Options {
    native::Options {
        namespace: "bench".into(),
        max_retained,
        max_checkpoint_bytes: 4 << 20,
    }
}

/// Acks nothing anywhere, like the host's `NullConsumer`: the native side of P2 and P5.
struct NativeNullConsumer;

impl checkpoint_guest::Consumer for NativeNullConsumer {
    fn ack(&mut self, _message_ids: &[String]) -> Result<(), String> {
        Ok(())
    }
}

type NativeCheckpointer =
    checkpoint_guest::Checkpointer<checkpoint_guest::MemoryStorage, NativeNullConsumer>;

fn open_sqlite(runtime: &Runtime, path: &Path, max_retained: u32) -> BenchResult<Checkpointer> {
    open_sqlite_with(runtime, path, max_retained, &SqliteOptions::default())
}

/// Each commit its own transaction and sync: the store as it was before group commit.
fn ungrouped() -> SqliteOptions {
    SqliteOptions {
        group_commit: false,
        ..SqliteOptions::default()
    }
}

fn open_sqlite_with(
    runtime: &Runtime,
    path: &Path,
    max_retained: u32,
    store: &SqliteOptions,
) -> BenchResult<Checkpointer> {
    Ok(Checkpointer::open_in(
        runtime,
        Box::new(SqliteStorage::open_with(path, store)?),
        Box::new(NullConsumer),
        &options(max_retained),
    )?)
}

fn open_memory(runtime: &Runtime, max_retained: u32) -> BenchResult<Checkpointer> {
    Ok(Checkpointer::open_in(
        runtime,
        Box::new(MemoryStorage::new()),
        Box::new(NullConsumer),
        &options(max_retained),
    )?)
}

fn batch_of_one(sequence: u64) -> Vec<String> {
    vec![format!("m-{sequence}")]
}

// ---------------------------------------------------------------------------------------------
// P1: a durable write through the component on SQLite vs a raw append + fdatasync

fn p1_durable_write(
    runtime: &Runtime,
    dir: &Path,
    samples: usize,
    table: &mut Table,
) -> BenchResult<()> {
    let mut checkpointer = open_sqlite(runtime, &dir.join("p1.db"), 3)?;
    // The same writes on a store that does not group (each commit alone, as before group
    // commit): a lone writer should not see the difference.
    let mut alone = open_sqlite_with(runtime, &dir.join("p1-alone.db"), 3, &ungrouped())?;
    let mut raw = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("p1-raw.log"))?;
    // What SQLite's WAL physically does per commit here: two page frames (24 + 4096 bytes
    // each: the entries leaf and the version counter) and an fsync, which the bundled SQLite
    // uses where fdatasync is not configured.
    let mut wal_like = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("p1-wal-like.log"))?;
    let frames = vec![0x5au8; 2 * (24 + 4096)];
    // SQLite's WAL file grows until its first checkpoint (about 500 commits here) and is then
    // rewritten from its start. On this disk a sync after appending new blocks costs far more
    // than one after overwriting blocks, so the two phases are timed apart: a new database
    // (writes 11-500) and the steady state a long-running pipeline lives in (after 600).
    let growth = 11..=500u64;
    let steady_from = 601u64;
    let mut component = Vec::with_capacity(samples);
    let mut baseline = Vec::with_capacity(samples);
    let mut component_alone = Vec::with_capacity(samples);
    let mut growth_component = Vec::new();
    let mut growth_baseline = Vec::new();
    let mut growth_wal_like = Vec::new();
    let mut encoded_len = 0;
    for sequence in 1..steady_from + samples as u64 {
        let checkpoint = small_checkpoint("p1", sequence);
        let bytes = checkpoint_guest::codec::encode(&to_native(&checkpoint))?;
        encoded_len = bytes.len();
        let batch = batch_of_one(sequence);
        // Interleaved, so both see the same state of the disk.
        let start = Instant::now();
        checkpointer.write(&checkpoint, &batch)?;
        let write = nanos(start.elapsed());
        let start = Instant::now();
        append_durably(&mut raw, &bytes)?;
        let append = nanos(start.elapsed());
        let start = Instant::now();
        alone.write(&checkpoint, &batch)?;
        let write_alone = nanos(start.elapsed());
        if growth.contains(&sequence) {
            let start = Instant::now();
            wal_like.write_all(&frames)?;
            wal_like.sync_all()?;
            growth_wal_like.push(nanos(start.elapsed()));
            growth_component.push(write);
            growth_baseline.push(append);
        } else if sequence >= steady_from {
            component.push(write);
            baseline.push(append);
            component_alone.push(write_alone);
        }
    }
    let (component, baseline) = (Samples(component), Samples(baseline));
    let component_alone = Samples(component_alone);
    let (growth_component, growth_baseline, growth_wal_like) = (
        Samples(growth_component),
        Samples(growth_baseline),
        Samples(growth_wal_like),
    );
    table.row(
        "P1",
        &format!(
            "durable write, SQLite (WAL, synchronous=FULL), {encoded_len} B, steady state, \
             p50 [{} samples]",
            component.len()
        ),
        us(component.p50()),
        format!("raw append+fdatasync {}", us(baseline.p50())),
        verdict(component.p50() / baseline.p50(), 1.15, true),
    );
    table.row(
        "P1",
        "durable write, SQLite, steady state, p99",
        us(component.p99()),
        format!("raw append+fdatasync {}", us(baseline.p99())),
        verdict(component.p99() / baseline.p99(), 1.15, true),
    );
    table.row(
        "P1",
        "  the same write without group commit (before it), steady state, p50 (p99)",
        format!(
            "{} ({})",
            us(component_alone.p50()),
            us(component_alone.p99())
        ),
        format!(
            "grouped store {} ({})",
            us(component.p50()),
            us(component.p99())
        ),
        format!(
            "grouped/alone {:.2}x (p99 {:.2}x)",
            component.p50() / component_alone.p50(),
            component.p99() / component_alone.p99()
        ),
    );
    table.row(
        "P1",
        &format!(
            "  new database (WAL file still growing), p50 [{} samples]",
            growth_component.len()
        ),
        us(growth_component.p50()),
        format!("raw append+fdatasync {}", us(growth_baseline.p50())),
        format!(
            "{:.2}x (no target)",
            growth_component.p50() / growth_baseline.p50()
        ),
    );
    table.row(
        "P1",
        "  its bound: append of 2 WAL frames (8240 B) + fsync, p50 (p99)",
        format!(
            "{} ({})",
            us(growth_wal_like.p50()),
            us(growth_wal_like.p99())
        ),
        format!(
            "SQLite write is {:.2}x this",
            growth_component.p50() / growth_wal_like.p50()
        ),
        "(what SQLite must do while its WAL grows)".into(),
    );
    Ok(())
}

fn append_durably(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_data()
}

// ---------------------------------------------------------------------------------------------
// P2: in-memory write and get, through the component vs the same logic natively

struct PerCall {
    write_us: f64,
    get_us: f64,
    calls: usize,
}

/// Calls per sample: one in-memory call is too short to time alone without the clock's own
/// cost showing, so each sample is the mean of a group.
const GROUP: usize = 50;

fn p2_memory_calls(runtime: &Runtime, groups: usize, table: &mut Table) -> BenchResult<PerCall> {
    let mut component = open_memory(runtime, 3)?;
    let mut native = NativeCheckpointer::open(
        native_options(3),
        checkpoint_guest::MemoryStorage::default(),
        NativeNullConsumer,
    )?;
    // Inputs are built before timing; each call gets its own (sequence must grow).
    let total = (groups + 10) * GROUP;
    let checkpoints: Vec<Checkpoint> = (1..=total as u64)
        .map(|s| small_checkpoint("p2", s))
        .collect();
    let native_checkpoints: Vec<native::Checkpoint> = checkpoints.iter().map(to_native).collect();
    let batches: Vec<Vec<String>> = (1..=total as u64).map(batch_of_one).collect();

    let mut write_c = Vec::new();
    let mut write_n = Vec::new();
    for (group, range) in (0..total)
        .collect::<Vec<_>>()
        .chunks(GROUP)
        .map(|c| (c[0] / GROUP, c))
    {
        let start = Instant::now();
        for &i in range {
            black_box(component.write(&checkpoints[i], &batches[i])?);
        }
        let c = nanos(start.elapsed()) / GROUP as f64;
        let start = Instant::now();
        for &i in range {
            black_box(native.write(&native_checkpoints[i], &batches[i])?);
        }
        let n = nanos(start.elapsed()) / GROUP as f64;
        // The first 10 groups warm up.
        if group >= 10 {
            write_c.push(c);
            write_n.push(n);
        }
        // The native memory store logs every call for tests; keep that log from growing.
        native.storage_mut().calls.clear();
    }
    let mut get_c = Vec::new();
    let mut get_n = Vec::new();
    for group in 0..groups + 10 {
        let start = Instant::now();
        for _ in 0..GROUP {
            black_box(component.get("bench-run", "p2")?);
        }
        let c = nanos(start.elapsed()) / GROUP as f64;
        let start = Instant::now();
        for _ in 0..GROUP {
            black_box(native.get("bench-run", "p2")?);
        }
        let n = nanos(start.elapsed()) / GROUP as f64;
        if group >= 10 {
            get_c.push(c);
            get_n.push(n);
        }
        native.storage_mut().calls.clear();
    }
    // The floor of a get: one export call that lowers the stored bytes and lifts the decoded
    // checkpoint, with no storage import and no keys; against the native decode.
    let mut codec = Codec::new_in(runtime)?;
    let stored = codec.encode(&checkpoints[total - 1])?;
    let mut decode_c = Vec::new();
    let mut decode_n = Vec::new();
    for group in 0..groups + 10 {
        let start = Instant::now();
        for _ in 0..GROUP {
            black_box(codec.decode(&stored)?);
        }
        let c = nanos(start.elapsed()) / GROUP as f64;
        let start = Instant::now();
        for _ in 0..GROUP {
            black_box(checkpoint_guest::codec::decode(&stored).map_err(|c| format!("{c:?}"))?);
        }
        let n = nanos(start.elapsed()) / GROUP as f64;
        if group >= 10 {
            decode_c.push(c);
            decode_n.push(n);
        }
    }
    let (decode_c, decode_n) = (Samples(decode_c), Samples(decode_n));
    let (write_c, write_n, get_c, get_n) = (
        Samples(write_c),
        Samples(write_n),
        Samples(get_c),
        Samples(get_n),
    );
    let calls = write_c.len() * GROUP;
    table.row(
        "P2",
        &format!(
            "in-memory write, component, p50 (p99) [{} groups of {GROUP}]",
            write_c.len()
        ),
        format!("{} ({})", us(write_c.p50()), us(write_c.p99())),
        format!("native {} ({})", us(write_n.p50()), us(write_n.p99())),
        verdict(write_c.p50() / write_n.p50(), 6.0, true),
    );
    table.row(
        "P2",
        &format!(
            "in-memory get, component, p50 (p99) [{} groups of {GROUP}]",
            get_c.len()
        ),
        format!("{} ({})", us(get_c.p50()), us(get_c.p99())),
        format!("native {} ({})", us(get_n.p50()), us(get_n.p99())),
        verdict(get_c.p50() / get_n.p50(), 4.0, true),
    );
    table.row(
        "P2",
        &format!(
            "  floor of a get: codec.decode of the same {} B, component [{} groups]",
            stored.len(),
            decode_c.len()
        ),
        format!("{} ({})", us(decode_c.p50()), us(decode_c.p99())),
        format!("native {} ({})", us(decode_n.p50()), us(decode_n.p99())),
        format!(
            "{:.2}x (no target: the boundary alone)",
            decode_c.p50() / decode_n.p50()
        ),
    );
    Ok(PerCall {
        write_us: write_c.p50() / 1e3,
        get_us: get_c.p50() / 1e3,
        calls,
    })
}

// ---------------------------------------------------------------------------------------------
// P3: cold start (cached artifact + instantiate) and warm instantiate

fn p3_start(
    runtime: &Runtime,
    config: &RuntimeConfig,
    cold_samples: usize,
    warm_samples: usize,
    table: &mut Table,
) -> BenchResult<()> {
    // The shared runtime already wrote the cache entry; every runtime here loads it. Each is
    // dropped outside the timed region (unmapping the pool is not part of starting), and
    // before the next is made (each reserves its pool's address space).
    let (mut cold, mut first, mut loads) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..cold_samples + 2 {
        let start = Instant::now();
        let fresh = Runtime::new(config.clone())?;
        let loaded = start.elapsed();
        let codec = Codec::new_in(&fresh)?;
        let total = start.elapsed();
        if fresh.artifact_source() != checkpoint_host::ArtifactSource::Cache {
            return Err("cold start did not load the cached artifact".into());
        }
        drop(codec);
        drop(fresh);
        if round >= 2 {
            cold.push(nanos(total));
            loads.push(nanos(loaded));
            first.push(nanos(total - loaded));
        }
    }
    let (cold, _loads) = (Samples(cold), Samples(loads));
    let first = Samples(first);
    table.row(
        "P3",
        &format!(
            "cold start: Runtime::new (cached artifact) + first instantiate, p50 (p99) [{}]",
            cold.len()
        ),
        format!("{} ({})", us(cold.p50()), us(cold.p99())),
        format!("of which instantiate {}", us(first.p50())),
        limit(cold.p50(), 300_000.0),
    );

    // Warm: a pooled slot and the pre-linked component; dropping returns the slot (timed
    // apart). A codec instance is the bare instantiation; a checkpointer adds its `open` call.
    let mut instantiate = Vec::with_capacity(warm_samples);
    let mut open = Vec::with_capacity(warm_samples);
    let mut drops = Vec::with_capacity(warm_samples);
    for round in 0..warm_samples + 200 {
        let start = Instant::now();
        let codec = Codec::new_in(runtime)?;
        let t_instantiate = nanos(start.elapsed());
        let start = Instant::now();
        drop(codec);
        let t_drop = nanos(start.elapsed());
        let start = Instant::now();
        let checkpointer = open_memory(runtime, 3)?;
        let t_open = nanos(start.elapsed());
        drop(checkpointer);
        if round >= 200 {
            instantiate.push(t_instantiate);
            drops.push(t_drop);
            open.push(t_open);
        }
    }
    let (instantiate, open, drops) = (Samples(instantiate), Samples(open), Samples(drops));
    table.row(
        "P3",
        &format!(
            "warm instantiate (InstancePre, pooling): Codec::new_in, p50 (p99) [{}]",
            instantiate.len()
        ),
        format!("{} ({})", us(instantiate.p50()), us(instantiate.p99())),
        format!("drop (slot back to pool) {}", us(drops.p50())),
        limit(instantiate.p50(), 10_000.0),
    );
    table.row(
        "P3",
        &format!(
            "  warm Checkpointer::open_in (instantiate + open call), p50 (p99) [{}]",
            open.len()
        ),
        format!("{} ({})", us(open.p50()), us(open.p99())),
        "-".into(),
        limit(open.p50(), 10_000.0),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// P4: encode + decode of operator-state checkpoints, native and in the component

fn p4_codec(
    runtime: &Runtime,
    small_samples: usize,
    large_samples: usize,
    table: &mut Table,
) -> BenchResult<()> {
    let mut codec = Codec::new_in(runtime)?;
    for (label, state_len, samples) in [
        ("1 KiB", 1024usize, small_samples),
        ("1 MiB", 1 << 20, large_samples),
    ] {
        let mut checkpoint = small_checkpoint("p4", 1);
        // Incompressible-looking state: a simple xorshift stream.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        checkpoint.operator_states = vec![OperatorState {
            name: "window".into(),
            state: (0..state_len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect(),
        }];
        let native_checkpoint = to_native(&checkpoint);
        let bytes = codec.encode(&checkpoint)?;
        if bytes != checkpoint_guest::codec::encode(&native_checkpoint)? {
            return Err("component and native encodings differ".into());
        }
        let len = bytes.len() as f64;

        let mut enc_c = Vec::new();
        let mut dec_c = Vec::new();
        let mut enc_n = Vec::new();
        let mut dec_n = Vec::new();
        for round in 0..samples + 5 {
            let start = Instant::now();
            let encoded = black_box(codec.encode(&checkpoint)?);
            let t_enc_c = nanos(start.elapsed());
            let start = Instant::now();
            black_box(codec.decode(&encoded)?);
            let t_dec_c = nanos(start.elapsed());
            let start = Instant::now();
            let encoded = black_box(checkpoint_guest::codec::encode(&native_checkpoint)?);
            let t_enc_n = nanos(start.elapsed());
            let start = Instant::now();
            black_box(checkpoint_guest::codec::decode(&encoded).map_err(|c| format!("{c:?}"))?);
            let t_dec_n = nanos(start.elapsed());
            if round >= 5 {
                enc_c.push(t_enc_c);
                dec_c.push(t_dec_c);
                enc_n.push(t_enc_n);
                dec_n.push(t_dec_n);
            }
        }
        let (enc_c, dec_c, enc_n, dec_n) = (
            Samples(enc_c),
            Samples(dec_c),
            Samples(enc_n),
            Samples(dec_n),
        );
        let gbps = |ns: f64| len / ns; // bytes per ns = GB/s
        let round_c = enc_c.p50() + dec_c.p50();
        let round_n = enc_n.p50() + dec_n.p50();
        let verdict = if state_len == 1 << 20 {
            let worst = gbps(enc_c.p50()).min(gbps(dec_c.p50()));
            format!(
                "slower direction {worst:.2} GB/s (>= 3 GB/s: {})",
                if worst >= 3.0 { "met" } else { "NOT met" }
            )
        } else {
            format!("component/native {:.2}x", round_c / round_n)
        };
        table.row(
            "P4",
            &format!(
                "codec {label} state ({} B), component: encode / decode / round trip [{}]",
                bytes.len(),
                enc_c.len()
            ),
            format!(
                "{:.2} / {:.2} / {:.2} GB/s",
                gbps(enc_c.p50()),
                gbps(dec_c.p50()),
                gbps(round_c)
            ),
            format!(
                "native {:.2} / {:.2} / {:.2} GB/s",
                gbps(enc_n.p50()),
                gbps(dec_n.p50()),
                gbps(round_n)
            ),
            verdict,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// P5: driver throughput through the batch API

/// Messages per `record-processed-batch` call.
const CALL_SIZE: usize = 1000;

fn messages(from_offset: u64, count: usize) -> Vec<ProcessedMessage> {
    (0..count as u64)
        .map(|i| ProcessedMessage {
            id: format!("m-{}", from_offset + i),
            next_offset: from_offset + i + 1,
            event_time_ms: 1_700_000_000_000 + (from_offset + i) as i64,
        })
        .collect()
}

fn to_native_messages(messages: &[ProcessedMessage]) -> Vec<native::ProcessedMessage> {
    messages
        .iter()
        .map(|m| native::ProcessedMessage {
            id: m.id.clone(),
            next_offset: m.next_offset,
            event_time_ms: m.event_time_ms,
        })
        .collect()
}

fn driver_options(stage: &str, per_batch: u32) -> DriverOptions {
    DriverOptions {
        run_id: "bench-run".into(),
        stage: stage.into(),
        epoch: 1,
        policy: Policy::PerBatch(per_batch),
        changelog_capacity: 1024,
        overflow: OverflowPolicy::OverwriteOldest,
        max_in_flight: 4096,
    }
}

/// Messages per second through a component driver: `calls` batches of `call_size` messages
/// after one untimed warm-up batch.
fn drive_component(
    checkpointer: Checkpointer,
    per_batch: u32,
    calls: usize,
    call_size: usize,
) -> BenchResult<f64> {
    let stage = format!("p5-{per_batch}");
    let mut driver = checkpointer.open_driver(&driver_options(&stage, per_batch))?;
    let chunks: Vec<Vec<ProcessedMessage>> = (0..=calls)
        .map(|c| messages((c * call_size) as u64, call_size))
        .collect();
    driver.record_processed_batch(&chunks[0], 0)?;
    let start = Instant::now();
    for chunk in &chunks[1..] {
        black_box(driver.record_processed_batch(chunk, 1)?);
    }
    Ok((calls * call_size) as f64 / start.elapsed().as_secs_f64())
}

fn drive_native(per_batch: u32, calls: usize) -> BenchResult<f64> {
    let checkpointer = NativeCheckpointer::open(
        native_options(3),
        checkpoint_guest::MemoryStorage::default(),
        NativeNullConsumer,
    )?;
    let options = native::DriverOptions {
        run_id: "bench-run".into(),
        stage: format!("p5-{per_batch}"),
        epoch: 1,
        policy: native::Policy::PerBatch(per_batch),
        changelog_capacity: 1024,
        overflow: native::OverflowPolicy::OverwriteOldest,
        max_in_flight: 4096,
    };
    let mut driver = checkpoint_guest::Driver::open(checkpointer, options)?;
    let chunks: Vec<Vec<native::ProcessedMessage>> = (0..=calls)
        .map(|c| to_native_messages(&messages((c * CALL_SIZE) as u64, CALL_SIZE)))
        .collect();
    let mut chunks = chunks.into_iter();
    if let Some(first) = chunks.next() {
        driver.record_processed_batch(first, 0)?;
    }
    let start = Instant::now();
    for chunk in chunks {
        black_box(driver.record_processed_batch(chunk, 1)?);
        driver.checkpointer_mut().storage_mut().calls.clear();
    }
    Ok((calls * CALL_SIZE) as f64 / start.elapsed().as_secs_f64())
}

fn p5_driver(runtime: &Runtime, dir: &Path, scale: f64, table: &mut Table) -> BenchResult<()> {
    let calls = |n: f64| ((n * scale).ceil() as usize).max(2);
    for per_batch in [1u32, 100, 1000] {
        // Memory: sized so each figure runs about a second here.
        let memory_calls = calls(match per_batch {
            1 => 100.0,
            100 => 600.0,
            _ => 800.0,
        });
        let memory = drive_component(open_memory(runtime, 3)?, per_batch, memory_calls, CALL_SIZE)?;
        let native = drive_native(per_batch, memory_calls)?;
        // SQLite: one durable sync per checkpoint, so each figure takes about 500 of them
        // (per-batch(1) in calls of 100 messages, or one call would be 1000 syncs).
        let (sqlite_calls, sqlite_call_size) = match per_batch {
            1 => (calls(5.0), 100),
            100 => (calls(50.0), CALL_SIZE),
            _ => (calls(500.0), CALL_SIZE),
        };
        let path = dir.join(format!("p5-{per_batch}.db"));
        let sqlite = drive_component(
            open_sqlite(runtime, &path, 3)?,
            per_batch,
            sqlite_calls,
            sqlite_call_size,
        )?;
        let target = if per_batch == 1000 {
            format!(
                "memory {:.2}M msg/s (>= 2M: {})",
                memory / 1e6,
                if memory >= 2e6 { "met" } else { "NOT met" }
            )
        } else {
            format!("component/native {:.2}x", native / memory)
        };
        table.row(
            "P5",
            &format!(
                "driver per-batch({per_batch}), batch calls of {CALL_SIZE}{}: memory | SQLite",
                if sqlite_call_size == CALL_SIZE {
                    String::new()
                } else {
                    format!(" (SQLite: {sqlite_call_size})")
                }
            ),
            format!("{} | {} msg/s", rate(memory), rate(sqlite)),
            format!("native memory {} msg/s", rate(native)),
            target,
        );
    }
    Ok(())
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1}k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

// ---------------------------------------------------------------------------------------------
// P6: write cost with 1 vs 100,000 stored checkpoints, and 1 vs 10,000 stages (SQLite)

const MANY_CHECKPOINTS: u64 = 100_000;
const MANY_STAGES: u64 = 10_000;

/// Stores `count` encoded checkpoints as the latest of stages `{prefix}{i}`, in transactions
/// of 5,000 (straight through the store: filling is not what is measured).
fn prefill(path: &Path, prefix: &str, count: u64) -> BenchResult<()> {
    let mut storage = SqliteStorage::open(path)?;
    let mut writes = Vec::new();
    for i in 0..count {
        let stage = format!("{prefix}{i}");
        let checkpoint = to_native(&small_checkpoint(&stage, 1));
        let key = checkpoint_guest::keys::StageKeys::new("bench", "bench-run", &stage).latest();
        writes.push(Write {
            key,
            expected_version: None,
            op: WriteOp::Put(checkpoint_guest::codec::encode(&checkpoint)?),
        });
        if writes.len() == 5000 || i + 1 == count {
            storage.commit(std::mem::take(&mut writes))?;
        }
    }
    Ok(())
}

fn p6_scaling(runtime: &Runtime, dir: &Path, samples: usize, table: &mut Table) -> BenchResult<()> {
    let base_path = dir.join("p6-base.db");
    let big_path = dir.join("p6-big.db");
    let stages_path = dir.join("p6-stages.db");
    prefill(&big_path, "other-", MANY_CHECKPOINTS)?;
    prefill(&stages_path, "s-", MANY_STAGES)?;
    // The fill left tens of MB for the kernel to write back; flush them now so the
    // measured syncs do not wait for them (a failing `sync` only makes the figures noisier).
    let _ = std::process::Command::new("sync").status();
    let mut base = open_sqlite(runtime, &base_path, 3)?;
    let mut big = open_sqlite(runtime, &big_path, 3)?;
    let mut stages = open_sqlite(runtime, &stages_path, 3)?;

    let warmup = 60;
    let (mut t_base, mut t_big, mut t_stages) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved: one write of each configuration per round.
    for round in 0..(warmup + samples) as u64 {
        // The prefilled stages hold sequence 1; rotate through all of them, each write moving
        // its stage one sequence on.
        let stage_index = round % MANY_STAGES;
        let stage_sequence = 2 + round / MANY_STAGES;
        let checkpoints = [
            small_checkpoint("p6", round + 1),
            small_checkpoint("p6", round + 1),
            small_checkpoint(&format!("s-{stage_index}"), stage_sequence),
        ];
        let batch = batch_of_one(round);
        let mut order: Vec<_> = [&mut base, &mut big, &mut stages]
            .into_iter()
            .zip(&checkpoints)
            .zip([&mut t_base, &mut t_big, &mut t_stages])
            .collect();
        // Each configuration goes first, second and third in turn, so none always follows
        // another's sync.
        order.rotate_left((round % 3) as usize);
        for ((checkpointer, checkpoint), out) in order {
            let start = Instant::now();
            checkpointer.write(checkpoint, &batch)?;
            if round >= warmup as u64 {
                out.push(nanos(start.elapsed()));
            }
        }
    }
    let (t_base, t_big, t_stages) = (Samples(t_base), Samples(t_big), Samples(t_stages));
    table.row(
        "P6",
        &format!(
            "SQLite write, {MANY_CHECKPOINTS} other checkpoints stored, p50 (p99) [{}]",
            t_big.len()
        ),
        format!("{} ({})", us(t_big.p50()), us(t_big.p99())),
        format!("1 stored {} ({})", us(t_base.p50()), us(t_base.p99())),
        verdict(t_big.p50() / t_base.p50(), 1.2, true),
    );
    table.row(
        "P6",
        &format!(
            "SQLite write, rotating over {MANY_STAGES} stages, p50 (p99) [{}]",
            t_stages.len()
        ),
        format!("{} ({})", us(t_stages.p50()), us(t_stages.p99())),
        format!("1 stage {} ({})", us(t_base.p50()), us(t_base.p99())),
        verdict(t_stages.p50() / t_base.p50(), 1.2, true),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Memory: linear memory per instance, host RSS with 1,000 live instances

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn memory(config: &RuntimeConfig, table: &mut Table) -> BenchResult<()> {
    let runtime = Runtime::new(config.clone())?;
    let count = config.max_instances as usize;
    // One instance first, so the runtime's own memory is counted before the baseline.
    drop(open_memory(&runtime, 3)?);
    let before = rss_bytes();
    let mut live = Vec::with_capacity(count);
    for i in 0..count {
        let mut checkpointer = open_memory(&runtime, 3)?;
        checkpointer.write(&small_checkpoint("mem", 1), &batch_of_one(i as u64))?;
        checkpointer.get("bench-run", "mem")?;
        live.push(checkpointer);
    }
    let after = rss_bytes();
    let linear = live.first().map_or(0, Checkpointer::linear_memory_bytes);
    let mib = |b: f64| b / f64::from(1 << 20);
    table.row(
        "mem",
        "linear memory of one instance (after open, write, get)",
        format!("{:.2} MiB", mib(linear as f64)),
        format!("limit {:.0} MiB", mib(config.max_memory_bytes as f64)),
        "-".into(),
    );
    table.row(
        "mem",
        &format!("host RSS with {count} live checkpointers (each wrote once)"),
        format!("{:.1} MiB", mib(after as f64)),
        format!(
            "+{:.1} MiB for them, {:.0} KiB each",
            mib(after.saturating_sub(before) as f64),
            after.saturating_sub(before) as f64 / 1024.0 / count as f64
        ),
        "-".into(),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// P7: group commit. Many stages writing at once on one SQLite file vs one stage alone.

/// Stages writing concurrently in P7.
const P7_STAGES: usize = 64;

/// One phase of concurrent writers: every checkpointer writes `writes` checkpoints of its own
/// stage, all released at once; returns (durable checkpoints per second over the phase, every
/// write's latency).
fn concurrent_writes(
    checkpointers: &mut [(Checkpointer, String, u64)],
    writes: usize,
) -> BenchResult<(f64, Vec<f64>)> {
    let barrier = Barrier::new(checkpointers.len() + 1);
    let (elapsed, latencies) = std::thread::scope(|scope| -> BenchResult<(Duration, Vec<f64>)> {
        let threads: Vec<_> = checkpointers
            .iter_mut()
            .map(|(checkpointer, stage, sequence)| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<Vec<f64>, String> {
                    let checkpoints: Vec<Checkpoint> = (1..=writes as u64)
                        .map(|i| small_checkpoint(stage, *sequence + i))
                        .collect();
                    let mut latencies = Vec::with_capacity(writes);
                    barrier.wait();
                    for checkpoint in &checkpoints {
                        let start = Instant::now();
                        checkpointer
                            .write(checkpoint, &batch_of_one(checkpoint.sequence))
                            .map_err(|e| e.to_string())?;
                        latencies.push(nanos(start.elapsed()));
                    }
                    *sequence += writes as u64;
                    Ok(latencies)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut all = Vec::new();
        for thread in threads {
            all.extend(thread.join().map_err(|_| "writer thread panicked")??);
        }
        Ok((start.elapsed(), all))
    })?;
    Ok((latencies.len() as f64 / elapsed.as_secs_f64(), latencies))
}

/// What one configuration of P7 gave over all its rounds.
#[derive(Default)]
struct Throughput {
    writes: usize,
    seconds: f64,
    latencies: Vec<f64>,
}

impl Throughput {
    fn add(&mut self, per_second: f64, latencies: Vec<f64>) {
        self.seconds += latencies.len() as f64 / per_second;
        self.writes += latencies.len();
        self.latencies.extend(latencies);
    }
    fn rate(&self) -> f64 {
        self.writes as f64 / self.seconds
    }
    fn samples(&self) -> Samples {
        Samples(self.latencies.clone())
    }
}

fn open_stages(
    runtime: &Runtime,
    stages: usize,
    prefix: &str,
    open: impl Fn() -> BenchResult<Box<dyn Storage>>,
) -> BenchResult<Vec<(Checkpointer, String, u64)>> {
    (0..stages)
        .map(|i| {
            let checkpointer =
                Checkpointer::open_in(runtime, open()?, Box::new(NullConsumer), &options(3))?;
            Ok((checkpointer, format!("{prefix}{i}"), 0))
        })
        .collect()
}

/// Rounds of: one stage alone, then the many stages grouped, then (SQLite only) the many
/// stages each committing alone, so that all three see the disk in the same minutes.
fn p7_rounds(
    single: &mut [(Checkpointer, String, u64)],
    grouped: &mut [(Checkpointer, String, u64)],
    mut alone: Option<&mut [(Checkpointer, String, u64)]>,
    rounds: usize,
    single_writes: usize,
    many_writes: usize,
) -> BenchResult<[Throughput; 3]> {
    let mut out: [Throughput; 3] = Default::default();
    // Round 0 warms up (and moves the WAL past its first growth).
    for round in 0..=rounds {
        let (rate, latencies) = concurrent_writes(single, single_writes)?;
        if round > 0 {
            out[0].add(rate, latencies);
        }
        let (rate, latencies) = concurrent_writes(grouped, many_writes)?;
        if round > 0 {
            out[1].add(rate, latencies);
        }
        if let Some(alone) = alone.as_deref_mut() {
            let (rate, latencies) = concurrent_writes(alone, (many_writes / 8).max(2))?;
            if round > 0 {
                out[2].add(rate, latencies);
            }
        }
    }
    Ok(out)
}

fn p7_group_commit(
    runtime: &Runtime,
    dir: &Path,
    scale: f64,
    table: &mut Table,
) -> BenchResult<()> {
    let rounds = ((4.0 * scale).ceil() as usize).max(1);
    let single_writes = ((300.0 * scale).ceil() as usize).max(20);
    let many_writes = ((60.0 * scale).ceil() as usize).max(8);
    let path = dir.join("p7.db");
    let grouped_store =
        || -> BenchResult<Box<dyn Storage>> { Ok(Box::new(SqliteStorage::open(&path)?)) };
    let alone_store = || -> BenchResult<Box<dyn Storage>> {
        let options = SqliteOptions {
            group_commit: false,
            ..SqliteOptions::default()
        };
        Ok(Box::new(SqliteStorage::open_with(&path, &options)?))
    };
    let mut single = open_stages(runtime, 1, "p7-solo-", grouped_store)?;
    let mut grouped = open_stages(runtime, P7_STAGES, "p7-", grouped_store)?;
    let mut alone = open_stages(runtime, P7_STAGES, "p7-alone-", alone_store)?;
    let stats_before = SqliteStorage::open(&path)?
        .group_commit_stats()
        .unwrap_or_default();
    let [one, many, ungrouped] = p7_rounds(
        &mut single,
        &mut grouped,
        Some(&mut alone),
        rounds,
        single_writes,
        many_writes,
    )?;
    let stats = SqliteStorage::open(&path)?
        .group_commit_stats()
        .unwrap_or_default();
    let batches_per_sync = (stats.commits - stats_before.commits) as f64
        / (stats.groups - stats_before.groups).max(1) as f64;
    p7_rows(table, "SQLite", &one, &many, Some(batches_per_sync));
    let (one_s, alone_s) = (one.samples(), ungrouped.samples());
    table.row(
        "P7",
        &format!(
            "  before: {P7_STAGES} SQLite stages, each commit alone (group_commit off) [{}]",
            alone_s.len()
        ),
        format!("{}/s, p99 {}", rate(ungrouped.rate()), us(alone_s.p99())),
        format!("1 stage {}/s, p99 {}", rate(one.rate()), us(one_s.p99())),
        format!(
            "{:.2}x the rate, p99 {:.1}x (no target)",
            ungrouped.rate() / one.rate(),
            alone_s.p99() / one_s.p99()
        ),
    );
    drop((single, grouped, alone));

    // PostgreSQL, when a server is given (scripts/bench.sh starts one): the server shares one
    // WAL flush among the transactions that commit while it runs; each stage has a session of
    // its own from one pool.
    match std::env::var("CKPT_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let url = checkpoint_testkit::servers::fresh_store_url(
                checkpoint_testkit::servers::ServerKind::Postgres,
                &url,
                "bench_p7",
            );
            let url = checkpoint_testkit::servers::with_params(
                &url,
                &[("pool_size", &P7_STAGES.to_string())],
            );
            let store = PostgresStorage::open(&url)?;
            let pg = || -> BenchResult<Box<dyn Storage>> { Ok(Box::new(store.clone())) };
            let mut single = open_stages(runtime, 1, "p7-solo-", pg)?;
            let mut grouped = open_stages(runtime, P7_STAGES, "p7-", pg)?;
            let [one, many, _] = p7_rounds(
                &mut single,
                &mut grouped,
                None,
                rounds,
                single_writes,
                many_writes,
            )?;
            p7_rows(table, "PostgreSQL", &one, &many, None);
        }
        _ => table.row(
            "P7",
            "PostgreSQL: not measured (no server: CKPT_TEST_POSTGRES_URL unset)",
            "-".into(),
            "-".into(),
            "-".into(),
        ),
    }
    Ok(())
}

fn p7_rows(
    table: &mut Table,
    store: &str,
    one: &Throughput,
    many: &Throughput,
    batches_per_sync: Option<f64>,
) {
    let (one_s, many_s) = (one.samples(), many.samples());
    table.row(
        "P7",
        &format!(
            "{store}: {P7_STAGES} stages writing at once, durable checkpoints/s [{} writes]",
            many.writes
        ),
        format!("{}/s", rate(many.rate())),
        format!("1 stage alone {}/s [{}]", rate(one.rate()), one.writes),
        verdict(many.rate() / one.rate(), 10.0, false),
    );
    table.row(
        "P7",
        &format!(
            "{store}: {P7_STAGES} stages, latency per write p50 (p99){}",
            batches_per_sync.map_or(String::new(), |b| format!(", {b:.1} commits per sync"))
        ),
        format!("{} ({})", us(many_s.p50()), us(many_s.p99())),
        format!("1 stage {} ({})", us(one_s.p50()), us(one_s.p99())),
        format!("p99 {}", verdict(many_s.p99() / one_s.p99(), 3.0, true)),
    );
}

// ---------------------------------------------------------------------------------------------
// P6 at 1,000 stages: memory per live SQLite checkpointer, and durable checkpoints/s when all
// of them write at once (group commit).

const THOUSAND: usize = 1000;

fn p6_thousand_stages(
    config: &RuntimeConfig,
    dir: &Path,
    scale: f64,
    table: &mut Table,
) -> BenchResult<()> {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: THOUSAND as u32 + 2,
        ..config.clone()
    })?;
    let path = dir.join("p6-1000.db");
    let open = || -> BenchResult<Box<dyn Storage>> { Ok(Box::new(SqliteStorage::open(&path)?)) };
    // One checkpointer first, so the runtime's and SQLite's own memory is counted before the
    // baseline; it is the lone stage of the comparison.
    let mut single = open_stages(&runtime, 1, "p6-solo-", open)?;
    concurrent_writes(&mut single, 5)?;
    let before = rss_bytes();
    let mut stages = open_stages(&runtime, THOUSAND, "p6-k-", open)?;
    for (checkpointer, stage, sequence) in &mut stages {
        *sequence += 1;
        checkpointer.write(
            &small_checkpoint(stage, *sequence),
            &batch_of_one(*sequence),
        )?;
        checkpointer.get("bench-run", stage)?;
    }
    let after = rss_bytes();
    let per = after.saturating_sub(before) as f64 / THOUSAND as f64;
    table.row(
        "P6",
        &format!("host RSS with {THOUSAND} live SQLite checkpointers (each wrote once)"),
        format!("{:.1} MiB", after as f64 / f64::from(1 << 20)),
        format!(
            "+{:.1} MiB for them",
            after.saturating_sub(before) as f64 / f64::from(1 << 20)
        ),
        format!("{:.0} KiB per live checkpointer", per / 1024.0),
    );
    let rounds = ((2.0 * scale).ceil() as usize).max(1);
    let writes = ((5.0 * scale).ceil() as usize).max(2);
    let stats_before = SqliteStorage::open(&path)?
        .group_commit_stats()
        .unwrap_or_default();
    let (mut one, mut many) = (Throughput::default(), Throughput::default());
    for round in 0..=rounds {
        let (r, l) = concurrent_writes(&mut single, 200)?;
        if round > 0 {
            one.add(r, l);
        }
        let (r, l) = concurrent_writes(&mut stages, writes)?;
        if round > 0 {
            many.add(r, l);
        }
    }
    let stats = SqliteStorage::open(&path)?
        .group_commit_stats()
        .unwrap_or_default();
    let (one_s, many_s) = (one.samples(), many.samples());
    table.row(
        "P6",
        &format!(
            "{THOUSAND} stages writing at once on one SQLite file (group commit), p50 (p99) [{}]",
            many.writes
        ),
        format!(
            "{}/s, {} ({})",
            rate(many.rate()),
            us(many_s.p50()),
            us(many_s.p99())
        ),
        format!(
            "1 stage {}/s, {} ({})",
            rate(one.rate()),
            us(one_s.p50()),
            us(one_s.p99())
        ),
        format!(
            "{:.1}x the rate, {:.0} commits per sync",
            many.rate() / one.rate(),
            (stats.commits - stats_before.commits) as f64
                / (stats.groups - stats_before.groups).max(1) as f64
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A 16 MiB operator state: a durable write on SQLite vs a raw write + fdatasync of its bytes

fn big_state(
    config: &RuntimeConfig,
    dir: &Path,
    samples: usize,
    table: &mut Table,
) -> BenchResult<()> {
    const STATE: usize = 16 << 20;
    // A write holds the new checkpoint, its encoding and the stored latest it checks against:
    // more than the default 64 MiB of linear memory at this size.
    let runtime = &Runtime::new(RuntimeConfig {
        max_memory_bytes: 256 << 20,
        max_instances: 4,
        ..config.clone()
    })?;
    let options = Options {
        namespace: "bench".into(),
        max_retained: 1,
        max_checkpoint_bytes: 20 << 20,
    };
    let timings = Arc::new(Mutex::new(StoreTimes::default()));
    let mut checkpointer = Checkpointer::open_in(
        runtime,
        Box::new(TimedStorage {
            inner: SqliteStorage::open(dir.join("big.db"))?,
            times: Arc::clone(&timings),
        }),
        Box::new(NullConsumer),
        &options,
    )?;
    // The same writes on a store that does not group: SQLite then checkpoints its WAL inside
    // the commit that crosses 1000 pages (here every commit), where the grouped store's
    // committer leaves that to its own thread.
    let mut alone = Checkpointer::open_in(
        runtime,
        Box::new(SqliteStorage::open_with(
            dir.join("big-alone.db"),
            &ungrouped(),
        )?),
        Box::new(NullConsumer),
        &options,
    )?;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let state: Vec<u8> = (0..STATE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut raw = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("big-raw.bin"))?;
    let (mut sqlite, mut baseline) = (Vec::new(), Vec::new());
    let (mut gets, mut commits, mut sqlite_alone) = (Vec::new(), Vec::new(), Vec::new());
    let mut encoded_len = 0;
    for sequence in 1..=(samples + 2) as u64 {
        let mut checkpoint = small_checkpoint("big", sequence);
        let mut state = state.clone();
        state[..8].copy_from_slice(&sequence.to_le_bytes());
        checkpoint.operator_states = vec![OperatorState {
            name: "window".into(),
            state,
        }];
        let bytes = checkpoint_guest::codec::encode(&to_native(&checkpoint))?;
        encoded_len = bytes.len();
        *timings.lock().map_err(|_| "poisoned")? = StoreTimes::default();
        let start = Instant::now();
        checkpointer.write(&checkpoint, &batch_of_one(sequence))?;
        let write = nanos(start.elapsed());
        let store = *timings.lock().map_err(|_| "poisoned")?;
        let start = Instant::now();
        alone.write(&checkpoint, &batch_of_one(sequence))?;
        let write_alone = nanos(start.elapsed());
        // The same bytes over the same place of a file that already holds a copy: the
        // cheapest durable write of them (no allocation of new blocks).
        let start = Instant::now();
        std::os::unix::fs::FileExt::write_all_at(&raw, &bytes, 0)?;
        raw.sync_data()?;
        let plain = nanos(start.elapsed());
        // Two warm-ups: the first write creates the rows and the raw file's blocks.
        if sequence > 2 {
            sqlite.push(write);
            baseline.push(plain);
            gets.push(store.get);
            commits.push(store.commit);
            sqlite_alone.push(write_alone);
        }
    }
    raw.flush()?;
    let (sqlite, baseline) = (Samples(sqlite), Samples(baseline));
    let (gets, commits, sqlite_alone) = (Samples(gets), Samples(commits), Samples(sqlite_alone));
    table.row(
        "big",
        &format!(
            "durable write of a 16 MiB operator state ({encoded_len} B), SQLite, p50 (p99) [{}]",
            sqlite.len()
        ),
        format!("{} ({})", ms(sqlite.p50()), ms(sqlite.p99())),
        format!(
            "raw write+fdatasync {} ({})",
            ms(baseline.p50()),
            ms(baseline.p99())
        ),
        format!(
            "{:.2}x ({:.0} MB/s vs {:.0} MB/s; no target)",
            sqlite.p50() / baseline.p50(),
            encoded_len as f64 / sqlite.p50() * 1e3,
            encoded_len as f64 / baseline.p50() * 1e3
        ),
    );
    table.row(
        "big",
        "  the same write without group commit (before it: WAL checkpoint inside the commit)",
        format!("{} ({})", ms(sqlite_alone.p50()), ms(sqlite_alone.p99())),
        format!("grouped store {}", ms(sqlite.p50())),
        format!(
            "grouped/alone {:.2}x; alone/raw {:.2}x",
            sqlite.p50() / sqlite_alone.p50(),
            sqlite_alone.p50() / baseline.p50()
        ),
    );
    table.row(
        "big",
        "  of which: the store's get of the stored latest | its commit, p50",
        format!("{} | {}", ms(gets.p50()), ms(commits.p50())),
        format!(
            "the component's share {}",
            ms(sqlite.p50() - gets.p50() - commits.p50())
        ),
        "(encode, decode of the stored latest, copies across the boundary)".into(),
    );
    Ok(())
}

/// Time spent in the store's calls during one write.
#[derive(Clone, Copy, Default)]
struct StoreTimes {
    get: f64,
    commit: f64,
}

/// A store that adds the time of each call to `times`.
struct TimedStorage<S> {
    inner: S,
    times: Arc<Mutex<StoreTimes>>,
}

impl<S: Storage> Storage for TimedStorage<S> {
    fn get(&mut self, key: &str) -> Result<checkpoint_host::Lookup, checkpoint_host::StorageError> {
        let start = Instant::now();
        let out = self.inner.get(key);
        if let Ok(mut t) = self.times.lock() {
            t.get += nanos(start.elapsed());
        }
        out
    }
    fn commit(
        &mut self,
        writes: Vec<Write>,
    ) -> Result<checkpoint_host::CommitOutcome, checkpoint_host::StorageError> {
        let start = Instant::now();
        let out = self.inner.commit(writes);
        if let Ok(mut t) = self.times.lock() {
            t.commit += nanos(start.elapsed());
        }
        out
    }
    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, checkpoint_host::StorageError> {
        self.inner.list_keys(prefix)
    }
}

fn ms(ns: f64) -> String {
    format!("{:.1} ms", ns / 1e6)
}

// ---------------------------------------------------------------------------------------------
// floor: the real write and get vs the floor component (tests/floor-guest, `make floor`), which
// makes the same import calls with the same payloads and nothing else

/// The floor component's bindings: its own world, with the checkpoint package's imports.
mod floor_bindings {
    wasmtime::component::bindgen!({
        world: "pipeline:floor/floor-component",
        path: ["wit", "../tests/floor-guest/wit"],
        imports: { default: trappable },
    });
}

use floor_bindings::pipeline::checkpoint::{consumer as floor_consumer, storage as floor_storage};

/// The floor's imports: the same `MemoryStorage` and `NullConsumer` the real write runs on,
/// behind the least a host can do (move each value between the two bindings' types).
struct FloorHost {
    storage: MemoryStorage,
    consumer: NullConsumer,
}

impl floor_storage::Host for FloorHost {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<floor_storage::Lookup, floor_storage::StorageError>> {
        Ok(match self.storage.get(&key) {
            Ok(checkpoint_host::Lookup::Found(e)) => {
                Ok(floor_storage::Lookup::Found(floor_storage::Entry {
                    value: e.value,
                    version: e.version,
                }))
            }
            Ok(checkpoint_host::Lookup::Missing) => Ok(floor_storage::Lookup::Missing),
            Err(e) => Err(floor_storage::StorageError::Failed(format!("{e:?}"))),
        })
    }

    fn commit(
        &mut self,
        writes: Vec<floor_storage::Write>,
    ) -> wasmtime::Result<Result<floor_storage::CommitOutcome, floor_storage::StorageError>> {
        let writes = writes
            .into_iter()
            .map(|w| Write {
                key: w.key,
                expected_version: w.expected_version,
                op: match w.op {
                    floor_storage::WriteOp::Put(bytes) => WriteOp::Put(bytes),
                    floor_storage::WriteOp::Delete => WriteOp::Delete,
                },
            })
            .collect();
        Ok(match self.storage.commit(writes) {
            Ok(checkpoint_host::CommitOutcome::Committed(v)) => {
                Ok(floor_storage::CommitOutcome::Committed(v))
            }
            Ok(checkpoint_host::CommitOutcome::Conflict(i)) => {
                Ok(floor_storage::CommitOutcome::Conflict(i))
            }
            Err(e) => Err(floor_storage::StorageError::Failed(format!("{e:?}"))),
        })
    }

    fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, floor_storage::StorageError>> {
        Ok(self
            .storage
            .list_keys(&prefix)
            .map_err(|e| floor_storage::StorageError::Failed(format!("{e:?}"))))
    }
}

impl floor_consumer::Host for FloorHost {
    fn ack(&mut self, message_ids: Vec<String>) -> wasmtime::Result<Result<(), String>> {
        Ok(checkpoint_host::Consumer::ack(
            &mut self.consumer,
            message_ids,
        ))
    }
}

/// The floor component in an engine configured for calls like the runtime's (no concurrency
/// support, epoch interruption with a deadline set before every call).
struct Floor {
    store: wasmtime::Store<FloorHost>,
    floor: floor_bindings::FloorComponent,
}

impl Floor {
    fn load() -> BenchResult<Floor> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/floor.wasm");
        if !path.is_file() {
            return Err(format!(
                "no floor component at {}: build it with `make floor` (`make bench` does)",
                path.display()
            )
            .into());
        }
        let mut config = wasmtime::Config::new();
        config.concurrency_support(false).epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config)?;
        let component = wasmtime::component::Component::from_file(&engine, &path)?;
        let mut linker = wasmtime::component::Linker::new(&engine);
        floor_bindings::FloorComponent::add_to_linker::<
            FloorHost,
            wasmtime::component::HasSelf<FloorHost>,
        >(&mut linker, |s| s)?;
        let mut store = wasmtime::Store::new(
            &engine,
            FloorHost {
                storage: MemoryStorage::new(),
                consumer: NullConsumer,
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let floor = floor_bindings::FloorComponent::instantiate(&mut store, &component, &linker)?;
        Ok(Floor { store, floor })
    }

    fn noop(&mut self) -> BenchResult<()> {
        self.store.set_epoch_deadline(u64::MAX / 2);
        Ok(self
            .floor
            .pipeline_floor_floor()
            .call_noop(&mut self.store)?)
    }

    fn write(&mut self, key: &str, payload: &[u8], ids: &[String]) -> BenchResult<u64> {
        self.store.set_epoch_deadline(u64::MAX / 2);
        Ok(self.floor.pipeline_floor_floor().call_write_floor(
            &mut self.store,
            key,
            payload,
            3,
            ids,
        )??)
    }

    fn get(&mut self, key: &str) -> BenchResult<Vec<u8>> {
        self.store.set_epoch_deadline(u64::MAX / 2);
        Ok(self
            .floor
            .pipeline_floor_floor()
            .call_get_floor(&mut self.store, key)??)
    }
}

/// The P2 workload (max-retained 3, the small checkpoint, one id per write) through the real
/// component and through the floor, interleaved group by group. Prints the line scripts/bench.sh
/// reads for its per-host table.
fn floor_rows(runtime: &Runtime, groups: usize, table: &mut Table) -> BenchResult<()> {
    let store = MemoryStorage::new();
    let mut real = Checkpointer::open_in(
        runtime,
        Box::new(store.clone()),
        Box::new(NullConsumer),
        &options(3),
    )?;
    let mut floor = Floor::load()?;
    let total = (groups + 10) * GROUP;
    let checkpoints: Vec<Checkpoint> = (1..=total as u64)
        .map(|s| small_checkpoint("p2", s))
        .collect();
    let batches: Vec<Vec<String>> = (1..=total as u64).map(batch_of_one).collect();
    // The floor's payload: the bytes the real write stores, under the real latest key (the
    // floor writes to its own store).
    real.write(&checkpoints[0], &batches[0])?;
    let key = store
        .keys()
        .into_iter()
        .find(|k| k.ends_with("/latest"))
        .ok_or("the real write stored no latest key")?;
    let payload = store.raw(&key).ok_or("no stored latest")?.0;

    let (mut write_c, mut write_f) = (Vec::new(), Vec::new());
    for group in 0..groups + 10 {
        let range = (group * GROUP).max(1)..(group + 1) * GROUP;
        let calls = range.len() as f64;
        let start = Instant::now();
        for i in range.clone() {
            black_box(real.write(&checkpoints[i], &batches[i])?);
        }
        let c = nanos(start.elapsed()) / calls;
        let start = Instant::now();
        for i in range {
            black_box(floor.write(&key, &payload, &batches[i])?);
        }
        let f = nanos(start.elapsed()) / calls;
        if group >= 10 {
            write_c.push(c);
            write_f.push(f);
        }
    }
    let (mut get_c, mut get_f, mut noop) = (Vec::new(), Vec::new(), Vec::new());
    for group in 0..groups + 10 {
        let start = Instant::now();
        for _ in 0..GROUP {
            black_box(real.get("bench-run", "p2")?);
        }
        let c = nanos(start.elapsed()) / GROUP as f64;
        let start = Instant::now();
        for _ in 0..GROUP {
            black_box(floor.get(&key)?);
        }
        let f = nanos(start.elapsed()) / GROUP as f64;
        let start = Instant::now();
        for _ in 0..GROUP {
            floor.noop()?;
        }
        let e = nanos(start.elapsed()) / GROUP as f64;
        if group >= 10 {
            get_c.push(c);
            get_f.push(f);
            noop.push(e);
        }
    }
    let (write_c, write_f) = (Samples(write_c), Samples(write_f));
    let (get_c, get_f, noop) = (Samples(get_c), Samples(get_f), Samples(noop));
    table.row(
        "floor",
        &format!(
            "Rust: in-memory write, component vs floor (get + commit of 3 + ack, {} B), p50 (p99) \
             [{} groups of {GROUP}]",
            payload.len(),
            write_c.len()
        ),
        format!("{} ({})", us(write_c.p50()), us(write_c.p99())),
        format!("floor {} ({})", us(write_f.p50()), us(write_f.p99())),
        verdict(write_c.p50() / write_f.p50(), 2.0, true),
    );
    table.row(
        "floor",
        "Rust: in-memory get, component vs floor (one storage get, bytes returned), p50 (p99)",
        format!("{} ({})", us(get_c.p50()), us(get_c.p99())),
        format!("floor {} ({})", us(get_f.p50()), us(get_f.p99())),
        verdict(get_c.p50() / get_f.p50(), 2.0, true),
    );
    table.row(
        "floor",
        "Rust: empty export call (floor noop), p50 (p99)",
        format!("{} ({})", us(noop.p50()), us(noop.p99())),
        "-".into(),
        "(no target)".into(),
    );
    println!(
        "floor rust write_us={:.3} get_us={:.3} floor_write_us={:.3} floor_get_us={:.3} \
         noop_us={:.3} calls={}",
        write_c.p50() / 1e3,
        get_c.p50() / 1e3,
        write_f.p50() / 1e3,
        get_f.p50() / 1e3,
        noop.p50() / 1e3,
        write_c.len() * GROUP
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// tls: the cost of TLS on the network stores. The first durable write of a process (open the
// store, open a checkpointer, write once: every connection's handshake included) over TLS vs
// plain, and the steady-state write on an open store, side by side on the same servers.
// Needs CKPT_TEST_{POSTGRES,REDIS}_URL and CKPT_TEST_{POSTGRES,REDIS}_TLS_URL (scripts/bench.sh
// runs under scripts/with-test-servers.sh, which sets them); a store without them says so.

/// The value of query parameter `name` of `url`, as written (still escaped).
fn tls_url_param(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_owned)
}

fn tls_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// One configuration of the tls rows: a store URL, and what one first write cost.
struct TlsSide {
    url: String,
    /// open_storage alone, then open + checkpointer + first write.
    open: Vec<f64>,
    first: Vec<f64>,
    steady: Vec<f64>,
}

impl TlsSide {
    fn new(url: String) -> Self {
        TlsSide {
            url,
            open: Vec::new(),
            first: Vec::new(),
            steady: Vec::new(),
        }
    }

    /// Opens the store and writes checkpoint 1 of a stage of its own; returns the times of the
    /// open and of the whole (the checkpointer is dropped outside the timing).
    fn first_write(&self, runtime: &Runtime, stage: &str) -> BenchResult<(f64, f64)> {
        let start = Instant::now();
        let storage = checkpoint_host::storage::open_storage(&self.url)?;
        let opened = nanos(start.elapsed());
        let mut checkpointer =
            Checkpointer::open_in(runtime, storage, Box::new(NullConsumer), &options(3))?;
        checkpointer.write(&small_checkpoint(stage, 1), &batch_of_one(1))?;
        let total = nanos(start.elapsed());
        drop(checkpointer);
        Ok((opened, total))
    }
}

/// Interleaved samples of `sides` (which goes first alternates): `first` first writes each,
/// then `steady` writes on one open checkpointer each. Two untimed rounds warm up (and create
/// the stores' schemas).
fn tls_measure(
    runtime: &Runtime,
    sides: &mut [TlsSide],
    first: usize,
    steady: usize,
) -> BenchResult<()> {
    for round in 0..first + 2 {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..sides.len()).collect()
        } else {
            (0..sides.len()).rev().collect()
        };
        for i in order {
            let (opened, total) =
                sides[i].first_write(runtime, &format!("tls-first-{i}-{round}"))?;
            if round >= 2 {
                sides[i].open.push(opened);
                sides[i].first.push(total);
            }
        }
    }
    let mut open: Vec<Checkpointer> = sides
        .iter()
        .map(|side| {
            let storage = checkpoint_host::storage::open_storage(&side.url)?;
            Ok(Checkpointer::open_in(
                runtime,
                storage,
                Box::new(NullConsumer),
                &options(3),
            )?)
        })
        .collect::<BenchResult<_>>()?;
    let warm_up = 20;
    for sequence in 1..=(warm_up + steady) as u64 {
        for (i, checkpointer) in open.iter_mut().enumerate() {
            let checkpoint = small_checkpoint(&format!("tls-steady-{i}"), sequence);
            let start = Instant::now();
            checkpointer.write(&checkpoint, &batch_of_one(sequence))?;
            if sequence > warm_up as u64 {
                sides[i].steady.push(nanos(start.elapsed()));
            }
        }
    }
    Ok(())
}

/// "p50 (p99)" in milliseconds.
fn tls_ms(samples: &[f64]) -> String {
    let s = Samples(samples.to_vec());
    format!("{:.2} ms ({:.2} ms)", s.p50() / 1e6, s.p99() / 1e6)
}

/// "+d ms, r x (no target)": the TLS side's p50 against the plain side's.
fn tls_cost(tls: &[f64], plain: &[f64]) -> String {
    let (tls, plain) = (Samples(tls.to_vec()).p50(), Samples(plain.to_vec()).p50());
    format!(
        "{:+.2} ms, {:.2}x (no target)",
        (tls - plain) / 1e6,
        tls / plain
    )
}

/// The rows of one TLS side against the plain one.
fn tls_side_rows(table: &mut Table, store: &str, how: &str, tls: &TlsSide, plain: &TlsSide) {
    table.row(
        "tls",
        &format!(
            "{store}: open + first durable write, {how}, p50 (p99) [{}]",
            tls.first.len()
        ),
        tls_ms(&tls.first),
        format!("plain {}", tls_ms(&plain.first)),
        tls_cost(&tls.first, &plain.first),
    );
    table.row(
        "tls",
        &format!("{store}:   of which opening the store (connect, checks, schema)"),
        tls_ms(&tls.open),
        format!("plain {}", tls_ms(&plain.open)),
        tls_cost(&tls.open, &plain.open),
    );
}

fn tls_steady_row(table: &mut Table, store: &str, tls: &TlsSide, plain: &TlsSide) {
    table.row(
        "tls",
        &format!(
            "{store}: steady-state durable write over TLS, p50 (p99) [{}]",
            tls.steady.len()
        ),
        tls_ms(&tls.steady),
        format!("plain {}", tls_ms(&plain.steady)),
        tls_cost(&tls.steady, &plain.steady),
    );
}

fn tls_rows(runtime: &Runtime, first: usize, steady: usize, table: &mut Table) -> BenchResult<()> {
    use checkpoint_testkit::servers::{ServerKind, fresh_store_url, set_param};

    // PostgreSQL: plain and TLS for the same role (the superuser, `trust`), so that only TLS
    // differs; and the TLS-only login as deployed (client certificate and a SCRAM password),
    // on a schema it owns.
    match (
        tls_env("CKPT_TEST_POSTGRES_URL"),
        tls_env("CKPT_TEST_POSTGRES_TLS_URL"),
    ) {
        (Some(admin_url), Some(login_url)) => {
            let plain_url = fresh_store_url(ServerKind::Postgres, &admin_url, "bench_tls");
            let mut same_role = set_param(&plain_url, "sslmode", "verify-full");
            for param in ["sslrootcert", "sslcert", "sslkey"] {
                let value = tls_url_param(&login_url, param)
                    .ok_or_else(|| format!("the PostgreSQL TLS URL names no {param}"))?;
                same_role = set_param(&same_role, param, &value);
            }
            let schema = checkpoint_testkit::servers::unique_store_name("bench_tls_login");
            let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)?;
            let login_role = login_url
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .map_or("ckpt_tls", |(user, _)| user)
                .to_owned();
            admin.batch_execute(&format!(
                "CREATE SCHEMA {schema} AUTHORIZATION {login_role}"
            ))?;
            let login_url = set_param(&login_url, "schema", &schema);
            let mut sides = [
                TlsSide::new(plain_url),
                TlsSide::new(same_role),
                TlsSide::new(login_url),
            ];
            tls_measure(runtime, &mut sides, first, steady)?;
            let [plain, tls, login] = &sides;
            tls_side_rows(
                table,
                "PostgreSQL",
                "sslmode=verify-full + client cert, same role",
                tls,
                plain,
            );
            tls_side_rows(
                table,
                "PostgreSQL",
                "TLS-only login (verify-full, client cert, SCRAM password)",
                login,
                plain,
            );
            tls_steady_row(table, "PostgreSQL", tls, plain);
        }
        _ => table.row(
            "tls",
            "PostgreSQL: not measured (no server: CKPT_TEST_POSTGRES_URL or \
             CKPT_TEST_POSTGRES_TLS_URL unset)",
            "-".into(),
            "-".into(),
            "-".into(),
        ),
    }

    // Redis: the same server and user on its plain port and on its TLS-only port (client
    // certificate).
    match (
        tls_env("CKPT_TEST_REDIS_URL"),
        tls_env("CKPT_TEST_REDIS_TLS_URL"),
    ) {
        (Some(plain_url), Some(tls_url)) => {
            let prefix = checkpoint_testkit::servers::unique_store_name("bench_tls");
            let mut sides = [
                TlsSide::new(set_param(&plain_url, "prefix", &prefix)),
                TlsSide::new(set_param(&tls_url, "prefix", &prefix)),
            ];
            tls_measure(runtime, &mut sides, first, steady)?;
            let [plain, tls] = &sides;
            tls_side_rows(table, "Redis", "rediss:// + client cert", tls, plain);
            tls_steady_row(table, "Redis", tls, plain);
        }
        _ => table.row(
            "tls",
            "Redis: not measured (no server: CKPT_TEST_REDIS_URL or CKPT_TEST_REDIS_TLS_URL \
             unset)",
            "-".into(),
            "-".into(),
            "-".into(),
        ),
    }
    Ok(())
}
