//! `check`: the transcripts runners wrote, matched against the expanded cases' expectations and
//! compared across hosts (tests/conformance/README.md, "Transcripts").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::expand::FORMAT;
use super::matching::{Mismatch, matches};

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// `(host, backend)` pairs that must have a transcript for every case.
    pub require: Vec<(String, String)>,
    /// Only these hosts' transcripts (all hosts found when `None`).
    pub hosts: Option<Vec<String>>,
}

/// One host's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSummary {
    /// `rust`, `python`, `node`.
    pub host: String,
    /// Its backends (found or required).
    pub backends: Vec<String>,
    /// Case x backend transcripts that met every expectation.
    pub passed: usize,
    /// Cases x backends.
    pub total: usize,
    /// Results that were an `invalid`, `corrupt` or `too-large` error (bad input answered with
    /// a named error).
    pub bad_inputs: usize,
}

/// The outcome of a check.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Cases in the expanded document.
    pub cases: usize,
    /// Case files they came from.
    pub files: usize,
    /// Per host, sorted by name.
    pub hosts: Vec<HostSummary>,
    /// Case x backend pairs that two or more hosts played.
    pub shared_pairs: usize,
    /// Transcripts compared with the reference host's (one per extra host of a shared pair).
    pub compared: usize,
    /// Comparisons that found a difference.
    pub differences: usize,
    /// Every failure, one line each: host, backend, case, step, op, field, expected, actual.
    pub failures: Vec<String>,
}

impl Report {
    /// No failure and no difference.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The figures of `host` (zero when it has no transcripts).
    pub fn host(&self, host: &str) -> HostSummary {
        let found = self.hosts.iter().find(|h| h.host == host);
        found.cloned().unwrap_or_default()
    }

    /// One summary line per host, then one for the comparison across hosts.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for h in &self.hosts {
            let _ = writeln!(
                out,
                "conformance {}: {} of {} passed ({} cases x {} backends: {}); {} bad inputs answered with a named error",
                h.host,
                h.passed,
                h.total,
                self.cases,
                h.backends.len(),
                h.backends.join(", "),
                h.bad_inputs
            );
        }
        let _ = write!(
            out,
            "transcripts: {} case x backend pairs played by two or more hosts, {} transcripts compared, {} differences",
            self.shared_pairs, self.compared, self.differences
        );
        out
    }
}

/// A transcript as read: its canonical text and its value.
struct Transcript {
    canonical: String,
    value: Value,
}

