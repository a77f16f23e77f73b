//! The conformance suite's Rust runner: plays every case file of `tests/conformance/cases`
//! against the real component, through the public host API, on every native backend, with the
//! fault-injecting wrappers of `checkpoint_host::faults`. Backends: memory, SQLite, the
//! freezing store of the crash tests (a `crash` step reboots it to its durable state), and the
//! server stores when their shared servers run (each case on a fresh store of its own).
//!
//! The schema is `tests/conformance/README.md`; Python and Node runners play the same files.
//! Every file in the directory must parse and every case in it must pass on every backend: a
//! file that no runner plays fails the run.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use checkpoint_host::consumer::RecordingConsumer;
use checkpoint_host::faults::{
    AckScript, FaultScript, FaultyConsumer, FaultyStorage, FreezingStorage,
};
use checkpoint_host::faults::{StorageCall, StorageFault};
use checkpoint_host::storage::{MemoryStorage, PostgresStorage, RedisStorage, SqliteStorage};
use checkpoint_host::{
    AckOutcome, BatchProgress, ChangeKind, Changelog, Checkpoint, CheckpointError, Checkpointer,
    Codec, CommitOutcome, Corruption, Driver, DriverOptions, Error, Lookup, OperatorState, Options,
    OverflowPolicy, Policy, ProcessedMessage, Progress, Receipt, Resume, ResumeOrigin, ResumePoint,
    SinkPosition, SourcePosition, Storage, Watermark, Write, WriteOp, corruption_kind_name,
};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

mod common;

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

// ---------------------------------------------------------------------------------------------
// Backends

/// A backend under test: fresh connections over one shared store.
struct Backend {
    name: &'static str,
    open: Box<dyn Fn() -> Box<dyn Storage>>,
    /// What a `crash` does to the store itself (the freezing store reboots; the others keep
    /// everything that was committed, which is all that is durable).
    reboot: Box<dyn Fn()>,
    _dir: Option<TempDir>,
}

fn backend(name: &str) -> Backend {
    match name {
        "memory" => {
            let memory = MemoryStorage::new();
            Backend {
                name: "memory",
                open: Box::new(move || Box::new(memory.clone())),
                reboot: Box::new(|| {}),
                _dir: None,
            }
        }
        "sqlite" => {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("conformance.db");
            Backend {
                name: "sqlite",
                open: Box::new(move || Box::new(SqliteStorage::open(&path).expect("open sqlite"))),
                reboot: Box::new(|| {}),
                _dir: Some(dir),
            }
        }
        // The durable-state fake of the crash tests: a crash reboots it, so a case sees only
        // what was durably committed.
        "freezing" => {
            let current = Rc::new(RefCell::new(FreezingStorage::new()));
            let rebooted = Rc::clone(&current);
            Backend {
                name: "freezing",
                open: Box::new(move || Box::new(current.borrow().clone())),
                reboot: Box::new(move || {
                    let next = rebooted.borrow().reboot();
                    *rebooted.borrow_mut() = next;
                }),
                _dir: None,
            }
        }
        // A store of its own on the shared server: a key prefix no other case uses.
        "redis" => {
            let url = common::shared_server_url(common::ServerKind::Redis, "conformance")
                .expect("redis is listed only when its server runs");
            let store = RedisStorage::open(&common::fresh_store_url(
                common::ServerKind::Redis,
                &url,
                "conformance",
            ))
            .expect("open redis");
            Backend {
                name: "redis",
                open: Box::new(move || Box::new(store.clone())),
                reboot: Box::new(|| {}),
                _dir: None,
            }
        }
        // A store of its own on the shared server: a schema no other case uses.
        "postgres" => {
            let url = common::shared_server_url(common::ServerKind::Postgres, "conformance")
                .expect("postgres is listed only when its server runs");
            let store = PostgresStorage::open(&common::fresh_store_url(
                common::ServerKind::Postgres,
                &url,
                "conformance",
            ))
            .expect("open postgres");
            Backend {
                name: "postgres",
                open: Box::new(move || Box::new(store.clone())),
                reboot: Box::new(|| {}),
                _dir: None,
            }
        }
        other => panic!("unknown backend {other}"),
    }
}

/// The backends every case is played on. Server backends join when their shared server runs
/// (see `common`: `make test` starts them; only `CKPT_SKIP_SERVER_TESTS=1` leaves them out).
fn backend_names() -> Vec<&'static str> {
    #[allow(unused_mut)] // server backends push below
    let mut names = vec!["memory", "sqlite", "freezing"];
    if common::shared_server_url(common::ServerKind::Redis, "conformance").is_some() {
        names.push("redis");
    }
    if common::shared_server_url(common::ServerKind::Postgres, "conformance").is_some() {
        names.push("postgres");
    }
    names
}

