//! Test support for the checkpoint host, kept out of the library that users embed.
//!
//! - [`faults`]: wrappers that make a [`Storage`](checkpoint_host::Storage) or a
//!   [`Consumer`](checkpoint_host::Consumer) fail on a script, and the freezing crash store
//!   (`FreezingStorage`) that keeps only what was durable when a crash point is reached;
//! - [`power_loss`]: a SQLite VFS that loses every write not yet synced when the power goes,
//!   for machine-crash tests of the SQLite store;
//! - [`queue`]: an in-memory queue that redelivers every unacked message to a consumer that
//!   connects again, with partitions of offset-style and id-only messages;
//! - [`storage_contract`]: the `Storage` contract as executable checks, for every backend and
//!   for stores users write;
//! - [`servers`]: real PostgreSQL and Redis servers for tests, started by the repository's
//!   scripts;
//! - [`backends`]: every native store by name, fresh and empty, as the conformance runner uses
//!   them;
//! - [`conformance`]: the conformance suite's language-neutral half: expands the case files for
//!   every runner and checks the transcripts they write (also the `conformance` binary).

#![deny(missing_docs)]

pub mod backends;
pub mod conformance;
pub mod faults;
pub mod power_loss;
pub mod queue;
pub mod servers;
pub mod storage_contract;