/// Checks the transcripts under `dir` (`dir/<host>/<backend>/<case>.json`) against `expanded`.
/// `Err` only when `expanded` is not an expanded document; everything else is a failure line.
pub fn check(expanded: &Value, dir: &Path, options: &CheckOptions) -> Result<Report, String> {
    if expanded.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(format!(
            "not an expanded case document (`format` is not {FORMAT:?})"
        ));
    }
    let cases: BTreeMap<&str, &Value> = expanded["cases"]
        .as_array()
        .ok_or("no `cases`")?
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or(""), c))
        .collect();
    let mut report = Report {
        cases: cases.len(),
        files: expanded["files"].as_array().map_or(0, Vec::len),
        ..Report::default()
    };
    let failures = &mut report.failures;

    // host -> backend -> case -> transcript
    let mut found: BTreeMap<String, BTreeMap<String, BTreeMap<String, Transcript>>> =
        BTreeMap::new();
    let wanted = |host: &String| options.hosts.as_ref().is_none_or(|h| h.contains(host));
    for host in subdirs(dir) {
        if !wanted(&host) {
            continue;
        }
        for backend in subdirs(&dir.join(&host)) {
            let at = dir.join(&host).join(&backend);
            let entry = found
                .entry(host.clone())
                .or_default()
                .entry(backend.clone())
                .or_default();
            for file in files(&at) {
                let place = format!("{host} / {backend} / {file}");
                let Some(case) = file.strip_suffix(".json").filter(|c| cases.contains_key(c))
                else {
                    failures.push(format!(
                        "{place}: not a transcript of a case in the expanded file (stale?)"
                    ));
                    continue;
                };
                match read(&at.join(&file), &host, &backend, case) {
                    Ok(t) => {
                        entry.insert(case.to_owned(), t);
                    }
                    Err(e) => failures.push(format!("{place}: {e}")),
                }
            }
        }
    }
    for (host, backend) in options.require.iter().filter(|(h, _)| wanted(h)) {
        found
            .entry(host.clone())
            .or_default()
            .entry(backend.clone())
            .or_default();
    }
    if found.values().all(|b| b.values().all(BTreeMap::is_empty)) {
        failures.push(format!(
            "no transcripts in {}: no case was played anywhere",
            dir.display()
        ));
    }

    for (host, backends) in &found {
        let mut summary = HostSummary {
            host: host.clone(),
            backends: backends.keys().cloned().collect(),
            ..HostSummary::default()
        };
        for (backend, transcripts) in backends {
            if transcripts.is_empty() {
                let at = dir.join(host).join(backend);
                failures.push(format!(
                    "{host} / {backend}: no transcripts in {}",
                    at.display()
                ));
            }
            for (name, case) in &cases {
                summary.total += 1;
                let Some(t) = transcripts.get(*name) else {
                    if !transcripts.is_empty() {
                        failures.push(format!("{host} / {backend} / {name}: no transcript"));
                    }
                    continue;
                };
                summary.bad_inputs += bad_inputs(&t.value);
                match check_case(case, &t.value) {
                    Ok(()) => summary.passed += 1,
                    Err(e) => failures.push(format!("{host} / {backend} / {name} / {e}")),
                }
            }
        }
        report.hosts.push(summary);
    }

    // The same case on the same backend kind must give byte-identical transcripts everywhere.
    let backends: BTreeSet<&String> = found.values().flat_map(BTreeMap::keys).collect();
    for backend in backends {
        for (name, case) in &cases {
            let played: Vec<(&String, &Transcript)> = found
                .iter()
                .filter_map(|(h, b)| b.get(backend).and_then(|t| t.get(*name)).map(|t| (h, t)))
                .collect();
            if played.len() < 2 {
                continue;
            }
            report.shared_pairs += 1;
            let reference = played.iter().position(|(h, _)| *h == "rust").unwrap_or(0);
            let (ref_host, ref_t) = played[reference];
            for (host, t) in played.iter().filter(|(h, _)| *h != ref_host) {
                report.compared += 1;
                if t.canonical == ref_t.canonical {
                    continue;
                }
                report.differences += 1;
                let m = first_difference(&ref_t.value["steps"], &t.value["steps"], "")
                    .unwrap_or_else(|| Mismatch {
                        path: String::new(),
                        expected: "?".into(),
                        actual: "?".into(),
                    });
                failures.push(format!(
                    "{host} vs {ref_host} / {backend} / {name} / {}: {ref_host} has {}, {host} has {}",
                    locate(case, &m.path),
                    m.expected,
                    m.actual
                ));
            }
        }
    }
    Ok(report)
}

fn subdirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn read(path: &Path, host: &str, backend: &str, case: &str) -> Result<Transcript, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    for (field, want) in [("case", case), ("host", host), ("backend", backend)] {
        if value.get(field).and_then(Value::as_str) != Some(want) {
            return Err(format!(
                "`{field}` must be {want:?} (the file's place), not {}",
                value.get(field).unwrap_or(&Value::Null)
            ));
        }
    }
    if let Some(path) = number_in(&value, "") {
        return Err(format!(
            "a JSON number at {path}: transcripts write integers as decimal strings"
        ));
    }
    let steps = value.get("steps").ok_or("no `steps`")?;
    Ok(Transcript {
        canonical: canonical(&serde_json::json!({"case": case, "steps": steps})),
        value,
    })
}

fn number_in(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::Number(_) => Some(if path.is_empty() {
            "the top".into()
        } else {
            path.to_owned()
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| number_in(v, &format!("{path}[{i}]"))),
        Value::Object(o) => o.iter().find_map(|(k, v)| number_in(v, &join(path, k))),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// JSON with object keys sorted and no whitespace: what "byte-identical" compares.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String((*k).clone()),
                        canonical(&o[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The first place where `b` differs from `a` (paths like `[3].result.ok.sequence`).
pub fn first_difference(a: &Value, b: &Value, path: &str) -> Option<Mismatch> {
    let differ = |x: &Value, y: &Value| Mismatch {
        path: path.to_owned(),
        expected: x.to_string(),
        actual: y.to_string(),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => first_difference(p, q, &join(path, k)),
                (p, q) => Some(Mismatch {
                    path: join(path, k),
                    expected: p.map_or("nothing".into(), Value::to_string),
                    actual: q.map_or("nothing".into(), Value::to_string),
                }),
            })
        }
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]")))
            .or_else(|| {
                (x.len() != y.len()).then(|| Mismatch {
                    path: path.to_owned(),
                    expected: format!("{} items", x.len()),
                    actual: format!("{} items", y.len()),
                })
            }),
        (x, y) if x == y => None,
        (x, y) => Some(differ(x, y)),
    }
}

