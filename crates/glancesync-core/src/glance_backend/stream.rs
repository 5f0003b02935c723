//! The streamed copy: the master's data (a download from the master
//! region's Glance, or `<images_dir>/<uuid>`) piped into the target's
//! upload with no local copy, counted for the progress observer, then
//! verified and finished (marker removed, made public, protected) or
//! deleted. One master image needed by several regions is read once and
//! fanned out to all of them ([`crate::fanout`]).

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{StreamExt, TryStreamExt};
use openstack_client::glance::{GlanceClient, ImagePatch, Visibility};
use tokio::io::{AsyncRead, ReadBuf};
use tracing::Instrument;

use super::lifecycle::{delete_incomplete, verify_stored, Prepared};
use super::{backend_err, cloud_err, Counters, GlanceBackend, TransferObserver, TRANSFER_MARKER};
use crate::backend::UploadRequest;
use crate::error::{Error, Result};
use crate::fanout::{fan_out, FanoutConfig, FanoutStats, Opener};
use crate::image::Image;

/// Image data being read.
type Source = Pin<Box<dyn AsyncRead + Send>>;

/// The same error again, for every region it concerns.
fn copy_error(e: &Error) -> Error {
    Error::Backend {
        region: String::new(),
        operation: "read the master image".into(),
        message: e.to_string(),
    }
}

impl GlanceBackend {
    /// Send the data, verify, then remove the marker (and set protection);
    /// on any failure delete the image. Returns the new id.
    async fn complete(
        &self,
        req: &UploadRequest<'_>,
        prepared: Prepared,
        reader: Result<Pin<Box<dyn AsyncRead + Send>>>,
    ) -> Result<String> {
        let full = req.region.full_name();
        let Prepared {
            client,
            created,
            protected,
        } = prepared;
        let id = created.id.clone();
        let outcome = match reader {
            Ok(reader) => self.send_and_verify(req, &client, &id, reader).await,
            Err(e) => Err(e),
        };
        if let Ok(mut m) = self.in_flight.lock() {
            m.remove(&(full.clone(), req.image.name.clone()));
        }
        match outcome {
            Ok(()) => {
                let mut patch = ImagePatch::for_image(&created).remove_property(TRANSFER_MARKER);
                if req.image.is_public {
                    patch = patch.visibility(Visibility::Public);
                }
                if protected {
                    patch = patch.protected(true);
                }
                client
                    .update_image(&id, &patch)
                    .await
                    .map_err(|e| cloud_err(&full, "finish the image (marker, protection)", e))?;
                Ok(id)
            }
            Err(e) => {
                match delete_incomplete(&client, &id).await {
                    Ok(()) => tracing::warn!(
                        "{full}: upload of {} failed; deleted the incomplete image {id}",
                        req.image.name
                    ),
                    Err(de) => tracing::error!(
                        "{full}: upload of {} failed and the incomplete image {id} could not be deleted: {de}",
                        req.image.name
                    ),
                }
                Err(e)
            }
        }
    }

    /// Stream one master image to one region.
    pub(super) async fn stream_one(&self, req: &UploadRequest<'_>) -> Result<String> {
        let prepared = self.prepare(req).await?;
        let full = req.region.full_name();
        let span = tracing::info_span!("upload_image", region = %full, image = %req.image.name, size = req.master.size);
        async {
            let reader = self.open_source(&full, req.master).await;
            self.complete(req, prepared, reader).await
        }
        .instrument(span)
        .await
    }

