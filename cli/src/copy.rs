//! `ckpt copy`: moves a namespace from one store to another (the embedded SQLite file to a
//! shared PostgreSQL or Redis) byte for byte, then proves the copy with the component.
//!
//! The values are copied as stored (checkpoint, stored ack ids and reset record alike), so
//! epochs, history and savepoints arrive unchanged. Each stage is one conditional commit on the
//! target: a stage is never half copied, and a writer that touches it meanwhile makes the
//! commit fail instead of being overwritten.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context, Result};
use checkpoint_guest::keys::{self, ParsedKey, Slot, StageKeys};
use checkpoint_host::storage::redact_url;
use checkpoint_host::{
    Checkpoint, Checkpointer, Codec, CommitOutcome, Lookup, Storage, Write, WriteOp,
    consumer::NullConsumer, storage_error_text,
};
use clap::Args;
use serde::Serialize;

use super::output::Output;
use super::{DEFAULT_MAX_RETAINED, GlobalArgs, USAGE_EXIT, fail, open_store};

/// Exit code when stages were refused: the code of `conflict`.
const CONFLICT_EXIT: u8 = 5;
/// Exit code when the source holds keys outside the layout: the code of `corrupt`.
const CORRUPT_EXIT: u8 = 4;
/// Exit code when a store cannot be read or written: the code of `storage`.
const STORAGE_EXIT: u8 = 9;

/// `ckpt copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The store to copy from (a URL, as `--store` takes).
    #[arg(long, value_name = "URL")]
    from: String,
    /// The store to copy to.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Also replace stages the target holds at an older sequence (a copy that only adds
    /// stages needs no `--yes`). A stage whose latest on the target is as new or newer, and
    /// not identical, is always refused.
    #[arg(long, conflicts_with = "dry_run")]
    yes: bool,
    /// Print what the copy would do and exit 0, writing nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What the copy does to one stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "reason")]
enum Action {
    /// The target holds nothing of the stage.
    Create,
    /// The target holds the stage at an older sequence (or only part of it): replaced.
    Replace,
    /// Every key is already on the target with the same bytes: skipped.
    Identical,
    /// Not copied, and why.
    Refuse(String),
}

/// One stage's plan: its action and the target writes that carry it out.
struct StagePlan {
    action: Action,
    writes: Vec<Write>,
    bytes: u64,
    removed: usize,
}

/// A stage of the source, by its keys.
struct SourceStage {
    run_id: String,
    stage: String,
    keys: Vec<String>,
    has_latest: bool,
}

#[derive(Debug, Serialize)]
struct Refusal {
    run_id: String,
    stage: String,
    reason: String,
}

#[derive(Debug, Default, Serialize)]
struct CopyReport {
    from: String,
    to: String,
    namespace: String,
    stages: usize,
    /// The source's keys, by slot.
    latest: usize,
    retained: usize,
    savepoints: usize,
    created: usize,
    replaced: usize,
    identical: usize,
    refused: Vec<Refusal>,
    keys_written: usize,
    keys_removed: usize,
    bytes_written: u64,
    applied: bool,
    /// Stages whose chain signature (over `history`) is equal on both sides after the copy.
    verified: usize,
    mismatches: Vec<String>,
}

