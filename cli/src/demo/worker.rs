//! The pipeline worker: a driver on its own store connection. Crashing it drops the driver
//! without a flush, as a killed process would; a restart opens everything afresh.

use anyhow::{Context, Result};
use checkpoint_host::{
    BatchProgress, Checkpointer, Consumer, Driver, DriverOptions, Options, ProcessedMessage,
    Progress, Resume, ResumePoint,
};

use crate::open_store;

pub struct Worker {
    driver: Driver,
    resumed: Resume,
}

impl Worker {
    /// Opens a new connection to `url`, a checkpointer and a driver, and reads where to resume.
    pub fn start(
        url: &str,
        options: &Options,
        driver_options: &DriverOptions,
        consumer: Box<dyn Consumer>,
    ) -> Result<Self> {
        let storage = open_store(url)?;
        let mut checkpointer =
            Checkpointer::open(storage, consumer, options).context("opening the checkpointer")?;
        checkpointer.set_metrics_store(checkpoint_host::metrics::store_kind(url));
        let mut driver = checkpointer
            .open_driver(driver_options)
            .context("opening the driver")?;
        let resumed = driver.resumed_from().context("reading the resume point")?;
        Ok(Self { driver, resumed })
    }

    /// Where this worker resumed.
    pub fn resumed(&self) -> &Resume {
        &self.resumed
    }

    /// The first offset this worker must read: everything below it is durably processed.
    pub fn resume_offset(&self) -> u64 {
        self.resumed.point.watermark.offset
    }

    /// Records processed messages; the driver checkpoints (and acks) every `batch` of them.
    pub fn process(&mut self, messages: &[ProcessedMessage], now_ms: u64) -> Result<BatchProgress> {
        self.driver
            .record_processed_batch(messages, now_ms)
            .context("recording processed messages")
    }

    /// The last durable checkpoint this worker knows.
    pub fn cursor(&mut self) -> Result<ResumePoint> {
        self.driver.cursor().context("reading the driver's cursor")
    }

    /// Dies on the spot: pending messages are neither checkpointed nor acked.
    pub fn crash(self) {
        drop(self.driver);
    }

    /// Checkpoints what is pending and stops; returns what the flush did and the final cursor.
    pub fn finish(mut self, now_ms: u64) -> Result<(Progress, ResumePoint)> {
        let progress = self
            .driver
            .flush(None, now_ms)
            .context("flushing the last messages")?;
        Ok((progress, self.cursor()?))
    }
}
