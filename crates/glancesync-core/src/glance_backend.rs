//! The Glance backend: Keystone v3 + Glance v2 through `openstack-client`.
//!
//! Image data is streamed from the master region's Glance straight into the
//! target region's Glance (download piped into upload, no local copy; the
//! copy is created private and only made public once the size, md5 and
//! `os_hash_value` the target Glance computed on ingest match the master's), or read from
//! `<images_dir>/<master uuid>` when `[main] images_dir` is set (the
//! original's local-file mode). A failed or interrupted upload deletes the
//! half-created image; images left `queued`/`saving`/`killed` by a killed run
//! are removed before the same image is uploaded again, so a rerun converges.
//! In read-only mode (dry-run, status, backup) every write is refused before
//! any request is sent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use openstack_client::glance::{
    CreateImage, GlanceClient, ImageFilter, ImagePatch, ImageStatus, ImportMethod, ImportOptions,
    Visibility,
};
use openstack_client::{CloudConfig, DomainRef, Scope, Session};
use tokio::io::{AsyncRead, ReadBuf};
use tracing::Instrument;

use crate::backend::{RegionBackend, RegionRef, UploadRequest};
use crate::config::{GlanceSyncConfig, TargetConfig, Transfer};
use crate::error::{Error, Result};
use crate::fanout::{fan_out, FanoutConfig, FanoutStats, Opener};
use crate::image::{Image, RawImage};
use crate::pyvalue::{Properties, PyValue};

/// Receives transfer progress (for a progress bar).
pub trait TransferObserver: Send + Sync {
    /// A transfer starts.
    fn start(&self, region: &str, image: &str, total: u64);
    /// `bytes` more bytes were sent.
    fn advance(&self, region: &str, image: &str, bytes: u64);
    /// The transfer ended.
    fn finish(&self, region: &str, image: &str, ok: bool);
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl TransferObserver for NoProgress {
    fn start(&self, _: &str, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: &str, _: bool) {}
}

/// Target regions importing (`glance-download`) at once; each region runs
/// at most its target's `max_concurrent_imports` imports of a wave at once.
pub const IMPORT_CONCURRENCY: usize = 8;

/// Property set on an image while glancesync uploads its data (removed once
/// the upload succeeded): only images carrying it are ever cleaned up as
/// "incomplete", so other people's queued images are never touched.
pub const TRANSFER_MARKER: &str = "glancesync_transfer";

/// Fields of a Glance image that are not user properties.
const NON_USER_PROPERTIES: &[&str] = &[
    "self",
    "file",
    "schema",
    "stores",
    "locations",
    "direct_url",
];

fn is_user_property(k: &str) -> bool {
    !NON_USER_PROPERTIES.contains(&k) && !k.starts_with("os_glance") && k != TRANSFER_MARKER
}

/// An upload in progress: the image's name, tenant and (once created) id.
struct InFlight {
    client: GlanceClient,
    name: String,
    tenant: String,
    id: Option<String>,
}

/// Check what a target stored against the master: active, same size, same
/// md5 and, when both have it with the same algorithm, same `os_hash_value`.
fn verify_stored(
    full: &str,
    name: &str,
    new_id: &str,
    master: &Image,
    stored: &openstack_client::glance::Image,
) -> Result<()> {
    if stored.status != ImageStatus::Active {
        return Err(backend_err(
            full,
            "upload",
            format!(
                "image {name} ({new_id}) is {} after the upload",
                stored.status.as_str()
            ),
        ));
    }
    if stored.size != Some(master.size) {
        return Err(backend_err(
            full,
            "upload",
            format!(
                "image {name}: size {:?} in the region differs from the master's {}",
                stored.size, master.size
            ),
        ));
    }
    if let Some(b) = &master.checksum {
        let a = stored.checksum.as_deref().unwrap_or("None");
        if a != b {
            return Err(backend_err(
                full,
                "upload",
                format!("image {name}: checksum {a} in the region differs from the master's {b}"),
            ));
        }
    }
    if let (Some(raw), Some(algo), Some(value)) =
        (&master.raw, &stored.os_hash_algo, &stored.os_hash_value)
    {
        if raw.os_hash_algo.as_deref() == Some(algo.as_str())
            && raw.os_hash_value.as_deref().is_some_and(|m| m != value)
        {
            return Err(backend_err(
                full,
                "upload",
                format!("image {name}: {algo} in the region differs from the master's"),
            ));
        }
    }
    Ok(())
}

/// Image data being read.
type Source = Pin<Box<dyn AsyncRead + Send>>;

/// A target image created for an upload, not finished yet.
struct Prepared {
    client: GlanceClient,
    created: openstack_client::glance::Image,
    protected: bool,
}

/// The same error again, for every region it concerns.
fn copy_error(e: &Error) -> Error {
    Error::Backend {
        region: String::new(),
        operation: "read the master image".into(),
        message: e.to_string(),
    }
}

/// The Glance backend.
pub struct GlanceBackend {
    config: Arc<GlanceSyncConfig>,
    read_only: bool,
    observer: Arc<dyn TransferObserver>,
    sessions: tokio::sync::Mutex<HashMap<String, Session>>,
    clients: tokio::sync::Mutex<HashMap<RegionRef, GlanceClient>>,
    /// Uploads in progress, by (region, image name).
    in_flight: Mutex<HashMap<(String, String), InFlight>>,
    /// Whether each region's Glance offers `glance-download`.
    offers_download: tokio::sync::Mutex<HashMap<RegionRef, bool>>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    bytes_streamed: AtomicU64,
    streamed_images: AtomicU64,
    server_side_images: AtomicU64,
    server_side_fallbacks: AtomicU64,
}

/// What went through this process, and what the clouds copied themselves.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TransferCounters {
    /// Image bytes this process sent to target regions.
    pub bytes_streamed: u64,
    /// Images whose data this process streamed.
    pub streamed_images: u64,
    /// Images a target Glance pulled from the master itself (`glance-download`).
    pub server_side_images: u64,
    /// Server-side copies that failed and were streamed instead (`transfer = auto`).
    pub server_side_fallbacks: u64,
}

