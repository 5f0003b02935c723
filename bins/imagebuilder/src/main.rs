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
    if let Err(e) = cli_common::init_logging(&cli.log) {
        eprintln!("imagebuilder: {e}");
        return ExitCode::from(1);
    }
    eprintln!("imagebuilder: no command given; the build commands of this tool have not landed yet (see --help)");
    ExitCode::from(2)
}
