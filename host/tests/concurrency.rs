//! Concurrent writers on one (run-id, stage): 2 to 8 threads, each with its own instance of the
//! component and its own store handle (on SQLite, its own handle on one file: grouped, their
//! commits sharing transactions and syncs, and again each committing alone), with different
//! and sometimes equal epochs; on SQLite also 32 stages writing at once beside such a race; also on Redis (each writer its own pool, one key prefix per round)
//! and PostgreSQL (each writer its own pool, one schema per round) when their shared servers run.
//! On SQLite, Redis and PostgreSQL also as separate processes (this test binary re-run as a
//! writer, `race_child_writer`). Every writer loops: read the resume point, write the next
//! checkpoint, retry on `conflict` or `regression` (a peer won the race), stop when `fenced`.
//!
//! Checks, with every checkpoint retained: no lost update (every receipt returned is in the
//! history), stale epochs fenced (epochs never decrease along the history, and a fenced writer's
//! epoch is below the stored one), the latest monotonic (sequences grow, offsets never go back).

use std::sync::{Arc, Barrier};

use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::storage::{
    MemoryStorage, PostgresStorage, RedisStorage, SqliteOptions, SqliteStorage, open_storage,
};
use checkpoint_host::{
    Checkpoint, CheckpointError, Checkpointer, Error, Options, Storage, Watermark,
};

use checkpoint_testkit::servers as common;

const ATTEMPTS: u32 = 25;

fn options() -> Options {
    Options {
        namespace: "race".into(),
        max_retained: 1_000,
        max_checkpoint_bytes: 4096,
    }
}

/// What one writer saw: the sequences of its durable receipts, and whether it was fenced.
struct Outcome {
    epoch: u64,
    written: Vec<u64>,
    fenced: bool,
    /// Writes that failed with `storage`: their commit may or may not have happened.
    ambiguous: usize,
}

fn writer(storage: Box<dyn Storage>, index: u64, epoch: u64, barrier: Arc<Barrier>) -> Outcome {
    let mut c = Checkpointer::open(storage, Box::new(NullConsumer), &options()).expect("open");
    let mut out = Outcome {
        epoch,
        written: Vec::new(),
        fenced: false,
        ambiguous: 0,
    };
    barrier.wait();
    for _ in 0..ATTEMPTS {
        let point = match c.resume_point("run", "stage") {
            Ok(resume) => resume.point,
            Err(Error::Checkpoint(CheckpointError::Storage(_))) => continue,
            Err(e) => panic!("resume-point: {e}"),
        };
        let checkpoint = Checkpoint {
            run_id: "run".into(),
            stage: "stage".into(),
            sequence: point.sequence + 1,
            epoch,
            watermark: Watermark {
                offset: point.watermark.offset + 1,
                event_time_ms: point.watermark.event_time_ms,
            },
            sources: vec![],
            sinks: vec![],
            operator_states: vec![],
            // Distinct per writer, so two writers never produce equal bytes (a replay).
            idempotency_key: format!("writer-{index}-{}", out.written.len()),
            at_ms: 0,
        };
        match c.write(&checkpoint, &[]) {
            Ok(receipt) => {
                assert!(
                    !receipt.replayed,
                    "a fresh checkpoint was taken for a replay"
                );
                out.written.push(receipt.sequence);
            }
            Err(Error::Checkpoint(CheckpointError::Fenced(f))) => {
                assert!(f.attempted_epoch < f.stored_epoch && f.attempted_epoch == epoch);
                out.fenced = true;
                break;
            }
            Err(Error::Checkpoint(CheckpointError::Storage(_))) => out.ambiguous += 1,
            Err(Error::Checkpoint(
                CheckpointError::Conflict(_) | CheckpointError::Regression(_),
            )) => {}
            Err(e) => panic!("write: {e}"),
        }
    }
    out
}

