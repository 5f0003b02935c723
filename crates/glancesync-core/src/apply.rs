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

/// One region's plan being applied: the writes done so far and the ids of
/// the images uploaded (for later kernel/ramdisk references).
pub struct Applier<'a> {
    backend: &'a dyn RegionBackend,
    /// The region.
    pub region: RegionRef,
    target: &'a TargetConfig,
    plan: &'a RegionPlan,
    master: &'a IndexMap<String, Image>,
    log: &'a SyncLog,
    uploaded: HashMap<String, String>,
    /// MB of the images actually copied so far (the summary counts only
    /// these, not the ones that failed).
    uploaded_mb: f64,
    report: SyncReport,
}

impl<'a> Applier<'a> {
    /// Start applying `plan` to `region`.
    pub fn new(
        backend: &'a dyn RegionBackend,
        target: &'a TargetConfig,
        plan: &'a RegionPlan,
        master: &'a IndexMap<String, Image>,
        log: &'a SyncLog,
    ) -> Self {
        Applier {
            backend,
            region: RegionRef::parse(&plan.region),
            target,
            plan,
            master,
            log,
            uploaded: HashMap::new(),
            uploaded_mb: 0.0,
            report: SyncReport {
                total_mb: 0,
                was_synchronised: plan.synchronised,
                ..SyncReport::default()
            },
        }
    }

    /// The plan being applied.
    pub fn plan(&self) -> &'a RegionPlan {
        self.plan
    }

    /// The region's target.
    pub fn target(&self) -> &'a TargetConfig {
        self.target
    }

    /// The upload request of action `i` (an [`Action::Upload`]), with
    /// kernel/ramdisk references resolved; logs the action's first line.
    pub fn upload_request(&self, i: usize) -> Result<(Image, &'a Image)> {
        let Some(Action::Upload {
            reason,
            image,
            master_id,
            size,
            aux_from_uploads,
        }) = self.plan.actions.get(i)
        else {
            return Err(Error::ImageNotFound {
                region: self.plan.region.clone(),
                id: format!("upload action {i}"),
            });
        };
        let r = &self.plan.region;
        #[allow(clippy::cast_precision_loss)]
        let mb = crate::pyvalue::float_repr(*size as f64 / 1024.0 / 1024.0);
        match reason {
            SyncStatus::PendingReplace => {
                self.log
                    .info(&format!("{r}: Replacing image {} ({mb} MB)", image.name));
            }
            SyncStatus::PendingRename => self.log.info(&format!(
                "{r}: Renaming and replacing image {} ({mb} MB)",
                image.name
            )),
            _ => self
                .log
                .info(&format!("{r}: Uploading image {} ({mb} MB)", image.name)),
        }
        let source = self
            .master
            .get(&image.name)
            .filter(|m| m.id == *master_id)
            .ok_or_else(|| Error::ImageNotFound {
                region: "master".into(),
                id: master_id.clone(),
            })?;
        let image = resolve(image, aux_from_uploads, &self.uploaded, &self.region)?;
        Ok((image, source))
    }

    /// Record the outcome of upload action `i` (done by the caller).
    pub fn uploaded(&mut self, i: usize, name: &str, id: String) {
        self.uploaded.insert(name.to_string(), id);
        self.log
            .info(&format!("{}: Image uploaded.", self.plan.region));
        if let Some(a) = self.plan.actions.get(i) {
            if let Action::Upload { size, .. } = a {
                #[allow(clippy::cast_precision_loss)]
                let mb = *size as f64 / 1024.0 / 1024.0;
                self.uploaded_mb += mb;
            }
            record(&mut self.report, a);
        }
    }

    /// Execute action `i`.
    pub async fn run(&mut self, i: usize) -> Result<()> {
        let plan = self.plan;
        let Some(a) = plan.actions.get(i) else {
            return Ok(());
        };
        let r = &plan.region;
        let (backend, region, target) = (self.backend, &self.region, self.target);
        match a {
            Action::UpdateObsolete { image, .. } => {
                self.log
                    .info(&format!("{r}: updating obsolete image {}", image.name));
                backend.update_metadata(region, target, image).await?;
            }
            Action::UpdateMetadata {
                image,
                aux_from_uploads,
                ..
            } => {
                self.log.info(&format!(
                    "{r}: Updating the metadata of image {}",
                    image.name
                ));
                let image = resolve(image, aux_from_uploads, &self.uploaded, region)?;
                backend.update_metadata(region, target, &image).await?;
            }
            Action::Upload { .. } => {
                let (image, source) = self.upload_request(i)?;
                let id = backend
                    .upload_image(UploadRequest {
                        region,
                        target,
                        image: &image,
                        master: source,
                    })
                    .await?;
                self.uploaded(i, &image.name, id);
                return Ok(());
            }
            Action::Delete { id, .. } => {
                backend.delete_image(region, target, id).await?;
            }
            Action::RenameOld { image, .. } => {
                backend.update_metadata(region, target, image).await?;
            }
        }
        record(&mut self.report, a);
        Ok(())
    }

    /// Log the summary line (counting only the images actually copied),
    /// flush the backend and return the report.
    pub async fn finish(mut self) -> Result<SyncReport> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let mb = self.uploaded_mb as u64;
        self.report.total_mb = mb;
        self.log.info(&self.plan.uploaded_summary_line(mb));
        self.backend.flush(&self.region).await?;
        Ok(self.report)
    }
}

/// Apply `plan` to its region through `backend`: the writes in order, the
/// original's log lines, then the backend's flush. `master` is the master
/// dict the plan was computed from (the uploads' data sources). The first
/// failing write stops the region (later actions may depend on it).
pub async fn apply_plan(
    backend: &dyn RegionBackend,
    target: &TargetConfig,
    plan: &RegionPlan,
    master: &IndexMap<String, Image>,
    log: &SyncLog,
) -> Result<SyncReport> {
    let mut applier = Applier::new(backend, target, plan, master, log);
    for i in 0..plan.actions.len() {
        applier.run(i).await?;
    }
    applier.finish().await
}
