//! The `ckpt` binary, run as a user would: each test owns a temp dir with its own SQLite store.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// A scratch directory and a store in it.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("checkpoints.db")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ckpt"));
        command
            .current_dir(self.dir.path())
            .env_remove("CKPT_STORE")
            .arg("--store")
            .arg(format!("sqlite:{}", self.db().display()));
        command
    }

    /// Runs `ckpt --store sqlite:<tmp> ARGS`; `args` is split at whitespace.
    fn ckpt(&self, args: &str) -> Output {
        self.command()
            .args(args.split_whitespace())
            .output()
            .expect("run ckpt")
    }

    /// Runs `ckpt ... ARGS` with `input` on stdin.
    fn ckpt_with_stdin(&self, args: &str, input: &[u8]) -> Output {
        let mut child = self
            .command()
            .args(args.split_whitespace())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ckpt");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait for ckpt")
    }

    /// Writes checkpoint `sequence` of r1/s1 at `offset` with `epoch`.
    fn write(&self, sequence: u64, offset: u64, epoch: u64) -> Output {
        let event_time = 1_000 + offset;
        self.ckpt(&format!(
            "--json write --run r1 --stage s1 --sequence {sequence} --offset {offset} \
             --epoch {epoch} --event-time-ms {event_time} --at-ms 1700000000000"
        ))
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one JSON document of a successful command.
fn json(output: &Output) -> Value {
    assert_eq!(code(output), 0, "ckpt failed: {}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

/// The stored bytes under `key`, read from the SQLite file behind the library's back.
fn stored_value(db: &Path, key: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open(db).expect("open db");
    conn.query_row(
        &format!("SELECT {VALUE_COLUMN} FROM {TABLE} WHERE {KEY_COLUMN} = ?1"),
        [key],
        |row| row.get(0),
    )
    .expect("stored value")
}

/// Replaces the stored bytes under `key`, as a bad disk or a stray tool would.
fn overwrite_value(db: &Path, key: &str, value: &[u8]) {
    let conn = rusqlite::Connection::open(db).expect("open db");
    let changed = conn
        .execute(
            &format!("UPDATE {TABLE} SET {VALUE_COLUMN} = ?1 WHERE {KEY_COLUMN} = ?2"),
            rusqlite::params![value, key],
        )
        .expect("update value");
    assert_eq!(changed, 1, "no row for {key}");
}

// The SQLite table layout of `SqliteStorage` (host/src/storage/sqlite-schema.sql).
const TABLE: &str = "ckpt_entries";
const KEY_COLUMN: &str = "key";
const VALUE_COLUMN: &str = "value";

const LATEST_KEY: &str = "ckpt/default/r1/s1/latest";

#[test]
fn write_get_resume_history_delete_round_trip_on_sqlite() {
    let scratch = Scratch::new();

    let receipt = json(&scratch.ckpt("--json write --run r1 --stage s1 --sequence 1 --offset 10 --event-time-ms 1010 --ack m-0 m-9"));
    assert_eq!(receipt["receipt"]["sequence"], 1);
    assert_eq!(receipt["acked"], serde_json::json!(["m-0", "m-9"]));
    json(&scratch.write(2, 20, 0));

    let latest = json(&scratch.ckpt("--json get --run r1 --stage s1"));
    assert_eq!(latest["sequence"], 2);
    assert_eq!(latest["watermark"]["offset"], 20);

    let resume = json(&scratch.ckpt("--json resume --run r1 --stage s1"));
    assert_eq!(resume["point"]["sequence"], 2);
    assert_eq!(resume["point"]["watermark"]["offset"], 20);

    let history = json(&scratch.ckpt("--json history --run r1 --stage s1"));
    let sequences: Vec<&Value> = history["checkpoints"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| &c["sequence"])
        .collect();
    assert_eq!(sequences, [1, 2]);

    let deleted = json(&scratch.ckpt("--json delete --run r1 --stage s1"));
    assert!(deleted["removed"].as_u64().expect("count") >= 1);
    assert_eq!(code(&scratch.ckpt("get --run r1 --stage s1")), 3);
}

#[test]
fn human_output_names_the_checkpoint_and_the_acks() {
    let scratch = Scratch::new();
    let output =
        scratch.ckpt("write --run r1 --stage s1 --sequence 1 --offset 3 --ack m-0 m-1 m-2");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("acked m-0 m-1 m-2"), "{text}");
    assert!(text.contains("wrote r1/s1 sequence 1"), "{text}");
}

#[test]
fn write_from_json_accepts_what_get_prints() {
    let scratch = Scratch::new();
    json(&scratch.write(1, 10, 0));
    let mut checkpoint = json(&scratch.ckpt("--json get --run r1 --stage s1"));
    checkpoint["sequence"] = 2.into();
    checkpoint["watermark"]["offset"] = 11.into();
    let doc = serde_json::to_vec(&checkpoint).expect("json");
    json(&scratch.ckpt_with_stdin("--json write --from-json -", &doc));
    let latest = json(&scratch.ckpt("--json get --run r1 --stage s1"));
    assert_eq!(latest, checkpoint);
}

#[test]
fn get_of_an_unknown_stage_exits_3() {
    let scratch = Scratch::new();
    let output = scratch.ckpt("get --run nobody --stage nothing");
    assert_eq!(code(&output), 3, "{}", stderr(&output));
    assert!(stderr(&output).contains("not found"), "{}", stderr(&output));
}

#[test]
fn regression_exits_8_and_leaves_the_latest() {
    let scratch = Scratch::new();
    json(&scratch.write(5, 50, 0));
    let output = scratch.write(4, 40, 0);
    assert_eq!(code(&output), 8, "{}", stderr(&output));
    let error: Value = serde_json::from_str(stderr(&output).trim()).expect("JSON error on stderr");
    assert_eq!(error["error"]["kind"], "regression");
    assert_eq!(error["error"]["exit_code"], 8);
    let latest = json(&scratch.ckpt("--json get --run r1 --stage s1"));
    assert_eq!(latest["sequence"], 5);
}

#[test]
fn older_epoch_is_fenced_with_exit_6() {
    let scratch = Scratch::new();
    json(&scratch.write(1, 10, 2));
    assert_eq!(code(&scratch.write(2, 20, 1)), 6);
}

#[test]
fn usage_errors_exit_2() {
    let scratch = Scratch::new();
    assert_eq!(code(&scratch.ckpt("get --run r1")), 2);
    assert_eq!(code(&scratch.ckpt("demo --messages 0")), 2);
    assert_eq!(code(&scratch.ckpt("write --from-json x.json --run r1")), 2);
}

#[test]
fn inspect_decodes_stored_bytes() {
    let scratch = Scratch::new();
    json(&scratch.write(3, 30, 0));
    let file = scratch.path("checkpoint.bin");
    std::fs::write(&file, stored_value(&scratch.db(), LATEST_KEY)).expect("write file");
    let checkpoint = json(&scratch.ckpt(&format!("--json inspect {}", file.display())));
    assert_eq!(checkpoint["sequence"], 3);
    assert_eq!(checkpoint["run_id"], "r1");
}

#[test]
fn inspect_of_a_flipped_byte_exits_4_naming_crc_mismatch() {
    let scratch = Scratch::new();
    json(&scratch.write(3, 30, 0));
    let mut bytes = stored_value(&scratch.db(), LATEST_KEY);
    // A byte in the middle: inside the body, so the CRC (not the magic or a length) catches it.
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let file = scratch.path("damaged.bin");
    std::fs::write(&file, &bytes).expect("write file");

    let output = scratch.ckpt(&format!("inspect {}", file.display()));
    assert_eq!(code(&output), 4, "{}", stderr(&output));
    assert!(
        stderr(&output).contains("crc-mismatch"),
        "{}",
        stderr(&output)
    );

    let output = scratch.ckpt_with_stdin("--json inspect -", &bytes);
    assert_eq!(code(&output), 4);
    let error: Value = serde_json::from_str(stderr(&output).trim()).expect("JSON error on stderr");
    assert_eq!(error["error"]["kind"], "corrupt");
}

#[test]
fn verify_passes_an_intact_store() {
    let scratch = Scratch::new();
    for sequence in 1..=10 {
        json(&scratch.write(sequence, sequence * 10, 0));
    }
    let report = json(&scratch.ckpt("--json verify"));
    assert_eq!(report["ok"], true);
    assert_eq!(report["stages"], 1);
    assert_eq!(report["problems"], serde_json::json!([]));
}

#[test]
fn verify_reports_a_damaged_value_and_exits_4() {
    let scratch = Scratch::new();
    for sequence in 1..=3 {
        json(&scratch.write(sequence, sequence * 10, 0));
    }
    let mut bytes = stored_value(&scratch.db(), LATEST_KEY);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    overwrite_value(&scratch.db(), LATEST_KEY, &bytes);

    let output = scratch.ckpt("--json verify");
    assert_eq!(code(&output), 4, "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("report on stdout");
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .any(|p| p["key"] == LATEST_KEY && p["kind"] == "crc-mismatch"),
        "{problems:?}"
    );

    let text = String::from_utf8_lossy(&scratch.ckpt("verify").stdout).into_owned();
    assert!(
        text.contains("crc-mismatch") && text.contains(LATEST_KEY),
        "{text}"
    );
}

#[test]
fn verify_reports_a_value_stored_under_another_stage() {
    let scratch = Scratch::new();
    json(&scratch.write(1, 10, 0));
    json(&scratch.ckpt("--json write --run r2 --stage s1 --sequence 1"));
    let foreign = stored_value(&scratch.db(), "ckpt/default/r2/s1/latest");
    overwrite_value(&scratch.db(), LATEST_KEY, &foreign);

    let output = scratch.ckpt("--json verify");
    assert_eq!(code(&output), 4, "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("report on stdout");
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["kind"] == "misplaced"),
        "{problems:?}"
    );
}

#[test]
fn demo_of_20000_messages_crashes_and_acks_only_durable_messages() {
    let scratch = Scratch::new();
    let output = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .current_dir(scratch.dir.path())
        .env_remove("CKPT_STORE")
        .args([
            "--json",
            "demo",
            "--messages",
            "20000",
            "--seed",
            "7",
            "--data-dir",
            "demo",
        ])
        .output()
        .expect("run demo");
    let report = json(&output);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["ack_violations"], 0);
    assert_eq!(report["regressions"], 0);
    assert_eq!(report["unacked"], 0);
    assert_eq!(report["final_offset"], 20000);
    assert!(report["crashes"].as_u64().expect("crashes") > 0, "{report}");
    assert!(
        report["redeliveries"].as_u64().expect("redeliveries") > 0,
        "{report}"
    );
    assert!(
        report["checkpoints"].as_u64().expect("checkpoints") >= 200,
        "{report}"
    );
    assert!(scratch.path("demo/checkpoints.db").exists());
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    port
}

#[test]
fn an_unreachable_server_exits_with_the_storage_code_naming_it_without_the_password() {
    for (url, says) in [
        (
            "postgres://ckpt:hunter2@127.0.0.1:{port}/ckpt?connect_timeout_ms=2000",
            "cannot connect",
        ),
        (
            "redis://ckpt:hunter2@127.0.0.1:{port}/?connect_timeout_ms=2000",
            "unavailable",
        ),
    ] {
        let port = closed_port();
        let url = url.replace("{port}", &port.to_string());
        let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .args(["--store", &url, "get", "--run", "r", "--stage", "s"])
            .output()
            .expect("run ckpt");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(9),
            "an unreachable store exits with the storage code: {stderr}"
        );
        assert!(
            stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains(says),
            "ckpt says which server it could not reach: {stderr}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "ckpt shows the password: {stderr}"
        );
    }
}
