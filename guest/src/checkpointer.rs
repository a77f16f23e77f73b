//! The write path and the reads: the durability contract of `checkpointer.wit`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::codec::{self, Decoded, MAX_ACK_ID_BYTES, MAX_ACK_IDS, MAX_SAVEPOINT_NAME_BYTES};
use crate::contract;
use crate::errors::{at_key, corruption, invalid};
use crate::keys::{ParsedKey, Slot, StageKeys, namespace_prefix};
use crate::model::{
    AckOutcome, Checkpoint, CommitOutcome, Corruption, CorruptionKind, Error, Fallback, FencedInfo,
    HistoryEntry, HistoryPage, HistoryRequest, Lookup, Options, Receipt, RegressionInfo,
    ResetOrigin, ResetReceipt, ResetRequest, Resume, ResumeOrigin, ResumePoint, SavepointInfo,
    StageSummary, TooLargeInfo, Watermark, Write, WriteOp,
};
use crate::ports::{Consumer, Storage};
use crate::validate::{check_id, validate};

/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 64;
/// Most checkpoints retained per stage; bounds the work of one write.
pub const MAX_RETAINED: u32 = 10_000;
/// Smallest accepted `max-checkpoint-bytes`: below it not even an empty checkpoint fits.
pub const MIN_CHECKPOINT_BYTES: u32 = 64;
/// A write holds up to this many copies of its stored bytes (the checkpoint and its ack ids) at
/// once: the states given, the stored latest's bytes, and the encoding; the retained copy takes
/// the stored latest's place (`write_owned`; `checkpointer.open` in the WIT; `host/tests/
/// write_memory.rs` measures it).
pub const WRITE_MEMORY_FACTOR: u64 = 3;
/// Memory a call needs besides its checkpoints: the stack, small buffers, the allocator's slack
/// (`host/tests/write_memory.rs` measures about 1 MiB).
pub const CALL_MEMORY_BASE: u64 = 4 << 20;

/// Writes and reads checkpoints through a [`Storage`], acking through a [`Consumer`].
pub struct Checkpointer<S, C> {
    options: Options,
    /// The host's memory limit for this instance; 0 when it sets none.
    memory_limit: u64,
    storage: S,
    consumer: C,
    /// What this checkpointer's last write left in its stage, so the next write of that stage
    /// can skip listing the retained copies.
    last_write: Option<LastWrite>,
}

/// The retained copies of one stage right after this checkpointer committed to it.
///
/// Every change to a stage's retained copies is committed together with a change of its
/// latest (a write puts it, a delete removes it), and versions are never reused. So while the
/// stored latest still has `latest_version`, nobody has committed to the stage since, and
/// `retained` is exactly what a listing would return.
struct LastWrite {
    keys: StageKeys,
    latest_version: u64,
    /// (sequence, key), ascending.
    retained: Vec<(u64, String)>,
}

/// A stored latest checkpoint, decoded, with the bytes and version it was read with.
struct Stored {
    decoded: Decoded,
    bytes: Vec<u8>,
    version: u64,
}

impl<S: Storage, C: Consumer> Checkpointer<S, C> {
    /// Validates `options`; does no I/O. No memory limit: for native callers.
    pub fn open(options: Options, storage: S, consumer: C) -> Result<Self, Error> {
        Self::open_with_memory_limit(options, 0, storage, consumer)
    }

    /// Validates `options` against themselves and against the host's memory limit
    /// (`memory_limit` bytes of linear memory; 0: none). Does no I/O.
    pub fn open_with_memory_limit(
        options: Options,
        memory_limit: u64,
        storage: S,
        consumer: C,
    ) -> Result<Self, Error> {
        check_options(&options)?;
        check_memory(&options, memory_limit)?;
        Ok(Self {
            options,
            memory_limit,
            storage,
            consumer,
            last_write: None,
        })
    }

