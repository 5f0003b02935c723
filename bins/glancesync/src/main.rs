//! `glancesync`: the command line of fiware-glancesync's `sync.py` over
//! `glancesync-core`.
//!
//! Owns: argument parsing (the original's flags and help texts, plus
//! `--config-file`, `--backend` and `--output`), logging set-up, the
//! dispatch order and printing each mode's output (the runs themselves are
//! `glancesync_core::runner`), exit statuses (0 success,
//! 1 fatal error, 2 a malformed command line or a failed region, 130
//! interrupted).
//! Must not: hold sync logic or talk to OpenStack itself (that is
//! `glancesync-core` and `openstack-client`), nor print a password.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cli_common::Shutdown;

use clap::{ArgGroup, Parser, ValueEnum};
use glancesync_core::config::ProcessEnv;
use glancesync_core::{
    runner, ConfigSource, CsvBackend, GlanceBackend, GlanceSync, GlanceSyncConfig, LoadOptions,
    RegionBackend, StatusLine,
};

mod progress;

/// A tool to sync images from a master region to other regions
#[derive(Debug, Parser)]
#[command(name = "glancesync", version, disable_help_flag = true, group(ArgGroup::new("mode").args(["dry_run", "show_status", "show_regions", "make_backup"])))]
struct Cli {
    /// show this help message and exit
    #[arg(short = 'h', long, action = clap::ArgAction::Help)]
    help: Option<bool>,

    /// region where the images are uploaded to
    #[arg(value_name = "region")]
    regions: Vec<String>,

    /// sync several regions in parallel
    #[arg(long)]
    parallel: bool,

    /// override configuration options. (e.g. main.master_region=Valladolid metadata_condition='image.name=name1')
    #[arg(long = "config", value_name = "CONFIG", num_args = 1.., action = clap::ArgAction::Append)]
    config: Vec<String>,

    /// configuration file (default: $GLANCESYNC_CONFIG, else /etc/glancesync.conf, else OS_* variables only)
    #[arg(long = "config-file", value_name = "FILE")]
    config_file: Option<PathBuf>,

    /// do not upload actually the images
    #[arg(long)]
    dry_run: bool,

    /// do not sync, but show the synchronisation status
    #[arg(long)]
    show_status: bool,

    /// don not sync, only show the available regions
    #[arg(long)]
    show_regions: bool,

    /// do no sync, make a backup of the regions' metadata
    #[arg(long)]
    make_backup: bool,

    /// where the regions' images live: `glance` (the clouds of the config) or
    /// `csv:DIR` (offline: DIR/backup_<region>.csv files are the regions' state)
    #[arg(long, value_name = "BACKEND", default_value = "glance")]
    backend: String,

    /// output format of --show-status and --dry-run (`json`: the status lines, or the plan of every region)
    #[arg(long, value_enum, default_value_t = OutputFormat::Csv)]
    output: OutputFormat,

    #[command(flatten)]
    log: cli_common::LogArgs,
}

/// Output formats of `--show-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// `status,region,image` lines, a blank line after each region (as the original).
    Csv,
    /// One JSON array: `{status, region, image, size}` objects (status) or region plans (dry-run).
    Json,
}

/// Errors that end the program (exit status 1; a bad command line that
/// clap let through is one too, as the original).
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Core(#[from] glancesync_core::Error),
    #[error("{0}")]
    Usage(String),
}

impl cli_common::Failure for CliError {}

/// Exit status of an interrupted run (SIGINT or SIGTERM), after the
/// incomplete uploads were deleted.
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli: Cli = match cli_common::parse_args("glancesync") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // The original prints its INFO messages (uploads, summaries): that is the
    // default level; the HTTP client's own INFO records need -v.
    let spec = cli_common::MainSpec::new("glancesync", cli.log.clone()).log_defaults(
        cli_common::LogDefaults {
            level: "info",
            quiet_targets: &["openstack_client=warn"],
        },
    );
    cli_common::run_main(spec, |shutdown| run(cli, shutdown))
}

enum Backend {
    Csv(PathBuf),
    Glance,
}

fn parse_backend(s: &str) -> Result<Backend, CliError> {
    if s == "glance" {
        return Ok(Backend::Glance);
    }
    match s.strip_prefix("csv:") {
        Some(dir) if !dir.is_empty() => Ok(Backend::Csv(PathBuf::from(dir))),
        _ => Err(CliError::Usage(format!(
            "--backend {s}: expected 'glance' or 'csv:DIR'"
        ))),
    }
}

