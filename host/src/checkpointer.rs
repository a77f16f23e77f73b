//! Typed handles on the component's exports: [`Checkpointer`], [`Driver`] and [`Codec`].
//!
//! Each handle owns a wasmtime store with its own instance of the component. Dropping a
//! handle drops the store at once: no guest code runs, nothing is flushed (which is how a
//! crash is simulated).

use wasmtime::component::ResourceAny;

use crate::bindings::checkpointer_api::Guest as CheckpointerExports;
use crate::bindings::checkpointer_api::{
    AckOutcome, Admission, BatchProgress, Changelog, Completion, DriverOptions, HistoryEntry,
    HistoryPage, HistoryRequest, ImportReceipt, Message, Options, ProcessedMessage, Progress,
    Receipt, ResetReceipt, ResetRequest, Resume, SavepointInfo, StageExport, StageState,
    StageSummary,
};
use crate::bindings::exports::pipeline::checkpoint::codec::Guest as CodecExports;
use crate::bindings::types::{Checkpoint, ResumePoint, Watermark};
use crate::consumer::{Consumer, NullConsumer};
use crate::error::Error;
use crate::metrics::{Call, CallMetrics, Labels, OpenedDriver, StorageMetrics};
use crate::runtime::{Instance, Runtime};
use crate::storage::{MemoryStorage, Storage};

/// Flattens a guest answer `result<T, error>` into the library's error.
fn answer<T>(r: Result<T, crate::CheckpointError>) -> Result<T, Error> {
    r.map_err(Error::Checkpoint)
}

fn shared_runtime() -> Result<&'static Runtime, Error> {
    Runtime::shared().map_err(Error::Runtime)
}

/// Writes and reads the checkpoints of one namespace of a store, through the component.
///
/// Not `Sync`: use it from one thread at a time (it is `Send`).
pub struct Checkpointer {
    instance: Instance<CheckpointerExports>,
    handle: ResourceAny,
    /// Durations and outcomes of this checkpointer's calls (and its driver's).
    metrics: CallMetrics,
    namespace: String,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Opens a checkpointer on [`Runtime::shared`]. See [`Checkpointer::open_in`].
    pub fn open(
        storage: Box<dyn Storage>,
        consumer: Box<dyn Consumer>,
        options: &Options,
    ) -> Result<Self, Error> {
        Self::open_in(shared_runtime()?, storage, consumer, options)
    }

    /// Opens a checkpointer in its own instance of the component on `runtime`, over `storage`
    /// and `consumer`. Fails with `invalid` for bad options; does no storage I/O.
    pub fn open_in(
        runtime: &Runtime,
        storage: Box<dyn Storage>,
        consumer: Box<dyn Consumer>,
        options: &Options,
    ) -> Result<Self, Error> {
        let labels = Labels::new(crate::metrics::UNKNOWN_STORE, &options.namespace);
        let metrics = CallMetrics::new(labels.clone());
        let (mut instance, handle) = metrics.call(Call::Open, || {
            let mut instance: Instance<CheckpointerExports> =
                runtime.instantiate(storage, consumer)?;
            // The component checks the options against this instance's memory limit.
            let memory_limit = runtime.config().max_memory_bytes as u64;
            let handle = instance.call("checkpointer.open", |g, s| {
                g.checkpointer().call_open(s, options, memory_limit)
            })?;
            Ok((instance, answer(handle)?))
        })?;
        instance.store.data_mut().metrics = StorageMetrics::new(labels);
        Ok(Self {
            instance,
            handle,
            metrics,
            namespace: options.namespace.clone(),
        })
    }

    /// Sets the `store` label of this checkpointer's metrics (and its driver's): the kind of
    /// store it writes to, such as [`metrics::store_kind`](crate::metrics::store_kind) gives
    /// for a storage URL (`sqlite`, `postgres`, ...). Until set it is `unknown`. See
    /// [`crate::metrics`].
    pub fn set_metrics_store(&mut self, store: &str) {
        let labels = Labels::new(store, &self.namespace);
        self.metrics = CallMetrics::new(labels.clone());
        self.instance.store.data_mut().metrics = StorageMetrics::new(labels);
    }

