//! `ckpt demo --metrics ADDR`: the host's metrics (see `docs/metrics.md`) served over HTTP in
//! Prometheus text format, by `metrics-exporter-prometheus` and its own listener thread.

use std::io::BufRead as _;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::output::Output;

/// Upper bounds of the latency buckets, in seconds: a write to memory takes microseconds, a
/// commit to a remote server milliseconds, a stalled one up to the 10 s call deadline.
const SECONDS_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the checkpoint size buckets, in bytes: 64 B to 64 MiB, by fours.
const BYTES_BUCKETS: &[f64] = &[
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Installs the Prometheus recorder and starts its HTTP listener on `addr` (any path answers
/// the metrics). Must run before the demo opens a checkpointer: handles bind to the recorder
/// installed when they are first used.
pub fn serve(addr: SocketAddr, out: &Output) -> Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        // Histograms as Prometheus histograms (buckets), not summaries, so they aggregate.
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(checkpoint_host::metrics::CHECKPOINT_SIZE_BYTES.to_owned()),
                BYTES_BUCKETS,
            )
        })
        .and_then(PrometheusBuilder::install)
        .with_context(|| format!("serving metrics on {addr}"))?;
    checkpoint_host::metrics::describe();
    if !out.is_json() {
        eprintln!("serving metrics on http://{addr}/metrics");
    }
    Ok(())
}

/// Keeps the process (and so the listener) alive after the report until standard input has a
/// line or ends, so that a scraper can read the final values.
pub fn hold(addr: SocketAddr, out: &Output) {
    if !out.is_json() {
        eprintln!(
            "still serving metrics on http://{addr}/metrics; press Enter (or close standard \
             input) to exit"
        );
    }
    // The report must be out before the wait (stdout is only line-buffered).
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut line = String::new();
    // Either way the wait is over: a line, the end of input, or an input that cannot be read.
    let _ = std::io::stdin().lock().read_line(&mut line);
}
