//! `expand`: the case files of `tests/conformance/cases` turned into one document of fully
//! explicit cases (tests/conformance/README.md, "Expanded cases"), so that a runner only maps an
//! op to an API call and a result to JSON.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use checkpoint_guest::codec;
use serde_json::{Map, Value, json};

use super::wit::{self, Res, dec, hex, int, object};

/// The `format` of an expanded document; a runner refuses any other.
pub const FORMAT: &str = "pipeline-checkpoint-conformance-expanded/1";

/// Ops that run on the checkpointer or its driver: they record their result and the storage
/// and ack calls of the step, and take storage and consumer faults.
const COMPONENT_OPS: &[&str] = &[
    "open",
    "write",
    "get",
    "resume-point",
    "history",
    "delete",
    "recover-acks",
    "open-driver",
    "record-processed",
    "record-processed-batch",
    "begin",
    "complete",
    "flush",
    "changelog",
    "cursor",
    "resumed-from",
    "recovered-acks",
    "get-at",
    "history-page",
    "history-entries",
    "reset",
    "create-savepoint",
    "list-savepoints",
    "get-savepoint",
    "restore-savepoint",
    "delete-savepoint",
    "list-stages",
    "export-stage",
    "import-stage",
];

/// Ops on the stateless codec: they record their result only.
const CODEC_OPS: &[&str] = &[
    "encode",
    "decode",
    "validate",
    "chain-signature",
    "resume-point-for-stage",
    "watermark-label",
    "checkpoint-label",
    "resume-point-label",
];

/// The fields each op takes besides the common ones.
fn op_fields(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "open" => &["options"],
        "write" => &["checkpoint", "batch"],
        "get" | "resume-point" | "history" | "delete" | "recover-acks" | "history-entries"
        | "list-savepoints" | "export-stage" => &["run-id", "stage"],
        "import-stage" => &["replace-older", "dry-run"],
        "get-at" => &["run-id", "stage", "sequence"],
        "history-page" => &["run-id", "stage", "request"],
        "reset" => &["request"],
        "create-savepoint" => &["run-id", "stage", "name", "sequence"],
        "get-savepoint" | "delete-savepoint" => &["run-id", "stage", "name"],
        "restore-savepoint" => &["run-id", "stage", "name", "epoch", "at-ms"],
        "list-stages" => &["run-id"],
        "watermark-label" => &["watermark"],
        "checkpoint-label" => &["checkpoint"],
        "resume-point-label" => &["point"],
        "open-driver" => &["driver"],
        "record-processed" => &["message", "now-ms"],
        "record-processed-batch" => &["messages", "now-ms"],
        "begin" => &["message"],
        "complete" => &["ticket"],
        "flush" => &["now-ms", "state"],
        "changelog" | "cursor" | "resumed-from" | "recovered-acks" | "crash" => &[],
        "encode" | "validate" => &["checkpoint"],
        "decode" | "decode-encode" => &["hex", "vector"],
        "chain-signature" => &["checkpoints"],
        "resume-point-for-stage" => &["checkpoints", "stage"],
        "put-raw" => &["key", "hex", "vector", "checkpoint"],
        "delete-raw" => &["key"],
        "corrupt" => &["key", "flip-bit", "replace", "truncate"],
        "decode-truncations" => &["hex", "vector"],
        "decode-bit-flips" => &[
            "hex",
            "vector",
            "bytes",
            "from-end",
            "expect-set",
            "expect-cleared",
        ],
        _ => return None,
    })
}

const LOGS: &[&str] = &["acks", "failed-acks", "keys"];
const CALLS: &[&str] = &["get", "commit", "list-keys"];
const FAULTS: &[&str] = &[
    "unavailable",
    "timeout",
    "failed",
    "conflict",
    "time-out-after-apply",
    "break-contract",
];
const CASE_FIELDS: &[&str] = &[
    "name",
    "description",
    "covers",
    "options",
    "steps",
    "acks",
    "failed-acks",
    "keys",
];