    /// The options this checkpointer was opened with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The host's memory limit it was opened with (0: none).
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit
    }

    /// The most encoded bytes one answer (a history page) holds: a quarter of the memory
    /// limit, so that reading and lifting the answer fits beside everything else.
    fn answer_budget(&self) -> u64 {
        match self.memory_limit {
            0 => u64::MAX,
            limit => limit / 4,
        }
    }

    /// The storage, for tests and native callers that inspect it.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// The consumer, for tests and native callers that inspect it.
    pub fn consumer_mut(&mut self) -> &mut C {
        &mut self.consumer
    }

    /// Makes `checkpoint` the durable latest of its stage, then acks `batch`. See `write` in
    /// `checkpointer.wit` for every step and error.
    pub fn write(&mut self, checkpoint: &Checkpoint, batch: &[String]) -> Result<Receipt, Error> {
        self.write_cow(Cow::Borrowed(checkpoint), batch)
    }

    /// [`Checkpointer::write`] for a caller that gives the checkpoint away (the component's
    /// export): its operator states are freed once encoded. With the stored latest read before
    /// the encoding and freed before the retained copy is made, a write's memory peaks at
    /// about three copies of the checkpoint (the states given, the stored latest's bytes, the
    /// encoding) and the retained copy reuses the stored latest's place (`WRITE_MEMORY_FACTOR`).
    pub fn write_owned(
        &mut self,
        checkpoint: Checkpoint,
        batch: &[String],
    ) -> Result<Receipt, Error> {
        self.write_cow(Cow::Owned(checkpoint), batch)
    }

    fn write_cow(
        &mut self,
        mut checkpoint: Cow<'_, Checkpoint>,
        batch: &[String],
    ) -> Result<Receipt, Error> {
        self.check_write(&checkpoint, batch)?;
        let (keys, stored) = self.read_for_write(&checkpoint)?;
        let bytes = codec::encode_stored(&checkpoint, batch, None)?;
        let body_len = codec::checkpoint_body_len(&checkpoint);
        if let Cow::Owned(owned) = &mut checkpoint {
            owned.operator_states = Vec::new(); // encoded: only the position is read from here on
        }
        self.finish_write(&checkpoint, keys, stored, (bytes, body_len), batch)
    }

    /// Step 1: validate and bound, no I/O yet.
    fn check_write(&self, checkpoint: &Checkpoint, batch: &[String]) -> Result<(), Error> {
        validate(checkpoint)?;
        self.check_size(checkpoint)?;
        check_batch(batch)
    }

    /// Step 2: read the stored latest; a damaged one fails closed. Only its position is needed
    /// (and its bytes, to recognise a replay), not a second copy of its states.
    fn read_for_write(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> Result<(StageKeys, Option<Stored>), Error> {
        let keys = self.keys(&checkpoint.run_id, &checkpoint.stage);
        let stored = self.read_latest_positions(&keys, &keys.latest())?;
        Ok((keys, stored))
    }

    /// Steps 3 to 5 of a write over the `stored` latest of `encoded`: the stored bytes of
    /// `checkpoint` (only its position fields are read) and how many of their body bytes encode
    /// the checkpoint itself.
    fn finish_write(
        &mut self,
        checkpoint: &Checkpoint,
        keys: StageKeys,
        stored: Option<Stored>,
        encoded: (Vec<u8>, usize),
        batch: &[String],
    ) -> Result<Receipt, Error> {
        let (bytes, body_len) = encoded;
        // 3. Replay, fencing and regression, before any write.
        let expected_version = match &stored {
            Some(stored)
                if stored
                    .decoded
                    .same_checkpoint(&stored.bytes, &bytes, body_len) =>
            {
                let acks = self.ack(batch);
                return Ok(Receipt {
                    sequence: checkpoint.sequence,
                    version: stored.version,
                    replayed: true,
                    pruned: 0,
                    acks,
                });
            }
            Some(stored) => {
                check_progress(&stored.decoded.checkpoint, checkpoint)?;
                stored.version
            }
            None => 0,
        };
        // Its bytes are no longer needed: the retained copy made next can take their place.
        drop(stored);

        // 4. One conditional batch: the new latest, its retained copy, the pruning.
        let (version, pruned) =
            self.commit_latest(keys, checkpoint.sequence, bytes, expected_version)?;

        // 5. Only now, with the checkpoint durable: ack.
        let acks = self.ack(batch);
        Ok(Receipt {
            sequence: checkpoint.sequence,
            version,
            replayed: false,
            pruned,
            acks,
        })
    }

    fn check_size(&self, checkpoint: &Checkpoint) -> Result<(), Error> {
        let size = codec::encoded_len(checkpoint);
        let limit = self.options.max_checkpoint_bytes;
        if size > limit as usize {
            return Err(Error::TooLarge(TooLargeInfo {
                size: size as u64,
                limit: u64::from(limit),
            }));
        }
        Ok(())
    }

    /// Commits `bytes` (of checkpoint `sequence`) as the stage's latest if it still has
    /// `expected_version`, with its retained copy and the pruning of the oldest, as one
    /// conditional batch. Returns the new version of the latest and how many copies were pruned.
    fn commit_latest(
        &mut self,
        keys: StageKeys,
        sequence: u64,
        bytes: Vec<u8>,
        expected_version: u64,
    ) -> Result<(u64, u32), Error> {
        let latest_key = keys.latest();
        let mut retained = match self.last_write.take() {
            Some(last) if last.keys == keys && last.latest_version == expected_version => {
                last.retained
            }
            _ => self.retained_keys(&keys)?,
        };
        retained.retain(|(retained, _)| *retained != sequence);
        // The new copy counts as one of max-retained, so max-retained 1 keeps no copies at all.
        let keep_old = if self.options.max_retained > 1 {
            self.options.max_retained as usize - 1
        } else {
            0
        };
        let prune = retained.len().saturating_sub(keep_old);

        let mut writes = Vec::with_capacity(2 + prune);
        let history_key = (self.options.max_retained > 1).then(|| keys.history(sequence));
        if let Some(history_key) = &history_key {
            writes.push(Write {
                key: history_key.clone(),
                expected_version: None,
                op: WriteOp::Put(bytes.clone()),
            });
        }
        writes.extend(retained.drain(..prune).map(|(_, key)| Write {
            key,
            expected_version: None,
            op: WriteOp::Delete,
        }));
        // The latest goes last: its condition serialises every writer of the stage, and the
        // unconditional writes before it only ever apply together with it.
        writes.push(Write {
            key: latest_key,
            expected_version: Some(expected_version),
            op: WriteOp::Put(bytes),
        });

        let version = match contract::commit(&mut self.storage, &writes, "committing checkpoint")? {
            CommitOutcome::Committed(versions) => versions.last().copied().unwrap_or_default(),
            CommitOutcome::Conflict(index) => {
                return Err(Error::Conflict(format!(
                    "{} changed since it was read (write {index} of {}); re-read and retry",
                    writes
                        .get(index as usize)
                        .map_or("the stage", |w| w.key.as_str()),
                    writes.len()
                )));
            }
        };
        if let Some(history_key) = history_key {
            // Its sequence is above every stored one unless foreign keys sit in the prefix.
            let at = retained.partition_point(|(retained, _)| *retained < sequence);
            retained.insert(at, (sequence, history_key));
        }
        // Version 0 means "absent": never a committed put's, so nothing to remember.
        self.last_write = (version > 0).then_some(LastWrite {
            keys,
            latest_version: version,
            retained,
        });
        Ok((version, prune as u32))
    }

    /// The latest checkpoint of a stage. Never writes.
    pub fn get(&mut self, run_id: &str, stage: &str) -> Result<Checkpoint, Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        let keys = self.keys(run_id, stage);
        match self.read_latest(&keys, &keys.latest())? {
            Some(stored) => Ok(stored.decoded.checkpoint),
            None => Err(Error::NotFound),
        }
    }

    /// Where a stage should restart, falling back to the newest intact retained copy when the
    /// latest is damaged or missing. Never writes.
    pub fn resume_point(&mut self, run_id: &str, stage: &str) -> Result<Resume, Error> {
        self.resume_with_ack_ids(run_id, stage)
            .map(|(resume, _)| resume)
    }

    /// Acks again the ids stored with the checkpoint a resume would start from. Never writes.
    pub fn recover_acks(&mut self, run_id: &str, stage: &str) -> Result<AckOutcome, Error> {
        let (_, ids) = self.resume_with_ack_ids(run_id, stage)?;
        Ok(self.ack(&ids))
    }

    /// The resume point and the ids stored with the checkpoint it comes from.
    pub(crate) fn resume_with_ack_ids(
        &mut self,
        run_id: &str,
        stage: &str,
    ) -> Result<(Resume, Vec<String>), Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        let keys = self.keys(run_id, stage);
        let latest_key = keys.latest();
        // A peer may commit the stage's first checkpoint (its latest and retained copy in one
        // commit) between the read of the latest and the listing: a missing latest beside
        // retained copies is read once more before its absence counts as damage.
        let mut reads = 0;
        let (first_damage, mut retained) = loop {
            reads += 1;
            let damage = match self.read_latest(&keys, &latest_key) {
                Ok(Some(stored)) => {
                    let Decoded {
                        checkpoint,
                        ack_ids,
                        ..
                    } = stored.decoded;
                    return Ok((
                        Resume {
                            point: resume_point_of(&checkpoint),
                            origin: ResumeOrigin::Latest,
                            checkpoint: Some(checkpoint),
                        },
                        ack_ids,
                    ));
                }
                Ok(None) => None,
                Err(Error::Corrupt(damage)) => Some(damage),
                Err(other) => return Err(other),
            };
            let retained = self.retained_keys(&keys)?;
            if damage.is_some() || retained.is_empty() || reads == 2 {
                break (damage, retained);
            }
        };
        if first_damage.is_none() && retained.is_empty() {
            let fresh = Resume {
                point: ResumePoint {
                    run_id: run_id.to_string(),
                    stage: stage.to_string(),
                    sequence: 0,
                    epoch: 0,
                    watermark: Watermark {
                        offset: 0,
                        event_time_ms: 0,
                    },
                },
                origin: ResumeOrigin::Fresh,
                checkpoint: None,
            };
            return Ok((fresh, Vec::new()));
        }
        let mut skipped = vec![first_damage.unwrap_or_else(|| {
            at_key(
                corruption(
                    CorruptionKind::Malformed,
                    "latest is missing while retained copies exist",
                ),
                &latest_key,
            )
        })];
        retained.reverse();
        for (_, key) in retained {
            match self.read_checkpoint(&keys, &key)? {
                Ok(Some((decoded, _))) => {
                    let resume = Resume {
                        point: resume_point_of(&decoded.checkpoint),
                        origin: ResumeOrigin::Fallback(Fallback { skipped }),
                        checkpoint: Some(decoded.checkpoint),
                    };
                    return Ok((resume, decoded.ack_ids));
                }
                Ok(None) => {} // pruned between list and get
                Err(damage) => skipped.push(damage),
            }
        }
        let mut damage = skipped.swap_remove(0);
        damage.detail = format!(
            "{}; no intact retained copy ({} damaged)",
            damage.detail,
            skipped.len()
        );
        Err(Error::Corrupt(damage))
    }

    /// Retained checkpoints, oldest first; the latest alone when none are retained. Never
    /// writes. `invalid` (field `history`) when they do not fit one answer.
    pub fn history(&mut self, run_id: &str, stage: &str) -> Result<Vec<Checkpoint>, Error> {
        let budget = self.answer_budget();
        let page = self.history_entries(run_id, stage, 0, usize::MAX, budget)?;
        if page.next_after.is_some() {
            return Err(invalid(
                "history",
                format!(
                    "the retained checkpoints together exceed {budget} bytes, the largest answer \
                     of this checkpointer (a quarter of its memory limit): read them with \
                     history-page"
                ),
            ));
        }
        Ok(page.entries.into_iter().map(|e| e.checkpoint).collect())
    }

    /// One page of the retained checkpoints, oldest first. Never writes.
    pub fn history_page(
        &mut self,
        run_id: &str,
        stage: &str,
        request: &HistoryRequest,
    ) -> Result<HistoryPage, Error> {
        if request.max_checkpoints == 0 {
            return Err(invalid("max-checkpoints", "0, must be at least 1"));
        }
        let budget = match request.max_bytes {
            0 => self.answer_budget(),
            wanted => wanted.min(self.answer_budget()),
        };
        self.history_entries(
            run_id,
            stage,
            request.after_sequence,
            request.max_checkpoints as usize,
            budget,
        )
    }

    /// Checkpoints after `after`, oldest first, ending with the latest; at most `max` of them
    /// and `budget` encoded bytes (at least one whatever its size).
    fn history_entries(
        &mut self,
        run_id: &str,
        stage: &str,
        after: u64,
        max: usize,
        budget: u64,
    ) -> Result<HistoryPage, Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        let keys = self.keys(run_id, stage);
        // The latest first: the history ends with it even when its retained copy is gone, a
        // damaged latest fails the call, and copies a concurrent writer adds after this read
        // (sequences above it) are left out, so the answer is one consistent chain.
        let Some(latest) = self.read_latest(&keys, &keys.latest())? else {
            return Ok(HistoryPage {
                entries: Vec::new(),
                next_after: None,
            });
        };
        let latest_sequence = latest.decoded.checkpoint.sequence;
        let retained = self.retained_keys(&keys)?;
        let mut page = Page {
            entries: Vec::new(),
            bytes: 0,
            max,
            budget,
        };
        for (sequence, key) in retained {
            if sequence <= after {
                continue;
            }
            if sequence >= latest_sequence {
                break;
            }
            if let Some((decoded, _)) =
                self.read_checkpoint(&keys, &key)?.map_err(Error::Corrupt)?
                && !page.take(decoded)
            {
                return Ok(page.cut());
            }
        }
        if latest_sequence > after && !page.take(latest.decoded) {
            return Ok(page.cut());
        }
        Ok(HistoryPage {
            entries: page.entries,
            next_after: None,
        })
    }

    /// The retained checkpoint with `sequence` (the latest included). Never writes.
    pub fn get_at(
        &mut self,
        run_id: &str,
        stage: &str,
        sequence: u64,
    ) -> Result<Checkpoint, Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        let keys = self.keys(run_id, stage);
        // The latest first: it is retained even when max-retained 1 keeps no copy. A damaged
        // latest does not hide an intact retained copy of the sequence asked for.
        if let Ok(Some(latest)) = self.read_latest(&keys, &keys.latest())
            && latest.decoded.checkpoint.sequence == sequence
        {
            return Ok(latest.decoded.checkpoint);
        }
        match self.read_checkpoint(&keys, &keys.history(sequence))? {
            Ok(Some((decoded, _))) => Ok(decoded.checkpoint),
            Ok(None) => Err(Error::NotFound),
            Err(damage) => Err(Error::Corrupt(damage)),
        }
    }

    /// Moves a stage to the requested position and takes it over with a higher epoch.
    pub fn reset(&mut self, request: ResetRequest) -> Result<ResetReceipt, Error> {
        self.reset_to(request, None)
    }

    fn reset_to(
        &mut self,
        request: ResetRequest,
        savepoint: Option<String>,
    ) -> Result<ResetReceipt, Error> {
        check_id("run-id", &request.run_id)?;
        check_id("stage", &request.stage)?;
        let keys = self.keys(&request.run_id, &request.stage);
        // A damaged latest fails closed: its owner's epoch is unknown, so no epoch chosen
        // here could be known to fence it.
        let stored = self.read_latest(&keys, &keys.latest())?;
        let (origin, expected_version, stored_state) = match stored {
            Some(stored) => {
                let c = stored.decoded.checkpoint;
                let origin = ResetOrigin {
                    from_sequence: c.sequence,
                    from_epoch: c.epoch,
                    from_watermark: c.watermark,
                    savepoint,
                };
                (origin, stored.version, Some((c.sinks, c.operator_states)))
            }
            None => (
                ResetOrigin {
                    from_sequence: 0,
                    from_epoch: 0,
                    from_watermark: Watermark {
                        offset: 0,
                        event_time_ms: 0,
                    },
                    savepoint,
                },
                0,
                None,
            ),
        };
        let epoch = match request.epoch {
            Some(epoch) if epoch > origin.from_epoch => epoch,
            Some(epoch) => {
                return Err(invalid(
                    "epoch",
                    format!(
                        "{epoch}, must be above the stored epoch {}: a reset takes the stage over \
                         and fences every older writer",
                        origin.from_epoch
                    ),
                ));
            }
            None => origin.from_epoch.checked_add(1).ok_or_else(|| {
                invalid(
                    "epoch",
                    "the stored epoch is the largest there is; give no reset",
                )
            })?,
        };
        let sequence = origin
            .from_sequence
            .checked_add(1)
            .ok_or_else(|| invalid("sequence", "the stored sequence is the largest there is"))?;
        let (sinks, operator_states) = match request.state {
            Some(state) => (state.sinks, state.operator_states),
            None => stored_state.unwrap_or_default(),
        };
        let checkpoint = Checkpoint {
            run_id: request.run_id,
            stage: request.stage,
            sequence,
            epoch,
            watermark: request.watermark,
            sources: request.sources,
            sinks,
            operator_states,
            idempotency_key: String::new(),
            at_ms: request.at_ms,
        };
        validate(&checkpoint)?;
        self.check_size(&checkpoint)?;
        let bytes = codec::encode_stored(&checkpoint, &[], Some(&origin))?;
        let (version, pruned) = self.commit_latest(keys, sequence, bytes, expected_version)?;
        Ok(ResetReceipt {
            checkpoint,
            version,
            pruned,
            origin,
        })
    }

    /// Pins the latest checkpoint, or the retained one with `sequence`, under `name`.
    pub fn create_savepoint(
        &mut self,
        run_id: &str,
        stage: &str,
        name: &str,
        sequence: Option<u64>,
    ) -> Result<SavepointInfo, Error> {
        check_savepoint_name(name)?;
        let checkpoint = match sequence {
            Some(sequence) => self.get_at(run_id, stage, sequence)?,
            None => self.get(run_id, stage)?,
        };
        let bytes = codec::encode_valid(&checkpoint)?;
        let keys = self.keys(run_id, stage);
        let key = keys.savepoint(name);
        let info = savepoint_info(name, &checkpoint, bytes.len());
        if let Lookup::Found(entry) = contract::get(&mut self.storage, &key, "reading savepoint")? {
            if entry.value == bytes {
                return Ok(info);
            }
            let pinned = decode_for(&self.options.namespace, &keys, &key, &entry.value)
                .map_err(Error::Corrupt)?;
            return Err(invalid(
                "name",
                format!(
                    "savepoint {name:?} exists and pins sequence {}: delete it first or choose \
                     another name",
                    pinned.checkpoint.sequence
                ),
            ));
        }
        let put = [Write {
            key,
            expected_version: Some(0),
            op: WriteOp::Put(bytes),
        }];
        match contract::commit(&mut self.storage, &put, "creating savepoint")? {
            CommitOutcome::Committed(_) => Ok(info),
            CommitOutcome::Conflict(_) => Err(Error::Conflict(format!(
                "savepoint {name:?} was created meanwhile"
            ))),
        }
    }

    /// The savepoints of a stage, by name. Never writes.
    pub fn list_savepoints(
        &mut self,
        run_id: &str,
        stage: &str,
    ) -> Result<Vec<SavepointInfo>, Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        let keys = self.keys(run_id, stage);
        let listed = contract::list_keys(
            &mut self.storage,
            &keys.savepoint_prefix(),
            "listing savepoints",
        )?;
        let mut out = Vec::new();
        for key in listed {
            let Some(escaped) = keys.savepoint_name(&key) else {
                continue;
            };
            let name = crate::keys::unescape(escaped);
            if let Some((decoded, _)) =
                self.read_checkpoint(&keys, &key)?.map_err(Error::Corrupt)?
            {
                let size = codec::encoded_len(&decoded.checkpoint);
                out.push(savepoint_info(&name, &decoded.checkpoint, size));
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The checkpoint a savepoint pins. Never writes.
    pub fn get_savepoint(
        &mut self,
        run_id: &str,
        stage: &str,
        name: &str,
    ) -> Result<Checkpoint, Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        check_savepoint_name(name)?;
        let keys = self.keys(run_id, stage);
        match self.read_checkpoint(&keys, &keys.savepoint(name))? {
            Ok(Some((decoded, _))) => Ok(decoded.checkpoint),
            Ok(None) => Err(Error::NotFound),
            Err(damage) => Err(Error::Corrupt(damage)),
        }
    }

    /// Resets a stage to a savepoint's checkpoint (position and state).
    pub fn restore_savepoint(
        &mut self,
        run_id: &str,
        stage: &str,
        name: &str,
        epoch: Option<u64>,
        at_ms: u64,
    ) -> Result<ResetReceipt, Error> {
        let pinned = self.get_savepoint(run_id, stage, name)?;
        let request = ResetRequest {
            run_id: pinned.run_id,
            stage: pinned.stage,
            watermark: pinned.watermark,
            sources: pinned.sources,
            state: Some(crate::model::StageState {
                sinks: pinned.sinks,
                operator_states: pinned.operator_states,
            }),
            epoch,
            at_ms,
        };
        self.reset_to(request, Some(name.to_string()))
    }

    /// Removes a savepoint; false when there was none.
    pub fn delete_savepoint(
        &mut self,
        run_id: &str,
        stage: &str,
        name: &str,
    ) -> Result<bool, Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        check_savepoint_name(name)?;
        let key = self.keys(run_id, stage).savepoint(name);
        let Lookup::Found(entry) = contract::get(&mut self.storage, &key, "reading savepoint")?
        else {
            return Ok(false);
        };
        let delete = [Write {
            key,
            expected_version: Some(entry.version),
            op: WriteOp::Delete,
        }];
        match contract::commit(&mut self.storage, &delete, "deleting savepoint")? {
            CommitOutcome::Committed(_) => Ok(true),
            CommitOutcome::Conflict(_) => Err(Error::Conflict(format!(
                "savepoint {name:?} changed while being deleted"
            ))),
        }
    }

    /// Every stage of the namespace (or of one run), with its latest position. Never writes.
    pub fn list_stages(&mut self, run_id: Option<&str>) -> Result<Vec<StageSummary>, Error> {
        if let Some(run_id) = run_id {
            check_id("run-id", run_id)?;
        }
        let prefix = namespace_prefix(&self.options.namespace, run_id);
        let listed = contract::list_keys(&mut self.storage, &prefix, "listing stages")?;
        let mut stages: BTreeMap<StageKeys, StageSummary> = BTreeMap::new();
        for key in listed {
            let Some(parsed) = ParsedKey::parse(&key) else {
                continue;
            };
            let summary = stages
                .entry(parsed.stage_keys().clone())
                .or_insert_with(|| StageSummary {
                    run_id: parsed.run_id().to_string(),
                    stage: parsed.stage().to_string(),
                    latest: None,
                    at_ms: 0,
                    encoded_bytes: 0,
                    reset: None,
                    damage: None,
                    retained: 0,
                    savepoints: 0,
                });
            match parsed.slot() {
                Slot::Latest => {
                    match self.read_latest_positions(parsed.stage_keys(), &key) {
                        Ok(Some(stored)) => {
                            let c = &stored.decoded.checkpoint;
                            summary.run_id.clone_from(&c.run_id);
                            summary.stage.clone_from(&c.stage);
                            summary.latest = Some(resume_point_of(c));
                            summary.at_ms = c.at_ms;
                            summary.encoded_bytes =
                                codec::encoded_len_of_body(stored.decoded.checkpoint_body_len)
                                    as u64;
                            summary.reset = stored.decoded.reset;
                        }
                        Ok(None) => {} // deleted since the listing
                        Err(Error::Corrupt(damage)) => summary.damage = Some(damage),
                        Err(other) => return Err(other),
                    }
                }
                Slot::History(_) => summary.retained += 1,
                Slot::Savepoint => summary.savepoints += 1,
            }
        }
        Ok(stages.into_values().collect())
    }

    /// Removes every key of a stage in one commit; damaged data is removed too (this is the
    /// repair tool). Returns how many keys existed.
    pub fn delete(&mut self, run_id: &str, stage: &str) -> Result<u32, Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        let keys = self.keys(run_id, stage);
        let latest_key = keys.latest();
        self.last_write = None;
        let latest = contract::get(&mut self.storage, &latest_key, "reading latest")?;
        let mut writes: Vec<Write> = self
            .retained_keys(&keys)?
            .into_iter()
            .map(|(_, key)| Write {
                key,
                expected_version: None,
                op: WriteOp::Delete,
            })
            .collect();
        if let Lookup::Found(entry) = latest {
            writes.push(Write {
                key: latest_key,
                expected_version: Some(entry.version),
                op: WriteOp::Delete,
            });
        }
        if writes.is_empty() {
            return Ok(0);
        }
        match contract::commit(&mut self.storage, &writes, "deleting checkpoints")? {
            CommitOutcome::Committed(_) => Ok(writes.len() as u32),
            CommitOutcome::Conflict(_) => Err(Error::Conflict(
                "the stage was written while being deleted; re-read and retry".into(),
            )),
        }
    }

    fn keys(&self, run_id: &str, stage: &str) -> StageKeys {
        StageKeys::new(&self.options.namespace, run_id, stage)
    }

    pub(crate) fn ack(&mut self, batch: &[String]) -> AckOutcome {
        if batch.is_empty() {
            return AckOutcome::Acked(0);
        }
        match self.consumer.ack(batch) {
            Ok(()) => AckOutcome::Acked(batch.len() as u32),
            Err(reason) => AckOutcome::Failed(reason),
        }
    }

    /// The stage's latest, decoded and checked to belong to the stage. `Err(Corrupt)` if damaged.
    fn read_latest(&mut self, keys: &StageKeys, key: &str) -> Result<Option<Stored>, Error> {
        self.read_latest_as(keys, key, codec::decode_stored)
    }

    /// [`Self::read_latest`] with the operator states' bytes left out of the decoded checkpoint.
    fn read_latest_positions(
        &mut self,
        keys: &StageKeys,
        key: &str,
    ) -> Result<Option<Stored>, Error> {
        self.read_latest_as(keys, key, codec::decode_positions)
    }

    fn read_latest_as(
        &mut self,
        keys: &StageKeys,
        key: &str,
        decode: fn(&[u8]) -> Result<Decoded, Corruption>,
    ) -> Result<Option<Stored>, Error> {
        match contract::get(&mut self.storage, key, "reading latest")? {
            Lookup::Missing => Ok(None),
            Lookup::Found(entry) => {
                let decoded =
                    decode_for_with(&self.options.namespace, keys, key, &entry.value, decode)
                        .map_err(Error::Corrupt)?;
                Ok(Some(Stored {
                    decoded,
                    bytes: entry.value,
                    version: entry.version,
                }))
            }
        }
    }

    /// One stored checkpoint: `Ok(Err(damage))` when its bytes are damaged, `Err` when storage failed.
    #[allow(clippy::type_complexity)]
    fn read_checkpoint(
        &mut self,
        keys: &StageKeys,
        key: &str,
    ) -> Result<Result<Option<(Decoded, u64)>, Corruption>, Error> {
        match contract::get(&mut self.storage, key, "reading retained checkpoint")? {
            Lookup::Missing => Ok(Ok(None)),
            Lookup::Found(entry) => {
                Ok(decode_for(&self.options.namespace, keys, key, &entry.value)
                    .map(|c| Some((c, entry.version))))
            }
        }
    }

    /// Retained copies' (sequence, key), ascending.
    fn retained_keys(&mut self, keys: &StageKeys) -> Result<Vec<(u64, String)>, Error> {
        let listed = contract::list_keys(
            &mut self.storage,
            &keys.history_prefix(),
            "listing retained checkpoints",
        )?;
        let mut retained: Vec<(u64, String)> = listed
            .into_iter()
            .filter_map(|key| keys.history_sequence(&key).map(|s| (s, key)))
            .collect();
        retained.sort_unstable();
        Ok(retained)
    }
}

