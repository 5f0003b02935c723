//! `packuilon`: Build images from Packer templates on messages from a RabbitMQ queue.
//!
//! Argument parsing and wiring only; the logic lives in `packuilon-core`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cli_common::Shutdown;
use packuilon_core::{Branch, Broker, Cdb2Rabbit, Config, Service, TriggerRequest};

/// What ends packuilon with exit status 1.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Core(#[from] packuilon_core::Error),
    /// `validate` found problems (printed on standard output).
    #[error("{0} problem(s) found")]
    Problems(usize),
}

impl cli_common::Failure for CliError {}

/// Build images from Packer templates on messages from a RabbitMQ queue.
#[derive(Debug, Parser)]
#[command(name = "packuilon", version, about)]
struct Cli {
    #[command(flatten)]
    log: cli_common::LogArgs,
    /// The packer-utils configuration file.
    #[arg(long, global = true, default_value = packuilon_core::config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask for one build: publish a skeleton profile on the queue.
    Trigger(TriggerArgs),
    /// The build service: consume the queue and run Packer for each profile
    /// (SIGTERM/SIGINT: stop taking messages, let running builds finish).
    Rabbit2packer,
    /// Publish the Quattor profiles changed since the last run (from
    /// PROFILE_INFO_URL, cached in CACHE_DIR); run on every `aq make` or by cron.
    Cdb2rabbit(Cdb2rabbitArgs),
    /// Check config.ini, the credentials files, template-map.json,
    /// source-images.json and every template; print every problem (file:
    /// key: message) and exit 1 if there is any.
    Validate,
    /// Warehouse the older images named NAME (the arguments joined by
    /// spaces, e.g. `sl7x-x86_64 web AQ`): rename them, move their members
    /// to the newest image and accept them, carry properties and visibility
    /// over, update source-images.json when configured. Prints the plan.
    RenameOldImages(RenameArgs),
}

#[derive(Debug, Args)]
struct Cdb2rabbitArgs {
    /// Run as a service: a pass every SECONDS until SIGTERM/SIGINT (a
    /// failed pass is logged and the next one runs). Default: one pass.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    interval: Option<u64>,
}

#[derive(Debug, Args)]
struct RenameArgs {
    /// The image name, as one or several words.
    #[arg(required = true, num_args = 1..)]
    name: Vec<String>,
    /// Print the plan (JSON) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Cloud of clouds.yaml to use (default: OS_CLOUD, else the OS_*
    /// variables of PACKER_ADMIN_AUTH).
    #[arg(long = "os-cloud", env = "OS_CLOUD")]
    os_cloud: Option<String>,
    /// Region (default: the credentials' OS_REGION_NAME or the first one).
    #[arg(long = "os-region-name")]
    os_region_name: Option<String>,
}

#[derive(Debug, Args)]
struct TriggerArgs {
    /// Personality of the image.
    #[arg(long)]
    personality: String,
    /// Archetype of the image.
    #[arg(long, default_value = "ral-tier1")]
    archetype: String,
    /// Operating system (distribution) name.
    #[arg(long, default_value = "sl")]
    os: String,
    /// Operating system version.
    #[arg(long = "os_ver", default_value = "7x")]
    os_ver: String,
    /// Architecture.
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// Aquilon domain the profile claims to come from.
    #[arg(long, default_value = "prod", conflicts_with = "sandbox")]
    domain: String,
    /// Aquilon sandbox, as owner/name.
    #[arg(long, value_parser = parse_sandbox)]
    sandbox: Option<(String, String)>,
}

fn parse_sandbox(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((a, n)) if !a.is_empty() && !n.is_empty() && !n.contains('/') => {
            Ok((a.to_string(), n.to_string()))
        }
        _ => Err(format!("{s:?} is not owner/name")),
    }
}

