//! What the demo did and whether it held, as JSON or a short text.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub run_id: String,
    pub store: String,
    /// The SQLite file, when the store is one.
    pub db_path: Option<String>,
    pub seed: u64,
    pub messages: u64,
    pub batch: u32,
    pub max_retained: u32,
    pub crash_every_avg: u64,
    /// Worker crashes (driver dropped without a flush) and restarts.
    pub crashes: u64,
    /// Messages handed to the worker, redeliveries included.
    pub processed: u64,
    /// Deliveries beyond the first of a message: the price of each crash.
    pub redeliveries: u64,
    pub checkpoints: u64,
    pub replayed: u64,
    /// Message ids acked, repeats included.
    pub acks: u64,
    pub ack_calls: u64,
    pub acked_messages: u64,
    pub unacked: u64,
    /// Acks that came before a durable checkpoint covering them.
    pub ack_violations: u64,
    pub ack_violation_examples: Vec<String>,
    pub ack_failures: u64,
    /// Sequences, offsets or resume points that went back.
    pub regressions: u64,
    pub regression_examples: Vec<String>,
    /// Offset of the durable latest checkpoint at the end, read on a separate connection.
    pub final_offset: Option<u64>,
    pub history_len: usize,
    pub history_signature: String,
    pub elapsed_s: f64,
    pub messages_per_s: f64,
    pub ok: bool,
}

impl Report {
    /// Every check the demo makes.
    pub fn holds(&self) -> bool {
        self.ack_violations == 0
            && self.regressions == 0
            && self.ack_failures == 0
            && self.unacked == 0
            && self.final_offset == Some(self.messages)
    }

    /// The checks that failed, in words.
    pub fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if self.ack_violations > 0 {
            failed.push(format!(
                "{} ack(s) before a covering durable checkpoint",
                self.ack_violations
            ));
        }
        if self.regressions > 0 {
            failed.push(format!("{} regression(s)", self.regressions));
        }
        if self.ack_failures > 0 {
            failed.push(format!("{} failed ack call(s)", self.ack_failures));
        }
        if self.unacked > 0 {
            failed.push(format!("{} message(s) never acked", self.unacked));
        }
        if self.final_offset != Some(self.messages) {
            failed.push(format!(
                "final offset {:?}, expected {}",
                self.final_offset, self.messages
            ));
        }
        failed
    }

    pub fn human(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "demo {}: {} messages, checkpoint every {}, max-retained {}, seed {}",
            self.run_id, self.messages, self.batch, self.max_retained, self.seed
        );
        let _ = writeln!(
            t,
            "  crashes        {} (about one every {} messages)",
            self.crashes, self.crash_every_avg
        );
        let _ = writeln!(
            t,
            "  checkpoints    {} ({} replayed)",
            self.checkpoints, self.replayed
        );
        let _ = writeln!(
            t,
            "  redeliveries   {} ({} deliveries for {} messages)",
            self.redeliveries, self.processed, self.messages
        );
        let _ = writeln!(
            t,
            "  acks           {} ids in {} calls; {} of {} messages acked",
            self.acks, self.ack_calls, self.acked_messages, self.messages
        );
        let _ = writeln!(
            t,
            "  violations     {} (every ack checked against the durable checkpoint on a separate connection)",
            self.ack_violations
        );
        let _ = writeln!(
            t,
            "  regressions    {} (receipts, cursors, resume points, history of {})",
            self.regressions, self.history_len
        );
        let final_offset = self
            .final_offset
            .map_or_else(|| "none".to_owned(), |o| o.to_string());
        let _ = writeln!(t, "  final offset   {final_offset} of {}", self.messages);
        let _ = writeln!(
            t,
            "  elapsed        {:.2} s, {:.0} messages/s",
            self.elapsed_s, self.messages_per_s
        );
        let _ = writeln!(
            t,
            "  data           {}",
            self.db_path
                .clone()
                .unwrap_or_else(|| checkpoint_host::storage::redact_url(&self.store))
        );
        for example in self
            .ack_violation_examples
            .iter()
            .chain(&self.regression_examples)
        {
            let _ = writeln!(t, "  ! {example}");
        }
        if self.ok {
            t.push_str(
                "ok: every ack followed a durable checkpoint covering it; nothing went back\n",
            );
        } else {
            let _ = writeln!(t, "FAILED: {}", self.failures().join("; "));
        }
        t
    }
}
