//! What the SQLite backend promises beyond the shared contract: persistence across opens,
//! sharing one file between connections, schema versioning, its error mapping, its URL's
//! parameters, and that `synchronous=normal` loses nothing acked when the process is killed.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use checkpoint_host::storage::{
    OpenErrorKind, SqliteOptions, SqliteStorage, SqliteSynchronous, Storage, open_storage,
};
use checkpoint_host::{
    Checkpoint, Checkpointer, CommitOutcome, Consumer, Lookup, Options, ResumeOrigin, StorageError,
    Watermark, Write, WriteOp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn put(key: &str, expected: Option<u64>, value: &[u8]) -> Write {
    Write {
        key: key.to_owned(),
        expected_version: expected,
        op: WriteOp::Put(value.to_vec()),
    }
}

fn committed(s: &mut dyn Storage, writes: Vec<Write>) -> Vec<u64> {
    match s.commit(writes).expect("commit succeeds") {
        CommitOutcome::Committed(versions) => versions,
        CommitOutcome::Conflict(i) => panic!("unexpected conflict at {i}"),
    }
}

#[test]
fn committed_data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let v = {
        let mut s = SqliteStorage::open(&path).expect("open");
        committed(&mut s, vec![put("k", Some(0), b"durable")])[0]
    };
    let mut s = SqliteStorage::open(&path).expect("reopen");
    match s.get("k").expect("get") {
        Lookup::Found(entry) => {
            assert_eq!(entry.value, b"durable");
            assert_eq!(entry.version, v);
        }
        Lookup::Missing => panic!("the committed key is gone after reopening"),
    }
}

#[test]
fn versions_are_not_reused_across_reopen_after_delete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let v1 = {
        let mut s = SqliteStorage::open(&path).expect("open");
        let v1 = committed(&mut s, vec![put("k", Some(0), b"one")])[0];
        committed(
            &mut s,
            vec![Write {
                key: "k".into(),
                expected_version: Some(v1),
                op: WriteOp::Delete,
            }],
        );
        v1
    };
    let mut s = SqliteStorage::open(&path).expect("reopen");
    let v2 = committed(&mut s, vec![put("k", Some(0), b"two")])[0];
    assert!(v2 > v1, "version {v2} after reopen does not follow {v1}");
}

#[test]
fn two_connections_on_one_file_see_each_others_commits_and_conflict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let mut a = SqliteStorage::open(&path).expect("open a");
    let mut b = SqliteStorage::open(&path).expect("open b");
    let v = committed(&mut a, vec![put("k", Some(0), b"from a")])[0];
    assert_eq!(b.list_keys("").expect("list"), vec!["k".to_owned()]);
    // b read nothing yet and believes the key absent: its conditional write must lose.
    assert_eq!(
        b.commit(vec![put("k", Some(0), b"from b")])
            .expect("commit"),
        CommitOutcome::Conflict(0)
    );
    let v2 = committed(&mut b, vec![put("k", Some(v), b"from b")])[0];
    assert!(v2 > v);
    match a.get("k").expect("get") {
        Lookup::Found(entry) => assert_eq!(entry.value, b"from b"),
        Lookup::Missing => panic!("missing"),
    }
}

#[test]
fn a_database_with_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    drop(SqliteStorage::open(&path).expect("create"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    conn.execute("UPDATE ckpt_schema SET version = 99 WHERE id = 1", [])
        .expect("bump schema");
    drop(conn);
    let err = SqliteStorage::open(&path)
        .err()
        .expect("a newer schema must be refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("schema version 99"),
        "unclear error: {message}"
    );
    assert!(message.contains("newer"), "unclear error: {message}");
}

#[test]
fn a_commit_blocked_by_another_writer_times_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let mut s = SqliteStorage::open(&path).expect("open");
    let blocker = rusqlite::Connection::open(&path).expect("raw open");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let started = Instant::now();
    let result = s.commit(vec![put("k", None, b"v")]);
    assert!(
        matches!(result, Err(StorageError::Timeout(_))),
        "got {result:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "gave up before the busy timeout"
    );
    blocker.execute_batch("ROLLBACK").expect("release");
    // Reads are not blocked by a writer in WAL mode, and the failed commit left nothing.
    assert_eq!(s.get("k").expect("get"), Lookup::Missing);
    committed(&mut s, vec![put("k", None, b"v")]);
}

