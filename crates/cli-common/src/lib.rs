//! Shared command-line plumbing for the workspace's binaries.
//!
//! Owns: the `-v`/`-q`/`--log-format` flags every binary accepts and the one
//! `tracing-subscriber` set-up each binary calls once at start.
//! Must not: hold any tool logic, talk to a network, or read tool config files.

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use tracing_subscriber::{fmt, EnvFilter};

/// How log records are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging flags shared by every binary (flatten into the binary's parser).
#[derive(Debug, Clone, Args, Default)]
pub struct LogArgs {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (-q errors only, -qq nothing).
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Log record format on standard error.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// The default level filter these flags select (`RUST_LOG` overrides it).
    pub fn level(&self) -> &'static str {
        match (self.quiet, self.verbose) {
            (q, _) if q >= 2 => "off",
            (1, _) => "error",
            (_, 0) => "warn",
            (_, 1) => "info",
            (_, 2) => "debug",
            _ => "trace",
        }
    }
}

/// Errors from setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A global subscriber was already installed in this process.
    #[error("logging was already initialised: {0}")]
    AlreadyInitialised(String),
}

/// Install the global `tracing` subscriber for a binary. Call once, first thing in `main`.
///
/// `RUST_LOG`, when set, takes precedence over the `-v`/`-q` level.
pub fn init_logging(args: &LogArgs) -> Result<(), Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(args.level()));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match args.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    result.map_err(|e| Error::AlreadyInitialised(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_follows_flags() {
        let mut a = LogArgs::default();
        assert_eq!(a.level(), "warn");
        a.verbose = 1;
        assert_eq!(a.level(), "info");
        a.verbose = 3;
        assert_eq!(a.level(), "trace");
        a.verbose = 0;
        a.quiet = 1;
        assert_eq!(a.level(), "error");
        a.quiet = 2;
        assert_eq!(a.level(), "off");
    }
}