fn main() -> ExitCode {
    let cli: Cli = match cli_common::parse_args("packuilon") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let Some(command) = cli.command else {
        eprintln!("packuilon: no command given (trigger, rabbit2packer, cdb2rabbit, rename-old-images, validate; see --help)");
        return ExitCode::from(2);
    };
    let level = match &command {
        Command::Rabbit2packer => "info",
        Command::Cdb2rabbit(a) if a.interval.is_some() => "info",
        Command::Trigger(_)
        | Command::Cdb2rabbit(_)
        | Command::RenameOldImages(_)
        | Command::Validate => "warn",
    };
    let spec = cli_common::MainSpec::new("packuilon", cli.log.clone()).log_defaults(
        cli_common::LogDefaults {
            level,
            quiet_targets: &["lapin=warn", "amq_protocol=warn"],
        },
    );
    cli_common::run_main(spec, |signals| run(cli.config, command, signals))
}

async fn run(path: PathBuf, command: Command, signals: Shutdown) -> Result<(), CliError> {
    let path = path.as_path();
    if let Command::Validate = command {
        let report = packuilon_core::validate::validate(path);
        for note in &report.notes {
            println!("note: {note}");
        }
        for p in &report.problems {
            println!("{p}");
        }
        if report.problems.is_empty() {
            println!("{}: no problem found", path.display());
            return Ok(());
        }
        return Err(CliError::Problems(report.problems.len()));
    }
    let config = Config::load(path)?;
    for note in &config.ignored {
        tracing::warn!("{}: {note}", config.path.display());
    }
    match command {
        Command::Trigger(a) => {
            let request = TriggerRequest {
                personality: a.personality,
                archetype: a.archetype,
                os: a.os,
                os_version: a.os_ver,
                arch: a.arch,
                branch: match a.sandbox {
                    Some((author, name)) => Branch::Sandbox { author, name },
                    None => Branch::Domain(a.domain),
                },
            };
            let id = request.publish(&Broker::from_config(&config)).await?;
            tracing::info!(request = %id, "build requested");
            Ok(())
        }
        Command::Cdb2rabbit(a) => {
            let cdb = Cdb2Rabbit::from_config(&config)?;
            let Some(seconds) = a.interval else {
                let report = cdb.run().await?;
                log_pass(&report);
                return Ok(());
            };
            let period = std::time::Duration::from_secs(seconds);
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let stop = signals.graceful();
            tokio::pin!(stop);
            tracing::info!(interval = seconds, "cdb2rabbit running every {seconds} s");
            loop {
                tokio::select! {
                    () = &mut stop => {
                        tracing::info!("signal received: stopping");
                        return Ok(());
                    }
                    _ = ticks.tick() => {}
                }
                // A pass is not interrupted: the cache is written only after
                // a complete one.
                match cdb.run().await {
                    Ok(report) => log_pass(&report),
                    Err(e) => {
                        tracing::error!(error = %e, "cdb2rabbit pass failed; retrying at the next interval")
                    }
                }
            }
        }
        Command::Validate => Ok(()),
        Command::RenameOldImages(a) => {
            let admin = if a.os_cloud.is_some() {
                packuilon_core::AuthEnv::default()
            } else {
                packuilon_core::AuthEnv::load(&config.rabbit2packer.packer_admin_auth)?
            };
            let session =
                packuilon_core::rotate::Rotator::session_from(&admin, a.os_cloud.as_deref())?;
            let rotator = packuilon_core::rotate::Rotator::new(
                session,
                a.os_region_name,
                config.rename.clone().unwrap_or_default(),
            );
            let plan = rotator
                .rename_old_images(&a.name.join(" "), a.dry_run)
                .await?;
            match serde_json::to_string_pretty(&plan) {
                Ok(text) => println!("{text}"),
                Err(e) => tracing::warn!(error = %e, "cannot print the plan"),
            }
            if plan.new_image.is_none() {
                eprintln!("packuilon: no image named {:?}: no work to do", plan.name);
            }
            Ok(())
        }
        Command::Rabbit2packer => {
            let service = Service::from_config(&config)?;
            let (trigger, shutdown) = packuilon_core::shutdown_signal();
            let stop = signals.graceful();
            tokio::spawn(async move {
                stop.await;
                tracing::info!("signal received: finishing running builds, then exiting");
                trigger.trigger();
            });
            Ok(service.run(shutdown).await?)
        }
    }
}

fn log_pass(report: &packuilon_core::Cdb2RabbitReport) {
    tracing::info!(
        first_run = report.first_run,
        changed = report.changed.len(),
        published = report.published.len(),
        "cdb2rabbit pass done"
    );
}