impl std::fmt::Debug for GlanceBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlanceBackend")
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// A cloud request made for `operation` in `region` failed.
fn cloud_err(region: &str, operation: &str, source: openstack_client::Error) -> Error {
    Error::Cloud {
        region: region.to_string(),
        operation: operation.to_string(),
        source: Box::new(source),
    }
}

fn backend_err(region: &str, operation: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        region: region.to_string(),
        operation: operation.to_string(),
        message: e.to_string(),
    }
}

/// Longest wait for a server-side import.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Longest wait for a server-side import to start: Glance marks the image
/// `importing` as soon as its task runs. A task that never runs (a Glance
/// on SQLite without `BEGIN IMMEDIATE` loses one when a commit collides in
/// the thread that starts it) would otherwise be waited for
/// [`IMPORT_TIMEOUT`].
const IMPORT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Wait until the import of image `id` started (the image left `queued`, or
/// Glance recorded a failure for [`GlanceClient::wait_for_import`] to
/// report). Returns a message when it did not start within `timeout`.
async fn wait_import_started(
    client: &GlanceClient,
    id: &str,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match client.get_image(id).await {
            Ok(img)
                if img.status != ImageStatus::Queued
                    || img
                        .property("os_glance_failed_import")
                        .is_some_and(|f| !f.is_empty()) =>
            {
                return Ok(())
            }
            Ok(_) => {}
            // Let the import wait report what is wrong with the image.
            Err(_) => return Ok(()),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the import of image {id} did not start within {} s (the target Glance lost its task)",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Attempts [`delete_incomplete`] makes before it gives up.
const CLEANUP_ATTEMPTS: u32 = 5;

/// Delete an image this run created and could not finish. Clean-up must not
/// give up on the first server error: Glance can answer 500 while it is still
/// winding down the interrupted upload of that very image (seen with SQLite's
/// "database is locked"), so server errors and transport errors are retried
/// with a growing delay, and an image that is already gone counts as deleted.
async fn delete_incomplete(client: &GlanceClient, id: &str) -> openstack_client::Result<()> {
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match client.delete_image(id).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e)
                if attempt < CLEANUP_ATTEMPTS
                    && (e.is_retryable() || e.status().is_none_or(|s| s.is_server_error())) =>
            {
                tracing::debug!(%id, attempt, error = %e, "retrying the deletion of an incomplete image");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e)
                if e.status()
                    .is_some_and(|s| s.as_u16() == 400 || s.as_u16() == 409) =>
            {
                // Glance can refuse a second deletion of an image that is
                // already going away ("status transition from deleted to
                // deleted", seen when an interrupted import winds down): what
                // counts is that the image is gone.
                return match client.get_image(id).await {
                    Err(g) if g.is_not_found() => Ok(()),
                    Ok(img) if img.status == ImageStatus::Deleted => Ok(()),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        }
    }
}

fn domain(name: &str) -> DomainRef {
    if name.eq_ignore_ascii_case("default") {
        DomainRef {
            id: Some("default".into()),
            name: None,
        }
    } else {
        DomainRef {
            id: None,
            name: Some(name.to_string()),
        }
    }
}

impl GlanceBackend {
    /// A backend for the targets of `config`. With `read_only`, writes are refused.
    pub fn new(
        config: Arc<GlanceSyncConfig>,
        read_only: bool,
        observer: Arc<dyn TransferObserver>,
    ) -> Self {
        GlanceBackend {
            config,
            read_only,
            observer,
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            clients: tokio::sync::Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            offers_download: tokio::sync::Mutex::new(HashMap::new()),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Bytes and images this backend transferred so far.
    pub fn counters(&self) -> TransferCounters {
        let c = &self.counters;
        TransferCounters {
            bytes_streamed: c.bytes_streamed.load(Ordering::Relaxed),
            streamed_images: c.streamed_images.load(Ordering::Relaxed),
            server_side_images: c.server_side_images.load(Ordering::Relaxed),
            server_side_fallbacks: c.server_side_fallbacks.load(Ordering::Relaxed),
        }
    }

    /// Whether the Glance of `region` offers `glance-download` and shares
    /// the master's Keystone (asked once per region).
    async fn offers_glance_download(&self, region: &RegionRef, target: &TargetConfig) -> bool {
        let same_keystone = match (target.credential(), self.config.master().credential()) {
            (Ok(t), Ok(m)) => {
                let norm = |u: &str| u.trim().trim_end_matches('/').to_string();
                norm(&t.keystone_url) == norm(&m.keystone_url)
            }
            _ => false,
        };
        if !same_keystone {
            return false;
        }
        let mut cache = self.offers_download.lock().await;
        if let Some(b) = cache.get(region) {
            return *b;
        }
        let offered = match self.client(region, target).await {
            Ok(c) => match c.import_methods().await {
                Ok(m) => m.iter().any(|x| x == "glance-download"),
                Err(e) => {
                    tracing::debug!(region = %region, error = %e, "cannot read the import methods");
                    false
                }
            },
            Err(_) => false,
        };
        cache.insert(region.clone(), offered);
        offered
    }

    /// Create the target image, ask its Glance to pull the data from the
    /// master's Glance (`glance-download`), wait, verify, then write the
    /// plan's metadata. On failure the image is deleted.
    async fn server_side(&self, req: &UploadRequest<'_>) -> Result<String> {
        let full = req.region.full_name();
        let name = &req.image.name;
        if !self.offers_glance_download(req.region, req.target).await {
            return Err(backend_err(
                &full,
                "server-side copy",
                "the region's Glance does not offer the glance-download import, or does not share the master's Keystone",
            ));
        }
        let prepared = self.prepare(req).await?;
        let client = prepared.client.clone();
        let id = prepared.created.id.clone();
        let started = std::time::Instant::now();
        let master_region = self.config.require_master_region()?.to_string();
        let outcome: Result<()> = async {
            client
                .import_image(
                    &id,
                    &ImportMethod::GlanceDownload {
                        image_id: req.master.id.clone(),
                        region: master_region,
                        service_interface: Some("public".into()),
                    },
                    &ImportOptions::default(),
                )
                .await
                .map_err(|e| cloud_err(&full, &format!("glance-download import of {name}"), e))?;
            wait_import_started(&client, &id, IMPORT_START_TIMEOUT)
                .await
                .map_err(|m| backend_err(&full, &format!("glance-download import of {name}"), m))?;
            let stored = client
                .wait_for_import(&id, IMPORT_TIMEOUT)
                .await
                .map_err(|e| cloud_err(&full, &format!("glance-download import of {name}"), e))?;
            verify_stored(&full, name, &id, req.master, &stored)?;
            // One request: the plan's metadata, the marker removed and the
            // protection, computed from the record the import wait returned.
            let mut patch = Self::metadata_patch(&full, &stored, req.image);
            if prepared.protected {
                patch = patch.protected(true);
            }
            if !patch.is_empty() {
                client
                    .update_image(&id, &patch)
                    .await
                    .map_err(|e| cloud_err(&full, &format!("finish image {name} ({id})"), e))?;
            }
            Ok(())
        }
        .instrument(tracing::info_span!("server_side_copy", region = %full, image = %name))
        .await;
        if let Ok(mut m) = self.in_flight.lock() {
            m.remove(&(full.clone(), name.clone()));
        }
        match outcome {
            Ok(()) => {
                self.counters
                    .server_side_images
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    "{full}: {name} copied server-side (glance-download) by Glance in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                Ok(id)
            }
            Err(e) => {
                match delete_incomplete(&client, &id).await {
                    Ok(()) => tracing::warn!(
                        "{full}: server-side copy of {name} failed; deleted the incomplete image {id}"
                    ),
                    Err(de) => tracing::error!(
                        "{full}: server-side copy of {name} failed and the incomplete image {id} could not be deleted: {de}"
                    ),
                }
                Err(e)
            }
        }
    }

    fn cloud_config(target: &TargetConfig) -> Result<CloudConfig> {
        let cred = target.credential()?;
        let mut url = cred.keystone_url.trim().trim_end_matches('/').to_string();
        if let Some(base) = url.strip_suffix("/v2.0") {
            tracing::warn!(target = %target.name, "keystone_url {url} is a Keystone v2.0 URL; using {base}/v3 (Keystone v2.0 no longer exists)");
            url = format!("{base}/v3");
        }
        let mut cc = CloudConfig::password(
            &url,
            &cred.user,
            cred.password.expose().to_string(),
            &cred.tenant,
        )
        .map_err(|e| Error::Config {
            file: String::new(),
            message: format!("target [{}]: {e}", target.name),
        })?;
        if let openstack_client::Credentials::Password { user, .. } = &mut cc.credentials {
            user.domain = domain(&target.user_domain_name);
        }
        // Identify our requests in the servers' access logs (and the run, for audits).
        cc.http.user_agent = format!(
            "glancesync/{} pid/{}",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        );
        cc.scope = Scope::Project {
            id: None,
            name: Some(cred.tenant.clone()),
            domain: domain(&target.project_domain_name),
        };
        Ok(cc)
    }

    async fn session(&self, target: &TargetConfig) -> Result<Session> {
        let mut s = self.sessions.lock().await;
        if let Some(sess) = s.get(&target.name) {
            return Ok(sess.clone());
        }
        let sess = Session::new(Self::cloud_config(target)?)
            .map_err(|e| cloud_err(&target.name, "keystone session", e))?;
        s.insert(target.name.clone(), sess.clone());
        Ok(sess)
    }

    async fn client(&self, region: &RegionRef, target: &TargetConfig) -> Result<GlanceClient> {
        let mut c = self.clients.lock().await;
        if let Some(g) = c.get(region) {
            return Ok(g.clone());
        }
        let sess = self.session(target).await?;
        let g = sess
            .image(Some(&region.region))
            .await
            .map_err(|e| cloud_err(&region.full_name(), "find the image endpoint", e))?;
        c.insert(region.clone(), g.clone());
        Ok(g)
    }

    /// Delete every image whose upload is still in progress (call on SIGINT/SIGTERM).
    ///
    /// When the creation request was still in flight (id unknown), images of
    /// that name still `queued`/`saving` and owned by the tenant are deleted.
    pub async fn abort_in_flight(&self) {
        let pending: Vec<((String, String), InFlight)> = self
            .in_flight
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default();
        for ((region, _), f) in pending {
            match &f.id {
                Some(id) => match delete_incomplete(&f.client, id).await {
                    Ok(()) => tracing::warn!(
                        "{region}: interrupted; deleted the incomplete image {} ({id})",
                        f.name
                    ),
                    Err(e) => tracing::error!(
                        "{region}: interrupted; could not delete the incomplete image {id}: {e}"
                    ),
                },
                None => match self
                    .remove_incomplete(&f.client, &region, &f.name, &f.tenant)
                    .await
                {
                    Ok(n) if n > 0 => tracing::warn!(
                        "{region}: interrupted; deleted the incomplete image {}",
                        f.name
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!("{region}: interrupted; could not clean up {}: {e}", f.name)
                    }
                },
            }
        }
    }

    /// Refuse in read-only mode, clean up leftovers of an interrupted run,
    /// create the target image (with the transfer marker) and register it
    /// as in flight.
    async fn prepare(&self, req: &UploadRequest<'_>) -> Result<Prepared> {
        req.region
            .refuse_write_if(self.read_only, "upload an image")?;
        let full = req.region.full_name();
        let client = self.client(req.region, req.target).await?;
        let tenant = self.tenant_id(req.target).await?;
        self.remove_incomplete(&client, &full, &req.image.name, &tenant)
            .await?;
        let raw = req.master.raw.clone().unwrap_or_default();
        let mut create = CreateImage::new(req.image.name.clone())
            .disk_format(raw.disk_format.clone().unwrap_or_else(|| "raw".into()))
            .container_format(
                raw.container_format
                    .clone()
                    .unwrap_or_else(|| "bare".into()),
            )
            .min_disk(raw.min_disk)
            .min_ram(raw.min_ram)
            // Private until its data is verified: a copy that does not match
            // the master never becomes visible to anyone else.
            .visibility(Visibility::Private);
        for (k, v) in &req.image.user_properties {
            if let Some(s) = Self::property_value(&full, &req.image.name, k, v) {
                create = create.property(k.clone(), s);
            }
        }
        create = create.property(
            TRANSFER_MARKER,
            format!("in progress (pid {})", std::process::id()),
        );
        if let Ok(mut m) = self.in_flight.lock() {
            m.insert(
                (full.clone(), req.image.name.clone()),
                InFlight {
                    client: client.clone(),
                    name: req.image.name.clone(),
                    tenant: tenant.clone(),
                    id: None,
                },
            );
        }
        let created = match client.create_image(&create).await {
            Ok(c) => c,
            Err(e) => {
                if let Ok(mut m) = self.in_flight.lock() {
                    m.remove(&(full.clone(), req.image.name.clone()));
                }
                return Err(backend_err(
                    &full,
                    &format!("create image {}", req.image.name),
                    e,
                ));
            }
        };
        if let Ok(mut m) = self.in_flight.lock() {
            if let Some(f) = m.get_mut(&(full.clone(), req.image.name.clone())) {
                f.id = Some(created.id.clone());
            }
        }
        Ok(Prepared {
            client,
            created,
            protected: raw.protected,
        })
    }

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
    async fn stream_one(&self, req: &UploadRequest<'_>) -> Result<String> {
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

    /// One master image to several regions: every target image is created,
    /// then the master is read once and streamed to all of them (see
    /// [`crate::fanout`]); each target is verified and finished or deleted on its own.
    async fn upload_fanned_out(&self, reqs: &[UploadRequest<'_>]) -> Vec<Result<String>> {
        let master = reqs[0].master;
        let span = tracing::info_span!("upload_fanned_out", image = %master.name, size = master.size, regions = reqs.len());
        async {
            let mut prepared: Vec<Option<Result<Prepared>>> = Vec::with_capacity(reqs.len());
            for r in reqs {
                prepared.push(Some(self.prepare(r).await));
            }
            let n = prepared.iter().filter(|p| matches!(p, Some(Ok(_)))).count();
            let opener: Result<Opener> = async {
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
            }
            .await;
            let (readers, driver): (Vec<Result<Source>>, _) = match &opener {
                Ok(opener) => {
                    let stats = Arc::new(FanoutStats::default());
                    let (streams, driver) =
                        fan_out(opener.clone(), n, FanoutConfig::default(), stats);
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

    fn to_image(region: &str, g: openstack_client::glance::Image) -> Image {
        let mut props = Properties::new();
        for (k, v) in &g.properties {
            if is_user_property(k) {
                props.insert(k.clone(), PyValue::from_json(v));
            }
        }
        Image {
            region: region.to_string(),
            name: g.name.clone().unwrap_or_default(),
            id: g.id.clone(),
            status: g.status.as_str().to_string(),
            size: g.size.unwrap_or(0),
            checksum: g.checksum.clone(),
            owner: g.owner.clone().unwrap_or_default(),
            is_public: g.visibility == Visibility::Public,
            user_properties: props,
            raw: Some(RawImage {
                disk_format: g.disk_format.clone(),
                container_format: g.container_format.clone(),
                protected: g.protected,
                min_ram: g.min_ram.unwrap_or(0),
                min_disk: g.min_disk.unwrap_or(0),
                os_hash_algo: g.os_hash_algo.clone(),
                os_hash_value: g.os_hash_value.clone(),
            }),
        }
    }

    fn property_value(region: &str, image: &str, key: &str, v: &PyValue) -> Option<String> {
        let s = v.to_glance_string();
        if (key == "kernel_id" || key == "ramdisk_id") && s.starts_with("__") {
            tracing::warn!(
                "{region}: {key} of image {image} is unresolved ({s}); not sent to Glance"
            );
            return None;
        }
        Some(s)
    }

    /// The patch that gives `current` the name, visibility and user
    /// properties of `image` (and removes the transfer marker).
    fn metadata_patch(
        full: &str,
        current: &openstack_client::glance::Image,
        image: &Image,
    ) -> ImagePatch {
        let mut patch = ImagePatch::for_image(current);
        if current.name.as_deref() != Some(image.name.as_str()) {
            patch = patch.name(image.name.clone());
        }
        let want_vis = if image.is_public {
            Visibility::Public
        } else {
            Visibility::Private
        };
        if (current.visibility == Visibility::Public) != image.is_public {
            patch = patch.visibility(want_vis);
        }
        for (k, v) in &current.properties {
            if is_user_property(k) && !image.user_properties.contains_key(k) && !v.is_null() {
                patch = patch.remove_property(k);
            }
        }
        for (k, v) in &image.user_properties {
            let Some(s) = Self::property_value(full, &image.name, k, v) else {
                continue;
            };
            if current.property(k) != Some(s.as_str()) {
                patch = patch.set_property(k, s);
            }
        }
        if current.properties.contains_key(TRANSFER_MARKER) {
            patch = patch.remove_property(TRANSFER_MARKER);
        }
        patch
    }

    async fn remove_incomplete(
        &self,
        client: &GlanceClient,
        region: &str,
        name: &str,
        tenant: &str,
    ) -> Result<usize> {
        let found = client
            .list_images(&ImageFilter::default().name(name))
            .await
            .map_err(|e| cloud_err(region, "list images", e))?;
        let mut removed = 0;
        for g in found {
            // `importing`/`uploading`: a server-side copy (glance-download)
            // of a run that was killed goes on in the target Glance.
            let stale = matches!(
                g.status,
                ImageStatus::Queued
                    | ImageStatus::Saving
                    | ImageStatus::Killed
                    | ImageStatus::Importing
                    | ImageStatus::Uploading
            );
            let ours = g
                .owner
                .as_deref()
                .is_none_or(|o| o.is_empty() || crate::rules::same_owner(o, tenant));
            let marked = g.properties.contains_key(TRANSFER_MARKER);
            if stale && ours && marked {
                tracing::warn!("{region}: deleting incomplete image {name} ({}, {}) left by an interrupted transfer", g.id, g.status.as_str());
                delete_incomplete(client, &g.id)
                    .await
                    .map_err(|e| cloud_err(region, "delete an incomplete image", e))?;
                removed += 1;
            }
        }
        Ok(removed)
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

    async fn master_client(&self) -> Result<(RegionRef, GlanceClient)> {
        let master_ref = RegionRef {
            target: "master".into(),
            region: self.config.require_master_region()?.to_string(),
        };
        let client = self.client(&master_ref, self.config.master()).await?;
        Ok((master_ref, client))
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
        let result = target_client
            .upload(new_id, counting, Some(master.size))
            .await;
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
        verify_stored(&full, &name, new_id, master, &stored)
    }
}

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

#[async_trait]
impl RegionBackend for GlanceBackend {
    async fn regions(&self, target: &TargetConfig) -> Result<Vec<String>> {
        let sess = self.session(target).await?;
        let catalog = sess
            .catalog()
            .await
            .map_err(|e| cloud_err(&target.name, "read the service catalog", e))?;
        Ok(catalog.regions_for("image").into_iter().collect())
    }

    async fn tenant_id(&self, target: &TargetConfig) -> Result<String> {
        let sess = self.session(target).await?;
        let info = sess
            .token_info()
            .await
            .map_err(|e| cloud_err(&target.name, "authenticate", e))?;
        info.project_id.ok_or_else(|| {
            backend_err(
                &target.name,
                "authenticate",
                "the token is not scoped to a project",
            )
        })
    }

    async fn list_images(&self, region: &RegionRef, target: &TargetConfig) -> Result<Vec<Image>> {
        let full = region.full_name();
        let client = self.client(region, target).await?;
        let timeout = Duration::from_secs(target.list_images_timeout);
        let listed = tokio::time::timeout(timeout, client.list_images(&ImageFilter::default()))
            .instrument(tracing::debug_span!("list_images", region = %full))
            .await
            .map_err(|_| {
                backend_err(
                    &full,
                    "list images",
                    format!(
                        "timed out after {}s (list_images_timeout)",
                        timeout.as_secs()
                    ),
                )
            })?
            .map_err(|e| cloud_err(&full, "list images", e))?;
        Ok(listed
            .into_iter()
            .map(|g| Self::to_image(&full, g))
            .collect())
    }

    async fn upload_image(&self, req: UploadRequest<'_>) -> Result<String> {
        self.upload_images(&[req])
            .await
            .pop()
            .unwrap_or_else(|| Err(backend_err(&req.region.full_name(), "upload", "no result")))
    }

    async fn copies_server_side(&self, region: &RegionRef, target: &TargetConfig) -> bool {
        self.config.images_dir.is_none()
            && match target.transfer {
                Transfer::Stream => false,
                Transfer::GlanceDownload => true,
                Transfer::Auto => self.offers_glance_download(region, target).await,
            }
    }

    async fn upload_images(&self, reqs: &[UploadRequest<'_>]) -> Vec<Result<String>> {
        self.upload_image_groups(&[reqs.to_vec()])
            .await
            .pop()
            .unwrap_or_default()
    }

    /// Server-side copies (`glance-download`) of every group are started
    /// without waiting for the streamed ones: each target region imports
    /// at most `max_concurrent_imports` of them at once, the regions side by
    /// side (at most [`IMPORT_CONCURRENCY`]; no byte passes through
    /// glancesync); then each
    /// group's streamed copies, one master image after the other, each read
    /// once for all its regions. With `transfer = auto`, a failed import is
    /// streamed instead.
    async fn upload_image_groups(
        &self,
        groups: &[Vec<UploadRequest<'_>>],
    ) -> Vec<Vec<Result<String>>> {
        let mut results: Vec<Vec<Option<Result<String>>>> = groups
            .iter()
            .map(|g| g.iter().map(|_| None).collect())
            .collect();
        let mut stream_idx: Vec<Vec<usize>> = groups.iter().map(|_| Vec::new()).collect();
        let mut server_idx: Vec<(usize, usize)> = Vec::new();
        for (g, reqs) in groups.iter().enumerate() {
            for (i, r) in reqs.iter().enumerate() {
                if let Err(e) = r.region.refuse_write_if(self.read_only, "upload an image") {
                    results[g][i] = Some(Err(e));
                    continue;
                }
                if self.copies_server_side(r.region, r.target).await {
                    server_idx.push((g, i));
                } else {
                    stream_idx[g].push(i);
                }
            }
        }
        // Per target region, at most `max_concurrent_imports` imports at
        // once (a Glance must take concurrent writers for more than one: the
        // local cloud's SQLite needs WAL and a busy timeout); the regions
        // side by side. Keyed by the bare region name: two targets may reach
        // one Glance (the smaller setting wins).
        let mut per_region: Vec<(&str, usize, Vec<(usize, usize)>)> = Vec::new();
        for &(g, i) in &server_idx {
            let req = &groups[g][i];
            let region = req.region.region.as_str();
            let n = req.target.max_concurrent_imports.max(1);
            match per_region.iter_mut().find(|(r, _, _)| *r == region) {
                Some((_, m, v)) => {
                    *m = (*m).min(n);
                    v.push((g, i));
                }
                None => per_region.push((region, n, vec![(g, i)])),
            }
        }
        let mut lanes = Vec::with_capacity(per_region.len());
        for (_, n, jobs) in per_region {
            lanes.push(async move {
                futures::stream::iter(jobs)
                    .map(|(g, i)| async move { ((g, i), self.server_side(&groups[g][i]).await) })
                    .buffer_unordered(n)
                    .collect::<Vec<_>>()
                    .await
            });
        }
        let server: Vec<((usize, usize), Result<String>)> = futures::stream::iter(lanes)
            .buffer_unordered(IMPORT_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flatten()
            .collect();
        for ((g, i), res) in server {
            let req = &groups[g][i];
            match res {
                Ok(id) => results[g][i] = Some(Ok(id)),
                Err(e) if req.target.transfer == Transfer::Auto => {
                    tracing::warn!(
                        "{}: server-side copy of {} failed ({e}); streaming it instead",
                        req.region.full_name(),
                        req.image.name
                    );
                    self.counters
                        .server_side_fallbacks
                        .fetch_add(1, Ordering::Relaxed);
                    stream_idx[g].push(i);
                }
                Err(e) => results[g][i] = Some(Err(e)),
            }
        }
        for (g, reqs) in groups.iter().enumerate() {
            let idx = &mut stream_idx[g];
            idx.sort_unstable();
            if idx.len() >= 2 && self.config.images_dir.is_none() {
                let sub: Vec<UploadRequest<'_>> = idx.iter().map(|&i| reqs[i]).collect();
                for (&i, res) in idx.iter().zip(self.upload_fanned_out(&sub).await) {
                    results[g][i] = Some(res);
                }
            } else {
                for &i in idx.iter() {
                    results[g][i] = Some(self.stream_one(&reqs[i]).await);
                }
            }
        }
        results
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|r| r.unwrap_or_else(|| Err(backend_err("", "upload", "not attempted"))))
                    .collect()
            })
            .collect()
    }

    async fn update_metadata(
        &self,
        region: &RegionRef,
        target: &TargetConfig,
        image: &Image,
    ) -> Result<()> {
        region.refuse_write_if(self.read_only, "update image metadata")?;
        let full = region.full_name();
        let client = self.client(region, target).await?;
        let current = client
            .get_image(&image.id)
            .await
            .map_err(|e| cloud_err(&full, &format!("get image {}", image.id), e))?;
        let patch = Self::metadata_patch(&full, &current, image);
        if patch.is_empty() {
            return Ok(());
        }
        client
            .update_image(&image.id, &patch)
            .instrument(tracing::info_span!("update_metadata", region = %full, image = %image.name))
            .await
            .map_err(|e| {
                cloud_err(
                    &full,
                    &format!("update image {} ({})", image.name, image.id),
                    e,
                )
            })?;
        Ok(())
    }

    async fn delete_image(
        &self,
        region: &RegionRef,
        target: &TargetConfig,
        id: &str,
    ) -> Result<()> {
        region.refuse_write_if(self.read_only, "delete an image")?;
        let full = region.full_name();
        let client = self.client(region, target).await?;
        client
            .delete_image(id)
            .instrument(tracing::info_span!("delete_image", region = %full, id))
            .await
            .map_err(|e| cloud_err(&full, &format!("delete image {id}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session against a mocked Keystone whose catalog points the image
    /// service at the same mock server.
    async fn mocked_glance() -> (wiremock::MockServer, GlanceClient) {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let expires = "2099-01-01T00:00:00.000000Z";
        let uri = server.uri();
        Mock::given(method("POST"))
            .and(path("/v3/auth/tokens"))
            .respond_with(
                ResponseTemplate::new(201)
                    .insert_header("X-Subject-Token", "tok")
                    .set_body_json(serde_json::json!({"token": {"expires_at": expires,
                        "project": {"id": "p", "name": "proj"}, "catalog": [
                        {"type": "image", "endpoints": [{"interface": "public",
                            "region_id": "R", "url": format!("{uri}/image")}]}]}})),
            )
            .mount(&server)
            .await;
        let config = CloudConfig::password(&format!("{uri}/v3"), "u", "p", "proj").unwrap();
        let session = Session::connect(config).await.unwrap();
        let client = session.image(Some("R")).await.unwrap();
        (server, client)
    }

    #[tokio::test]
    async fn incomplete_image_deletion_outlasts_server_errors() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, ResponseTemplate};
        let (server, client) = mocked_glance().await;
        // Two 500s ("database is locked"), then the deletion goes through.
        Mock::given(method("DELETE"))
            .and(path("/image/v2/images/busy"))
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(2)
            .with_priority(1)
            .expect(2)
            .mount(&server)
            .await;
        Mock::given(method("DELETE"))
            .and(path("/image/v2/images/busy"))
            .respond_with(ResponseTemplate::new(204))
            .with_priority(2)
            .expect(1)
            .mount(&server)
            .await;
        delete_incomplete(&client, "busy").await.unwrap();

        // Already gone: done, no retry.
        Mock::given(method("DELETE"))
            .and(path("/image/v2/images/gone"))
            .respond_with(ResponseTemplate::new(404))
            .expect(1)
            .mount(&server)
            .await;
        delete_incomplete(&client, "gone").await.unwrap();

        // A client error is final at once.
        Mock::given(method("DELETE"))
            .and(path("/image/v2/images/protected"))
            .respond_with(ResponseTemplate::new(403))
            .expect(1)
            .mount(&server)
            .await;
        let err = delete_incomplete(&client, "protected").await.unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(403));

        // A server that keeps failing: gives up after CLEANUP_ATTEMPTS.
        Mock::given(method("DELETE"))
            .and(path("/image/v2/images/broken"))
            .respond_with(ResponseTemplate::new(500))
            .expect(u64::from(CLEANUP_ATTEMPTS))
            .mount(&server)
            .await;
        let err = delete_incomplete(&client, "broken").await.unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(500));
        server.verify().await;
    }

    #[tokio::test]
    async fn an_import_that_never_starts_is_given_up() {
        use wiremock::matchers::{method, path};
        use wiremock::{Mock, ResponseTemplate};
        let (server, client) = mocked_glance().await;
        let image = |id: &str, status: &str| {
            serde_json::json!({"id": id, "status": status, "visibility": "private",
                "os_glance_import_task": "t", "os_glance_importing_to_stores": "file1"})
        };
        Mock::given(method("GET"))
            .and(path("/image/v2/images/lost"))
            .respond_with(ResponseTemplate::new(200).set_body_json(image("lost", "queued")))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/image/v2/images/busy"))
            .respond_with(ResponseTemplate::new(200).set_body_json(image("busy", "importing")))
            .mount(&server)
            .await;
        let err = wait_import_started(&client, "lost", Duration::from_millis(600))
            .await
            .unwrap_err();
        assert!(
            err.contains("lost") && err.contains("did not start"),
            "{err}"
        );
        wait_import_started(&client, "busy", Duration::from_millis(600))
            .await
            .unwrap();
    }

    fn target(section: &str) -> TargetConfig {
        let text = format!("[main]\nmaster_region = R\n[master]\n{section}");
        GlanceSyncConfig::from_test_text(text).master().clone()
    }

    #[test]
    fn keystone_v2_urls_become_v3_and_domains_apply() {
        let t = target("credential = u,cHc=,http://k:5000/v2.0,proj\nuser_domain_name = Users\n");
        let cc = GlanceBackend::cloud_config(&t).unwrap();
        assert_eq!(cc.auth_url.as_str(), "http://k:5000/v3/");
        let openstack_client::Credentials::Password { user, password } = &cc.credentials else {
            panic!()
        };
        assert_eq!(password.expose(), "pw");
        assert_eq!(user.name.as_deref(), Some("u"));
        assert_eq!(user.domain.name.as_deref(), Some("Users"));
        let Scope::Project { name, domain, .. } = &cc.scope else {
            panic!()
        };
        assert_eq!(name.as_deref(), Some("proj"));
        assert_eq!(domain.id.as_deref(), Some("default"));
        assert!(cc.http.user_agent.starts_with("glancesync/"));
    }

    #[test]
    fn glance_fields_that_are_not_user_properties() {
        let g: openstack_client::glance::Image = serde_json::from_value(serde_json::json!({
            "id": "i", "name": "n", "status": "active", "visibility": "public", "size": 5,
            "checksum": "c", "owner": "o", "disk_format": "raw", "container_format": "bare",
            "self": "/v2/images/i", "file": "/v2/images/i/file", "schema": "/v2/schemas/image",
            "stores": "file1", "os_glance_importing_to_stores": "", "glancesync_transfer": "x",
            "type": "base", "nid": 3
        }))
        .unwrap();
        let i = GlanceBackend::to_image("R", g);
        assert_eq!(
            i.user_properties.keys().collect::<Vec<_>>(),
            vec!["nid", "type"]
        );
        assert_eq!(i.user_properties["nid"], PyValue::Int(3));
        assert!(i.is_public);
        assert_eq!(i.raw.unwrap().disk_format.as_deref(), Some("raw"));
    }
}
