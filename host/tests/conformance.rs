//! The conformance suite's Rust runner (tests/conformance/README.md). The testkit expands the
//! case files into explicit steps; this file maps each op to a host API call and each result to
//! its WIT JSON, on every native backend (`checkpoint_testkit::backends`: memory, SQLite, the
//! freezing crash store, PostgreSQL and Redis), writes one transcript per backend and case to
//! target/conformance/transcripts/rust/, and checks them with the testkit's checker. Its summary
//! line is read by `scripts/reliability.sh`.

use checkpoint_host::consumer::RecordingConsumer;
use checkpoint_host::{
    Checkpoint, Checkpointer, Codec, Driver, Error, HistoryRequest, Message, Options,
    ProcessedMessage, ResetRequest, ResumePoint, StageExport, StageState, Watermark, WriteOp,
};
use checkpoint_testkit::backends::{self, Backend};
use checkpoint_testkit::conformance::runner::{self, outcome, via};
use checkpoint_testkit::conformance::wit;
use checkpoint_testkit::faults::{AckScript, FaultScript, FaultyConsumer, FaultyStorage};
use serde_json::{Value, json};

type Res<T> = Result<T, String>;

fn num<T: TryFrom<i128>>(v: &Value) -> Res<T> {
    wit::int(v, "integer")
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn checkpoint(v: &Value) -> Res<Checkpoint> {
    wit::checkpoint(v).map(|c| wit::convert(&c))
}

fn list<T>(v: &Value, read: impl Fn(&Value) -> Res<T>) -> Res<Vec<T>> {
    v.as_array().into_iter().flatten().map(read).collect()
}

fn message(v: &Value) -> Res<ProcessedMessage> {
    wit::message(v).map(|m| wit::convert(&m))
}

fn source_message(v: &Value) -> Res<Message> {
    wit::source_message(v).map(|m| wit::convert(&m))
}

fn flag(v: &Value) -> Res<bool> {
    v.as_bool()
        .ok_or_else(|| format!("expected a bool, not {v}"))
}

fn option_u64(v: &Value) -> Res<Option<u64>> {
    wit::option_int(Some(v), "u64")
}

fn stage_state(v: &Value) -> Res<Option<StageState>> {
    wit::stage_state_option(Some(v)).map(|s| s.map(|s| wit::convert(&s)))
}

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
    /// What the case's last successful `export-stage` answered: `import-stage` imports it.
    exported: Option<StageExport>,
}