/// Expands every case file of `cases_dir`, reading golden vectors from `golden_dir`. Returns
/// the expanded document, or every problem found (file, case, step and what is wrong).
pub fn expand_dir(cases_dir: &Path, golden_dir: &Path) -> Result<Value, Vec<String>> {
    let entries =
        std::fs::read_dir(cases_dir).map_err(|e| vec![format!("{}: {e}", cases_dir.display())])?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if path.extension().and_then(|e| e.to_str()) != Some("json") || !path.is_file() {
            errors.push(format!("{name}: not a .json case file; no runner plays it"));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push((name, text)),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if files.is_empty() && errors.is_empty() {
        errors.push(format!("{}: no case files", cases_dir.display()));
    }
    let golden = |name: &str| -> Res<Vec<u8>> {
        if name.contains('/') || name.contains('\\') || name.contains("..") {
            return Err(format!(
                "vector {name:?} must be a file name in tests/golden"
            ));
        }
        std::fs::read(golden_dir.join(name)).map_err(|e| format!("vector {name}: {e}"))
    };
    match expand(&files, &golden) {
        Ok(doc) if errors.is_empty() => Ok(doc),
        Ok(_) => Err(errors),
        Err(more) => Err(errors.into_iter().chain(more).collect()),
    }
}

/// Expands case files given as (file name, text); `golden` reads a vector by name.
pub fn expand(
    files: &[(String, String)],
    golden: &dyn Fn(&str) -> Res<Vec<u8>>,
) -> Result<Value, Vec<String>> {
    let mut names = BTreeSet::new();
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in files {
        let doc: Value = match serde_json::from_str(text) {
            Ok(doc) => doc,
            Err(e) => {
                errors.push(format!("{file}: not JSON: {e}"));
                continue;
            }
        };
        let file_cases = match object(&doc, "a case file", &["description", "cases"]) {
            Ok(o) => match o.get("cases") {
                Some(Value::Array(a)) if !a.is_empty() => a,
                _ => {
                    errors.push(format!("{file}: no `cases` (a non-empty list)"));
                    continue;
                }
            },
            Err(e) => {
                errors.push(format!("{file}: {e}"));
                continue;
            }
        };
        for (i, case) in file_cases.iter().enumerate() {
            let name = case
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if name.is_empty() || !names.insert(name.clone()) {
                errors.push(format!(
                    "{file}: case {i}: name {name:?} empty, not a string or repeated"
                ));
                continue;
            }
            let ctx = Context { golden };
            match ctx.case(case, file) {
                Ok(expanded) => cases.push(expanded),
                Err(e) => errors.push(format!("{file} / {name}: {e}")),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let files: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    Ok(json!({"format": FORMAT, "files": files, "cases": cases}))
}

struct Context<'a> {
    golden: &'a dyn Fn(&str) -> Res<Vec<u8>>,
}

impl Context<'_> {
    fn case(&self, case: &Value, file: &str) -> Res<Value> {
        let o = object(case, "a case", CASE_FIELDS)?;
        if !matches!(o.get("description"), None | Some(Value::String(_))) {
            return Err("`description` must be a string".into());
        }
        wit::list(o, "covers", wit::string)?;
        let options = wit::options_json(
            &wit::options(o.get("options")).map_err(|e| format!("`options`: {e}"))?,
        );
        let steps = match o.get("steps") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            _ => return Err("`steps` must be a non-empty list".into()),
        };
        let mut expanded = Vec::new();
        let mut exported = false;
        for (i, step) in steps.iter().enumerate() {
            let op = step.get("op").and_then(Value::as_str).unwrap_or("?");
            // `import-stage` imports what the case's last successful `export-stage` answered.
            exported |= op == "export-stage";
            if op == "import-stage" && !exported {
                return Err(format!(
                    "step {i} (import-stage): no export-stage step comes before it"
                ));
            }
            let more = self
                .step(step, i)
                .map_err(|e| format!("step {i} ({op}): {e}"))?;
            expanded.extend(more);
        }
        // Logs the case expects after its last step are recorded by that step.
        let mut expect = Map::new();
        let last = expanded.last_mut().expect("at least one step");
        for log in LOGS {
            if let Some(pattern) = o.get(*log) {
                let pattern = self.pattern(pattern).map_err(|e| format!("`{log}`: {e}"))?;
                expect.insert((*log).to_owned(), pattern);
                let record = last["record"].as_array_mut().expect("record is a list");
                if !record.iter().any(|r| r == log) {
                    record.push(json!(log));
                }
            }
        }
        let mut out =
            json!({"name": o["name"], "file": file, "options": options, "steps": expanded});
        if !expect.is_empty() {
            out["expect"] = Value::Object(expect);
        }
        Ok(out)
    }

    /// One case step, as one or more expanded steps.
    fn step(&self, step: &Value, index: usize) -> Res<Vec<Value>> {
        let op = step
            .get("op")
            .and_then(Value::as_str)
            .ok_or("`op` must be a string")?;
        let own = op_fields(op).ok_or_else(|| format!("unknown op {op:?}"))?;
        let component = COMPONENT_OPS.contains(&op);
        let family = op.starts_with("decode-");
        let has_result = component || CODEC_OPS.contains(&op) || family;
        let mut allowed: Vec<&str> = vec!["op", "note", "acks", "failed-acks", "keys"];
        allowed.extend(own);
        if has_result {
            allowed.push("expect");
        }
        if component {
            allowed.extend(["storage", "consumer", "storage-calls"]);
        }
        let o = object(step, "a step", &allowed)?;
        let from = format!("step {index}");
        let mut steps = match op {
            "decode-truncations" => self.truncations(o, &from)?,
            "decode-bit-flips" => self.bit_flips(o, &from)?,
            "decode-encode" => {
                let bytes = self.bytes(o)?;
                let decoded = codec::decode(&bytes).map_err(|c| {
                    format!("the input does not decode ({})", wit::kind_name(c.kind))
                })?;
                let expect = self.pattern(o.get("expect").unwrap_or(&json!("ok")))?;
                vec![
                    decode_step(&bytes, expect, from.clone()),
                    json!({"op": "encode", "checkpoint": wit::checkpoint_json(&decoded),
                        "record": ["result"], "expect": {"result": {"ok": hex(&bytes)}},
                        "from": format!("{from}: re-encoding the decoded checkpoint")}),
                ]
            }
            _ => vec![self.plain(op, o, component, has_result, from)?],
        };
        // Logs are checked after the step: on a generated family, after its last step.
        let last = steps
            .last_mut()
            .ok_or("generates no steps (an empty range)")?;
        for log in LOGS {
            if let Some(pattern) = o.get(*log) {
                let pattern = self.pattern(pattern).map_err(|e| format!("`{log}`: {e}"))?;
                last["record"]
                    .as_array_mut()
                    .expect("record is a list")
                    .push(json!(log));
                last["expect"][*log] = pattern;
            }
        }
        Ok(steps)
    }

    fn plain(
        &self,
        op: &str,
        o: &Map<String, Value>,
        component: bool,
        has_result: bool,
        from: String,
    ) -> Res<Value> {
        let mut out = Map::new();
        out.insert("op".into(), json!(op));
        let mut put = |k: &str, v: Value| {
            out.insert(k.to_owned(), v);
        };
        let field = |name: &str| o.get(name).ok_or_else(|| format!("`{name}` is required"));
        let text = |name: &str, default: &str| match o.get(name) {
            None => Ok(json!(default)),
            Some(v @ Value::String(_)) => Ok(v.clone()),
            Some(v) => Err(format!("`{name}` must be a string, not {v}")),
        };
        let now_of = |name: &str| {
            o.get(name)
                .map_or(Ok(0), |v| int::<u64>(v, "u64"))
                .map(dec)
                .map_err(|e| format!("`{name}`: {e}"))
        };
        let now = || now_of("now-ms");
        let checkpoints = || {
            wit::list(o, "checkpoints", |c| {
                wit::checkpoint(c).map(|c| wit::checkpoint_json(&c))
            })
        };
        match op {
            "open" => put(
                "options",
                wit::options_json(&wit::options(o.get("options"))?),
            ),
            "write" | "encode" | "validate" | "checkpoint-label" => {
                put(
                    "checkpoint",
                    wit::checkpoint_json(&wit::checkpoint(field("checkpoint")?)?),
                );
                if op == "write" {
                    put("batch", json!(batch(o)?));
                }
            }
            "get" | "resume-point" | "history" | "delete" | "recover-acks" | "history-entries"
            | "list-savepoints" | "get-at" | "history-page" | "create-savepoint"
            | "get-savepoint" | "delete-savepoint" | "restore-savepoint" | "export-stage" => {
                put("run-id", text("run-id", "run")?);
                put("stage", text("stage", "stage")?);
                let u64_of = |name: &str| {
                    wit::option_int::<u64>(o.get(name), "u64")
                        .map(|n| n.map_or(Value::Null, dec))
                        .map_err(|e| format!("`{name}`: {e}"))
                };
                match op {
                    "get-at" => put(
                        "sequence",
                        dec(int::<u64>(field("sequence")?, "u64")
                            .map_err(|e| format!("`sequence`: {e}"))?),
                    ),
                    "history-page" => put(
                        "request",
                        wit::history_request_json(
                            &wit::history_request(field("request")?)
                                .map_err(|e| format!("`request`: {e}"))?,
                        ),
                    ),
                    "create-savepoint" | "get-savepoint" | "delete-savepoint"
                    | "restore-savepoint" => {
                        put("name", json!(wit::string(field("name")?)?));
                        if op == "create-savepoint" {
                            put("sequence", u64_of("sequence")?);
                        }
                        if op == "restore-savepoint" {
                            put("epoch", u64_of("epoch")?);
                            put("at-ms", now_of("at-ms")?);
                        }
                    }
                    _ => {}
                }
            }
            "reset" => put(
                "request",
                wit::reset_request_json(
                    &wit::reset_request(o.get("request")).map_err(|e| format!("`request`: {e}"))?,
                ),
            ),
            "import-stage" => {
                for name in ["replace-older", "dry-run"] {
                    match o.get(name) {
                        None => put(name, json!(false)),
                        Some(v @ Value::Bool(_)) => put(name, v.clone()),
                        Some(other) => return Err(format!("`{name}` must be a bool, not {other}")),
                    }
                }
            }
            "list-stages" => put(
                "run-id",
                json!(wit::option_string(o.get("run-id")).map_err(|e| format!("`run-id`: {e}"))?),
            ),
            "watermark-label" => put(
                "watermark",
                wit::watermark_json(
                    &wit::watermark(Some(field("watermark")?))
                        .map_err(|e| format!("`watermark`: {e}"))?,
                ),
            ),
            "resume-point-label" => put(
                "point",
                wit::point_json(
                    &wit::resume_point(Some(field("point")?))
                        .map_err(|e| format!("`point`: {e}"))?,
                ),
            ),
            "open-driver" => put(
                "driver",
                wit::driver_options_json(&wit::driver_options(o.get("driver"))?),
            ),
            "record-processed" => {
                put(
                    "message",
                    wit::message_json(&wit::message(field("message")?)?),
                );
                put("now-ms", now()?);
            }
            "record-processed-batch" => {
                let messages = wit::list(o, "messages", |m| {
                    wit::message(m).map(|m| wit::message_json(&m))
                })?;
                put("messages", json!(messages));
                put("now-ms", now()?);
            }
            "begin" => put(
                "message",
                wit::source_message_json(
                    &wit::source_message(field("message")?)
                        .map_err(|e| format!("`message`: {e}"))?,
                ),
            ),
            "complete" => put(
                "ticket",
                dec(int::<u64>(field("ticket")?, "u64").map_err(|e| format!("`ticket`: {e}"))?),
            ),
            "flush" => {
                put("now-ms", now()?);
                let state =
                    wit::stage_state_option(o.get("state")).map_err(|e| format!("`state`: {e}"))?;
                put(
                    "state",
                    state.as_ref().map_or(Value::Null, wit::stage_state_json),
                );
            }
            "decode" => put("hex", json!(hex(&self.bytes(o)?))),
            "chain-signature" => put("checkpoints", json!(checkpoints()?)),
            "resume-point-for-stage" => {
                put("checkpoints", json!(checkpoints()?));
                put("stage", text("stage", "stage")?);
            }
            "put-raw" | "delete-raw" | "corrupt" => {
                put("key", json!(wit::string(field("key")?)?));
                if op == "put-raw" {
                    let bytes = match o.get("checkpoint") {
                        Some(c) if !o.contains_key("hex") && !o.contains_key("vector") => {
                            codec::encode(&wit::checkpoint(c)?)
                                .map_err(|e| format!("encoding `checkpoint`: {e:?}"))?
                        }
                        Some(_) => {
                            return Err(
                                "give exactly one of `hex`, `vector` and `checkpoint`".into()
                            );
                        }
                        None => self.bytes(o)?,
                    };
                    put("hex", json!(hex(&bytes)));
                }
                if op == "corrupt" {
                    let (name, value) = corruption(o)?;
                    put(name, value);
                }
            }
            _ => {} // crash, changelog, cursor, resumed-from, recovered-acks: no inputs
        }
        let mut record = Vec::new();
        let mut expect = Map::new();
        if has_result {
            record.push("result");
            expect.insert(
                "result".into(),
                self.pattern(o.get("expect").unwrap_or(&json!("ok")))?,
            );
        }
        if component {
            record.push("calls");
            out.insert(
                "storage".into(),
                json!(wit::list(o, "storage", storage_fault)?),
            );
            out.insert(
                "consumer".into(),
                json!(wit::list(o, "consumer", consumer_fault)?),
            );
            if let Some(pattern) = o.get("storage-calls") {
                object(
                    pattern,
                    "`storage-calls`",
                    &["get", "commit", "list-keys", "ack"],
                )?;
                expect.insert("calls".into(), pattern.clone());
            }
        }
        out.insert("record".into(), json!(record));
        out.insert("expect".into(), Value::Object(expect));
        out.insert("from".into(), json!(from));
        Ok(Value::Object(out))
    }

    /// Bytes given as `hex` or `vector` (exactly one).
    fn bytes(&self, o: &Map<String, Value>) -> Res<Vec<u8>> {
        match (o.get("hex"), o.get("vector")) {
            (Some(Value::String(h)), None) => wit::unhex(h),
            (None, Some(Value::String(v))) => (self.golden)(v),
            _ => Err("give exactly one of `hex` and `vector` (a string)".into()),
        }
    }

    /// An expectation, with `{"$vector": file}` resolved to that file's hex.
    fn pattern(&self, p: &Value) -> Res<Value> {
        Ok(match p {
            Value::Object(o) if o.len() == 1 && o.contains_key("$vector") => {
                let name = o["$vector"].as_str().ok_or("`$vector` names a file")?;
                json!(hex(&(self.golden)(name)?))
            }
            Value::Object(o) if o.len() == 1 && o.contains_key("$contains") => {
                o["$contains"]
                    .as_str()
                    .ok_or("`$contains` takes a string")?;
                p.clone()
            }
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| k.starts_with('$')) {
                    return Err(format!(
                        "unknown pattern `{k}` (known: `$vector`, `$contains`, alone in their object)"
                    ));
                }
                let mut out = Map::new();
                for (k, v) in o {
                    out.insert(k.clone(), self.pattern(v)?);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| self.pattern(v)).collect::<Res<_>>()?),
            other => other.clone(),
        })
    }

    /// `decode-truncations`: every proper prefix must fail with `corrupt` of the given kind.
    fn truncations(&self, o: &Map<String, Value>, from: &str) -> Res<Vec<Value>> {
        let bytes = self.bytes(o)?;
        let kind = corruption_kind(o.get("expect"), "expect")?
            .ok_or("`expect` (a corruption kind) is required")?;
        Ok((0..bytes.len())
            .map(|len| {
                decode_step(
                    &bytes[..len],
                    corrupt_pattern(kind),
                    format!("{from}: the first {len} bytes"),
                )
            })
            .collect())
    }

    /// `decode-bit-flips`: every bit of the byte range flipped alone must fail with `corrupt` of
    /// the kind for that flip (`expect-set` for a 0 turned 1, `expect-cleared` for a 1 turned 0,
    /// `expect` otherwise).
    fn bit_flips(&self, o: &Map<String, Value>, from: &str) -> Res<Vec<Value>> {
        let bytes = self.bytes(o)?;
        let from_end = match o.get("from-end") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(format!("`from-end` must be a bool, not {other}")),
        };
        let bounds = match o.get("bytes") {
            Some(Value::Array(a)) if a.len() == 2 => [
                int::<usize>(&a[0], "byte index")?,
                int::<usize>(&a[1], "byte index")?,
            ],
            _ => return Err("`bytes` is [from, to)".into()),
        };
        let len = bytes.len();
        let [start, end] = bounds.map(|b| {
            if from_end {
                len.checked_sub(b)
            } else {
                Some(b)
            }
            .filter(|&b| b <= len)
        });
        let (Some(start), Some(end)) = (start, end) else {
            return Err(format!(
                "`bytes` {bounds:?} outside the input's {len} bytes"
            ));
        };
        let fallback = corruption_kind(o.get("expect"), "expect")?;
        let set = corruption_kind(o.get("expect-set"), "expect-set")?.or(fallback);
        let cleared = corruption_kind(o.get("expect-cleared"), "expect-cleared")?.or(fallback);
        let mut steps = Vec::new();
        for at in start..end {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[at] ^= 1 << bit;
                let kind = if flipped[at] & (1 << bit) != 0 {
                    set
                } else {
                    cleared
                };
                let kind = kind.ok_or("`expect` is required unless `expect-set` and `expect-cleared` cover every flip")?;
                steps.push(decode_step(
                    &flipped,
                    corrupt_pattern(kind),
                    format!("{from}: bit {bit} of byte {at} flipped"),
                ));
            }
        }
        Ok(steps)
    }
}

