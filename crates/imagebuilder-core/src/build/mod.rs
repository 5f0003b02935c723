//! `imagebuilder build`: boot the source image on a compute backend, run
//! the template's provisioners over SSH (natively, or the real `packer
//! build` with `--packer`), snapshot, and publish: with `-d` the compressed
//! `<download_dir>/<name>-YYYYMMDD.qcow2`, its md5 file, the `-latest`
//! links and the two-build rotation; without `-d` a private Glance image
//! named after the build (Packer's artifact). Every temporary resource
//! (VM, keypair, security group, snapshot, files) is in the build's
//! ledger before it exists and is released whatever happens.
//!
//! The temporary keypair and security group are named as the original's,
//! `imagebuilder-<uuid hex>` (the build id, also the VM's name): the
//! OpenStack backend is made with [`openstack_options`].
//!
//! A SIGINT/SIGTERM (the `stop` future of [`apply_until`]) stops the build
//! at the next safe point: the waits (VM ready, SSH), the provisioners,
//! compression and upload are abandoned at once; a VM boot, power-off or
//! snapshot (libguestfs and QEMU work that must not be torn off) finish
//! first. The clean-up, the `-x` purge and the report follow as after any
//! failure. A SIGKILLed build leaves its ledger: the next build of that
//! name, or `imagebuilder gc` ([`gc`]), releases what it lists.
//!
//! Decide, then act: [`plan`] computes a [`BuildPlan`] with no I/O but
//! reading the template; [`apply`] runs it.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use image_pipeline::cleanup::release_all;
use image_pipeline::{
    AccessProfile, BackendKind, ChangedKeyPolicy, ComputeBackend, KnownHosts,
    OpenStackBackendOptions, ResourceKind, ResourceLedger, SshKey, SshTarget, VmSpec, WaitPolicy,
};
use openstack_client::glance::{CreateImage, GlanceClient, Visibility};
use serde::Serialize;

use crate::config::Dirs;
use crate::error::{io_err, os_err, Error, Result};
use crate::output::{self, Published};
use crate::provision::{self, BuildLog, Connection};
use crate::report::{self, ReportPaths};
use crate::template::{Resolved, Template};

mod ledger;
mod manifest;
mod stop;

pub use ledger::{gc, ledgers, needs_openstack, BuildLock, GcOutcome};
pub use manifest::{manifest_artifact, write_manifest};
use stop::Stop;

/// Prefix of the build id: the VM, the temporary keypair and security
/// group are `imagebuilder-<uuid hex>`, as the original's.
pub const NAME_PREFIX: &str = "imagebuilder";

/// `options` with the OpenStack backend naming its temporary keypair and
/// security group after the build (`imagebuilder-<uuid hex>`, the VM's
/// name) instead of ge-image's `ge-image-<vm>-<run id>`.
pub fn openstack_options(options: OpenStackBackendOptions) -> OpenStackBackendOptions {
    OpenStackBackendOptions {
        name_prefix: Some(NAME_PREFIX.to_string()),
        ..options
    }
}

/// How the local backend hands the build VM its SSH key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LocalKey {
    /// libguestfs writes `authorized_keys` into the disk: any Linux image,
    /// one appliance launch per build.
    #[default]
    Guestfs,
    /// systemd's `tmpfiles.extra` credential over SMBIOS: no appliance
    /// launch; the image needs systemd 252 or later (Debian 12, RHEL 10).
    SystemdCredential,
}

/// The local backend's options for a build: VM directories under
/// `work_dir`, the key handed over as `key` says.
pub fn local_options(work_dir: PathBuf, key: LocalKey) -> image_pipeline::LocalBackendOptions {
    let mut o = image_pipeline::LocalBackendOptions::new(work_dir);
    o.key_injection = match key {
        LocalKey::Guestfs => local_vm::KeyInjection::Guestfs,
        LocalKey::SystemdCredential => local_vm::KeyInjection::SystemdCredential,
    };
    o
}

/// The variables the original passes to `packer build`, in its order.
pub const ORIGINAL_VARIABLES: &[&str] = &[
    "image_name",
    "ssh_username",
    "security_group",
    "flavor",
    "network",
    "source_image",
    "ssh_keypair_name",
    "ssh_key_path",
    "availability_zone",
    "provision_script",
    "manifest_path",
];

