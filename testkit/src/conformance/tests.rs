//! The expander and the checker on small hand-made cases (the matching rules are tested in
//! `matching.rs`), and the repository's own case files.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

fn golden(name: &str) -> wit::Res<Vec<u8>> {
    match name {
        "four.bin" => Ok(vec![0x00, 0x0f, 0xf0, 0xff]),
        other => Err(format!("no vector {other}")),
    }
}

/// Expands one file holding `cases`.
fn expand_cases(cases: Value) -> Result<Value, Vec<String>> {
    let text = json!({"description": "test", "cases": cases}).to_string();
    expand(&[("t.json".to_owned(), text)], &golden)
}

fn one_case(steps: Value) -> Value {
    let doc = expand_cases(json!([{"name": "c", "steps": steps}])).expect("expands");
    doc["cases"][0].clone()
}

fn errors(cases: Value) -> String {
    expand_cases(cases).expect_err("must not expand").join("\n")
}

#[test]
fn defaults_are_filled_and_integers_are_decimal_strings() {
    let case = one_case(
        json!([{"op": "write", "checkpoint": {"sequence": 1, "watermark": {"event-time-ms": -5}}}]),
    );
    assert_eq!(
        case["options"],
        json!({"namespace": "test", "max-retained": "1", "max-checkpoint-bytes": "65536"})
    );
    let step = &case["steps"][0];
    assert_eq!(
        step["checkpoint"],
        json!({"run-id": "run", "stage": "stage", "sequence": "1", "epoch": "1",
            "watermark": {"offset": "0", "event-time-ms": "-5"}, "sources": [], "sinks": [],
            "operator-states": [], "idempotency-key": "", "at-ms": "0"})
    );
    assert_eq!(step["batch"], json!([]));
    assert_eq!(step["storage"], json!([]));
    assert_eq!(step["consumer"], json!([]));
    assert_eq!(step["record"], json!(["result", "calls"]));
    assert_eq!(step["expect"], json!({"result": "ok"}));
    assert_eq!(step["from"], json!("step 0"));
}

#[test]
fn every_op_gets_explicit_inputs() {
    let case = one_case(json!([
        {"op": "open-driver", "driver": {"policy": {"per-batch": 2}}},
        {"op": "record-processed", "message": {"id": "m1"}, "storage": [{"call": "commit", "fault": "conflict"}],
            "consumer": [{}]},
        {"op": "flush"},
        {"op": "get", "stage": "s"},
        {"op": "corrupt", "key": "k", "replace": {"hex": "AB cd"}},
        {"op": "put-raw", "key": "k", "vector": "four.bin"},
        {"op": "crash"},
        {"op": "decode", "hex": "00", "expect": {"ok": {"$vector": "four.bin"}}},
    ]));
    let s = &case["steps"];
    assert_eq!(
        s[0]["driver"],
        json!({"run-id": "run", "stage": "stage", "epoch": "1", "policy": {"per-batch": "2"},
            "changelog-capacity": "0", "overflow": "drop-new", "max-in-flight": "1024"})
    );
    assert_eq!(
        s[1]["message"],
        json!({"id": "m1", "next-offset": "0", "event-time-ms": "0"})
    );
    assert_eq!(s[1]["now-ms"], json!("0"));
    assert_eq!(
        s[1]["storage"],
        json!([{"call": "commit", "nth": "1", "fault": "conflict", "index": "0"}])
    );
    assert_eq!(s[1]["consumer"], json!([{"nth": "1", "fault": "fail"}]));
    assert_eq!(s[2]["now-ms"], json!("0"));
    assert_eq!(
        (&s[3]["run-id"], &s[3]["stage"]),
        (&json!("run"), &json!("s"))
    );
    assert_eq!(s[4]["replace"], json!({"offset": "0", "hex": "abcd"}));
    assert_eq!(s[4]["record"], json!([]));
    assert_eq!(s[5]["hex"], json!("000ff0ff"));
    assert_eq!(
        s[6],
        json!({"op": "crash", "record": [], "expect": {}, "from": "step 6"})
    );
    assert_eq!(
        s[7]["expect"]["result"],
        json!({"ok": "000ff0ff"}),
        "$vector is resolved"
    );
    assert_eq!(
        s[7]["record"],
        json!(["result"]),
        "codec ops record no calls"
    );
}