// ---------------------------------------------------------------------------------------------
// JSON -> host values (WIT kebab-case names)

type Res<T> = Result<T, String>;

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object().and_then(|o| o.get(name))
}

fn u64_of(v: &Value) -> Res<u64> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("{n} is not a u64")),
        Value::String(s) => s.parse().map_err(|_| format!("{s:?} is not a u64")),
        other => Err(format!("{other} is not a u64")),
    }
}

fn s64_of(v: &Value) -> Res<i64> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("{n} is not an s64")),
        Value::String(s) => s.parse().map_err(|_| format!("{s:?} is not an s64")),
        other => Err(format!("{other} is not an s64")),
    }
}

fn u32_of(v: &Value) -> Res<u32> {
    u32::try_from(u64_of(v)?).map_err(|_| format!("{v} is not a u32"))
}

fn str_or<'a>(v: &'a Value, name: &str, default: &'a str) -> Res<&'a str> {
    match field(v, name) {
        None => Ok(default),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`{name}` must be a string, not {other}")),
    }
}

fn u64_or(v: &Value, name: &str, default: u64) -> Res<u64> {
    field(v, name).map_or(Ok(default), u64_of)
}

fn hex_decode(s: &str) -> Res<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd-length hex {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("bad hex {s:?}")))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn vector(name: &str) -> Res<Vec<u8>> {
    if name.contains('/') || name.contains("..") {
        return Err(format!(
            "vector {name:?} must be a file name in tests/golden"
        ));
    }
    std::fs::read(repo_path("tests/golden").join(name)).map_err(|e| format!("vector {name}: {e}"))
}

fn watermark_of(v: Option<&Value>) -> Res<Watermark> {
    let Some(v) = v else {
        return Ok(Watermark {
            offset: 0,
            event_time_ms: 0,
        });
    };
    Ok(Watermark {
        offset: u64_or(v, "offset", 0)?,
        event_time_ms: field(v, "event-time-ms").map_or(Ok(0), s64_of)?,
    })
}

fn list<'a>(v: &'a Value, name: &str) -> Res<&'a [Value]> {
    match field(v, name) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(format!("`{name}` must be a list, not {other}")),
    }
}

fn checkpoint_of(v: &Value) -> Res<Checkpoint> {
    let sequence = field(v, "sequence").ok_or("a checkpoint needs `sequence`")?;
    Ok(Checkpoint {
        run_id: str_or(v, "run-id", "run")?.to_owned(),
        stage: str_or(v, "stage", "stage")?.to_owned(),
        sequence: u64_of(sequence)?,
        epoch: u64_or(v, "epoch", 1)?,
        watermark: watermark_of(field(v, "watermark"))?,
        sources: list(v, "sources")?
            .iter()
            .map(|s| {
                Ok(SourcePosition {
                    name: str_or(s, "name", "")?.to_owned(),
                    sequence: u64_or(s, "sequence", 0)?,
                    watermark: watermark_of(field(s, "watermark"))?,
                })
            })
            .collect::<Res<_>>()?,
        sinks: list(v, "sinks")?
            .iter()
            .map(|s| {
                Ok(SinkPosition {
                    name: str_or(s, "name", "")?.to_owned(),
                    position: u64_or(s, "position", 0)?,
                })
            })
            .collect::<Res<_>>()?,
        operator_states: list(v, "operator-states")?
            .iter()
            .map(|s| {
                Ok(OperatorState {
                    name: str_or(s, "name", "")?.to_owned(),
                    state: hex_decode(str_or(s, "state", "")?)?,
                })
            })
            .collect::<Res<_>>()?,
        idempotency_key: str_or(v, "idempotency-key", "")?.to_owned(),
        at_ms: u64_or(v, "at-ms", 0)?,
    })
}

fn checkpoints_of(v: &Value, name: &str) -> Res<Vec<Checkpoint>> {
    list(v, name)?.iter().map(checkpoint_of).collect()
}

fn options_of(v: Option<&Value>) -> Res<Options> {
    let empty = json!({});
    let v = v.unwrap_or(&empty);
    Ok(Options {
        namespace: str_or(v, "namespace", "test")?.to_owned(),
        max_retained: u32_of(field(v, "max-retained").unwrap_or(&json!(1)))?,
        max_checkpoint_bytes: u32_of(field(v, "max-checkpoint-bytes").unwrap_or(&json!(65536)))?,
    })
}