fn decode_step(bytes: &[u8], expect: Value, from: String) -> Value {
    json!({"op": "decode", "hex": hex(bytes), "record": ["result"], "expect": {"result": expect}, "from": from})
}

fn corrupt_pattern(kind: &str) -> Value {
    json!({"error": {"corrupt": {"kind": kind}}})
}

fn corruption_kind<'a>(v: Option<&'a Value>, name: &str) -> Res<Option<&'a str>> {
    match v {
        None => Ok(None),
        Some(Value::String(k)) if wit::KIND_NAMES.contains(&k.as_str()) => Ok(Some(k)),
        Some(other) => Err(format!(
            "`{name}` must be a corruption kind ({}), not {other}",
            wit::KIND_NAMES.join(", ")
        )),
    }
}

/// A `corrupt` step's damage: exactly one of `flip-bit`, `replace`, `truncate`.
fn corruption(o: &Map<String, Value>) -> Res<(&'static str, Value)> {
    let given: Vec<&str> = ["flip-bit", "replace", "truncate"]
        .into_iter()
        .filter(|k| o.contains_key(*k))
        .collect();
    match given[..] {
        ["flip-bit"] => Ok(("flip-bit", dec(int::<u64>(&o["flip-bit"], "u64")?))),
        ["truncate"] => Ok(("truncate", dec(int::<u64>(&o["truncate"], "u64")?))),
        ["replace"] => {
            let r = object(&o["replace"], "`replace`", &["offset", "hex"])?;
            let offset = int::<u64>(r.get("offset").unwrap_or(&json!(0)), "u64")?;
            let bytes = wit::unhex(
                r.get("hex")
                    .and_then(Value::as_str)
                    .ok_or("`replace.hex` is required")?,
            )?;
            Ok((
                "replace",
                json!({"offset": dec(offset), "hex": hex(&bytes)}),
            ))
        }
        _ => Err("`corrupt` takes exactly one of `flip-bit`, `replace` and `truncate`".into()),
    }
}

