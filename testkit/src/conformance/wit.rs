//! The WIT JSON forms of the contract's values (tests/conformance/README.md, "Values"), in both
//! directions, over the guest's own model types (`checkpoint_guest::model`).
//!
//! Reading (`checkpoint`, `options`, ...) accepts what case files write: omitted fields take
//! their documented defaults, integers are JSON numbers or decimal strings, unknown fields are
//! errors. Writing (`*_json`) gives the fully explicit form of expanded cases and transcripts:
//! every field present, every integer a decimal string, bytes lowercase hex.
//!
//! A Rust runner holds the host's types (`checkpoint_host`); they are generated from the same
//! WIT with the same serde derives, so [`convert`] carries a value between the two.

use checkpoint_guest::model::{
    AckOutcome, Admission, BatchProgress, ChangeKind, Changelog, Checkpoint, Completion,
    Corruption, DriverOptions, Error, HistoryEntry, HistoryPage, HistoryRequest, ImportAction,
    ImportReceipt, Message, OperatorState, Options, OverflowPolicy, Policy, ProcessedMessage,
    Progress, Receipt, ResetOrigin, ResetReceipt, ResetRequest, Resume, ResumeOrigin, ResumePoint,
    SavepointInfo, SinkPosition, SourcePosition, StageExport, StageState, StageSummary, Watermark,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

/// A failure to read a value, as a message naming the field.
pub type Res<T> = Result<T, String>;

/// Carries a value between two types with the same serde shape (the guest's and the host's
/// bindings of one WIT record).
pub fn convert<T: Serialize, U: DeserializeOwned>(value: &T) -> U {
    let json = serde_json::to_value(value).expect("WIT records serialise");
    serde_json::from_value(json).expect("the guest's and the host's records have one shape")
}

// ---------------------------------------------------------------------------------------------
// Scalars

/// An integer of type `T` (named `ty` in messages), from a JSON number or a decimal string
/// (`-?[0-9]+`).
pub fn int<T: TryFrom<i128>>(v: &Value, ty: &str) -> Res<T> {
    let n = match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) if is_decimal(s) => s.parse::<i128>().ok(),
        _ => None,
    };
    n.and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("{v} is not a {ty}"))
}

/// Whether `s` is a decimal integer as transcripts write them (`-?[0-9]+`).
pub fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.len() <= 39 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An integer as transcripts and expanded cases write it: a decimal string.
pub fn dec(n: impl std::fmt::Display) -> Value {
    Value::String(n.to_string())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex (either case; whitespace ignored).
pub fn unhex(s: &str) -> Res<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return Err(format!("{s:?} is not hex (odd length or not ASCII)"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("{s:?} is not hex")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Objects with defaults

/// A JSON object whose fields must all be in `allowed`.
pub fn object<'a>(v: &'a Value, what: &str, allowed: &[&str]) -> Res<&'a Map<String, Value>> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("{what} must be an object, not {v}"))?;
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "unknown field `{k}` in {what} (known: {})",
            allowed.join(", ")
        )),
        None => Ok(o),
    }
}

fn num<T: TryFrom<i128>>(
    o: &Map<String, Value>,
    name: &str,
    default: Option<T>,
    ty: &str,
) -> Res<T> {
    match (o.get(name), default) {
        (Some(v), _) => int(v, ty).map_err(|e| format!("`{name}`: {e}")),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(format!("`{name}` is required")),
    }
}

fn text(o: &Map<String, Value>, name: &str, default: &str) -> Res<String> {
    match o.get(name) {
        None => Ok(default.to_owned()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("`{name}` must be a string, not {other}")),
    }
}

/// Operator state bytes: hex (default empty), or `{"repeat": hex, "times": n}` for large
/// states a case file should not spell out (at most 64 MiB).
fn state_of(v: Option<&Value>) -> Res<Vec<u8>> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => unhex(s),
        Some(v @ Value::Object(_)) => {
            let o = object(v, "a repeated state", &["repeat", "times"])?;
            let unit = unhex(&text(o, "repeat", "")?)?;
            let times: u64 = num(o, "times", None, "u64")?;
            let total = (unit.len() as u64).saturating_mul(times);
            if unit.is_empty() || total > 64 << 20 {
                return Err(format!(
                    "repeat of {} bytes x {times}: 1 byte to 64 MiB",
                    unit.len()
                ));
            }
            Ok(unit.repeat(times as usize))
        }
        Some(other) => Err(format!(
            "must be hex or {{\"repeat\", \"times\"}}, not {other}"
        )),
    }
}