pub fn run(global: &GlobalArgs, out: &Output, args: &CopyArgs) -> Result<()> {
    let namespace = &global.namespace;
    let mut source = open_store(&args.from)?;
    let mut target = open_store(&args.to)?;
    let mut codec = Codec::new().context("loading the checkpoint component")?;
    let mut report = CopyReport {
        from: redact_url(&args.from),
        to: redact_url(&args.to),
        namespace: namespace.clone(),
        ..CopyReport::default()
    };

    let stages = source_stages(source.as_mut(), namespace, &mut report)?;
    report.stages = stages.len();

    // Plan every stage first, so that a copy that would replace anything stops before writing.
    let mut actions = Vec::with_capacity(stages.len());
    for (keys, stage) in &stages {
        let plan = plan_stage(source.as_mut(), target.as_mut(), &mut codec, keys, stage)?;
        actions.push(plan.action);
    }
    let count = |wanted: fn(&Action) -> bool| actions.iter().filter(|a| wanted(a)).count();
    let replacing = count(|a| *a == Action::Replace);
    if args.dry_run || (replacing > 0 && !args.yes) {
        tally(&mut report, &stages, &actions);
        out.emit(&report, || human(&report))?;
        if args.dry_run {
            return Ok(());
        }
        return Err(fail(
            USAGE_EXIT,
            format!(
                "nothing copied: {replacing} stage(s) on the target are older and would be \
                 replaced; add --yes to copy (or --dry-run to only print the plan)"
            ),
        ));
    }

    // Apply: each stage is planned again against what the target holds now, and committed
    // under the versions read, so a concurrent change conflicts instead of being overwritten.
    let mut applied = Vec::with_capacity(stages.len());
    for (keys, stage) in &stages {
        let mut plan = plan_stage(source.as_mut(), target.as_mut(), &mut codec, keys, stage)?;
        if matches!(plan.action, Action::Create | Action::Replace) {
            let writes = std::mem::take(&mut plan.writes);
            let puts = writes
                .iter()
                .filter(|w| matches!(w.op, WriteOp::Put(_)))
                .count();
            let first_key = writes.first().map(|w| w.key.clone()).unwrap_or_default();
            match target.commit(writes).map_err(|e| {
                fail(
                    STORAGE_EXIT,
                    format!(
                        "writing {}/{} to the target: {}",
                        stage.run_id,
                        stage.stage,
                        storage_error_text(&e)
                    ),
                )
            })? {
                CommitOutcome::Committed(_) => {
                    report.keys_written += puts;
                    report.keys_removed += plan.removed;
                    report.bytes_written += plan.bytes;
                }
                CommitOutcome::Conflict(i) => {
                    plan.action = Action::Refuse(format!(
                        "the target changed while copying (write {i}, near {first_key}): \
                         run the copy again"
                    ));
                }
            }
        }
        applied.push(plan.action);
    }
    tally(&mut report, &stages, &applied);
    report.applied = true;

    verify_copy(global, args, &stages, &applied, &mut report)?;
    out.emit(&report, || human(&report))?;
    if !report.refused.is_empty() {
        return Err(fail(
            CONFLICT_EXIT,
            format!(
                "{} stage(s) not copied (see the report); the others are",
                report.refused.len()
            ),
        ));
    }
    if !report.mismatches.is_empty() {
        return Err(fail(
            1,
            format!(
                "{} stage(s) differ between the stores after the copy",
                report.mismatches.len()
            ),
        ));
    }
    Ok(())
}

/// Every stage of the namespace on the source, with its keys; keys outside the layout stop the
/// copy before anything is written.
fn source_stages(
    source: &mut dyn Storage,
    namespace: &str,
    report: &mut CopyReport,
) -> Result<BTreeMap<StageKeys, SourceStage>> {
    let prefix = keys::namespace_prefix(namespace, None);
    let all = source.list_keys(&prefix).map_err(|e| {
        fail(
            STORAGE_EXIT,
            format!("listing the source's keys: {}", storage_error_text(&e)),
        )
    })?;
    let mut stages: BTreeMap<StageKeys, SourceStage> = BTreeMap::new();
    let mut foreign = Vec::new();
    for key in all {
        let Some(parsed) = ParsedKey::parse(&key) else {
            foreign.push(key);
            continue;
        };
        // A key whose escapes the component would not write is nobody's home: copying it
        // would move data no checkpointer reads.
        if StageKeys::new(namespace, parsed.run_id(), parsed.stage()) != *parsed.stage_keys() {
            foreign.push(key);
            continue;
        }
        let stage = stages
            .entry(parsed.stage_keys().clone())
            .or_insert_with(|| SourceStage {
                run_id: parsed.run_id().to_owned(),
                stage: parsed.stage().to_owned(),
                keys: Vec::new(),
                has_latest: false,
            });
        match parsed.slot() {
            Slot::Latest => {
                report.latest += 1;
                stage.has_latest = true;
            }
            Slot::History(_) => report.retained += 1,
            Slot::Savepoint => report.savepoints += 1,
        }
        stage.keys.push(key);
    }
    if !foreign.is_empty() {
        return Err(fail(
            CORRUPT_EXIT,
            format!(
                "nothing copied: the source holds {} key(s) outside the checkpoint layout (first: \
                 {}); run `ckpt verify` on it",
                foreign.len(),
                foreign[0]
            ),
        ));
    }
    Ok(stages)
}

