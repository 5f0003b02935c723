//! The test gate on image-pipeline's compute backends (`[test-gate]
//! BACKEND = local` or `openstack`): the new image is booted as `ge-image
//! test` boots a release candidate — a fresh SSH key, the VM on the local
//! QEMU backend or as a Nova server, an SSH login required within
//! `BOOT_TIMEOUT`, then the optional test script in ge-image's sandbox
//! (`IP`, `USERNAME`, never as root, killed after `TIMEOUT`) — and the VM
//! deleted whatever happened.
//!
//! Each build name has its own folder under `WORK_DIR` (an image-pipeline
//! image folder: `test.sh`, `test.log`, `state.json`, the run's ledger).
//! Every VM, keypair, security group, floating IP and downloaded file is in
//! that ledger before it exists and released after the run, also after a
//! failure; records a killed run left are released before the next run.
//!
//! An image that does not boot, never accepts the login, or fails the test
//! script gets [`GateVerdict::Failed`]; a gate that cannot run (the cloud
//! unreachable, a file not writable) returns an error and the image is left
//! as built.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use image_pipeline::cleanup::release_all;
use image_pipeline::create::RunKey;
use image_pipeline::{
    BackendKind, ComputeBackend, ImageFolder, LocalBackend, LocalBackendOptions, OnError,
    OpenStackBackend, OpenStackBackendOptions, Pipeline, ResourceLedger, Settings,
};
use openstack_client::glance::GlanceClient;
use openstack_client::Session;
use sha2::{Digest, Sha256};
use tracing::{info, info_span, warn, Instrument};

use crate::error::{Error, Result};
use crate::gate::{GateBackend, GateConfig, GateImage, GateVerdict, ImageGate};

/// The `test.sh` of a gate without `TEST_SCRIPT`: the SSH login that comes
/// before it is the test.
pub const LOGIN_ONLY_SCRIPT: &str = "#!/bin/sh\n\
# packuilon test gate without TEST_SCRIPT: the SSH login before this script is the test.\n\
echo \"packuilon: $USERNAME@$IP accepted the SSH login\"\n";

/// Virtual CPUs of a gate's local VM: the workers of `THREAD_COUNT` gate
/// side by side, so each VM gets one host thread (not the host's CPUs,
/// `image_pipeline`'s default for a lone build).
pub const GATE_VM_CPUS: u32 = 1;

/// How the compute gate runs (from `[test-gate]`).
#[derive(Debug, Clone)]
pub struct ComputeGateSettings {
    /// `local` or `openstack`.
    pub backend: BackendKind,
    /// Where the per-build folders go (`WORK_DIR`).
    pub work_dir: PathBuf,
    /// Where `<build>.gate.log` is appended (`LOG_DIR`), if anywhere.
    pub log_dir: Option<PathBuf>,
    /// The test script (`TEST_SCRIPT`); `None`: the login alone.
    pub test_script: Option<PathBuf>,
    /// The image's login user (`LOGIN_USER`).
    pub login_user: String,
    /// Nova flavor (`FLAVOR`).
    pub flavor: String,
    /// Boot, then SSH login, each within this (`BOOT_TIMEOUT`).
    pub boot_timeout: Duration,
    /// The test script's limit (`TIMEOUT`).
    pub test_timeout: Duration,
    /// Memory of the local VM, MiB (`MEMORY_MIB`).
    pub memory_mib: u32,
    /// Who runs the test script when we are root (`TEST_USER`).
    pub test_user: String,
    /// The OpenStack backend's settings (region, network, floating IP, ...).
    pub openstack: OpenStackBackendOptions,
}