/// The list under `name` (default empty), each element read by `each`.
pub fn list<T>(o: &Map<String, Value>, name: &str, each: impl Fn(&Value) -> Res<T>) -> Res<Vec<T>> {
    match o.get(name) {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| each(v).map_err(|e| format!("`{name}`[{i}]: {e}")))
            .collect(),
        Some(other) => Err(format!("`{name}` must be a list, not {other}")),
    }
}

/// A string (message ids, keys).
pub fn string(v: &Value) -> Res<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{v} is not a string"))
}

fn nested<T>(
    o: &Map<String, Value>,
    name: &str,
    read: impl Fn(Option<&Value>) -> Res<T>,
) -> Res<T> {
    read(o.get(name)).map_err(|e| format!("`{name}`: {e}"))
}

/// A `watermark`; absent is `{"offset": 0, "event-time-ms": 0}`.
pub fn watermark(v: Option<&Value>) -> Res<Watermark> {
    let empty = json!({});
    let o = object(
        v.unwrap_or(&empty),
        "a watermark",
        &["offset", "event-time-ms"],
    )?;
    Ok(Watermark {
        offset: num(o, "offset", Some(0), "u64")?,
        event_time_ms: num(o, "event-time-ms", Some(0), "s64")?,
    })
}

const CHECKPOINT_FIELDS: &[&str] = &[
    "run-id",
    "stage",
    "sequence",
    "epoch",
    "watermark",
    "sources",
    "sinks",
    "operator-states",
    "idempotency-key",
    "at-ms",
];

/// A `checkpoint` with the README's defaults; `sequence` is required.
pub fn checkpoint(v: &Value) -> Res<Checkpoint> {
    let o = object(v, "a checkpoint", CHECKPOINT_FIELDS)?;
    Ok(Checkpoint {
        run_id: text(o, "run-id", "run")?,
        stage: text(o, "stage", "stage")?,
        sequence: num(o, "sequence", None, "u64")?,
        epoch: num(o, "epoch", Some(1), "u64")?,
        watermark: nested(o, "watermark", watermark)?,
        sources: list(o, "sources", source_position)?,
        sinks: list(o, "sinks", sink)?,
        operator_states: list(o, "operator-states", operator_state)?,
        idempotency_key: text(o, "idempotency-key", "")?,
        at_ms: num(o, "at-ms", Some(0), "u64")?,
    })
}

/// A `sink-position`; defaults `""`, 0.
fn sink(v: &Value) -> Res<SinkPosition> {
    let s = object(v, "a sink-position", &["name", "position"])?;
    Ok(SinkPosition {
        name: text(s, "name", "")?,
        position: num(s, "position", Some(0), "u64")?,
    })
}

/// An `operator-state`; defaults `""`, empty state.
fn operator_state(v: &Value) -> Res<OperatorState> {
    let s = object(v, "an operator-state", &["name", "state"])?;
    Ok(OperatorState {
        name: text(s, "name", "")?,
        state: state_of(s.get("state")).map_err(|e| format!("`state`: {e}"))?,
    })
}

/// A `stage-state`; both lists default to empty.
pub fn stage_state(v: &Value) -> Res<StageState> {
    let o = object(v, "a stage-state", &["sinks", "operator-states"])?;
    Ok(StageState {
        sinks: list(o, "sinks", sink)?,
        operator_states: list(o, "operator-states", operator_state)?,
    })
}

/// An `option<stage-state>`: absent or `null` is none.
pub fn stage_state_option(v: Option<&Value>) -> Res<Option<StageState>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => stage_state(v).map(Some),
    }
}

/// Checkpointer `options`; absent fields default to `test`, 1 and 65536.
pub fn options(v: Option<&Value>) -> Res<Options> {
    let empty = json!({});
    let o = object(
        v.unwrap_or(&empty),
        "options",
        &["namespace", "max-retained", "max-checkpoint-bytes"],
    )?;
    Ok(Options {
        namespace: text(o, "namespace", "test")?,
        max_retained: num(o, "max-retained", Some(1), "u32")?,
        max_checkpoint_bytes: num(o, "max-checkpoint-bytes", Some(65536), "u32")?,
    })
}

/// The `max-in-flight` of case files that give none: the Python and Node hosts' default.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1024;

