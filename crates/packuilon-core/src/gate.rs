//! The test gate between a successful build and the rotation of old
//! images: the new image must pass it, or it is renamed
//! `Broken-<name>-<date>`, made private, and the build counts as failed.
//!
//! [`ImageGate`] is the plug-in point. [`ScriptGate`] (`BACKEND = script`,
//! the default) runs a configured test command (`[test-gate] TEST_SCRIPT`)
//! on this machine with the image id in its environment;
//! [`crate::compute_gate::ComputeGate`] (`BACKEND = local` or `openstack`)
//! boots the image on image-pipeline's compute backends, requires an SSH
//! login and runs the optional test script against the VM, as `ge-image
//! test` does. [`GateConfig`] is the `[test-gate]` section.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{info, warn};

use crate::error::{Error, Result};

/// Where the gate tests a new image (`[test-gate] BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GateBackend {
    /// `script` (the default): `TEST_SCRIPT` runs on this machine with
    /// `PACKUILON_IMAGE_ID`; it boots the image itself if it wants to.
    #[default]
    Script,
    /// `local`: the image boots in a local QEMU VM (image-pipeline's local
    /// backend; the image is downloaded from Glance).
    Local,
    /// `openstack`: the image boots as a Nova server (image-pipeline's
    /// OpenStack backend: temporary keypair, security group, floating IP).
    Openstack,
}

/// `[test-gate]` (ours): the test every new image must pass before the
/// rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    /// `BACKEND`: `script` (default), `local` or `openstack`.
    pub backend: GateBackend,
    /// `TEST_SCRIPT`: required with `BACKEND = script` (run with
    /// `PACKUILON_IMAGE_ID`, exit 0 passes); optional on a compute backend
    /// (run as ge-image runs `test.sh`: with `IP` and `USERNAME`, never as
    /// root, `ssh`/`scp` set up for the VM; without it the SSH login alone
    /// is the test).
    pub script: Option<PathBuf>,
    /// `TIMEOUT`, seconds, default 1800: the test script's time limit.
    pub timeout: u64,
    /// `BOOT_TIMEOUT`, seconds, default 900: how long the VM may take to
    /// boot, and then to accept the SSH login (compute backends).
    pub boot_timeout: u64,
    /// `LOGIN_USER`, default `root` (the original templates' `ssh_username`).
    pub login_user: String,
    /// `FLAVOR`, default `[global] FLAVOR_NAME`, else `m1.tiny` (the
    /// original's Rally task); OpenStack only.
    pub flavor: String,
    /// `NETWORK` (name or id), default `[global] NETWORK_ID`, else the
    /// backend's default; OpenStack only.
    pub network: Option<String>,
    /// `FLOATING_NETWORK`: where a floating IP is allocated from; OpenStack only.
    pub floating_network: Option<String>,
    /// `FLOATING_IP`: an existing floating IP to use (never released).
    pub floating_ip: Option<String>,
    /// `USE_FIXED_IP`: reach the VM at its fixed address, no floating IP.
    pub use_fixed_ip: bool,
    /// `MEMORY_MIB`, default 1024: memory of the local VM.
    pub memory_mib: u32,
    /// `WORK_DIR`, default `STATE_DIR/gate`: one folder per build name (the
    /// VM, its ledger, the test log).
    pub work_dir: Option<PathBuf>,
    /// `CLOUD`: the clouds.yaml cloud to boot in; default the `OS_*`
    /// variables of `PACKER_ADMIN_AUTH`.
    pub cloud: Option<String>,
    /// `TEST_USER`, default `nobody`: who runs the test script when
    /// rabbit2packer runs as root.
    pub test_user: String,
}