    /// Makes `checkpoint` the durable latest of its (run-id, stage), then acks `batch`.
    ///
    /// Refuses (before any write) an invalid or too large checkpoint, damaged stored data, a
    /// move backwards and a stale epoch; `conflict` when the stage changed concurrently. An
    /// ack failure does not fail the call: see [`Receipt::acks`].
    pub fn write(&mut self, checkpoint: &Checkpoint, batch: &[String]) -> Result<Receipt, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Write, || {
            answer(self.instance.call("checkpointer.write", |g, s| {
                g.checkpointer().call_write(s, handle, checkpoint, batch)
            })?)
        })
    }

    /// The latest checkpoint of (run-id, stage): `not-found` when none, `corrupt` when it is
    /// damaged. Never writes.
    pub fn get(&mut self, run_id: &str, stage: &str) -> Result<Checkpoint, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Get, || {
            answer(self.instance.call("checkpointer.get", |g, s| {
                g.checkpointer().call_get(s, handle, run_id, stage)
            })?)
        })
    }

    /// Where (run-id, stage) should restart, and whether that is the latest checkpoint, an
    /// older intact one, or a fresh start. Never writes.
    pub fn resume_point(&mut self, run_id: &str, stage: &str) -> Result<Resume, Error> {
        let handle = self.handle;
        self.metrics.call(Call::ResumePoint, || {
            answer(self.instance.call("checkpointer.resume-point", |g, s| {
                g.checkpointer().call_resume_point(s, handle, run_id, stage)
            })?)
        })
    }

    /// The retained checkpoints of (run-id, stage), oldest first, ending with the latest;
    /// empty when none. Never writes. Read page by page ([`Checkpointer::history_page`]), so a
    /// history larger than the instance's memory is read all the same; each page reads the
    /// latest again, so a writer committing meanwhile may add its checkpoints to the end.
    pub fn history(&mut self, run_id: &str, stage: &str) -> Result<Vec<Checkpoint>, Error> {
        Ok(self
            .history_entries(run_id, stage)?
            .into_iter()
            .map(|entry| entry.checkpoint)
            .collect())
    }

    /// Every retained checkpoint with what is stored beside it (its size, and where a reset
    /// moved the stage from), oldest first, read page by page.
    pub fn history_entries(
        &mut self,
        run_id: &str,
        stage: &str,
    ) -> Result<Vec<HistoryEntry>, Error> {
        let mut request = HistoryRequest {
            after_sequence: 0,
            max_checkpoints: u32::MAX,
            max_bytes: 0,
        };
        let mut entries = Vec::new();
        loop {
            let page = self.history_page(run_id, stage, &request)?;
            entries.extend(page.entries);
            match page.next_after {
                Some(after) => request.after_sequence = after,
                None => return Ok(entries),
            }
        }
    }

    /// One page of the retained checkpoints of (run-id, stage), oldest first, at most
    /// `request.max_checkpoints` and `request.max_bytes` (0: the largest page the instance
    /// serves, a quarter of its memory limit). Never writes.
    pub fn history_page(
        &mut self,
        run_id: &str,
        stage: &str,
        request: &HistoryRequest,
    ) -> Result<HistoryPage, Error> {
        let handle = self.handle;
        self.metrics.call(Call::History, || {
            answer(self.instance.call("checkpointer.history-page", |g, s| {
                g.checkpointer()
                    .call_history_page(s, handle, run_id, stage, *request)
            })?)
        })
    }

    /// The retained checkpoint of (run-id, stage) with `sequence` (the latest included):
    /// `not-found` when that sequence is not retained. Never writes.
    pub fn get_at(
        &mut self,
        run_id: &str,
        stage: &str,
        sequence: u64,
    ) -> Result<Checkpoint, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Get, || {
            answer(self.instance.call("checkpointer.get-at", |g, s| {
                g.checkpointer()
                    .call_get_at(s, handle, run_id, stage, sequence)
            })?)
        })
    }

    /// Moves (run-id, stage) to `request.watermark` (backwards or forwards) and takes it over
    /// with an epoch above the stored one, fencing every older writer. See `reset` in
    /// `wit/checkpointer.wit`.
    pub fn reset(&mut self, request: &ResetRequest) -> Result<ResetReceipt, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Reset, || {
            answer(self.instance.call("checkpointer.reset", |g, s| {
                g.checkpointer().call_reset(s, handle, request)
            })?)
        })
    }

    /// Pins the latest checkpoint of (run-id, stage), or the retained one with `sequence`,
    /// under `name`: retention, resets and [`Checkpointer::delete`] never remove it.
    pub fn create_savepoint(
        &mut self,
        run_id: &str,
        stage: &str,
        name: &str,
        sequence: Option<u64>,
    ) -> Result<SavepointInfo, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Savepoint, || {
            answer(
                self.instance
                    .call("checkpointer.create-savepoint", |g, s| {
                        g.checkpointer()
                            .call_create_savepoint(s, handle, run_id, stage, name, sequence)
                    })?,
            )
        })
    }

    /// The savepoints of (run-id, stage), by name.
    pub fn list_savepoints(
        &mut self,
        run_id: &str,
        stage: &str,
    ) -> Result<Vec<SavepointInfo>, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Savepoint, || {
            answer(self.instance.call("checkpointer.list-savepoints", |g, s| {
                g.checkpointer()
                    .call_list_savepoints(s, handle, run_id, stage)
            })?)
        })
    }

    /// The checkpoint the savepoint `name` pins; `not-found` when there is none.
    pub fn get_savepoint(
        &mut self,
        run_id: &str,
        stage: &str,
        name: &str,
    ) -> Result<Checkpoint, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Savepoint, || {
            answer(self.instance.call("checkpointer.get-savepoint", |g, s| {
                g.checkpointer()
                    .call_get_savepoint(s, handle, run_id, stage, name)
            })?)
        })
    }

    /// Resets (run-id, stage) to the savepoint `name` (position and state), as
    /// [`Checkpointer::reset`] does.
    pub fn restore_savepoint(
        &mut self,
        run_id: &str,
        stage: &str,
        name: &str,
        epoch: Option<u64>,
        at_ms: u64,
    ) -> Result<ResetReceipt, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Reset, || {
            answer(
                self.instance
                    .call("checkpointer.restore-savepoint", |g, s| {
                        g.checkpointer()
                            .call_restore_savepoint(s, handle, run_id, stage, name, epoch, at_ms)
                    })?,
            )
        })
    }

    /// Removes the savepoint `name`; false when there was none.
    pub fn delete_savepoint(
        &mut self,
        run_id: &str,
        stage: &str,
        name: &str,
    ) -> Result<bool, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Savepoint, || {
            answer(
                self.instance
                    .call("checkpointer.delete-savepoint", |g, s| {
                        g.checkpointer()
                            .call_delete_savepoint(s, handle, run_id, stage, name)
                    })?,
            )
        })
    }

    /// Every stage of the namespace (of one run, when given), with its latest position; a
    /// damaged latest is reported in its summary.
    pub fn list_stages(&mut self, run_id: Option<&str>) -> Result<Vec<StageSummary>, Error> {
        let handle = self.handle;
        self.metrics.call(Call::ListStages, || {
            answer(self.instance.call("checkpointer.list-stages", |g, s| {
                g.checkpointer().call_list_stages(s, handle, run_id)
            })?)
        })
    }

    /// Everything stored for (run-id, stage), byte for byte: the latest, the retained copies
    /// and the savepoints, each checked (`corrupt` when one is damaged). `ckpt copy` moves
    /// stages between stores with it and [`Checkpointer::import_stage`].
    pub fn export_stage(&mut self, run_id: &str, stage: &str) -> Result<StageExport, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Transfer, || {
            answer(self.instance.call("checkpointer.export-stage", |g, s| {
                g.checkpointer().call_export_stage(s, handle, run_id, stage)
            })?)
        })
    }

    /// Recreates an exported stage in this checkpointer's store and namespace as one
    /// conditional commit, or with `dry_run` says what that would do. Never overwrites a newer
    /// stage, one of a later epoch, or another savepoint of the same name; an older stage only
    /// with `replace_older` (see `import-stage` in the WIT for every refusal).
    pub fn import_stage(
        &mut self,
        exported: &StageExport,
        replace_older: bool,
        dry_run: bool,
    ) -> Result<ImportReceipt, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Transfer, || {
            answer(self.instance.call("checkpointer.import-stage", |g, s| {
                g.checkpointer()
                    .call_import_stage(s, handle, exported, replace_older, dry_run)
            })?)
        })
    }

    /// Removes every checkpoint of (run-id, stage) in one commit; returns how many entries
    /// were removed. Also forgets the stage's epoch.
    pub fn delete(&mut self, run_id: &str, stage: &str) -> Result<u32, Error> {
        let handle = self.handle;
        self.metrics.call(Call::Delete, || {
            answer(self.instance.call("checkpointer.delete", |g, s| {
                g.checkpointer().call_delete(s, handle, run_id, stage)
            })?)
        })
    }

    /// The size of this checkpointer's linear memory (its instance of the component), in
    /// bytes: what it costs beyond the host's own structures, bounded by
    /// [`RuntimeConfig::max_memory_bytes`](crate::RuntimeConfig::max_memory_bytes).
    pub fn linear_memory_bytes(&self) -> usize {
        self.instance.linear_memory_bytes()
    }

    /// Acks again the ids stored with the checkpoint a resume would start from: repairs a
    /// crash between a commit and its acks. Never writes.
    pub fn recover_acks(&mut self, run_id: &str, stage: &str) -> Result<AckOutcome, Error> {
        let handle = self.handle;
        self.metrics.call(Call::RecoverAcks, || {
            answer(self.instance.call("checkpointer.recover-acks", |g, s| {
                g.checkpointer().call_recover_acks(s, handle, run_id, stage)
            })?)
        })
    }

    /// Opens a driver for one (run-id, stage); the driver keeps this checkpointer (reach it
    /// with [`Driver::checkpointer`]). Fails like [`Checkpointer::resume_point`], and with
    /// `fenced` when `options.epoch` is below the stored one.
    pub fn open_driver(mut self, options: &DriverOptions) -> Result<Driver, Error> {
        let handle = self.handle;
        let instance = &mut self.instance;
        let driver = self
            .metrics
            .call(Call::OpenDriver, || {
                let driver = answer(instance.call("checkpointer.open-driver", |g, s| {
                    g.checkpointer().call_open_driver(s, handle, options)
                })?)?;
                // Where it resumed, for the resume and fallback counts: a copy the driver
                // holds, no storage I/O.
                let resumed = instance.call("driver.resumed-from", |g, s| {
                    g.driver().call_resumed_from(s, driver)
                })?;
                Ok(OpenedDriver { driver, resumed })
            })?
            .driver;
        Ok(Driver {
            checkpointer: self,
            handle: driver,
        })
    }
}

