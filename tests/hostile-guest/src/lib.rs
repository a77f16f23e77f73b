//! A hostile checkpoint component: it exports `pipeline:checkpoint/checkpoint-component` like
//! the real guest, but misbehaves on command, so the host's sandbox can be shown to hold.
//!
//! The command is the `run-id` of the checkpoint given to `codec.validate` or `codec.encode`,
//! the UTF-8 text of the bytes given to `codec.decode`, or the `run-id` given to
//! `checkpointer.get`:
//!
//! | command  | what the guest does |
//! |----------|---------------------|
//! | `loop`   | spins forever (the host's call deadline must stop it) |
//! | `bomb`   | allocates 1 MiB after 1 MiB, touching every page (the memory limit must stop it) |
//! | `panic`  | panics (a trap: the host must survive it) |
//! | `files`  | lists its WASI preopens and reads `/etc/hostname` |
//! | `env`    | reads its environment variables and arguments |
//! | `socket` | creates a TCP socket and resolves `localhost` through `wasi:sockets` |
//! | other    | answers `Ok` (validate) or `invalid` |
//!
//! The probes report what they got back as `invalid { field: "probe:<command>", reason }`, so
//! a test reads the guest's own view of its authority.

#![allow(unsafe_code, missing_docs)]

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "checkpoint-component",
    });
}

use bindings::exports::pipeline::checkpoint::checkpointer::{
    self, AckOutcome, Admission, BatchProgress, Changelog, Completion, DriverOptions,
    HistoryPage, HistoryRequest, ImportReceipt, Message, Options, ProcessedMessage, Progress,
    Receipt, ResetReceipt, ResetRequest, Resume, SavepointInfo, StageExport, StageState,
    StageSummary,
};
use bindings::exports::pipeline::checkpoint::codec;
use bindings::pipeline::checkpoint::types::{
    Checkpoint, Error, InvalidInput, ResumePoint, Watermark,
};

fn invalid(field: &str, reason: String) -> Error {
    Error::Invalid(InvalidInput {
        field: field.to_owned(),
        reason,
    })
}

/// Runs `command`; returns only for the probes and unknown commands.
fn misbehave(command: &str) -> Result<(), Error> {
    match command {
        "loop" => {
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        "bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Filled, not only reserved, so no allocation can be optimised away.
                hoard.push(std::hint::black_box(vec![0xa5; 1 << 20]));
            }
        }
        "panic" => panic!("the hostile guest panics on command"),
        "files" => Err(invalid("probe:files", probe_files())),
        "env" => Err(invalid("probe:env", probe_env())),
        "socket" => Err(invalid("probe:socket", probe_socket())),
        _ => Ok(()),
    }
}

fn probe_files() -> String {
    let preopens = wasip2::filesystem::preopens::get_directories();
    let read = match std::fs::read_to_string("/etc/hostname") {
        Ok(text) => format!("read {} bytes", text.len()),
        Err(e) => format!("error: {e}"),
    };
    let listing = match std::fs::read_dir("/") {
        Ok(entries) => format!("listed {} entries", entries.count()),
        Err(e) => format!("error: {e}"),
    };
    format!(
        "preopens={}; read /etc/hostname: {read}; read_dir /: {listing}",
        preopens.len()
    )
}

fn probe_env() -> String {
    let vars: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    let args = std::env::args_os().count();
    let cwd = match std::env::current_dir() {
        Ok(dir) => dir.display().to_string(),
        Err(e) => format!("error: {e}"),
    };
    format!("vars={} {vars:?}; args={args}; cwd: {cwd}", vars.len())
}

fn probe_socket() -> String {
    use wasip2::sockets::network::IpAddressFamily;
    use wasip2::sockets::{instance_network, ip_name_lookup, tcp_create_socket};
    let tcp = match tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        Ok(_) => "created".to_owned(),
        Err(code) => format!("error: {code:?}"),
    };
    let network = instance_network::instance_network();
    let lookup = match ip_name_lookup::resolve_addresses(&network, "localhost") {
        Ok(_) => "started".to_owned(),
        Err(code) => format!("error: {code:?}"),
    };
    format!("create-tcp-socket: {tcp}; resolve-addresses localhost: {lookup}")
}

fn refuse<T>(what: &str) -> Result<T, Error> {
    Err(invalid(
        what,
        "the hostile guest does not implement it".to_owned(),
    ))
}

struct Component;

struct Hostile;

impl checkpointer::Guest for Component {
    type Checkpointer = Hostile;
    type Driver = Hostile;
}