impl GateConfig {
    /// Read the `[test-gate]` section through `get` (a key's raw value);
    /// `bad` makes the error naming a key. `flavor_name` and `network_id`
    /// are `[global] FLAVOR_NAME`/`NETWORK_ID` (the fork's keys), the
    /// defaults of `FLAVOR`/`NETWORK`. Every problem is pushed to
    /// `problems`; a bad value is replaced by its default.
    pub fn read(
        get: impl Fn(&str) -> Option<String>,
        bad: impl Fn(&str, String) -> Error,
        flavor_name: Option<String>,
        network_id: Option<String>,
        problems: &mut Vec<Error>,
    ) -> GateConfig {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let backend = match get("BACKEND").as_deref() {
            None | Some("script") => Some(GateBackend::Script),
            Some("local") => Some(GateBackend::Local),
            Some("openstack") => Some(GateBackend::Openstack),
            Some(_) => {
                problems.push(bad("BACKEND", "neither script, local nor openstack".into()));
                None
            }
        };
        let script = get("TEST_SCRIPT").map(PathBuf::from);
        if script.is_none() && backend == Some(GateBackend::Script) {
            problems.push(bad(
                "TEST_SCRIPT",
                "missing: the [test-gate] section needs a test command (or BACKEND = local or openstack)"
                    .into(),
            ));
        }
        let mut seconds = |key: &str, default: u64| match get(key) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    problems.push(bad(key, "not a positive number of seconds".into()));
                    default
                }
            },
        };
        let timeout = seconds("TIMEOUT", 1800);
        let boot_timeout = seconds("BOOT_TIMEOUT", 900);
        let use_fixed_ip = match get("USE_FIXED_IP").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                problems.push(bad("USE_FIXED_IP", "neither true nor false".into()));
                false
            }
        };
        let memory_mib = match get("MEMORY_MIB") {
            None => 1024,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 128 => n,
                _ => {
                    problems.push(bad(
                        "MEMORY_MIB",
                        "not a whole number of MiB, at least 128".into(),
                    ));
                    1024
                }
            },
        };
        GateConfig {
            backend: backend.unwrap_or_default(),
            script,
            timeout,
            boot_timeout,
            login_user: get("LOGIN_USER").unwrap_or_else(|| "root".into()),
            flavor: get("FLAVOR")
                .or(flavor_name.filter(|v| !v.trim().is_empty()))
                .unwrap_or_else(|| "m1.tiny".into()),
            network: get("NETWORK").or(network_id.filter(|v| !v.trim().is_empty())),
            floating_network: get("FLOATING_NETWORK"),
            floating_ip: get("FLOATING_IP"),
            use_fixed_ip,
            memory_mib,
            work_dir: get("WORK_DIR").map(PathBuf::from),
            cloud: get("CLOUD"),
            test_user: get("TEST_USER").unwrap_or_else(|| "nobody".into()),
        }
    }
}

/// The image a gate tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateImage {
    /// Glance image id.
    pub id: String,
    /// The build name.
    pub build: String,
}

/// A gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateVerdict {
    /// The image may replace the old ones.
    Passed,
    /// The image is broken, with why.
    Failed(String),
}

/// A test every new image must pass before old images are rotated.
#[async_trait]
pub trait ImageGate: Send + Sync + std::fmt::Debug {
    /// Test `image`. An `Err` is a gate that could not run (counted as a
    /// failure by the service, the image left as built).
    async fn check(&self, image: &GateImage) -> Result<GateVerdict>;
}

/// Runs a test command with `PACKUILON_IMAGE_ID` and `PACKUILON_BUILD` in
/// its environment (and the admin credentials' variables, for the
/// OpenStack CLI or an SSH test); exit 0 passes; killed after `timeout`.
#[derive(Debug, Clone)]
pub struct ScriptGate {
    /// `TEST_SCRIPT`.
    pub script: PathBuf,
    /// `TIMEOUT` (seconds in config.ini, default 1800).
    pub timeout: Duration,
    /// Extra environment (the admin credentials).
    pub env: Vec<(String, String)>,
    /// Where the script's output goes (appended), if anywhere.
    pub log_dir: Option<PathBuf>,
}

#[async_trait]
impl ImageGate for ScriptGate {
    async fn check(&self, image: &GateImage) -> Result<GateVerdict> {
        let spawn_err = |source| Error::Spawn {
            build: image.build.clone(),
            program: self.script.clone(),
            source,
        };
        let (stdout, stderr) = match &self.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                let path = dir.join(format!("{}.gate.log", image.build));
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                let g = f.try_clone().map_err(|e| Error::io(&path, e))?;
                (Stdio::from(f), Stdio::from(g))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let mut child = tokio::process::Command::new(&self.script)
            .envs(self.env.iter().cloned())
            .env("PACKUILON_IMAGE_ID", &image.id)
            .env("PACKUILON_BUILD", &image.build)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => {
                info!(image = %image.id, "test gate passed");
                Ok(GateVerdict::Passed)
            }
            Ok(Ok(status)) => {
                warn!(image = %image.id, %status, "test gate failed");
                Ok(GateVerdict::Failed(format!(
                    "test script {} failed: {status}",
                    self.script.display()
                )))
            }
            Ok(Err(e)) => Err(spawn_err(e)),
            Err(_) => {
                let _ = child.kill().await;
                Ok(GateVerdict::Failed(format!(
                    "test script {} did not finish within {} s",
                    self.script.display(),
                    self.timeout.as_secs()
                )))
            }
        }
    }
}