/// The options of `imagebuilder build` (the original's, plus ours).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `-a`: availability zone.
    pub availability_zone: String,
    /// `-n`: image name.
    pub name: String,
    /// `-s`: source image name or id.
    pub source_image: String,
    /// `-u`: SSH user.
    pub ssh_user: String,
    /// `-f`: flavor.
    pub flavor: String,
    /// `-N`: network name.
    pub network: String,
    /// `-p`: provision script.
    pub provision_script: String,
    /// `-d`: download (publish the qcow2 files) after the build.
    pub download: bool,
    /// `-x`: delete the source image afterwards.
    pub purge_source: bool,
    /// `--packer`: run the real `packer build`.
    pub packer: bool,
    /// Compute backend.
    pub backend: BackendKind,
    /// Template and download directories.
    pub dirs: Dirs,
    /// Extra template variables (`--var KEY=VALUE`), winning over ours.
    pub extra_vars: BTreeMap<String, String>,
    /// State directory (ledgers, VM directories).
    pub state_dir: PathBuf,
    /// The JSONL report and plain log, when `IMAGEBUILDER_REPORT=true`.
    pub report: Option<ReportPaths>,
    /// The build date, `YYYYMMDD` (local time, as `date +%Y%m%d`).
    pub date: String,
    /// Directory relative template paths are resolved from.
    pub cwd: PathBuf,
    /// Copy the build log to stderr as it grows (`-v`).
    pub verbose: bool,
}

/// How the provisioners run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Mode {
    /// Natively over SSH.
    Native(Resolved),
    /// `packer build` with these arguments (after `packer`).
    Packer {
        /// The arguments.
        args: Vec<String>,
    },
}

/// Where `-d` publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadPlan {
    /// The download directory.
    pub dir: PathBuf,
    /// `<dir>/<name>-YYYYMMDD.qcow2`.
    pub image: PathBuf,
    /// `<dir>/<name>-YYYYMMDD.md5`.
    pub md5: PathBuf,
    /// `<dir>/<name>-latest.qcow2`.
    pub latest: PathBuf,
    /// Dated builds kept.
    pub keep: usize,
}

/// Everything a build will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    /// Image name.
    pub name: String,
    /// Source image (name or id, resolved in Glance when applied).
    pub source_image: String,
    /// SSH user.
    pub ssh_user: String,
    /// Flavor.
    pub flavor: String,
    /// Network (name).
    pub network: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Compute backend.
    pub backend: BackendKind,
    /// The template file.
    pub template: PathBuf,
    /// The per-build name of the VM and of the temporary keypair and
    /// security group (`imagebuilder-<hex>`).
    pub build_id: String,
    /// The template variables.
    pub variables: BTreeMap<String, String>,
    /// How provisioners run.
    pub mode: Mode,
    /// Publishing with `-d`.
    pub download: Option<DownloadPlan>,
    /// Delete the source image afterwards (`-x`).
    pub purge_source: bool,
    /// The report and its log.
    pub report: Option<ReportPaths>,
    /// The build's work directory (key, known_hosts, logs, manifest).
    pub work_dir: PathBuf,
    /// The build's ledger.
    pub ledger: PathBuf,
}

impl BuildPlan {
    /// The plan as `--dry-run` prints it (pretty JSON).
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// What a finished build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildOutcome {
    /// The artifact: a Glance image id, or the published qcow2 path.
    pub artifact_id: String,
    /// The published files with `-d`.
    pub published: Option<Published>,
    /// The manifest written, if the template has a manifest post-processor.
    pub manifest: Option<PathBuf>,
}

