//! One libguestfs appliance per image: a dedicated blocking thread owns the
//! `!Send` handle ([`crate::worker`]); this async API sends it jobs
//! (inspection, sysprep, shrink, sparsify) and reports progress events.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;

use guestfs::Handle;
use tokio::sync::oneshot;

use crate::error::{Error, GfsContext, Result};
use crate::inspect::Inspection;
use crate::shrink::ShrinkReport;
use crate::sysprep::{self, OperationResult, SysprepOptions};
use crate::worker::{launch, mount_os, Job, ProgressSender, SessionOptions, Step, Worker};

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
    /// `f` may change the disks' layout: the session lists the filesystems
    /// again afterwards.
    pub async fn with_handle<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Handle) -> std::result::Result<R, guestfs::Error> + Send + 'static,
    ) -> Result<R> {
        self.call(move |w| {
            w.layout_changed();
            f(&w.g).ctx(|| "with_handle".into())
        })
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
            crate::inspect::inspect(w, false)
        })
        .await
    }

    /// Inspect with libguestfs's `inspect_os` even where the quick path
    /// (a plain Debian root, read from its files) applies: the reference
    /// [`Session::inspect`] is checked against. Also remembers the root.
    pub async fn inspect_full(&self) -> Result<Inspection> {
        self.call(|w| {
            let _s = tracing::info_span!("inspect_full").entered();
            w.report(Step::Inspect, "inspecting the guest (inspect_os)");
            crate::inspect::inspect(w, true)
        })
        .await
    }

    /// Mount the OS and run the selected sysprep operations (inspects first if needed).
    pub async fn sysprep(&self, opts: SysprepOptions) -> Result<Vec<OperationResult>> {
        self.call(move |w| {
            let _s = tracing::info_span!("sysprep").entered();
            crate::inspect::ensure_root(w)?;
            let mounts = w.mounts.clone();
            mount_os(&w.g, &mounts, false)?;
            let mut results = Vec::new();
            let mut dirs = sysprep::GuestDirs::default();
            for op in sysprep::OPERATIONS
                .iter()
                .filter(|o| opts.operations.contains(o.name))
            {
                let _s = tracing::info_span!("operation", name = op.name).entered();
                let r = sysprep::run_operation(&w.g, op, &opts, &mounts, &mut dirs)?;
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
