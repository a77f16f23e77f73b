//! The operator's commands (`reset`, `savepoint`, `ls`, `get --sequence`, `delete-run`, `gc`,
//! `copy`) run as a user would, each test on SQLite stores in its own temp dir.

use std::path::PathBuf;
use std::process::{Command, Output};

use checkpoint_host::{
    Checkpoint, CheckpointError, Checkpointer, Error, Options, Watermark, consumer::NullConsumer,
    storage::open_storage,
};
use serde_json::Value;
use tempfile::TempDir;

/// A temp dir with a store `a.db` (the default `--store`) and room for more.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn url(&self, name: &str) -> String {
        format!("sqlite:{}", self.path(name).display())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `ckpt --store sqlite:<tmp>/a.db --max-retained 3 ARGS`; `args` is split at
    /// whitespace.
    fn ckpt(&self, args: &str) -> Output {
        self.ckpt_on("a.db", args)
    }

    fn ckpt_on(&self, db: &str, args: &str) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .current_dir(self.dir.path())
            .env_remove("CKPT_STORE")
            .args(["--store", &self.url(db), "--max-retained", "3"])
            .args(args.split_whitespace())
            .output()
            .expect("run ckpt")
    }

    /// Writes checkpoint `sequence` of `run`/`stage` at offset `sequence * 100` with `epoch`.
    fn write(&self, run: &str, stage: &str, sequence: u64, epoch: u64, at_ms: u64) {
        json(&self.ckpt(&format!(
            "--json write --run {run} --stage {stage} --sequence {sequence} --offset {} \
             --epoch {epoch} --event-time-ms 1733238983000 --at-ms {at_ms}",
            sequence * 100
        )));
    }

    /// A checkpointer on `a.db`, as a pipeline would open it.
    fn checkpointer(&self) -> Checkpointer {
        let storage = open_storage(&self.url("a.db")).expect("open the store");
        Checkpointer::open(storage, Box::new(NullConsumer), &options()).expect("open")
    }
}

