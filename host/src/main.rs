//! `ckpt`: write, read, inspect and verify checkpoints, and run a crash-and-resume demo,
//! all through the checkpoint component.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