/// A history page being filled.
struct Page {
    entries: Vec<HistoryEntry>,
    bytes: u64,
    max: usize,
    budget: u64,
}

impl Page {
    /// Adds `decoded` when the page has room for it (an empty page always has); false when
    /// it is full, and the caller ends the page.
    fn take(&mut self, decoded: Decoded) -> bool {
        let size = codec::encoded_len(&decoded.checkpoint) as u64;
        let full = self.entries.len() >= self.max
            || (!self.entries.is_empty() && self.bytes.saturating_add(size) > self.budget);
        if full {
            return false;
        }
        self.bytes += size;
        self.entries.push(HistoryEntry {
            checkpoint: decoded.checkpoint,
            encoded_bytes: size,
            reset: decoded.reset,
        });
        true
    }

    /// The page as it is, with where the next one starts.
    fn cut(self) -> HistoryPage {
        let next_after = self.entries.last().map(|e| e.checkpoint.sequence);
        HistoryPage {
            entries: self.entries,
            next_after,
        }
    }
}

fn savepoint_info(name: &str, checkpoint: &Checkpoint, encoded_bytes: usize) -> SavepointInfo {
    SavepointInfo {
        name: name.to_string(),
        point: resume_point_of(checkpoint),
        at_ms: checkpoint.at_ms,
        encoded_bytes: encoded_bytes as u64,
    }
}

