//! Glance v2 image service client.

mod download;
mod types;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use url::Url;

pub use download::{DownloadSummary, ImageDownload};
pub use types::{
    CreateImage, Image, ImageFilter, ImagePatch, ImageStatus, ImportMethod, ImportOptions, Member,
    MemberStatus, PatchOp, Store, Visibility, DEFAULT_PAGE_SIZE,
};

use crate::error::{Error, Result};
use crate::paging::by_id_or_name;
use crate::session::{Body, Framing, Req, Session};
use crate::wait::{poll, poll_capped, Poll};

const PATCH_MEDIA_TYPE: &str = "application/openstack-images-v2.1-json-patch";

/// Client for one region's Glance v2 API. Get one with
/// [`Session::image`](crate::Session::image); cheap to clone.
#[derive(Debug, Clone)]
pub struct GlanceClient {
    session: Session,
    region: Option<String>,
    /// Endpoint root without the version, ending in `/`.
    root: Url,
}

#[derive(Deserialize)]
struct ImagePage {
    images: Vec<Image>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct MemberList {
    members: Vec<Member>,
}

#[derive(Deserialize)]
struct StoreList {
    stores: Vec<Store>,
}

impl GlanceClient {
    pub(crate) fn new(session: Session, region: Option<String>, endpoint: Url) -> GlanceClient {
        let mut root = endpoint;
        let trimmed = root.path().trim_end_matches('/').to_owned();
        let without_version = trimmed
            .strip_suffix("/v2")
            .or_else(|| trimmed.strip_suffix("/v2.0"))
            .unwrap_or(&trimmed)
            .to_owned();
        root.set_path(&format!("{without_version}/"));
        root.set_query(None);
        GlanceClient {
            session,
            region,
            root,
        }
    }

    /// The region this client talks to.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The endpoint root (without `/v2`).
    pub fn endpoint(&self) -> &Url {
        &self.root
    }

    /// The session this client uses.
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.root.clone();
        url.path_segments_mut()
            .map_err(|_| {
                Error::InvalidInput(format!("endpoint {} cannot be a base URL", self.root))
            })?
            .pop_if_empty()
            .push("v2")
            .extend(segments);
        Ok(url)
    }

    fn req(&self, method: Method, url: Url) -> Req {
        Req::new("image", self.region.clone(), method, url)
    }

    /// One page of images starting at `url`; returns the next page URL.
    async fn page(&self, url: Url) -> Result<(Vec<Image>, Option<Url>)> {
        let resp = self.session.execute(self.req(Method::GET, url)).await?;
        let page: ImagePage = resp.json()?;
        let next = match page.next {
            Some(n) if !page.images.is_empty() => {
                let path_prefix = self.root.path().trim_end_matches('/');
                let joined = if n.starts_with('/') {
                    format!(
                        "{}{}{}",
                        self.root.origin().ascii_serialization(),
                        path_prefix,
                        n
                    )
                } else {
                    n.clone()
                };
                Some(
                    Url::parse(&joined)
                        .map_err(|e| Error::InvalidInput(format!("bad next link '{n}': {e}")))?,
                )
            }
            _ => None,
        };
        Ok((page.images, next))
    }