/// Turns processed messages into checkpoints by policy, acking each message once a durable
/// checkpoint covers it. Dropping it drops pending messages without a flush.
pub struct Driver {
    checkpointer: Checkpointer,
    handle: ResourceAny,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Driver {
    /// Where this driver resumed: read input from `point.watermark.offset`.
    pub fn resumed_from(&mut self) -> Result<Resume, Error> {
        let handle = self.handle;
        self.checkpointer
            .instance
            .call("driver.resumed-from", |g, s| {
                g.driver().call_resumed_from(s, handle)
            })
    }

    /// The sequence, epoch and watermark of the last durable checkpoint this driver knows.
    pub fn cursor(&mut self) -> Result<ResumePoint, Error> {
        let handle = self.handle;
        self.checkpointer
            .instance
            .call("driver.cursor", |g, s| g.driver().call_cursor(s, handle))
    }

    /// Records one processed message; writes a checkpoint when the policy says so. `now_ms`
    /// becomes the checkpoint's `at-ms`.
    pub fn record_processed(
        &mut self,
        message: &ProcessedMessage,
        now_ms: u64,
    ) -> Result<Progress, Error> {
        let handle = self.handle;
        let checkpointer = &mut self.checkpointer;
        checkpointer.metrics.call(Call::RecordProcessed, || {
            answer(
                checkpointer
                    .instance
                    .call("driver.record-processed", |g, s| {
                        g.driver().call_record_processed(s, handle, message, now_ms)
                    })?,
            )
        })
    }

    /// Records messages in order, as [`Driver::record_processed`] would, in one call. Stops at
    /// the first error; messages before it keep their effect.
    pub fn record_processed_batch(
        &mut self,
        messages: &[ProcessedMessage],
        now_ms: u64,
    ) -> Result<BatchProgress, Error> {
        let handle = self.handle;
        let checkpointer = &mut self.checkpointer;
        checkpointer.metrics.call(Call::RecordProcessedBatch, || {
            answer(
                checkpointer
                    .instance
                    .call("driver.record-processed-batch", |g, s| {
                        g.driver()
                            .call_record_processed_batch(s, handle, messages, now_ms)
                    })?,
            )
        })
    }

    /// What became of the acks that opening this driver sent again for the checkpoint it
    /// resumed from (ack recovery after a crash between a commit and its acks).
    pub fn recovered_acks(&mut self) -> Result<AckOutcome, Error> {
        let handle = self.handle;
        self.checkpointer
            .instance
            .call("driver.recovered-acks", |g, s| {
                g.driver().call_recovered_acks(s, handle)
            })
    }

    /// Takes a message before it is processed: `Admitted(ticket)` (process it, then
    /// [`Driver::complete`] the ticket), `Covered` (a redelivery of durable work: skip it; it
    /// was acked) or `Backpressure` (the in-flight cap: complete and flush earlier work first).
    pub fn begin(&mut self, message: &Message) -> Result<Admission, Error> {
        let handle = self.handle;
        let checkpointer = &mut self.checkpointer;
        checkpointer.metrics.call(Call::Begin, || {
            answer(checkpointer.instance.call("driver.begin", |g, s| {
                g.driver().call_begin(s, handle, message)
            })?)
        })
    }

    /// Marks a taken message done, in any order. Returns the tickets released (their input's
    /// completed prefix, oldest first: apply their effects in that order) and whether a
    /// checkpoint is due. Never does I/O.
    pub fn complete(&mut self, ticket: u64) -> Result<Completion, Error> {
        let handle = self.handle;
        let checkpointer = &mut self.checkpointer;
        checkpointer.metrics.call(Call::Complete, || {
            answer(checkpointer.instance.call("driver.complete", |g, s| {
                g.driver().call_complete(s, handle, ticket)
            })?)
        })
    }

    /// Writes a checkpoint covering every released message, carrying `state` (or, when `None`,
    /// the last state given, or the resumed checkpoint's), then acks them. `Pending(0)` and no
    /// storage call when there is nothing new.
    pub fn flush(&mut self, state: Option<&StageState>, now_ms: u64) -> Result<Progress, Error> {
        let handle = self.handle;
        let checkpointer = &mut self.checkpointer;
        checkpointer.metrics.call(Call::Flush, || {
            answer(checkpointer.instance.call("driver.flush", |g, s| {
                g.driver().call_flush(s, handle, state, now_ms)
            })?)
        })
    }

    /// A copy of the driver's recent events.
    pub fn changelog(&mut self) -> Result<Changelog, Error> {
        let handle = self.handle;
        self.checkpointer.instance.call("driver.changelog", |g, s| {
            g.driver().call_changelog(s, handle)
        })
    }

    /// The checkpointer this driver writes through (same instance and store).
    pub fn checkpointer(&mut self) -> &mut Checkpointer {
        &mut self.checkpointer
    }
}

/// The checkpoint binary format, run by the component: encode, decode, validate, sign.
///
/// Has its own instance over an empty in-memory store; it does no I/O.
pub struct Codec {
    instance: Instance<CodecExports>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec on [`Runtime::shared`].
    pub fn new() -> Result<Codec, Error> {
        Self::new_in(shared_runtime()?)
    }

