//! `amphora-create`: Build Octavia amphora images (diskimage-builder compatible).
//!
//! Argument parsing and wiring only; the logic lives in the workspace's crates.

use std::process::ExitCode;

use clap::Parser;

/// Build Octavia amphora images (diskimage-builder compatible).
#[derive(Debug, Parser)]
#[command(name = "amphora-create", version, about)]
struct Cli {
    #[command(flatten)]
    log: cli_common::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli_common::exit_without_command("amphora-create", &cli.log)
}