impl ComputeGateSettings {
    /// The settings of a `[test-gate]` section with a compute backend;
    /// `None` for `BACKEND = script`. `state_dir` and `log_dir` are
    /// `[rabbit2packer] STATE_DIR` and `LOG_DIR`.
    pub fn from_config(g: &GateConfig, state_dir: &Path, log_dir: &Path) -> Option<Self> {
        let backend = match g.backend {
            GateBackend::Script => return None,
            GateBackend::Local => BackendKind::Local,
            GateBackend::Openstack => BackendKind::Openstack,
        };
        let mut openstack = OpenStackBackendOptions {
            floating_ip: g.floating_ip.clone(),
            use_fixed_ip: g.use_fixed_ip,
            ..Default::default()
        };
        if let Some(n) = &g.network {
            openstack.network = n.clone();
        }
        if let Some(n) = &g.floating_network {
            openstack.floating_network = n.clone();
        }
        Some(ComputeGateSettings {
            backend,
            work_dir: g.work_dir.clone().unwrap_or_else(|| state_dir.join("gate")),
            log_dir: Some(log_dir.to_path_buf()),
            test_script: g.script.clone(),
            login_user: g.login_user.clone(),
            flavor: g.flavor.clone(),
            boot_timeout: Duration::from_secs(g.boot_timeout),
            test_timeout: Duration::from_secs(g.timeout),
            memory_mib: g.memory_mib,
            test_user: g.test_user.clone(),
            openstack,
        })
    }

    /// image-pipeline's settings for the test step: no tester VM, nothing
    /// kept after a failure, SSH attempts spread over `boot_timeout`.
    fn pipeline_settings(&self) -> Result<Settings> {
        // The built-in defaults only: /dev/null stands for the system file.
        let mut s = Settings::load_from(
            &image_pipeline::Overrides::default(),
            &[],
            Path::new("/dev/null"),
        )
        .map_err(pipeline_err("the test step's settings"))?;
        let interval = if self.backend == BackendKind::Local {
            5
        } else {
            10
        };
        s.backend = self.backend;
        s.flavor = self.flavor.clone();
        s.on_error = OnError::Cleanup;
        s.keep_on_failure = false;
        s.test_only = true;
        s.test_using_vm = false;
        s.test_user = self.test_user.clone();
        s.test_timeout_secs = self.test_timeout.as_secs().max(1);
        s.boot_timeout_secs = self.boot_timeout.as_secs().max(1);
        s.ssh_attempts = u32::try_from(self.boot_timeout.as_secs().div_ceil(interval))
            .unwrap_or(u32::MAX)
            .max(1);
        // The local VM's memory and CPUs go on the backend's options
        // (`check`): the pipeline itself never reads `local_*`.
        Ok(s)
    }
}

fn pipeline_err(operation: impl Into<String>) -> impl FnOnce(image_pipeline::Error) -> Error {
    let operation = operation.into();
    move |source| Error::Pipeline {
        operation,
        source: Box::new(source),
    }
}

/// The name of the folder (and, prefixed `test-`, of the VM) for `build`:
/// the build name when it is a usable VM name, else a cleaned, shortened
/// form with a hash of the whole name.
pub fn folder_name(build: &str) -> String {
    let usable = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !build.is_empty()
        && build.len() <= 40
        && build.chars().all(usable)
        && !build.starts_with(['.', '-'])
    {
        return build.to_string();
    }
    let cleaned: String = build
        .chars()
        .map(|c| if usable(c) { c } else { '-' })
        .take(31)
        .collect();
    let cleaned = cleaned.trim_start_matches(['.', '-']);
    let hash = hex::encode(&Sha256::digest(build.as_bytes())[..4]);
    if cleaned.is_empty() {
        format!("gate-{hash}")
    } else {
        format!("{cleaned}-{hash}")
    }
}

/// Whether a failed test step says the image is bad (it did not boot, or
/// refused the login) rather than that the gate could not run.
pub fn image_fault(e: &image_pipeline::Error) -> bool {
    use image_pipeline::Error as E;
    match e {
        E::ServerFailed { .. } | E::SshWait { .. } | E::SshAuth { .. } => true,
        E::WaitTimeout { kind, .. } => *kind == "server",
        E::LocalVm { source, .. } => matches!(
            **source,
            local_vm::Error::NoOs { .. }
                | local_vm::Error::NoSuchUser { .. }
                | local_vm::Error::BaseImage { .. }
                | local_vm::Error::DiedDuringBoot { .. }
                | local_vm::Error::NotActive { .. }
        ),
        _ => false,
    }
}

/// The gate on a compute backend (see the module comment).
#[derive(Debug, Clone)]
pub struct ComputeGate {
    session: Session,
    settings: ComputeGateSettings,
}

impl ComputeGate {
    /// A gate booting images through `session` (its Glance, and Nova and
    /// Neutron for the `openstack` backend).
    pub fn new(session: Session, settings: ComputeGateSettings) -> Self {
        ComputeGate { session, settings }
    }

