//! `ge-image`: argument parsing and wiring only; the logic lives in the workspace's crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use guest_tools::{Accel, Compression, OutputFormat, PrepareOptions, Progress, SysprepOptions};

/// Prepare OpenStack guest images: inspect, sysprep, shrink and sparsify disk images.
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
            match a.output {
                OutputKind::Text => print!("{}", i.to_text()),
                OutputKind::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&i).map_err(|e| e.to_string())?
                ),
            }
            Ok(())
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
