//! `ckpt demo --source redis-stream://...`: the crash demo on real streams of the shared test
//! redis-server, run as a user would.

use std::process::Command;

use checkpoint_testkit::servers::{ServerKind, shared_server_url};
use serde_json::Value;

#[test]
fn the_demo_on_four_redis_streams_processes_every_entry_once_and_leaves_nothing_pending() {
    let what = "ckpt demo --source redis-stream://";
    let Some(redis) = shared_server_url(ServerKind::Redis, what) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let source = format!(
        "{}?partitions=4&group=cli-test",
        redis.replacen("redis://", "redis-stream://", 1)
    );
    let output = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .current_dir(dir.path())
        .env_remove("CKPT_STORE")
        .args(["--json", "demo", "--messages", "4000", "--batch", "50"])
        .args(["--crash-every-avg", "150", "--data-dir", "data", "--source"])
        .arg(&source)
        .output()
        .expect("run ckpt demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ckpt demo failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("a JSON report");
    let number = |field: &str| report[field].as_u64().unwrap_or(u64::MAX);
    assert_eq!(report["ok"], Value::Bool(true), "{report}");
    assert!(number("crashes") > 0, "{report}");
    assert_eq!(number("pending"), 0, "{report}");
    assert_eq!(number("ack_violations"), 0, "{report}");
    assert_eq!(
        (number("duplicates"), number("missing")),
        (0, 0),
        "{report}"
    );
    assert_eq!(number("sink_rows"), 4000, "{report}");
    assert_eq!(report["sum"], report["expected_sum"], "{report}");
    assert_eq!(report["streams"].as_array().map(Vec::len), Some(4));
    assert!(dir.path().join("data/outputs.db").exists());
}