    /// The settings.
    pub fn settings(&self) -> &ComputeGateSettings {
        &self.settings
    }

    /// The folder of `build`, with its `test.sh` (a copy of `TEST_SCRIPT`,
    /// or [`LOGIN_ONLY_SCRIPT`]) written afresh.
    fn prepare_folder(&self, build: &str) -> Result<ImageFolder> {
        let name = folder_name(build);
        let dir = self.settings.work_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let folder = ImageFolder::new(&self.settings.work_dir, &name)
            .map_err(pipeline_err("gate folder"))?;
        let script = folder.test_script();
        let _ = std::fs::remove_file(&script);
        match &self.settings.test_script {
            Some(src) => {
                std::fs::copy(src, &script).map_err(|e| Error::io(src, e))?;
            }
            None => {
                std::fs::write(&script, LOGIN_ONLY_SCRIPT).map_err(|e| Error::io(&script, e))?
            }
        }
        Ok(folder)
    }

    async fn run_on<B: ComputeBackend>(
        &self,
        backend: &B,
        glance: &GlanceClient,
        folder: &ImageFolder,
        image: &GateImage,
    ) -> Result<GateVerdict> {
        // Records a killed run left behind go first.
        let old =
            ResourceLedger::open(folder.ledger_path()).map_err(pipeline_err("gate ledger"))?;
        if !old
            .outstanding()
            .map_err(pipeline_err("gate ledger"))?
            .is_empty()
        {
            warn!(folder = %folder.dir().display(), "releasing what an earlier gate run left");
            let report = release_all(backend, glance, &old)
                .await
                .map_err(pipeline_err("release an earlier gate run's resources"))?;
            if !report.is_complete() {
                return Err(Error::Gate {
                    image: image.id.clone(),
                    message: format!(
                        "resources of an earlier gate run could not be released ({}); see {}",
                        report.failed.join("; "),
                        old.path().display()
                    ),
                });
            }
        }
        drop(old);
        let settings = self.settings.pipeline_settings()?;
        let pipeline = Pipeline {
            backend,
            glance,
            settings: &settings,
            folder,
            verbose: false,
        };
        let ledger = folder
            .open_ledger_for_run()
            .map_err(pipeline_err("gate ledger"))?;
        let key = RunKey::generate(folder).map_err(pipeline_err("gate SSH key"))?;
        let outcome = image_pipeline::test_run::run_test_step(
            &pipeline,
            &image.id,
            None,
            &self.settings.login_user,
            &key,
            &ledger,
        )
        .await;
        // Whatever happened, nothing stays: release what is still recorded.
        let cleanup = match release_all(backend, glance, &ledger).await {
            Ok(r) if r.is_complete() => None,
            Ok(r) => Some(format!(
                "clean-up incomplete ({}); the records stay in {}",
                r.failed.join("; "),
                ledger.path().display()
            )),
            Err(e) => Some(format!("clean-up failed: {e}")),
        };
        if let Some(c) = &cleanup {
            warn!(image = %image.id, problem = %c, "test gate clean-up");
        }
        self.keep_log(folder, image);
        match outcome {
            Ok(o) if o.success => {
                info!(image = %image.id, "test gate passed: SSH login and test script");
                Ok(GateVerdict::Passed)
            }
            Ok(o) => {
                let tail = image_pipeline::folder::log_tail(&o.log, 15);
                Ok(GateVerdict::Failed(format!(
                    "test script {} on the {} backend; last lines:\n{tail}",
                    o.detail, self.settings.backend
                )))
            }
            Err(e) if image_fault(&e) => Ok(GateVerdict::Failed(format!(
                "no SSH login on the {} backend: {e}",
                self.settings.backend
            ))),
            Err(e) => Err(Error::Gate {
                image: image.id.clone(),
                message: match cleanup {
                    Some(c) => format!("{e}; {c}"),
                    None => e.to_string(),
                },
            }),
        }
    }

    /// Append the folder's `test.log` to `LOG_DIR/<build>.gate.log`.
    fn keep_log(&self, folder: &ImageFolder, image: &GateImage) {
        let Some(dir) = &self.settings.log_dir else {
            return;
        };
        let text = std::fs::read_to_string(folder.test_log()).unwrap_or_default();
        let path = dir.join(format!("{}.gate.log", image.build));
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            writeln!(
                f,
                "packuilon: test gate of image {} on the {} backend at {}",
                image.id,
                self.settings.backend,
                chrono::Utc::now().to_rfc3339()
            )?;
            f.write_all(text.as_bytes())
        });
        if let Err(e) = written {
            warn!(file = %path.display(), error = %e, "cannot keep the test gate's log");
        }
    }
}