    /// A codec on `runtime`.
    pub fn new_in(runtime: &Runtime) -> Result<Codec, Error> {
        let instance =
            runtime.instantiate(Box::new(MemoryStorage::new()), Box::new(NullConsumer))?;
        Ok(Codec { instance })
    }

    /// The canonical bytes of `checkpoint`; `invalid` when [`Codec::validate`] would fail.
    pub fn encode(&mut self, checkpoint: &Checkpoint) -> Result<Vec<u8>, Error> {
        answer(
            self.instance
                .call("codec.encode", |g, s| g.call_encode(s, checkpoint))?,
        )
    }

    /// Decodes bytes made by `encode`; `corrupt` naming the damage otherwise.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Checkpoint, Error> {
        answer(
            self.instance
                .call("codec.decode", |g, s| g.call_decode(s, bytes))?,
        )
    }

    /// Checks the rules of a checkpoint; `invalid` naming the first broken one.
    pub fn validate(&mut self, checkpoint: &Checkpoint) -> Result<(), Error> {
        answer(
            self.instance
                .call("codec.validate", |g, s| g.call_validate(s, checkpoint))?,
        )
    }

    /// Lowercase hex SHA-256 over the canonical encodings of `checkpoints`, in order.
    pub fn chain_signature(&mut self, checkpoints: &[Checkpoint]) -> Result<String, Error> {
        answer(self.instance.call("codec.chain-signature", |g, s| {
            g.call_chain_signature(s, checkpoints)
        })?)
    }