fn options() -> Options {
    Options {
        namespace: "default".into(),
        max_retained: 3,
        max_checkpoint_bytes: 1 << 20,
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one JSON document of a successful command.
fn json(output: &Output) -> Value {
    assert_eq!(code(output), 0, "ckpt failed: {}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

/// The stage's latest as `ckpt get --json` prints it.
fn latest(scratch: &Scratch, run: &str, stage: &str) -> Value {
    json(&scratch.ckpt(&format!("--json get --run {run} --stage {stage}")))
}

const AT: u64 = 1_733_238_983_000;

/// r1/parse at sequences 1 to 4 (epoch 3), r1/sink at 1, r2/old at 1 a year earlier.
fn three_stages() -> Scratch {
    let scratch = Scratch::new();
    for sequence in 1..=4 {
        scratch.write("r1", "parse", sequence, 3, AT);
    }
    scratch.write("r1", "sink", 1, 0, AT);
    scratch.write("r2", "old", 1, 0, AT - 365 * 86_400_000);
    scratch
}

#[test]
fn reset_without_yes_prints_the_plan_changes_nothing_and_exits_2() {
    let scratch = three_stages();
    let before = latest(&scratch, "r1", "parse");

    let output = scratch.ckpt("reset --run r1 --stage parse --to-offset 150");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("resumes at offset 400") && text.contains("offset 150"),
        "the plan shows both positions: {text}"
    );
    assert!(text.contains("epoch: 4"), "{text}");
    assert!(stderr(&output).contains("add --yes"), "{}", stderr(&output));
    assert_eq!(latest(&scratch, "r1", "parse"), before);

    let plan = json(&scratch.ckpt("--json reset --run r1 --stage parse --to-offset 150 --dry-run"));
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["plan"]["epoch"], 4);
    assert_eq!(plan["plan"]["current"]["point"]["sequence"], 4);
    assert_eq!(latest(&scratch, "r1", "parse"), before);
}

#[test]
fn reset_with_yes_moves_the_stage_back_and_fences_the_old_epoch() {
    let scratch = three_stages();
    let done = json(&scratch.ckpt("--json reset --run r1 --stage parse --to-offset 150 --yes"));
    assert_eq!(done["applied"], true);
    assert_eq!(done["receipt"]["checkpoint"]["sequence"], 5);
    assert_eq!(done["receipt"]["checkpoint"]["epoch"], 4);
    assert_eq!(done["receipt"]["origin"]["from_sequence"], 4);
    let now = latest(&scratch, "r1", "parse");
    assert_eq!(now["watermark"]["offset"], 150);
    // The event time is kept when not given.
    assert_eq!(now["watermark"]["event_time_ms"], 1_733_238_983_000_i64);

    // The old owner (epoch 3) is fenced through the library, as a pipeline would see it.
    let mut checkpointer = scratch.checkpointer();
    let stale = Checkpoint {
        run_id: "r1".into(),
        stage: "parse".into(),
        sequence: 6,
        epoch: 3,
        watermark: Watermark {
            offset: 500,
            event_time_ms: 1_733_238_983_000,
        },
        sources: Vec::new(),
        sinks: Vec::new(),
        operator_states: Vec::new(),
        idempotency_key: String::new(),
        at_ms: AT,
    };
    let err = checkpointer.write(&stale, &[]).expect_err("fenced");
    assert!(
        matches!(err, Error::Checkpoint(CheckpointError::Fenced(_))),
        "{err:?}"
    );
    // Through the CLI too (exit 6), and the new epoch continues from the reset position.
    let output = scratch.ckpt("write --run r1 --stage parse --sequence 6 --offset 500 --epoch 3");
    assert_eq!(code(&output), 6, "{}", stderr(&output));
    scratch.write("r1", "parse", 6, 4, AT);

    // `ls` marks the reset until a later write; `verify` accepts the rewind (higher epoch).
    let report = json(&scratch.ckpt("--json verify"));
    assert_eq!(report["ok"], true, "{report}");
}

#[test]
fn reset_refuses_an_epoch_not_above_the_stored_one_with_exit_7() {
    let scratch = three_stages();
    let before = latest(&scratch, "r1", "parse");
    let output = scratch.ckpt("reset --run r1 --stage parse --to-offset 1 --epoch 3 --yes");
    assert_eq!(code(&output), 7, "{}", stderr(&output));
    assert_eq!(latest(&scratch, "r1", "parse"), before);
}

#[test]
fn savepoints_survive_retention_and_delete_and_restore_as_a_reset() {
    let scratch = three_stages();
    let created = json(
        &scratch.ckpt("--json savepoint create --run r1 --stage parse --name good --sequence 2"),
    );
    assert_eq!(created["point"]["sequence"], 2);
    let text = stdout(&scratch.ckpt("savepoint create --run r1 --stage parse --name latest"));
    assert!(
        text.contains("\"latest\"") && text.contains("checkpoint #4, epoch 3"),
        "{text}"
    );
    // Retention (max-retained 3) prunes sequence 2; the savepoint keeps it.
    scratch.write("r1", "parse", 5, 3, AT);
    assert_eq!(
        code(&scratch.ckpt("get --run r1 --stage parse --sequence 2")),
        3
    );
    let list = json(&scratch.ckpt("--json savepoint list --run r1 --stage parse"));
    let names: Vec<(&str, u64)> = list["savepoints"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name"),
                s["point"]["sequence"].as_u64().expect("seq"),
            )
        })
        .collect();
    assert_eq!(names, [("good", 2), ("latest", 4)]);

    // Restore asks for --yes like a reset, and changes nothing without it.
    let before = latest(&scratch, "r1", "parse");
    let output = scratch.ckpt("savepoint restore --run r1 --stage parse --name good");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    json(&scratch.ckpt("--json savepoint restore --run r1 --stage parse --name good --dry-run"));
    assert_eq!(latest(&scratch, "r1", "parse"), before);
    let done =
        json(&scratch.ckpt("--json savepoint restore --run r1 --stage parse --name good --yes"));
    assert_eq!(done["receipt"]["checkpoint"]["sequence"], 6);
    assert_eq!(done["receipt"]["checkpoint"]["epoch"], 4);
    assert_eq!(done["receipt"]["checkpoint"]["watermark"]["offset"], 200);
    assert_eq!(done["receipt"]["origin"]["savepoint"], "good");

    // `delete` keeps savepoints; deleting one is explicit and safe to repeat.
    json(&scratch.ckpt("--json delete --run r1 --stage parse"));
    let list = json(&scratch.ckpt("--json savepoint list --run r1 --stage parse"));
    assert_eq!(list["savepoints"].as_array().map(Vec::len), Some(2));
    let deleted = json(&scratch.ckpt("--json savepoint delete --run r1 --stage parse --name good"));
    assert_eq!(deleted["deleted"], true);
    let again = json(&scratch.ckpt("--json savepoint delete --run r1 --stage parse --name good"));
    assert_eq!(again["deleted"], false);
}

