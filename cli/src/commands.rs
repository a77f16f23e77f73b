//! The commands that call one checkpointer method each, and `inspect`.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use checkpoint_host::{
    AckOutcome, Checkpoint, Checkpointer, Codec, Consumer, Watermark, consumer::NullConsumer,
};
use clap::Args;
use serde_json::json;

use super::output::{Output, checkpoint_text, resume_text};
use super::{DEFAULT_MAX_RETAINED, GlobalArgs, open_store};

/// Selects one stage of one run.
#[derive(Debug, Args)]
pub struct StageArgs {
    /// The pipeline run.
    #[arg(long)]
    pub run: String,
    /// The stage within the run.
    #[arg(long)]
    pub stage: String,
}

/// `ckpt get`: the latest, or one retained checkpoint by its sequence.
#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    stage: StageArgs,
    /// Read the retained checkpoint with this sequence instead of the latest (exit 3 when
    /// that sequence is not retained).
    #[arg(long)]
    sequence: Option<u64>,
}

/// `ckpt write`: the checkpoint comes from the flags, or whole from `--from-json`.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Read the checkpoint from this JSON file (`-`: stdin), in the shape `ckpt get --json` prints.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "run", "stage", "sequence", "epoch", "offset", "event_time_ms", "idempotency_key", "at_ms",
    ])]
    from_json: Option<PathBuf>,
    /// The pipeline run.
    #[arg(long, required_unless_present = "from_json")]
    run: Option<String>,
    /// The stage within the run.
    #[arg(long, required_unless_present = "from_json")]
    stage: Option<String>,
    /// Checkpoint number; at least 1 and growing with every write.
    #[arg(long, required_unless_present = "from_json")]
    sequence: Option<u64>,
    /// Ownership epoch of this writer [default: 0].
    #[arg(long)]
    epoch: Option<u64>,
    /// Next offset to read [default: 0].
    #[arg(long)]
    offset: Option<u64>,
    /// Event time reached, in ms since the Unix epoch [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    event_time_ms: Option<i64>,
    /// Key for downstream deduplication [default: empty].
    #[arg(long)]
    idempotency_key: Option<String>,
    /// When the checkpoint was taken, in ms since the Unix epoch [default: now].
    #[arg(long)]
    at_ms: Option<u64>,
    /// Message ids to ack once the checkpoint is durable.
    #[arg(long = "ack", value_name = "ID", num_args = 1..)]
    ack: Vec<String>,
}

impl WriteArgs {
    fn checkpoint(&self) -> Result<Checkpoint> {
        if let Some(path) = &self.from_json {
            let text = read_input(path)?;
            return serde_json::from_slice(&text)
                .with_context(|| format!("reading a checkpoint from {}", path.display()));
        }
        // clap guarantees these when --from-json is absent.
        let missing = || anyhow::anyhow!("--run, --stage and --sequence are required");
        Ok(Checkpoint {
            run_id: self.run.clone().ok_or_else(missing)?,
            stage: self.stage.clone().ok_or_else(missing)?,
            sequence: self.sequence.ok_or_else(missing)?,
            epoch: self.epoch.unwrap_or(0),
            watermark: Watermark {
                offset: self.offset.unwrap_or(0),
                event_time_ms: self.event_time_ms.unwrap_or(0),
            },
            sources: Vec::new(),
            sinks: Vec::new(),
            operator_states: Vec::new(),
            idempotency_key: self.idempotency_key.clone().unwrap_or_default(),
            at_ms: self.at_ms.unwrap_or_else(now_ms),
        })
    }
}

/// `ckpt inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// File of raw checkpoint bytes; `-` reads stdin.
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading stdin")?;
        Ok(bytes)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

pub fn open_checkpointer(global: &GlobalArgs, consumer: Box<dyn Consumer>) -> Result<Checkpointer> {
    let url = global.store_url();
    let storage = open_store(&url)?;
    Checkpointer::open(storage, consumer, &global.options(DEFAULT_MAX_RETAINED))
        .context("opening the checkpointer")
}

/// Acks by printing: the ids appear once the checkpoint that covers them is durable.
struct PrintingConsumer {
    acked: Arc<Mutex<Vec<String>>>,
    echo: bool,
}

impl Consumer for PrintingConsumer {
    fn ack(&mut self, message_ids: Vec<String>) -> Result<(), String> {
        if self.echo {
            println!("acked {}", message_ids.join(" "));
        }
        self.acked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(message_ids);
        Ok(())
    }
}

