//! The operator's commands: `reset`, `savepoint`, `ls`, `delete-run` and `gc`.
//!
//! Every change goes through one component call per stage (the component decides what is
//! allowed); the commands that move or remove data print their plan first and act only with
//! `--yes`.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use checkpoint_host::{
    Checkpoint, Checkpointer, Codec, ResetOrigin, ResetReceipt, ResetRequest, Resume, ResumeOrigin,
    SavepointInfo, StageSummary, Watermark, consumer::NullConsumer,
};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};

use super::commands::{StageArgs, now_ms, open_checkpointer};
use super::output::{Output, describe_corruption};
use super::{GlobalArgs, USAGE_EXIT, fail};

/// `--yes` or `--dry-run`: a command that changes data without either prints its plan and
/// exits with the usage code.
#[derive(Debug, Args)]
pub struct Confirm {
    /// Do it. Without it the command only prints what it would do.
    #[arg(long, conflicts_with = "dry_run")]
    yes: bool,
    /// Print what the command would do and exit 0, changing nothing.
    #[arg(long)]
    dry_run: bool,
}

impl Confirm {
    /// Prints the plan when the command will not act: `Ok(false)` for `--dry-run`, the usage
    /// error for neither flag. `Ok(true)`: go ahead (the caller prints the plan with the result).
    fn proceed(&self, out: &Output, what: &str, plan: &Value, plan_text: &str) -> Result<bool> {
        if self.yes {
            return Ok(true);
        }
        let note = if self.dry_run {
            "(dry run: nothing changed)"
        } else {
            "(nothing changed: add --yes to do it)"
        };
        out.emit(&json!({ "plan": plan, "applied": false }), || {
            format!("{plan_text}{note}\n")
        })?;
        if self.dry_run {
            Ok(false)
        } else {
            Err(fail(
                USAGE_EXIT,
                format!(
                    "nothing changed: add --yes to {what} (or --dry-run to only print the plan)"
                ),
            ))
        }
    }
}

/// `ckpt reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    #[command(flatten)]
    stage: StageArgs,
    /// The offset to resume from: backwards (replay) or forwards (skip).
    #[arg(long, value_name = "N")]
    to_offset: u64,
    /// The event time of the new position, in ms [default: the current one].
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    event_time_ms: Option<i64>,
    /// The epoch to take the stage over with; above the stored one [default: stored + 1].
    #[arg(long, value_name = "E")]
    epoch: Option<u64>,
    #[command(flatten)]
    confirm: Confirm,
}

/// `ckpt savepoint ...`.
#[derive(Debug, Subcommand)]
pub enum SavepointCommand {
    /// Pin the latest checkpoint of a stage (or the retained one with `--sequence`) under a name.
    Create(SavepointCreateArgs),
    /// List the savepoints of a stage.
    List(StageArgs),
    /// Reset a stage to a savepoint (its position and state), taking it over with a higher
    /// epoch. Prints the plan; acts only with `--yes`.
    Restore(SavepointRestoreArgs),
    /// Remove a savepoint (nothing to do when it does not exist).
    Delete(SavepointNameArgs),
}

/// A savepoint of one stage.
#[derive(Debug, Args)]
pub struct SavepointNameArgs {
    #[command(flatten)]
    stage: StageArgs,
    /// The savepoint's name (1 to 128 bytes).
    #[arg(long)]
    name: String,
}

/// `ckpt savepoint create`.
#[derive(Debug, Args)]
pub struct SavepointCreateArgs {
    #[command(flatten)]
    savepoint: SavepointNameArgs,
    /// Pin this retained sequence instead of the latest.
    #[arg(long)]
    sequence: Option<u64>,
}

/// `ckpt savepoint restore`.
#[derive(Debug, Args)]
pub struct SavepointRestoreArgs {
    #[command(flatten)]
    savepoint: SavepointNameArgs,
    /// The epoch to take the stage over with; above the stored one [default: stored + 1].
    #[arg(long, value_name = "E")]
    epoch: Option<u64>,
    #[command(flatten)]
    confirm: Confirm,
}

