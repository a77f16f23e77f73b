//! The conformance suite's language-neutral half (tests/conformance/README.md).
//!
//! - [`expand_dir`]: the case files, validated and turned into one document of fully explicit
//!   cases (defaults filled, generated families expanded, vectors resolved, integers as decimal
//!   strings; each step says what a runner records);
//! - [`check`]: the transcripts that runners wrote, one per host, backend and case, matched
//!   against the cases' expectations (the README's "Matching") and compared across hosts;
//! - [`wit`]: the WIT JSON forms of the contract's values, for the Rust runner and the expander;
//! - [`runner`]: the rest of what the Rust runner needs besides its op calls.
//!
//! A runner (`host/tests/conformance.rs`, `python/conformance_runner.py`,
//! `node/test/conformance.mjs`) reads the expanded document, plays each case on each of its
//! backends and writes transcripts; it never interprets an expectation. The `conformance`
//! binary of this crate runs both halves from the command line (`scripts/conformance.sh`).

mod check;
mod expand;
mod matching;
pub mod runner;
pub mod wit;

pub use check::{CheckOptions, HostSummary, Report, canonical, check, first_difference};
pub use expand::{FORMAT, expand, expand_dir};
pub use matching::{Mismatch, matches};

#[cfg(test)]
mod tests;
