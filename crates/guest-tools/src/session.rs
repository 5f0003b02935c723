//! One libguestfs appliance per image: a dedicated blocking thread owns the
//! `!Send` handle; an async API sends it jobs and reports progress events.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use guestfs::Handle;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::accel::Accel;
use crate::error::{Error, GfsContext, Result};
use crate::sysprep::{self, OperationResult, SysprepOptions};

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

/// A filesystem found in the image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FilesystemInfo {
    /// Device inside the appliance.
    pub device: String,
    /// Type (`ext4`, `swap`, `vfat`, ...).
    #[serde(rename = "type")]
    pub fs_type: String,
    /// UUID, when it has one.
    pub uuid: String,
    /// Label, when it has one.
    pub label: String,
    /// Where the guest mounts it, if it does.
    pub mountpoint: Option<String>,
}

/// An installed package.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Application {
    /// Package name.
    pub name: String,
    /// Version (with `-release` when the format has one).
    pub version: String,
    /// Epoch, 0 when none.
    pub epoch: i32,
    /// Architecture, when known.
    pub arch: String,
}

/// What inspection found (the facts `virt-inspector` reports).
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Root device inside the appliance.
    pub root: String,
    /// `linux`, `windows`, ...
    pub os_type: String,
    /// `debian`, `ubuntu`, `centos`, ...
    pub distro: String,
    /// Product name (`12.x` style for Debian, from `/etc/os-release`).
    pub product_name: String,
    /// `major.minor`.
    pub version: String,
    /// Major version.
    pub major_version: i32,
    /// Minor version.
    pub minor_version: i32,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    /// Hostname configured in the guest.
    pub hostname: String,
    /// `deb`, `rpm`, ...
    pub package_format: String,
    /// `apt`, `dnf`, `yum`, ...
    pub package_management: String,
    /// `systemd`, `upstart`, `sysvinit` or `unknown`.
    pub init_system: String,
    /// What kind of image the OS is in (`virt-inspector`'s `format`):
    /// `installed` (an installed OS), `installer` (install media) or `unknown`.
    pub format: String,
    /// libosinfo short id, when known.
    pub osinfo: String,
    /// Mountpoint → device.
    pub mountpoints: BTreeMap<String, String>,
    /// Every filesystem of the image.
    pub filesystems: Vec<FilesystemInfo>,
    /// Installed packages.
    pub applications: Vec<Application>,
}

/// What shrinking did.
#[derive(Debug, Clone, Serialize)]
pub struct ShrinkReport {
    /// Root filesystem device that was shrunk.
    pub device: String,
    /// Filesystem size at its minimum, bytes.
    pub min_fs_bytes: u64,
    /// The virtual size picked; `None` when the disk keeps its size.
    pub target_size: Option<u64>,
    /// Index in [`SessionOptions::drives`] of the disk that now holds the image.
    pub drive_index: usize,
    /// When set, the image was shrunk in place: only the first this-many bytes
    /// of that drive are the image (cut it there when converting).
    pub cut_at: Option<u64>,
}

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// State living on the worker thread.
pub(crate) struct Worker {
    pub(crate) g: Handle,
    pub(crate) image: PathBuf,
    pub(crate) devices: Vec<String>,
    pub(crate) drive_sizes: Vec<u64>,
    pub(crate) root: Option<String>,
    pub(crate) mounts: HashMap<String, String>,
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

/// A launched appliance with the drives attached. Drop or [`Session::close`] it.
pub struct Session {
    tx: Option<std_mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

fn launch(opts: &SessionOptions, progress: Option<ProgressSender>) -> Result<Worker> {
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

impl Session {
    /// Launch an appliance with `opts.drives` attached (one ~30 s boot under TCG).
    #[tracing::instrument(skip_all, fields(image = ?opts.drives.first().map(|d| d.path.display().to_string())))]
    pub async fn open(opts: SessionOptions, progress: Option<ProgressSender>) -> Result<Session> {
        let (tx, rx) = std_mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<()>>();
        let thread = std::thread::Builder::new()
            .name("guestfs".into())
            .spawn(move || {
                let mut worker = match launch(&opts, progress) {
                    Ok(w) => {
                        let _ = ready_tx.send(Ok(()));
                        w
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut worker);
                }
            })
            .map_err(|e| Error::Io {
                path: PathBuf::from("<guestfs thread>"),
                source: e,
            })?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Session {
                tx: Some(tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
                Err(e)
            }
            Err(_) => Err(Error::WorkerGone),
        }
    }

    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |w| {
            let _ = tx.send(f(w));
        });
        self.tx
            .as_ref()
            .ok_or(Error::WorkerGone)?
            .send(job)
            .map_err(|_| Error::WorkerGone)?;
        rx.await.map_err(|_| Error::WorkerGone)?
    }

