//! The component's glue: exports the logic through the generated bindings and supplies it the
//! host's imports. Built only for wasm32.

use crate::bindings::exports::pipeline::checkpoint::{checkpointer, codec};
use crate::bindings::pipeline::checkpoint::{consumer, storage};
use crate::model::{
    AckOutcome, Admission, BatchProgress, Changelog, Checkpoint, CommitOutcome, Completion,
    DriverOptions, Error, HistoryPage, HistoryRequest, ImportReceipt, Lookup, Message, Options,
    ProcessedMessage, Progress, Receipt, ResetReceipt, ResetRequest, Resume, ResumePoint,
    SavepointInfo, StageExport, StageState, StageSummary, StorageError, Watermark, Write,
};
use crate::{Consumer, Storage};
use std::cell::RefCell;

/// The host's `storage` import.
struct HostStorage;

impl Storage for HostStorage {
    fn get(&mut self, key: &str) -> Result<Lookup, StorageError> {
        storage::get(key)
    }
    fn commit(&mut self, writes: &[Write]) -> Result<CommitOutcome, StorageError> {
        storage::commit(writes)
    }
    fn list_keys(&mut self, prefix: &str) -> Result<Vec<String>, StorageError> {
        storage::list_keys(prefix)
    }
}

/// The host's `consumer` import.
struct HostConsumer;

impl Consumer for HostConsumer {
    fn ack(&mut self, message_ids: &[String]) -> Result<(), String> {
        consumer::ack(message_ids)
    }
}

type Logic = crate::Checkpointer<HostStorage, HostConsumer>;

struct Component;

// Resource methods take &self; the component is single-threaded and never re-entered during a
// call (imports cannot call back in), so RefCell borrows cannot overlap.
struct CheckpointerResource(RefCell<Logic>);
struct DriverResource(RefCell<crate::Driver<HostStorage, HostConsumer>>);

impl checkpointer::Guest for Component {
    type Checkpointer = CheckpointerResource;
    type Driver = DriverResource;
}

impl checkpointer::GuestCheckpointer for CheckpointerResource {
    fn open(
        options: Options,
        memory_limit_bytes: u64,
    ) -> Result<checkpointer::Checkpointer, Error> {
        let logic =
            Logic::open_with_memory_limit(options, memory_limit_bytes, HostStorage, HostConsumer)?;
        Ok(checkpointer::Checkpointer::new(CheckpointerResource(
            RefCell::new(logic),
        )))
    }
    fn write(&self, checkpoint: Checkpoint, batch: Vec<String>) -> Result<Receipt, Error> {
        self.0.borrow_mut().write_owned(checkpoint, &batch)
    }
    fn get(&self, run_id: String, stage: String) -> Result<Checkpoint, Error> {
        self.0.borrow_mut().get(&run_id, &stage)
    }
    fn resume_point(&self, run_id: String, stage: String) -> Result<Resume, Error> {
        self.0.borrow_mut().resume_point(&run_id, &stage)
    }
    fn history(&self, run_id: String, stage: String) -> Result<Vec<Checkpoint>, Error> {
        self.0.borrow_mut().history(&run_id, &stage)
    }
    fn recover_acks(&self, run_id: String, stage: String) -> Result<AckOutcome, Error> {
        self.0.borrow_mut().recover_acks(&run_id, &stage)
    }
    fn delete(&self, run_id: String, stage: String) -> Result<u32, Error> {
        self.0.borrow_mut().delete(&run_id, &stage)
    }
    fn get_at(&self, run_id: String, stage: String, sequence: u64) -> Result<Checkpoint, Error> {
        self.0.borrow_mut().get_at(&run_id, &stage, sequence)
    }
    fn history_page(
        &self,
        run_id: String,
        stage: String,
        request: HistoryRequest,
    ) -> Result<HistoryPage, Error> {
        self.0.borrow_mut().history_page(&run_id, &stage, &request)
    }
    fn reset(&self, request: ResetRequest) -> Result<ResetReceipt, Error> {
        self.0.borrow_mut().reset(request)
    }
    fn create_savepoint(
        &self,
        run_id: String,
        stage: String,
        name: String,
        sequence: Option<u64>,
    ) -> Result<SavepointInfo, Error> {
        self.0
            .borrow_mut()
            .create_savepoint(&run_id, &stage, &name, sequence)
    }
    fn list_savepoints(&self, run_id: String, stage: String) -> Result<Vec<SavepointInfo>, Error> {
        self.0.borrow_mut().list_savepoints(&run_id, &stage)
    }
    fn get_savepoint(
        &self,
        run_id: String,
        stage: String,
        name: String,
    ) -> Result<Checkpoint, Error> {
        self.0.borrow_mut().get_savepoint(&run_id, &stage, &name)
    }
    fn restore_savepoint(
        &self,
        run_id: String,
        stage: String,
        name: String,
        epoch: Option<u64>,
        at_ms: u64,
    ) -> Result<ResetReceipt, Error> {
        self.0
            .borrow_mut()
            .restore_savepoint(&run_id, &stage, &name, epoch, at_ms)
    }
    fn delete_savepoint(&self, run_id: String, stage: String, name: String) -> Result<bool, Error> {
        self.0.borrow_mut().delete_savepoint(&run_id, &stage, &name)
    }
    fn list_stages(&self, run_id: Option<String>) -> Result<Vec<StageSummary>, Error> {
        self.0.borrow_mut().list_stages(run_id.as_deref())
    }
    fn export_stage(&self, run_id: String, stage: String) -> Result<StageExport, Error> {
        self.0.borrow_mut().export_stage(&run_id, &stage)
    }
    fn import_stage(
        &self,
        export: StageExport,
        replace_older: bool,
        dry_run: bool,
    ) -> Result<ImportReceipt, Error> {
        self.0
            .borrow_mut()
            .import_stage(export, replace_older, dry_run)
    }
    fn open_driver(&self, options: DriverOptions) -> Result<checkpointer::Driver, Error> {
        let (options_now, limit) = {
            let this = self.0.borrow();
            (this.options().clone(), this.memory_limit())
        };
        let logic = Logic::open_with_memory_limit(options_now, limit, HostStorage, HostConsumer)?;
        let driver = crate::Driver::open(logic, options)?;
        Ok(checkpointer::Driver::new(DriverResource(RefCell::new(
            driver,
        ))))
    }
}

