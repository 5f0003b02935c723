//! The test gate between a successful build and the rotation of old
//! images: the new image must pass it, or it is renamed
//! `Broken-<name>-<date>`, made private, and the build counts as failed.
//!
//! [`ImageGate`] is the plug-in point. [`ScriptGate`] runs a configured test
//! command (`[test-gate] TEST_SCRIPT`) with the image in its environment;
//! a gate booting the image on image-pipeline's compute backends plugs in
//! through the same trait.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{info, warn};

use crate::error::{Error, Result};

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
