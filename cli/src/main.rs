//! `ckpt`: write, read, inspect and verify checkpoints, and run a crash-and-resume demo,
//! all through the checkpoint component.
//!
//! The `ckpt` command line. Every checkpoint rule lives in the component: these commands only
//! parse flags, open a store, call the library and print what comes back.

mod commands;
mod copy;
mod demo;
mod operator;
mod output;
mod verify;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use checkpoint_host::Options;
use clap::{Args, Parser, Subcommand, value_parser};

use output::Output;

/// Where checkpoints go when neither `--store` nor `CKPT_STORE` says otherwise.
const DEFAULT_STORE: &str = "sqlite:ckpt-data/checkpoints.db";
const DEFAULT_MAX_RETAINED: u32 = 8;
/// Exit code of a usage mistake (clap's own), also of a change asked for without `--yes`.
const USAGE_EXIT: u8 = 2;

/// Durable checkpoints for stream pipelines, through the checkpoint WebAssembly component.
///
/// Exit codes: 0 ok, 1 other failure, 2 usage, 3 not-found, 4 corrupt, 5 conflict, 6 fenced,
/// 7 invalid, 8 regression, 9 storage, 10 too-large, 11 broken-store.
#[derive(Debug, Parser)]
#[command(name = "ckpt", version)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// Store URL: `sqlite:PATH` or `memory:`. Falls back to $CKPT_STORE, then to
    /// `sqlite:ckpt-data/checkpoints.db` (the demo ignores $CKPT_STORE: it keeps its own store).
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    /// Namespace that separates independent users of one store.
    #[arg(long, global = true, default_value = "default")]
    namespace: String,
    /// Checkpoints kept per stage, the latest included [default: 8; the demo's: 4].
    #[arg(long, global = true, value_name = "N", value_parser = value_parser!(u32).range(1..))]
    max_retained: Option<u32>,
    /// Largest encoded checkpoint accepted, in bytes.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 1 << 20)]
    max_checkpoint_bytes: u32,
    /// Print one JSON document on stdout instead of text (errors go to stderr as JSON).
    #[arg(long, global = true)]
    json: bool,
}