    /// One master image to several regions: every target image is created
    /// (the records at once, with the master's record read alongside), then
    /// the master is read once and streamed to all of them (see
    /// [`crate::fanout`]); each target is verified and finished or deleted on its own.
    pub(super) async fn upload_fanned_out(
        &self,
        reqs: &[UploadRequest<'_>],
    ) -> Vec<Result<String>> {
        let master = reqs[0].master;
        let span = tracing::info_span!("upload_fanned_out", image = %master.name, size = master.size, regions = reqs.len());
        async {
            // The target records and the master's record are requested at
            // once (one round trip to each Glance, not one after the other).
            let prepare_all = futures::future::join_all(reqs.iter().map(|r| self.prepare(r)));
            let open_master = async {
                let (master_ref, client) = self.master_client().await?;
                let record = client.get_image(&master.id).await.map_err(|e| {
                    cloud_err(
                        &master_ref.full_name(),
                        &format!("get image {}", master.id),
                        e,
                    )
                })?;
                let opener: Opener = Arc::new(move || {
                    let client = client.clone();
                    let record = record.clone();
                    Box::pin(async move {
                        let dl = client
                            .download_image_unverified(&record)
                            .await
                            .map_err(std::io::Error::other)?;
                        Ok(dl.map_err(std::io::Error::other).boxed())
                    })
                });
                Ok(opener)
            };
            let started = std::time::Instant::now();
            let (prepared, opener): (Vec<Result<Prepared>>, Result<Opener>) =
                tokio::join!(prepare_all, open_master);
            tracing::debug!(
                "{}: {} target records created in {:.2} s",
                master.name,
                reqs.len(),
                started.elapsed().as_secs_f64()
            );
            let mut prepared: Vec<Option<Result<Prepared>>> =
                prepared.into_iter().map(Some).collect();
            let n = prepared.iter().filter(|p| matches!(p, Some(Ok(_)))).count();
            let (readers, driver): (Vec<Result<Source>>, _) = match &opener {
                Ok(opener) => {
                    let stats = Arc::new(FanoutStats::default());
                    let (streams, driver) =
                        fan_out(opener.clone(), n, FanoutConfig::default(), stats.clone());
                    let driver = async move {
                        driver.await;
                        tracing::debug!(
                            "{}: shared read of {} bytes in {} chunks, waited for a full queue {} times, {} reads of the master",
                            master.name,
                            stats.shared_bytes.load(Ordering::Relaxed),
                            stats.chunks.load(Ordering::Relaxed),
                            stats.waits.load(Ordering::Relaxed),
                            stats.opens.load(Ordering::Relaxed)
                        );
                    };
                    tracing::info!("{}: read once from the master for {n} regions", master.name);
                    (
                        streams
                            .into_iter()
                            .map(|s| {
                                Ok(Box::pin(tokio_util::io::StreamReader::new(s))
                                    as Pin<Box<dyn AsyncRead + Send>>)
                            })
                            .collect(),
                        Some(driver),
                    )
                }
                Err(e) => ((0..n).map(|_| Err(copy_error(e))).collect(), None),
            };
            let mut readers = readers.into_iter();
            let mut jobs = Vec::with_capacity(reqs.len());
            for (req, p) in reqs.iter().zip(prepared.iter_mut()) {
                let p = p.take();
                let reader = match &p {
                    Some(Ok(_)) => readers.next(),
                    _ => None,
                };
                jobs.push(async move {
                    match (p, reader) {
                        (Some(Ok(p)), Some(reader)) => self.complete(req, p, reader).await,
                        (Some(Err(e)), _) => Err(e),
                        _ => Err(backend_err(
                            &req.region.full_name(),
                            "upload",
                            "no reader for the shared transfer",
                        )),
                    }
                });
            }
            let uploads = futures::future::join_all(jobs);
            match driver {
                Some(driver) => tokio::join!(driver, uploads).1,
                None => uploads.await,
            }
        }
        .instrument(span)
        .await
    }

    /// Open the data of `master`: `<images_dir>/<uuid>` when set, else a
    /// download from the master region's Glance.
    async fn open_source(
        &self,
        full: &str,
        master: &Image,
    ) -> Result<Pin<Box<dyn AsyncRead + Send>>> {
        let name = &master.name;
        Ok(match &self.config.images_dir {
            Some(dir) => {
                let path: PathBuf = dir.join(&master.id);
                let f = tokio::fs::File::open(&path).await.map_err(|e| {
                    backend_err(
                        full,
                        "upload",
                        format!(
                            "Cannot open the image {name} to upload ({}): {e}",
                            path.display()
                        ),
                    )
                })?;
                Box::pin(f)
            }
            None => {
                let (master_ref, master_client) = self.master_client().await?;
                // No local hashing: the target Glance computes md5 and
                // os_hash_value on ingest and they are compared with the
                // master's before the copy becomes visible (verify_stored).
                let dl = async {
                    let record = master_client.get_image(&master.id).await?;
                    master_client.download_image_unverified(&record).await
                }
                .await
                .map_err(|e| {
                    cloud_err(
                        &master_ref.full_name(),
                        &format!("download image {name} ({})", master.id),
                        e,
                    )
                })?;
                Box::pin(dl.into_async_read())
            }
        })
    }

    /// Send `reader` into image `new_id` of the target, then verify what the
    /// target stored (status, size, md5, `os_hash_value`) against the master.
    async fn send_and_verify(
        &self,
        req: &UploadRequest<'_>,
        target_client: &GlanceClient,
        new_id: &str,
        reader: Pin<Box<dyn AsyncRead + Send>>,
    ) -> Result<()> {
        let full = req.region.full_name();
        let master = req.master;
        let name = req.image.name.clone();
        let observer = self.observer.clone();
        observer.start(&full, &name, master.size);
        let counting = CountingReader {
            inner: reader,
            counters: self.counters.clone(),
            observer: observer.clone(),
            region: full.clone(),
            image: name.clone(),
        };
        let started = std::time::Instant::now();
        let result = target_client
            .upload_chunked(new_id, counting, Some(master.size))
            .await;
        let sent = started.elapsed();
        observer.finish(&full, &name, result.is_ok());
        if result.is_ok() {
            self.counters
                .streamed_images
                .fetch_add(1, Ordering::Relaxed);
        }
        result.map_err(|e| cloud_err(&full, &format!("upload image {name}"), e))?;
        // Verify what the target stored.
        let stored = target_client
            .get_image(new_id)
            .await
            .map_err(|e| cloud_err(&full, "read back the image", e))?;
        tracing::debug!(
            "{full}: {name} sent in {:.2} s, read back after {:.2} s",
            sent.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        verify_stored(&full, &name, new_id, master, &stored)
    }
}

/// A reader that counts the bytes it passes on and reports them to the
/// observer.
struct CountingReader {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    counters: Arc<Counters>,
    observer: Arc<dyn TransferObserver>,
    region: String,
    image: String,
}

impl AsyncRead for CountingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.counters
                .bytes_streamed
                .fetch_add(n as u64, Ordering::Relaxed);
            self.observer.advance(&self.region, &self.image, n as u64);
        }
        r
    }
}