#[test]
fn get_with_a_sequence_reads_a_retained_checkpoint_and_exits_3_when_it_is_not() {
    let scratch = three_stages();
    let third = json(&scratch.ckpt("--json get --run r1 --stage parse --sequence 3"));
    assert_eq!(third["sequence"], 3);
    assert_eq!(third["watermark"]["offset"], 300);
    let text = stdout(&scratch.ckpt("get --run r1 --stage parse --sequence 3"));
    assert!(
        text.starts_with("run \"r1\" stage \"parse\" #3 epoch 3 at offset 300"),
        "the first line is the component's label: {text}"
    );
    // Sequence 1 was pruned by max-retained 3.
    let output = scratch.ckpt("get --run r1 --stage parse --sequence 1");
    assert_eq!(code(&output), 3, "{}", stderr(&output));
}

#[test]
fn ls_lists_every_stage_with_its_latest_and_filters_by_run() {
    let scratch = three_stages();
    json(&scratch.ckpt("--json savepoint create --run r1 --stage sink --name keep"));
    let all = json(&scratch.ckpt("--json ls"));
    let rows: Vec<(String, String, u64, u64, u64)> = all["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["run_id"].as_str().expect("run").to_owned(),
                s["stage"].as_str().expect("stage").to_owned(),
                s["latest"]["sequence"].as_u64().expect("sequence"),
                s["retained"].as_u64().expect("retained"),
                s["savepoints"].as_u64().expect("savepoints"),
            )
        })
        .collect();
    let expected = [
        ("r1", "parse", 4, 3, 0),
        ("r1", "sink", 1, 1, 1),
        ("r2", "old", 1, 1, 0),
    ]
    .map(|(r, s, q, n, p)| (r.to_owned(), s.to_owned(), q, n, p));
    assert_eq!(rows, expected);
    let r2 = json(&scratch.ckpt("--json ls --run r2"));
    assert_eq!(r2["stages"].as_array().map(Vec::len), Some(1));

    let text = stdout(&scratch.ckpt("ls"));
    assert!(text.starts_with("RUN"), "{text}");
    assert!(
        text.contains("offset 400, event time 2024-12-03T15:16:23.000Z"),
        "watermarks use the component's label: {text}"
    );
}