fn check_savepoint_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_SAVEPOINT_NAME_BYTES {
        return Err(invalid(
            "name",
            format!(
                "{} bytes, a savepoint name has 1 to {MAX_SAVEPOINT_NAME_BYTES}",
                name.len()
            ),
        ));
    }
    Ok(())
}

/// A write of the largest checkpoint must fit the host's memory limit.
fn check_memory(options: &Options, memory_limit: u64) -> Result<(), Error> {
    let stored_bytes = u64::from(options.max_checkpoint_bytes) + MAX_ACK_ID_BYTES as u64;
    let needed = stored_bytes * WRITE_MEMORY_FACTOR + CALL_MEMORY_BASE;
    if memory_limit == 0 || needed <= memory_limit {
        return Ok(());
    }
    let fits = (memory_limit.saturating_sub(CALL_MEMORY_BASE) / WRITE_MEMORY_FACTOR)
        .saturating_sub(MAX_ACK_ID_BYTES as u64);
    Err(invalid(
        "max-checkpoint-bytes",
        format!(
            "{} bytes: a write of a checkpoint this large (with its ack ids) needs up to \
             {needed} bytes of memory, and the host's memory limit is {memory_limit} bytes: \
             lower max-checkpoint-bytes to at most {fits} or raise the host's memory limit",
            options.max_checkpoint_bytes
        ),
    ))
}