/// `step 3 (write; from step 2) at result.ok.sequence` for a path `[3].result.ok.sequence`.
fn locate(case: &Value, path: &str) -> String {
    let Some(rest) = path.strip_prefix('[') else {
        return format!("steps at {path:?}");
    };
    let (index, field) = rest.split_once(']').unwrap_or((rest, ""));
    let step = index
        .parse::<usize>()
        .ok()
        .and_then(|i| case["steps"].get(i));
    let what = step.map_or("past the case's steps".into(), |s| {
        format!(
            "{}; {}",
            s["op"].as_str().unwrap_or("?"),
            s["from"].as_str().unwrap_or("?")
        )
    });
    format!("step {index} ({what}) at {}", field.trim_start_matches('.'))
}

/// Matches one transcript against its case: `Err` names the first failing step and field.
fn check_case(case: &Value, transcript: &Value) -> Result<(), String> {
    let expected = case["steps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let recorded = transcript["steps"]
        .as_array()
        .ok_or("`steps` is not a list")?;
    for (i, step) in expected.iter().enumerate() {
        let place = format!(
            "step {i} ({}; {})",
            step["op"].as_str().unwrap_or("?"),
            step["from"].as_str().unwrap_or("?")
        );
        let Some(got) = recorded.get(i) else {
            return Err(format!(
                "{place}: not recorded (the transcript ends after {} steps)",
                recorded.len()
            ));
        };
        check_step(step, got, i + 1 == expected.len(), case).map_err(|e| format!("{place} {e}"))?;
    }
    if recorded.len() > expected.len() {
        return Err(format!(
            "{} steps recorded, the case has {}",
            recorded.len(),
            expected.len()
        ));
    }
    Ok(())
}

fn check_step(step: &Value, got: &Value, last: bool, case: &Value) -> Result<(), String> {
    let got = got.as_object().ok_or("is not an object")?;
    if got.get("op") != Some(&step["op"]) {
        return Err(format!(
            "at op: expected {}, got {}",
            step["op"],
            got.get("op").unwrap_or(&Value::Null)
        ));
    }
    if let Some(Value::Object(r)) = got.get("result") {
        for kind in ["trap", "runner-error"] {
            if let Some(message) = r.get(kind) {
                return Err(format!(
                    "at result: {kind}: {}",
                    message.as_str().unwrap_or("?")
                ));
            }
        }
    }
    let record: Vec<&str> = step["record"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for field in got.keys().filter(|k| *k != "op") {
        if !record.contains(&field.as_str()) {
            return Err(format!(
                "at {field}: recorded, but the step does not ask for it (record: {record:?})"
            ));
        }
    }
    for field in &record {
        let value = got
            .get(*field)
            .ok_or_else(|| format!("at {field}: not recorded"))?;
        let well_formed = match *field {
            // An error also carries the host's text for people (`message`).
            "result" => value.as_object().is_some_and(|o| {
                (o.len() == 1 && o.contains_key("ok"))
                    || (o.len() == 2
                        && o.contains_key("error")
                        && o.get("message").is_some_and(Value::is_string))
            }),
            "calls" => value.as_object().is_some_and(|o| {
                o.len() == 4
                    && ["get", "commit", "list-keys", "ack"]
                        .iter()
                        .all(|k| o.contains_key(*k))
            }),
            _ => value.is_array(),
        };
        if !well_formed {
            return Err(format!("at {field}: malformed record {value}"));
        }
    }
    let mut patterns: Vec<(&String, &Value)> =
        step["expect"].as_object().into_iter().flatten().collect();
    if last {
        patterns.extend(
            case.get("expect")
                .and_then(Value::as_object)
                .into_iter()
                .flatten(),
        );
    }
    for (field, pattern) in patterns {
        let value = got
            .get(field.as_str())
            .ok_or_else(|| format!("at {field}: not recorded"))?;
        matches(pattern, value, field).map_err(|m| m.to_string())?;
    }
    Ok(())
}

/// Results that are an `invalid`, `corrupt` or `too-large` error.
fn bad_inputs(transcript: &Value) -> usize {
    transcript["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            let e = &s["result"]["error"];
            ["invalid", "corrupt", "too-large"]
                .iter()
                .any(|k| e.get(*k).is_some())
        })
        .count()
}