fn policy_of(v: Option<&Value>) -> Res<Policy> {
    match v {
        None => Ok(Policy::PerMessage),
        Some(Value::String(s)) if s == "per-message" => Ok(Policy::PerMessage),
        Some(Value::String(s)) if s == "explicit-flush" => Ok(Policy::ExplicitFlush),
        Some(v) if field(v, "per-batch").is_some() => {
            Ok(Policy::PerBatch(u32_of(&v["per-batch"])?))
        }
        Some(other) => Err(format!("unknown policy {other}")),
    }
}

fn driver_options_of(v: &Value) -> Res<DriverOptions> {
    Ok(DriverOptions {
        run_id: str_or(v, "run-id", "run")?.to_owned(),
        stage: str_or(v, "stage", "stage")?.to_owned(),
        epoch: u64_or(v, "epoch", 1)?,
        policy: policy_of(field(v, "policy"))?,
        changelog_capacity: u32_of(field(v, "changelog-capacity").unwrap_or(&json!(0)))?,
        overflow: match str_or(v, "overflow", "drop-new")? {
            "drop-new" => OverflowPolicy::DropNew,
            "overwrite-oldest" => OverflowPolicy::OverwriteOldest,
            other => return Err(format!("unknown overflow {other}")),
        },
    })
}

fn message_of(v: &Value) -> Res<ProcessedMessage> {
    Ok(ProcessedMessage {
        id: str_or(v, "id", "")?.to_owned(),
        next_offset: u64_or(v, "next-offset", 0)?,
        event_time_ms: field(v, "event-time-ms").map_or(Ok(0), s64_of)?,
    })
}

fn ids_of(v: &Value, name: &str) -> Res<Vec<String>> {
    list(v, name)?
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("`{name}` must hold strings"))
        })
        .collect()
}

/// Bytes given as `hex` or `vector`.
fn bytes_of(step: &Value) -> Res<Vec<u8>> {
    match (field(step, "hex"), field(step, "vector")) {
        (Some(Value::String(h)), None) => hex_decode(h),
        (None, Some(Value::String(v))) => vector(v),
        _ => Err("give exactly one of `hex` and `vector`".into()),
    }
}

// ---------------------------------------------------------------------------------------------
// host values -> JSON (WIT kebab-case names; variants as {"case": payload} or "case")

fn wm(w: &Watermark) -> Value {
    json!({"offset": w.offset, "event-time-ms": w.event_time_ms})
}

fn checkpoint_json(c: &Checkpoint) -> Value {
    json!({
        "run-id": c.run_id, "stage": c.stage, "sequence": c.sequence, "epoch": c.epoch,
        "watermark": wm(&c.watermark),
        "sources": c.sources.iter().map(|s| json!({"name": s.name, "sequence": s.sequence, "watermark": wm(&s.watermark)})).collect::<Vec<_>>(),
        "sinks": c.sinks.iter().map(|s| json!({"name": s.name, "position": s.position})).collect::<Vec<_>>(),
        "operator-states": c.operator_states.iter().map(|s| json!({"name": s.name, "state": hex(&s.state)})).collect::<Vec<_>>(),
        "idempotency-key": c.idempotency_key, "at-ms": c.at_ms,
    })
}

fn point_json(p: &ResumePoint) -> Value {
    json!({"run-id": p.run_id, "stage": p.stage, "sequence": p.sequence, "epoch": p.epoch, "watermark": wm(&p.watermark)})
}

fn corruption_json(c: &Corruption) -> Value {
    json!({"kind": corruption_kind_name(c.kind), "key": c.key, "detail": c.detail})
}

fn resume_json(r: &Resume) -> Value {
    let origin = match &r.origin {
        ResumeOrigin::Latest => json!("latest"),
        ResumeOrigin::Fresh => json!("fresh"),
        ResumeOrigin::Fallback(f) => {
            json!({"fallback": {"skipped": f.skipped.iter().map(corruption_json).collect::<Vec<_>>()}})
        }
    };
    json!({"point": point_json(&r.point), "origin": origin})
}

fn receipt_json(r: &Receipt) -> Value {
    let acks = match &r.acks {
        AckOutcome::Acked(n) => json!({"acked": n}),
        AckOutcome::Failed(m) => json!({"failed": m}),
    };
    json!({"sequence": r.sequence, "version": r.version, "replayed": r.replayed, "pruned": r.pruned, "acks": acks})
}

fn progress_json(p: &Progress) -> Value {
    match p {
        Progress::Pending(n) => json!({"pending": n}),
        Progress::Checkpointed(r) => json!({"checkpointed": receipt_json(r)}),
    }
}

