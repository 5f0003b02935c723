//! The life of a target image glancesync creates, shared by the streamed
//! and the server-side copy: created private with the transfer marker and
//! registered as in flight ([`GlanceBackend::prepare`]), verified against
//! the master ([`verify_stored`]), deleted when it cannot be finished
//! ([`delete_incomplete`], retried through Glance's server errors), and the
//! leftovers of a killed run (or of a run interrupted now,
//! [`GlanceBackend::abort_in_flight`]) removed before the same image is
//! uploaded again.

use std::time::Duration;

use openstack_client::glance::{CreateImage, GlanceClient, ImageFilter, ImageStatus, Visibility};

use super::{backend_err, cloud_err, GlanceBackend, TRANSFER_MARKER};
use crate::backend::{RegionBackend, UploadRequest};
use crate::error::Result;
use crate::image::Image;

/// An upload in progress: the image's name, tenant and (once created) id.
pub(super) struct InFlight {
    client: GlanceClient,
    name: String,
    tenant: String,
    id: Option<String>,
}

/// A target image created for an upload, not finished yet.
pub(super) struct Prepared {
    /// The target region's Glance.
    pub(super) client: GlanceClient,
    /// The image as created (queued, private, marked).
    pub(super) created: openstack_client::glance::Image,
    /// Whether the master image is protected (set once the copy is finished).
    pub(super) protected: bool,
}

/// Check what a target stored against the master: active, same size, same
/// md5 and, when both have it with the same algorithm, same `os_hash_value`.
pub(super) fn verify_stored(
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

/// Attempts [`delete_incomplete`] makes before it gives up.
const CLEANUP_ATTEMPTS: u32 = 5;

/// Delete an image this run created and could not finish. Clean-up must not
/// give up on the first server error: Glance can answer 500 while it is still
/// winding down the interrupted upload of that very image (seen with SQLite's
/// "database is locked"), so server errors and transport errors are retried
/// with a growing delay, and an image that is already gone counts as deleted.
pub(super) async fn delete_incomplete(
    client: &GlanceClient,
    id: &str,
) -> openstack_client::Result<()> {
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

impl GlanceBackend {
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
    pub(super) async fn prepare(&self, req: &UploadRequest<'_>) -> Result<Prepared> {
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

    /// Delete the images named `name` of `tenant` that a killed run left
    /// unfinished (stale status and the transfer marker). Returns how many.
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
}

#[cfg(test)]
mod tests {
    use super::super::test_support::mocked_glance;
    use super::*;

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
}