/// Reads `key`: its bytes and version, or `None` when absent.
fn read(store: &mut dyn Storage, side: &str, key: &str) -> Result<Option<(Vec<u8>, u64)>> {
    match store.get(key) {
        Ok(Lookup::Found(entry)) => Ok(Some((entry.value, entry.version))),
        Ok(Lookup::Missing) => Ok(None),
        Err(e) => Err(fail(
            STORAGE_EXIT,
            format!("reading {key} on the {side}: {}", storage_error_text(&e)),
        )),
    }
}

/// Decides what to do with one stage and builds the target writes that do it.
fn plan_stage(
    source: &mut dyn Storage,
    target: &mut dyn Storage,
    codec: &mut Codec,
    keys: &StageKeys,
    stage: &SourceStage,
) -> Result<StagePlan> {
    let refuse = |reason: String| StagePlan {
        action: Action::Refuse(reason),
        writes: Vec::new(),
        bytes: 0,
        removed: 0,
    };
    let mut values = BTreeMap::new();
    for key in &stage.keys {
        // A key deleted since the listing (a concurrent gc) is simply not copied.
        if let Some((value, _)) = read(source, "source", key)? {
            values.insert(key.clone(), value);
        }
    }
    let latest_key = keys.latest();
    let stage_prefix = latest_key
        .strip_suffix("latest")
        .unwrap_or(&latest_key)
        .to_owned();
    let target_keys = target.list_keys(&stage_prefix).map_err(|e| {
        fail(
            STORAGE_EXIT,
            format!("listing the target's keys: {}", storage_error_text(&e)),
        )
    })?;
    let mut existing = BTreeMap::new();
    for key in target_keys {
        if let Some(found) = read(target, "target", &key)? {
            existing.insert(key, found);
        }
    }

    if let Some(value) = values.get(&latest_key) {
        let ours = match codec.decode(value) {
            Ok(checkpoint) => checkpoint,
            Err(err) => {
                return Ok(refuse(format!(
                    "the source's latest is damaged ({err}): run `ckpt verify` on the source"
                )));
            }
        };
        if let Some((theirs, _)) = existing.get(&latest_key) {
            let theirs: Checkpoint = match codec.decode(theirs) {
                Ok(checkpoint) => checkpoint,
                Err(err) => {
                    return Ok(refuse(format!(
                        "the target's latest is damaged ({err}): run `ckpt verify` on the target"
                    )));
                }
            };
            if theirs != ours && (theirs.sequence >= ours.sequence || theirs.epoch > ours.epoch) {
                return Ok(refuse(format!(
                    "the target's latest is #{} epoch {}, the source's #{} epoch {}: the \
                     target is as new or newer (or owned by a later epoch); not overwritten",
                    theirs.sequence, theirs.epoch, ours.sequence, ours.epoch
                )));
            }
        }
    }

    let mut writes = Vec::new();
    let mut bytes = 0;
    for (key, value) in &values {
        let current = existing.get(key);
        if current.is_some_and(|(bytes, _)| bytes == value) {
            continue;
        }
        if let Some(name) = keys.savepoint_name(key)
            && current.is_some()
        {
            return Ok(refuse(format!(
                "savepoint {} holds other bytes on the target: a savepoint is never overwritten \
                 (delete it on one side first)",
                keys::unescape(name)
            )));
        }
        bytes += value.len() as u64;
        writes.push(Write {
            key: key.clone(),
            expected_version: Some(current.map_or(0, |(_, version)| *version)),
            op: WriteOp::Put(value.clone()),
        });
    }
    // The target's retained copies that the source does not hold belong to the chain being
    // replaced; its own savepoints stay (they are never removed unless asked).
    let mut removed = 0;
    if stage.has_latest {
        for (key, (_, version)) in &existing {
            if keys.history_sequence(key).is_some() && !values.contains_key(key) {
                removed += 1;
                writes.push(Write {
                    key: key.clone(),
                    expected_version: Some(*version),
                    op: WriteOp::Delete,
                });
            }
        }
    }
    let action = if writes.is_empty() {
        Action::Identical
    } else if existing.is_empty() {
        Action::Create
    } else {
        Action::Replace
    };
    Ok(StagePlan {
        action,
        writes,
        bytes,
        removed,
    })
}

