//! The appliance's own thread: the `!Send` libguestfs handle and what the
//! work on it shares (devices, the inspected root, progress reporting), its
//! launch, and mounting the guest. Inspection, sysprep and shrink work on a
//! [`Worker`]; [`crate::Session`] only sends them jobs.

use std::collections::HashMap;
use std::path::PathBuf;

use guestfs::Handle;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::accel::Accel;
use crate::error::{Error, GfsContext, Result};

/// A step of the work, reported on the progress channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Validating the input on the host.
    Check,
    /// Booting the appliance.
    Launch,
    /// Inspecting the guest OS.
    Inspect,
    /// Running a sysprep operation.
    Sysprep,
    /// Shrinking the root filesystem and copying it to a smaller disk.
    Shrink,
    /// Trimming free space.
    Sparsify,
    /// Shutting the appliance down.
    Shutdown,
    /// Writing the output with `qemu-img convert`.
    Convert,
}

/// A progress event.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Which step.
    pub step: Step,
    /// What is happening.
    pub detail: String,
}

/// Sender half of a progress channel.
pub type ProgressSender = mpsc::UnboundedSender<Progress>;

/// One disk attached to a session.
#[derive(Debug, Clone)]
pub struct Drive {
    /// Host path.
    pub path: PathBuf,
    /// Format (`qcow2`, `raw`); `None` lets libguestfs probe (raw only).
    pub format: Option<String>,
    /// Attach read-only.
    pub readonly: bool,
}

/// How to start a session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Disks in order; the first is the image (`/dev/sda` inside).
    pub drives: Vec<Drive>,
    /// Accelerator.
    pub accel: Accel,
}

/// Work sent to the appliance's thread.
pub(crate) type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// State living on the worker thread.
pub(crate) struct Worker {
    pub(crate) g: Handle,
    pub(crate) image: PathBuf,
    pub(crate) devices: Vec<String>,
    pub(crate) drive_sizes: Vec<u64>,
    pub(crate) root: Option<String>,
    pub(crate) mounts: HashMap<String, String>,
    /// Set when the quick path found the root (no `inspect_os` ran).
    pub(crate) quick: Option<crate::quick_inspect::QuickFacts>,
    progress: Option<ProgressSender>,
}

impl Worker {
    pub(crate) fn report(&self, step: Step, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(step = ?step, "{detail}");
        if let Some(p) = &self.progress {
            let _ = p.send(Progress { step, detail });
        }
    }
}

pub(crate) fn launch(opts: &SessionOptions, progress: Option<ProgressSender>) -> Result<Worker> {
    let first = opts.drives.first().ok_or_else(|| Error::Parse {
        program: "session".into(),
        reason: "no drives given".into(),
    })?;
    let g = Handle::create().ctx(|| "create handle".into())?;
    g.set_backend("direct").ctx(|| "set backend".into())?;
    let kvm = opts.accel.use_kvm();
    if !kvm {
        g.set_backend_settings(&["force_tcg"])
            .ctx(|| "set backend settings".into())?;
    }
    for d in &opts.drives {
        let path = d.path.to_string_lossy().into_owned();
        g.add_drive(
            &path,
            guestfs::AddDriveOptArgs {
                readonly: Some(d.readonly),
                format: d.format.as_deref(),
                discard: (!d.readonly).then_some("besteffort"),
                ..Default::default()
            },
        )
        .ctx(|| format!("add drive {path}"))?;
    }
    let w = Worker {
        g,
        image: first.path.clone(),
        devices: Vec::new(),
        drive_sizes: Vec::new(),
        root: None,
        mounts: HashMap::new(),
        quick: None,
        progress,
    };
    w.report(
        Step::Launch,
        format!(
            "booting the appliance ({})",
            if kvm { "KVM" } else { "TCG" }
        ),
    );
    w.g.launch().ctx(|| "launch appliance".into())?;
    let mut w = w;
    w.devices = w.g.list_devices().ctx(|| "list devices".into())?;
    w.drive_sizes = w
        .devices
        .iter()
        .map(|d| w.g.blockdev_getsize64(d).map(|s| s as u64))
        .collect::<std::result::Result<_, _>>()
        .ctx(|| "device sizes".into())?;
    Ok(w)
}

/// Mount the guest's filesystems at their mountpoints (shortest first).
pub(crate) fn mount_os(g: &Handle, mounts: &HashMap<String, String>, readonly: bool) -> Result<()> {
    let mut mps: Vec<(&String, &String)> = mounts.iter().collect();
    mps.sort_by_key(|(mp, _)| mp.len());
    for (mp, dev) in mps {
        let r = if readonly {
            g.mount_ro(dev, mp)
        } else {
            g.mount(dev, mp)
        };
        if let Err(e) = r {
            if mp == "/" {
                return Err(Error::Guestfs {
                    op: format!("mount {dev} on /"),
                    message: crate::error::guestfs_message(&e),
                });
            }
            tracing::warn!(device = %dev, mountpoint = %mp, "cannot mount: {}", crate::error::guestfs_message(&e));
        }
    }
    Ok(())
}
