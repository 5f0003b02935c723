//! Shared command-line plumbing for the workspace's binaries.
//!
//! Owns: the `-v`/`-q`/`--log-format` flags every binary accepts, the one
//! `tracing-subscriber` set-up, and the one `main` skeleton ([`run_main`]):
//! logging, the tokio runtime, SIGINT/SIGTERM, a typed error printed on one
//! line and mapped to the exit status ([`Failure`]); [`parse_args`] turns a
//! bad command line into one line on standard error and exit status 2.
//! Must not: hold any tool logic, talk to a network, or read tool config files.
//!
//! A binary's `main`:
//!
//! ```no_run
//! # #[derive(clap::Parser)]
//! # struct Cli { #[command(flatten)] log: cli_common::LogArgs }
//! # #[derive(Debug)] struct CliError;
//! # impl std::fmt::Display for CliError {
//! #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("failed") }
//! # }
//! # impl cli_common::Failure for CliError {}
//! # async fn run(_cli: Cli) -> Result<(), CliError> { Ok(()) }
//! fn main() -> std::process::ExitCode {
//!     let cli: Cli = match cli_common::parse_args("mytool") {
//!         Ok(cli) => cli,
//!         Err(code) => return code,
//!     };
//!     let spec = cli_common::MainSpec::new("mytool", cli.log.clone());
//!     cli_common::run_main(spec, |_shutdown| run(cli))
//! }
//! ```

use std::io::IsTerminal;

mod main_skeleton;

pub use main_skeleton::{one_line, parse_args, run_main, Failure, MainSpec, Outcome, Shutdown};

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
    /// More log output (repeat for more: -v, -vv, -vvv).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output (-q errors only, -qq nothing).
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Log record format on standard error.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// Levels in the order `-v` walks through them.
const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// What a binary logs when neither `-v`/`-q` nor `RUST_LOG` says otherwise.
#[derive(Debug, Clone, Copy)]
pub struct LogDefaults<'a> {
    /// Level with no `-v`/`-q` (one of error, warn, info, debug, trace).
    pub level: &'static str,
    /// Extra `EnvFilter` directives applied at that default level only
    /// (e.g. `"openstack_client=warn"` to keep a library quieter than the tool).
    pub quiet_targets: &'a [&'a str],
}

impl Default for LogDefaults<'_> {
    fn default() -> Self {
        Self {
            level: "warn",
            quiet_targets: &[],
        }
    }
}

impl LogArgs {
    /// The level these flags select, starting from `default_level`
    /// (`RUST_LOG` overrides it): each `-v` is one level more, `-q` errors only,
    /// `-qq` nothing.
    pub fn level_from(&self, default_level: &str) -> &'static str {
        match self.quiet {
            0 => {}
            1 => return "error",
            _ => return "off",
        }
        let base = LEVELS.iter().position(|l| *l == default_level).unwrap_or(1);
        LEVELS[(base + usize::from(self.verbose)).min(LEVELS.len() - 1)]
    }

    /// The level these flags select from the usual default (`warn`).
    pub fn level(&self) -> &'static str {
        self.level_from("warn")
    }

    /// The `EnvFilter` directives for these flags and a binary's defaults.
    pub fn filter_directives(&self, defaults: &LogDefaults<'_>) -> String {
        let level = self.level_from(defaults.level);
        let mut directives = vec![level.to_string()];
        if self.verbose == 0 && self.quiet == 0 {
            directives.extend(defaults.quiet_targets.iter().map(|d| (*d).to_string()));
        }
        directives.join(",")
    }
}

/// Errors from setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A global subscriber was already installed in this process.
    #[error("logging was already initialised: {0}")]
    AlreadyInitialised(String),
}

/// Install the global `tracing` subscriber for a binary with the usual
/// defaults (`warn`). Call once, first thing in `main`.
///
/// `RUST_LOG`, when set, takes precedence over the `-v`/`-q` level.
pub fn init_logging(args: &LogArgs) -> Result<(), Error> {
    init_logging_with(args, &LogDefaults::default())
}

