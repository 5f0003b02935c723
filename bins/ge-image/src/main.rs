//! `ge-image`: argument parsing and wiring only; the logic lives in the workspace's crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use guest_tools::{Accel, Compression, OutputFormat, PrepareOptions, Progress, SysprepOptions};
use image_pipeline::Cloud;

/// What ends `ge-image` with a non-zero status.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// No subcommand: exit 2, as a bad command line.
    #[error("no command given (see --help)")]
    NoCommand,
    #[error(transparent)]
    Pipeline(#[from] image_pipeline::Error),
    #[error(transparent)]
    Guest(#[from] guest_tools::Error),
    #[error("{0}")]
    Failed(String),
}

impl cli_common::Failure for CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::NoCommand => 2,
            _ => 1,
        }
    }
}

type Result<T, E = CliError> = std::result::Result<T, E>;

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
    /// Build `<name>_rc` from the image folder (create.sh on a base VM,
    /// snapshot, prepare, upload), then test it (the original's create_template).
    Create(CreateArgs),
    /// Test `<name>_rc`: boot `test-<name>`, run test.sh with IP and USERNAME
    /// (the original's test_only.sh).
    Test(TestArgs),
    /// Create the `sshopen`/`allopen` groups, the `createtestimage` keypair and
    /// a floating IP when missing (the original's sec_group); idempotent.
    SetupAccount(SetupAccountArgs),
    /// Release what a killed run left (the folder's ledger.jsonl), newest first.
    Gc(GcArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    /// Nova, Neutron and Glance.
    Openstack,
    /// Local QEMU VMs; images from and to Glance.
    Local,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnErrorArg {
    /// Delete everything the run created.
    Cleanup,
    /// Stop and leave everything for `ge-image gc`.
    Abort,
    /// Keep the resources for debugging (the ledger lists them).
    Keep,
}

/// Options shared by create, test and gc.
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    cloud: CloudArgs,
    /// Nova flavor (default: $FLAVOR, else m1.small).
    #[arg(long)]
    flavor: Option<String>,
    /// Where VMs run.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// What happens to the resources of a failed run.
    #[arg(long, value_enum)]
    on_error: Option<OnErrorArg>,
    /// Keep the test VM and the `_rc` image when the test fails.
    #[arg(long)]
    keep_on_failure: bool,
    /// Settings file (instead of /etc/ge-image/config.toml).
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Where the image folders are (default ~/create_ge_images).
    #[arg(long, value_name = "DIR")]
    folder_root: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Image name: the folder <folder-root>/NAME holds create.sh and test.sh.
    name: String,
    /// Base OS (ubuntu12, ubuntu14, debian7, debian8, centos6, centos7, debian12, or one of the settings file).
    #[arg(long)]
    base: Option<String>,
    /// Upload the snapshot as it is (no sysprep, shrink or sparsify).
    #[arg(long)]
    no_prepare: bool,
    /// Stop once `<name>_rc` is uploaded and verified: no test step (run
    /// `ge-image test NAME` later; earlier candidates are kept).
    #[arg(long)]
    no_test: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Image name (its folder holds test.sh).
    name: String,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct SetupAccountArgs {
    #[command(flatten)]
    cloud: CloudArgs,
    /// Print what would be done and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct GcArgs {
    /// Image name; every folder with a non-empty ledger when omitted.
    name: Option<String>,
    #[command(flatten)]
    run: RunArgs,
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
    #[arg(value_name = "IMAGE_UUID", value_parser = image_pipeline::parse_image_id)]
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

/// Print a result as its text form or as one JSON document.
fn emit(output: OutputKind, text: &str, value: &impl serde::Serialize) -> Result<()> {
    match output {
        OutputKind::Text => print!("{text}"),
        OutputKind::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).map_err(|e| CliError::Failed(e.to_string()))?
        ),
    }
    Ok(())
}

impl CloudArgs {
    async fn connect(&self) -> Result<Cloud> {
        Ok(Cloud::connect(self.os_cloud.as_deref(), self.os_region_name.as_deref()).await?)
    }
}

async fn locate(a: LocateArgs) -> Result<()> {
    let cloud = a.cloud.connect().await?;
    let project = cloud.caller_project().await?;
    let report = image_pipeline::locate_images(&cloud.glance, &project).await?;
    emit(a.output, &report.to_text(), &report)
}

