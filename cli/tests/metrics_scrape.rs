//! `ckpt demo --metrics ADDR --metrics-hold`: the Prometheus endpoint is scraped while the demo
//! process is still running, and its counters are checked against the demo's own report.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::Value;

/// A series: its name and its labels as `k="v"` pairs, sorted.
type Series = (String, Vec<String>);

/// Parses the Prometheus text format: `name{k="v",...} value` lines; comments skipped.
fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').expect("closing brace");
                let mut labels: Vec<String> = labels.split(',').map(str::to_owned).collect();
                labels.sort();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        let value: f64 = value.parse().expect("a number");
        samples.insert((name.to_owned(), labels), value);
    }
    samples
}

/// A free port on the loopback interface, as the OS hands them out.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind port 0");
    listener.local_addr().expect("local addr")
}

/// `GET /metrics` over plain HTTP/1.1; returns the body of a 200 answer.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The running demo: its report is out, its listener still serves until `stdin` closes.
struct HeldDemo {
    child: Child,
    stdin: ChildStdin,
    report: Value,
    addr: SocketAddr,
}

/// Starts the demo serving on a free port and reads its report. A port taken between
/// `free_addr` and the demo's bind fails the start; a few other ports are tried then.
fn start_demo(dir: &Path) -> HeldDemo {
    let mut failures = Vec::new();
    for _ in 0..5 {
        let addr = free_addr();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .current_dir(dir)
            .env_remove("CKPT_STORE")
            .args(["--json", "demo", "--messages", "20000", "--batch", "100"])
            .args(["--seed", "7", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--metrics")
            .arg(addr.to_string())
            .arg("--metrics-hold")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ckpt");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        // One JSON document, read without waiting for the end of output (the demo holds).
        let report = serde_json::Deserializer::from_reader(stdout)
            .into_iter::<Value>()
            .next();
        match report {
            Some(Ok(report)) => {
                return HeldDemo {
                    child,
                    stdin,
                    report,
                    addr,
                };
            }
            _ => {
                drop(stdin);
                let output = child.wait_with_output().expect("wait for ckpt");
                failures.push(String::from_utf8_lossy(&output.stderr).into_owned());
            }
        }
    }
    panic!("the demo never started serving: {failures:#?}");
}

#[test]
fn scraped_metrics_match_the_demo_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let HeldDemo {
        mut child,
        stdin,
        report,
        addr,
    } = start_demo(dir.path());
    assert_eq!(report["ok"], Value::Bool(true), "{report:#}");

    // Scraped while the demo process still runs: its listener is up until stdin closes.
    let body = scrape(addr);
    let samples = parse(&body);
    drop(stdin);
    let status = child.wait().expect("wait for ckpt");
    assert!(status.success(), "{status}");

    let labels = |extra: &[&str]| {
        let mut labels: Vec<String> = ["store=\"sqlite\"", "namespace=\"default\""]
            .iter()
            .chain(extra)
            .map(|l| (*l).to_owned())
            .collect();
        labels.sort();
        labels
    };
    let value = |name: &str, extra: &[&str]| -> u64 {
        samples
            .get(&(name.to_owned(), labels(extra)))
            .map_or(0, |v| *v as u64)
    };
    let reported = |field: &str| {
        report[field]
            .as_u64()
            .unwrap_or_else(|| panic!("report field {field}"))
    };

    let checkpoints = reported("checkpoints");
    let replayed = reported("replayed");
    assert!(checkpoints > 0);
    assert_eq!(
        value("checkpoint_writes_total", &[]),
        checkpoints - replayed,
        "{body}"
    );
    assert_eq!(value("checkpoint_replays_total", &[]), replayed);
    // One commit and one size per checkpoint: the demo deletes nothing and meets no conflict.
    assert_eq!(
        value("checkpoint_commit_duration_seconds_count", &[]),
        checkpoints - replayed
    );
    assert_eq!(
        value("checkpoint_size_bytes_count", &[]),
        checkpoints - replayed
    );
    assert_eq!(
        value("checkpoint_ack_calls_total", &[]),
        reported("ack_calls")
    );
    assert_eq!(
        value("checkpoint_acked_messages_total", &[]),
        reported("acks")
    );
    assert_eq!(
        value("checkpoint_ack_failures_total", &[]),
        reported("ack_failures")
    );
    // Every worker (the first and one per crash) opened a driver and resumed once.
    let fresh = value("checkpoint_resumes_total", &["origin=\"fresh\""]);
    let latest = value("checkpoint_resumes_total", &["origin=\"latest\""]);
    assert!(fresh >= 1, "the first worker starts fresh");
    assert_eq!(fresh + latest, reported("crashes") + 1);
    assert_eq!(value("checkpoint_fallbacks_total", &[]), 0);
    assert_eq!(
        value(
            "checkpoint_read_duration_seconds_count",
            &["call=\"open_driver\""]
        ),
        reported("crashes") + 1
    );
    assert_eq!(
        value(
            "checkpoint_read_duration_seconds_count",
            &["call=\"history\""]
        ),
        1,
        "the final history read"
    );
    // A run that held has no failed call.
    assert!(
        !body.contains("checkpoint_errors_total{"),
        "errors were recorded: {body}"
    );
    // Every series carries the demo's store and namespace.
    for (name, series_labels) in samples.keys() {
        if name.starts_with("checkpoint_") {
            assert!(
                series_labels.contains(&"store=\"sqlite\"".to_owned())
                    && series_labels.contains(&"namespace=\"default\"".to_owned()),
                "{name} {series_labels:?}"
            );
        }
    }
}

#[test]
fn metrics_hold_without_metrics_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .current_dir(dir.path())
        .args(["demo", "--messages", "10", "--metrics-hold"])
        .output()
        .expect("run ckpt");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn a_metrics_address_in_use_fails_before_the_demo_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = taken.local_addr().expect("addr");
    let output = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .current_dir(dir.path())
        .env_remove("CKPT_STORE")
        .args(["demo", "--messages", "10", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--metrics")
        .arg(addr.to_string())
        .output()
        .expect("run ckpt");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("serving metrics on {addr}")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no report: the demo did not run");
}