/// Compute the plan of a build (reads the template only).
pub fn plan(o: &BuildOptions) -> Result<BuildPlan> {
    if o.name.is_empty() || o.name.contains('/') {
        return Err(Error::Config(format!(
            "option -n: '{}' is not a usable image name",
            o.name
        )));
    }
    let template_file = o.dirs.template_dir.join("template");
    let build_id = format!("{NAME_PREFIX}-{}", uuid::Uuid::new_v4().simple());
    let work_dir = o.state_dir.join("work").join(&build_id);
    let mut variables = BTreeMap::new();
    for (k, v) in [
        ("image_name", o.name.clone()),
        ("ssh_username", o.ssh_user.clone()),
        ("security_group", build_id.clone()),
        ("flavor", o.flavor.clone()),
        ("network", o.network.clone()),
        ("source_image", o.source_image.clone()),
        ("ssh_keypair_name", build_id.clone()),
        (
            "ssh_key_path",
            work_dir.join(&build_id).display().to_string(),
        ),
        ("availability_zone", o.availability_zone.clone()),
        ("provision_script", o.provision_script.clone()),
        (
            "manifest_path",
            work_dir.join("packer-manifest.json").display().to_string(),
        ),
    ] {
        variables.insert(k.to_string(), v);
    }
    for (k, v) in &o.extra_vars {
        variables.insert(k.clone(), v.clone());
    }
    let mode = if o.packer {
        if !template_file.is_file() {
            return Err(Error::Config(format!(
                "template {} does not exist",
                template_file.display()
            )));
        }
        let mut args = vec!["build".to_string(), "-color=false".to_string()];
        // The original's order, then the extra variables.
        let mut keys: Vec<&str> = ORIGINAL_VARIABLES.to_vec();
        keys.extend(
            o.extra_vars
                .keys()
                .map(String::as_str)
                .filter(|k| !ORIGINAL_VARIABLES.contains(k)),
        );
        for k in keys {
            args.push("--var".into());
            args.push(format!(
                "{k}={}",
                variables.get(k).map(String::as_str).unwrap_or_default()
            ));
        }
        args.push(template_file.display().to_string());
        Mode::Packer { args }
    } else {
        let t = Template::load(&template_file)?;
        Mode::Native(t.resolve(&variables, &o.cwd)?)
    };
    let download = o.download.then(|| DownloadPlan {
        dir: o.dirs.download_dir.clone(),
        image: output::dated_image(&o.dirs.download_dir, &o.name, &o.date),
        md5: o
            .dirs
            .download_dir
            .join(format!("{}-{}.md5", o.name, o.date)),
        latest: o.dirs.download_dir.join(format!("{}-latest.qcow2", o.name)),
        keep: output::KEEP_BUILDS,
    });
    Ok(BuildPlan {
        name: o.name.clone(),
        source_image: o.source_image.clone(),
        ssh_user: o.ssh_user.clone(),
        flavor: o.flavor.clone(),
        network: o.network.clone(),
        availability_zone: o.availability_zone.clone(),
        backend: o.backend,
        template: template_file,
        ledger: o.state_dir.join(format!("{}.ledger.jsonl", o.name)),
        build_id,
        variables,
        mode,
        download,
        purge_source: o.purge_source,
        report: o.report.clone(),
        work_dir,
    })
}

/// Run a plan on `backend`, then write the report (when enabled): the
/// exit code and log, then `success` or `failed`. Temporary resources are
/// released whatever happens; the work directory is removed.
pub async fn apply<B: ComputeBackend>(
    plan: &BuildPlan,
    backend: &B,
    glance: &GlanceClient,
    verbose: bool,
) -> Result<BuildOutcome> {
    apply_until(plan, backend, glance, verbose, std::future::pending()).await
}