async fn publish(a: PublishArgs) -> Result<()> {
    let (old_name, nid_type) = match (a.first, a.second) {
        (None, _) => (None, None),
        (Some(old), None) => (Some(old), None),
        (Some(nid), Some(kind)) => (None, Some(image_pipeline::NidType::new(nid, kind)?)),
    };
    let request = image_pipeline::PublishRequest {
        rc_image_id: a.image,
        old_name,
        nid_type,
    };
    let cloud = a.cloud.connect().await?;
    let project = cloud.caller_project().await?;
    let report = image_pipeline::publish(&cloud.glance, &project, &request, a.dry_run).await?;
    emit(a.output, &report.to_text(), &report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageCmd {
    Create,
    Test,
    Gc,
}

fn overrides(
    a: &RunArgs,
    base: Option<String>,
    no_prepare: bool,
    no_test: bool,
) -> image_pipeline::settings::Overrides {
    use image_pipeline::{BackendKind, OnError};
    image_pipeline::settings::Overrides {
        settings_file: a.settings.clone(),
        backend: a.backend.map(|b| match b {
            BackendArg::Openstack => BackendKind::Openstack,
            BackendArg::Local => BackendKind::Local,
        }),
        flavor: a.flavor.clone(),
        base,
        on_error: a.on_error.map(|o| match o {
            OnErrorArg::Cleanup => OnError::Cleanup,
            OnErrorArg::Abort => OnError::Abort,
            OnErrorArg::Keep => OnError::Keep,
        }),
        keep_on_failure: a.keep_on_failure,
        folder_root: a.folder_root.clone(),
        no_prepare,
        no_test,
    }
}

/// create / test / gc of one folder with the settings' backend.
async fn image_cmd(
    cmd: ImageCmd,
    name: &str,
    run: &RunArgs,
    o: image_pipeline::settings::Overrides,
    verbose: bool,
) -> Result<()> {
    let settings = image_pipeline::Settings::load(&o)?;
    let folder = image_pipeline::ImageFolder::new(&settings.folder_root(), name)?;
    if cmd == ImageCmd::Create {
        folder.require(&folder.create_script())?;
        settings.base_for(&settings.base)?;
    }
    let Cloud {
        session,
        glance,
        region,
    } = run.cloud.connect().await?;
    let backend_kind = if cmd == ImageCmd::Gc {
        gc_backend(&folder).unwrap_or(settings.backend)
    } else {
        settings.backend
    };
    match backend_kind {
        image_pipeline::BackendKind::Local => {
            let work = folder.work_dir()?.join("vms");
            let mut opts = image_pipeline::LocalBackendOptions::new(work);
            opts.memory_mib = settings.local_memory_mib;
            if let Some(cpus) = settings.local_cpus {
                opts.cpus = cpus.get();
            }
            // The base of the run (the one the candidate was built from, for `test`).
            let os = match cmd {
                ImageCmd::Create => settings.base.clone(),
                _ => folder
                    .load_state()?
                    .base
                    .unwrap_or_else(|| settings.base.clone()),
            };
            opts.key_injection = settings.key_injection(&os);
            let backend = image_pipeline::LocalBackend::new(glance.clone(), opts);
            drive(cmd, &backend, &glance, &settings, &folder, verbose).await
        }
        image_pipeline::BackendKind::Openstack => {
            let opts = image_pipeline::OpenStackBackendOptions {
                region,
                floating_ip: settings.floating_ip.clone(),
                ..Default::default()
            };
            let backend = image_pipeline::OpenStackBackend::connect(session, opts).await?;
            drive(cmd, &backend, &glance, &settings, &folder, verbose).await
        }
    }
}

/// The backend a folder's outstanding records need (`gc`).
fn gc_backend(folder: &image_pipeline::ImageFolder) -> Option<image_pipeline::BackendKind> {
    let ledger = image_pipeline::ResourceLedger::open(folder.ledger_path()).ok()?;
    let records = ledger.outstanding().ok()?;
    if records.iter().any(|r| r.backend == "openstack") {
        Some(image_pipeline::BackendKind::Openstack)
    } else if records.iter().any(|r| r.backend == "local") {
        Some(image_pipeline::BackendKind::Local)
    } else {
        None
    }
}

async fn drive<B: image_pipeline::ComputeBackend>(
    cmd: ImageCmd,
    backend: &B,
    glance: &openstack_client::glance::GlanceClient,
    settings: &image_pipeline::Settings,
    folder: &image_pipeline::ImageFolder,
    verbose: bool,
) -> Result<()> {
    let p = image_pipeline::Pipeline {
        backend,
        glance,
        settings,
        folder,
        verbose,
    };
    let name = folder.name();
    match cmd {
        ImageCmd::Create if !settings.test_only && !settings.run_test => {
            let r = p.create_untested(&settings.base).await?;
            print!("{}", r.to_text(name));
            Ok(())
        }
        ImageCmd::Create if !settings.test_only => {
            let r = p.create(&settings.base).await?;
            print!("{}", r.to_text(name));
            test_passed(r.test.success, name)
        }
        ImageCmd::Create | ImageCmd::Test => {
            let t = p.test_only().await?;
            print!("{}", t.to_text(name));
            test_passed(t.success, name)
        }
        ImageCmd::Gc => {
            let r = p.gc().await?;
            print!("{}", r.to_text(name));
            if r.is_complete() {
                Ok(())
            } else {
                Err(CliError::Failed(format!(
                    "{name}: not released: {}",
                    r.failed.join("; ")
                )))
            }
        }
    }
}

fn test_passed(success: bool, name: &str) -> Result<()> {
    if success {
        Ok(())
    } else {
        Err(CliError::Failed(format!("the test of {name}_rc failed")))
    }
}

async fn gc(a: GcArgs) -> Result<()> {
    let o = overrides(&a.run, None, false, false);
    let names: Vec<String> = match &a.name {
        Some(n) => vec![n.clone()],
        None => {
            let settings = image_pipeline::Settings::load(&o)?;
            let root = settings.folder_root();
            let mut names: Vec<String> = std::fs::read_dir(&root)
                .map_err(|e| CliError::Failed(format!("{}: {e}", root.display())))?
                .flatten()
                .filter(|e| {
                    std::fs::metadata(e.path().join(image_pipeline::LEDGER_FILE))
                        .map(|m| m.len() > 0)
                        .unwrap_or(false)
                })
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect();
            names.sort();
            names
        }
    };
    let mut failed = Vec::new();
    for name in names {
        if let Err(e) = image_cmd(ImageCmd::Gc, &name, &a.run, o.clone(), false).await {
            failed.push(e.to_string());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(failed.join("; ")))
    }
}

async fn setup_account(a: SetupAccountArgs) -> Result<()> {
    let Cloud {
        session, region, ..
    } = a.cloud.connect().await?;
    let options = image_pipeline::account::AccountOptions {
        region,
        ..Default::default()
    };
    let plan = image_pipeline::account::plan_setup_account(&session, &options).await?;
    if a.dry_run {
        print!("{}", plan.to_text());
        return Ok(());
    }
    let report = image_pipeline::account::apply_setup_account(&session, &options, &plan).await?;
    print!("{}", report.to_text());
    Ok(())
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

async fn run(cli: Cli) -> Result<()> {
    let quiet = cli.log.quiet > 0;
    match cli.command {
        None => Err(CliError::NoCommand),
        Some(Command::Inspect(a)) => {
            let (tx, task) = progress_printer(quiet);
            let r = guest_tools::inspect(&a.disk, accel(a.accel), Some(tx)).await;
            let _ = task.await;
            let i = r?;
            emit(a.output, &i.to_text(), &i)
        }
        Some(Command::Prepare(a)) => {
            if a.list_operations {
                print!("{}", guest_tools::operations_text());
                return Ok(());
            }
            let (Some(disk), Some(output)) = (a.disk, a.output) else {
                return Err(CliError::Failed("prepare needs DISK and -o OUT".into()));
            };
            let mut sysprep = SysprepOptions {
                keep_users: a.keep_users,
                ..Default::default()
            };
            if let Some(list) = &a.operations {
                sysprep.operations = guest_tools::sysprep::parse_operations(list)?;
            }
            let size = a
                .size
                .as_deref()
                .map(guest_tools::parse_size)
                .transpose()
                .map_err(|e| CliError::Failed(format!("--size: {e}")))?;
            let format = match a.format {
                FormatArg::Qcow2 => OutputFormat::Qcow2,
                FormatArg::Raw => OutputFormat::Raw,
            };
            if matches!(format, OutputFormat::Raw) && a.compress.is_some() {
                return Err(CliError::Failed("--compress needs --format qcow2".into()));
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
            print!("{}", r?.to_text());
            Ok(())
        }
        Some(Command::Locate(a)) => locate(a).await,
        Some(Command::Publish(a)) => publish(a).await,
        Some(Command::Create(a)) => {
            let o = overrides(&a.run, a.base.clone(), a.no_prepare, a.no_test);
            image_cmd(ImageCmd::Create, &a.name, &a.run, o, cli.log.verbose > 0).await
        }
        Some(Command::Test(a)) => {
            let o = overrides(&a.run, None, false, false);
            image_cmd(ImageCmd::Test, &a.name, &a.run, o, cli.log.verbose > 0).await
        }
        Some(Command::Gc(a)) => gc(a).await,
        Some(Command::SetupAccount(a)) => setup_account(a).await,
    }
}

fn main() -> ExitCode {
    let cli: Cli = match cli_common::parse_args("ge-image") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let spec = cli_common::MainSpec::new("ge-image", cli.log.clone()).worker_threads(2);
    cli_common::run_main(spec, |_| run(cli))
}
