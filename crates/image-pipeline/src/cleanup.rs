//! Releasing what a run recorded in its ledger: after a failure
//! (`--on-error cleanup`) and in `ge-image gc` for a killed run.

use openstack_client::glance::GlanceClient;

use crate::compute::local::release_local;
use crate::compute::ComputeBackend;
use crate::error::{Error, Result};
use crate::ledger::{ResourceKind, ResourceLedger, ResourceRecord};

/// Backend name of images the pipeline uploads to Glance itself.
pub const GLANCE: &str = "glance";

/// What a clean-up did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Records released (`kind name/id`).
    pub released: Vec<String>,
    /// Records that could not be released, with the error.
    pub failed: Vec<String>,
}

impl CleanupReport {
    /// Whether everything outstanding was released.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }

    /// What `ge-image gc` prints for the folder `name`: each record
    /// released, or that there was nothing to release.
    pub fn to_text(&self, name: &str) -> String {
        let mut s: String = self
            .released
            .iter()
            .map(|line| format!("{name}: released {line}\n"))
            .collect();
        if self.released.is_empty() && self.failed.is_empty() {
            s.push_str(&format!("{name}: nothing to release\n"));
        }
        s
    }
}

fn describe(r: &ResourceRecord) -> String {
    format!("{} {}", r.kind, r.id.as_deref().unwrap_or(&r.name))
}

/// Delete a Glance image the run uploaded: by id, else every image of that
/// name (the run died before it learnt the id; names are per run).
async fn release_glance_image(glance: &GlanceClient, r: &ResourceRecord) -> Result<()> {
    let ids: Vec<String> = match &r.id {
        Some(id) => vec![id.clone()],
        None => {
            let filter = openstack_client::glance::ImageFilter {
                name: Some(r.name.clone()),
                ..Default::default()
            };
            glance
                .list_images(&filter)
                .await
                .map_err(Error::glance("listing", &r.name))?
                .into_iter()
                .filter(|i| {
                    // Only an image that never got data: one with data has an
                    // id the ledger would know, or is someone else's.
                    i.checksum.is_none()
                })
                .map(|i| i.id)
                .collect()
        }
    };
    for id in ids {
        match glance.delete_image(&id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(Error::glance("deleting", &id)(e)),
        }
    }
    Ok(())
}

/// Release every outstanding record of `ledger`, newest first: records of
/// `backend` through [`ComputeBackend::release`], Glance images through
/// Glance, local files and VM directories by removal. Failures are
/// collected; their records stay outstanding for a later `gc`.
pub async fn release_all<B: ComputeBackend>(
    backend: &B,
    glance: &GlanceClient,
    ledger: &ResourceLedger,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let mut records = ledger.outstanding()?;
    records.reverse();
    for r in records {
        let outcome = if r.backend == GLANCE && r.kind == ResourceKind::Image {
            release_glance_image(glance, &r).await.map(|()| true)
        } else {
            match backend.release(&r).await {
                Ok(true) => Ok(true),
                Ok(false) => release_local(&r),
                Err(e) => Err(e),
            }
        };
        match outcome {
            Ok(true) => {
                ledger.released(r.key)?;
                tracing::info!(resource = %describe(&r), "released");
                report.released.push(describe(&r));
            }
            Ok(false) => report.failed.push(format!(
                "{}: backend '{}' is not the one in use ({})",
                describe(&r),
                r.backend,
                backend.name()
            )),
            Err(e) => report.failed.push(format!("{}: {e}", describe(&r))),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_text_lists_what_was_released() {
        let mut r = CleanupReport::default();
        assert_eq!(r.to_text("web"), "web: nothing to release\n");
        r.released = vec!["local VM web-1".into(), "image 42".into()];
        r.failed = vec!["server x: 500".into()];
        assert_eq!(
            r.to_text("web"),
            "web: released local VM web-1\nweb: released image 42\n"
        );
        assert!(!r.is_complete());
    }
}
