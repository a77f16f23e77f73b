//! `ckpt demo`: a pipeline that is killed at random and restarted, with every ack checked
//! against what is durable on disk.
//!
//! A `Source` of N messages feeds a `Worker` (a driver checkpointing every `--batch` messages
//! into SQLite). At seeded random offsets the worker is dropped without a flush, mid-batch, and
//! a new one is opened on a fresh connection; it resumes from `resumed_from()`, so the messages
//! after the last checkpoint are delivered again. The `Verifier` is the consumer: at each ack it
//! reads the durable checkpoint through its own connection. The `Report` says what happened.

mod metrics;
mod report;
mod source;
mod stream;
mod verifier;
mod worker;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use checkpoint_guest::keys::StageKeys;
use checkpoint_host::{
    Checkpointer, DriverOptions, OverflowPolicy, Policy, Progress, consumer::NullConsumer,
};
use clap::{Args, value_parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::commands::now_ms;
use super::output::Output;
use super::{GlobalArgs, fail, open_store};
use report::Report;
use source::Source;
use verifier::{Progression, Verifier};
use worker::Worker;

/// The demo keeps fewer checkpoints than the CLI default: enough to fall back, small to prune.
const DEMO_MAX_RETAINED: u32 = 4;
/// Messages per `record_processed_batch` call: few wasm calls, several checkpoints per call.
const CHUNK: u64 = 500;
const STAGE: &str = "transform";
const EPOCH: u64 = 1;

/// `ckpt demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Messages in the synthetic source.
    #[arg(long, default_value_t = 100_000, value_parser = value_parser!(u64).range(1..))]
    messages: u64,
    /// Where the SQLite store goes [default: ./ckpt-data/demo-<UTC timestamp>].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Checkpoint every this many messages (policy per-batch).
    #[arg(long, default_value_t = 100, value_parser = value_parser!(u32).range(1..))]
    batch: u32,
    /// Average number of messages between two crashes [default: messages / 20].
    #[arg(long, value_name = "N", value_parser = value_parser!(u64).range(1..))]
    crash_every_avg: Option<u64>,
    /// Seed of the crash schedule [default: random, printed in the report].
    #[arg(long)]
    seed: Option<u64>,
    /// Read a real Redis stream instead of the synthetic source:
    /// `redis-stream://HOST:PORT[/DB][?partitions=N&group=NAME&stream=NAME]`. The demo adds
    /// `--messages` entries to new streams and reads them through a consumer group.
    #[arg(long, value_name = "URL")]
    source: Option<String>,
    /// Serve the checkpointers' metrics (docs/metrics.md) in Prometheus text format over HTTP
    /// on this address, such as `127.0.0.1:9464`, while the demo runs.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// With --metrics: after the report, keep serving until standard input has a line or
    /// ends, so that the final values can be scraped.
    #[arg(long, requires = "metrics")]
    metrics_hold: bool,
}

pub fn run(global: &GlobalArgs, out: &Output, args: DemoArgs) -> Result<()> {
    let Some(addr) = args.metrics else {
        return run_demo(global, out, args);
    };
    metrics::serve(addr, out)?;
    let hold = args.metrics_hold;
    let result = run_demo(global, out, args);
    if hold {
        metrics::hold(addr, out);
    }
    result
}