pub fn write(global: &GlobalArgs, out: &Output, args: WriteArgs) -> Result<()> {
    let checkpoint = args.checkpoint()?;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let consumer = PrintingConsumer {
        acked: Arc::clone(&acked),
        echo: !out.is_json(),
    };
    let mut checkpointer = open_checkpointer(global, Box::new(consumer))?;
    let receipt = checkpointer
        .write(&checkpoint, &args.ack)
        .with_context(|| {
            format!(
                "writing {}/{} sequence {}",
                checkpoint.run_id, checkpoint.stage, checkpoint.sequence
            )
        })?;
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(PoisonError::into_inner));
    out.emit(&json!({ "receipt": receipt, "acked": acked }), || {
        let mut text = format!(
            "{} {}/{} sequence {} (version {}",
            if receipt.replayed {
                "replayed"
            } else {
                "wrote"
            },
            checkpoint.run_id,
            checkpoint.stage,
            receipt.sequence,
            receipt.version
        );
        if receipt.pruned > 0 {
            let _ = write!(text, ", pruned {}", receipt.pruned);
        }
        text.push(')');
        match &receipt.acks {
            AckOutcome::Acked(0) => {}
            AckOutcome::Acked(n) => {
                let _ = write!(text, "; acked {n} message(s)");
            }
            AckOutcome::Failed(m) => {
                let _ = write!(text, "; the checkpoint is durable but the acks failed: {m}");
            }
        }
        text
    })
}

pub fn get(global: &GlobalArgs, out: &Output, args: &GetArgs) -> Result<()> {
    let StageArgs { run, stage } = &args.stage;
    let mut checkpointer = open_checkpointer(global, Box::new(NullConsumer))?;
    let checkpoint = match args.sequence {
        None => checkpointer
            .get(run, stage)
            .with_context(|| format!("reading {run}/{stage}"))?,
        Some(sequence) => checkpointer
            .get_at(run, stage, sequence)
            .with_context(|| format!("reading {run}/{stage} sequence {sequence}"))?,
    };
    let label = if out.is_json() {
        String::new()
    } else {
        Codec::new()
            .and_then(|mut codec| codec.checkpoint_label(&checkpoint))
            .context("labelling the checkpoint")?
    };
    out.emit(&checkpoint, || {
        format!("{label}\n{}", checkpoint_text(&checkpoint))
    })
}

pub fn resume(global: &GlobalArgs, out: &Output, args: &StageArgs) -> Result<()> {
    let mut checkpointer = open_checkpointer(global, Box::new(NullConsumer))?;
    let resume = checkpointer
        .resume_point(&args.run, &args.stage)
        .with_context(|| format!("finding where {}/{} resumes", args.run, args.stage))?;
    out.emit(&resume, || resume_text(&resume))
}

pub fn history(global: &GlobalArgs, out: &Output, args: &StageArgs) -> Result<()> {
    let mut checkpointer = open_checkpointer(global, Box::new(NullConsumer))?;
    let checkpoints = checkpointer
        .history(&args.run, &args.stage)
        .with_context(|| format!("reading the history of {}/{}", args.run, args.stage))?;
    out.emit(&json!({ "checkpoints": checkpoints }), || {
        if checkpoints.is_empty() {
            return format!("no checkpoints for {}/{}", args.run, args.stage);
        }
        let mut text = format!(
            "{:>10} {:>6} {:>12} {:>15} {:>15}\n",
            "sequence", "epoch", "offset", "event-time-ms", "at-ms"
        );
        for c in &checkpoints {
            let _ = writeln!(
                text,
                "{:>10} {:>6} {:>12} {:>15} {:>15}",
                c.sequence, c.epoch, c.watermark.offset, c.watermark.event_time_ms, c.at_ms
            );
        }
        text
    })
}

pub fn delete(global: &GlobalArgs, out: &Output, args: &StageArgs) -> Result<()> {
    let mut checkpointer = open_checkpointer(global, Box::new(NullConsumer))?;
    let removed = checkpointer
        .delete(&args.run, &args.stage)
        .with_context(|| format!("deleting {}/{}", args.run, args.stage))?;
    out.emit(&json!({ "removed": removed }), || {
        format!("removed {removed} entries of {}/{}", args.run, args.stage)
    })
}

pub fn inspect(out: &Output, args: &InspectArgs) -> Result<()> {
    let bytes = read_input(&args.file)?;
    let mut codec = Codec::new().context("loading the checkpoint component")?;
    // The component's decoder checks magic, version, lengths and the CRC32C; we never parse here.
    let checkpoint = codec
        .decode(&bytes)
        .with_context(|| match args.file.to_str() {
            Some("-") => "decoding stdin".to_owned(),
            _ => format!("decoding {}", args.file.display()),
        })?;
    out.emit(&checkpoint, || {
        format!(
            "{} bytes, CRC ok\n{}",
            bytes.len(),
            checkpoint_text(&checkpoint)
        )
    })
}