/// `ckpt ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only the stages of this run.
    #[arg(long)]
    run: Option<String>,
}

/// `ckpt delete-run`.
#[derive(Debug, Args)]
pub struct DeleteRunArgs {
    /// The run to remove.
    #[arg(long)]
    run: String,
    /// Remove the stages' savepoints too (otherwise they are kept).
    #[arg(long)]
    include_savepoints: bool,
    #[command(flatten)]
    confirm: Confirm,
}

/// `ckpt gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove every stage whose latest checkpoint's at-ms is more than this many ms before now.
    #[arg(long, value_name = "MS")]
    older_than_ms: u64,
    /// The time to measure from, in ms since the Unix epoch [default: the clock].
    #[arg(long, value_name = "NOW")]
    now_ms: Option<u64>,
    /// Remove the savepoints of the removed stages too, and stages that hold only savepoints
    /// when their newest is older (otherwise savepoints are kept).
    #[arg(long)]
    include_savepoints: bool,
    #[command(flatten)]
    confirm: Confirm,
}

/// Opens the checkpointer of the global store and a codec for the labels.
fn open(global: &GlobalArgs) -> Result<(Checkpointer, Codec)> {
    let checkpointer = open_checkpointer(global, Box::new(NullConsumer))?;
    let codec = Codec::new().context("loading the checkpoint component")?;
    Ok((checkpointer, codec))
}

/// The label of a resume point, with where it comes from.
fn resume_label(codec: &mut Codec, resume: &Resume) -> Result<String> {
    let mut label = codec.resume_point_label(&resume.point)?;
    if let ResumeOrigin::Fallback(f) = &resume.origin {
        let _ = write!(
            label,
            " [the latest is damaged ({}): a reset refuses it; restore or delete it first]",
            f.skipped
                .first()
                .map(describe_corruption)
                .unwrap_or_default()
        );
    }
    Ok(label)
}

/// Where a reset moved the stage from, in words.
fn origin_text(codec: &mut Codec, origin: &ResetOrigin) -> Result<String> {
    let mut text = if origin.from_sequence == 0 {
        "from nothing stored".to_owned()
    } else {
        format!(
            "from #{} epoch {} at {}",
            origin.from_sequence,
            origin.from_epoch,
            codec.watermark_label(&origin.from_watermark)?
        )
    };
    if let Some(name) = &origin.savepoint {
        let _ = write!(text, ", to savepoint {name:?}");
    }
    Ok(text)
}

/// The epoch a reset takes when none is given: the stored one + 1.
fn next_epoch(resume: &Resume, asked: Option<u64>) -> u64 {
    asked.unwrap_or(resume.point.epoch.saturating_add(1))
}

/// What `reset` and `savepoint restore` print after acting.
fn receipt_text(codec: &mut Codec, receipt: &ResetReceipt) -> Result<String> {
    let mut text = format!(
        "reset done: {}\n  {}",
        codec.checkpoint_label(&receipt.checkpoint)?,
        origin_text(codec, &receipt.origin)?
    );
    if receipt.pruned > 0 {
        let _ = write!(text, "; pruned {} retained cop(ies)", receipt.pruned);
    }
    let _ = writeln!(
        text,
        "\n  writers of epoch {} or below are fenced from now on",
        receipt.checkpoint.epoch.saturating_sub(1)
    );
    Ok(text)
}

/// The plan of a reset or a restore: where the stage is, where it goes, whom it fences.
fn move_plan_text(title: &str, now: &str, to: &str, epoch: u64) -> String {
    format!(
        "{title}\n  now:   {now}\n  to:    {to}\n  epoch: {epoch} (fences every writer of epoch {} \
         or below)\n",
        epoch.saturating_sub(1)
    )
}