    /// Run `f` on the worker thread with the raw handle (escape hatch for
    /// callers and tests). Guest filesystems are not mounted unless `f` mounts them.
    pub async fn with_handle<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Handle) -> std::result::Result<R, guestfs::Error> + Send + 'static,
    ) -> Result<R> {
        self.call(move |w| f(&w.g).ctx(|| "with_handle".into()))
            .await
    }

    /// Appliance device names of the drives, in [`SessionOptions::drives`] order.
    pub async fn devices(&self) -> Result<Vec<String>> {
        self.call(|w| Ok(w.devices.clone())).await
    }

    /// Inspect the OS. Also remembers the root for later steps.
    pub async fn inspect(&self) -> Result<Inspection> {
        self.call(|w| {
            let _s = tracing::info_span!("inspect").entered();
            w.report(Step::Inspect, "inspecting the guest");
            crate::inspect::inspect(w)
        })
        .await
    }

    /// Mount the OS and run the selected sysprep operations (inspects first if needed).
    pub async fn sysprep(&self, opts: SysprepOptions) -> Result<Vec<OperationResult>> {
        self.call(move |w| {
            let _s = tracing::info_span!("sysprep").entered();
            let root = crate::inspect::ensure_root(w)?;
            let mounts = w.mounts.clone();
            mount_os(&w.g, &mounts, false)?;
            let mut results = Vec::new();
            for op in sysprep::OPERATIONS
                .iter()
                .filter(|o| opts.operations.contains(o.name))
            {
                let _s = tracing::info_span!("operation", name = op.name).entered();
                let r = sysprep::run_operation(&w.g, op, &opts, &root)?;
                w.report(
                    Step::Sysprep,
                    format!("{}: {} changed", op.name, r.changed.len()),
                );
                results.push(r);
            }
            w.g.sync().ctx(|| "sync".into())?;
            w.g.umount_all().ctx(|| "unmount".into())?;
            Ok(results)
        })
        .await
    }

    /// Shrink the root filesystem and copy the image into the smallest
    /// attached empty drive that holds it (`size` forces that virtual size,
    /// `None` applies the original's rule). See the crate's shrink module (layouts and limits).
    pub async fn shrink(&self, size: Option<u64>) -> Result<ShrinkReport> {
        self.call(move |w| {
            let _s = tracing::info_span!("shrink").entered();
            crate::shrink::shrink(w, size)
        })
        .await
    }

    /// Trim (or zero) the free space of every filesystem on drive `drive_index`.
    pub async fn sparsify(&self, drive_index: usize) -> Result<()> {
        self.call(move |w| {
            let _s = tracing::info_span!("sparsify").entered();
            crate::shrink::sparsify(w, drive_index)
        })
        .await
    }

    /// Shut the appliance down cleanly (flushes every write) and end the thread.
    pub async fn close(mut self) -> Result<()> {
        let r = self
            .call(|w| {
                w.report(Step::Shutdown, "shutting the appliance down");
                w.g.shutdown().ctx(|| "shutdown".into())
            })
            .await;
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        r
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropping the sender ends the worker loop; the handle is closed on
        // that thread (which kills the appliance).
        self.tx = None;
    }
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