fn batch_json(b: &BatchProgress) -> Value {
    json!({"checkpoints": b.checkpoints.iter().map(receipt_json).collect::<Vec<_>>(), "pending": b.pending})
}

fn changelog_json(c: &Changelog) -> Value {
    let events: Vec<Value> = c
        .events
        .iter()
        .map(|e| {
            let kind = match e.kind {
                ChangeKind::Processed => "processed",
                ChangeKind::Watermark => "watermark",
                ChangeKind::Checkpoint => "checkpoint",
            };
            json!({"kind": kind, "sequence": e.sequence, "watermark": wm(&e.watermark)})
        })
        .collect();
    json!({"events": events, "overflow-count": c.overflow_count, "capacity": c.capacity})
}

fn error_json(e: &CheckpointError) -> Value {
    match e {
        CheckpointError::Invalid(i) => json!({"invalid": {"field": i.field, "reason": i.reason}}),
        CheckpointError::Regression(r) => json!({"regression": {
            "stored-sequence": r.stored_sequence, "stored-watermark": wm(&r.stored_watermark),
            "attempted-sequence": r.attempted_sequence, "attempted-watermark": wm(&r.attempted_watermark),
            "field": r.field}}),
        CheckpointError::Fenced(f) => {
            json!({"fenced": {"stored-epoch": f.stored_epoch, "attempted-epoch": f.attempted_epoch}})
        }
        CheckpointError::Conflict(m) => json!({"conflict": m}),
        CheckpointError::NotFound => json!("not-found"),
        CheckpointError::Corrupt(c) => json!({"corrupt": corruption_json(c)}),
        CheckpointError::Storage(m) => json!({"storage": m}),
        CheckpointError::TooLarge(t) => json!({"too-large": {"size": t.size, "limit": t.limit}}),
    }
}