/// `driver-options`; defaults `run`, `stage`, epoch 1, `per-message`, capacity 0, `drop-new`,
/// max-in-flight 1024.
pub fn driver_options(v: Option<&Value>) -> Res<DriverOptions> {
    let empty = json!({});
    let o = object(
        v.unwrap_or(&empty),
        "driver options",
        &[
            "run-id",
            "stage",
            "epoch",
            "policy",
            "changelog-capacity",
            "overflow",
            "max-in-flight",
        ],
    )?;
    let policy = match o.get("policy") {
        None => Policy::PerMessage,
        Some(Value::String(s)) if s == "per-message" => Policy::PerMessage,
        Some(Value::String(s)) if s == "explicit-flush" => Policy::ExplicitFlush,
        Some(v @ Value::Object(_)) => Policy::PerBatch(num(
            object(v, "a policy", &["per-batch"])?,
            "per-batch",
            None,
            "u32",
        )?),
        Some(other) => return Err(format!("unknown policy {other}")),
    };
    Ok(DriverOptions {
        run_id: text(o, "run-id", "run")?,
        stage: text(o, "stage", "stage")?,
        epoch: num(o, "epoch", Some(1), "u64")?,
        policy,
        changelog_capacity: num(o, "changelog-capacity", Some(0), "u32")?,
        overflow: match text(o, "overflow", "drop-new")?.as_str() {
            "drop-new" => OverflowPolicy::DropNew,
            "overwrite-oldest" => OverflowPolicy::OverwriteOldest,
            other => return Err(format!("unknown overflow policy {other:?}")),
        },
        max_in_flight: num(o, "max-in-flight", Some(DEFAULT_MAX_IN_FLIGHT), "u32")?,
    })
}

/// A `processed-message`; defaults `""`, 0, 0.
pub fn message(v: &Value) -> Res<ProcessedMessage> {
    let o = object(v, "a message", &["id", "next-offset", "event-time-ms"])?;
    Ok(ProcessedMessage {
        id: text(o, "id", "")?,
        next_offset: num(o, "next-offset", Some(0), "u64")?,
        event_time_ms: num(o, "event-time-ms", Some(0), "s64")?,
    })
}

/// A `message` (what `begin` takes); defaults `""`, `""`, no offset (absent or `null`), 0.
pub fn source_message(v: &Value) -> Res<Message> {
    let o = object(v, "a message", &["id", "source", "offset", "event-time-ms"])?;
    Ok(Message {
        id: text(o, "id", "")?,
        source: text(o, "source", "")?,
        offset: match o.get("offset") {
            None | Some(Value::Null) => None,
            Some(v) => Some(int(v, "u64").map_err(|e| format!("`offset`: {e}"))?),
        },
        event_time_ms: num(o, "event-time-ms", Some(0), "s64")?,
    })
}

/// A `source-position`; defaults `""`, sequence 0, watermark as [`watermark`].
fn source_position(v: &Value) -> Res<SourcePosition> {
    let s = object(v, "a source-position", &["name", "sequence", "watermark"])?;
    Ok(SourcePosition {
        name: text(s, "name", "")?,
        sequence: num(s, "sequence", Some(0), "u64")?,
        watermark: nested(s, "watermark", watermark)?,
    })
}

/// An optional integer: absent or `null` is none.
pub fn option_int<T: TryFrom<i128>>(v: Option<&Value>, ty: &str) -> Res<Option<T>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => int(v, ty).map(Some),
    }
}

/// An optional string: absent or `null` is none.
pub fn option_string(v: Option<&Value>) -> Res<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string(v).map(Some),
    }
}

/// A `reset-request`; defaults `run`, `stage`, watermark as [`watermark`], no sources, state
/// none (keep the stored one), epoch none (the stored one + 1), at-ms 0.
pub fn reset_request(v: Option<&Value>) -> Res<ResetRequest> {
    let empty = json!({});
    let o = object(
        v.unwrap_or(&empty),
        "a reset-request",
        &[
            "run-id",
            "stage",
            "watermark",
            "sources",
            "state",
            "epoch",
            "at-ms",
        ],
    )?;
    Ok(ResetRequest {
        run_id: text(o, "run-id", "run")?,
        stage: text(o, "stage", "stage")?,
        watermark: nested(o, "watermark", watermark)?,
        sources: list(o, "sources", source_position)?,
        state: nested(o, "state", stage_state_option)?,
        epoch: nested(o, "epoch", |v| option_int(v, "u64"))?,
        at_ms: num(o, "at-ms", Some(0), "u64")?,
    })
}