#[async_trait]
impl ImageGate for ComputeGate {
    async fn check(&self, image: &GateImage) -> Result<GateVerdict> {
        let span = info_span!("test_gate", image = %image.id, build = %image.build, backend = %self.settings.backend);
        async {
            let folder = self.prepare_folder(&image.build)?;
            let region = self.settings.openstack.region.as_deref();
            let glance = self
                .session
                .image(region)
                .await
                .map_err(|e| Error::OpenStack {
                    operation: "find the image service".into(),
                    source: Box::new(e),
                })?;
            match self.settings.backend {
                BackendKind::Local => {
                    let work = folder.work_dir().map_err(pipeline_err("gate folder"))?;
                    let mut opts = LocalBackendOptions::new(work.join("vms"));
                    // The image is booted once: its download goes with the folder's
                    // run, not into the shared base cache.
                    let cache = work.join("cache");
                    opts.cache_dir = cache.clone();
                    opts.memory_mib = self.settings.memory_mib;
                    opts.cpus = GATE_VM_CPUS;
                    let backend = LocalBackend::new(glance.clone(), opts);
                    let verdict = self.run_on(&backend, &glance, &folder, image).await;
                    if let Err(e) = std::fs::remove_dir_all(&cache) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            warn!(dir = %cache.display(), error = %e, "cannot remove the gate's image copy");
                        }
                    }
                    verdict
                }
                BackendKind::Openstack => {
                    let backend =
                        OpenStackBackend::connect(self.session.clone(), self.settings.openstack.clone())
                            .await
                            .map_err(pipeline_err("connect to Nova and Neutron"))?;
                    self.run_on(&backend, &glance, &folder, image).await
                }
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_are_usable_vm_names() {
        assert_eq!(folder_name("web-sl7x-x86_64"), "web-sl7x-x86_64");
        assert_eq!(folder_name("host.example.org"), "host.example.org");
        let odd = folder_name("sl7x-x86_64 web AQ");
        assert!(odd.starts_with("sl7x-x86_64-web-AQ-"), "{odd}");
        let long = folder_name(&"a".repeat(100));
        assert!(long.len() <= 40, "{long}");
        assert_ne!(folder_name(&"a".repeat(100)), folder_name(&"a".repeat(101)));
        assert!(folder_name("..").starts_with("gate-"));
    }

    #[test]
    fn settings_follow_the_section() {
        let mut problems = vec![];
        let g = GateConfig::read(
            |k| match k {
                "BACKEND" => Some("openstack".into()),
                "BOOT_TIMEOUT" => Some("60".into()),
                _ => None,
            },
            |k, m| Error::Gate {
                image: k.into(),
                message: m,
            },
            Some("m1.small".into()),
            Some("net-1".into()),
            &mut problems,
        );
        assert!(problems.is_empty());
        let s = ComputeGateSettings::from_config(&g, Path::new("/var/lib/p"), Path::new("/log"))
            .unwrap();
        assert_eq!(s.backend, BackendKind::Openstack);
        assert_eq!(s.flavor, "m1.small");
        assert_eq!(s.openstack.network, "net-1");
        assert_eq!(s.work_dir, Path::new("/var/lib/p/gate"));
        assert_eq!(s.login_user, "root");
        // A misspelt backend is one problem (not also a missing TEST_SCRIPT).
        let mut problems = vec![];
        let g = GateConfig::read(
            |k| (k == "BACKEND").then(|| "qemu".to_string()),
            |k, m| Error::Gate {
                image: k.into(),
                message: m,
            },
            None,
            None,
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].to_string().contains("BACKEND"));
        assert_eq!(
            (g.backend, g.flavor.as_str()),
            (GateBackend::Script, "m1.tiny")
        );
        let p = s.pipeline_settings().unwrap();
        assert_eq!(p.ssh_attempts, 6);
        assert_eq!(p.boot_timeout_secs, 60);
        assert!(!p.keep_on_failure && !p.test_using_vm);
    }
}