#[test]
fn open_storage_accepts_memory_and_sqlite_urls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut memory = open_storage("memory:").expect("memory:");
    committed(&mut *memory, vec![put("k", None, b"v")]);

    let path = dir.path().join("by-url.db");
    let mut sqlite = open_storage(&format!("sqlite:{}", path.display())).expect("sqlite:PATH");
    committed(&mut *sqlite, vec![put("k", None, b"v")]);
    assert!(path.is_file());

    let path2 = dir.path().join("by-url2.db");
    open_storage(&format!("sqlite://{}", path2.display())).expect("sqlite://PATH");
    assert!(path2.is_file());
}

#[test]
fn open_storage_rejects_unknown_urls_naming_the_accepted_schemes() {
    for url in [
        "postgresx://db",
        "checkpoints.db",
        "memory:extra",
        "sqlite:",
        "",
    ] {
        let message = match open_storage(url) {
            Ok(_) => panic!("{url:?} was accepted"),
            Err(e) => format!("{e:#}"),
        };
        if url != "sqlite:" {
            assert!(
                message.contains("memory:") && message.contains("sqlite:PATH"),
                "{url:?}: {message}"
            );
        }
    }
}

#[test]
fn open_storage_takes_the_sync_mode_from_the_url_and_refuses_unknown_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    for query in ["?synchronous=normal", "?synchronous=full", ""] {
        let path = dir.path().join(format!("by-url{}.db", query.len()));
        let url = format!("sqlite:{}{query}", path.display());
        let mut store = open_storage(&url).expect(&url);
        committed(&mut *store, vec![put("k", Some(0), b"v")]);
        // The parameters are not part of the file's name.
        assert!(path.is_file(), "{url}");
    }
    for (query, names) in [
        ("?synchronous=off", "synchronous=\"off\": expected full"),
        ("?synchronous=extra", "synchronous=\"extra\": expected full"),
        (
            "?durability=relaxed",
            "unknown sqlite URL parameter \"durability\"",
        ),
    ] {
        let path = dir.path().join("refused.db");
        let url = format!("sqlite:{}{query}", path.display());
        let err = open_storage(&url)
            .err()
            .expect("an unknown value must be refused");
        assert_eq!(err.kind(), OpenErrorKind::BadUrl, "{url}");
        assert!(err.message().contains(names), "{url}: {err}");
        assert!(!path.exists(), "{url}: a refused URL created the file");
    }
}

// ---------------------------------------------------------------------------------------------
// synchronous=normal, process crashes: a child process (this test binary again) writes and acks
// checkpoints on 2 stages and is SIGKILLed at a random moment, many times; after each kill every
// checkpoint it got a receipt for, and every message it acked, is in the file. A killed process
// leaves its writes to the operating system, so skipping the sync per commit must lose nothing
// here (the power-loss half is in power_loss.rs).

const CHILD_DB: &str = "SQLITE_NORMAL_CHILD_DB";
const CHILD_LOG: &str = "SQLITE_NORMAL_CHILD_LOG";
const CHILD_GROUPED: &str = "SQLITE_NORMAL_CHILD_GROUPED";
const KILL_STAGES: usize = 2;
const KILL_RUN: &str = "run";

fn kill_options() -> Options {
    Options {
        namespace: "normal".into(),
        max_retained: 3,
        max_checkpoint_bytes: 4096,
    }
}

/// The child's log: one line per fact, each line one `write` to a file opened for appending,
/// so a SIGKILL cannot lose a line whose `write` returned (the kernel has it).
#[derive(Clone)]
struct ChildLog(std::sync::Arc<File>);