fn tally(report: &mut CopyReport, stages: &BTreeMap<StageKeys, SourceStage>, actions: &[Action]) {
    report.created = 0;
    report.replaced = 0;
    report.identical = 0;
    report.refused.clear();
    for (stage, action) in stages.values().zip(actions) {
        match action {
            Action::Create => report.created += 1,
            Action::Replace => report.replaced += 1,
            Action::Identical => report.identical += 1,
            Action::Refuse(reason) => report.refused.push(Refusal {
                run_id: stage.run_id.clone(),
                stage: stage.stage.clone(),
                reason: reason.clone(),
            }),
        }
    }
}

/// Reads every copied stage back through the component on both sides: the chain signatures
/// over `history` must be equal, and every savepoint of the source must be on the target.
fn verify_copy(
    global: &GlobalArgs,
    args: &CopyArgs,
    stages: &BTreeMap<StageKeys, SourceStage>,
    actions: &[Action],
    report: &mut CopyReport,
) -> Result<()> {
    let options = global.options(DEFAULT_MAX_RETAINED);
    let open = |url: &str, side: &str| -> Result<Checkpointer> {
        Checkpointer::open(open_store(url)?, Box::new(NullConsumer), &options)
            .with_context(|| format!("opening the {side} to verify the copy"))
    };
    let mut source = open(&args.from, "source")?;
    let mut target = open(&args.to, "target")?;
    let mut codec = Codec::new().context("loading the checkpoint component")?;
    for (stage, action) in stages.values().zip(actions) {
        if matches!(action, Action::Refuse(_)) {
            continue;
        }
        let (run, name) = (&stage.run_id, &stage.stage);
        let mut problems = Vec::new();
        if stage.has_latest {
            let ours = source
                .history(run, name)
                .with_context(|| format!("reading the history of {run}/{name} on the source"))?;
            let theirs = target
                .history(run, name)
                .with_context(|| format!("reading the history of {run}/{name} on the target"))?;
            if codec.chain_signature(&ours)? != codec.chain_signature(&theirs)? {
                problems.push(format!(
                    "chain signatures differ ({} checkpoint(s) on the source, {} on the target)",
                    ours.len(),
                    theirs.len()
                ));
            }
        }
        let ours = source
            .list_savepoints(run, name)
            .with_context(|| format!("listing the savepoints of {run}/{name} on the source"))?;
        let theirs: BTreeSet<String> = target
            .list_savepoints(run, name)
            .with_context(|| format!("listing the savepoints of {run}/{name} on the target"))?
            .into_iter()
            .filter(|info| ours.contains(info))
            .map(|info| info.name)
            .collect();
        if theirs.len() != ours.len() {
            problems.push(format!(
                "{} of {} savepoint(s) are on the target",
                theirs.len(),
                ours.len()
            ));
        }
        if problems.is_empty() {
            report.verified += 1;
        } else {
            report
                .mismatches
                .push(format!("{run}/{name}: {}", problems.join("; ")));
        }
    }
    Ok(())
}

fn human(report: &CopyReport) -> String {
    let mut text = format!(
        "copy namespace {} from {} to {}: {} stage(s) ({} latest, {} retained, {} savepoint(s))\n",
        report.namespace,
        report.from,
        report.to,
        report.stages,
        report.latest,
        report.retained,
        report.savepoints
    );
    let verb = if report.applied { "" } else { " (planned)" };
    let _ = writeln!(text, "  created    {} stage(s){verb}", report.created);
    let _ = writeln!(
        text,
        "  replaced   {} older stage(s) on the target{verb}",
        report.replaced
    );
    let _ = writeln!(
        text,
        "  identical  {} stage(s) already there, skipped",
        report.identical
    );
    let _ = writeln!(text, "  refused    {} stage(s)", report.refused.len());
    for r in &report.refused {
        let _ = writeln!(text, "    {}/{}: {}", r.run_id, r.stage, r.reason);
    }
    if !report.applied {
        text.push_str("(nothing written)\n");
        return text;
    }
    let _ = writeln!(
        text,
        "  written    {} key(s), {} bytes; {} stale retained cop(ies) removed",
        report.keys_written, report.bytes_written, report.keys_removed
    );
    if report.mismatches.is_empty() {
        let _ = writeln!(
            text,
            "verified {} stage(s): chain signatures equal on both sides, every savepoint on the \
             target",
            report.verified
        );
    } else {
        let _ = writeln!(
            text,
            "{} stage(s) differ after the copy:",
            report.mismatches.len()
        );
        for m in &report.mismatches {
            let _ = writeln!(text, "  {m}");
        }
    }
    text
}
