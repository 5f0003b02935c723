//! Executing a [`RegionPlan`] through a [`RegionBackend`], logging the
//! original's real-run lines.

use std::collections::HashMap;

use indexmap::IndexMap;

use crate::backend::{RegionBackend, RegionRef, UploadRequest};
use crate::config::TargetConfig;
use crate::engine::SyncReport;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::log::SyncLog;
use crate::plan::{Action, AuxRef, RegionPlan};
use crate::pyvalue::PyValue;
use crate::rules::SyncStatus;

/// The report a plan gives when it is only shown (dry-run): what it would do.
pub fn planned_report(plan: &RegionPlan) -> SyncReport {
    let mut report = SyncReport {
        total_mb: plan.pending_mb,
        was_synchronised: plan.synchronised,
        ..SyncReport::default()
    };
    for a in &plan.actions {
        record(&mut report, a);
    }
    report
}

fn record(report: &mut SyncReport, a: &Action) {
    match a {
        Action::UpdateObsolete { image, .. } => report.obsoleted.push(image.name.clone()),
        Action::UpdateMetadata { image, .. } => report.metadata_updated.push(image.name.clone()),
        Action::Upload { image, .. } => report.uploaded.push(image.name.clone()),
        Action::Delete { id, .. } => report.deleted.push(id.clone()),
        Action::RenameOld { image, .. } => report.renamed.push(image.id.clone()),
    }
}

fn resolve(
    image: &Image,
    refs: &[AuxRef],
    uploaded: &HashMap<String, String>,
    region: &RegionRef,
) -> Result<Image> {
    let mut image = image.clone();
    for r in refs {
        let id = uploaded.get(&r.image).ok_or_else(|| Error::ImageNotFound {
            region: region.full_name(),
            id: r.image.clone(),
        })?;
        image
            .user_properties
            .insert(r.property.clone(), PyValue::Str(id.clone()));
    }
    Ok(image)
}

/// Apply `plan` to `region` through `backend`: the writes in order, the
/// original's log lines, then the backend's flush. `master` is the master
/// dict the plan was computed from (the uploads' data sources). The first
/// failing write stops the region (later actions may depend on it).
pub async fn apply_plan(
    backend: &dyn RegionBackend,
    region: &RegionRef,
    target: &TargetConfig,
    plan: &RegionPlan,
    master: &IndexMap<String, Image>,
    log: &SyncLog,
) -> Result<SyncReport> {
    let r = &plan.region;
    let mut report = SyncReport {
        total_mb: plan.pending_mb,
        was_synchronised: plan.synchronised,
        ..SyncReport::default()
    };
    let mut uploaded: HashMap<String, String> = HashMap::new();
    for a in &plan.actions {
        match a {
            Action::UpdateObsolete { image, .. } => {
                log.info(&format!("{r}: updating obsolete image {}", image.name));
                backend.update_metadata(region, target, image).await?;
            }
            Action::UpdateMetadata {
                image,
                aux_from_uploads,
                ..
            } => {
                log.info(&format!(
                    "{r}: Updating the metadata of image {}",
                    image.name
                ));
                let image = resolve(image, aux_from_uploads, &uploaded, region)?;
                backend.update_metadata(region, target, &image).await?;
            }
            Action::Upload {
                reason,
                image,
                master_id,
                size,
                aux_from_uploads,
            } => {
                #[allow(clippy::cast_precision_loss)]
                let mb = crate::pyvalue::float_repr(*size as f64 / 1024.0 / 1024.0);
                match reason {
                    SyncStatus::PendingReplace => {
                        log.info(&format!("{r}: Replacing image {} ({mb} MB)", image.name));
                    }
                    SyncStatus::PendingRename => log.info(&format!(
                        "{r}: Renaming and replacing image {} ({mb} MB)",
                        image.name
                    )),
                    _ => log.info(&format!("{r}: Uploading image {} ({mb} MB)", image.name)),
                }
                let source = master
                    .get(&image.name)
                    .filter(|m| m.id == *master_id)
                    .ok_or_else(|| Error::ImageNotFound {
                        region: "master".into(),
                        id: master_id.clone(),
                    })?;
                let image = resolve(image, aux_from_uploads, &uploaded, region)?;
                let id = backend
                    .upload_image(UploadRequest {
                        region,
                        target,
                        image: &image,
                        master: source,
                    })
                    .await?;
                uploaded.insert(image.name.clone(), id);
                log.info(&format!("{r}: Image uploaded."));
            }
            Action::Delete { id, .. } => {
                backend.delete_image(region, target, id).await?;
            }
            Action::RenameOld { image, .. } => {
                backend.update_metadata(region, target, image).await?;
            }
        }
        record(&mut report, a);
    }
    log.info(&plan.summary_line(false));
    backend.flush(region).await?;
    Ok(report)
}
