//! `ckpt verify`: reads every value under `ckpt/` straight from the store and checks it through
//! the component's codec, so damage shows up before a pipeline trips over it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Context, Result};
use checkpoint_guest::keys::{self, ParsedKey, Slot, StageKeys};
use checkpoint_host::{
    Checkpoint, CheckpointError, Codec, Error, Lookup, corruption_kind_name, storage_error_text,
};
use serde::Serialize;

use super::output::{Output, error_kind};
use super::{GlobalArgs, fail, open_store};

/// Exit code of a store with problems: the code of `corrupt`.
const CORRUPT_EXIT: u8 = 4;
/// Exit code when the store cannot be read: the code of `storage`.
const STORAGE_EXIT: u8 = 9;

/// One thing wrong in the store.
#[derive(Debug, Serialize)]
struct Problem {
    key: String,
    /// A corruption kind (`crc-mismatch`, `misplaced`, ...) or a chain rule (`latest-missing`,
    /// `latest-mismatch`, `regression`, `unknown-key`).
    kind: String,
    detail: String,
}

#[derive(Debug, Default, Serialize)]
struct VerifyReport {
    store: String,
    keys: usize,
    namespaces: BTreeSet<String>,
    stages: usize,
    latest: usize,
    retained: usize,
    savepoints: usize,
    intact: usize,
    problems: Vec<Problem>,
    ok: bool,
}

impl VerifyReport {
    fn problem(&mut self, key: &str, kind: &str, detail: impl Into<String>) {
        self.problems.push(Problem {
            key: key.to_owned(),
            kind: kind.to_owned(),
            detail: detail.into(),
        });
    }
}

/// A value read back: its key and its checkpoint, `None` when it is damaged or misplaced.
type Stored = (String, Option<Checkpoint>);

/// Every copy of one (namespace, run, stage).
#[derive(Default)]
struct Chain {
    latest: Option<Stored>,
    /// Retained copies in key order, which the zero-padding makes sequence order.
    history: Vec<Stored>,
}

pub fn run(global: &GlobalArgs, out: &Output) -> Result<()> {
    let url = global.store_url();
    let mut storage = open_store(&url)?;
    let mut codec = Codec::new().context("loading the checkpoint component")?;
    let mut report = VerifyReport {
        store: url,
        ..VerifyReport::default()
    };

    let all = storage.list_keys(keys::ROOT).map_err(|e| {
        fail(
            STORAGE_EXIT,
            format!("listing keys: {}", storage_error_text(&e)),
        )
    })?;
    report.keys = all.len();
    // Ordered by (namespace, run, stage) as the keys spell them, so problems come out in that
    // order.
    let mut chains: BTreeMap<StageKeys, Chain> = BTreeMap::new();
    for key in all {
        let Some(parsed) = ParsedKey::parse(&key) else {
            report.problem(&key, "unknown-key", "not a key of the checkpoint layout");
            continue;
        };
        let value = match storage.get(&key).map_err(|e| {
            fail(
                STORAGE_EXIT,
                format!("reading {key}: {}", storage_error_text(&e)),
            )
        })? {
            Lookup::Found(entry) => entry.value,
            // Deleted since the listing: a concurrent delete, not damage.
            Lookup::Missing => continue,
        };
        let checkpoint = check_value(&mut codec, &mut report, &key, &parsed, &value)?;
        report.namespaces.insert(parsed.namespace().to_owned());
        let chain = chains.entry(parsed.stage_keys().clone()).or_default();
        match parsed.slot() {
            Slot::Latest => {
                report.latest += 1;
                chain.latest = Some((key, checkpoint));
            }
            Slot::History(_) => {
                report.retained += 1;
                chain.history.push((key, checkpoint));
            }
            // A savepoint is a pinned copy outside the chain: checked to decode and to sit in
            // its stage, not ordered against the retained copies.
            Slot::Savepoint => report.savepoints += 1,
        }
    }
    report.stages = chains.len();
    for (stage_keys, chain) in &chains {
        check_chain(&mut report, stage_keys, chain);
    }
    report.ok = report.problems.is_empty();

    out.emit(&report, || human(&report))?;
    if report.ok {
        Ok(())
    } else {
        Err(fail(
            CORRUPT_EXIT,
            format!("{} problem(s) in the store", report.problems.len()),
        ))
    }
}

