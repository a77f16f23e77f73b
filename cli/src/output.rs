//! Printing: one JSON document on stdout with `--json`, short text otherwise; errors on stderr.

use std::fmt::Write as _;

use checkpoint_host::{
    Checkpoint, CheckpointError, Corruption, Error, Resume, ResumeOrigin, corruption_kind_name,
};
use serde::Serialize;
use serde_json::json;

/// Where a command's result goes and in which shape.
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints `doc` as JSON, or the text `human` builds.
    pub fn emit<T: Serialize>(
        &self,
        doc: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(doc)?);
        } else {
            let text = human();
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        }
        Ok(())
    }

    /// Reports a failed command on stderr.
    pub fn error(&self, err: &anyhow::Error, code: u8) {
        let message = error_message(err);
        if self.json {
            let detail = checkpoint_error(err).and_then(|e| match e {
                Error::Checkpoint(e) => serde_json::to_value(e).ok(),
                Error::Runtime(_) => None,
            });
            let doc = json!({ "error": {
                "exit_code": code,
                "kind": checkpoint_error(err).map_or("error", error_kind),
                "message": message,
                "detail": detail,
            }});
            eprintln!("{doc}");
        } else {
            eprintln!("error: {message}");
        }
    }
}

/// The component error somewhere in `err`'s chain, if any.
pub fn checkpoint_error(err: &anyhow::Error) -> Option<&Error> {
    err.chain().find_map(|cause| cause.downcast_ref::<Error>())
}

/// The contexts of `err`, then the error itself: the library words component errors for
/// people, with what to do about them.
fn error_message(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

/// The WIT name of an error case, as exit codes and JSON name it.
pub fn error_kind(err: &Error) -> &'static str {
    match err {
        Error::Runtime(_) => "runtime",
        Error::Checkpoint(e) => match e {
            CheckpointError::Invalid(_) => "invalid",
            CheckpointError::Regression(_) => "regression",
            CheckpointError::Fenced(_) => "fenced",
            CheckpointError::Conflict(_) => "conflict",
            CheckpointError::NotFound => "not-found",
            CheckpointError::Corrupt(_) => "corrupt",
            CheckpointError::Storage(_) => "storage",
            CheckpointError::TooLarge(_) => "too-large",
            CheckpointError::BrokenStore(_) => "broken-store",
        },
    }
}

/// One line about a corruption: kind, key and detail.
pub fn describe_corruption(c: &Corruption) -> String {
    let mut text = format!("corrupt ({})", corruption_kind_name(c.kind));
    if !c.key.is_empty() {
        let _ = write!(text, " at {}", c.key);
    }
    if !c.detail.is_empty() {
        let _ = write!(text, ": {}", c.detail);
    }
    text
}

/// A few lines that show a checkpoint.
pub fn checkpoint_text(c: &Checkpoint) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "run-id           {}", c.run_id);
    let _ = writeln!(text, "stage            {}", c.stage);
    let _ = writeln!(text, "sequence         {}", c.sequence);
    let _ = writeln!(text, "epoch            {}", c.epoch);
    let _ = writeln!(text, "offset           {}", c.watermark.offset);
    let _ = writeln!(text, "event-time-ms    {}", c.watermark.event_time_ms);
    let _ = writeln!(text, "at-ms            {}", c.at_ms);
    if !c.idempotency_key.is_empty() {
        let _ = writeln!(text, "idempotency-key  {}", c.idempotency_key);
    }
    for s in &c.sources {
        let _ = writeln!(
            text,
            "source           {}: sequence {}, offset {}, event-time-ms {}",
            s.name, s.sequence, s.watermark.offset, s.watermark.event_time_ms
        );
    }
    for s in &c.sinks {
        let _ = writeln!(text, "sink             {}: position {}", s.name, s.position);
    }
    for o in &c.operator_states {
        let _ = writeln!(text, "operator-state   {}: {} bytes", o.name, o.state.len());
    }
    text
}

/// One line (or a few, after a fallback) about a resume point.
pub fn resume_text(r: &Resume) -> String {
    let p = &r.point;
    let mut text = format!(
        "resume {}/{} at offset {} (event-time-ms {}, sequence {}, epoch {})",
        p.run_id, p.stage, p.watermark.offset, p.watermark.event_time_ms, p.sequence, p.epoch
    );
    match &r.origin {
        ResumeOrigin::Latest => text.push_str(" from the latest checkpoint\n"),
        ResumeOrigin::Fresh => text.push_str(": nothing stored, start from the beginning\n"),
        ResumeOrigin::Fallback(f) => {
            let _ = writeln!(
                text,
                " from a retained copy, skipping {} damaged entr{} (repair or delete them):",
                f.skipped.len(),
                if f.skipped.len() == 1 { "y" } else { "ies" }
            );
            for c in &f.skipped {
                let _ = writeln!(text, "  skipped: {}", describe_corruption(c));
            }
        }
    }
    text
}