#[test]
fn delete_run_removes_each_stage_keeps_savepoints_unless_asked_and_is_safe_to_repeat() {
    let scratch = three_stages();
    json(&scratch.ckpt("--json savepoint create --run r1 --stage sink --name keep"));

    let output = scratch.ckpt("delete-run --run r1");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    json(&scratch.ckpt("--json delete-run --run r1 --dry-run"));
    assert_eq!(latest(&scratch, "r1", "parse")["sequence"], 4);

    let done = json(&scratch.ckpt("--json delete-run --run r1 --yes"));
    let removed: Vec<u64> = done["plan"]["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["removed"].as_u64().expect("removed"))
        .collect();
    // parse: latest + 3 retained; sink: latest + 1.
    assert_eq!(removed, [4, 2]);
    assert_eq!(code(&scratch.ckpt("get --run r1 --stage parse")), 3);
    assert_eq!(code(&scratch.ckpt("get --run r1 --stage sink")), 3);
    let list = json(&scratch.ckpt("--json savepoint list --run r1 --stage sink"));
    assert_eq!(list["savepoints"].as_array().map(Vec::len), Some(1));
    // Again: nothing left but the savepoint, which stays.
    json(&scratch.ckpt("--json delete-run --run r1 --yes"));
    let list = json(&scratch.ckpt("--json savepoint list --run r1 --stage sink"));
    assert_eq!(list["savepoints"].as_array().map(Vec::len), Some(1));
    // Asked explicitly, the savepoint goes too; the other run is untouched.
    json(&scratch.ckpt("--json delete-run --run r1 --include-savepoints --yes"));
    let r1 = json(&scratch.ckpt("--json ls --run r1"));
    assert_eq!(r1["stages"], serde_json::json!([]));
    assert_eq!(latest(&scratch, "r2", "old")["sequence"], 1);
}

#[test]
fn gc_dry_run_changes_nothing_and_gc_removes_only_stages_older_than_the_cutoff() {
    let scratch = three_stages();
    let now = AT + 1_000;
    let day = 86_400_000;
    let before = json(&scratch.ckpt("--json ls"));

    let plan = json(&scratch.ckpt(&format!(
        "--json gc --older-than-ms {day} --now-ms {now} --dry-run"
    )));
    assert_eq!(plan["applied"], false);
    let planned: Vec<&str> = plan["plan"]["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["stage"].as_str().expect("stage"))
        .collect();
    assert_eq!(planned, ["old"]);
    assert_eq!(json(&scratch.ckpt("--json ls")), before);
    let output = scratch.ckpt(&format!("gc --older-than-ms {day} --now-ms {now}"));
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert_eq!(json(&scratch.ckpt("--json ls")), before);

    json(&scratch.ckpt(&format!(
        "--json gc --older-than-ms {day} --now-ms {now} --yes"
    )));
    let after = json(&scratch.ckpt("--json ls"));
    let stages: Vec<&str> = after["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| s["stage"].as_str().expect("stage"))
        .collect();
    assert_eq!(stages, ["parse", "sink"]);
    // Nothing left to collect: a second run is a no-op and needs no --yes.
    let again = json(&scratch.ckpt(&format!("--json gc --older-than-ms {day} --now-ms {now}")));
    assert_eq!(again["plan"]["stages"], serde_json::json!([]));
}

#[test]
fn copy_between_sqlite_stores_is_byte_for_byte_safe_to_repeat_and_refuses_a_newer_target() {
    let scratch = three_stages();
    json(&scratch.ckpt("--json savepoint create --run r1 --stage parse --name keep --sequence 2"));
    json(&scratch.ckpt("--json reset --run r1 --stage sink --to-offset 0 --yes"));
    let (from, to) = (scratch.url("a.db"), scratch.url("b.db"));
    let copy = |extra: &str| scratch.ckpt(&format!("--json copy --from {from} --to {to} {extra}"));

    let report = json(&copy(""));
    assert_eq!(report["stages"], 3);
    assert_eq!(report["created"], 3);
    assert_eq!(report["verified"], 3);
    assert_eq!(report["savepoints"], 1);
    assert_eq!(report["mismatches"], serde_json::json!([]));
    let source = json(&scratch.ckpt_on("a.db", "--json verify"));
    let target = json(&scratch.ckpt_on("b.db", "--json verify"));
    assert_eq!(target["ok"], true, "{target}");
    for field in ["keys", "stages", "latest", "retained", "savepoints"] {
        assert_eq!(source[field], target[field], "{field}");
    }
    for (run, stage) in [("r1", "parse"), ("r1", "sink"), ("r2", "old")] {
        let ask = format!("--json history --run {run} --stage {stage}");
        assert_eq!(
            json(&scratch.ckpt_on("a.db", &ask)),
            json(&scratch.ckpt_on("b.db", &ask))
        );
    }

    // Again: every stage is identical and skipped.
    let again = json(&copy(""));
    assert_eq!(
        (again["identical"].as_u64(), again["keys_written"].as_u64()),
        (Some(3), Some(0))
    );

    // The source moves on: replacing the older target stage needs --yes.
    scratch.write("r1", "parse", 5, 3, AT);
    let output = copy("");
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    let replaced = json(&copy("--yes"));
    assert_eq!(replaced["replaced"], 1);
    assert_eq!(replaced["identical"], 2);

    // The target moves past the source: that stage is refused (exit 5), the others copy.
    json(&scratch.ckpt_on(
        "b.db",
        "--json write --run r1 --stage parse --sequence 9 --offset 900 --epoch 3 \
         --event-time-ms 1733238983000",
    ));
    let output = copy("--yes");
    assert_eq!(code(&output), 5, "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("report");
    assert_eq!(report["refused"][0]["stage"], "parse");
    let kept = json(&scratch.ckpt_on("b.db", "--json get --run r1 --stage parse"));
    assert_eq!(kept["sequence"], 9);
}