/// Prints a reset's or a restore's plan with what it did.
fn emit_moved(
    out: &Output,
    codec: &mut Codec,
    plan: &Value,
    plan_text: &str,
    receipt: &ResetReceipt,
) -> Result<()> {
    let done = receipt_text(codec, receipt)?;
    out.emit(
        &json!({ "plan": plan, "applied": true, "receipt": receipt }),
        || format!("{plan_text}{done}"),
    )
}

pub fn reset(global: &GlobalArgs, out: &Output, args: &ResetArgs) -> Result<()> {
    let StageArgs { run, stage } = &args.stage;
    let (mut checkpointer, mut codec) = open(global)?;
    let resume = checkpointer
        .resume_point(run, stage)
        .with_context(|| format!("finding where {run}/{stage} is"))?;
    let current = resume.checkpoint.as_ref();
    let watermark = Watermark {
        offset: args.to_offset,
        event_time_ms: args
            .event_time_ms
            .unwrap_or(resume.point.watermark.event_time_ms),
    };
    // The named inputs keep their positions: `--to-offset` moves the stage's own watermark.
    let sources = current.map(|c| c.sources.clone()).unwrap_or_default();
    let epoch = next_epoch(&resume, args.epoch);
    let plan = json!({
        "run_id": run,
        "stage": stage,
        "current": resume,
        "to": watermark,
        "epoch": epoch,
        "sources_kept": sources.len(),
    });
    let mut plan_text = move_plan_text(
        &format!("reset {run}/{stage}"),
        &resume_label(&mut codec, &resume)?,
        &codec.watermark_label(&watermark)?,
        epoch,
    );
    if !sources.is_empty() {
        let _ = writeln!(
            plan_text,
            "  the positions of its {} named source(s) are kept",
            sources.len()
        );
    }
    if !args
        .confirm
        .proceed(out, "reset the stage", &plan, &plan_text)?
    {
        return Ok(());
    }
    let request = ResetRequest {
        run_id: run.clone(),
        stage: stage.clone(),
        watermark,
        sources,
        state: None,
        epoch: args.epoch,
        at_ms: now_ms(),
    };
    let receipt = checkpointer
        .reset(&request)
        .with_context(|| format!("resetting {run}/{stage}"))?;
    emit_moved(out, &mut codec, &plan, &plan_text, &receipt)
}

pub fn savepoint(global: &GlobalArgs, out: &Output, command: SavepointCommand) -> Result<()> {
    let (mut checkpointer, mut codec) = open(global)?;
    match command {
        SavepointCommand::Create(args) => {
            let SavepointNameArgs { stage, name } = &args.savepoint;
            let info = checkpointer
                .create_savepoint(&stage.run, &stage.stage, name, args.sequence)
                .with_context(|| {
                    format!(
                        "creating savepoint {name:?} of {}/{}",
                        stage.run, stage.stage
                    )
                })?;
            let text = format!("savepoint {}", savepoint_line(&mut codec, &info)?);
            out.emit(&info, || text)
        }
        SavepointCommand::List(stage) => {
            let list = checkpointer
                .list_savepoints(&stage.run, &stage.stage)
                .with_context(|| {
                    format!("listing the savepoints of {}/{}", stage.run, stage.stage)
                })?;
            let mut text = String::new();
            if list.is_empty() {
                let _ = writeln!(text, "no savepoints for {}/{}", stage.run, stage.stage);
            }
            for info in &list {
                let _ = writeln!(text, "{}", savepoint_line(&mut codec, info)?);
            }
            out.emit(&json!({ "savepoints": list }), || text)
        }
        SavepointCommand::Restore(args) => {
            let SavepointNameArgs { stage, name } = &args.savepoint;
            let (run, stage) = (&stage.run, &stage.stage);
            let resume = checkpointer
                .resume_point(run, stage)
                .with_context(|| format!("finding where {run}/{stage} is"))?;
            let pinned: Checkpoint = checkpointer
                .get_savepoint(run, stage, name)
                .with_context(|| format!("reading savepoint {name:?} of {run}/{stage}"))?;
            let epoch = next_epoch(&resume, args.epoch);
            let plan = json!({
                "run_id": run,
                "stage": stage,
                "savepoint": name,
                "current": resume,
                "to": pinned,
                "epoch": epoch,
            });
            let plan_text = move_plan_text(
                &format!("restore {run}/{stage} to savepoint {name:?}"),
                &resume_label(&mut codec, &resume)?,
                &format!(
                    "{} (its position and state)",
                    codec.checkpoint_label(&pinned)?
                ),
                epoch,
            );
            if !args
                .confirm
                .proceed(out, "restore the savepoint", &plan, &plan_text)?
            {
                return Ok(());
            }
            let receipt = checkpointer
                .restore_savepoint(run, stage, name, args.epoch, now_ms())
                .with_context(|| format!("restoring {run}/{stage} to savepoint {name:?}"))?;
            emit_moved(out, &mut codec, &plan, &plan_text, &receipt)
        }
        SavepointCommand::Delete(args) => {
            let SavepointNameArgs { stage, name } = &args;
            let existed = checkpointer
                .delete_savepoint(&stage.run, &stage.stage, name)
                .with_context(|| {
                    format!(
                        "deleting savepoint {name:?} of {}/{}",
                        stage.run, stage.stage
                    )
                })?;
            out.emit(&json!({ "deleted": existed }), || {
                if existed {
                    format!(
                        "deleted savepoint {name:?} of {}/{}",
                        stage.run, stage.stage
                    )
                } else {
                    format!(
                        "no savepoint {name:?} in {}/{}: nothing to do",
                        stage.run, stage.stage
                    )
                }
            })
        }
    }
}