fn race(name: &str, open: impl Fn() -> Box<dyn Storage>, writers: u64) -> (usize, usize) {
    let barrier = Arc::new(Barrier::new(writers as usize));
    // Epochs 1, 1, 2, 2, 3, ...: equal epochs race as co-owners, higher ones take over.
    let handles: Vec<_> = (0..writers)
        .map(|i| {
            let storage = open();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || writer(storage, i, i / 2 + 1, barrier))
        })
        .collect();
    let outcomes: Vec<Outcome> = handles
        .into_iter()
        .map(|h| h.join().expect("writer thread"))
        .collect();
    check(name, open(), writers, &outcomes)
}

/// Checks the stored history against what the writers saw; returns (checkpoints, fenced).
fn check(
    name: &str,
    storage: Box<dyn Storage>,
    writers: u64,
    outcomes: &[Outcome],
) -> (usize, usize) {
    let mut c = Checkpointer::open(storage, Box::new(NullConsumer), &options()).expect("open");
    let history = c.history("run", "stage").expect("history");
    let mut written: Vec<u64> = outcomes.iter().flat_map(|o| o.written.clone()).collect();
    written.sort_unstable();
    let stored: Vec<u64> = history.iter().map(|h| h.sequence).collect();
    assert_eq!(
        written, stored,
        "{name}, {writers} writers: lost or phantom updates"
    );
    for pair in history.windows(2) {
        assert!(
            pair[0].sequence < pair[1].sequence,
            "{name}: sequence not growing"
        );
        assert!(
            pair[0].watermark.offset <= pair[1].watermark.offset,
            "{name}: offset went back"
        );
        assert!(
            pair[0].epoch <= pair[1].epoch,
            "{name}: a stale epoch wrote after a newer one"
        );
    }
    let top = outcomes.iter().map(|o| o.epoch).max().unwrap_or(0);
    for o in outcomes {
        if o.fenced {
            assert!(o.epoch < top, "{name}: the newest epoch was fenced");
        }
    }
    let fenced = outcomes.iter().filter(|o| o.fenced).count();
    (stored.len(), fenced)
}

#[test]
fn concurrent_writers_lose_no_update_and_stale_epochs_are_fenced() {
    let redis_url = common::shared_server_url(common::ServerKind::Redis, "concurrent writers");
    let postgres_url =
        common::shared_server_url(common::ServerKind::Postgres, "concurrent writers");
    let mut rounds = 0;
    for writers in 2..=8 {
        let memory = MemoryStorage::new();
        let (written, fenced) = race(
            "memory",
            || Box::new(memory.clone()) as Box<dyn Storage>,
            writers,
        );
        println!("memory, {writers} writers: {written} checkpoints, {fenced} writers fenced");

        // Grouped (the default): the writers' commits share transactions and syncs.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("race.db");
        let keep = SqliteStorage::open(&path).expect("open sqlite");
        let (written, fenced) = race(
            "sqlite",
            || Box::new(SqliteStorage::open(&path).expect("open sqlite")) as Box<dyn Storage>,
            writers,
        );
        let stats = keep.group_commit_stats().expect("grouped");
        println!(
            "sqlite, {writers} writers: {written} checkpoints, {fenced} writers fenced; {} \
             commits in {} transactions",
            stats.commits, stats.groups
        );

        // Each commit alone, as before group commit.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("race.db");
        let alone = SqliteOptions {
            group_commit: false,
            ..SqliteOptions::default()
        };
        let (written, fenced) = race(
            "sqlite ungrouped",
            || {
                Box::new(SqliteStorage::open_with(&path, &alone).expect("open sqlite"))
                    as Box<dyn Storage>
            },
            writers,
        );
        println!(
            "sqlite ungrouped, {writers} writers: {written} checkpoints, {fenced} writers fenced"
        );
        rounds += 3;

        if let Some(url) = &redis_url {
            let url = common::fresh_store_url(common::ServerKind::Redis, url, "race");
            let (written, fenced) = race(
                "redis",
                || Box::new(RedisStorage::open(&url).expect("open redis")) as Box<dyn Storage>,
                writers,
            );
            println!("redis, {writers} writers: {written} checkpoints, {fenced} writers fenced");
            rounds += 1;
        }

        if let Some(url) = &postgres_url {
            let url = common::fresh_store_url(common::ServerKind::Postgres, url, "race");
            let (written, fenced) = race(
                "postgres",
                || {
                    Box::new(PostgresStorage::open(&url).expect("open postgres"))
                        as Box<dyn Storage>
                },
                writers,
            );
            println!("postgres, {writers} writers: {written} checkpoints, {fenced} writers fenced");
            rounds += 1;
        }
    }
    println!("concurrency: {rounds} rounds, 0 lost updates");
}

