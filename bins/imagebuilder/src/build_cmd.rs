//! The weekly builder's commands: `bootstrap`, `build` and `build-all`
//! (NREC imagebuilder and its build-all wrapper), and `gc` (what SIGKILLed
//! builds left), wired to `imagebuilder-core`.
//!
//! SIGINT/SIGTERM stop `build` gracefully (clean-up, `-x`, report, exit
//! status 1) and `bootstrap` (a half-made Glance image deleted, the
//! download kept to resume); `build-all` passes them on to the running
//! child and builds no more.
//!
//! The original's `-v` (verbose) is a short option of each command here
//! (it copies the build log to standard error); `--verbose`, `--debug`
//! and `--quiet` are the binary's global logging flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use image_pipeline::{
    BackendKind, LocalBackend, LocalBackendOptions, OpenStackBackend, OpenStackBackendOptions,
};
use imagebuilder_core::bootstrap::{self, BootstrapPlan, DigestKind};
use imagebuilder_core::build::{self, BuildOptions, Mode};
use imagebuilder_core::build_all::{self, Selection};
use imagebuilder_core::{config, report};
use openstack_client::{CloudConfig, Session};

/// What the original printed when the credentials were missing.
const NO_CREDENTIALS: &str =
    "Failed to read environment variables. Please run: source <my_openrc> and try again.";

/// The builder's commands.
#[derive(Debug, Subcommand)]
pub enum BuildCommand {
    /// Download a cloud-ready image from a URL and upload it to Glance (prints only its id)
    Bootstrap(BootstrapArgs),
    /// Build an image: boot the source, run the template's provisioners, snapshot, publish
    Build(BuildArgs),
    /// Build every standard (-S) or vGPU (-G) image, or the named ones (-i): the build-all wrapper
    BuildAll(BuildAllArgs),
    /// Release what killed builds left (VMs, keypairs, security groups, files, -x source images)
    Gc(GcArgs),
}

/// Which cloud (the original used the `OS_*` variables only).
#[derive(Debug, Clone, Args)]
pub struct CloudArgs {
    /// Cloud of clouds.yaml (default: $OS_CLOUD, else the OS_* variables)
    #[arg(long, env = "OS_CLOUD")]
    os_cloud: Option<String>,
    /// Region (default: $OS_REGION_NAME, else the cloud's)
    #[arg(long, env = "OS_REGION_NAME")]
    os_region_name: Option<String>,
}

impl CloudArgs {
    async fn connect(&self) -> Result<(Session, Option<String>), String> {
        let cfg = CloudConfig::load(self.os_cloud.as_deref(), self.os_region_name.as_deref())
            .map_err(|e| format!("{NO_CREDENTIALS} ({e})"))?;
        let region = cfg.default_region().map(str::to_owned);
        let session = Session::connect(cfg)
            .await
            .map_err(|e| format!("authenticating: {e}"))?;
        Ok((session, region))
    }
}

/// `imagebuilder bootstrap`.
#[derive(Debug, Clone, Args)]
pub struct BootstrapArgs {
    /// Availability zone, i.e. bgo-default-1, osl-default-1
    #[arg(short = 'a', long = "availability-zone")]
    availability_zone: String,
    /// URL to upstream image
    #[arg(short = 'u', long)]
    url: String,
    /// URL to checksum file
    #[arg(short = 'c', long = "checksum-url")]
    checksum_url: Option<String>,
    /// Checksum digest: sha256, sha512 or md5
    #[arg(short = 't', long = "checksum-digest", default_value = "sha256")]
    checksum_digest: DigestKind,
    /// Name of the image
    #[arg(short = 'n', long)]
    name: String,
    /// Minimum amount of ram in MB
    #[arg(short = 'r', long = "min-ram")]
    min_ram: u64,
    /// Minimum amount of disk in GB
    #[arg(short = 'd', long = "min-disk")]
    min_disk: u64,
    /// Format of the disk
    #[arg(short = 'f', long = "disk-format")]
    disk_format: String,
    /// Do not create image with scsi disk properties
    #[arg(short = 's', long = "no-scsi-mode")]
    no_scsi_mode: bool,
    /// Boot image with uefi boot firmware
    #[arg(short = 'e', long)]
    efi: bool,
    /// Be verbose (progress on standard error)
    #[arg(short = 'v', id = "bootstrap_verbose")]
    echo: bool,
    /// Where downloads are kept while in progress (a rerun resumes them)
    #[arg(long, env = "IMAGEBUILDER_DOWNLOAD_CACHE")]
    download_cache: Option<PathBuf>,
    /// Print the plan and do nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    cloud: CloudArgs,
}

/// Compute backend of `build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// Nova, Neutron and Glance.
    Openstack,
    /// Local QEMU VMs (images still from and to Glance).
    Local,
}

