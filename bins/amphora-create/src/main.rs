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
    if let Err(e) = cli_common::init_logging(&cli.log) {
        eprintln!("amphora-create: {e}");
        return ExitCode::from(1);
    }
    eprintln!("amphora-create: no command given; the build commands of this tool have not landed yet (see --help)");
    ExitCode::from(2)
}