/// Bad inputs (invalid, corrupt or too-large input) the component answered with a named error,
/// for the summary line and `make reliability`.
static BAD_INPUTS_NAMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `{"ok": value}` or `{"error": error}`; a runtime failure (trap, deadline) fails the step.
fn outcome<T>(r: Result<T, Error>, to_json: impl Fn(&T) -> Value) -> Res<Value> {
    match r {
        Ok(v) => Ok(json!({"ok": to_json(&v)})),
        Err(Error::Checkpoint(e)) => {
            if matches!(
                e,
                CheckpointError::Invalid(_)
                    | CheckpointError::Corrupt(_)
                    | CheckpointError::TooLarge(_)
            ) {
                BAD_INPUTS_NAMED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(json!({"error": error_json(&e)}))
        }
        Err(Error::Runtime(e)) => Err(format!("runtime failure (trap or deadline): {e:#}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Matching: `expected` is a pattern over the actual JSON (see the README's "Matching").

fn numeric(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s)
            if !s.is_empty()
                && s.trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            Some(s.clone())
        }
        _ => None,
    }
}

fn matches(expected: &Value, actual: &Value, path: &str) -> Res<()> {
    let fail = || Err(format!("at {path}: expected {expected}, got {actual}"));
    match (expected, actual) {
        (Value::Object(e), _) if e.len() == 1 && e.contains_key("$vector") => {
            let name = e["$vector"].as_str().ok_or("`$vector` names a file")?;
            matches(&json!(hex(&vector(name)?)), actual, path)
        }
        (Value::Object(e), _) if e.len() == 1 && e.contains_key("$contains") => {
            let (Some(needle), Some(hay)) = (e["$contains"].as_str(), actual.as_str()) else {
                return fail();
            };
            if hay.contains(needle) { Ok(()) } else { fail() }
        }
        (Value::String(tag), Value::Object(a)) if a.len() == 1 && a.contains_key(tag) => Ok(()),
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let Some(av) = a.get(k) else {
                    return Err(format!("at {path}: no field `{k}` in {actual}"));
                };
                matches(ev, av, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "at {path}: expected {} items, got {}: {actual}",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                matches(ev, av, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (e, a) if numeric(e).is_some() && numeric(e) == numeric(a) && a.is_number() => Ok(()),
        (e, a) if e == a => Ok(()),
        _ => fail(),
    }
}

// ---------------------------------------------------------------------------------------------
// Playing a case

enum Handle {
    None,
    Checkpointer(Box<Checkpointer>),
    Driver(Box<Driver>),
}

struct Player<'a> {
    backend: &'a Backend,
    options: Options,
    handle: Handle,
    script: FaultScript,
    acks: AckScript,
    recording: RecordingConsumer,
    codec: Codec,
}

impl Player<'_> {
    fn connect(&mut self, options: &Options) -> Result<Checkpointer, Error> {
        let storage = FaultyStorage::with_script((self.backend.open)(), self.script.clone());
        let consumer = FaultyConsumer::with_script(self.recording.clone(), self.acks.clone());
        Checkpointer::open(Box::new(storage), Box::new(consumer), options)
    }

    fn checkpointer(&mut self) -> Res<&mut Checkpointer> {
        match &mut self.handle {
            Handle::Checkpointer(c) => Ok(c),
            Handle::Driver(d) => Ok(d.checkpointer()),
            Handle::None => Err("no open checkpointer (the last open failed)".into()),
        }
    }

    fn driver(&mut self) -> Res<&mut Driver> {
        match &mut self.handle {
            Handle::Driver(d) => Ok(d),
            _ => Err("no open driver: run `open-driver` first".into()),
        }
    }

    fn raw(&self) -> Box<dyn Storage> {
        (self.backend.open)()
    }

    fn put_raw(&self, key: &str, value: Vec<u8>) -> Res<()> {
        let write = Write {
            key: key.into(),
            expected_version: None,
            op: WriteOp::Put(value),
        };
        match self.raw().commit(vec![write]) {
            Ok(CommitOutcome::Committed(_)) => Ok(()),
            other => Err(format!("put-raw {key}: {other:?}")),
        }
    }

    fn stored(&self, key: &str) -> Res<Vec<u8>> {
        match self.raw().get(key) {
            Ok(Lookup::Found(entry)) => Ok(entry.value),
            other => Err(format!("corrupt: {key} holds nothing ({other:?})")),
        }
    }

    fn keys(&self) -> Res<Vec<String>> {
        self.raw()
            .list_keys("")
            .map_err(|e| format!("list keys: {e:?}"))
    }

    fn decode_bytes(&mut self, bytes: &[u8]) -> Res<Value> {
        outcome(self.codec.decode(bytes), checkpoint_json)
    }

    /// Runs one step's operation; returns its outcome (`{"ok":..}` / `{"error":..}`), or `None`
    /// for steps that have no result of their own.
    fn run_op(&mut self, op: &str, step: &Value) -> Res<Option<Value>> {
        let run = str_or(step, "run-id", "run")?.to_owned();
        let stage = str_or(step, "stage", "stage")?.to_owned();
        let result = match op {
            "open" => {
                let options = options_of(field(step, "options"))?;
                self.handle = Handle::None;
                let result = self.connect(&options);
                let value = outcome(result.as_ref().map(|_| ()).map_err(clone_err), |_| {
                    Value::Null
                })?;
                if let Ok(c) = result {
                    self.handle = Handle::Checkpointer(Box::new(c));
                    self.options = options;
                }
                value
            }
            "crash" => {
                self.handle = Handle::None;
                (self.backend.reboot)();
                let options = self.options.clone();
                let c = self
                    .connect(&options)
                    .map_err(|e| format!("reopen after crash: {e}"))?;
                self.handle = Handle::Checkpointer(Box::new(c));
                return Ok(None);
            }
            "write" => {
                let checkpoint =
                    checkpoint_of(field(step, "checkpoint").ok_or("write needs `checkpoint`")?)?;
                let batch = ids_of(step, "batch")?;
                let r = self.checkpointer()?.write(&checkpoint, &batch);
                outcome(r, receipt_json)?
            }
            "get" => outcome(self.checkpointer()?.get(&run, &stage), checkpoint_json)?,
            "resume-point" => {
                outcome(self.checkpointer()?.resume_point(&run, &stage), resume_json)?
            }
            "history" => outcome(self.checkpointer()?.history(&run, &stage), |h| {
                Value::Array(h.iter().map(checkpoint_json).collect())
            })?,
            "delete" => outcome(self.checkpointer()?.delete(&run, &stage), |n| json!(n))?,
            "open-driver" => {
                let options = driver_options_of(field(step, "driver").unwrap_or(&json!({})))?;
                let checkpointer = match std::mem::replace(&mut self.handle, Handle::None) {
                    Handle::Checkpointer(c) => *c,
                    // The checkpointer holds no state but its options: a new instance is the same.
                    _ => {
                        let o = self.options.clone();
                        self.connect(&o)
                            .map_err(|e| format!("reopen for driver: {e}"))?
                    }
                };
                match checkpointer.open_driver(&options) {
                    Ok(mut d) => {
                        let resumed = d.resumed_from().map_err(|e| format!("resumed-from: {e}"))?;
                        self.handle = Handle::Driver(Box::new(d));
                        json!({"ok": {"resumed-from": resume_json(&resumed)}})
                    }
                    Err(e) => {
                        let o = self.options.clone();
                        self.handle = Handle::Checkpointer(Box::new(
                            self.connect(&o).map_err(|e| e.to_string())?,
                        ));
                        outcome::<()>(Err(e), |_| Value::Null)?
                    }
                }
            }
            "record-processed" => {
                let message = message_of(field(step, "message").ok_or("needs `message`")?)?;
                let now = u64_or(step, "now-ms", 0)?;
                outcome(
                    self.driver()?.record_processed(&message, now),
                    progress_json,
                )?
            }
            "record-processed-batch" => {
                let messages: Vec<ProcessedMessage> = list(step, "messages")?
                    .iter()
                    .map(message_of)
                    .collect::<Res<_>>()?;
                let now = u64_or(step, "now-ms", 0)?;
                outcome(
                    self.driver()?.record_processed_batch(&messages, now),
                    batch_json,
                )?
            }
            "flush" => {
                let now = u64_or(step, "now-ms", 0)?;
                outcome(self.driver()?.flush(now), progress_json)?
            }
            "changelog" => outcome(self.driver()?.changelog(), changelog_json)?,
            "cursor" => outcome(self.driver()?.cursor(), point_json)?,
            "resumed-from" => outcome(self.driver()?.resumed_from(), resume_json)?,
            "encode" => {
                let c =
                    checkpoint_of(field(step, "checkpoint").ok_or("encode needs `checkpoint`")?)?;
                outcome(self.codec.encode(&c), |b| json!(hex(b)))?
            }
            "decode" => self.decode_bytes(&bytes_of(step)?)?,
            "decode-encode" => {
                let bytes = bytes_of(step)?;
                let c = self
                    .codec
                    .decode(&bytes)
                    .map_err(|e| format!("decode: {e}"))?;
                let again = self.codec.encode(&c).map_err(|e| format!("encode: {e}"))?;
                if again != bytes {
                    return Err(format!(
                        "re-encoding differs: {} vs {}",
                        hex(&again),
                        hex(&bytes)
                    ));
                }
                json!({"ok": checkpoint_json(&c)})
            }
            "validate" => {
                let c =
                    checkpoint_of(field(step, "checkpoint").ok_or("validate needs `checkpoint`")?)?;
                outcome(self.codec.validate(&c), |_| Value::Null)?
            }
            "chain-signature" => {
                let cs = checkpoints_of(step, "checkpoints")?;
                outcome(self.codec.chain_signature(&cs), |s| json!(s))?
            }
            "resume-point-for-stage" => {
                let cs = checkpoints_of(step, "checkpoints")?;
                outcome(self.codec.resume_point_for_stage(&cs, &stage), point_json)?
            }
            "put-raw" => {
                let key = str_or(step, "key", "")?;
                let bytes = match field(step, "checkpoint") {
                    Some(c) => self
                        .codec
                        .encode(&checkpoint_of(c)?)
                        .map_err(|e| format!("encode: {e}"))?,
                    None => bytes_of(step)?,
                };
                self.put_raw(key, bytes)?;
                return Ok(None);
            }
            "delete-raw" => {
                let key = str_or(step, "key", "")?;
                let write = Write {
                    key: key.into(),
                    expected_version: None,
                    op: WriteOp::Delete,
                };
                self.raw()
                    .commit(vec![write])
                    .map_err(|e| format!("delete-raw: {e:?}"))?;
                return Ok(None);
            }
            "corrupt" => {
                let key = str_or(step, "key", "")?;
                let mut bytes = self.stored(key)?;
                if let Some(bit) = field(step, "flip-bit") {
                    let bit = u64_of(bit)? as usize;
                    let byte = bytes.get_mut(bit / 8).ok_or("flip-bit past the end")?;
                    *byte ^= 1 << (bit % 8);
                } else if let Some(r) = field(step, "replace") {
                    let at = u64_or(r, "offset", 0)? as usize;
                    let with = hex_decode(str_or(r, "hex", "")?)?;
                    if at + with.len() > bytes.len() {
                        return Err("replace past the end".into());
                    }
                    bytes[at..at + with.len()].copy_from_slice(&with);
                } else if let Some(len) = field(step, "truncate") {
                    bytes.truncate(u64_of(len)? as usize);
                } else {
                    return Err("corrupt needs `flip-bit`, `replace` or `truncate`".into());
                }
                self.put_raw(key, bytes)?;
                return Ok(None);
            }
            "decode-truncations" => {
                let bytes = bytes_of(step)?;
                let expect = field(step, "expect").ok_or("needs `expect`")?;
                for len in 0..bytes.len() {
                    let got = self.decode_bytes(&bytes[..len])?;
                    matches(&family_pattern(expect), &got, "")
                        .map_err(|e| format!("truncated to {len} bytes: {e}"))?;
                }
                return Ok(None);
            }
            "decode-bit-flips" => {
                let bytes = bytes_of(step)?;
                let range = list(step, "bytes")?;
                let (from, to) = match range {
                    [a, b] => (u64_of(a)? as i64, u64_of(b)? as i64),
                    _ => return Err("`bytes` is [from, to)".into()),
                };
                let (from, to) = (
                    resolve(from, &bytes, step, "from-end")?,
                    resolve(to, &bytes, step, "from-end")?,
                );
                for at in from..to {
                    for bit in 0..8 {
                        let mut flipped = bytes.clone();
                        flipped[at] ^= 1 << bit;
                        let set = flipped[at] & (1 << bit) != 0;
                        let expect = match (
                            set,
                            field(step, "expect-set"),
                            field(step, "expect-cleared"),
                        ) {
                            (true, Some(e), _) | (false, _, Some(e)) => e,
                            _ => field(step, "expect").ok_or("needs `expect`")?,
                        };
                        let got = self.decode_bytes(&flipped)?;
                        matches(&family_pattern(expect), &got, "")
                            .map_err(|e| format!("bit {bit} of byte {at} flipped: {e}"))?;
                    }
                }
                return Ok(None);
            }
            other => return Err(format!("unknown op {other:?}")),
        };
        Ok(Some(result))
    }
}

/// `bytes` bounds count from the end when the step says `"from-end": true`.
fn resolve(at: i64, bytes: &[u8], step: &Value, flag: &str) -> Res<usize> {
    let from_end = field(step, flag).and_then(Value::as_bool).unwrap_or(false);
    let len = bytes.len() as i64;
    let at = if from_end { len - at } else { at };
    usize::try_from(at)
        .ok()
        .filter(|&a| a <= bytes.len())
        .ok_or_else(|| format!("byte bound {at} outside 0..={len}"))
}

/// A generated family's `expect` is a corruption kind: decode must fail with it.
fn family_pattern(kind: &Value) -> Value {
    json!({"error": {"corrupt": {"kind": kind}}})
}

fn clone_err(e: &Error) -> Error {
    match e {
        Error::Checkpoint(c) => Error::Checkpoint(c.clone()),
        Error::Runtime(r) => Error::Runtime(anyhow::anyhow!("{r:#}")),
    }
}

fn storage_fault(step_fault: &Value) -> Res<(StorageCall, u32, StorageFault)> {
    let call = match str_or(step_fault, "call", "")? {
        "get" => StorageCall::Get,
        "commit" => StorageCall::Commit,
        "list-keys" => StorageCall::ListKeys,
        other => return Err(format!("unknown storage call {other:?}")),
    };
    let nth = u32_of(field(step_fault, "nth").unwrap_or(&json!(1)))?;
    let fault = match str_or(step_fault, "fault", "")? {
        "unavailable" => StorageFault::Unavailable,
        "timeout" => StorageFault::Timeout,
        "failed" => StorageFault::Failed,
        "conflict" => {
            StorageFault::Conflict(u32_of(field(step_fault, "index").unwrap_or(&json!(0)))?)
        }
        "time-out-after-apply" => StorageFault::TimeoutAfterApply,
        other => return Err(format!("unknown storage fault {other:?}")),
    };
    Ok((call, nth, fault))
}

const STEP_KEYS: &[&str] = &[
    "op",
    "note",
    "storage",
    "consumer",
    "expect",
    "acks",
    "failed-acks",
    "keys",
    "storage-calls",
    "run-id",
    "stage",
    "checkpoint",
    "checkpoints",
    "batch",
    "options",
    "driver",
    "message",
    "messages",
    "now-ms",
    "hex",
    "vector",
    "key",
    "flip-bit",
    "replace",
    "truncate",
    "bytes",
    "from-end",
    "expect-set",
    "expect-cleared",
];

fn play_step(p: &mut Player, step: &Value) -> Res<()> {
    let obj = step.as_object().ok_or("a step is an object")?;
    for k in obj.keys() {
        if !STEP_KEYS.contains(&k.as_str()) {
            return Err(format!("unknown step field `{k}`"));
        }
    }
    let op = str_or(step, "op", "")?;
    p.script.reset();
    p.acks.reset();
    for f in list(step, "storage")? {
        let (call, nth, fault) = storage_fault(f)?;
        p.script.inject(call, nth, fault);
    }
    for f in list(step, "consumer")? {
        if str_or(f, "fault", "fail")? != "fail" {
            return Err("the only consumer fault is `fail`".into());
        }
        p.acks
            .fail_nth(u32_of(field(f, "nth").unwrap_or(&json!(1)))?);
    }
    let result = p.run_op(op, step)?;
    let calls = [
        ("get", p.script.calls(StorageCall::Get)),
        ("commit", p.script.calls(StorageCall::Commit)),
        ("list-keys", p.script.calls(StorageCall::ListKeys)),
        ("ack", p.acks.calls()),
    ];
    p.script.reset();
    p.acks.reset();
    match (result, field(step, "expect")) {
        (Some(actual), expect) => {
            let expect = expect.cloned().unwrap_or(json!("ok"));
            matches(&expect, &actual, "result")?;
        }
        (None, Some(_)) if !op.starts_with("decode-") => {
            return Err(format!("`{op}` has no result to expect"));
        }
        _ => {}
    }
    if let Some(expected) = field(step, "storage-calls") {
        let actual: Map<String, Value> = calls
            .iter()
            .map(|(k, n)| ((*k).to_owned(), json!(n)))
            .collect();
        matches(expected, &Value::Object(actual), "storage-calls")?;
    }
    check_logs(p, step)
}

fn check_logs(p: &Player, expected: &Value) -> Res<()> {
    if let Some(e) = field(expected, "acks") {
        matches(e, &json!(p.recording.acks()), "acks")?;
    }
    if let Some(e) = field(expected, "failed-acks") {
        matches(e, &json!(p.acks.failed()), "failed-acks")?;
    }
    if let Some(e) = field(expected, "keys") {
        matches(e, &json!(p.keys()?), "keys")?;
    }
    Ok(())
}

const CASE_KEYS: &[&str] = &[
    "name",
    "description",
    "covers",
    "options",
    "steps",
    "acks",
    "failed-acks",
    "keys",
    "skip",
];

fn play_case(case: &Value, backend: &Backend) -> Res<()> {
    for k in case.as_object().ok_or("a case is an object")?.keys() {
        if !CASE_KEYS.contains(&k.as_str()) {
            return Err(format!("unknown case field `{k}`"));
        }
    }
    let options = options_of(field(case, "options"))?;
    let mut p = Player {
        backend,
        options: options.clone(),
        handle: Handle::None,
        script: FaultScript::new(),
        acks: AckScript::new(),
        recording: RecordingConsumer::new(),
        codec: Codec::new().map_err(|e| format!("codec: {e}"))?,
    };
    // A case whose options are invalid starts with no checkpointer; its first step says so.
    if let Ok(c) = p.connect(&options) {
        p.handle = Handle::Checkpointer(Box::new(c));
    }
    for (i, step) in list(case, "steps")?.iter().enumerate() {
        let op = str_or(step, "op", "?").unwrap_or("?");
        play_step(&mut p, step).map_err(|e| format!("step {i} ({op}): {e}"))?;
    }
    check_logs(&p, case).map_err(|e| format!("after the last step: {e}"))
}

fn main() {
    let backends = backend_names();
    let dir = repo_path("tests/conformance/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/conformance/cases")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let mut names = BTreeSet::new();
    let mut failures = Vec::new();
    let (mut cases, mut passed, mut played_files) = (0, 0, 0);
    for file in &files {
        let shown = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if file.extension().and_then(|e| e.to_str()) != Some("json") {
            failures.push(format!(
                "{shown}: not a .json case file; no runner plays it"
            ));
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read case file");
        let doc: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{shown}: not JSON: {e}"));
                continue;
            }
        };
        let file_cases = match field(&doc, "cases") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            _ => {
                failures.push(format!("{shown}: no `cases`"));
                continue;
            }
        };
        played_files += 1;
        for case in file_cases {
            let name = str_or(case, "name", "").unwrap_or("").to_owned();
            if name.is_empty() || !names.insert(name.clone()) {
                failures.push(format!("{shown}: case name {name:?} empty or repeated"));
                continue;
            }
            cases += 1;
            for b in &backends {
                let backend = backend(b);
                match play_case(case, &backend) {
                    Ok(()) => passed += 1,
                    Err(e) => failures.push(format!("{shown} / {name} / {}: {e}", backend.name)),
                }
            }
        }
    }
    println!(
        "conformance: {passed} of {} passed ({cases} cases x {} backends, {played_files} files); \
         {} bad inputs answered with a named error",
        cases * backends.len(),
        backends.len(),
        BAD_INPUTS_NAMED.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(played_files > 0, "no case files in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