/// How the local backend hands the build VM its SSH key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KeyInjection {
    /// libguestfs writes authorized_keys into the disk (any Linux image; one appliance launch)
    Guestfs,
    /// systemd's tmpfiles.extra credential (no appliance launch; systemd 252 or later in the image)
    SystemdCredential,
}

/// `imagebuilder build`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Availability zone, i.e. bgo-default-1, osl-default-1
    #[arg(short = 'a', long = "availability-zone")]
    availability_zone: String,
    /// Download image after build (publish <download_dir>/<name>-YYYYMMDD.qcow2, .md5, -latest links; keep two)
    #[arg(short = 'd', long)]
    download: bool,
    /// Flavor to use when building
    #[arg(short = 'f', long, default_value = "m1.small")]
    flavor: String,
    /// Name of the image
    #[arg(short = 'n', long)]
    name: String,
    /// Name of the network we want to use
    #[arg(short = 'N', long = "network-name", default_value = "Dualstack")]
    network_name: String,
    /// Path to your provision script (the template's `provision_script` variable)
    #[arg(short = 'p', long = "provision-script", default_value = "/bin/true")]
    provision_script: String,
    /// Name or id of the source image we build from
    #[arg(short = 's', long = "source-image")]
    source_image: String,
    /// SSH username as set up by cloud-init (usually named after distro or OS)
    #[arg(short = 'u', long = "ssh-username")]
    ssh_username: String,
    /// Be verbose (copy the build log to standard error)
    #[arg(short = 'v', id = "build_verbose")]
    echo: bool,
    /// Purge source image you are building from
    #[arg(short = 'x', long = "purge-source")]
    purge_source: bool,
    /// Run the real `packer build` on the template instead of the native provisioners
    #[arg(long)]
    packer: bool,
    /// Where the build VM runs
    #[arg(
        long,
        value_enum,
        default_value = "openstack",
        env = "IMAGEBUILDER_BACKEND"
    )]
    backend: Backend,
    /// Local backend: how the build VM gets its SSH key
    #[arg(
        long,
        value_enum,
        default_value = "guestfs",
        env = "IMAGEBUILDER_KEY_INJECTION"
    )]
    key_injection: KeyInjection,
    /// Extra template variable (repeatable); wins over the built-in ones
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Allocate a floating IP from this external network (default: reach the VM at its fixed IP)
    #[arg(long)]
    floating_network: Option<String>,
    /// State directory (ledgers, local VM directories)
    #[arg(long, env = "IMAGEBUILDER_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Directory of the report and plain log when IMAGEBUILDER_REPORT=true
    #[arg(
        long,
        env = "IMAGEBUILDER_LOG_DIR",
        default_value = "/var/log/imagebuilder"
    )]
    log_dir: PathBuf,
    /// Print the plan and do nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    cloud: CloudArgs,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

/// `imagebuilder build-all`.
#[derive(Debug, Clone, Args)]
pub struct BuildAllArgs {
    /// All standard images
    #[arg(short = 'S')]
    standard: bool,
    /// All vGPU images (names ending _nv_vgpu)
    #[arg(short = 'G')]
    vgpu: bool,
    /// All Windows images (refused)
    #[arg(short = 'W')]
    windows: bool,
    /// One image (repeatable)
    #[arg(short = 'i', value_name = "IMAGE")]
    images: Vec<String>,
    /// Time limit per image, in seconds
    #[arg(short = 't', value_name = "SECONDS")]
    timeout: Option<u64>,
    /// List the images and their class
    #[arg(short = 'l')]
    list: bool,
    /// Dry run: print what would be built
    #[arg(short = 'n')]
    dry_run: bool,
    /// The builder's image list (profile::application::builder::images, or a hieradata file holding it)
    #[arg(
        long,
        env = "IMAGEBUILDER_IMAGES",
        default_value = "/etc/imagebuilder/images.yaml"
    )]
    image_list: PathBuf,
    /// Parent of the per-class template directories (default/, nv_vgpu/)
    #[arg(long, default_value = "/etc/imagebuilder")]
    template_base: PathBuf,
    /// Availability zone of the builds
    #[arg(
        long = "availability-zone",
        env = "IMAGEBUILDER_AZ",
        default_value = "default-1"
    )]
    availability_zone: String,
    /// Flavor for images that name none
    #[arg(long, default_value = "m1.small")]
    flavor: String,
    /// Network for images that name none
    #[arg(long, default_value = "Dualstack")]
    network: String,
    /// Directory of the reports
    #[arg(
        long,
        env = "IMAGEBUILDER_LOG_DIR",
        default_value = "/var/log/imagebuilder"
    )]
    log_dir: PathBuf,
    /// Where the builds run (passed to each build)
    #[arg(
        long,
        value_enum,
        default_value = "openstack",
        env = "IMAGEBUILDER_BACKEND"
    )]
    backend: Backend,
}