/// A `history-request`; defaults after-sequence 0 and max-bytes 0; `max-checkpoints` is
/// required (0 is a request the component refuses, which a case may want to show).
pub fn history_request(v: &Value) -> Res<HistoryRequest> {
    let o = object(
        v,
        "a history-request",
        &["after-sequence", "max-checkpoints", "max-bytes"],
    )?;
    Ok(HistoryRequest {
        after_sequence: num(o, "after-sequence", Some(0), "u64")?,
        max_checkpoints: num(o, "max-checkpoints", None, "u32")?,
        max_bytes: num(o, "max-bytes", Some(0), "u64")?,
    })
}

/// A `resume-point` (what `resume-point-label` takes); defaults `run`, `stage`, sequence 0,
/// epoch 0, watermark as [`watermark`].
pub fn resume_point(v: Option<&Value>) -> Res<ResumePoint> {
    let empty = json!({});
    let o = object(
        v.unwrap_or(&empty),
        "a resume-point",
        &["run-id", "stage", "sequence", "epoch", "watermark"],
    )?;
    Ok(ResumePoint {
        run_id: text(o, "run-id", "run")?,
        stage: text(o, "stage", "stage")?,
        sequence: num(o, "sequence", Some(0), "u64")?,
        epoch: num(o, "epoch", Some(0), "u64")?,
        watermark: nested(o, "watermark", watermark)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Values -> explicit WIT JSON

/// The WIT name of a corruption kind: the guest's own table.
pub use checkpoint_guest::errors::corruption_kind_name as kind_name;

/// Every corruption kind's WIT name.
pub const KIND_NAMES: &[&str] = &[
    "truncated",
    "bad-magic",
    "crc-mismatch",
    "unknown-version",
    "unknown-flags",
    "trailing-bytes",
    "invalid-utf8",
    "malformed",
    "misplaced",
];

/// `watermark`.
pub fn watermark_json(w: &Watermark) -> Value {
    json!({"offset": dec(w.offset), "event-time-ms": dec(w.event_time_ms)})
}

/// `checkpoint`.
pub fn checkpoint_json(c: &Checkpoint) -> Value {
    json!({
        "run-id": c.run_id, "stage": c.stage, "sequence": dec(c.sequence), "epoch": dec(c.epoch),
        "watermark": watermark_json(&c.watermark),
        "sources": c.sources.iter().map(source_json).collect::<Vec<_>>(),
        "sinks": c.sinks.iter().map(|s| json!({"name": s.name, "position": dec(s.position)}))
            .collect::<Vec<_>>(),
        "operator-states": c.operator_states.iter()
            .map(|s| json!({"name": s.name, "state": hex(&s.state)})).collect::<Vec<_>>(),
        "idempotency-key": c.idempotency_key, "at-ms": dec(c.at_ms),
    })
}

/// `options`.
pub fn options_json(o: &Options) -> Value {
    json!({"namespace": o.namespace, "max-retained": dec(o.max_retained),
        "max-checkpoint-bytes": dec(o.max_checkpoint_bytes)})
}

/// `driver-options`.
pub fn driver_options_json(d: &DriverOptions) -> Value {
    let policy = match d.policy {
        Policy::PerMessage => json!("per-message"),
        Policy::PerBatch(n) => json!({"per-batch": dec(n)}),
        Policy::ExplicitFlush => json!("explicit-flush"),
    };
    let overflow = match d.overflow {
        OverflowPolicy::DropNew => "drop-new",
        OverflowPolicy::OverwriteOldest => "overwrite-oldest",
    };
    json!({"run-id": d.run_id, "stage": d.stage, "epoch": dec(d.epoch), "policy": policy,
        "changelog-capacity": dec(d.changelog_capacity), "overflow": overflow,
        "max-in-flight": dec(d.max_in_flight)})
}

/// `processed-message`.
pub fn message_json(m: &ProcessedMessage) -> Value {
    json!({"id": m.id, "next-offset": dec(m.next_offset), "event-time-ms": dec(m.event_time_ms)})
}

/// `message`; a missing offset is `null`.
pub fn source_message_json(m: &Message) -> Value {
    json!({"id": m.id, "source": m.source, "offset": m.offset.map(dec),
        "event-time-ms": dec(m.event_time_ms)})
}

/// `stage-state`.
pub fn stage_state_json(s: &StageState) -> Value {
    json!({
        "sinks": s.sinks.iter().map(|s| json!({"name": s.name, "position": dec(s.position)}))
            .collect::<Vec<_>>(),
        "operator-states": s.operator_states.iter()
            .map(|s| json!({"name": s.name, "state": hex(&s.state)})).collect::<Vec<_>>(),
    })
}

/// `resume-point`.
pub fn point_json(p: &ResumePoint) -> Value {
    json!({"run-id": p.run_id, "stage": p.stage, "sequence": dec(p.sequence),
        "epoch": dec(p.epoch), "watermark": watermark_json(&p.watermark)})
}

/// `corruption`.
pub fn corruption_json(c: &Corruption) -> Value {
    json!({"kind": kind_name(c.kind), "key": c.key, "detail": c.detail})
}

/// `resume`.
pub fn resume_json(r: &Resume) -> Value {
    let origin = match &r.origin {
        ResumeOrigin::Latest => json!("latest"),
        ResumeOrigin::Fresh => json!("fresh"),
        ResumeOrigin::Fallback(f) => json!({"fallback": {
            "skipped": f.skipped.iter().map(corruption_json).collect::<Vec<_>>()}}),
    };
    json!({"point": point_json(&r.point), "origin": origin,
        "checkpoint": r.checkpoint.as_ref().map(checkpoint_json)})
}

/// `receipt`.
pub fn receipt_json(r: &Receipt) -> Value {
    let acks = ack_json(&r.acks);
    json!({"sequence": dec(r.sequence), "version": dec(r.version), "replayed": r.replayed,
        "pruned": dec(r.pruned), "acks": acks})
}

/// `progress`.
pub fn progress_json(p: &Progress) -> Value {
    match p {
        Progress::Pending(n) => json!({"pending": dec(n)}),
        Progress::Checkpointed(r) => json!({"checkpointed": receipt_json(r)}),
        Progress::Covered(a) => json!({"covered": ack_json(a)}),
    }
}

/// `ack-outcome`.
pub fn ack_json(a: &AckOutcome) -> Value {
    match a {
        AckOutcome::Acked(n) => json!({"acked": dec(n)}),
        AckOutcome::Failed(m) => json!({"failed": m}),
    }
}

/// `admission`.
pub fn admission_json(a: &Admission) -> Value {
    match a {
        Admission::Admitted(ticket) => json!({"admitted": dec(ticket)}),
        Admission::Covered(acks) => json!({"covered": ack_json(acks)}),
        Admission::Backpressure(n) => json!({"backpressure": dec(n)}),
    }
}

/// `completion`.
pub fn completion_json(c: &Completion) -> Value {
    json!({"released": c.released.iter().map(dec).collect::<Vec<_>>(), "due": c.due})
}

/// `batch-progress`.
pub fn batch_json(b: &BatchProgress) -> Value {
    json!({"checkpoints": b.checkpoints.iter().map(receipt_json).collect::<Vec<_>>(),
        "pending": dec(b.pending), "covered": dec(b.covered)})
}

/// `changelog`.
pub fn changelog_json(c: &Changelog) -> Value {
    let events: Vec<Value> = c
        .events
        .iter()
        .map(|e| {
            let kind = match e.kind {
                ChangeKind::Processed => "processed",
                ChangeKind::Watermark => "watermark",
                ChangeKind::Checkpoint => "checkpoint",
            };
            json!({"kind": kind, "sequence": dec(e.sequence), "watermark": watermark_json(&e.watermark)})
        })
        .collect();
    json!({"events": events, "overflow-count": dec(c.overflow_count), "capacity": dec(c.capacity)})
}

/// `source-position`.
fn source_json(s: &SourcePosition) -> Value {
    json!({"name": s.name, "sequence": dec(s.sequence), "watermark": watermark_json(&s.watermark)})
}

/// `reset-request`; a none is `null`.
pub fn reset_request_json(r: &ResetRequest) -> Value {
    json!({"run-id": r.run_id, "stage": r.stage, "watermark": watermark_json(&r.watermark),
        "sources": r.sources.iter().map(source_json).collect::<Vec<_>>(),
        "state": r.state.as_ref().map(stage_state_json), "epoch": r.epoch.map(dec),
        "at-ms": dec(r.at_ms)})
}

/// `history-request`.
pub fn history_request_json(r: &HistoryRequest) -> Value {
    json!({"after-sequence": dec(r.after_sequence), "max-checkpoints": dec(r.max_checkpoints),
        "max-bytes": dec(r.max_bytes)})
}

/// `reset-origin`; no savepoint is `null`.
pub fn reset_origin_json(r: &ResetOrigin) -> Value {
    json!({"from-sequence": dec(r.from_sequence), "from-epoch": dec(r.from_epoch),
        "from-watermark": watermark_json(&r.from_watermark), "savepoint": r.savepoint})
}

/// `reset-receipt`.
pub fn reset_receipt_json(r: &ResetReceipt) -> Value {
    json!({"checkpoint": checkpoint_json(&r.checkpoint), "version": dec(r.version),
        "pruned": dec(r.pruned), "origin": reset_origin_json(&r.origin)})
}

/// `history-entry`.
pub fn history_entry_json(e: &HistoryEntry) -> Value {
    json!({"checkpoint": checkpoint_json(&e.checkpoint), "encoded-bytes": dec(e.encoded_bytes),
        "reset": e.reset.as_ref().map(reset_origin_json)})
}

/// `history-page`; no next page is `null`.
pub fn history_page_json(p: &HistoryPage) -> Value {
    json!({"entries": p.entries.iter().map(history_entry_json).collect::<Vec<_>>(),
        "next-after": p.next_after.map(dec)})
}

/// `savepoint-info`.
pub fn savepoint_json(s: &SavepointInfo) -> Value {
    json!({"name": s.name, "point": point_json(&s.point), "at-ms": dec(s.at_ms),
        "encoded-bytes": dec(s.encoded_bytes)})
}

/// `stage-summary`; each none is `null`.
pub fn stage_summary_json(s: &StageSummary) -> Value {
    json!({"run-id": s.run_id, "stage": s.stage, "latest": s.latest.as_ref().map(point_json),
        "at-ms": dec(s.at_ms), "encoded-bytes": dec(s.encoded_bytes),
        "reset": s.reset.as_ref().map(reset_origin_json),
        "damage": s.damage.as_ref().map(corruption_json),
        "retained": dec(s.retained), "savepoints": dec(s.savepoints)})
}

/// `stage-export`: bytes as hex, none as `null`.
pub fn stage_export_json(e: &StageExport) -> Value {
    json!({"run-id": e.run_id, "stage": e.stage, "latest": e.latest.as_deref().map(hex),
        "retained": e.retained.iter()
            .map(|c| json!({"sequence": dec(c.sequence), "bytes": hex(&c.bytes)}))
            .collect::<Vec<_>>(),
        "savepoints": e.savepoints.iter()
            .map(|s| json!({"name": s.name, "bytes": hex(&s.bytes)}))
            .collect::<Vec<_>>()})
}

/// `import-receipt`.
pub fn import_receipt_json(r: &ImportReceipt) -> Value {
    let action = match r.action {
        ImportAction::Created => "created",
        ImportAction::Replaced => "replaced",
        ImportAction::Identical => "identical",
    };
    json!({"action": action, "keys-written": dec(r.keys_written),
        "keys-removed": dec(r.keys_removed), "bytes-written": dec(r.bytes_written)})
}

/// `error`, with its message texts.
pub fn error_json(e: &Error) -> Value {
    match e {
        Error::Invalid(i) => json!({"invalid": {"field": i.field, "reason": i.reason}}),
        Error::Regression(r) => json!({"regression": {
            "stored-sequence": dec(r.stored_sequence),
            "stored-watermark": watermark_json(&r.stored_watermark),
            "attempted-sequence": dec(r.attempted_sequence),
            "attempted-watermark": watermark_json(&r.attempted_watermark),
            "field": r.field}}),
        Error::Fenced(f) => json!({"fenced": {"stored-epoch": dec(f.stored_epoch),
            "attempted-epoch": dec(f.attempted_epoch)}}),
        Error::Conflict(m) => json!({"conflict": m}),
        Error::NotFound => json!("not-found"),
        Error::Corrupt(c) => json!({"corrupt": corruption_json(c)}),
        Error::Storage(m) => json!({"storage": m}),
        Error::TooLarge(t) => json!({"too-large": {"size": dec(t.size), "limit": dec(t.limit)}}),
        Error::BrokenStore(m) => json!({"broken-store": m}),
    }
}

/// The result of an operation: `{"ok": value}` or `{"error": error}`.
pub fn outcome<T>(r: Result<T, Error>, to_json: impl FnOnce(&T) -> Value) -> Value {
    match r {
        Ok(v) => json!({"ok": to_json(&v)}),
        Err(e) => json!({"error": error_json(&e)}),
    }
}