impl checkpointer::GuestDriver for DriverResource {
    fn resumed_from(&self) -> Resume {
        self.0.borrow().resumed_from().clone()
    }
    fn recovered_acks(&self) -> AckOutcome {
        self.0.borrow().recovered_acks().clone()
    }
    fn cursor(&self) -> ResumePoint {
        self.0.borrow().cursor().clone()
    }
    fn record_processed(&self, message: ProcessedMessage, now_ms: u64) -> Result<Progress, Error> {
        self.0.borrow_mut().record_processed(message, now_ms)
    }
    fn record_processed_batch(
        &self,
        messages: Vec<ProcessedMessage>,
        now_ms: u64,
    ) -> Result<BatchProgress, Error> {
        self.0.borrow_mut().record_processed_batch(messages, now_ms)
    }
    fn begin(&self, message: Message) -> Result<Admission, Error> {
        self.0.borrow_mut().begin(message)
    }
    fn complete(&self, ticket: u64) -> Result<Completion, Error> {
        self.0.borrow_mut().complete(ticket)
    }
    fn flush(&self, state: Option<StageState>, now_ms: u64) -> Result<Progress, Error> {
        self.0.borrow_mut().flush(state, now_ms)
    }
    fn changelog(&self) -> Changelog {
        self.0.borrow().changelog()
    }
}

impl codec::Guest for Component {
    fn encode(checkpoint: Checkpoint) -> Result<Vec<u8>, Error> {
        crate::codec::encode(&checkpoint)
    }
    fn decode(bytes: Vec<u8>) -> Result<Checkpoint, Error> {
        crate::codec::decode(&bytes).map_err(Error::Corrupt)
    }
    fn validate(checkpoint: Checkpoint) -> Result<(), Error> {
        crate::validate::validate(&checkpoint)
    }
    fn chain_signature(checkpoints: Vec<Checkpoint>) -> Result<String, Error> {
        crate::codec::chain_signature(&checkpoints)
    }
    fn resume_point_for_stage(
        checkpoints: Vec<Checkpoint>,
        stage: String,
    ) -> Result<ResumePoint, Error> {
        crate::codec::resume_point_for_stage(&checkpoints, &stage)
    }
    fn describe(error: Error) -> String {
        crate::errors::describe(&error)
    }
    fn watermark_label(watermark: Watermark) -> String {
        crate::labels::watermark_label(&watermark)
    }
    fn checkpoint_label(checkpoint: Checkpoint) -> String {
        crate::labels::checkpoint_label(&checkpoint)
    }
    fn resume_point_label(point: ResumePoint) -> String {
        crate::labels::resume_point_label(&point)
    }
}

crate::bindings::export!(Component with_types_in crate::bindings);
