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
//!
//! The module is split along the copy's seams: `lifecycle` (a
//! target image from creation to verification or deletion, the in-flight
//! guard), `stream` (streamed and fanned-out uploads), `server_side`
//! (`glance-download` imports) and `metadata` (Glance records and metadata
//! patches); this file holds the backend, its Keystone sessions and Glance
//! clients, and the `RegionBackend` implementation that schedules uploads.

mod lifecycle;
mod metadata;
mod server_side;
mod stream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use openstack_client::glance::{GlanceClient, ImageFilter};
use openstack_client::{CloudConfig, DomainRef, Scope, Session};
use tracing::Instrument;

use crate::backend::{RegionBackend, RegionRef, UploadRequest};
use crate::config::{GlanceSyncConfig, TargetConfig, Transfer};
use crate::error::{Error, Result};
use crate::image::Image;
use lifecycle::InFlight;

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

/// The live counters behind [`TransferCounters`].
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

/// A backend operation `operation` in `region` failed with `e`.
fn backend_err(region: &str, operation: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        region: region.to_string(),
        operation: operation.to_string(),
        message: e.to_string(),
    }
}

/// A Keystone domain by name (`default` is the id of the default domain).
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

    /// The Keystone settings of `target` (a v2.0 URL becomes v3).
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

    /// The Keystone session of `target` (one per target).
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

    /// The Glance client of `region` (one per region).
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

    /// The master region and its Glance client.
    async fn master_client(&self) -> Result<(RegionRef, GlanceClient)> {
        let master_ref = RegionRef {
            target: "master".into(),
            region: self.config.require_master_region()?.to_string(),
        };
        let client = self.client(&master_ref, self.config.master()).await?;
        Ok((master_ref, client))
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
        for (_, n, mut jobs) in per_region {
            largest_first(&mut jobs, |(g, i)| groups[g][i].master.size);
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

/// Order a region's server-side copies largest first: with at most
/// `max_concurrent_imports` running at once, the longest copy then starts
/// at once instead of running alone at the end (the copies are independent;
/// the order of equal sizes is kept).
fn largest_first(jobs: &mut [(usize, usize)], size: impl Fn((usize, usize)) -> u64) {
    jobs.sort_by_key(|&j| std::cmp::Reverse(size(j)));
}

#[cfg(test)]
mod test_support {
    use openstack_client::glance::GlanceClient;
    use openstack_client::{CloudConfig, Session};

    /// A session against a mocked Keystone whose catalog points the image
    /// service at the same mock server.
    pub(super) async fn mocked_glance() -> (wiremock::MockServer, GlanceClient) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_copies_start_largest_first() {
        let sizes = [[128u64, 320, 160], [320, 96, 0]];
        let mut jobs = vec![(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)];
        largest_first(&mut jobs, |(g, i)| sizes[g][i]);
        // Equal sizes keep their order.
        assert_eq!(jobs, [(0, 1), (1, 0), (0, 2), (0, 0), (1, 1), (1, 2)]);
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
}