/// Many stages on one SQLite file, each its own thread, checkpointer and handle, writing at
/// once while racing writers share one more stage: with their commits grouped, every stage's
/// history is exactly its receipts, and the shared stage loses no update.
#[test]
fn many_stages_on_one_sqlite_file_commit_in_groups_and_lose_nothing() {
    const STAGES: u64 = 32;
    const WRITES: u64 = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("stages.db");
    let keep = SqliteStorage::open(&path).expect("open sqlite");
    let open = || Box::new(SqliteStorage::open(&path).expect("open sqlite")) as Box<dyn Storage>;
    let barrier = Arc::new(Barrier::new(STAGES as usize + 4));
    let (receipts, racers) = std::thread::scope(|scope| {
        let stages: Vec<_> = (0..STAGES)
            .map(|i| {
                let (storage, barrier) = (open(), Arc::clone(&barrier));
                scope.spawn(move || {
                    let mut c = Checkpointer::open(storage, Box::new(NullConsumer), &options())
                        .expect("open");
                    barrier.wait();
                    let stage = format!("own-{i}");
                    let mut written = Vec::new();
                    for sequence in 1..=WRITES {
                        let checkpoint = Checkpoint {
                            run_id: "run".into(),
                            stage: stage.clone(),
                            sequence,
                            epoch: 1,
                            watermark: Watermark {
                                offset: sequence,
                                event_time_ms: 0,
                            },
                            sources: vec![],
                            sinks: vec![],
                            operator_states: vec![],
                            idempotency_key: String::new(),
                            at_ms: 0,
                        };
                        let receipt = c.write(&checkpoint, &[]).expect("write of an own stage");
                        written.push(receipt.sequence);
                    }
                    written
                })
            })
            .collect();
        let racers: Vec<_> = (0..4)
            .map(|i| {
                let (storage, barrier) = (open(), Arc::clone(&barrier));
                scope.spawn(move || writer(storage, i, i / 2 + 1, barrier))
            })
            .collect();
        (
            stages
                .into_iter()
                .map(|t| t.join().expect("stage"))
                .collect::<Vec<_>>(),
            racers
                .into_iter()
                .map(|t| t.join().expect("racer"))
                .collect::<Vec<_>>(),
        )
    });
    let mut c = Checkpointer::open(open(), Box::new(NullConsumer), &options()).expect("open");
    for (i, written) in receipts.iter().enumerate() {
        let stored: Vec<u64> = c
            .history("run", &format!("own-{i}"))
            .expect("history")
            .iter()
            .map(|h| h.sequence)
            .collect();
        assert_eq!(&stored, written, "stage own-{i}: lost or phantom updates");
    }
    let (shared, fenced) = check("sqlite grouped", open(), 4, &racers);
    let stats = keep.group_commit_stats().expect("grouped");
    println!(
        "sqlite, {STAGES} stages + 4 racing writers: {} own checkpoints, {shared} shared, \
         {fenced} fenced; {} commits in {} transactions (largest {})",
        STAGES * WRITES,
        stats.commits,
        stats.groups,
        stats.largest_group
    );
}