#[test]
fn source_driver_ops_get_explicit_inputs() {
    let case = one_case(json!([
        {"op": "open-driver", "driver": {"max-in-flight": 8}},
        {"op": "recovered-acks"},
        {"op": "begin", "message": {"id": "a", "offset": 4}},
        {"op": "begin", "message": {"id": "q", "source": "p1", "offset": null, "event-time-ms": -1}},
        {"op": "complete", "ticket": 2, "expect": {"ok": {"released": [], "due": false}}},
        {"op": "flush", "now-ms": 5, "state": {"operator-states": [{"name": "sum", "state": "0A"}]}},
        {"op": "flush"},
        {"op": "recover-acks", "run-id": "r"},
    ]));
    let s = &case["steps"];
    assert_eq!(s[0]["driver"]["max-in-flight"], json!("8"));
    assert_eq!(
        (&s[1]["record"], &s[1]["storage"]),
        (&json!(["result", "calls"]), &json!([]))
    );
    assert_eq!(
        s[2]["message"],
        json!({"id": "a", "source": "", "offset": "4", "event-time-ms": "0"})
    );
    assert_eq!(
        s[3]["message"],
        json!({"id": "q", "source": "p1", "offset": null, "event-time-ms": "-1"})
    );
    assert_eq!(s[4]["ticket"], json!("2"));
    assert_eq!(
        s[5]["state"],
        json!({"sinks": [], "operator-states": [{"name": "sum", "state": "0a"}]})
    );
    assert_eq!(
        (&s[5]["now-ms"], &s[6]["state"]),
        (&json!("5"), &Value::Null)
    );
    assert_eq!(
        (&s[7]["run-id"], &s[7]["stage"]),
        (&json!("r"), &json!("stage"))
    );
    let generated = one_case(
        json!([{"op": "write", "checkpoint": {"sequence": 1}, "batch": {"prefix": "m-", "count": 3}}]),
    );
    assert_eq!(generated["steps"][0]["batch"], json!(["m-0", "m-1", "m-2"]));
    let step = |s: Value| errors(json!([{"name": "c", "steps": [s]}]));
    assert!(
        step(json!({"op": "write", "checkpoint": {"sequence": 1}, "batch": {"prefix": "m", "count": 70000}}))
            .contains("at most 65536")
    );
    assert!(step(json!({"op": "complete"})).contains("`ticket` is required"));
    assert!(step(json!({"op": "complete", "ticket": -1})).contains("`ticket`: -1 is not a u64"));
    assert!(
        step(json!({"op": "begin", "message": {"id": "a", "ofset": 1}}))
            .contains("unknown field `ofset`")
    );
    assert!(step(json!({"op": "flush", "state": {"sink": []}})).contains("unknown field `sink`"));
    assert!(step(json!({"op": "recovered-acks", "stage": "s"})).contains("unknown field `stage`"));
}

