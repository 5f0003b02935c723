//! `glancesync`: argument parsing and wiring only; the logic lives in the workspace's crates.

use std::process::ExitCode;

use clap::Parser;

/// glancesync
#[derive(Debug, Parser)]
#[command(name = "glancesync", version, about)]
struct Cli {
    #[command(flatten)]
    log: cli_common::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli_common::init_logging(&cli.log) {
        eprintln!("glancesync: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