/// Entry point of a writer process: does nothing unless the parent set `RACE_STORE` (a store
/// URL). It prints `race-result written=<seq,seq,...> fenced=<bool> ambiguous=<n>` for the parent
/// to read.
#[test]
fn race_child_writer() {
    let (Ok(url), Ok(index)) = (std::env::var("RACE_STORE"), std::env::var("RACE_INDEX")) else {
        return;
    };
    let index: u64 = index.parse().expect("RACE_INDEX");
    let storage = open_storage(&url).expect("open the store");
    let out = writer(storage, index, index / 2 + 1, Arc::new(Barrier::new(1)));
    let written: Vec<String> = out.written.iter().map(u64::to_string).collect();
    println!(
        "race-result written={} fenced={} ambiguous={}",
        written.join(","),
        out.fenced,
        out.ambiguous
    );
}

#[test]
fn writer_processes_on_one_sqlite_file_lose_no_update() {
    if std::env::var("RACE_STORE").is_ok() {
        return; // a child process runs only `race_child_writer`
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("race.db");
    // Create the schema before the processes start, so they only race on checkpoints.
    drop(SqliteStorage::open(&db).expect("create sqlite"));
    writer_processes("sqlite", &format!("sqlite:{}", db.display()));
}

#[test]
fn writer_processes_on_one_redis_store_lose_no_update() {
    if std::env::var("RACE_STORE").is_ok() {
        return; // a child process runs only `race_child_writer`
    }
    let Some(url) = common::shared_server_url(common::ServerKind::Redis, "writer processes") else {
        return;
    };
    let url = common::fresh_store_url(common::ServerKind::Redis, &url, "race_processes");
    // Write the schema marker before the processes start, so they only race on checkpoints.
    drop(RedisStorage::open(&url).expect("open redis"));
    writer_processes("redis", &url);
}

#[test]
fn writer_processes_on_one_postgres_store_lose_no_update() {
    if std::env::var("RACE_STORE").is_ok() {
        return; // a child process runs only `race_child_writer`
    }
    let Some(url) = common::shared_server_url(common::ServerKind::Postgres, "writer processes")
    else {
        return;
    };
    let url = common::fresh_store_url(common::ServerKind::Postgres, &url, "race_processes");
    // Create the schema before the processes start, so they only race on checkpoints.
    drop(PostgresStorage::open(&url).expect("open postgres"));
    writer_processes("postgres", &url);
}

/// Runs 4 writer processes on the store at `url`, then checks what they saw against it.
fn writer_processes(name: &str, url: &str) {
    let exe = std::env::current_exe().expect("test binary");
    let writers = 4u64;
    let children: Vec<_> = (0..writers)
        .map(|i| {
            std::process::Command::new(&exe)
                .args([
                    "race_child_writer",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("RACE_STORE", url)
                .env("RACE_INDEX", i.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn writer process")
        })
        .collect();
    let mut outcomes = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().expect("writer process");
        assert!(output.status.success(), "writer process {i} failed");
        let text = String::from_utf8_lossy(&output.stdout);
        let line = text
            .lines()
            // libtest prints the test's name on the same line, before the result.
            .find_map(|l| l.split_once("race-result ").map(|(_, result)| result))
            .unwrap_or_else(|| panic!("writer process {i} printed no result: {text}"));
        let mut fields = line.split(' ');
        let written = fields
            .next()
            .and_then(|f| f.strip_prefix("written="))
            .unwrap_or("");
        let fenced = fields.next() == Some("fenced=true");
        let ambiguous: usize = fields
            .next()
            .and_then(|f| f.strip_prefix("ambiguous="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        outcomes.push(Outcome {
            epoch: i as u64 / 2 + 1,
            written: written
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().expect("sequence"))
                .collect(),
            fenced,
            ambiguous,
        });
    }
    let storage = open_storage(url).expect("open the store");
    let (stored, fenced) = check(&format!("{name} processes"), storage, writers, &outcomes);
    println!("{name}, {writers} processes: {stored} checkpoints, {fenced} writers fenced");
}
