//! The whole create-pipeline tail in one appliance: inspect, sysprep, shrink,
//! sparsify, then `qemu-img convert` to the output. The input is never modified
//! (all writes go to a qcow2 overlay in the directory `<output>.work`, removed
//! at the end).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::accel::Accel;
use crate::error::{Error, Result};
use crate::image::{self, Compression, OutputFormat};
use crate::inspect::Inspection;
use crate::session::Session;
use crate::shrink::ShrinkReport;
use crate::size::RULE_SIZES;
use crate::sysprep::{OperationResult, SysprepOptions};
use crate::worker::{Drive, Progress, ProgressSender, SessionOptions, Step};

/// Options of [`prepare`].
#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// Sysprep operations and settings.
    pub sysprep: SysprepOptions,
    /// Shrink the root filesystem and the virtual size.
    pub shrink: bool,
    /// Virtual size to use instead of the original's rule.
    pub size: Option<u64>,
    /// Output format.
    pub format: OutputFormat,
    /// qcow2 compression.
    pub compression: Option<Compression>,
    /// Accelerator.
    pub accel: Accel,
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PrepareReport {
    /// The input.
    pub input: PathBuf,
    /// The output written.
    pub output: PathBuf,
    /// Inspection of the input.
    pub inspection: Inspection,
    /// Sysprep operations run.
    pub sysprep: Vec<OperationResult>,
    /// Shrink result, when shrinking was asked for.
    pub shrink: Option<ShrinkReport>,
    /// Input virtual size.
    pub input_virtual_size: u64,
    /// Output virtual size.
    pub output_virtual_size: u64,
    /// Output bytes on disk.
    pub output_actual_size: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl PrepareReport {
    /// One line: the output, the guest, the virtual size (and the input's),
    /// the bytes on disk and the time taken.
    pub fn to_text(&self) -> String {
        format!(
            "{}: {} {} {}, virtual size {} (was {}), {} on disk, {:.1} s\n",
            self.output.display(),
            self.inspection.distro,
            self.inspection.version,
            self.inspection.arch,
            crate::size::human(self.output_virtual_size),
            crate::size::human(self.input_virtual_size),
            crate::size::human(self.output_actual_size),
            self.seconds
        )
    }
}

fn send(progress: &Option<ProgressSender>, step: Step, detail: String) {
    tracing::info!(step = ?step, "{detail}");
    if let Some(p) = progress {
        let _ = p.send(Progress { step, detail });
    }
}

/// Run the pipeline on `input`, writing `output`.
#[tracing::instrument(skip_all, fields(input = %input.display(), output = %output.display()))]
pub async fn prepare(
    input: &Path,
    output: &Path,
    opts: PrepareOptions,
    progress: Option<ProgressSender>,
) -> Result<PrepareReport> {
    send(
        &progress,
        Step::Check,
        format!("checking {}", input.display()),
    );
    let info = image::check_input(input)?;
    run(input, None, info, output, opts, progress, async { true }).await
}

/// A disk served read-only over NBD by the QEMU that runs it (or ran it and
/// stays, its guest stopped): `local-vm`'s `export_disk`.
#[derive(Debug, Clone)]
pub struct LiveDisk {
    /// The disk's own file: its virtual size is read from it (`-U`), it is
    /// never opened otherwise.
    pub path: PathBuf,
    /// The NBD server's unix socket.
    pub socket: PathBuf,
    /// The export's name.
    pub export: String,
}

/// [`prepare`] a disk whose VM still runs: the appliance boots at once on
/// an overlay of the NBD export (so its launch overlaps the VM's work),
/// then waits for `stopped` (the guest powered off; `false`: it did not, an
/// error) and drops every cached block of its devices before reading the
/// guest (what it read at boot may have changed since). Everything after
/// is [`prepare`]'s. The export must be served until this returns.
#[tracing::instrument(skip_all, fields(input = %disk.path.display(), output = %output.display()))]
pub async fn prepare_live(
    disk: LiveDisk,
    output: &Path,
    opts: PrepareOptions,
    progress: Option<ProgressSender>,
    stopped: impl std::future::Future<Output = bool>,
) -> Result<PrepareReport> {
    send(
        &progress,
        Step::Check,
        format!("checking {} (served over NBD)", disk.path.display()),
    );
    let info = image::info(&disk.path)?;
    let input = disk.path.clone();
    run(&input, Some(&disk), info, output, opts, progress, stopped).await
}

/// The pipeline after the input's checks: `live` set, the overlay sits on
/// its NBD export and the work waits for `stopped`.
async fn run(
    input: &Path,
    live: Option<&LiveDisk>,
    info: image::ImageInfo,
    output: &Path,
    opts: PrepareOptions,
    progress: Option<ProgressSender>,
    stopped: impl std::future::Future<Output = bool>,
) -> Result<PrepareReport> {
    let start = Instant::now();
    if let (Ok(a), Ok(b)) = (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        if a == b {
            return Err(Error::NotADisk {
                path: output.to_path_buf(),
                reason: "the output must not be the input".into(),
            });
        }
    }
    let out_dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The work directory is `<output>.work` (named after the output, so
    // that whoever records the output can remove what a killed run left);
    // a stale one from such a run is replaced.
    let work_name = format!(
        "{}.work",
        output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "prepare".into())
    );
    let stale = out_dir.join(&work_name);
    if stale.is_dir() {
        std::fs::remove_dir_all(&stale).map_err(|e| Error::Io {
            path: stale.clone(),
            source: e,
        })?;
    }
    let tmp = tempfile::Builder::new()
        .prefix(&work_name)
        .rand_bytes(0)
        .tempdir_in(&out_dir)
        .map_err(|e| Error::Io {
            path: out_dir.clone(),
            source: e,
        })?;
    let overlay = tmp.path().join("overlay.qcow2");
    match live {
        Some(l) => image::create_nbd_overlay(&l.socket, &l.export, info.virtual_size, &overlay)?,
        None => image::create_overlay(&info, &overlay)?,
    }
    let mut drives = vec![Drive {
        path: overlay,
        format: Some("qcow2".into()),
        readonly: false,
    }];
    if opts.shrink {
        let sizes: Vec<u64> = match opts.size {
            Some(s) => vec![s],
            None => RULE_SIZES
                .iter()
                .copied()
                .filter(|s| *s < info.virtual_size)
                .collect(),
        };
        for (i, s) in sizes.into_iter().enumerate() {
            let p = tmp.path().join(format!("shrunk-{i}.qcow2"));
            image::create_qcow2(&p, s)?;
            drives.push(Drive {
                path: p,
                format: Some("qcow2".into()),
                readonly: false,
            });
        }
    }
    let paths: Vec<PathBuf> = drives.iter().map(|d| d.path.clone()).collect();
    let session = Session::open(
        SessionOptions {
            drives,
            accel: opts.accel,
        },
        progress.clone(),
    )
    .await?;
    let result = async {
        if live.is_some() {
            if !stopped.await {
                return Err(Error::NotADisk {
                    path: input.to_path_buf(),
                    reason: "its VM did not stop".into(),
                });
            }
            send(
                &progress,
                Step::Check,
                "the VM stopped: dropping the appliance's cached blocks".into(),
            );
            session
                .with_handle(|g| {
                    let mut devs = g.list_devices()?;
                    // The guest may have repartitioned its disk after the
                    // appliance read the table (best effort: a disk whose
                    // volumes the appliance holds keeps its table).
                    for d in &devs {
                        if let Err(e) = g.blockdev_rereadpt(d) {
                            tracing::debug!(device = %d, "partition table not re-read: {}", crate::error::guestfs_message(&e));
                        }
                    }
                    devs.extend(g.list_partitions()?);
                    for d in &devs {
                        g.blockdev_flushbufs(d)?;
                    }
                    g.drop_caches(3)
                })
                .await?;
        }
        let inspection = session.inspect().await?;
        let sysprep = session.sysprep(opts.sysprep.clone()).await?;
        let shrink = if opts.shrink {
            Some(session.shrink(opts.size).await?)
        } else {
            None
        };
        let idx = shrink.as_ref().map_or(0, |s| s.drive_index);
        session.sparsify(idx).await?;
        Ok::<_, Error>((inspection, sysprep, shrink, idx))
    }
    .await;
    let (inspection, sysprep, shrink, idx) = match result {
        Ok(r) => {
            session.close().await?;
            r
        }
        Err(e) => {
            drop(session);
            return Err(e);
        }
    };
    send(
        &progress,
        Step::Convert,
        format!("writing {}", output.display()),
    );
    let src = paths[idx].clone();
    let cut = shrink.as_ref().and_then(|s| s.cut_at);
    let (out, fmt, comp) = (output.to_path_buf(), opts.format, opts.compression);
    tokio::task::spawn_blocking(move || image::convert_cut(&src, &out, cut, fmt, comp))
        .await
        .map_err(|_| Error::WorkerGone)??;
    let out_info = image::info(output)?;
    Ok(PrepareReport {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        inspection,
        sysprep,
        shrink,
        input_virtual_size: info.virtual_size,
        output_virtual_size: out_info.virtual_size,
        output_actual_size: out_info.actual_size,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Inspect `input` read-only in its own appliance.
#[tracing::instrument(skip_all, fields(input = %input.display()))]
pub async fn inspect(
    input: &Path,
    accel: Accel,
    progress: Option<ProgressSender>,
) -> Result<Inspection> {
    send(
        &progress,
        Step::Check,
        format!("checking {}", input.display()),
    );
    let info = image::check_input(input)?;
    let drive = Drive {
        path: input.to_path_buf(),
        format: Some(info.format.clone()),
        readonly: true,
    };
    let session = Session::open(
        SessionOptions {
            drives: vec![drive],
            accel,
        },
        progress,
    )
    .await?;
    let r = session.inspect().await;
    let _ = session.close().await;
    r
}