/// `imagebuilder gc`.
#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    /// Only the builds of this image name (default: every ledger of the state directory)
    #[arg(short = 'n', long)]
    name: Option<String>,
    /// State directory (ledgers, local VM directories)
    #[arg(long, env = "IMAGEBUILDER_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Print the ledgers with outstanding records and release nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    cloud: CloudArgs,
}

impl BuildCommand {
    /// Run the command; `shutdown` tells a build a signal asked it to stop.
    pub async fn run(self, shutdown: cli_common::Shutdown) -> Result<(), String> {
        match self {
            BuildCommand::Bootstrap(a) => run_bootstrap(a, shutdown).await,
            BuildCommand::Build(a) => run_build(a, shutdown).await,
            BuildCommand::BuildAll(a) => run_build_all(a, shutdown).await,
            BuildCommand::Gc(a) => run_gc(a).await,
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn run_bootstrap(a: BootstrapArgs, shutdown: cli_common::Shutdown) -> Result<(), String> {
    let cache = a
        .download_cache
        .clone()
        .unwrap_or_else(bootstrap::default_cache_dir);
    let plan = BootstrapPlan {
        url: a.url.clone(),
        checksum_url: a.checksum_url.clone(),
        digest: a.checksum_digest,
        name: a.name.clone(),
        min_ram: a.min_ram,
        min_disk: a.min_disk,
        disk_format: a.disk_format.clone(),
        properties: bootstrap::properties(a.no_scsi_mode, a.efi),
        download_path: bootstrap::download_path(&cache, &a.url),
    };
    if a.dry_run {
        println!("{}", serde_json::to_string_pretty(&plan).map_err(err)?);
        return Ok(());
    }
    tracing::debug!(az = %a.availability_zone, echo = a.echo, "bootstrap");
    let (session, region) = a.cloud.connect().await?;
    let glance = session.image(region.as_deref()).await.map_err(err)?;
    let id = bootstrap::run_until(&plan, &glance, shutdown.graceful())
        .await
        .map_err(err)?;
    // Only the id, without a newline: the original's output is piped into `build -s`.
    print!("{id}");
    Ok(())
}

fn state_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache/openstack-image-tools/imagebuilder")
    })
}

async fn run_build(a: BuildArgs, shutdown: cli_common::Shutdown) -> Result<(), String> {
    let cwd = std::env::current_dir().map_err(err)?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let dirs = config::resolve_dirs(
        |k| std::env::var(k).ok(),
        &config::config_files(&cwd, home.as_deref()),
    )
    .map_err(err)?;
    let date = chrono::Local::now().format("%Y%m%d").to_string();
    let reporting = report::enabled_from(std::env::var("IMAGEBUILDER_REPORT").ok().as_deref());
    let backend = match a.backend {
        Backend::Openstack => BackendKind::Openstack,
        Backend::Local => BackendKind::Local,
    };
    if a.packer && backend == BackendKind::Local {
        return Err("--packer builds on OpenStack only (the template's openstack builder)".into());
    }
    let state = state_dir(a.state_dir.clone());
    let options = BuildOptions {
        availability_zone: a.availability_zone.clone(),
        name: a.name.clone(),
        source_image: a.source_image.clone(),
        ssh_user: a.ssh_username.clone(),
        flavor: a.flavor.clone(),
        network: a.network_name.clone(),
        provision_script: a.provision_script.clone(),
        download: a.download,
        purge_source: a.purge_source,
        packer: a.packer,
        backend,
        dirs,
        extra_vars: a.vars.iter().cloned().collect::<BTreeMap<_, _>>(),
        state_dir: state.clone(),
        report: reporting.then(|| report::ReportPaths::new(&a.log_dir, &a.name, &date)),
        date,
        cwd,
        verbose: a.echo,
    };
    let plan = build::plan(&options).map_err(err)?;
    if a.dry_run {
        println!("{}", plan.to_text());
        return Ok(());
    }
    let (session, region) = a.cloud.connect().await?;
    let glance = session.image(region.as_deref()).await.map_err(err)?;
    let os_options = || {
        build::openstack_options(OpenStackBackendOptions {
            region: region.clone(),
            network: a.network_name.clone(),
            use_fixed_ip: a.floating_network.is_none(),
            floating_network: a.floating_network.clone().unwrap_or_default(),
            availability_zone: Some(a.availability_zone.clone()),
            ..Default::default()
        })
    };
    let outcome = match (&plan.mode, backend) {
        (Mode::Packer { .. }, _) => {
            let b = OpenStackBackend::connect(session.clone(), os_options())
                .await
                .map_err(err)?;
            imagebuilder_core::packer::apply(&plan, &session, &b, a.echo).await
        }
        (Mode::Native(_), BackendKind::Local) => {
            let key = match a.key_injection {
                KeyInjection::Guestfs => build::LocalKey::Guestfs,
                KeyInjection::SystemdCredential => build::LocalKey::SystemdCredential,
            };
            let b = LocalBackend::new(glance.clone(), build::local_options(state.join("vms"), key));
            build::apply_until(&plan, &b, &glance, a.echo, shutdown.graceful()).await
        }
        (Mode::Native(_), BackendKind::Openstack) => {
            let b = OpenStackBackend::connect(session.clone(), os_options())
                .await
                .map_err(err)?;
            build::apply_until(&plan, &b, &glance, a.echo, shutdown.graceful()).await
        }
    }
    .map_err(err)?;
    tracing::info!(artifact = %outcome.artifact_id, "build finished");
    Ok(())
}