/// Decodes one value and checks it sits under the key of its own ids and sequence.
fn check_value(
    codec: &mut Codec,
    report: &mut VerifyReport,
    key: &str,
    parsed: &ParsedKey,
    value: &[u8],
) -> Result<Option<Checkpoint>> {
    let checkpoint = match codec.decode(value) {
        Ok(checkpoint) => checkpoint,
        Err(Error::Checkpoint(CheckpointError::Corrupt(c))) => {
            report.problem(key, corruption_kind_name(c.kind), c.detail);
            return Ok(None);
        }
        Err(err @ Error::Checkpoint(_)) => {
            report.problem(key, error_kind(&err), err.to_string());
            return Ok(None);
        }
        // The component itself failed: that says nothing about the data, so stop.
        Err(err @ Error::Runtime(_)) => return Err(err).context("decoding through the component"),
    };
    // Compared as keys, not as unescaped ids: a key with escapes the component would not
    // write reads like a real one but is nobody's home.
    let home = StageKeys::new(parsed.namespace(), &checkpoint.run_id, &checkpoint.stage);
    if home != *parsed.stage_keys() {
        report.problem(
            key,
            "misplaced",
            format!(
                "holds run-id {:?} stage {:?}",
                checkpoint.run_id, checkpoint.stage
            ),
        );
        return Ok(None);
    }
    if let Slot::History(sequence) = parsed.slot()
        && sequence != checkpoint.sequence
    {
        report.problem(
            key,
            "misplaced",
            format!(
                "key names sequence {sequence}, the value has {}",
                checkpoint.sequence
            ),
        );
        return Ok(None);
    }
    report.intact += 1;
    Ok(Some(checkpoint))
}

/// Checks one stage's copies: the chain only grows, and the latest is its newest copy.
fn check_chain(report: &mut VerifyReport, stage_keys: &StageKeys, chain: &Chain) {
    let intact: Vec<&(String, Option<Checkpoint>)> =
        chain.history.iter().filter(|(_, c)| c.is_some()).collect();
    for pair in intact.windows(2) {
        let (Some(older), Some(newer)) = (&pair[0].1, &pair[1].1) else {
            continue;
        };
        // A position may go back only with a higher epoch: that is a reset (an operator's
        // deliberate rewind, which takes the stage over); a writer's own write never does.
        let reset = newer.epoch > older.epoch;
        let broken = [
            ("sequence", newer.sequence <= older.sequence),
            (
                "offset",
                !reset && newer.watermark.offset < older.watermark.offset,
            ),
            (
                "event-time",
                !reset && newer.watermark.event_time_ms < older.watermark.event_time_ms,
            ),
            ("epoch", newer.epoch < older.epoch),
        ];
        for (field, _) in broken.iter().filter(|(_, broken)| *broken) {
            report.problem(
                &pair[1].0,
                "regression",
                format!("{field} goes back after the retained copy {}", pair[0].0),
            );
        }
    }
    let Some((newest_key, newest)) = chain.history.last() else {
        return;
    };
    match &chain.latest {
        None => report.problem(
            &stage_keys.latest(),
            "latest-missing",
            format!("retained copies exist but no latest (newest: {newest_key})"),
        ),
        Some((latest_key, Some(latest))) => {
            if let Some(newest) = newest
                && newest != latest
            {
                report.problem(
                    latest_key,
                    "latest-mismatch",
                    format!(
                        "latest has sequence {}, the newest retained copy {newest_key} has {}",
                        latest.sequence, newest.sequence
                    ),
                );
            }
        }
        // A damaged latest is already a problem of its own.
        Some((_, None)) => {}
    }
}

fn human(report: &VerifyReport) -> String {
    let mut text = format!(
        "{} keys in {} namespace(s): {} stage(s), {} latest, {} retained, {} savepoint(s), {} \
         intact\n",
        report.keys,
        report.namespaces.len(),
        report.stages,
        report.latest,
        report.retained,
        report.savepoints,
        report.intact
    );
    if report.ok {
        text.push_str("ok: no problems\n");
    } else {
        let _ = writeln!(text, "{} problem(s):", report.problems.len());
        for p in &report.problems {
            let label = ParsedKey::parse(&p.key).map(|k| format!(" ({})", k.stage_label()));
            let _ = writeln!(
                text,
                "  {:<16} {}{}: {}",
                p.kind,
                p.key,
                label.unwrap_or_default(),
                p.detail
            );
        }
    }
    text
}
