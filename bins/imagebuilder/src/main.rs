//! `imagebuilder`: Build, test and publish images from profiles (NREC imagebuilder compatible).
//!
//! Argument parsing and wiring only; the logic lives in the workspace's crates.

use std::process::ExitCode;

use clap::Parser;

/// Build, test and publish images from profiles (NREC imagebuilder compatible).
#[derive(Debug, Parser)]
#[command(name = "imagebuilder", version, about)]
struct Cli {
    #[command(flatten)]
    log: cli_common::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli_common::exit_without_command("imagebuilder", &cli.log)
}
