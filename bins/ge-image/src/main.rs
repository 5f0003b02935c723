//! `ge-image`: argument parsing and wiring only; the logic lives in the workspace's crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use guest_tools::{Accel, Compression, OutputFormat, PrepareOptions, Progress, SysprepOptions};

/// Prepare OpenStack guest images: inspect, sysprep, shrink and sparsify disk
/// images; publish tested release candidates in Glance.
#[derive(Debug, Parser)]
#[command(name = "ge-image", version, about)]
struct Cli {
    #[command(flatten)]
    log: cli_common::LogArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect a disk image: distro, version, arch, filesystems, packages, ...
    Inspect(InspectArgs),
    /// Sysprep, shrink and sparsify a disk image into a new file (the input is not modified).
    Prepare(PrepareArgs),
    /// List this project's public images that carry `nid` and `type`, then the NIDs in use.
    Locate(LocateArgs),
    /// Publish a release candidate `<name>_rc` as `<name>`: the public image it
    /// replaces becomes `<name>_obsolete` (private) and lends it its `nid` and `type`.
    Publish(PublishArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputKind {
    /// Aligned key/value text.
    Text,
    /// One JSON document.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AccelArg {
    /// Probe KVM with a short real boot, fall back to TCG.
    Auto,
    /// KVM.
    Kvm,
    /// TCG (software emulation).
    Tcg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// qcow2 (zero clusters dropped).
    Qcow2,
    /// Sparse raw.
    Raw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressArg {
    /// zlib (every QEMU reads it).
    Zlib,
    /// zstd (faster; QEMU >= 5.1 reads it).
    Zstd,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// Disk image to inspect (any format qemu-img reads).
    disk: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputKind::Text)]
    output: OutputKind,
    /// Accelerator for the libguestfs appliance.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto, env = "GE_IMAGE_ACCEL")]
    accel: AccelArg,
}

#[derive(Debug, Args)]
struct PrepareArgs {
    /// Input disk image (never modified).
    #[arg(required_unless_present = "list_operations")]
    disk: Option<PathBuf>,
    /// Output file.
    #[arg(
        short = 'o',
        long = "output",
        required_unless_present = "list_operations"
    )]
    output: Option<PathBuf>,
    /// Sysprep operations, virt-sysprep style: `a,b` only those, `-c` without c,
    /// `defaults`, `all` (see --list-operations).
    #[arg(long)]
    operations: Option<String>,
    /// List the sysprep operations (`*` marks the default ones) and exit.
    #[arg(long)]
    list_operations: bool,
    /// Account the `user-account` operation keeps (repeatable).
    #[arg(long = "keep-user", value_name = "NAME")]
    keep_users: Vec<String>,
    /// Do not shrink the root filesystem or the virtual size.
    #[arg(long)]
    no_shrink: bool,
    /// Virtual size of the output (e.g. 2G) instead of the 1024M/5G/10G rule.
    #[arg(long, conflicts_with = "no_shrink")]
    size: Option<String>,
    /// Compress the qcow2 output (zlib unless given).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "zlib")]
    compress: Option<CompressArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Qcow2)]
    format: FormatArg,
    /// Accelerator for the libguestfs appliance.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto, env = "GE_IMAGE_ACCEL")]
    accel: AccelArg,
}

/// Which cloud and region to talk to.
#[derive(Debug, Args)]
struct CloudArgs {
    /// Cloud in clouds.yaml (default: $OS_CLOUD, else plain OS_* variables).
    #[arg(long, value_name = "NAME")]
    os_cloud: Option<String>,
    /// Region (default: $OS_REGION_NAME, else the cloud's first region).
    #[arg(long, value_name = "REGION")]
    os_region_name: Option<String>,
}

#[derive(Debug, Args)]
struct LocateArgs {
    #[command(flatten)]
    cloud: CloudArgs,
    /// Output format: `name nid type` lines then the NIDs, or one JSON document.
    #[arg(long, value_enum, default_value_t = OutputKind::Text)]
    output: OutputKind,
}

#[derive(Debug, Args)]
#[command(after_help = "Forms (as publish_image.py):\n  \
    ge-image publish IMAGE_UUID            old image: the name without _rc\n  \
    ge-image publish IMAGE_UUID OLDNAME    old image: OLDNAME\n  \
    ge-image publish IMAGE_UUID NID TYPE   nid/type when no old image has them")]
struct PublishArgs {
    #[command(flatten)]
    cloud: CloudArgs,
    /// Id of the release candidate (an image named `<name>_rc`).
    #[arg(value_name = "IMAGE_UUID", value_parser = parse_image_id)]
    image: String,
    /// OLDNAME (one argument) or NID (followed by TYPE).
    #[arg(value_name = "OLDNAME|NID")]
    first: Option<String>,
    /// TYPE (after NID).
    #[arg(value_name = "TYPE")]
    second: Option<String>,
    /// Print what would be done and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Output format: the original's lines, or one JSON document.
    #[arg(long, value_enum, default_value_t = OutputKind::Text)]
    output: OutputKind,
}

/// Glance image ids are UUIDs (with or without dashes).
fn parse_image_id(s: &str) -> Result<String, String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let dashed_ok = !s.contains('-')
        || (s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-'));
    if hex.len() == 32 && dashed_ok && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_owned())
    } else {
        Err(format!("'{s}' is not an image UUID"))
    }
}

