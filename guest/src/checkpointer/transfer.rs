//! Moving a stage between stores or namespaces: `export-stage` and `import-stage`
//! (`checkpointer.wit`). The bytes travel as stored, so sequences, epochs, stored ack ids and
//! reset records arrive unchanged; the rules (what is damage, what may be replaced) live here
//! once, for `ckpt copy` and for every host.

use std::collections::BTreeSet;

use super::{Checkpointer, check_savepoint_name, decode_for_with};
use crate::codec::{self, Decoded};
use crate::contract;
use crate::errors::invalid;
use crate::keys::{ParsedKey, Slot, StageKeys, unescape};
use crate::model::{
    CommitOutcome, Corruption, Entry, Error, FencedInfo, ImportAction, ImportReceipt, Lookup,
    RegressionInfo, StageExport, StoredCopy, StoredSavepoint, Write, WriteOp,
};
use crate::ports::{Consumer, Storage};
use crate::validate::check_id;

/// One entry of the stage on the importing side, with the version its condition needs.
struct Present {
    version: u64,
    /// True when it holds exactly the bytes the export brings for the same key.
    same: bool,
}

impl<S: Storage, C: Consumer> Checkpointer<S, C> {
    /// Everything stored for a stage, checked entry by entry. Never writes.
    pub fn export_stage(&mut self, run_id: &str, stage: &str) -> Result<StageExport, Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        let keys = self.keys(run_id, stage);
        let budget = self.answer_budget();
        let mut export = StageExport {
            run_id: run_id.to_string(),
            stage: stage.to_string(),
            latest: None,
            retained: Vec::new(),
            savepoints: Vec::new(),
        };
        let mut total: u64 = 0;
        let (namespace, memory_limit) = (&self.options.namespace, self.memory_limit);
        each_entry(&mut self.storage, &keys, |key, parsed, entry| {
            total = total.saturating_add(entry.value.len() as u64);
            if total > budget {
                return Err(invalid(
                    "stage",
                    format!(
                        "the stage holds more than {budget} bytes, the largest answer a \
                         checkpointer with a memory limit of {} bytes serves: open one with a \
                         memory limit of at least 4 times the stage's size",
                        memory_limit
                    ),
                ));
            }
            decode_for_with(
                namespace,
                &keys,
                &key,
                &entry.value,
                codec::decode_positions,
            )
            .map_err(Error::Corrupt)?;
            match parsed.slot() {
                Slot::Latest => export.latest = Some(entry.value),
                Slot::History(sequence) => export.retained.push(StoredCopy {
                    sequence,
                    bytes: entry.value,
                }),
                Slot::Savepoint => export.savepoints.push(StoredSavepoint {
                    name: parsed.savepoint_name().unwrap_or_default().to_string(),
                    bytes: entry.value,
                }),
            }
            Ok(())
        })?;
        if export.latest.is_none() && export.retained.is_empty() && export.savepoints.is_empty() {
            return Err(Error::NotFound);
        }
        export.retained.sort_by_key(|copy| copy.sequence);
        export.savepoints.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(export)
    }

    /// Recreates an exported stage here as one conditional commit (or, with `dry_run`, says
    /// what that would do). See `import-stage` in `checkpointer.wit` for every refusal.
    pub fn import_stage(
        &mut self,
        export: StageExport,
        replace_older: bool,
        dry_run: bool,
    ) -> Result<ImportReceipt, Error> {
        check_id("run-id", &export.run_id)?;
        check_id("stage", &export.stage)?;
        if export.latest.is_none() && !export.retained.is_empty() {
            // Retained copies belong to a chain whose latest decides what they may replace.
            return Err(invalid(
                "exported",
                "retained copies without a latest: the exported stage has lost its latest \
                 (run `ckpt verify` on it); export it again once it has one",
            ));
        }
        let keys = self.keys(&export.run_id, &export.stage);
        let size: u64 = entries(&export).map(|(_, bytes)| bytes.len() as u64).sum();
        let budget = self.answer_budget();
        if size > budget {
            return Err(invalid(
                "exported",
                format!(
                    "{size} bytes, more than the {budget} bytes a checkpointer with a memory \
                     limit of {} bytes takes in one call: open one with a memory limit of at \
                     least 4 times the stage's size",
                    self.memory_limit
                ),
            ));
        }

        // Every entry must be an intact checkpoint of this stage, in its place.
        let mut names = BTreeSet::new();
        let mut sequences = BTreeSet::new();
        let mut ours = None;
        for (slot, bytes) in entries(&export) {
            let key = match slot {
                EntrySlot::Latest => keys.latest(),
                EntrySlot::Retained(sequence) => {
                    if !sequences.insert(sequence) {
                        return Err(invalid(
                            "exported",
                            format!("retained copy #{sequence} is given twice"),
                        ));
                    }
                    keys.history(sequence)
                }
                EntrySlot::Savepoint(name) => {
                    check_savepoint_name(name)?;
                    if !names.insert(name) {
                        return Err(invalid(
                            "exported",
                            format!("savepoint {name:?} is given twice"),
                        ));
                    }
                    keys.savepoint(name)
                }
            };
            let decoded = decode_given(&self.options.namespace, &keys, &key, bytes, &slot)?;
            if slot == EntrySlot::Latest {
                ours = Some(decoded);
            }
        }

        // What this store holds of the stage, entry by entry, without keeping its bytes.
        let latest_key = keys.latest();
        let mut present = std::collections::BTreeMap::new();
        let mut older_latest = false;
        let namespace = &self.options.namespace;
        each_entry(&mut self.storage, &keys, |key, parsed, entry| {
            let incoming = incoming_bytes(&export, &keys, &key);
            let same = incoming.is_some_and(|bytes| bytes == entry.value.as_slice());
            match parsed.slot() {
                Slot::Latest if !same => {
                    let theirs = decode_for_with(
                        namespace,
                        &keys,
                        &key,
                        &entry.value,
                        codec::decode_positions,
                    )
                    .map_err(Error::Corrupt)?;
                    if let (Some(ours), Some(ours_bytes)) = (&ours, &export.latest) {
                        older_latest = check_replaceable(&theirs, &entry.value, ours, ours_bytes)?;
                    }
                }
                Slot::Savepoint if !same && incoming.is_some() => {
                    return Err(invalid(
                        "savepoints",
                        format!(
                            "savepoint {:?} holds other bytes here: a savepoint is never \
                             overwritten (delete it on one side first)",
                            unescape(keys.savepoint_name(&key).unwrap_or_default())
                        ),
                    ));
                }
                _ => {}
            }
            present.insert(
                key,
                Present {
                    version: entry.version,
                    same,
                },
            );
            Ok(())
        })?;
        if older_latest && !replace_older {
            return Err(invalid(
                "replace-older",
                "this store holds the stage at an older checkpoint: pass replace-older to \
                 replace its chain with the export's",
            ));
        }

        // The writes: every entry not here with the same bytes, then the retained copies of
        // the replaced chain, and the latest last (its condition serialises the stage's writers).
        let created = present.is_empty();
        let has_latest = export.latest.is_some();
        let mut writes = Vec::new();
        let (mut keys_written, mut bytes_written) = (0u32, 0u64);
        let mut put = |key: String, bytes: Vec<u8>, writes: &mut Vec<Write>| {
            let current = present.get(&key);
            if current.is_some_and(|p| p.same) {
                return;
            }
            keys_written += 1;
            bytes_written += bytes.len() as u64;
            writes.push(Write {
                expected_version: Some(current.map_or(0, |p| p.version)),
                key,
                op: WriteOp::Put(bytes),
            });
        };
        let StageExport {
            latest,
            retained,
            savepoints,
            ..
        } = export;
        for copy in retained {
            put(keys.history(copy.sequence), copy.bytes, &mut writes);
        }
        for savepoint in savepoints {
            put(
                keys.savepoint(&savepoint.name),
                savepoint.bytes,
                &mut writes,
            );
        }
        let mut keys_removed = 0u32;
        if has_latest {
            for (key, entry) in &present {
                if let Some(sequence) = keys.history_sequence(key)
                    && !sequences.contains(&sequence)
                {
                    keys_removed += 1;
                    writes.push(Write {
                        key: key.clone(),
                        expected_version: Some(entry.version),
                        op: WriteOp::Delete,
                    });
                }
            }
        }
        if let Some(bytes) = latest {
            let here = present.get(&latest_key);
            // A latest here with the same bytes is put again only to condition the other writes
            // on it: a writer that commits meanwhile then makes the import conflict instead of
            // mixing retained copies into its newer chain.
            if here.is_none_or(|p| !p.same) || !writes.is_empty() {
                keys_written += 1;
                bytes_written += bytes.len() as u64;
                writes.push(Write {
                    key: latest_key,
                    expected_version: Some(here.map_or(0, |p| p.version)),
                    op: WriteOp::Put(bytes),
                });
            }
        }
        let action = if writes.is_empty() {
            ImportAction::Identical
        } else if created {
            ImportAction::Created
        } else {
            ImportAction::Replaced
        };
        let receipt = ImportReceipt {
            action,
            keys_written,
            keys_removed,
            bytes_written,
        };
        if dry_run || writes.is_empty() {
            return Ok(receipt);
        }
        self.last_write = None;
        match contract::commit(&mut self.storage, &writes, "importing the stage")? {
            CommitOutcome::Committed(_) => Ok(receipt),
            CommitOutcome::Conflict(index) => Err(Error::Conflict(format!(
                "{} changed while importing (write {index} of {}): export and import again",
                writes
                    .get(index as usize)
                    .map_or("the stage", |w| w.key.as_str()),
                writes.len()
            ))),
        }
    }
}

