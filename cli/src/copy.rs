//! `ckpt copy`: moves a namespace from one store to another (the embedded SQLite file to a
//! shared PostgreSQL or Redis) byte for byte, then proves the copy with the component.
//!
//! The component moves each stage (`export-stage` on the source, `import-stage` on the
//! target), so what may be replaced is decided where every host decides it. The values travel
//! as stored (checkpoint, stored ack ids and reset record alike), so epochs, history and
//! savepoints arrive unchanged. Each stage is one conditional commit on the target: a stage is
//! never half copied, and a writer that touches it meanwhile makes the commit fail instead of
//! being overwritten.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context, Result};
use checkpoint_guest::keys::{self, ParsedKey, Slot, StageKeys};
use checkpoint_host::storage::redact_url;
use checkpoint_host::{
    CheckpointError, Checkpointer, Codec, Error as HostError, ImportAction, ImportReceipt, Runtime,
    RuntimeConfig, Storage, consumer::NullConsumer, storage_error_text,
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
/// The copy's own memory limit for the component: one stage (every retained copy and
/// savepoint) travels in one answer of at most a quarter of it, so stages of up to 256 MiB
/// copy, where a pipeline's default 64 MiB would stop at 16 MiB.
const COPY_MEMORY_LIMIT: usize = 1 << 30;

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
    /// The target holds part of the stage (or, with `--yes`, an older chain): replaced.
    Replace,
    /// Planned only: the target holds the stage at an older checkpoint, which only `--yes`
    /// replaces.
    ReplaceOlder,
    /// Every key is already on the target with the same bytes: skipped.
    Identical,
    /// Not copied, and why.
    Refuse(String),
}

/// A stage of the source, by its keys.
struct SourceStage {
    run_id: String,
    stage: String,
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
    let mut report = CopyReport {
        from: redact_url(&args.from),
        to: redact_url(&args.to),
        namespace: namespace.clone(),
        ..CopyReport::default()
    };
    let stages = source_stages(open_store(&args.from)?.as_mut(), namespace, &mut report)?;
    report.stages = stages.len();

    // The component moves each stage: `export-stage` on the source, `import-stage` on the
    // target, so the rules of what may be replaced are the component's, as in every host.
    let runtime = Runtime::new(RuntimeConfig {
        max_memory_bytes: COPY_MEMORY_LIMIT,
        max_instances: 4,
        ..RuntimeConfig::default()
    })
    .context("starting the component runtime")?;
    let options = global.options(DEFAULT_MAX_RETAINED);
    let open = |url: &str, side: &str| -> Result<Checkpointer> {
        Checkpointer::open_in(&runtime, open_store(url)?, Box::new(NullConsumer), &options)
            .with_context(|| format!("opening the {side}"))
    };
    let mut source = open(&args.from, "source")?;
    let mut target = open(&args.to, "target")?;