/// A `write` step's batch: a list of ids (default empty), or `{"prefix": s, "count": n}` for
/// the n ids `s0`, `s1`, ... (large batches a case file should not spell out; n at most 65,536).
fn batch(o: &Map<String, Value>) -> Res<Vec<String>> {
    match o.get("batch") {
        Some(v @ Value::Object(_)) => {
            let g = object(v, "a generated batch", &["prefix", "count"])?;
            let prefix = wit::string(g.get("prefix").ok_or("`batch.prefix` is required")?)?;
            let count = int::<u32>(g.get("count").ok_or("`batch.count` is required")?, "u32")?;
            if count > 1 << 16 {
                return Err(format!("`batch.count` {count}: at most 65536"));
            }
            Ok((0..count).map(|i| format!("{prefix}{i}")).collect())
        }
        _ => wit::list(o, "batch", wit::string),
    }
}

fn storage_fault(f: &Value) -> Res<Value> {
    let o = object(f, "a storage fault", &["call", "nth", "fault", "index"])?;
    let call = o
        .get("call")
        .and_then(Value::as_str)
        .filter(|c| CALLS.contains(c));
    let call = call.ok_or_else(|| format!("`call` must be one of {}", CALLS.join(", ")))?;
    let fault = o
        .get("fault")
        .and_then(Value::as_str)
        .filter(|f| FAULTS.contains(f));
    let fault = fault.ok_or_else(|| format!("`fault` must be one of {}", FAULTS.join(", ")))?;
    if o.contains_key("index") && fault != "conflict" {
        return Err("`index` goes with `conflict` only".into());
    }
    let nth = nth(o)?;
    let index = int::<u32>(o.get("index").unwrap_or(&json!(0)), "u32")?;
    Ok(json!({"call": call, "nth": dec(nth), "fault": fault, "index": dec(index)}))
}

fn consumer_fault(f: &Value) -> Res<Value> {
    let o = object(f, "a consumer fault", &["nth", "fault"])?;
    if o.get("fault").is_some_and(|f| f != "fail") {
        return Err("the only consumer fault is `fail`".into());
    }
    Ok(json!({"nth": dec(nth(o)?), "fault": "fail"}))
}

fn nth(o: &Map<String, Value>) -> Res<u32> {
    match int::<u32>(o.get("nth").unwrap_or(&json!(1)), "u32")? {
        0 => Err("`nth` counts from 1".into()),
        n => Ok(n),
    }
}
