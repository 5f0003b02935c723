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
    /// `list_filesystems` as last read (it probes every device: about a
    /// second under TCG); whatever changes the layout (shrink) clears it.
    filesystems: Option<HashMap<String, String>>,
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

    /// The appliance's filesystems (device → type), as `list_filesystems`
    /// reports them: read once, then from memory until
    /// [`Worker::layout_changed`]. A plain layout is read the quick way
    /// (see [`plain_filesystems`]); `reference` asks libguestfs always
    /// (what the quick way is checked against).
    pub(crate) fn filesystems(&mut self, reference: bool) -> Result<HashMap<String, String>> {
        if !reference {
            if let Some(f) = &self.filesystems {
                return Ok(f.clone());
            }
        }
        let plain = if reference {
            None
        } else {
            plain_filesystems(&self.g, &self.devices)?
        };
        let f = match plain {
            Some(f) => f,
            None => self
                .g
                .list_filesystems()
                .ctx(|| "list filesystems".into())?,
        };
        self.filesystems = Some(f.clone());
        Ok(f)
    }

    /// Partitions, filesystems or volumes are about to change: the next
    /// [`Worker::filesystems`] reads them again.
    pub(crate) fn layout_changed(&mut self) {
        self.filesystems = None;
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
        filesystems: None,
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

/// `list_filesystems` for a plain layout, from one `list_partitions` and
/// one `vfs_type` per partition (or per disk without partitions): every
/// partition holds ext2/3/4, xfs, vfat or swap, and a disk without
/// partitions holds one of those or nothing ("unknown", as libguestfs
/// says). libguestfs's own listing also settles udev, runs parted, sfdisk
/// and LVM scans: 1.5–2.5 s under TCG. `None` for anything else (LVM,
/// RAID, btrfs, encryption, a partition without a filesystem): then ask
/// libguestfs.
fn plain_filesystems(g: &Handle, devices: &[String]) -> Result<Option<HashMap<String, String>>> {
    const PLAIN: &[&str] = &["ext2", "ext3", "ext4", "xfs", "vfat", "swap"];
    let partitions = g.list_partitions().ctx(|| "list partitions".into())?;
    if partitions
        .iter()
        .any(|p| !devices.iter().any(|d| is_partition_of(p, d)))
    {
        return Ok(None);
    }
    let mut found = HashMap::new();
    for dev in devices {
        let parts: Vec<&String> = partitions
            .iter()
            .filter(|p| is_partition_of(p, dev))
            .collect();
        if parts.is_empty() {
            match g.vfs_type(dev).unwrap_or_default() {
                ty if ty.is_empty() => found.insert(dev.clone(), "unknown".to_string()),
                ty if PLAIN.contains(&ty.as_str()) => found.insert(dev.clone(), ty),
                _ => return Ok(None),
            };
        }
        for p in parts {
            let ty = g.vfs_type(p).unwrap_or_default();
            if !PLAIN.contains(&ty.as_str()) {
                return Ok(None);
            }
            found.insert(p.clone(), ty);
        }
    }
    Ok(Some(found))
}

/// Is appliance device `part` a partition of disk `disk` (`/dev/sda2` of
/// `/dev/sda`, not `/dev/sdaa1`)?
pub(crate) fn is_partition_of(part: &str, disk: &str) -> bool {
    part.strip_prefix(disk)
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
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