impl Player<'_> {
    fn connect(&self, options: &Options) -> Result<Checkpointer, Error> {
        let storage = FaultyStorage::with_script(self.backend.connect(), self.script.clone());
        let consumer = FaultyConsumer::with_script(self.recording.clone(), self.acks.clone());
        Checkpointer::open(Box::new(storage), Box::new(consumer), options)
    }

    /// Opens a checkpointer with the current options (a checkpointer holds no other state).
    fn reopen(&mut self, why: &str) -> Res<()> {
        let c = self
            .connect(&self.options)
            .map_err(|e| format!("{why}: {e}"))?;
        self.handle = Handle::Checkpointer(Box::new(c));
        Ok(())
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

    /// Plays one expanded step; its record, and whether the case must stop (trap, runner error).
    fn play(&mut self, step: &Value) -> (Value, bool) {
        let result = runner::inject(step, &self.script, &self.acks).and_then(|()| self.op(step));
        let mut out = json!({"op": step["op"]});
        for field in runner::record(step) {
            out[field] = match field {
                "result" => result.clone().unwrap_or_default(),
                "calls" => runner::calls(&self.script, &self.acks),
                "acks" => json!(self.recording.acks()),
                "failed-acks" => json!(self.acks.failed()),
                _ => self
                    .backend
                    .keys()
                    .map_or_else(|e| json!({"runner-error": e}), |k| json!(k)),
            };
        }
        match result {
            Err(e) => {
                out["result"] = json!({"runner-error": e});
                (out, true)
            }
            Ok(r) => (out, r.get("trap").is_some()),
        }
    }

    /// Runs a step's op: its result (`null` for an op without one), or `Err` when the runner
    /// could not carry it out.
    fn op(&mut self, step: &Value) -> Res<Value> {
        let (run, stage) = (text(&step["run-id"]), text(&step["stage"]));
        let name = text(&step["name"]);
        Ok(match text(&step["op"]) {
            "open" => {
                let options: Options = wit::convert(&wit::options(Some(&step["options"]))?);
                self.handle = Handle::None;
                match self.connect(&options) {
                    Ok(c) => {
                        (self.handle, self.options) = (Handle::Checkpointer(Box::new(c)), options);
                        json!({"ok": null})
                    }
                    Err(e) => outcome::<()>(Err(e), |_| Value::Null),
                }
            }
            "crash" => {
                self.handle = Handle::None;
                self.backend.reboot();
                self.reopen("reopening after the crash")?;
                Value::Null
            }
            "write" => {
                let (c, batch) = (
                    checkpoint(&step["checkpoint"])?,
                    list(&step["batch"], wit::string)?,
                );
                outcome(
                    self.checkpointer()?.write(&c, &batch),
                    via(wit::receipt_json),
                )
            }
            "get" => outcome(
                self.checkpointer()?.get(run, stage),
                via(wit::checkpoint_json),
            ),
            "resume-point" => outcome(
                self.checkpointer()?.resume_point(run, stage),
                via(wit::resume_json),
            ),
            "history" => outcome(self.checkpointer()?.history(run, stage), |h| {
                h.iter().map(via(wit::checkpoint_json)).collect()
            }),
            "delete" => outcome(self.checkpointer()?.delete(run, stage), |n| wit::dec(n)),
            "recover-acks" => outcome(
                self.checkpointer()?.recover_acks(run, stage),
                via(wit::ack_json),
            ),
            "get-at" => {
                let sequence = num(&step["sequence"])?;
                outcome(
                    self.checkpointer()?.get_at(run, stage, sequence),
                    via(wit::checkpoint_json),
                )
            }
            "history-page" => {
                let request: HistoryRequest =
                    wit::convert(&wit::history_request(&step["request"])?);
                outcome(
                    self.checkpointer()?.history_page(run, stage, &request),
                    via(wit::history_page_json),
                )
            }
            "history-entries" => outcome(self.checkpointer()?.history_entries(run, stage), |h| {
                h.iter().map(via(wit::history_entry_json)).collect()
            }),
            "reset" => {
                let request: ResetRequest =
                    wit::convert(&wit::reset_request(Some(&step["request"]))?);
                outcome(
                    self.checkpointer()?.reset(&request),
                    via(wit::reset_receipt_json),
                )
            }
            "create-savepoint" => {
                let sequence = option_u64(&step["sequence"])?;
                outcome(
                    self.checkpointer()?
                        .create_savepoint(run, stage, name, sequence),
                    via(wit::savepoint_json),
                )
            }
            "list-savepoints" => outcome(self.checkpointer()?.list_savepoints(run, stage), |l| {
                l.iter().map(via(wit::savepoint_json)).collect()
            }),
            "get-savepoint" => outcome(
                self.checkpointer()?.get_savepoint(run, stage, name),
                via(wit::checkpoint_json),
            ),
            "restore-savepoint" => {
                let (epoch, at_ms) = (option_u64(&step["epoch"])?, num(&step["at-ms"])?);
                outcome(
                    self.checkpointer()?
                        .restore_savepoint(run, stage, name, epoch, at_ms),
                    via(wit::reset_receipt_json),
                )
            }
            "delete-savepoint" => outcome(
                self.checkpointer()?.delete_savepoint(run, stage, name),
                |b| json!(b),
            ),
            "list-stages" => {
                let run = wit::option_string(Some(&step["run-id"]))?;
                outcome(self.checkpointer()?.list_stages(run.as_deref()), |l| {
                    l.iter().map(via(wit::stage_summary_json)).collect()
                })
            }
            "export-stage" => {
                let exported = self.checkpointer()?.export_stage(run, stage);
                if let Ok(export) = &exported {
                    self.exported = Some(export.clone());
                }
                outcome(exported, via(wit::stage_export_json))
            }
            "import-stage" => {
                let export = self
                    .exported
                    .clone()
                    .ok_or("import-stage before any successful export-stage")?;
                let (replace_older, dry_run) =
                    (flag(&step["replace-older"])?, flag(&step["dry-run"])?);
                outcome(
                    self.checkpointer()?
                        .import_stage(&export, replace_older, dry_run),
                    via(wit::import_receipt_json),
                )
            }
            "open-driver" => {
                let options = wit::convert(&wit::driver_options(Some(&step["driver"]))?);
                if !matches!(self.handle, Handle::Checkpointer(_)) {
                    self.reopen("reopening for the driver")?; // closes any open driver
                }
                let Handle::Checkpointer(c) = std::mem::replace(&mut self.handle, Handle::None)
                else {
                    unreachable!("a checkpointer was just opened")
                };
                match c.open_driver(&options) {
                    Ok(mut d) => {
                        let resumed = outcome(d.resumed_from(), via(wit::resume_json));
                        self.handle = Handle::Driver(Box::new(d));
                        let ok = resumed
                            .get("ok")
                            .map(|r| json!({"ok": {"resumed-from": r}}));
                        ok.unwrap_or(resumed)
                    }
                    Err(e) => {
                        self.reopen("reopening after a failed open-driver")?;
                        outcome::<()>(Err(e), |_| Value::Null)
                    }
                }
            }
            "record-processed" => {
                let (m, now) = (message(&step["message"])?, num(&step["now-ms"])?);
                outcome(
                    self.driver()?.record_processed(&m, now),
                    via(wit::progress_json),
                )
            }
            "record-processed-batch" => {
                let (ms, now) = (list(&step["messages"], message)?, num(&step["now-ms"])?);
                outcome(
                    self.driver()?.record_processed_batch(&ms, now),
                    via(wit::batch_json),
                )
            }
            "begin" => {
                let m = source_message(&step["message"])?;
                outcome(self.driver()?.begin(&m), via(wit::admission_json))
            }
            "complete" => {
                let ticket = num(&step["ticket"])?;
                outcome(self.driver()?.complete(ticket), via(wit::completion_json))
            }
            "flush" => {
                let (state, now) = (stage_state(&step["state"])?, num(&step["now-ms"])?);
                outcome(
                    self.driver()?.flush(state.as_ref(), now),
                    via(wit::progress_json),
                )
            }
            "recovered-acks" => outcome(self.driver()?.recovered_acks(), via(wit::ack_json)),
            "changelog" => outcome(self.driver()?.changelog(), via(wit::changelog_json)),
            "cursor" => outcome(self.driver()?.cursor(), via(wit::point_json)),
            "resumed-from" => outcome(self.driver()?.resumed_from(), via(wit::resume_json)),
            "encode" => {
                let c = checkpoint(&step["checkpoint"])?;
                outcome(self.codec.encode(&c), |b| json!(wit::hex(b)))
            }
            "decode" => {
                let bytes = wit::unhex(text(&step["hex"]))?;
                outcome(self.codec.decode(&bytes), via(wit::checkpoint_json))
            }
            "validate" => {
                let c = checkpoint(&step["checkpoint"])?;
                outcome(self.codec.validate(&c), |_| Value::Null)
            }
            "chain-signature" => {
                let cs = list(&step["checkpoints"], checkpoint)?;
                outcome(self.codec.chain_signature(&cs), |s| json!(s))
            }
            "resume-point-for-stage" => {
                let cs = list(&step["checkpoints"], checkpoint)?;
                outcome(
                    self.codec.resume_point_for_stage(&cs, stage),
                    via(wit::point_json),
                )
            }
            "watermark-label" => {
                let w: Watermark = wit::convert(&wit::watermark(Some(&step["watermark"]))?);
                outcome(self.codec.watermark_label(&w), |s| json!(s))
            }
            "checkpoint-label" => {
                let c = checkpoint(&step["checkpoint"])?;
                outcome(self.codec.checkpoint_label(&c), |s| json!(s))
            }
            "resume-point-label" => {
                let p: ResumePoint = wit::convert(&wit::resume_point(Some(&step["point"]))?);
                outcome(self.codec.resume_point_label(&p), |s| json!(s))
            }
            "put-raw" => {
                let bytes = wit::unhex(text(&step["hex"]))?;
                self.backend
                    .write_raw(text(&step["key"]), WriteOp::Put(bytes))?;
                Value::Null
            }
            "delete-raw" => {
                self.backend
                    .write_raw(text(&step["key"]), WriteOp::Delete)?;
                Value::Null
            }
            "corrupt" => {
                let key = text(&step["key"]);
                let damaged = runner::damage(self.backend.read_raw(key)?, step)?;
                self.backend.write_raw(key, WriteOp::Put(damaged))?;
                Value::Null
            }
            other => return Err(format!("unknown op {other:?}")),
        })
    }
}

