//! The write path and the reads: the durability contract of `checkpointer.wit`.

use crate::codec::{self, Decoded, MAX_ACK_ID_BYTES, MAX_ACK_IDS};
use crate::contract;
use crate::errors::{at_key, corruption, invalid};
use crate::keys::StageKeys;
use crate::model::{
    AckOutcome, Checkpoint, CommitOutcome, Corruption, CorruptionKind, Error, Fallback, FencedInfo,
    Lookup, Options, Receipt, RegressionInfo, Resume, ResumeOrigin, ResumePoint, TooLargeInfo,
    Watermark, Write, WriteOp,
};
use crate::ports::{Consumer, Storage};
use crate::validate::{check_id, validate};

/// Longest namespace, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 64;
/// Most checkpoints retained per stage; bounds the work of one write.
pub const MAX_RETAINED: u32 = 10_000;
/// Smallest accepted `max-checkpoint-bytes`: below it not even an empty checkpoint fits.
pub const MIN_CHECKPOINT_BYTES: u32 = 64;

/// Writes and reads checkpoints through a [`Storage`], acking through a [`Consumer`].
pub struct Checkpointer<S, C> {
    options: Options,
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
    /// Validates `options`; does no I/O.
    pub fn open(options: Options, storage: S, consumer: C) -> Result<Self, Error> {
        check_options(&options)?;
        Ok(Self {
            options,
            storage,
            consumer,
            last_write: None,
        })
    }

    /// The options this checkpointer was opened with.
    pub fn options(&self) -> &Options {
        &self.options
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
        // 1. Validate, bound and encode: no I/O yet.
        validate(checkpoint)?;
        let size = codec::encoded_len(checkpoint);
        let limit = self.options.max_checkpoint_bytes;
        if size > limit as usize {
            return Err(Error::TooLarge(TooLargeInfo {
                size: size as u64,
                limit: u64::from(limit),
            }));
        }
        check_batch(batch)?;
        let bytes = codec::encode_stored(checkpoint, batch)?;
        let body_len = codec::checkpoint_body_len(checkpoint);
        let keys = self.keys(&checkpoint.run_id, &checkpoint.stage);
        let latest_key = keys.latest();

        // 2. Read the stored latest; a damaged one fails closed.
        let stored = self.read_latest(&keys, &latest_key)?;

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

        // 4. One conditional batch: the new latest, its retained copy, the pruning.
        let mut retained = match self.last_write.take() {
            Some(last) if last.keys == keys && last.latest_version == expected_version => {
                last.retained
            }
            _ => self.retained_keys(&keys)?,
        };
        retained.retain(|(sequence, _)| *sequence != checkpoint.sequence);
        // The new copy counts as one of max-retained, so max-retained 1 keeps no copies at all.
        let keep_old = if self.options.max_retained > 1 {
            self.options.max_retained as usize - 1
        } else {
            0
        };
        let prune = retained.len().saturating_sub(keep_old);

        let mut writes = Vec::with_capacity(2 + prune);
        let history_key =
            (self.options.max_retained > 1).then(|| keys.history(checkpoint.sequence));
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
            let at = retained.partition_point(|(sequence, _)| *sequence < checkpoint.sequence);
            retained.insert(at, (checkpoint.sequence, history_key));
        }
        // Version 0 means "absent": never a committed put's, so nothing to remember.
        self.last_write = (version > 0).then_some(LastWrite {
            keys,
            latest_version: version,
            retained,
        });

        // 5. Only now, with the checkpoint durable: ack.
        let acks = self.ack(batch);
        Ok(Receipt {
            sequence: checkpoint.sequence,
            version,
            replayed: false,
            pruned: prune as u32,
            acks,
        })
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

    /// Retained checkpoints, oldest first; the latest alone when none are retained. Never writes.
    pub fn history(&mut self, run_id: &str, stage: &str) -> Result<Vec<Checkpoint>, Error> {
        check_id("run-id", run_id)?;
        check_id("stage", stage)?;
        let keys = self.keys(run_id, stage);
        // The latest first: the history ends with it even when its retained copy is gone, a
        // damaged latest fails the call, and copies a concurrent writer adds after this read
        // (sequences above it) are left out, so the answer is one consistent chain.
        let Some(latest) = self.read_latest(&keys, &keys.latest())? else {
            return Ok(Vec::new());
        };
        let latest = latest.decoded.checkpoint;
        let retained = self.retained_keys(&keys)?;
        let mut out = Vec::with_capacity(retained.len() + 1);
        for (sequence, key) in retained {
            if sequence >= latest.sequence {
                break;
            }
            if let Some((decoded, _)) =
                self.read_checkpoint(&keys, &key)?.map_err(Error::Corrupt)?
            {
                out.push(decoded.checkpoint);
            }
        }
        out.push(latest);
        Ok(out)
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
        match contract::get(&mut self.storage, key, "reading latest")? {
            Lookup::Missing => Ok(None),
            Lookup::Found(entry) => {
                let decoded = decode_for(&self.options.namespace, keys, key, &entry.value)
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

/// Decodes stored bytes and checks they belong under `key`.
fn decode_for(
    namespace: &str,
    keys: &StageKeys,
    key: &str,
    bytes: &[u8],
) -> Result<Decoded, Corruption> {
    let decoded = codec::decode_stored(bytes).map_err(|c| at_key(c, key))?;
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

#[cfg(test)]
mod tests;
