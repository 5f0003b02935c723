//! The server-side copy (`glance-download`): whether a target region's
//! Glance offers it, the import request, the guard against a queued task
//! that never starts, the wait, the verification against the master and the
//! one metadata patch that finishes the image. No image byte passes through
//! glancesync; on failure the target image is deleted.

use std::sync::atomic::Ordering;
use std::time::Duration;

use openstack_client::glance::{GlanceClient, ImageStatus, ImportMethod, ImportOptions};
use tracing::Instrument;

use super::lifecycle::{delete_incomplete, verify_stored};
use super::{backend_err, cloud_err, GlanceBackend};
use crate::backend::{RegionRef, UploadRequest};
use crate::config::TargetConfig;
use crate::error::Result;

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
/// report). Returns a message when it did not start within `timeout`, or
/// when its task ended first: Glance takes the image's import lock
/// (`os_glance_import_task`) before it answers the import request and drops
/// it when the task fails, and a task failing before the data step (the
/// master's image record not found) leaves the image `queued` with no
/// `os_glance_failed_import`.
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
            Ok(img)
                if img
                    .property("os_glance_import_task")
                    .is_none_or(|t| t.is_empty()) =>
            {
                return Err(format!(
                    "the import of image {id} ended before it started: the target Glance's import task failed (its log says why, e.g. the master's image was not found)"
                ))
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

impl GlanceBackend {
    /// Whether the Glance of `region` offers `glance-download` and shares
    /// the master's Keystone (asked once per region).
    pub(super) async fn offers_glance_download(
        &self,
        region: &RegionRef,
        target: &TargetConfig,
    ) -> bool {
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
    pub(super) async fn server_side(&self, req: &UploadRequest<'_>) -> Result<String> {
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
}

#[cfg(test)]
mod tests {
    use super::super::test_support::mocked_glance;
    use super::*;

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
        // Still queued, the lock dropped: the task failed before it began
        // (no waiting out the timeout).
        Mock::given(method("GET"))
            .and(path("/image/v2/images/failed"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"id": "failed", "status": "queued", "visibility": "private"}),
            ))
            .mount(&server)
            .await;
        let err = wait_import_started(&client, "failed", Duration::from_secs(60))
            .await
            .unwrap_err();
        assert!(err.contains("ended before it started"), "{err}");
    }
}