    /// The resume point of `stage` among `checkpoints` (the highest sequence of that stage).
    pub fn resume_point_for_stage(
        &mut self,
        checkpoints: &[Checkpoint],
        stage: &str,
    ) -> Result<ResumePoint, Error> {
        answer(self.instance.call("codec.resume-point-for-stage", |g, s| {
            g.call_resume_point_for_stage(s, checkpoints, stage)
        })?)
    }

    /// The component's one line for people about `error` (what happened, what to do): the
    /// text every host shows. [`Error`]'s `Display` gives the same words for a
    /// [`Error::Checkpoint`] without a call (a test keeps the two equal).
    pub fn describe(&mut self, error: &crate::CheckpointError) -> Result<String, Error> {
        self.instance
            .call("codec.describe", |g, s| g.call_describe(s, error))
    }

    /// One stable line for people about a watermark (FORMAT.md "Labels").
    pub fn watermark_label(&mut self, watermark: &Watermark) -> Result<String, Error> {
        self.instance.call("codec.watermark-label", |g, s| {
            g.call_watermark_label(s, *watermark)
        })
    }

    /// One stable line for people about a checkpoint (FORMAT.md "Labels").
    pub fn checkpoint_label(&mut self, checkpoint: &Checkpoint) -> Result<String, Error> {
        self.instance.call("codec.checkpoint-label", |g, s| {
            g.call_checkpoint_label(s, checkpoint)
        })
    }

    /// One stable line for people about a resume point (FORMAT.md "Labels").
    pub fn resume_point_label(&mut self, point: &ResumePoint) -> Result<String, Error> {
        self.instance.call("codec.resume-point-label", |g, s| {
            g.call_resume_point_label(s, point)
        })
    }
}