    /// Images matching `filter`, following `next` links page by page as the
    /// stream is consumed.
    pub fn images(&self, filter: &ImageFilter) -> impl Stream<Item = Result<Image>> + Send + '_ {
        let first = self.url(&["images"]).map(|mut u| {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in filter.query_pairs() {
                    q.append_pair(&k, &v);
                }
            }
            if u.query() == Some("") {
                u.set_query(None);
            }
            u
        });
        futures::stream::try_unfold(Some(first), move |state| async move {
            match state {
                None => Ok(None),
                Some(url) => {
                    let (images, next) = self.page(url?).await?;
                    Ok(Some((
                        futures::stream::iter(images.into_iter().map(Ok)),
                        next.map(Ok),
                    )))
                }
            }
        })
        .try_flatten()
    }

    /// All images matching `filter` (every page).
    pub async fn list_images(&self, filter: &ImageFilter) -> Result<Vec<Image>> {
        self.images(filter).try_collect().await
    }

    /// One image by id.
    pub async fn get_image(&self, id: &str) -> Result<Image> {
        let url = self.url(&["images", id])?;
        self.session
            .execute(self.req(Method::GET, url))
            .await?
            .json()
    }

    /// An image by id, or else by exact name (error if several share it).
    pub async fn find_image(&self, name_or_id: &str) -> Result<Image> {
        let filter = ImageFilter::default().name(name_or_id);
        by_id_or_name(
            "image",
            name_or_id,
            self.get_image(name_or_id).await,
            // Glance answers 400 for an id that is not a UUID.
            |e| e.is_not_found() || e.status() == Some(StatusCode::BAD_REQUEST),
            || self.list_images(&filter),
        )
        .await
    }

    /// Create an image record (status `queued`).
    pub async fn create_image(&self, request: &CreateImage) -> Result<Image> {
        let url = self.url(&["images"])?;
        let req = self.req(Method::POST, url).json(request)?;
        self.session.execute(req).await?.json()
    }

    /// Upload the image data from `reader` (`PUT /file`). Give `size` when
    /// known: it is sent as `Content-Length` and `x-openstack-image-size`.
    ///
    /// The body streams in 1 MiB frames and is never buffered or replayed:
    /// on failure check [`Error::is_retryable`]/[`Error::is_unauthorized`],
    /// reopen the source and call again (or use [`GlanceClient::upload_file`],
    /// which does exactly that). The token is refreshed first if it would
    /// expire within `transfer_token_validity`.
    pub async fn upload<R>(&self, id: &str, reader: R, size: Option<u64>) -> Result<()>
    where
        R: AsyncRead + Send + 'static,
    {
        self.put_data(id, "file", reader, size, Framing::Length)
            .await
    }

    /// [`GlanceClient::upload`] with the body sent chunked
    /// (`Transfer-Encoding: chunked`, 64 KiB chunks) and the size, when
    /// known, only in `x-openstack-image-size`, as python-glanceclient
    /// uploads. A Glance served by gunicorn takes such a body with about a
    /// third less CPU than one of known length (it re-buffers what each
    /// large `recv()` brings beyond its 64 KiB reads). The server must
    /// accept chunked requests (every Glance python-glanceclient can upload
    /// to does).
    pub async fn upload_chunked<R>(&self, id: &str, reader: R, size: Option<u64>) -> Result<()>
    where
        R: AsyncRead + Send + 'static,
    {
        self.put_data(id, "file", reader, size, Framing::Chunked)
            .await
    }

    /// Upload from a file, reopening it and trying again (with backoff) when
    /// the attempt failed in a retryable way or with an expired token.
    pub async fn upload_file(&self, id: &str, path: &Path) -> Result<()> {
        self.put_file(id, path, "file", Framing::Length).await
    }

    /// [`GlanceClient::upload_file`] with each attempt's body sent chunked,
    /// as [`GlanceClient::upload_chunked`] sends it (less work for a
    /// gunicorn-served Glance; the size goes in `x-openstack-image-size`).
    pub async fn upload_file_chunked(&self, id: &str, path: &Path) -> Result<()> {
        self.put_file(id, path, "file", Framing::Chunked).await
    }

    /// Stage data for a `glance-direct` import (`PUT /stage`).
    pub async fn stage<R>(&self, id: &str, reader: R, size: Option<u64>) -> Result<()>
    where
        R: AsyncRead + Send + 'static,
    {
        self.put_data(id, "stage", reader, size, Framing::Length)
            .await
    }

    /// Stage a file for `glance-direct`, with the same reopen-and-retry as
    /// [`GlanceClient::upload_file`].
    pub async fn stage_file(&self, id: &str, path: &Path) -> Result<()> {
        self.put_file(id, path, "stage", Framing::Length).await
    }

    /// One streaming `PUT /v2/images/<id>/<what>` (`file` or `stage`) of
    /// the data `reader` yields.
    async fn put_data<R>(
        &self,
        id: &str,
        what: &str,
        reader: R,
        size: Option<u64>,
        framing: Framing,
    ) -> Result<()>
    where
        R: AsyncRead + Send + 'static,
    {
        let url = self.url(&["images", id, what])?;
        self.session
            .execute_upload(self.req(Method::PUT, url), reader, size, framing)
            .await
            .map(|_| ())
    }

    async fn put_file(&self, id: &str, path: &Path, what: &str, framing: Framing) -> Result<()> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| Error::Io {
                context: format!("cannot stat {}", path.display()),
                source,
            })?
            .len();
        self.put_reopenable(id, what, Some(size), framing, || async move {
            tokio::fs::File::open(path)
                .await
                .map_err(|source| Error::Io {
                    context: format!("cannot open {}", path.display()),
                    source,
                })
        })
        .await
    }

    /// Upload from a source the caller can reopen: `open` is called for
    /// every attempt and must yield the data from the start (a file, a fresh
    /// download from another region, ...). An attempt that fails in a
    /// retryable way ([`Error::is_retryable`]) or with a rejected token (once)
    /// is repeated with backoff, up to `max_retries` times. A stream is never
    /// replayed: each attempt reads a newly opened source.
    pub async fn upload_reopenable<F, Fut, R>(
        &self,
        id: &str,
        size: Option<u64>,
        open: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<R>>,
        R: AsyncRead + Send + 'static,
    {
        self.put_reopenable(id, "file", size, Framing::Length, open)
            .await
    }

    async fn put_reopenable<F, Fut, R>(
        &self,
        id: &str,
        what: &str,
        size: Option<u64>,
        framing: Framing,
        mut open: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<R>>,
        R: AsyncRead + Send + 'static,
    {
        let opts = self.session.http_options().clone();
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            let source = open().await?;
            match self.put_data(id, what, source, size, framing).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_unauthorized() && !reauthed => {
                    // execute_upload already refreshed the token.
                    tracing::warn!(error = %e, image = id, "upload rejected the token, reopening the source and retrying");
                    reauthed = true;
                }
                Err(e) if e.is_retryable() && attempt < opts.max_retries => {
                    let delay = opts
                        .retry_base_delay
                        .saturating_mul(2u32.saturating_pow(attempt))
                        .min(opts.retry_max_delay);
                    tracing::warn!(error = %e, image = id, delay_ms = delay.as_millis() as u64, "upload failed, reopening the source and retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Download the data of image `id` as a verifying stream (fetches the
    /// image record first to learn its hash and size).
    pub async fn download(&self, id: &str) -> Result<ImageDownload> {
        let image = self.get_image(id).await?;
        self.download_image(&image).await
    }

    /// Download the data of `image` (whose hash and size are used for verification).
    pub async fn download_image(&self, image: &Image) -> Result<ImageDownload> {
        self.download_inner(image, true).await
    }

    /// Download without hash verification (the size is still checked). Only
    /// for callers that verify the data themselves, and for benchmarks.
    pub async fn download_image_unverified(&self, image: &Image) -> Result<ImageDownload> {
        self.download_inner(image, false).await
    }

    async fn download_inner(&self, image: &Image, verify: bool) -> Result<ImageDownload> {
        let opts = self.session.http_options().clone();
        self.session
            .ensure_token_valid_for(opts.transfer_token_validity)
            .await?;
        let url = self.url(&["images", &image.id, "file"])?;
        let (resp, span) = self
            .session
            .execute_streaming(self.req(Method::GET, url.clone()))
            .await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Err(Error::Api {
                status: StatusCode::NO_CONTENT,
                method: Method::GET,
                url: url.to_string(),
                request_id: crate::session::request_id(resp.headers()),
                message: format!("image {} has no data (status {})", image.id, image.status),
            });
        }
        let (algorithm, expected) = if !verify {
            (None, None)
        } else {
            self.pick_hash(image, resp.headers())
        };
        Ok(ImageDownload::new(
            resp,
            span,
            opts.idle_timeout,
            image.id.clone(),
            algorithm,
            expected,
            image.size,
        ))
    }

    /// The hash to verify a download with: `os_hash_*` when the algorithm is
    /// supported, else the md5 `checksum`, else the `Content-MD5` header.
    fn pick_hash(
        &self,
        image: &Image,
        headers: &reqwest::header::HeaderMap,
    ) -> (Option<String>, Option<String>) {
        match (&image.os_hash_algo, &image.os_hash_value) {
            (Some(a), Some(v)) if download::Hasher::new(a).is_some() => {
                (Some(a.clone()), Some(v.clone()))
            }
            _ => match &image.checksum {
                Some(md5) => (Some("md5".to_owned()), Some(md5.clone())),
                None => {
                    let header_md5 = headers
                        .get("content-md5")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    match header_md5 {
                        Some(m) => (Some("md5".to_owned()), Some(m)),
                        None => {
                            tracing::warn!(image = %image.id, "Glance recorded no usable hash: the download is not verified");
                            (None, None)
                        }
                    }
                }
            },
        }
    }

    /// Download image `id` into `writer`, verifying it. Returns what was
    /// received; on a hash or size mismatch the writer has the bad data and
    /// the error says so.
    pub async fn download_to<W>(&self, id: &str, writer: &mut W) -> Result<DownloadSummary>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let writing = |source| Error::Io {
            context: format!("writing image {id}"),
            source,
        };
        let mut stream = self.download(id).await?;
        while let Some(chunk) = stream.next().await {
            writer.write_all(&chunk?).await.map_err(writing)?;
        }
        writer.flush().await.map_err(writing)?;
        stream.summary().cloned().ok_or_else(|| {
            writing(std::io::Error::other(
                "the download ended without verification",
            ))
        })
    }

    /// Download image `id` into a new file at `path` (removed again if the
    /// download fails or does not verify); see [`ImageDownload::save_to_file`].
    pub async fn download_to_file(&self, id: &str, path: &Path) -> Result<DownloadSummary> {
        self.download(id).await?.save_to_file(path).await
    }

    /// Apply a JSON patch and return the updated image.
    pub async fn update_image(&self, id: &str, patch: &ImagePatch) -> Result<Image> {
        let url = self.url(&["images", id])?;
        let data = serde_json::to_vec(patch.ops())
            .map_err(|e| Error::InvalidInput(format!("patch: {e}")))?;
        let mut req = self.req(Method::PATCH, url);
        req.body = Body::Bytes {
            data: data.into(),
            content_type: PATCH_MEDIA_TYPE,
        };
        self.session.execute(req).await?.json()
    }

    /// Delete an image.
    pub async fn delete_image(&self, id: &str) -> Result<()> {
        let url = self.url(&["images", id])?;
        self.session
            .execute(self.req(Method::DELETE, url))
            .await
            .map(|_| ())
    }

    /// Deactivate an image (admin).
    pub async fn deactivate_image(&self, id: &str) -> Result<()> {
        let url = self.url(&["images", id, "actions", "deactivate"])?;
        self.session
            .execute(self.req(Method::POST, url).idempotent(true))
            .await
            .map(|_| ())
    }

    /// Reactivate a deactivated image (admin).
    pub async fn reactivate_image(&self, id: &str) -> Result<()> {
        let url = self.url(&["images", id, "actions", "reactivate"])?;
        self.session
            .execute(self.req(Method::POST, url).idempotent(true))
            .await
            .map(|_| ())
    }

    /// Add a tag.
    pub async fn add_tag(&self, id: &str, tag: &str) -> Result<()> {
        let url = self.url(&["images", id, "tags", tag])?;
        self.session
            .execute(self.req(Method::PUT, url))
            .await
            .map(|_| ())
    }

    /// Remove a tag.
    pub async fn remove_tag(&self, id: &str, tag: &str) -> Result<()> {
        let url = self.url(&["images", id, "tags", tag])?;
        self.session
            .execute(self.req(Method::DELETE, url))
            .await
            .map(|_| ())
    }

    /// Share the image with a project (image visibility must be `shared`).
    pub async fn add_member(&self, id: &str, project_id: &str) -> Result<Member> {
        let url = self.url(&["images", id, "members"])?;
        let req = self
            .req(Method::POST, url)
            .json(&serde_json::json!({ "member": project_id }))?;
        self.session.execute(req).await?.json()
    }

    /// Members of an image.
    pub async fn list_members(&self, id: &str) -> Result<Vec<Member>> {
        let url = self.url(&["images", id, "members"])?;
        Ok(self
            .session
            .execute(self.req(Method::GET, url))
            .await?
            .json::<MemberList>()?
            .members)
    }

    /// One member.
    pub async fn get_member(&self, id: &str, project_id: &str) -> Result<Member> {
        let url = self.url(&["images", id, "members", project_id])?;
        self.session
            .execute(self.req(Method::GET, url))
            .await?
            .json()
    }

    /// Accept, reject or reset a membership (as the consumer).
    pub async fn update_member(
        &self,
        id: &str,
        project_id: &str,
        status: MemberStatus,
    ) -> Result<Member> {
        let url = self.url(&["images", id, "members", project_id])?;
        let req = self
            .req(Method::PUT, url)
            .json(&serde_json::json!({ "status": status.as_str() }))?;
        self.session.execute(req).await?.json()
    }

    /// Stop sharing with a project.
    pub async fn remove_member(&self, id: &str, project_id: &str) -> Result<()> {
        let url = self.url(&["images", id, "members", project_id])?;
        self.session
            .execute(self.req(Method::DELETE, url))
            .await
            .map(|_| ())
    }

    /// Stores of a multi-store deployment; `None` when multi-store is not
    /// enabled (Glance answers 404 then).
    pub async fn stores(&self) -> Result<Option<Vec<Store>>> {
        let url = self.url(&["info", "stores"])?;
        match self.session.execute(self.req(Method::GET, url)).await {
            Ok(resp) => Ok(Some(resp.json::<StoreList>()?.stores)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Import methods this Glance offers (`glance-direct`, `web-download`, ...).
    pub async fn import_methods(&self) -> Result<Vec<String>> {
        let url = self.url(&["info", "import"])?;
        let v: serde_json::Value = self
            .session
            .execute(self.req(Method::GET, url))
            .await?
            .json()?;
        Ok(v.pointer("/import-methods/value")
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Start an interoperable import (`POST /import`, 202). Follow progress
    /// with [`GlanceClient::wait_for_status`] and the image's
    /// `os_glance_importing_to_stores` / `os_glance_failed_import` properties.
    pub async fn import_image(
        &self,
        id: &str,
        method: &ImportMethod,
        options: &ImportOptions,
    ) -> Result<()> {
        let url = self.url(&["images", id, "import"])?;
        let req = self
            .req(Method::POST, url)
            .json(&types::import_body(method, options))?;
        self.session.execute(req).await.map(|_| ())
    }

    /// Delete one store's copy of the data (multi-store, Glance 2.10+).
    pub async fn delete_from_store(&self, store: &str, id: &str) -> Result<()> {
        let url = self.url(&["stores", store, id])?;
        self.session
            .execute(self.req(Method::DELETE, url))
            .await
            .map(|_| ())
    }

    /// Poll until an import finished: the image is `active`,
    /// `os_glance_importing_to_stores` is empty and the import lock
    /// (`os_glance_import_task`) is released. Fails when
    /// `os_glance_failed_import` names a store, when the image went back to
    /// `queued` after a failed import, or after `timeout`.
    pub async fn wait_for_import(&self, id: &str, timeout: Duration) -> Result<Image> {
        // Once seen importing, a `queued` image means the import gave up.
        let seen_busy = AtomicBool::new(false);
        poll_capped(
            "image",
            id,
            "imported",
            timeout,
            IMAGE_POLL,
            IMPORT_POLL_MAX,
            || async {
                let image = self.get_image(id).await?;
                let pending = image
                    .property("os_glance_importing_to_stores")
                    .unwrap_or("");
                let failed = image.property("os_glance_failed_import").unwrap_or("");
                if !failed.is_empty() {
                    return Err(import_failed(id, &image, failed));
                }
                // Glance keeps its import lock (`os_glance_import_task`) for a
                // moment after the data is active; another import before it is
                // released fails with 409 "Image has active task".
                let locked = image
                    .property("os_glance_import_task")
                    .is_some_and(|t| !t.is_empty());
                if image.status == ImageStatus::Active && pending.is_empty() && !locked {
                    return Ok(Poll::Done(image));
                }
                if matches!(
                    image.status,
                    ImageStatus::Importing | ImageStatus::Uploading
                ) || !pending.is_empty()
                {
                    seen_busy.store(true, Ordering::Relaxed);
                }
                if is_gone(&image.status)
                    || (seen_busy.load(Ordering::Relaxed) && image.status == ImageStatus::Queued)
                {
                    return Err(Error::ResourceFailed {
                        kind: "image",
                        id: id.to_owned(),
                        status: image.status.to_string(),
                        fault: Some("the import did not complete".into()),
                    });
                }
                Ok(Poll::Waiting(image.status.to_string()))
            },
        )
        .await
    }

    /// Poll until the image has `wanted` status. Fails early on `killed`,
    /// `deleted`, or when an import reports `os_glance_failed_import`.
    pub async fn wait_for_status(
        &self,
        id: &str,
        wanted: ImageStatus,
        timeout: Duration,
    ) -> Result<Image> {
        let wanted_text = wanted.to_string();
        poll("image", id, &wanted_text, timeout, IMAGE_POLL, || async {
            let image = self.get_image(id).await?;
            if image.status == wanted {
                return Ok(Poll::Done(image));
            }
            if is_gone(&image.status) {
                return Err(Error::ResourceFailed {
                    kind: "image",
                    id: id.to_owned(),
                    status: image.status.to_string(),
                    fault: image.property("os_glance_failed_import").map(str::to_owned),
                });
            }
            if let Some(failed) = image
                .property("os_glance_failed_import")
                .filter(|s| !s.is_empty())
            {
                if image.status == ImageStatus::Queued || image.status == ImageStatus::Active {
                    return Err(import_failed(id, &image, failed));
                }
            }
            Ok(Poll::Waiting(image.status.to_string()))
        })
        .await
    }
}

/// First pause between two looks at an image that is changing state.
const IMAGE_POLL: Duration = Duration::from_millis(250);

/// Longest wait between two looks at an importing image: the copy is done
/// when Glance says so, and a longer step (the 5 s of other waits) cost up to
/// that much per image on top of Glance's own time. One small `GET` a second
/// per import is nothing beside the import itself.
const IMPORT_POLL_MAX: Duration = Duration::from_secs(1);

/// Statuses an image does not come back from.
fn is_gone(status: &ImageStatus) -> bool {
    matches!(
        status,
        ImageStatus::Killed | ImageStatus::Deleted | ImageStatus::PendingDelete
    )
}

/// The error for an import that `os_glance_failed_import` says failed.
fn import_failed(id: &str, image: &Image, failed: &str) -> Error {
    Error::ResourceFailed {
        kind: "image",
        id: id.to_owned(),
        status: image.status.to_string(),
        fault: Some(format!("import failed for stores: {failed}")),
    }
}

impl Session {
    /// A Glance client for `region` (the configured default region when
    /// `None`). Authenticates if needed to read the catalog.
    pub async fn image(&self, region: Option<&str>) -> Result<GlanceClient> {
        let region = region.or(self.config().default_region()).map(str::to_owned);
        let endpoint = self.endpoint("image", region.as_deref()).await?;
        Ok(GlanceClient::new(self.clone(), region, endpoint))
    }
}