/// Decodes stored bytes and checks they belong under `key`.
fn decode_for(
    namespace: &str,
    keys: &StageKeys,
    key: &str,
    bytes: &[u8],
) -> Result<Decoded, Corruption> {
    decode_for_with(namespace, keys, key, bytes, codec::decode_stored)
}

fn decode_for_with(
    namespace: &str,
    keys: &StageKeys,
    key: &str,
    bytes: &[u8],
    decode: fn(&[u8]) -> Result<Decoded, Corruption>,
) -> Result<Decoded, Corruption> {
    let decoded = decode(bytes).map_err(|c| at_key(c, key))?;
    let checkpoint = &decoded.checkpoint;
    let own = StageKeys::new(namespace, &checkpoint.run_id, &checkpoint.stage);
    let in_place = own == *keys
        && keys
            .history_sequence(key)
            .is_none_or(|sequence| sequence == checkpoint.sequence);
    if !in_place {
        return Err(at_key(
            corruption(
                CorruptionKind::Misplaced,
                format!(
                    "holds run {:?} stage {:?} sequence {}",
                    checkpoint.run_id, checkpoint.stage, checkpoint.sequence
                ),
            ),
            key,
        ));
    }
    Ok(decoded)
}

/// The ids of one write's batch are stored with it: bounded, so a write stays bounded.
fn check_batch(batch: &[String]) -> Result<(), Error> {
    let bytes: usize = batch.iter().map(String::len).sum();
    if batch.len() > MAX_ACK_IDS || bytes > MAX_ACK_ID_BYTES {
        return Err(invalid(
            "batch",
            format!(
                "{} ids of {bytes} bytes; one write stores at most {MAX_ACK_IDS} ids and \
                 {MAX_ACK_ID_BYTES} bytes of ids for ack recovery: split the batch over several \
                 checkpoints",
                batch.len()
            ),
        ));
    }
    Ok(())
}