#[test]
fn operator_tool_ops_get_explicit_inputs() {
    let case = one_case(json!([
        {"op": "reset", "request": {"watermark": {"offset": 5}, "epoch": 3,
            "sources": [{"name": "p0"}], "state": {"sinks": [{"name": "out"}]}}},
        {"op": "reset"},
        {"op": "history-page", "stage": "s", "request": {"max-checkpoints": 2}},
        {"op": "get-at", "sequence": 4},
        {"op": "create-savepoint", "name": "keep"},
        {"op": "restore-savepoint", "name": "keep", "epoch": 7},
        {"op": "list-stages"},
        {"op": "list-stages", "run-id": "r1"},
        {"op": "watermark-label", "watermark": {"event-time-ms": -1}},
        {"op": "resume-point-label", "point": {"sequence": 2}},
        {"op": "history-entries"},
    ]));
    let s = &case["steps"];
    let zero = json!({"offset": "0", "event-time-ms": "0"});
    assert_eq!(
        s[0]["request"],
        json!({"run-id": "run", "stage": "stage", "watermark": {"offset": "5", "event-time-ms": "0"},
            "sources": [{"name": "p0", "sequence": "0", "watermark": zero}],
            "state": {"sinks": [{"name": "out", "position": "0"}], "operator-states": []},
            "epoch": "3", "at-ms": "0"})
    );
    assert_eq!(
        (&s[1]["request"]["state"], &s[1]["request"]["epoch"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        s[2]["request"],
        json!({"after-sequence": "0", "max-checkpoints": "2", "max-bytes": "0"})
    );
    assert_eq!(
        (&s[2]["run-id"], &s[2]["stage"]),
        (&json!("run"), &json!("s"))
    );
    assert_eq!(s[3]["sequence"], json!("4"));
    assert_eq!(
        (&s[4]["name"], &s[4]["sequence"]),
        (&json!("keep"), &Value::Null)
    );
    assert_eq!((&s[5]["epoch"], &s[5]["at-ms"]), (&json!("7"), &json!("0")));
    assert_eq!(s[5]["record"], json!(["result", "calls"]));
    assert_eq!(
        s[6]["run-id"],
        Value::Null,
        "list-stages has no run default"
    );
    assert_eq!(s[7]["run-id"], json!("r1"));
    assert_eq!(
        s[8]["watermark"],
        json!({"offset": "0", "event-time-ms": "-1"})
    );
    assert_eq!(s[8]["record"], json!(["result"]), "labels are codec ops");
    assert_eq!(
        s[9]["point"],
        json!({"run-id": "run", "stage": "stage", "sequence": "2", "epoch": "0", "watermark": zero})
    );
    assert_eq!(s[10]["record"], json!(["result", "calls"]));
}

#[test]
fn operator_tool_ops_refuse_missing_and_unknown_fields() {
    let step = |s: Value| errors(json!([{"name": "c", "steps": [s]}]));
    assert!(step(json!({"op": "history-page"})).contains("`request` is required"));
    assert!(
        step(json!({"op": "history-page", "request": {"after-sequence": 1}}))
            .contains("`max-checkpoints` is required")
    );
    assert!(step(json!({"op": "get-at"})).contains("`sequence` is required"));
    assert!(step(json!({"op": "delete-savepoint"})).contains("`name` is required"));
    assert!(step(json!({"op": "reset", "request": {"epoc": 1}})).contains("unknown field `epoc`"));
    assert!(step(json!({"op": "list-stages", "stage": "s"})).contains("unknown field `stage`"));
    assert!(
        step(json!({"op": "watermark-label", "watermark": {}, "storage": []}))
            .contains("unknown field `storage`"),
        "labels make no storage call"
    );
}

#[test]
fn put_raw_checkpoints_are_encoded_with_the_components_codec() {
    let case = one_case(json!([{"op": "put-raw", "key": "k", "checkpoint": {"sequence": 3}}]));
    let encoded = checkpoint_guest::codec::encode(
        &wit::checkpoint(&json!({"sequence": 3})).expect("checkpoint"),
    )
    .expect("encodes");
    assert_eq!(case["steps"][0]["hex"], json!(wit::hex(&encoded)));
}

#[test]
fn truncations_expand_to_one_decode_per_length() {
    let case =
        one_case(json!([{"op": "decode-truncations", "hex": "010203", "expect": "truncated"}]));
    let steps = case["steps"].as_array().expect("steps");
    let hexes: Vec<&str> = steps
        .iter()
        .map(|s| s["hex"].as_str().expect("hex"))
        .collect();
    assert_eq!(hexes, ["", "01", "0102"]);
    for s in steps {
        assert_eq!(s["op"], "decode");
        assert_eq!(
            s["expect"],
            json!({"result": {"error": {"corrupt": {"kind": "truncated"}}}})
        );
    }
    assert_eq!(steps[2]["from"], "step 0: the first 2 bytes");
}

#[test]
fn bit_flips_expand_per_bit_with_set_and_cleared_kinds() {
    // 0x0f: bits 0-3 are 1 (a flip clears them), bits 4-7 are 0 (a flip sets them).
    let case = one_case(
        json!([{"op": "decode-bit-flips", "vector": "four.bin", "bytes": [1, 2],
        "expect-set": "truncated", "expect-cleared": "trailing-bytes"}]),
    );
    let steps = case["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 8);
    for (bit, s) in steps.iter().enumerate() {
        let kind = if bit < 4 {
            "trailing-bytes"
        } else {
            "truncated"
        };
        let flipped = format!("00{:02x}f0ff", 0x0f ^ (1 << bit));
        assert_eq!(s["hex"], json!(flipped));
        assert_eq!(
            s["expect"]["result"]["error"]["corrupt"]["kind"],
            json!(kind),
            "bit {bit}"
        );
        assert_eq!(
            s["from"],
            json!(format!("step 0: bit {bit} of byte 1 flipped"))
        );
    }
    // `from-end`: [2, 0] is the last two bytes.
    let case = one_case(
        json!([{"op": "decode-bit-flips", "vector": "four.bin", "bytes": [2, 0],
        "from-end": true, "expect": "crc-mismatch"}]),
    );
    assert_eq!(case["steps"].as_array().expect("steps").len(), 16);
    assert_eq!(case["steps"][0]["hex"], json!("000ff1ff"));
}

#[test]
fn decode_encode_becomes_a_decode_and_an_encode_of_what_decodes() {
    let checkpoint = wit::checkpoint(&json!({"sequence": 9, "run-id": "r"})).expect("checkpoint");
    let bytes = checkpoint_guest::codec::encode(&checkpoint).expect("encodes");
    let case = one_case(json!([{"op": "decode-encode", "hex": wit::hex(&bytes), "keys": []}]));
    let s = &case["steps"];
    assert_eq!(s[0]["op"], "decode");
    assert_eq!(s[1]["op"], "encode");
    assert_eq!(s[1]["checkpoint"], wit::checkpoint_json(&checkpoint));
    assert_eq!(
        s[1]["expect"],
        json!({"result": {"ok": wit::hex(&bytes)}, "keys": []})
    );
    assert_eq!(s[1]["record"], json!(["result", "keys"]));
}

#[test]
fn case_logs_are_recorded_by_the_last_step() {
    let doc = expand_cases(json!([{"name": "c", "acks": [["m1"]], "keys": [],
        "steps": [{"op": "get", "expect": "ok"}, {"op": "crash"}]}]))
    .expect("expands");
    let case = &doc["cases"][0];
    assert_eq!(case["expect"], json!({"acks": [["m1"]], "keys": []}));
    assert_eq!(case["steps"][1]["record"], json!(["acks", "keys"]));
    assert_eq!(case["steps"][0]["record"], json!(["result", "calls"]));
}

#[test]
fn invalid_cases_are_refused_with_their_place() {
    let step = |s: Value| errors(json!([{"name": "c", "steps": [s]}]));
    assert!(
        step(json!({"op": "get", "stgae": "s"}))
            .contains("t.json / c: step 0 (get): unknown field `stgae`")
    );
    assert!(step(json!({"op": "write"})).contains("`checkpoint` is required"));
    assert!(
        step(json!({"op": "write", "checkpoint": {"sequence": 1, "epohc": 2}}))
            .contains("unknown field `epohc`")
    );
    assert!(step(json!({"op": "write", "checkpoint": {"sequence": -1}})).contains("is not a u64"));
    assert!(step(json!({"op": "frobnicate"})).contains("unknown op"));
    assert!(
        step(json!({"op": "decode", "hex": "00", "storage": []}))
            .contains("unknown field `storage`")
    );
    assert!(step(json!({"op": "crash", "expect": "ok"})).contains("unknown field `expect`"));
    let fault = json!({"op": "get", "storage": [{"call": "get", "fault": "timeout", "index": 1}]});
    assert!(step(fault).contains("`index` goes with `conflict` only"));
    assert!(step(json!({"op": "get", "consumer": [{"nth": 0}]})).contains("`nth` counts from 1"));
    assert!(
        step(json!({"op": "decode-truncations", "hex": "", "expect": "truncated"}))
            .contains("generates no steps")
    );
    assert!(
        step(json!({"op": "decode-truncations", "hex": "00", "expect": "rotten"}))
            .contains("corruption kind")
    );
    assert!(
        step(json!({"op": "decode", "vector": "missing.bin"})).contains("no vector missing.bin")
    );
    assert!(
        step(json!({"op": "get", "expect": {"$regex": "x"}})).contains("unknown pattern `$regex`")
    );
    assert!(
        errors(json!([{"name": "c", "skip": true, "steps": [{"op": "crash"}]}]))
            .contains("unknown field `skip`")
    );
    assert!(errors(json!([{"name": "c", "steps": []}])).contains("non-empty"));
    let twice = errors(
        json!([{"name": "c", "steps": [{"op": "crash"}]}, {"name": "c", "steps": [{"op": "crash"}]}]),
    );
    assert!(twice.contains("repeated"));
    assert!(errors(json!([])).contains("no `cases`"));
    let not_json =
        expand(&[("bad.json".to_owned(), "{".to_owned())], &golden).expect_err("refused");
    assert!(not_json[0].starts_with("bad.json: not JSON"));
}

/// Every integer in what a runner reads is a decimal string: no JSON number outside `expect`.
fn numbers_outside_expect(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Number(_) => out.push(path.to_owned()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| numbers_outside_expect(v, &format!("{path}[{i}]"), out)),
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| *k != "expect")
            .for_each(|(k, v)| numbers_outside_expect(v, &format!("{path}.{k}"), out)),
        _ => {}
    }
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn the_repositorys_case_files_expand() {
    let doc = expand_dir(&repo("tests/conformance/cases"), &repo("tests/golden"))
        .expect("the case files are valid");
    assert_eq!(doc["format"], FORMAT);
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 90, "{} cases", cases.len());
    let mut numbers = Vec::new();
    numbers_outside_expect(&doc, "", &mut numbers);
    assert!(
        numbers.is_empty(),
        "JSON numbers a runner would read: {:?}",
        &numbers[..numbers.len().min(5)]
    );
    for case in cases {
        for step in case["steps"].as_array().expect("steps") {
            assert!(
                step["record"].is_array() && step["expect"].is_object() && step["from"].is_string()
            );
            assert!(
                !step["op"].as_str().expect("op").starts_with("decode-"),
                "families are expanded"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// check

fn small_doc() -> Value {
    expand_cases(json!([
        {"name": "w", "keys": ["k"], "steps": [
            {"op": "write", "checkpoint": {"sequence": 1}, "expect": {"ok": {"sequence": 1}}, "storage-calls": {"commit": 1}},
            {"op": "get", "expect": {"error": "not-found"}}]},
        {"name": "d", "steps": [{"op": "decode", "hex": "00", "expect": {"error": "corrupt"}}]}
    ]))
    .expect("expands")
}

/// Transcripts by case name.
type Transcripts = Vec<(String, Value)>;

fn transcripts(host: &str, sequence: &str) -> Transcripts {
    let calls = json!({"get": "1", "commit": "1", "list-keys": "1", "ack": "0"});
    let receipt = json!({"sequence": sequence, "version": "1", "replayed": false, "pruned": "0", "acks": {"acked": "0"}});
    vec![
        (
            "w".into(),
            json!({"case": "w", "host": host, "backend": "memory", "steps": [
            {"op": "write", "result": {"ok": receipt}, "calls": calls},
            {"op": "get", "result": {"error": "not-found", "message": "not found"}, "calls": calls, "keys": ["k"]}]}),
        ),
        (
            "d".into(),
            json!({"case": "d", "host": host, "backend": "memory", "steps": [
            {"op": "decode", "result": {"error": {"corrupt": {"kind": "bad-magic", "key": "", "detail": "x"}}, "message": "corrupt data"}}]}),
        ),
    ]
}

fn write(dir: &Path, host: &str, list: &Transcripts) {
    let at = dir.join(host).join("memory");
    std::fs::create_dir_all(&at).expect("dir");
    for (case, t) in list {
        std::fs::write(
            at.join(format!("{case}.json")),
            serde_json::to_string_pretty(t).expect("json"),
        )
        .expect("write");
    }
}

fn require(pairs: &[(&str, &str)]) -> CheckOptions {
    CheckOptions {
        require: pairs
            .iter()
            .map(|(h, b)| ((*h).to_owned(), (*b).to_owned()))
            .collect(),
        hosts: None,
    }
}

#[test]
fn matching_transcripts_pass_and_are_compared_across_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rust", &transcripts("rust", "1"));
    write(dir.path(), "node", &transcripts("node", "1"));
    let report = check(
        &small_doc(),
        dir.path(),
        &require(&[("rust", "memory"), ("node", "memory")]),
    )
    .expect("check");
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.hosts.len(), 2);
    assert_eq!(
        (
            report.hosts[1].host.as_str(),
            report.hosts[1].passed,
            report.hosts[1].total
        ),
        ("rust", 2, 2)
    );
    assert_eq!(report.hosts[1].bad_inputs, 1);
    assert_eq!(
        (report.shared_pairs, report.compared, report.differences),
        (2, 2, 0)
    );
    assert!(
        report
            .summary()
            .contains("conformance rust: 2 of 2 passed (2 cases x 1 backends: memory)")
    );
    assert!(
        report
            .summary()
            .ends_with("2 transcripts compared, 0 differences")
    );
}

#[test]
fn a_difference_between_hosts_names_case_step_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rust", &transcripts("rust", "1"));
    let mut python = transcripts("python", "1");
    python[0].1["steps"][1]["result"] = json!({"error": "not-found", "message": "not found"});
    python[0].1["steps"][0]["result"]["ok"]["version"] = json!("2"); // still meets `expect`
    write(dir.path(), "python", &python);
    let report = check(&small_doc(), dir.path(), &CheckOptions::default()).expect("check");
    assert_eq!(report.differences, 1);
    assert_eq!(
        report.hosts.iter().map(|h| h.passed).sum::<usize>(),
        4,
        "both meet every expectation"
    );
    assert_eq!(
        report.failures,
        [
            r#"python vs rust / memory / w / step 0 (write; step 0) at result.ok.version: rust has "1", python has "2""#
        ]
    );
}

#[test]
fn expectation_failures_name_host_backend_case_step_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rust", &transcripts("rust", "2"));
    let report = check(&small_doc(), dir.path(), &CheckOptions::default()).expect("check");
    assert_eq!(report.hosts[0].passed, 1);
    assert_eq!(
        report.failures,
        [
            r#"rust / memory / w / step 0 (write; step 0) at result.ok.sequence: expected 1, got "2""#
        ]
    );
}

#[test]
fn case_level_logs_are_checked_on_the_last_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut list = transcripts("rust", "1");
    list[0].1["steps"][1]["keys"] = json!(["k", "other"]);
    write(dir.path(), "rust", &list);
    let report = check(&small_doc(), dir.path(), &CheckOptions::default()).expect("check");
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0]
            .starts_with("rust / memory / w / step 1 (get; step 1) at keys: expected 1 items"),
        "{}",
        report.failures[0]
    );
}