impl ChildLog {
    fn line(&self, line: String) {
        (&*self.0)
            .write_all(line.as_bytes())
            .expect("writing the child's log");
    }
}

/// Logs `a <stage> <offset>` for every message acked (ids are `<stage>/<offset>`; a checkpoint
/// at offset n covers the messages below n).
struct LoggingConsumer(ChildLog);

impl Consumer for LoggingConsumer {
    fn ack(&mut self, ids: Vec<String>) -> Result<(), String> {
        for id in ids {
            let (stage, offset) = id.split_once('/').expect("id stage/offset");
            self.0.line(format!("a {stage} {offset}\n"));
        }
        Ok(())
    }
}

fn child_stage(db: &Path, grouped: bool, stage: usize, log: &ChildLog) {
    let storage: Box<dyn Storage> = if grouped {
        open_storage(&format!("sqlite:{}?synchronous=normal", db.display())).expect("open")
    } else {
        let options = SqliteOptions {
            group_commit: false,
            synchronous: SqliteSynchronous::Normal,
            ..SqliteOptions::default()
        };
        Box::new(SqliteStorage::open_with(db, &options).expect("open"))
    };
    let consumer = Box::new(LoggingConsumer(log.clone()));
    let mut c = Checkpointer::open(storage, consumer, &kill_options()).expect("checkpointer");
    let name = format!("stage-{stage}");
    let resume = c.resume_point(KILL_RUN, &name).expect("resume-point").point;
    // Until killed (the parent always kills it long before this ends).
    for i in 1..=1_000_000u64 {
        let offset = resume.watermark.offset + i;
        let checkpoint = Checkpoint {
            run_id: KILL_RUN.into(),
            stage: name.clone(),
            sequence: resume.sequence + i,
            epoch: 1,
            watermark: Watermark {
                offset,
                event_time_ms: offset as i64,
            },
            sources: vec![],
            sinks: vec![],
            operator_states: vec![],
            idempotency_key: String::new(),
            at_ms: 0,
        };
        // The batch is the message just before the new offset.
        let receipt = c
            .write(&checkpoint, &[format!("{stage}/{}", offset - 1)])
            .expect("write without a crash");
        log.line(format!("r {stage} {} {offset}\n", receipt.sequence));
    }
}

/// Entry point of the child: does nothing unless the parent set its environment.
#[test]
fn synchronous_normal_child_process() {
    let (Ok(db), Ok(log)) = (std::env::var(CHILD_DB), std::env::var(CHILD_LOG)) else {
        return;
    };
    let grouped = std::env::var(CHILD_GROUPED).is_ok_and(|g| g == "1");
    let log = ChildLog(std::sync::Arc::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("child log"),
    ));
    let db = PathBuf::from(db);
    std::thread::scope(|scope| {
        for stage in 0..KILL_STAGES {
            let (db, log) = (&db, &log);
            scope.spawn(move || child_stage(db, grouped, stage, log));
        }
    });
    std::process::exit(0);
}

/// Per stage: the last (sequence, offset) receipted and the highest offset acked in a log.
fn read_child_log(path: &Path) -> (Vec<(u64, u64)>, Vec<u64>, u64) {
    let mut receipted = vec![(0, 0); KILL_STAGES];
    let mut acked = vec![0; KILL_STAGES];
    let mut receipts = 0;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line cut by the kill has no newline yet: it was never complete, so never relied on.
    for line in text.lines().take(text.matches('\n').count()) {
        let fields: Vec<u64> = line[2..]
            .split(' ')
            .map(|f| f.parse().expect("number in the child log"))
            .collect();
        let stage = fields[0] as usize;
        match &line[..1] {
            "r" => {
                receipts += 1;
                receipted[stage] = receipted[stage].max((fields[1], fields[2]));
            }
            _ => acked[stage] = acked[stage].max(fields[1] + 1),
        }
    }
    (receipted, acked, receipts)
}