    // Plan every stage first (dry runs), so that a copy that would replace an older stage
    // stops before writing anything unless `--yes` allows it.
    let mut planned = Vec::with_capacity(stages.len());
    for stage in stages.values() {
        planned.push(transfer(&mut source, &mut target, stage, false, true)?);
    }
    let replacing = planned
        .iter()
        .filter(|(action, _)| *action == Action::ReplaceOlder)
        .count();
    if args.dry_run || (replacing > 0 && !args.yes) {
        tally(&mut report, &stages, &planned);
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

    // Apply: each stage is exported and imported again, against what both sides hold now,
    // as one conditional commit on the target.
    let mut applied = Vec::with_capacity(stages.len());
    for stage in stages.values() {
        applied.push(transfer(&mut source, &mut target, stage, args.yes, false)?);
    }
    tally(&mut report, &stages, &applied);
    report.applied = true;

    verify_copy(&mut source, &mut target, &stages, &applied, &mut report)?;
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

/// Exports one stage from the source and imports it into the target (or, with `dry_run`, asks
/// what the import would do). A refusal of either side is the stage's `Refuse`; a store that
/// fails stops the copy.
fn transfer(
    source: &mut Checkpointer,
    target: &mut Checkpointer,
    stage: &SourceStage,
    replace_older: bool,
    dry_run: bool,
) -> Result<(Action, Option<ImportReceipt>)> {
    let (run, name) = (&stage.run_id, &stage.stage);
    let exported = match source.export_stage(run, name) {
        Ok(exported) => exported,
        Err(err) => return refusal(err, "the source"),
    };
    match target.import_stage(&exported, replace_older, dry_run) {
        Ok(receipt) => {
            let action = match receipt.action {
                ImportAction::Created => Action::Create,
                ImportAction::Replaced => Action::Replace,
                ImportAction::Identical => Action::Identical,
            };
            Ok((action, Some(receipt)))
        }
        // In the plan, the one refusal `--yes` lifts.
        Err(HostError::Checkpoint(CheckpointError::Invalid(i)))
            if dry_run && i.field == "replace-older" =>
        {
            Ok((Action::ReplaceOlder, None))
        }
        Err(err) => refusal(err, "the target"),
    }
}

/// A stage the component refused (with its words), or the error that stops the copy: a store
/// that failed or broke its contract, or a runtime failure.
fn refusal(err: HostError, side: &str) -> Result<(Action, Option<ImportReceipt>)> {
    match &err {
        HostError::Checkpoint(CheckpointError::Storage(_) | CheckpointError::BrokenStore(_)) => {
            Err(fail(STORAGE_EXIT, format!("{side}: {err}")))
        }
        HostError::Checkpoint(CheckpointError::Regression(r)) => Ok((
            Action::Refuse(format!(
                "{side} holds #{} at offset {}, as new or newer than #{} at offset {}: not \
                 overwritten",
                r.stored_sequence,
                r.stored_watermark.offset,
                r.attempted_sequence,
                r.attempted_watermark.offset
            )),
            None,
        )),
        HostError::Checkpoint(CheckpointError::Fenced(f)) => Ok((
            Action::Refuse(format!(
                "{side} is owned by epoch {}, later than the copy's epoch {}: not overwritten",
                f.stored_epoch, f.attempted_epoch
            )),
            None,
        )),
        HostError::Checkpoint(CheckpointError::Invalid(i)) => {
            Ok((Action::Refuse(format!("{side}: {}", i.reason)), None))
        }
        HostError::Checkpoint(_) => Ok((Action::Refuse(format!("{side}: {err}")), None)),
        _ => Err(anyhow::Error::new(err).context(format!("copying a stage ({side})"))),
    }
}

fn tally(
    report: &mut CopyReport,
    stages: &BTreeMap<StageKeys, SourceStage>,
    outcomes: &[(Action, Option<ImportReceipt>)],
) {
    report.created = 0;
    report.replaced = 0;
    report.identical = 0;
    report.refused.clear();
    (
        report.keys_written,
        report.keys_removed,
        report.bytes_written,
    ) = (0, 0, 0);
    for (stage, (action, receipt)) in stages.values().zip(outcomes) {
        match action {
            Action::Create => report.created += 1,
            Action::Replace | Action::ReplaceOlder => report.replaced += 1,
            Action::Identical => report.identical += 1,
            Action::Refuse(reason) => report.refused.push(Refusal {
                run_id: stage.run_id.clone(),
                stage: stage.stage.clone(),
                reason: reason.clone(),
            }),
        }
        if let Some(receipt) = receipt {
            report.keys_written += receipt.keys_written as usize;
            report.keys_removed += receipt.keys_removed as usize;
            report.bytes_written += receipt.bytes_written;
        }
    }
}

/// Reads every copied stage back through the component on both sides: the chain signatures
/// over `history` must be equal, and every savepoint of the source must be on the target.
fn verify_copy(
    source: &mut Checkpointer,
    target: &mut Checkpointer,
    stages: &BTreeMap<StageKeys, SourceStage>,
    outcomes: &[(Action, Option<ImportReceipt>)],
    report: &mut CopyReport,
) -> Result<()> {
    let mut codec = Codec::new().context("loading the checkpoint component")?;
    for (stage, (action, _)) in stages.values().zip(outcomes) {
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
