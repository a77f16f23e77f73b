//! The README's Redis Streams example (section "Sources that redeliver, and work that finishes
//! out of order"), run as written, in processes killed with SIGKILL.
//!
//! The README's block is `host/examples/redis_streams.rs` byte for byte (checked here); this
//! test includes that file and runs its `run` in worker processes (this binary re-run as
//! `example_process`) on a real redis-server. The parent kills them at random moments 22
//! times, restarting each, then lets one finish, and checks what a user of the example would:
//! the total equals a crash-free run's and the expected one; the sink holds one row per entry
//! (0 duplicates, 0 missing), equal to the crash-free run's; 0 entries pending in the group.
//! The example has no skip, trim or replay code of its own: the driver skips and acks
//! redeliveries, the sink truncates at its recorded position, the driver acks again at open.

#[allow(
    dead_code,
    reason = "its `main` is the example binary's; the test calls `run`"
)]
#[path = "../examples/redis_streams.rs"]
mod example;

use checkpoint_testkit::servers::{self as common, ServerKind};

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use checkpoint_host::Checkpointer;
use checkpoint_host::consumer::NullConsumer;
use checkpoint_host::storage::open_storage;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

const SECTION: &str = "## Sources that redeliver, and work that finishes out of order";
const ENV_EXAMPLE: &str = "README_REDIS_STREAMS_EXAMPLE";
/// The example's names.
const STREAM: &str = "orders";
const GROUP: &str = "totals";
const ENTRIES: u64 = 3_000;
const KILLS: u32 = 22;
const MAX_STARTS: u32 = 200;
/// Redis databases of the killed and the crash-free run: the example's names are fixed.
const KILLED_DB: u32 = 11;
const CRASH_FREE_DB: u32 = 12;

/// The first ```rust block of the README's section.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme.find(SECTION).expect("the README section") + SECTION.len();
    let section = &readme[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let open = section
        .find("\n```rust")
        .expect("a ```rust block in the section");
    let body = &section[open + 1..];
    let body = &body[body.find('\n').expect("the fence line") + 1..];
    body[..body.find("\n```").expect("the closing fence") + 1].to_owned()
}

#[test]
fn the_readme_shows_the_example_that_is_run_here() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/redis_streams.rs"
    ))
    .expect("the example");
    assert!(
        readme_block() == example,
        "the README's block under {SECTION:?} must be host/examples/redis_streams.rs, as is"
    );
}

/// Entry point of a worker process: runs the example when the parent set its environment.
#[test]
fn example_process() {
    let Ok(config) = std::env::var(ENV_EXAMPLE) else {
        return;
    };
    let (url, dir) = config.split_once('|').expect("URL|DIR");
    match example::run(url, Path::new(dir)) {
        Ok(total) => {
            println!("total {total}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("example failed: {e}");
            std::process::exit(1);
        }
    }
}

/// One copy of the input, in a Redis database of its own, and what a correct run makes of it.
struct Input {
    url: String,
    redis: redis::Connection,
    added: u64,
    /// The running total after each entry, in order.
    totals: Vec<i64>,
}

impl Input {
    fn new(server: &str, db: u32) -> Input {
        assert!(
            server.ends_with('/'),
            "a server URL without a database: {server}"
        );
        let url = format!("{server}{db}");
        let mut redis = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .expect("connecting to redis");
        let _: () = redis::cmd("DEL")
            .arg(STREAM)
            .query(&mut redis)
            .expect("DEL");
        Input {
            url,
            redis,
            added: 0,
            totals: Vec::new(),
        }
    }

    fn add(&mut self, count: u64) {
        let mut pipe = redis::pipe();
        let mut total = self.totals.last().copied().unwrap_or(0);
        for i in self.added..self.added + count {
            let amount = (i as i64 * 37) % 101 - 20;
            pipe.cmd("XADD")
                .arg(STREAM)
                .arg("*")
                .arg("amount")
                .arg(amount)
                .ignore();
            total += amount;
            self.totals.push(total);
        }
        let () = pipe.query(&mut self.redis).expect("XADD");
        self.added += count;
    }

    fn pending(&mut self) -> i64 {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(STREAM)
            .arg(GROUP)
            .query(&mut self.redis)
            .expect("XPENDING");
        match reply {
            redis::Value::Array(parts) => match parts.first() {
                Some(redis::Value::Int(n)) => *n,
                other => panic!("XPENDING count {other:?}"),
            },
            other => panic!("XPENDING reply {other:?}"),
        }
    }
}

fn spawn(input: &Input, dir: &Path, n: u32) -> (Child, PathBuf) {
    let stderr = dir.join(format!("worker-{n}.stderr"));
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["example_process", "--exact", "--test-threads=1"])
        .env(ENV_EXAMPLE, format!("{}|{}", input.url, dir.display()))
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).expect("worker stderr file"))
        .spawn()
        .expect("starting a worker process");
    (child, stderr)
}

fn run_to_end(input: &Input, dir: &Path) -> Duration {
    let started = Instant::now();
    let (mut child, stderr) = spawn(input, dir, 0);
    let status = child.wait().expect("waiting for the example");
    assert!(
        status.success(),
        "the crash-free run failed ({status}):\n{}",
        std::fs::read_to_string(stderr).unwrap_or_default()
    );
    started.elapsed()
}

