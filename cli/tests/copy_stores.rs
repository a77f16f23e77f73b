//! `ckpt copy` from the embedded store to the shared ones: a SQLite store of 1,000 stages
//! copied to PostgreSQL and to Redis (the shared test servers), `ckpt verify` clean on every
//! side, and the chain signature of every stage equal everywhere.

use std::process::{Command, Output};

use checkpoint_host::{
    Checkpoint, Checkpointer, Codec, Options, ResetRequest, Watermark, consumer::NullConsumer,
    storage::open_storage,
};
use checkpoint_testkit::servers::{ServerKind, fresh_store_url, shared_server_url};
use serde_json::Value;

const NAMESPACE: &str = "copied";
const STAGES: u64 = 1_000;
const WRITES: u64 = 3;
/// Every this many stages, one savepoint (of sequence 1).
const SAVEPOINT_EVERY: u64 = 100;

fn options() -> Options {
    Options {
        namespace: NAMESPACE.into(),
        max_retained: 3,
        max_checkpoint_bytes: 1 << 20,
    }
}

fn open(url: &str) -> Checkpointer {
    let storage = open_storage(url).unwrap_or_else(|e| panic!("opening {url}: {e}"));
    Checkpointer::open(storage, Box::new(NullConsumer), &options()).expect("open checkpointer")
}

/// Stage `n`: ten runs of a hundred stages each.
fn ids(n: u64) -> (String, String) {
    (format!("run-{}", n % 10), format!("stage-{n:04}"))
}

/// 1,000 stages of 3 writes each, a savepoint every 100 stages, and one reset (a record that
/// must travel with its bytes).
fn fill(url: &str) {
    let mut checkpointer = open(url);
    for n in 0..STAGES {
        let (run_id, stage) = ids(n);
        for sequence in 1..=WRITES {
            let checkpoint = Checkpoint {
                run_id: run_id.clone(),
                stage: stage.clone(),
                sequence,
                epoch: 1,
                watermark: Watermark {
                    offset: n * 1_000 + sequence * 10,
                    event_time_ms: 1_733_238_983_000,
                },
                sources: Vec::new(),
                sinks: Vec::new(),
                operator_states: Vec::new(),
                idempotency_key: format!("k-{n}-{sequence}"),
                at_ms: 1_733_238_983_000 + sequence,
            };
            checkpointer
                .write(&checkpoint, &[format!("m-{n}-{sequence}")])
                .expect("write");
        }
        if n % SAVEPOINT_EVERY == 0 {
            checkpointer
                .create_savepoint(&run_id, &stage, "before-deploy", Some(1))
                .expect("savepoint");
        }
    }
    let (run_id, stage) = ids(7);
    checkpointer
        .reset(&ResetRequest {
            run_id,
            stage,
            watermark: Watermark {
                offset: 5,
                event_time_ms: 0,
            },
            sources: Vec::new(),
            state: None,
            epoch: None,
            at_ms: 1_733_238_990_000,
        })
        .expect("reset");
}

fn ckpt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .env_remove("CKPT_STORE")
        .args(["--namespace", NAMESPACE, "--max-retained", "3"])
        .args(args)
        .output()
        .expect("run ckpt")
}

fn json(output: &Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "ckpt failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

/// The chain signature of every stage's history, in stage order.
fn signatures(url: &str) -> Vec<String> {
    let mut checkpointer = open(url);
    let mut codec = Codec::new().expect("codec");
    (0..STAGES)
        .map(|n| {
            let (run_id, stage) = ids(n);
            let history = checkpointer.history(&run_id, &stage).expect("history");
            assert!(!history.is_empty(), "{run_id}/{stage} has a history");
            codec.chain_signature(&history).expect("signature")
        })
        .collect()
}

#[test]
fn a_sqlite_store_of_1000_stages_copies_to_postgres_and_redis_and_verifies_on_every_side() {
    let what = "ckpt copy of 1,000 stages";
    let targets: Vec<(ServerKind, String)> = ServerKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let url = shared_server_url(kind, what)?;
            Some((kind, fresh_store_url(kind, &url, "ckpt_copy")))
        })
        .collect();
    if targets.is_empty() {
        // CKPT_SKIP_SERVER_TESTS=1, announced loudly by `shared_server_url`.
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let source = format!("sqlite:{}", dir.path().join("source.db").display());
    fill(&source);
    let source_report = json(&ckpt(&["--store", &source, "--json", "verify"]));
    assert_eq!(source_report["ok"], true, "{source_report}");
    let expected_signatures = signatures(&source);

    for (kind, target) in &targets {
        let report = json(&ckpt(&[
            "--json", "copy", "--from", &source, "--to", target,
        ]));
        assert_eq!(report["stages"], STAGES, "{}: {report}", kind.name());
        assert_eq!(report["created"], STAGES, "{}", kind.name());
        assert_eq!(report["verified"], STAGES, "{}", kind.name());
        assert_eq!(report["refused"], serde_json::json!([]), "{}", kind.name());
        assert_eq!(
            report["mismatches"],
            serde_json::json!([]),
            "{}",
            kind.name()
        );
        assert_eq!(report["savepoints"], STAGES / SAVEPOINT_EVERY);

        let verified = json(&ckpt(&["--store", target, "--json", "verify"]));
        assert_eq!(verified["ok"], true, "{}: {verified}", kind.name());
        for field in [
            "keys",
            "stages",
            "latest",
            "retained",
            "savepoints",
            "intact",
        ] {
            assert_eq!(
                verified[field],
                source_report[field],
                "{}: {field}",
                kind.name()
            );
        }
        assert_eq!(
            signatures(target),
            expected_signatures,
            "{}: chain signatures",
            kind.name()
        );

        // Safe to re-run: every stage is already there, nothing is written.
        let again = json(&ckpt(&[
            "--json", "copy", "--from", &source, "--to", target,
        ]));
        assert_eq!(again["identical"], STAGES, "{}", kind.name());
        assert_eq!(again["keys_written"], 0, "{}", kind.name());
        assert_eq!(again["verified"], STAGES, "{}", kind.name());
    }
}