/// Calls `each` with every entry stored for the stage of `keys` (its key, parsed, and value),
/// in key order. Keys under the stage that are not the layout's are nobody's checkpoints and
/// are skipped, and so is a key removed since the listing.
fn each_entry(
    storage: &mut impl Storage,
    keys: &StageKeys,
    mut each: impl FnMut(String, ParsedKey, Entry) -> Result<(), Error>,
) -> Result<(), Error> {
    for key in contract::list_keys(storage, keys.prefix(), "listing the stage")? {
        let Some(parsed) = ParsedKey::parse(&key) else {
            continue;
        };
        if parsed.stage_keys() != keys {
            continue;
        }
        if let Lookup::Found(entry) = contract::get(storage, &key, "reading the stage")? {
            each(key, parsed, entry)?;
        }
    }
    Ok(())
}

/// Where an export's entry goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntrySlot<'a> {
    Latest,
    Retained(u64),
    Savepoint(&'a str),
}

/// Every entry of an export with its bytes.
fn entries(export: &StageExport) -> impl Iterator<Item = (EntrySlot<'_>, &[u8])> {
    let latest = export
        .latest
        .as_deref()
        .map(|bytes| (EntrySlot::Latest, bytes));
    let retained = export
        .retained
        .iter()
        .map(|copy| (EntrySlot::Retained(copy.sequence), copy.bytes.as_slice()));
    let savepoints = export
        .savepoints
        .iter()
        .map(|s| (EntrySlot::Savepoint(s.name.as_str()), s.bytes.as_slice()));
    latest.into_iter().chain(retained).chain(savepoints)
}