/// A Glance client for the selected cloud and region, and the caller's project.
async fn glance_for(
    cloud: &CloudArgs,
) -> Result<(openstack_client::glance::GlanceClient, String), String> {
    let config = openstack_client::CloudConfig::load(
        cloud.os_cloud.as_deref(),
        cloud.os_region_name.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let region = config.default_region().map(str::to_owned);
    let session = openstack_client::Session::connect(config)
        .await
        .map_err(|e| e.to_string())?;
    let project = image_pipeline::caller_project_id(&session)
        .await
        .map_err(|e| e.to_string())?;
    let glance = session
        .image(region.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    Ok((glance, project))
}

/// Print a result as its text form or as one JSON document.
fn emit(output: OutputKind, text: &str, value: &impl serde::Serialize) -> Result<(), String> {
    match output {
        OutputKind::Text => print!("{text}"),
        OutputKind::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
        ),
    }
    Ok(())
}

async fn locate(a: LocateArgs) -> Result<(), String> {
    let (glance, project) = glance_for(&a.cloud).await?;
    let report = image_pipeline::locate_images(&glance, &project)
        .await
        .map_err(|e| e.to_string())?;
    emit(a.output, &report.to_text(), &report)
}

async fn publish(a: PublishArgs) -> Result<(), String> {
    let (old_name, nid_type) = match (a.first, a.second) {
        (None, _) => (None, None),
        (Some(old), None) => (Some(old), None),
        (Some(nid), Some(kind)) => (
            None,
            Some(image_pipeline::NidType::new(nid, kind).map_err(|e| e.to_string())?),
        ),
    };
    let request = image_pipeline::PublishRequest {
        rc_image_id: a.image,
        old_name,
        nid_type,
    };
    let (glance, project) = glance_for(&a.cloud).await?;
    let report = image_pipeline::publish(&glance, &project, &request, a.dry_run)
        .await
        .map_err(|e| e.to_string())?;
    emit(a.output, &report.to_text(), &report)
}

fn accel(a: AccelArg) -> Accel {
    match a {
        AccelArg::Auto => Accel::Auto,
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
    }
}

/// Print progress events on standard error unless quiet.
fn progress_printer(quiet: bool) -> (guest_tools::ProgressSender, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
    let task = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            if !quiet {
                let step = serde_json::to_value(p.step)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                eprintln!("[{step}] {}", p.detail);
            }
        }
    });
    (tx, task)
}

fn list_operations() -> String {
    guest_tools::OPERATIONS
        .iter()
        .map(|o| {
            format!(
                "{} {} {}\n",
                o.name,
                if o.default { "*" } else { " " },
                o.description
            )
        })
        .collect()
}

async fn run(cli: Cli) -> Result<(), String> {
    let quiet = cli.log.quiet > 0;
    match cli.command {
        None => Err("no command given (see --help)".into()),
        Some(Command::Inspect(a)) => {
            let (tx, task) = progress_printer(quiet);
            let r = guest_tools::inspect(&a.disk, accel(a.accel), Some(tx)).await;
            let _ = task.await;
            let i = r.map_err(|e| e.to_string())?;
            emit(a.output, &i.to_text(), &i)
        }
        Some(Command::Prepare(a)) => {
            if a.list_operations {
                print!("{}", list_operations());
                return Ok(());
            }
            let (Some(disk), Some(output)) = (a.disk, a.output) else {
                return Err("prepare needs DISK and -o OUT".into());
            };
            let mut sysprep = SysprepOptions {
                keep_users: a.keep_users,
                ..Default::default()
            };
            if let Some(list) = &a.operations {
                sysprep.operations =
                    guest_tools::sysprep::parse_operations(list).map_err(|e| e.to_string())?;
            }
            let size = a
                .size
                .as_deref()
                .map(guest_tools::parse_size)
                .transpose()
                .map_err(|e| format!("--size: {e}"))?;
            let format = match a.format {
                FormatArg::Qcow2 => OutputFormat::Qcow2,
                FormatArg::Raw => OutputFormat::Raw,
            };
            if matches!(format, OutputFormat::Raw) && a.compress.is_some() {
                return Err("--compress needs --format qcow2".into());
            }
            let opts = PrepareOptions {
                sysprep,
                shrink: !a.no_shrink,
                size,
                format,
                compression: a.compress.map(|c| match c {
                    CompressArg::Zlib => Compression::Zlib,
                    CompressArg::Zstd => Compression::Zstd,
                }),
                accel: accel(a.accel),
            };
            let (tx, task) = progress_printer(quiet);
            let r = guest_tools::prepare(&disk, &output, opts, Some(tx)).await;
            let _ = task.await;
            let r = r.map_err(|e| e.to_string())?;
            println!(
                "{}: {} {} {}, virtual size {} (was {}), {} on disk, {:.1} s",
                r.output.display(),
                r.inspection.distro,
                r.inspection.version,
                r.inspection.arch,
                guest_tools::human(r.output_virtual_size),
                guest_tools::human(r.input_virtual_size),
                guest_tools::human(r.output_actual_size),
                r.seconds
            );
            Ok(())
        }
        Some(Command::Locate(a)) => locate(a).await,
        Some(Command::Publish(a)) => publish(a).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli_common::init_logging(&cli.log) {
        eprintln!("ge-image: {e}");
        return ExitCode::from(1);
    }
    let no_command = cli.command.is_none();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ge-image: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ge-image: {e}");
            ExitCode::from(if no_command { 2 } else { 1 })
        }
    }
}