async fn run_gc(a: GcArgs) -> Result<(), String> {
    let state = state_dir(a.state_dir.clone());
    let ledgers = build::ledgers(&state, a.name.as_deref()).map_err(err)?;
    let mut busy = Vec::new();
    for l in &ledgers {
        let ledger = image_pipeline::ResourceLedger::open(l).map_err(err)?;
        if !ledger.is_empty().map_err(err)? {
            busy.push(l.clone());
        }
    }
    if a.dry_run || busy.is_empty() {
        for l in &busy {
            match build::BuildLock::try_acquire(l).map_err(err)? {
                Some(_) => println!("{}", l.display()),
                None => println!("{}\t(build running)", l.display()),
            }
        }
        return Ok(());
    }
    let (session, region) = a.cloud.connect().await?;
    let glance = session.image(region.as_deref()).await.map_err(err)?;
    let outcome = if build::needs_openstack(&busy).map_err(err)? {
        let options = build::openstack_options(OpenStackBackendOptions {
            region: region.clone(),
            ..Default::default()
        });
        let b = OpenStackBackend::connect(session.clone(), options)
            .await
            .map_err(err)?;
        build::gc(&busy, &b, &glance).await
    } else {
        let b = LocalBackend::new(glance.clone(), LocalBackendOptions::new(state.join("vms")));
        build::gc(&busy, &b, &glance).await
    }
    .map_err(err)?;
    for r in &outcome.released {
        println!("released {r}");
    }
    for l in &outcome.running {
        eprintln!(
            "imagebuilder: {} left alone: its build is still running",
            l.display()
        );
    }
    if outcome.failed.is_empty() {
        Ok(())
    } else {
        Err(format!("not released: {}", outcome.failed.join("; ")))
    }
}

async fn run_build_all(a: BuildAllArgs, shutdown: cli_common::Shutdown) -> Result<(), String> {
    let images = build_all::load_images(&a.image_list, &a.flavor, &a.network).map_err(err)?;
    if a.list {
        for e in &images {
            let class = serde_json::to_value(build_all::class_of(&e.name)).map_err(err)?;
            println!("{}\t{}", e.name, class.as_str().unwrap_or_default());
        }
        return Ok(());
    }
    let sel = Selection {
        standard: a.standard,
        vgpu: a.vgpu,
        windows: a.windows,
        images: a.images.clone(),
    };
    let plan = build_all::plan(
        &images,
        &sel,
        &a.availability_zone,
        &a.template_base,
        &a.log_dir,
        a.timeout,
    )
    .map_err(err)?;
    if a.dry_run {
        println!("{}", serde_json::to_string_pretty(&plan).map_err(err)?);
        return Ok(());
    }
    let me = std::env::current_exe().map_err(err)?;
    let backend = match a.backend {
        Backend::Openstack => "openstack",
        Backend::Local => "local",
    };
    let extra = vec![
        "--backend".to_string(),
        backend.to_string(),
        "--log-dir".to_string(),
        a.log_dir.display().to_string(),
    ];
    // The first signal stops the running job (the child gets SIGTERM and
    // cleans up) and no other job starts.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let graceful = shutdown.graceful();
    tokio::spawn(async move {
        graceful.await;
        let _ = stop_tx.send(true);
    });
    let mut failed = Vec::new();
    for job in &plan.jobs {
        eprintln!("imagebuilder: building {}", job.name);
        let mut rx = stop_rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let end = build_all::run_job(
            Path::new(&me),
            job,
            &extra,
            plan.timeout_secs.map(Duration::from_secs),
            stop,
        )
        .await
        .map_err(err)?;
        match end {
            build_all::JobEnd::Succeeded => {}
            build_all::JobEnd::Failed => failed.push(job.name.clone()),
            build_all::JobEnd::Interrupted => {
                failed.push(job.name.clone());
                return Err(format!(
                    "interrupted by a signal during {}; failed builds: {}",
                    job.name,
                    failed.join(", ")
                ));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed builds: {}", failed.join(", ")))
    }
}