async fn run(cli: Cli, shutdown: Shutdown) -> Result<u8, CliError> {
    let backend_kind = parse_backend(&cli.backend)?;
    // Dispatch order as the original: --show-status, --parallel, --show-regions, --make-backup, sync.
    let read_only =
        cli.dry_run || cli.show_status || (!cli.parallel && (cli.show_regions || cli.make_backup));
    let config = GlanceSyncConfig::load(
        &match &cli.config_file {
            Some(f) => ConfigSource::File(f.clone()),
            None => ConfigSource::Resolve { explicit: None },
        },
        &LoadOptions {
            overrides: cli.config.clone(),
            require_credentials: matches!(backend_kind, Backend::Glance),
        },
        &ProcessEnv,
    )?;
    let config = Arc::new(config);
    let mut glance: Option<Arc<GlanceBackend>> = None;
    let backend: Arc<dyn RegionBackend> = match &backend_kind {
        Backend::Csv(dir) => Arc::new(CsvBackend::open(dir, read_only)?),
        Backend::Glance => {
            let g = Arc::new(GlanceBackend::new(
                config.clone(),
                read_only,
                progress::Bars::for_stderr(),
            ));
            glance = Some(g.clone());
            g
        }
    };
    let counters_of = glance.clone();
    let interrupted = shutdown.graceful();
    let work = async {
        let gs = Arc::new(GlanceSync::new(config.clone(), backend).await?);
        let regions = gs.expand_regions(&cli.regions).await?;
        let code = dispatch(&cli, gs, &regions).await;
        if let Some(g) = counters_of {
            let c = g.counters();
            if c.streamed_images + c.server_side_images > 0 {
                tracing::info!(
                    bytes_streamed = c.bytes_streamed,
                    streamed_images = c.streamed_images,
                    server_side_images = c.server_side_images,
                    server_side_fallbacks = c.server_side_fallbacks,
                    "transfers: {} bytes streamed through glancesync ({} images), {} images copied server-side",
                    c.bytes_streamed,
                    c.streamed_images,
                    c.server_side_images
                );
            }
        }
        code
    };
    tokio::select! {
        r = work => r,
        () = interrupted => {
            tracing::error!("interrupted");
            if let Some(g) = glance {
                g.abort_in_flight().await;
            }
            Ok(INTERRUPTED)
        }
    }
}

async fn dispatch(cli: &Cli, gs: Arc<GlanceSync>, regions: &[String]) -> Result<u8, CliError> {
    let regions = regions.to_vec();

    if cli.show_status {
        return show_status(gs, &regions, cli.output).await;
    }
    if cli.parallel {
        return parallel_sync(gs, &regions, cli.dry_run).await;
    }
    if cli.show_regions {
        let all = gs.all_regions().await?;
        stdout_line(&all.join(" "));
        return Ok(0);
    }
    if cli.make_backup {
        return make_backup(&gs, &regions).await;
    }
    if cli.dry_run && cli.output == OutputFormat::Json {
        return dry_run_json(&gs, &regions).await;
    }
    sequential_sync(&gs, &regions, cli.dry_run).await
}

/// 2 when a region failed (it was logged and skipped), else 0.
fn exit_status(failed: bool) -> u8 {
    if failed {
        2
    } else {
        0
    }
}

fn stdout_line(s: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not panic.
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

async fn show_status(
    gs: Arc<GlanceSync>,
    regions: &[String],
    output: OutputFormat,
) -> Result<u8, CliError> {
    // Regions are computed concurrently (listing is I/O for Glance, parsing is CPU for CSV)
    // and printed in the requested order.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let mut failed = false;
    let mut all: Vec<StatusLine> = Vec::new();
    for (r, result) in runner::region_statuses(gs, regions, workers).await {
        match result {
            Ok(lines) => match output {
                OutputFormat::Csv => stdout_line(&runner::status_csv(&lines)),
                OutputFormat::Json => all.extend(lines),
            },
            Err(e) => {
                failed = true;
                tracing::error!("{r}: Error retrieving images from region. Cause {e}");
            }
        }
    }
    if output == OutputFormat::Json {
        let text =
            serde_json::to_string_pretty(&all).map_err(|e| CliError::Usage(e.to_string()))?;
        stdout_line(&text);
    }
    Ok(exit_status(failed))
}

async fn sequential_sync(
    gs: &GlanceSync,
    regions: &[String],
    dry_run: bool,
) -> Result<u8, CliError> {
    let outcome = runner::sync_sequential(gs, regions, dry_run, &stdout_line).await;
    Ok(exit_status(!outcome.ok()))
}

/// `--dry-run --output json`: the plan of every region, as one JSON array.
async fn dry_run_json(gs: &GlanceSync, regions: &[String]) -> Result<u8, CliError> {
    let mut plans = Vec::new();
    let mut failed = false;
    for r in regions {
        match gs.plan_region(r).await {
            Ok(p) => plans.push(p),
            Err(e) => {
                failed = true;
                tracing::error!("{r}: synchronisation failed: {e}");
            }
        }
    }
    let text = serde_json::to_string_pretty(&plans).map_err(|e| CliError::Usage(e.to_string()))?;
    stdout_line(&text);
    Ok(exit_status(failed))
}

async fn parallel_sync(
    gs: Arc<GlanceSync>,
    regions: &[String],
    dry_run: bool,
) -> Result<u8, CliError> {
    let (_, outcome) = runner::sync_parallel(
        &gs,
        regions,
        dry_run,
        Path::new("."),
        &chrono::Local::now(),
        &stdout_line,
    )
    .await?;
    Ok(exit_status(!outcome.ok()))
}

async fn make_backup(gs: &GlanceSync, regions: &[String]) -> Result<u8, CliError> {
    let (dir, outcome) =
        runner::make_backup(gs, regions, Path::new(""), &chrono::Local::now()).await?;
    stdout_line(&dir.display().to_string());
    Ok(exit_status(!outcome.ok()))
}