impl checkpointer::GuestCheckpointer for Hostile {
    fn open(_options: Options, _memory_limit: u64) -> Result<checkpointer::Checkpointer, Error> {
        Ok(checkpointer::Checkpointer::new(Hostile))
    }
    fn write(&self, checkpoint: Checkpoint, _batch: Vec<String>) -> Result<Receipt, Error> {
        misbehave(&checkpoint.run_id)?;
        refuse("write")
    }
    fn get(&self, run_id: String, _stage: String) -> Result<Checkpoint, Error> {
        misbehave(&run_id)?;
        Err(Error::NotFound)
    }
    fn resume_point(&self, run_id: String, _stage: String) -> Result<Resume, Error> {
        misbehave(&run_id)?;
        refuse("resume-point")
    }
    fn history(&self, run_id: String, _stage: String) -> Result<Vec<Checkpoint>, Error> {
        misbehave(&run_id)?;
        Ok(Vec::new())
    }
    fn delete(&self, run_id: String, _stage: String) -> Result<u32, Error> {
        misbehave(&run_id)?;
        Ok(0)
    }
    fn recover_acks(&self, run_id: String, _stage: String) -> Result<AckOutcome, Error> {
        misbehave(&run_id)?;
        refuse("recover-acks")
    }
    fn open_driver(&self, _options: DriverOptions) -> Result<checkpointer::Driver, Error> {
        refuse("open-driver")
    }
    fn get_at(&self, run_id: String, _stage: String, _sequence: u64) -> Result<Checkpoint, Error> {
        misbehave(&run_id)?;
        Err(Error::NotFound)
    }
    fn history_page(
        &self,
        run_id: String,
        _stage: String,
        _request: HistoryRequest,
    ) -> Result<HistoryPage, Error> {
        misbehave(&run_id)?;
        refuse("history-page")
    }
    fn reset(&self, request: ResetRequest) -> Result<ResetReceipt, Error> {
        misbehave(&request.run_id)?;
        refuse("reset")
    }
    fn create_savepoint(
        &self,
        run_id: String,
        _stage: String,
        _name: String,
        _sequence: Option<u64>,
    ) -> Result<SavepointInfo, Error> {
        misbehave(&run_id)?;
        refuse("create-savepoint")
    }
    fn list_savepoints(&self, run_id: String, _stage: String) -> Result<Vec<SavepointInfo>, Error> {
        misbehave(&run_id)?;
        Ok(Vec::new())
    }
    fn get_savepoint(&self, run_id: String, _stage: String, _name: String) -> Result<Checkpoint, Error> {
        misbehave(&run_id)?;
        Err(Error::NotFound)
    }
    fn restore_savepoint(
        &self,
        run_id: String,
        _stage: String,
        _name: String,
        _epoch: Option<u64>,
        _at_ms: u64,
    ) -> Result<ResetReceipt, Error> {
        misbehave(&run_id)?;
        refuse("restore-savepoint")
    }
    fn delete_savepoint(&self, run_id: String, _stage: String, _name: String) -> Result<bool, Error> {
        misbehave(&run_id)?;
        Ok(false)
    }
    fn list_stages(&self, run_id: Option<String>) -> Result<Vec<StageSummary>, Error> {
        misbehave(run_id.as_deref().unwrap_or_default())?;
        Ok(Vec::new())
    }
    fn export_stage(&self, run_id: String, _stage: String) -> Result<StageExport, Error> {
        misbehave(&run_id)?;
        refuse("export-stage")
    }
    fn import_stage(&self, exported: StageExport, _: bool, _: bool) -> Result<ImportReceipt, Error> {
        misbehave(&exported.run_id)?;
        refuse("import-stage")
    }
}

// Never constructed: `open-driver` refuses. Its methods exist only to satisfy the world.
impl checkpointer::GuestDriver for Hostile {
    fn resumed_from(&self) -> Resume {
        unreachable!("no driver is ever opened")
    }
    fn recovered_acks(&self) -> AckOutcome {
        unreachable!("no driver is ever opened")
    }
    fn cursor(&self) -> ResumePoint {
        unreachable!("no driver is ever opened")
    }
    fn begin(&self, _message: Message) -> Result<Admission, Error> {
        refuse("begin")
    }
    fn complete(&self, _ticket: u64) -> Result<Completion, Error> {
        refuse("complete")
    }
    fn record_processed(
        &self,
        _message: ProcessedMessage,
        _now_ms: u64,
    ) -> Result<Progress, Error> {
        refuse("record-processed")
    }
    fn record_processed_batch(
        &self,
        _messages: Vec<ProcessedMessage>,
        _now_ms: u64,
    ) -> Result<BatchProgress, Error> {
        refuse("record-processed-batch")
    }
    fn flush(&self, _state: Option<StageState>, _now_ms: u64) -> Result<Progress, Error> {
        refuse("flush")
    }
    fn changelog(&self) -> Changelog {
        unreachable!("no driver is ever opened")
    }
}

impl codec::Guest for Component {
    fn encode(checkpoint: Checkpoint) -> Result<Vec<u8>, Error> {
        misbehave(&checkpoint.run_id)?;
        refuse("encode")
    }
    fn decode(bytes: Vec<u8>) -> Result<Checkpoint, Error> {
        misbehave(&String::from_utf8_lossy(&bytes))?;
        refuse("decode")
    }
    fn validate(checkpoint: Checkpoint) -> Result<(), Error> {
        misbehave(&checkpoint.run_id)
    }
    fn chain_signature(_checkpoints: Vec<Checkpoint>) -> Result<String, Error> {
        refuse("chain-signature")
    }
    fn resume_point_for_stage(
        _checkpoints: Vec<Checkpoint>,
        _stage: String,
    ) -> Result<ResumePoint, Error> {
        refuse("resume-point-for-stage")
    }
    fn describe(_error: Error) -> String {
        String::from("hostile component: describes nothing")
    }
    fn watermark_label(_watermark: Watermark) -> String {
        String::from("hostile component: labels nothing")
    }
    fn checkpoint_label(checkpoint: Checkpoint) -> String {
        checkpoint.run_id
    }
    fn resume_point_label(point: ResumePoint) -> String {
        point.run_id
    }
}

bindings::export!(Component with_types_in bindings);
