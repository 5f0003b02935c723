//! `imagebuilder`: NREC's GOLD images, built and published: the weekly
//! builder's commands and himlarcli `image.py`'s (`update`, `retire`,
//! `purge`, `usage`, `list`, `grant`, `revoke`, `list-access`, and
//! `image-update`, the monthly schedule).
//!
//! Argument parsing and wiring only; the logic lives in the workspace's
//! crates (`gold-images` for the Glance side).
//!
//! Logging flags are global and long only: `-v` is himlarcli's visibility
//! (and the builder's verbose), so subcommands must not redeclare
//! `--debug`, `--verbose`, `--quiet` or `--log-format`.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod build_cmd;
mod himlar_cmd;

/// NREC GOLD images: build, update, rotate, retire and purge (imagebuilder and himlarcli image.py compatible).
#[derive(Debug, Parser)]
#[command(name = "imagebuilder", version, about)]
struct Cli {
    #[command(flatten)]
    log: LogFlags,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The commands. Each family is a flattened enum of its own module.
#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Himlar(himlar_cmd::HimlarCommand),
    #[command(flatten)]
    Build(build_cmd::BuildCommand),
}

/// Logging flags, long only (see the crate comment).
#[derive(Debug, Clone, Args)]
struct LogFlags {
    /// Debug output (as --verbose --verbose)
    #[arg(long, global = true)]
    debug: bool,
    /// More log output (repeat for more)
    #[arg(long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output (errors only; twice: nothing)
    #[arg(long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
    /// Log record format on standard error
    #[arg(long = "log-format", value_enum, default_value_t = cli_common::LogFormat::Text, global = true)]
    log_format: cli_common::LogFormat,
}

impl LogFlags {
    fn log_args(&self) -> cli_common::LogArgs {
        cli_common::LogArgs {
            verbose: self.verbose.max(if self.debug { 2 } else { 0 }),
            quiet: self.quiet,
            log_format: self.log_format,
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = match cli_common::parse_args("imagebuilder") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let log = cli.log.log_args();
    let Some(command) = cli.command else {
        eprintln!("imagebuilder: no command given (see --help)");
        return ExitCode::from(2);
    };
    let spec = cli_common::MainSpec::new("imagebuilder", log);
    cli_common::run_main(spec, |shutdown| async move {
        match command {
            Command::Himlar(c) => c.run().await,
            Command::Build(c) => c.run(shutdown).await.map_err(himlar_cmd::CliError::Config),
        }
    })
}