/// [`apply`], stopped at the next safe point when `stop` resolves
/// (SIGINT/SIGTERM): the build fails with [`Error::Interrupted`] after the
/// same clean-up, `-x` purge and report as any failed build.
pub async fn apply_until<B: ComputeBackend>(
    plan: &BuildPlan,
    backend: &B,
    glance: &GlanceClient,
    verbose: bool,
    stop: impl Future<Output = ()> + Send,
) -> Result<BuildOutcome> {
    let mut stop = Stop::new(stop);
    let _running = BuildLock::acquire(&plan.ledger, &plan.name)?;
    let ledger = ResourceLedger::open(&plan.ledger)?;
    // A killed earlier build of this name left records: release them first.
    let mut released_leftovers = Vec::new();
    if !ledger.is_empty()? {
        tracing::info!("releasing what an interrupted earlier build left behind");
        let r = release_all(backend, glance, &ledger).await?;
        if !r.is_complete() {
            return Err(Error::Config(format!(
                "cannot release the leftovers of an earlier build ({}); see {}",
                r.failed.join("; "),
                plan.ledger.display()
            )));
        }
        released_leftovers = r.released;
    }
    // The work directory holds the build's private key (and the log when
    // there is no report): in the ledger before it exists, so a killed
    // build's copy goes with the rest.
    let work_key = ledger.intent(
        ResourceKind::File,
        &plan.work_dir.display().to_string(),
        "local-file",
        None,
    )?;
    std::fs::create_dir_all(&plan.work_dir).map_err(io_err("creating", &plan.work_dir))?;
    ledger.created(work_key, &plan.work_dir.display().to_string())?;
    let log_path = match &plan.report {
        Some(r) => {
            if let Some(d) = r.log.parent() {
                std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
            }
            r.log.clone()
        }
        None => plan.work_dir.join("build.log"),
    };
    let log = BuildLog::create(&log_path, verbose)?;
    if !released_leftovers.is_empty() {
        log.say(&format!(
            "Released what an interrupted earlier build left behind: {}",
            released_leftovers.join(", ")
        ));
    }
    // With -x the source image goes whatever happens, killed build included:
    // it is in the ledger (released last: it is its oldest record).
    let mut purge_error = None;
    if plan.purge_source {
        match glance.find_image(&plan.source_image).await {
            Ok(img) => {
                let k = ledger.intent(
                    ResourceKind::Image,
                    &plan.source_image,
                    image_pipeline::cleanup::GLANCE,
                    glance.region(),
                )?;
                ledger.created(k, &img.id)?;
            }
            Err(e) => {
                purge_error = Some(os_err(format!(
                    "finding source image {} (option -x)",
                    plan.source_image
                ))(e));
            }
        }
    }
    let result = run(plan, backend, glance, &ledger, &log, &mut stop).await;
    if stop.fired {
        log.say("Interrupted: stopping the build and cleaning up...");
    }
    if plan.purge_source && purge_error.is_none() {
        log.say(&format!("Removing source image {}", plan.source_image));
    }
    let cleanup = release_all(backend, glance, &ledger).await;
    let mut result = match (result, cleanup) {
        (Ok(o), Ok(c)) if c.is_complete() => Ok(o),
        (Ok(_), Ok(c)) => Err(Error::Config(format!(
            "temporary resources left: {} (see {})",
            c.failed.join("; "),
            plan.ledger.display()
        ))),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), Ok(c)) if c.is_complete() => Err(e),
        (Err(e), Ok(c)) => Err(Error::Config(format!(
            "{e}; temporary resources left: {} (see {})",
            c.failed.join("; "),
            plan.ledger.display()
        ))),
        (Err(e), Err(c)) => Err(Error::Config(format!("{e}; clean-up failed: {c}"))),
    };
    if let Some(e) = purge_error {
        log.say("Failed to delete source image");
        if result.is_ok() {
            result = Err(e);
        }
    }
    match &result {
        Ok(_) => log.say("Build finished"),
        Err(e) => log.say(&format!("Build failed: {e}")),
    }
    if let Some(r) = &plan.report {
        let code = if result.is_ok() { 0 } else { 1 };
        report::write_start(&r.report, code, &log.text())?;
        report::append_result(&r.report, result.is_ok())?;
    }
    result
}