/// The bytes the export brings for `key`, if any.
fn incoming_bytes<'e>(export: &'e StageExport, keys: &StageKeys, key: &str) -> Option<&'e [u8]> {
    if key == keys.latest() {
        return export.latest.as_deref();
    }
    if let Some(sequence) = keys.history_sequence(key) {
        return export
            .retained
            .iter()
            .find(|copy| copy.sequence == sequence)
            .map(|copy| copy.bytes.as_slice());
    }
    let name = unescape(keys.savepoint_name(key)?);
    export
        .savepoints
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.bytes.as_slice())
}

/// Decodes an entry of the export as if stored under `key`: damage is `corrupt` with an empty
/// key (the bytes were given), naming the entry.
fn decode_given(
    namespace: &str,
    keys: &StageKeys,
    key: &str,
    bytes: &[u8],
    slot: &EntrySlot<'_>,
) -> Result<Decoded, Error> {
    decode_for_with(namespace, keys, key, bytes, codec::decode_positions).map_err(|damage| {
        let entry = match slot {
            EntrySlot::Latest => "the latest".to_string(),
            EntrySlot::Retained(sequence) => format!("retained copy #{sequence}"),
            EntrySlot::Savepoint(name) => format!("savepoint {name:?}"),
        };
        Error::Corrupt(Corruption {
            kind: damage.kind,
            key: String::new(),
            detail: format!("{entry} of the export: {}", damage.detail),
        })
    })
}

/// Whether the latest stored here (`theirs`) may give way to the export's (`ours`): `true` when
/// it is older (a replacement), `false` when it is the same checkpoint; `fenced` when it belongs
/// to a later epoch, `regression` when it is as new or newer.
fn check_replaceable(
    theirs: &Decoded,
    theirs_bytes: &[u8],
    ours: &Decoded,
    ours_bytes: &[u8],
) -> Result<bool, Error> {
    if theirs.same_checkpoint(theirs_bytes, ours_bytes, ours.checkpoint_body_len) {
        return Ok(false);
    }
    let (theirs, ours) = (&theirs.checkpoint, &ours.checkpoint);
    if theirs.epoch > ours.epoch {
        return Err(Error::Fenced(FencedInfo {
            stored_epoch: theirs.epoch,
            attempted_epoch: ours.epoch,
        }));
    }
    if theirs.sequence >= ours.sequence {
        return Err(Error::Regression(RegressionInfo {
            stored_sequence: theirs.sequence,
            stored_watermark: theirs.watermark,
            attempted_sequence: ours.sequence,
            attempted_watermark: ours.watermark,
            field: "sequence".to_string(),
        }));
    }
    Ok(true)
}