#[test]
fn synchronous_normal_never_loses_an_acked_checkpoint_when_the_process_is_killed() {
    let kills: u32 = std::env::var("SQLITE_NORMAL_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("SQLITE_NORMAL_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("store.db");
    let exe = std::env::current_exe().expect("test binary");
    let (mut acked_total, mut lost, mut regressions, mut resume_failures) =
        (0u64, 0u64, 0u64, 0u64);
    let mut resumed = [(0u64, 0u64); KILL_STAGES];
    let mut examples = Vec::new();
    for kill in 0..kills {
        let grouped = kill % 2 == 0;
        let log = dir.path().join(format!("child-{kill}.log"));
        let stderr = dir.path().join(format!("child-{kill}.stderr"));
        let mut child = Command::new(&exe)
            .args([
                "synchronous_normal_child_process",
                "--exact",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &db)
            .env(CHILD_LOG, &log)
            .env(CHILD_GROUPED, if grouped { "1" } else { "0" })
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("child stderr file"))
            .spawn()
            .expect("starting the child");
        // Kill after a random number of receipts, so kills land all along the workload (in a
        // commit, between a commit and its ack, between two writes).
        let receipts = rng.random_range(1..=60u64);
        loop {
            if let Some(status) = child.try_wait().expect("child status") {
                panic!(
                    "the child ended on its own ({status}); stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            if read_child_log(&log).2 >= receipts {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..2_000)));
        child.kill().expect("SIGKILL the child");
        let status = child.wait().expect("waiting for the killed child");
        assert!(
            status.code().is_none(),
            "the child was not killed: {status}"
        );
        let (receipted, acked, _) = read_child_log(&log);
        // Open as a restarted worker would; reading never writes.
        let storage = SqliteStorage::open(&db).expect("the store opens after a kill");
        let mut c = Checkpointer::open(
            Box::new(storage),
            Box::new(checkpoint_host::consumer::NullConsumer),
            &kill_options(),
        )
        .expect("checkpointer");
        for stage in 0..KILL_STAGES {
            let resume = match c.resume_point(KILL_RUN, &format!("stage-{stage}")) {
                Ok(r) => r,
                Err(e) => {
                    resume_failures += 1;
                    examples.push(format!("kill {kill}, stage {stage}: resume-point: {e}"));
                    continue;
                }
            };
            if matches!(resume.origin, ResumeOrigin::Fallback(_)) {
                resume_failures += 1;
                examples.push(format!("kill {kill}, stage {stage}: fell back"));
            }
            let at = (resume.point.sequence, resume.point.watermark.offset);
            acked_total += receipted[stage].0.saturating_sub(resumed[stage].0);
            if at < receipted[stage] || at.1 < acked[stage] {
                lost += receipted[stage].0.saturating_sub(at.0).max(1);
                examples.push(format!(
                    "kill {kill}, stage {stage}: resumed at {at:?}, but {:?} was receipted and \
                     offset {} acked",
                    receipted[stage], acked[stage]
                ));
            }
            if at < resumed[stage] {
                regressions += 1;
                examples.push(format!(
                    "kill {kill}, stage {stage}: resumed at {at:?} after {:?}",
                    resumed[stage]
                ));
            }
            resumed[stage] = resumed[stage].max(at);
        }
    }
    // Straight to stderr, past libtest's capture: `make test` shows the figures.
    writeln!(
        std::io::stderr().lock(),
        "sqlite synchronous=normal, process kills: {kills} kills ({} grouped, {} alone), \
         {acked_total} acked checkpoints, {lost} lost, {regressions} regressions, \
         {resume_failures} resume failures (SQLITE_NORMAL_SEED={seed} replays the kill points)",
        kills.div_ceil(2),
        kills / 2
    )
    .expect("stderr");
    assert_eq!(
        lost + regressions + resume_failures,
        0,
        "seed {seed}: {examples:#?}"
    );
    assert!(
        kills > 0 && acked_total > 0,
        "no checkpoint was acked before a kill: the test exercised nothing"
    );
}