/// The sink's rows: (position, key, running total).
fn sink_rows(dir: &Path) -> Vec<(i64, String, i64)> {
    let conn = rusqlite::Connection::open(dir.join("totals.db")).expect("the sink file");
    let mut stmt = conn
        .prepare("SELECT position, key, value FROM totals ORDER BY position")
        .expect("reading the sink");
    stmt.query_map([], |r| {
        let value: Vec<u8> = r.get(2)?;
        let total = String::from_utf8_lossy(&value).parse().unwrap_or(i64::MIN);
        Ok((r.get(0)?, r.get(1)?, total))
    })
    .expect("reading the sink")
    .collect::<Result<_, _>>()
    .expect("sink rows")
}

/// The total the example's last checkpoint carries.
fn checkpointed_total(dir: &Path) -> i64 {
    let storage = open_storage(&format!("sqlite:{}", dir.join("checkpoints.db").display()))
        .expect("the example's store");
    let options = checkpoint_host::Options {
        namespace: "orders".into(),
        max_retained: 3,
        max_checkpoint_bytes: 1 << 20,
    };
    let mut reader =
        Checkpointer::open(storage, Box::new(NullConsumer), &options).expect("a checkpointer");
    let latest = reader.get("orders", "totals").expect("the last checkpoint");
    let bytes = latest.operator_state("total").expect("the total");
    i64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}

#[test]
fn the_readme_example_keeps_its_total_and_output_exact_across_kills() {
    let what = "the README's Redis Streams example";
    let Some(server) = common::shared_server_url(ServerKind::Redis, what) else {
        return;
    };
    let scratch = tempfile::tempdir().expect("temporary directory");
    let (killed_dir, crash_free_dir) = (scratch.path().join("killed"), scratch.path().join("free"));
    std::fs::create_dir_all(&killed_dir).expect("a directory");
    std::fs::create_dir_all(&crash_free_dir).expect("a directory");
    let mut killed_input = Input::new(&server, KILLED_DB);
    let mut crash_free_input = Input::new(&server, CRASH_FREE_DB);
    killed_input.add(ENTRIES);
    crash_free_input.add(ENTRIES);

    let crash_free = run_to_end(&crash_free_input, &crash_free_dir);
    let seed = rand::random();
    let mut rng = StdRng::seed_from_u64(seed);
    let bound = u64::try_from((crash_free / 4).as_micros()).unwrap_or(u64::MAX);
    let started = Instant::now();
    let (mut kills, mut starts) = (0u32, 0u32);
    loop {
        assert!(
            starts < MAX_STARTS,
            "no run finished in {MAX_STARTS} starts"
        );
        let (mut child, stderr) = spawn(&killed_input, &killed_dir, starts);
        starts += 1;
        let pause = (kills < KILLS).then(|| Duration::from_micros(rng.random_range(0..=bound)));
        let spawned = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("polling the example") {
                break status;
            }
            if pause.is_some_and(|p| spawned.elapsed() >= p) {
                child.kill().expect("SIGKILL");
                break child.wait().expect("reaping the example");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        if status.signal() == Some(9) {
            kills += 1;
            continue;
        }
        assert!(
            status.success(),
            "the example failed ({status}):\n{}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
        if kills >= KILLS {
            break;
        }
        // Finished before its kill: the producer goes on, in both copies.
        killed_input.add(ENTRIES / 10);
        crash_free_input.add(ENTRIES / 10);
    }
    let killed_elapsed = started.elapsed();
    if crash_free_input.added > ENTRIES {
        run_to_end(&crash_free_input, &crash_free_dir);
    }

    let rows = sink_rows(&killed_dir);
    let crash_free_rows = sink_rows(&crash_free_dir);
    let mut keys = BTreeSet::new();
    let duplicates = rows
        .iter()
        .filter(|(_, k, _)| !keys.insert(k.clone()))
        .count();
    let entries = killed_input.added;
    let missing = (entries as usize).saturating_sub(keys.len());
    let totals: Vec<i64> = rows.iter().map(|r| r.2).collect();
    let crash_free_totals: Vec<i64> = crash_free_rows.iter().map(|r| r.2).collect();
    let total = checkpointed_total(&killed_dir);
    let pending = killed_input.pending();
    // Straight to stderr, past libtest's capture: `make test` shows the figures.
    let _ = writeln!(
        std::io::stderr().lock(),
        "README Redis Streams example: {entries} entries, {kills} kills over {starts} starts; \
         total {total} (crash-free run {}, expected {}); sink rows {} ({duplicates} \
         duplicates, {missing} missing); pending at the end {pending}; throughput crash-free \
         {:.0} entries/s, with kills {:.0} entries/s (seed {seed})",
        checkpointed_total(&crash_free_dir),
        killed_input.totals.last().copied().unwrap_or(0),
        rows.len(),
        ENTRIES as f64 / crash_free.as_secs_f64(),
        entries as f64 / killed_elapsed.as_secs_f64(),
    );
    assert!(kills >= 20, "only {kills} kills");
    assert_eq!((duplicates, missing), (0, 0), "duplicate and missing rows");
    assert!(
        rows.iter().enumerate().all(|(i, r)| r.0 == i as i64 + 1),
        "sink positions are not 1..=n"
    );
    assert_eq!(
        totals, killed_input.totals,
        "the running totals in the sink"
    );
    assert_eq!(
        totals, crash_free_totals,
        "the sink differs from the crash-free run's"
    );
    assert_eq!(Some(&total), killed_input.totals.last(), "the total");
    assert_eq!(
        total,
        checkpointed_total(&crash_free_dir),
        "the crash-free total"
    );
    assert_eq!(pending, 0, "entries left pending in the group");
}