/// Install the global `tracing` subscriber for a binary whose default level
/// differs from `warn` (a tool whose normal output is its INFO records).
///
/// `RUST_LOG`, when set, takes precedence over the flags and the defaults.
pub fn init_logging_with(args: &LogArgs, defaults: &LogDefaults<'_>) -> Result<(), Error> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(args.filter_directives(defaults)));
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

/// The whole `main` of a binary whose commands have not landed yet: set up
/// logging, say that no command was given, and exit 2.
pub fn exit_without_command(bin: &str, log: &LogArgs) -> std::process::ExitCode {
    if let Err(e) = init_logging(log) {
        eprintln!("{bin}: {e}");
        return std::process::ExitCode::from(1);
    }
    eprintln!(
        "{bin}: no command given; the build commands of this tool have not landed yet (see --help)"
    );
    std::process::ExitCode::from(2)
}

/// Generate the command-line contract tests every binary of the workspace
/// must pass: `--help` names the binary and the shared logging flags,
/// `--version` prints name and version, an unknown argument (`--no-such-flag`)
/// fails with a one-line message.
///
/// Use it in a binary's integration test file; the calling package needs
/// `assert_cmd` and `predicates` as dev-dependencies. A clap-only binary
/// takes the defaults (an unknown argument exits 2 with clap's message):
///
/// ```text
/// cli_common::cli_contract_tests!("packuilon");
/// ```
///
/// A binary that keeps an original's exit codes names them; the optional
/// `short_version` and `short_help` entries (flag, exit code, text on stdout)
/// add a test each for the original's one-letter flags:
///
/// ```text
/// cli_common::cli_contract_tests!("amphora-create", {
///     unknown_argument: (1, "illegal option -- --no-such-flag"),
///     short_version: ("-v", 1, "Amphora disk image creation script version:"),
///     short_help: ("-h", 1, "'-y' enable FIPS 140-2 mode"),
/// });
/// ```
#[macro_export]
macro_rules! cli_contract_tests {
    ($bin:literal) => {
        $crate::cli_contract_tests!($bin, {
            unknown_argument: (2, "unexpected argument '--no-such-flag'"),
        });
    };
    ($bin:literal, {
        unknown_argument: ($unknown_code:literal, $unknown_message:literal)
        $(, short_version: ($version_flag:literal, $version_code:literal, $version_text:literal))?
        $(, short_help: ($help_flag:literal, $help_code:literal, $help_text:literal))?
        $(,)?
    }) => {
        fn contract_bin() -> ::assert_cmd::Command {
            ::assert_cmd::Command::cargo_bin($bin).expect(concat!("binary ", $bin, " is built"))
        }

        #[test]
        fn help_describes_the_tool() {
            use ::predicates::prelude::*;
            contract_bin()
                .arg("--help")
                .assert()
                .success()
                .stdout(predicate::str::contains(concat!("Usage: ", $bin)))
                .stdout(predicate::str::contains("--log-format"));
        }

        #[test]
        fn version_prints_name_and_version() {
            use ::predicates::prelude::*;
            contract_bin()
                .arg("--version")
                .assert()
                .success()
                .stdout(predicate::str::starts_with(concat!(
                    $bin,
                    " ",
                    env!("CARGO_PKG_VERSION")
                )));
        }

        #[test]
        fn unknown_argument_fails_with_a_message() {
            use ::predicates::prelude::*;
            contract_bin()
                .arg("--no-such-flag")
                .assert()
                .code($unknown_code)
                .stderr(predicate::str::contains($unknown_message));
        }

        $(
            #[test]
            fn short_version_flag_prints_the_version() {
                use ::predicates::prelude::*;
                contract_bin()
                    .arg($version_flag)
                    .assert()
                    .code($version_code)
                    .stdout(predicate::str::contains($version_text));
            }
        )?

        $(
            #[test]
            fn short_help_flag_prints_the_usage() {
                use ::predicates::prelude::*;
                contract_bin()
                    .arg($help_flag)
                    .assert()
                    .code($help_code)
                    .stdout(predicate::str::contains($help_text));
            }
        )?
    };
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

    #[test]
    fn a_binary_default_shifts_the_scale() {
        let mut a = LogArgs::default();
        let defaults = LogDefaults {
            level: "info",
            quiet_targets: &["openstack_client=warn"],
        };
        assert_eq!(a.filter_directives(&defaults), "info,openstack_client=warn");
        a.verbose = 1;
        assert_eq!(a.filter_directives(&defaults), "debug");
        a.verbose = 9;
        assert_eq!(a.filter_directives(&defaults), "trace");
        a.verbose = 0;
        a.quiet = 1;
        assert_eq!(a.filter_directives(&defaults), "error");
    }
}