fn run_demo(global: &GlobalArgs, out: &Output, args: DemoArgs) -> Result<()> {
    if let Some(url) = &args.source {
        let source = stream::parse_source(url).map_err(|e| fail(2, format!("{e:#}")))?;
        return stream::run(global, out, &args, &source);
    }
    let started = Instant::now();
    let (store, db_path) = demo_store(global, &args)?;
    let options = global.options(DEMO_MAX_RETAINED);
    let run_id = format!("demo-{}", now_ms());
    let driver_options = DriverOptions {
        run_id: run_id.clone(),
        stage: STAGE.to_owned(),
        epoch: EPOCH,
        policy: Policy::PerBatch(args.batch),
        changelog_capacity: 0,
        overflow: OverflowPolicy::DropNew,
        // The most the component allows: a larger --batch is refused by it, with the reason.
        max_in_flight: 4096,
    };
    let source = Source::new(args.messages);
    let crash_every_avg = args.crash_every_avg.unwrap_or((args.messages / 20).max(1));
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut crash_points = crash_schedule(
        &mut StdRng::seed_from_u64(seed),
        args.messages,
        crash_every_avg,
    )
    .into_iter();
    let mut next_crash = crash_points.next();

    let latest_key = StageKeys::new(&options.namespace, &run_id, STAGE).latest();
    let verifier = Verifier::open(&store, latest_key, args.messages)?;
    let mut progression = Progression::default();
    let mut deliveries = vec![0u32; usize::try_from(args.messages).context("too many messages")?];
    let mut crashes = 0u64;
    let bar = progress_bar(out, args.messages);

    let start =
        |verifier: &Verifier| Worker::start(&store, &options, &driver_options, verifier.consumer());
    let mut worker = start(&verifier)?;
    progression.restarted(worker.resumed());
    let mut position = worker.resume_offset();
    while position < source.len() {
        // Only a resume point beyond a crash point could skip one; Progression reports that.
        while next_crash.is_some_and(|at| at <= position) {
            next_crash = crash_points.next();
        }
        let stop = next_crash.unwrap_or(source.len()).min(position + CHUNK);
        let messages = source.read(position, stop);
        for message in &messages {
            deliveries[index(message.next_offset - 1)] += 1;
        }
        let progress = worker.process(&messages, now_ms())?;
        progression.receipts(&progress.checkpoints);
        progression.cursor(&worker.cursor()?);
        position = stop;
        bar.set_position(bar.position().max(position));

        if Some(position) == next_crash {
            // Killed mid-batch: up to batch-1 processed messages were never checkpointed.
            worker.crash();
            crashes += 1;
            next_crash = crash_points.next();
            bar.set_message(format!("crashes {crashes}"));
            worker = start(&verifier).context("restarting after a crash")?;
            progression.restarted(worker.resumed());
            position = worker.resume_offset();
        }
    }
    let (last, cursor) = worker.finish(now_ms())?;
    if let Progress::Checkpointed(receipt) = last {
        progression.receipts(&[receipt]);
    }
    progression.cursor(&cursor);
    bar.finish_and_clear();

    // Read the end state back on connections the worker never used.
    let final_offset = verifier.durable_latest()?.map(|c| c.watermark.offset);
    let mut reader = Checkpointer::open(open_store(&store)?, Box::new(NullConsumer), &options)
        .context("opening a checkpointer to read the history")?;
    reader.set_metrics_store(checkpoint_host::metrics::store_kind(&store));
    let history = reader
        .history(&run_id, STAGE)
        .context("reading the final history")?;
    progression.history(&history);
    let history_signature = verifier.chain_signature(&history)?;

    let elapsed = started.elapsed().as_secs_f64();
    let acks = verifier.summary();
    let processed: u64 = deliveries.iter().map(|&n| u64::from(n)).sum();
    let mut report = Report {
        run_id,
        store,
        db_path,
        seed,
        messages: args.messages,
        batch: args.batch,
        max_retained: options.max_retained,
        crash_every_avg,
        crashes,
        processed,
        redeliveries: processed - deliveries.iter().filter(|&&n| n > 0).count() as u64,
        checkpoints: progression.checkpoints,
        replayed: progression.replayed,
        acks: acks.acks,
        ack_calls: acks.ack_calls,
        acked_messages: acks.acked_messages,
        unacked: acks.unacked,
        ack_violations: acks.violations,
        ack_violation_examples: acks.examples,
        ack_failures: progression.ack_failures,
        regressions: progression.regressions,
        regression_examples: progression.examples,
        final_offset,
        history_len: history.len(),
        history_signature,
        elapsed_s: elapsed,
        messages_per_s: args.messages as f64 / elapsed.max(f64::EPSILON),
        ok: false,
    };
    report.ok = report.holds();
    out.emit(&report, || report.human())?;
    if report.ok {
        Ok(())
    } else {
        Err(fail(
            1,
            format!("demo verification failed: {}", report.failures().join("; ")),
        ))
    }
}

fn index(offset: u64) -> usize {
    // Offsets come from `Source`, which only makes offsets below its length (a usize).
    usize::try_from(offset).unwrap_or(usize::MAX)
}

/// The store URL and, for SQLite, the file: `--store` when given on the command line (not
/// $CKPT_STORE: the demo should not write into a store someone else configured), else a new
/// SQLite file under the data directory.
fn demo_store(global: &GlobalArgs, args: &DemoArgs) -> Result<(String, Option<String>)> {
    let url = match &global.store {
        Some(url) => url.clone(),
        None => {
            let dir = args.data_dir.clone().unwrap_or_else(|| {
                PathBuf::from("ckpt-data").join(format!("demo-{}", utc_stamp(SystemTime::now())))
            });
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating the data directory {}", dir.display()))?;
            format!("sqlite:{}", dir.join("checkpoints.db").display())
        }
    };
    if url.starts_with("memory:") {
        // A restart opens a new connection, and a new memory store starts empty.
        return Err(fail(
            2,
            "the demo restarts its worker on a fresh connection, so it needs a persistent store such as sqlite:PATH",
        ));
    }
    let db_path = checkpoint_host::storage::sqlite_file(&url)?.map(str::to_owned);
    Ok((url, db_path))
}

/// Absolute offsets at which the worker dies, increasing, gaps uniform in 1 ..= 2*avg-1 (mean
/// avg). Each is used once, so a restart that resumes below it does not die there again and
/// the run always ends.
fn crash_schedule(rng: &mut StdRng, messages: u64, avg: u64) -> Vec<u64> {
    let mut points = Vec::new();
    let mut at = 0u64;
    loop {
        at =
            at.saturating_add(rng.random_range(1..=avg.saturating_mul(2).saturating_sub(1).max(1)));
        if at >= messages {
            return points;
        }
        points.push(at);
    }
}

/// A bar on stderr, only for a person watching: hidden for --json and when stderr is no terminal.
fn progress_bar(out: &Output, messages: u64) -> ProgressBar {
    if out.is_json() || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(messages), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {pos}/{len} offsets, eta {eta}, {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("crashes 0");
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `YYYYMMDD-HHMMSS` in UTC, for directory names (no date crate needed for this one use).
fn utc_stamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamp_formats_a_known_instant() {
        let instant = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29 12:34:56 UTC
        assert_eq!(utc_stamp(instant), "20240229-123456");
    }

    #[test]
    fn crash_schedule_is_increasing_within_the_run_and_seeded() {
        let points = crash_schedule(&mut StdRng::seed_from_u64(7), 10_000, 500);
        assert!(points.windows(2).all(|w| w[0] < w[1]));
        assert!(points.iter().all(|&p| p > 0 && p < 10_000));
        assert_eq!(
            points,
            crash_schedule(&mut StdRng::seed_from_u64(7), 10_000, 500)
        );
        assert!(
            (10..=30).contains(&points.len()),
            "{} crashes",
            points.len()
        );
    }
}