async fn run<B: ComputeBackend>(
    plan: &BuildPlan,
    backend: &B,
    glance: &GlanceClient,
    ledger: &ResourceLedger,
    log: &BuildLog,
    stop: &mut Stop<'_>,
) -> Result<BuildOutcome> {
    let resolved = match &plan.mode {
        Mode::Native(r) => r,
        Mode::Packer { .. } => {
            return Err(Error::Config(
                "--packer runs through packer_build, not the compute backend".into(),
            ))
        }
    };
    let source = glance
        .find_image(&plan.source_image)
        .await
        .map_err(os_err(format!(
            "finding source image '{}' (option -s)",
            plan.source_image
        )))?;
    log.say(&format!("Creating temporary keypair: {}", plan.build_id));
    let (key, public) = SshKey::generate_ed25519(&plan.build_id)?;
    let key_file = plan.work_dir.join(&plan.build_id);
    key.write_private(&key_file)?;
    let known_hosts =
        KnownHosts::new(plan.work_dir.join("known_hosts")).with_policy(ChangedKeyPolicy::Replace);
    let spec = VmSpec {
        name: plan.build_id.clone(),
        image_id: source.id.clone(),
        flavor: plan.flavor.clone(),
        login_user: plan.ssh_user.clone(),
        public_key: public,
        access: AccessProfile::SshOnly,
        tcp_ports: Vec::new(),
    };
    log.say(&format!(
        "Launching server {} from {} ({}) on the {} backend...",
        plan.build_id,
        source.name.as_deref().unwrap_or(""),
        source.id,
        backend.name()
    ));
    stop.check()?;
    // Not abandoned half-way (libguestfs injects the key, QEMU starts): a
    // stop is seen once it is done.
    let vm = backend.boot(&spec, ledger).await?;
    let outcome = provision_and_snapshot(
        plan,
        resolved,
        backend,
        &vm,
        ledger,
        log,
        (key, known_hosts),
        stop,
    )
    .await;
    let snapshot = match outcome {
        Ok(s) => s,
        Err(e) => {
            if let Ok(console) = backend.console_log(&vm).await {
                tracing::debug!(%console, "console of the failed build VM");
            }
            log.say("Deleting the build server...");
            if let Err(d) = backend.delete(vm, ledger).await {
                tracing::warn!(error = %d, "deleting the build VM failed; the ledger release retries");
            }
            return Err(e);
        }
    };
    log.say("Deleting the build server...");
    backend.delete(vm, ledger).await?;
    let (artifact_id, published) = match &plan.download {
        Some(d) => {
            std::fs::create_dir_all(&d.dir).map_err(io_err("creating", &d.dir))?;
            let part = PathBuf::from(format!("{}.part", d.image.display()));
            let k = ledger.intent(
                ResourceKind::File,
                &part.display().to_string(),
                "local-file",
                None,
            )?;
            log.say(&format!("Compressing the image into {}", d.image.display()));
            stop.race(output::compress(&snapshot, &part)).await?;
            std::fs::rename(&part, &d.image).map_err(io_err("renaming", &part))?;
            ledger.released(k)?;
            let published = output::finish(&d.dir, &plan.name, &d.image)?;
            log.say(&format!(
                "Image published: {} (md5 {})",
                d.image.display(),
                published.md5
            ));
            (d.image.display().to_string(), Some(published))
        }
        None => {
            let k = ledger.intent(
                ResourceKind::Image,
                &plan.name,
                image_pipeline::cleanup::GLANCE,
                glance.region(),
            )?;
            let req = CreateImage::new(&plan.name)
                .disk_format("qcow2")
                .container_format("bare")
                .visibility(Visibility::Private);
            let image = glance
                .create_image(&req)
                .await
                .map_err(os_err(format!("creating image '{}'", plan.name)))?;
            ledger.created(k, &image.id)?;
            stop.race(async {
                glance
                    .upload_file(&image.id, &snapshot)
                    .await
                    .map_err(os_err(format!("uploading image {}", image.id)))
            })
            .await?;
            // The artifact is the operator's now.
            ledger.released(k)?;
            log.say(&format!("An image was created: {}", image.id));
            (image.id, None)
        }
    };
    let manifest = match &resolved.manifest_output {
        Some(path) => {
            let p = PathBuf::from(path);
            write_manifest(&p, resolved, &artifact_id, published.as_ref())?;
            Some(p)
        }
        None => None,
    };
    Ok(BuildOutcome {
        artifact_id,
        published,
        manifest,
    })
}

#[allow(clippy::too_many_arguments)]
async fn provision_and_snapshot<B: ComputeBackend>(
    plan: &BuildPlan,
    resolved: &Resolved,
    backend: &B,
    vm: &B::Vm,
    ledger: &ResourceLedger,
    log: &BuildLog,
    (key, known_hosts): (SshKey, KnownHosts),
    stop: &mut Stop<'_>,
) -> Result<PathBuf> {
    let local = backend.name() == "local";
    let addr = stop
        .race(async { Ok(backend.wait_ready(vm, Duration::from_secs(900)).await?) })
        .await?;
    known_hosts.forget(&addr.ssh_host, addr.ssh_port)?;
    log.say(&format!(
        "Waiting for SSH to become available on {}...",
        addr.ip
    ));
    let target = SshTarget {
        host: addr.ssh_host.clone(),
        port: addr.ssh_port,
        user: plan.ssh_user.clone(),
        key,
    };
    let policy = WaitPolicy {
        initial_delay: Duration::ZERO,
        attempts: 60,
        interval: Duration::from_secs(if local { 5 } else { 10 }),
    };
    let mut conn = Connection::new(target, known_hosts, policy);
    stop.race(async { conn.session().await.map(|_| ()) })
        .await?;
    log.say("Connected to SSH!");
    let steps = stop
        .race(provision::run_steps(
            &resolved.steps,
            &mut conn,
            resolved.ssh_pty,
            &plan.work_dir,
            log,
        ))
        .await;
    conn.close().await;
    steps?;
    log.say("Stopping server...");
    // Power-off and snapshot run to their end; a stop is seen between them.
    backend.power_off(vm, Duration::from_secs(300)).await?;
    stop.check()?;
    log.say("Creating the image...");
    let snapshot = plan.work_dir.join(format!("{}.snapshot.qcow2", plan.name));
    Ok(backend.snapshot_to_file(vm, &snapshot, ledger).await?)
}