#[test]
fn malformed_missing_and_failed_transcripts_fail() {
    let broken = |edit: &dyn Fn(&mut Transcripts)| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut list = transcripts("rust", "1");
        edit(&mut list);
        write(dir.path(), "rust", &list);
        let report = check(
            &small_doc(),
            dir.path(),
            &require(&[("rust", "memory"), ("python", "memory")]),
        )
        .expect("check");
        assert!(!report.ok());
        report.failures.join("\n")
    };
    let nothing = broken(&|_| {});
    assert!(
        nothing.contains("python / memory: no transcripts"),
        "{nothing}"
    );
    assert!(broken(&|l| l.truncate(1)).contains("rust / memory / d: no transcript"));
    let number = broken(&|l| l[1].1["steps"][0]["extra"] = json!(1));
    assert!(
        number.contains("a JSON number at steps[0].extra"),
        "{number}"
    );
    let trap =
        broken(&|l| l[1].1["steps"][0]["result"] = json!({"trap": "wasm trap: unreachable"}));
    assert!(
        trap.contains(
            "rust / memory / d / step 0 (decode; step 0) at result: trap: wasm trap: unreachable"
        ),
        "{trap}"
    );
    let short = broken(&|l| {
        l[0].1["steps"].as_array_mut().expect("steps").pop();
    });
    assert!(
        short.contains("step 1 (get; step 1): not recorded (the transcript ends after 1 steps)"),
        "{short}"
    );
    let unasked = broken(&|l| l[1].1["steps"][0]["calls"] = json!({}));
    assert!(
        unasked.contains("at calls: recorded, but the step does not ask for it"),
        "{unasked}"
    );
    let misplaced = broken(&|l| l[1].1["host"] = json!("node"));
    assert!(misplaced.contains("`host` must be \"rust\""), "{misplaced}");
    let stale = broken(&|l| l.push(("gone".into(), json!({}))));
    assert!(
        stale.contains("rust / memory / gone.json: not a transcript of a case"),
        "{stale}"
    );
}

#[test]
fn canonical_json_sorts_keys_without_whitespace() {
    assert_eq!(
        canonical(&json!({"b": [1, {"d": "x", "c": null}], "a": "é"})),
        r#"{"a":"é","b":[1,{"c":null,"d":"x"}]}"#
    );
}

#[test]
fn a_host_filter_checks_only_that_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "rust", &transcripts("rust", "1"));
    write(dir.path(), "python", &transcripts("python", "2"));
    let mut options = require(&[("rust", "memory"), ("python", "memory")]);
    options.hosts = Some(vec!["rust".to_owned()]);
    let report = check(&small_doc(), dir.path(), &options).expect("check");
    assert!(report.ok(), "{:?}", report.failures);
    assert_eq!(report.hosts.len(), 1);
    assert_eq!(report.host("python"), HostSummary::default());
}