impl GlobalArgs {
    /// The store URL for the ordinary commands: the flag, else $CKPT_STORE, else the default.
    fn store_url(&self) -> String {
        self.store
            .clone()
            .or_else(|| {
                std::env::var("CKPT_STORE")
                    .ok()
                    .filter(|url| !url.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_STORE.to_owned())
    }

    fn options(&self, default_max_retained: u32) -> Options {
        Options {
            namespace: self.namespace.clone(),
            max_retained: self.max_retained.unwrap_or(default_max_retained),
            max_checkpoint_bytes: self.max_checkpoint_bytes,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a checkpoint (from flags or a JSON file) and ack messages once it is durable.
    Write(commands::WriteArgs),
    /// Print the latest checkpoint of a stage, or the retained one with `--sequence`.
    Get(commands::GetArgs),
    /// Print where a stage should restart, and whether that is the latest checkpoint.
    Resume(commands::StageArgs),
    /// Print the retained checkpoints of a stage, oldest first.
    History(commands::StageArgs),
    /// Remove every checkpoint of a stage (this also forgets its epoch).
    Delete(commands::StageArgs),
    /// Decode raw checkpoint bytes (a file, or `-` for stdin) and check their CRC.
    Inspect(commands::InspectArgs),
    /// Scan the whole store (every namespace): decode every value, check keys, chains, latest.
    Verify,
    /// Move a stage to a given offset, backwards or forwards, taking it over with a higher
    /// epoch (every older writer is fenced). Prints the plan; acts only with `--yes`.
    Reset(operator::ResetArgs),
    /// Pin a checkpoint under a name (retention and `delete` keep it), list, restore, delete.
    #[command(subcommand)]
    Savepoint(operator::SavepointCommand),
    /// List the runs and stages of the namespace with their latest position.
    Ls(operator::LsArgs),
    /// Remove every stage of a run, one commit per stage (savepoints only when asked).
    DeleteRun(operator::DeleteRunArgs),
    /// Remove every stage whose latest checkpoint is older than a given age.
    Gc(operator::GcArgs),
    /// Copy every key of the namespace from one store to another, byte for byte, then check
    /// that both sides have the same chains.
    Copy(copy::CopyArgs),
    /// Run a pipeline that crashes at random and resumes, and verify every ack was durable.
    Demo(demo::DemoArgs),
}

/// A failure whose exit code is decided by the CLI, not by a component error: a report that
/// found problems (already printed), or a usage mistake only visible after parsing.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

/// An error that makes `ckpt` exit with `code`.
fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: message.into(),
    })
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Parses the command line, runs the command and turns its outcome into an exit code.
fn main() -> ExitCode {
    // Usage errors exit with clap's code 2 here; --help and --version with 0.
    let cli = Cli::parse();
    let out = Output::new(cli.global.json);
    match execute(cli, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_code(&err);
            out.error(&err, code);
            ExitCode::from(code)
        }
    }
}

fn execute(cli: Cli, out: &Output) -> Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Write(args) => commands::write(global, out, args),
        Command::Get(args) => commands::get(global, out, &args),
        Command::Resume(args) => commands::resume(global, out, &args),
        Command::History(args) => commands::history(global, out, &args),
        Command::Delete(args) => commands::delete(global, out, &args),
        Command::Inspect(args) => commands::inspect(out, &args),
        Command::Verify => verify::run(global, out),
        Command::Reset(args) => operator::reset(global, out, &args),
        Command::Savepoint(command) => operator::savepoint(global, out, command),
        Command::Ls(args) => operator::ls(global, out, &args),
        Command::DeleteRun(args) => operator::delete_run(global, out, &args),
        Command::Gc(args) => operator::gc(global, out, &args),
        Command::Copy(args) => copy::run(global, out, &args),
        Command::Demo(args) => demo::run(global, out, args),
    }
}

/// Component errors carry their own code (3 to 10); a failed report its own; a store whose
/// server cannot be reached the `storage` code (9); the rest is 1.
fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(failure) = err.downcast_ref::<Failure>() {
        return failure.code;
    }
    if err.chain().any(|cause| {
        cause
            .downcast_ref::<checkpoint_host::storage::OpenError>()
            .is_some_and(|e| e.kind() == checkpoint_host::storage::OpenErrorKind::Unreachable)
    }) {
        // The code of the `storage` error case: an outage, whether at open or on a call.
        let storage = checkpoint_host::Error::Checkpoint(
            checkpoint_host::CheckpointError::Storage(String::new()),
        );
        return u8::try_from(storage.exit_code()).unwrap_or(1);
    }
    match output::checkpoint_error(err) {
        Some(e) => u8::try_from(e.exit_code()).unwrap_or(1),
        None => 1,
    }
}

/// Makes sure the directory of a `sqlite:PATH` store exists, so that the first write to the
/// default store works in a fresh directory. Other URLs are left to the library.
fn prepare_store(url: &str) -> Result<()> {
    if let Some(path) = checkpoint_host::storage::sqlite_file(url)?
        && let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the store directory {}", dir.display()))?;
    }
    Ok(())
}

/// Opens the store behind `url` (a new connection each call).
fn open_store(url: &str) -> Result<Box<dyn checkpoint_host::Storage>> {
    prepare_store(url)?;
    checkpoint_host::storage::open_storage(url).with_context(|| {
        format!(
            "opening store {}",
            checkpoint_host::storage::redact_url(url)
        )
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn store_flag_is_global_and_wins_over_the_environment() {
        let cli = Cli::try_parse_from([
            "ckpt", "get", "--run", "r", "--stage", "s", "--store", "memory:",
        ])
        .expect("parses");
        assert_eq!(cli.global.store_url(), "memory:");
    }
}