/// Plays a case on a fresh store: the steps' records, up to a trap or runner error.
fn play_case(case: &Value, backend: &Backend) -> Res<Vec<Value>> {
    let mut p = Player {
        backend,
        options: wit::convert(&wit::options(Some(&case["options"]))?),
        handle: Handle::None,
        script: FaultScript::new(),
        acks: AckScript::new(),
        recording: RecordingConsumer::new(),
        codec: Codec::new().map_err(|e| format!("codec: {e}"))?,
        exported: None,
    };
    // A case whose options are invalid starts with no checkpointer; its first step says so.
    let _ = p.reopen("open");
    let mut records = Vec::new();
    for step in case["steps"].as_array().into_iter().flatten() {
        let (record, stop) = p.play(step);
        records.push(record);
        if stop {
            break;
        }
    }
    Ok(records)
}

fn main() {
    let expanded = runner::expand_repository()
        .unwrap_or_else(|errors| panic!("invalid case files:\n{}", errors.join("\n")));
    let out = runner::transcripts_dir();
    let _ = std::fs::remove_dir_all(out.join("rust")); // no stale transcript survives
    let names = backends::names("conformance");
    for name in &names {
        for case in expanded["cases"].as_array().into_iter().flatten() {
            let steps = play_case(case, &Backend::new(name, "conformance"))
                .unwrap_or_else(|e| vec![json!({"op": "open", "result": {"runner-error": e}})]);
            let case = text(&case["name"]);
            runner::write_transcript(&out, "rust", name, case, steps).expect("transcript");
        }
    }
    let report = runner::check_host(&expanded, &out, "rust", &names);
    let (rust, backends) = (report.host("rust"), names.len());
    println!(
        "conformance: {} of {} passed ({} cases x {backends} backends, {} files); \
         {} bad inputs answered with a named error",
        rust.passed, rust.total, report.cases, report.files, rust.bad_inputs
    );
    let failures = report.failures.join("\n");
    assert!(
        report.ok(),
        "{} failures:\n{failures}",
        report.failures.len()
    );
}