/// Fencing first (a stale owner must stop, whatever it wrote), then the three orderings.
pub(crate) fn check_progress(stored: &Checkpoint, next: &Checkpoint) -> Result<(), Error> {
    if next.epoch < stored.epoch {
        return Err(Error::Fenced(FencedInfo {
            stored_epoch: stored.epoch,
            attempted_epoch: next.epoch,
        }));
    }
    let field = if next.sequence <= stored.sequence {
        "sequence"
    } else if next.watermark.offset < stored.watermark.offset {
        "offset"
    } else if next.watermark.event_time_ms < stored.watermark.event_time_ms {
        "event-time"
    } else {
        return Ok(());
    };
    Err(Error::Regression(RegressionInfo {
        stored_sequence: stored.sequence,
        stored_watermark: stored.watermark,
        attempted_sequence: next.sequence,
        attempted_watermark: next.watermark,
        field: field.to_string(),
    }))
}

pub(crate) fn resume_point_of(c: &Checkpoint) -> ResumePoint {
    ResumePoint {
        run_id: c.run_id.clone(),
        stage: c.stage.clone(),
        sequence: c.sequence,
        epoch: c.epoch,
        watermark: c.watermark,
    }
}

fn check_options(options: &Options) -> Result<(), Error> {
    let ns = &options.namespace;
    if ns.is_empty() || ns.len() > MAX_NAMESPACE_BYTES {
        return Err(invalid(
            "namespace",
            format!("{} bytes, must be 1 to {MAX_NAMESPACE_BYTES}", ns.len()),
        ));
    }
    if let Some(bad) = ns
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(invalid(
            "namespace",
            format!("{bad:?} is not one of A-Z a-z 0-9 _ - ."),
        ));
    }
    if options.max_retained == 0 || options.max_retained > MAX_RETAINED {
        return Err(invalid(
            "max-retained",
            format!("{}, must be 1 to {MAX_RETAINED}", options.max_retained),
        ));
    }
    if options.max_checkpoint_bytes < MIN_CHECKPOINT_BYTES {
        return Err(invalid(
            "max-checkpoint-bytes",
            format!(
                "{}, must be at least {MIN_CHECKPOINT_BYTES}",
                options.max_checkpoint_bytes
            ),
        ));
    }
    Ok(())
}

mod transfer;

#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transfer_tests;