/// `"name": <resume point label> (at-ms A, N bytes)`.
fn savepoint_line(codec: &mut Codec, info: &SavepointInfo) -> Result<String> {
    Ok(format!(
        "{:?}: {} (at-ms {}, {} bytes)",
        info.name,
        codec.resume_point_label(&info.point)?,
        info.at_ms,
        info.encoded_bytes
    ))
}

pub fn ls(global: &GlobalArgs, out: &Output, args: &LsArgs) -> Result<()> {
    let (mut checkpointer, mut codec) = open(global)?;
    let stages = checkpointer
        .list_stages(args.run.as_deref())
        .context("listing the stages")?;
    let text = stage_table(&mut codec, &stages)?;
    out.emit(
        &json!({ "namespace": global.namespace, "stages": stages }),
        || {
            if stages.is_empty() {
                match &args.run {
                    Some(run) => {
                        format!("no stages of run {run:?} in namespace {}", global.namespace)
                    }
                    None => format!("no stages in namespace {}", global.namespace),
                }
            } else {
                text
            }
        },
    )
}

/// One row per stage: where it is, how big, what is kept, and what is special about it.
fn stage_table(codec: &mut Codec, stages: &[StageSummary]) -> Result<String> {
    let mut rows = vec![
        [
            "RUN",
            "STAGE",
            "SEQ",
            "EPOCH",
            "WATERMARK",
            "AT-MS",
            "BYTES",
            "RETAINED",
            "SAVEPOINTS",
            "NOTES",
        ]
        .map(str::to_owned),
    ];
    for s in stages {
        let (sequence, epoch, watermark) = match &s.latest {
            Some(p) => (
                p.sequence.to_string(),
                p.epoch.to_string(),
                codec.watermark_label(&p.watermark)?,
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let mut notes = Vec::new();
        if let Some(origin) = &s.reset {
            notes.push(format!("reset {}", origin_text(codec, origin)?));
        }
        if let Some(damage) = &s.damage {
            notes.push(format!("latest {}", describe_corruption(damage)));
        } else if s.latest.is_none() {
            notes.push("savepoints only".to_owned());
        }
        rows.push([
            s.run_id.clone(),
            s.stage.clone(),
            sequence,
            epoch,
            watermark,
            s.at_ms.to_string(),
            s.encoded_bytes.to_string(),
            s.retained.to_string(),
            s.savepoints.to_string(),
            notes.join("; "),
        ]);
    }
    Ok(table(&rows))
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// What a removal does to one stage.
#[derive(Debug, Serialize)]
struct Removal {
    run_id: String,
    stage: String,
    /// The latest's sequence, when there is one.
    sequence: Option<u64>,
    at_ms: u64,
    /// The latest and its retained copies (1 commit).
    retained: u32,
    /// The savepoints that go too (one commit each), or are kept.
    savepoints: Vec<String>,
    savepoints_kept: u32,
    /// Filled in when applied: entries the stage's delete removed.
    removed: Option<u32>,
}

/// Builds the removal of one listed stage, reading its savepoint names when they go too.
fn removal(
    checkpointer: &mut Checkpointer,
    summary: &StageSummary,
    include_savepoints: bool,
) -> Result<Removal> {
    let savepoints = if include_savepoints && summary.savepoints > 0 {
        checkpointer
            .list_savepoints(&summary.run_id, &summary.stage)
            .with_context(|| {
                format!(
                    "listing the savepoints of {}/{}",
                    summary.run_id, summary.stage
                )
            })?
            .into_iter()
            .map(|s| s.name)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Removal {
        run_id: summary.run_id.clone(),
        stage: summary.stage.clone(),
        sequence: summary.latest.as_ref().map(|p| p.sequence),
        at_ms: summary.at_ms,
        retained: summary.retained,
        savepoints_kept: if include_savepoints {
            0
        } else {
            summary.savepoints
        },
        savepoints,
        removed: None,
    })
}

/// The plan's lines: one per stage.
fn removal_text(removals: &[Removal]) -> String {
    let mut text = String::new();
    for r in removals {
        let _ = write!(
            text,
            "  {}/{}: {}, {} retained cop(ies)",
            r.run_id,
            r.stage,
            r.sequence.map_or("no latest".to_owned(), |s| format!(
                "latest #{s} at-ms {}",
                r.at_ms
            )),
            r.retained
        );
        if !r.savepoints.is_empty() {
            let _ = write!(text, ", savepoints {:?}", r.savepoints);
        }
        if r.savepoints_kept > 0 {
            let _ = write!(text, " ({} savepoint(s) kept)", r.savepoints_kept);
        }
        text.push('\n');
    }
    text
}

/// Removes each stage in its own commit, then its savepoints when they go too. Safe to
/// re-run: a stage already removed removes 0 entries, an absent savepoint nothing.
fn apply_removals(checkpointer: &mut Checkpointer, removals: &mut [Removal]) -> Result<()> {
    for r in removals {
        let removed = checkpointer
            .delete(&r.run_id, &r.stage)
            .with_context(|| format!("deleting {}/{}", r.run_id, r.stage))?;
        r.removed = Some(removed);
        for name in &r.savepoints {
            checkpointer
                .delete_savepoint(&r.run_id, &r.stage, name)
                .with_context(|| {
                    format!("deleting savepoint {name:?} of {}/{}", r.run_id, r.stage)
                })?;
        }
    }
    Ok(())
}

/// Prints the plan and stops unless confirmed; then removes the stages, one commit each, and
/// prints the plan again with what each removal did (`plan` renders it from the removals).
fn confirm_and_remove(
    out: &Output,
    confirm: &Confirm,
    what: &str,
    checkpointer: &mut Checkpointer,
    removals: &mut [Removal],
    plan: impl Fn(&[Removal]) -> Value,
    plan_text: &str,
) -> Result<()> {
    if !confirm.proceed(out, what, &plan(removals), plan_text)? {
        return Ok(());
    }
    apply_removals(checkpointer, removals)?;
    let done = removed_summary(removals);
    out.emit(&json!({ "plan": plan(removals), "applied": true }), || {
        format!("{plan_text}{done}")
    })
}

fn removed_summary(removals: &[Removal]) -> String {
    let entries: u64 = removals
        .iter()
        .map(|r| u64::from(r.removed.unwrap_or(0)))
        .sum();
    let savepoints: usize = removals.iter().map(|r| r.savepoints.len()).sum();
    format!(
        "removed {} stage(s): {entries} entries, {savepoints} savepoint(s)\n",
        removals.len()
    )
}

pub fn delete_run(global: &GlobalArgs, out: &Output, args: &DeleteRunArgs) -> Result<()> {
    let mut checkpointer = open_checkpointer(global, Box::new(NullConsumer))?;
    let stages = checkpointer
        .list_stages(Some(&args.run))
        .with_context(|| format!("listing the stages of run {}", args.run))?;
    // Without --include-savepoints, a stage that holds only savepoints has nothing to remove.
    let mut removals = stages
        .iter()
        .filter(|s| {
            args.include_savepoints || s.latest.is_some() || s.damage.is_some() || s.retained > 0
        })
        .map(|s| removal(&mut checkpointer, s, args.include_savepoints))
        .collect::<Result<Vec<_>>>()?;
    if removals.is_empty() {
        return out.emit(
            &json!({ "plan": { "run_id": args.run, "stages": removals }, "applied": true }),
            || format!("nothing to remove in run {:?}", args.run),
        );
    }
    let plan_text = format!(
        "delete run {:?}: {} stage(s), one commit each\n{}",
        args.run,
        removals.len(),
        removal_text(&removals)
    );
    let plan = |removals: &[Removal]| json!({ "run_id": args.run, "stages": removals });
    confirm_and_remove(
        out,
        &args.confirm,
        "delete the run",
        &mut checkpointer,
        &mut removals,
        plan,
        &plan_text,
    )
}

pub fn gc(global: &GlobalArgs, out: &Output, args: &GcArgs) -> Result<()> {
    let now = args.now_ms.unwrap_or_else(now_ms);
    let cutoff = now.saturating_sub(args.older_than_ms);
    let mut checkpointer = open_checkpointer(global, Box::new(NullConsumer))?;
    let stages = checkpointer
        .list_stages(None)
        .context("listing the stages")?;
    let mut removals = Vec::new();
    let mut damaged = Vec::new();
    for s in &stages {
        let old = if s.damage.is_some() {
            // Its age is unknown: never guessed, left to `ckpt verify` and the operator.
            damaged.push(format!("{}/{}", s.run_id, s.stage));
            false
        } else if s.latest.is_some() {
            s.at_ms < cutoff
        } else if args.include_savepoints && s.savepoints > 0 {
            let newest = checkpointer
                .list_savepoints(&s.run_id, &s.stage)
                .with_context(|| format!("listing the savepoints of {}/{}", s.run_id, s.stage))?
                .iter()
                .map(|p| p.at_ms)
                .max()
                .unwrap_or(0);
            newest < cutoff
        } else {
            false
        };
        if old {
            removals.push(removal(&mut checkpointer, s, args.include_savepoints)?);
        }
    }
    let mut plan_text = format!(
        "gc: {} of {} stage(s) have a latest older than at-ms {cutoff} (now {now} - {} ms)\n{}",
        removals.len(),
        stages.len(),
        args.older_than_ms,
        removal_text(&removals)
    );
    if !damaged.is_empty() {
        let _ = writeln!(
            plan_text,
            "  kept, latest damaged (see `ckpt verify`): {}",
            damaged.join(", ")
        );
    }
    let plan = |removals: &[Removal]| json!({ "now_ms": now, "cutoff_ms": cutoff, "stages": removals, "damaged_kept": damaged });
    if removals.is_empty() {
        return out.emit(&json!({ "plan": plan(&removals), "applied": true }), || {
            format!("{plan_text}nothing to remove\n")
        });
    }
    confirm_and_remove(
        out,
        &args.confirm,
        "remove these stages",
        &mut checkpointer,
        &mut removals,
        plan,
        &plan_text,
    )
}
