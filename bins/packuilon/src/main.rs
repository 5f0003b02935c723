//! `packuilon`: Build images from Packer templates on messages from a RabbitMQ queue.
//!
//! Argument parsing and wiring only; the logic lives in the workspace's crates.

use std::process::ExitCode;

use clap::Parser;

/// Build images from Packer templates on messages from a RabbitMQ queue.
#[derive(Debug, Parser)]
#[command(name = "packuilon", version, about)]
struct Cli {
    #[command(flatten)]
    log: cli_common::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli_common::exit_without_command("packuilon", &cli.log)
}
