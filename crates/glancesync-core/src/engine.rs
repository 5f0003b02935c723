//! The GlanceSync engine: master list, region expansion, status reports,
//! backups and the per-region sync.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;
use tracing::Instrument;

use crate::apply::{apply_plan, planned_report};
use crate::backend::{RegionBackend, RegionRef};
use crate::config::{GlanceSyncConfig, TargetConfig};
use crate::error::{Error, Result};
use crate::image::{write_csv_file, Image};
use crate::log::SyncLog;
use crate::plan::{plan_region_with, RegionInput, RegionPlan};
use crate::pyvalue::PyValue;
use crate::rules::{
    image_list_to_sync, images_to_sync, local_images_filtered, same_owner, SyncStatus,
};

/// One line of a status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusLine {
    /// The status.
    pub status: SyncStatus,
    /// Region full name.
    pub region: String,
    /// Image name.
    pub image: String,
    /// Master image size in bytes.
    pub size: u64,
}

/// What a region sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Images uploaded (or that would be, in dry-run).
    pub uploaded: Vec<String>,
    /// Images whose metadata was (or would be) updated.
    pub metadata_updated: Vec<String>,
    /// Region images deleted after a replace.
    pub deleted: Vec<String>,
    /// Region images renamed `.old` after a rename.
    pub renamed: Vec<String>,
    /// Obsolete images updated.
    pub obsoleted: Vec<String>,
    /// MB uploaded (or pending).
    pub total_mb: u64,
    /// Nothing was pending.
    pub was_synchronised: bool,
}

/// The engine.
pub struct GlanceSync {
    config: Arc<GlanceSyncConfig>,
    backend: Arc<dyn RegionBackend>,
    master_region: String,
    master_images: IndexMap<String, Image>,
    /// Names of the master images synchronisable to each target (the
    /// condition is evaluated once per target, not once per region).
    synchronisable: std::sync::Mutex<std::collections::HashMap<String, Arc<Vec<String>>>>,
}

impl std::fmt::Debug for GlanceSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlanceSync")
            .field("master_region", &self.master_region)
            .field("master_images", &self.master_images.len())
            .finish_non_exhaustive()
    }
}

fn is_falsy(v: &PyValue) -> bool {
    !v.truthy()
}

impl GlanceSync {
    /// Build the engine: lists the master region and prepares the master image dict.
    pub async fn new(
        config: Arc<GlanceSyncConfig>,
        backend: Arc<dyn RegionBackend>,
    ) -> Result<Self> {
        let master_region = config.require_master_region()?.to_string();
        let master_target = config.master();
        let region = RegionRef {
            target: "master".into(),
            region: master_region.clone(),
        };
        let span = tracing::info_span!("master_list", region = %master_region);
        let (tenant, images) = async {
            let tenant = backend.tenant_id(master_target).await?;
            let images = backend.list_images(&region, master_target).await?;
            Ok::<_, Error>((tenant, images))
        }
        .instrument(span)
        .await?;
        let master_images = master_images_to_dict(images, &tenant);
        Ok(GlanceSync {
            config,
            backend,
            master_region,
            master_images,
            synchronisable: Default::default(),
        })
    }

    /// The backend the engine reads and writes regions through.
    pub fn backend(&self) -> &Arc<dyn RegionBackend> {
        &self.backend
    }

    /// The target of a parsed region (`original` is the region string, for errors).
    pub fn target_of_region(&self, r: &RegionRef, original: &str) -> Result<&TargetConfig> {
        self.target_of(r, original)
    }

    /// The configuration.
    pub fn config(&self) -> &GlanceSyncConfig {
        &self.config
    }

    /// The master region's name.
    pub fn master_region(&self) -> &str {
        &self.master_region
    }

    /// The master images (after filtering and kernel/ramdisk clean-up), by name.
    pub fn master_images(&self) -> &IndexMap<String, Image> {
        &self.master_images
    }

    fn to_sync(&self, target: &TargetConfig, log: &SyncLog) -> IndexMap<String, &Image> {
        let cached = self
            .synchronisable
            .lock()
            .ok()
            .and_then(|m| m.get(&target.name).cloned());
        let names = match cached {
            Some(n) => n,
            None => {
                let n: Arc<Vec<String>> = Arc::new(
                    images_to_sync(&self.master_images, target, log)
                        .into_keys()
                        .collect(),
                );
                if let Ok(mut m) = self.synchronisable.lock() {
                    m.insert(target.name.clone(), n.clone());
                }
                n
            }
        };
        names
            .iter()
            .filter_map(|n| self.master_images.get(n).map(|i| (n.clone(), i)))
            .collect()
    }

    fn target_of(&self, r: &RegionRef, original: &str) -> Result<&TargetConfig> {
        self.config
            .target(&r.target)
            .ok_or_else(|| Error::UnknownTarget {
                target: r.target.clone(),
                region: original.to_string(),
            })
    }

    /// Regions of a target: the master target omits the master region;
    /// `ignore_regions` are dropped; other targets' regions are `target:Region`.
    pub async fn get_regions(&self, target: &str) -> Result<Vec<String>> {
        let t = self
            .config
            .target(target)
            .ok_or_else(|| Error::UnknownTarget {
                target: target.to_string(),
                region: format!("{target}:"),
            })?;
        let regions = self.backend.regions(t).await?;
        Ok(regions
            .into_iter()
            .filter(|r| !(target == "master" && *r == self.master_region))
            .filter(|r| !t.ignore_regions.contains(r))
            .map(|r| {
                if target == "master" {
                    r
                } else {
                    format!("{target}:{r}")
                }
            })
            .collect())
    }

    /// Expand command-line region arguments as `sync.py` does.
    pub async fn expand_regions(&self, args: &[String]) -> Result<Vec<String>> {
        let mut expanded = Vec::new();
        let mut already_sorted = true;
        for a in args {
            if let Some(t) = a.strip_suffix(':') {
                expanded.extend(self.get_regions(t).await?);
                already_sorted = false;
            } else {
                expanded.push(a.clone());
            }
        }
        if expanded.is_empty() {
            expanded = self.get_regions("master").await?;
            already_sorted = false;
        }
        if already_sorted {
            return Ok(expanded);
        }
        let mut rest = expanded;
        let mut out = Vec::new();
        for p in &self.config.preferable_order {
            if let Some(pos) = rest.iter().position(|r| r == p) {
                out.push(rest.remove(pos));
            }
        }
        out.extend(rest);
        Ok(out)
    }

    /// Every region of every target (for `--show-regions`).
    pub async fn all_regions(&self) -> Result<Vec<String>> {
        let mut out = self.get_regions("master").await?;
        for name in self.config.targets.keys() {
            if name != "master" {
                out.extend(self.get_regions(name).await?);
            }
        }
        Ok(out)
    }

    /// The sync status of a region (`--show-status`), sorted by size.
    pub async fn region_status(&self, region: &str, log: &SyncLog) -> Result<Vec<StatusLine>> {
        let r = RegionRef::parse(region);
        let target = self.target_of(&r, region)?;
        let fullname = r.full_name();
        let span = tracing::info_span!("show_status", region = %fullname);
        async {
            let tenant = self.backend.tenant_id(target).await?;
            let images = self.backend.list_images(&r, target).await?;
            let filtered_master = self.to_sync(target, log);
            let dict =
                local_images_filtered(&filtered_master, images, target, &tenant, &fullname, log);
            let tuples = image_list_to_sync(&filtered_master, &dict, target);
            Ok(tuples
                .into_iter()
                .map(|(status, m)| StatusLine {
                    status,
                    region: fullname.clone(),
                    image: m.name.clone(),
                    size: m.size,
                })
                .collect())
        }
        .instrument(span)
        .await
    }

    /// Write `backup_<region>.csv` into `dir`; returns the file written.
    pub async fn backup_region(&self, region: &str, dir: &Path) -> Result<PathBuf> {
        let r = RegionRef::parse(region);
        let target = self.target_of(&r, region)?;
        let path = dir.join(format!("backup_{}.csv", r.full_name()));
        let span = tracing::info_span!("backup_region", region = %r.full_name());
        async {
            let images = self.backend.list_images(&r, target).await?;
            write_csv_file(&path, &images)?;
            tracing::info!("Backup of region {region}");
            Ok(path)
        }
        .instrument(span)
        .await
    }

    /// Synchronise one region with the master region: plan, then apply.
    ///
    /// With `dry_run` the plan is only shown (its lines go to `log`): no
    /// write reaches the backend (obsolete pass and pending AMI updates included).
    pub async fn sync_region(
        &self,
        region: &str,
        dry_run: bool,
        log: &SyncLog,
    ) -> Result<SyncReport> {
        let r = RegionRef::parse(region);
        let target = self.target_of(&r, region)?;
        let fullname = r.full_name();
        let span = tracing::info_span!("sync_region", region = %fullname, dry_run);
        let result = self
            .sync_region_inner(&r, target, &fullname, dry_run, log)
            .instrument(span)
            .await;
        if let Err(e) = &result {
            log.error(&format!("{fullname}: synchronisation failed: {e}"));
        }
        result
    }

    /// The plan of one region's sync (lists the region; no write).
    pub async fn plan_region(&self, region: &str) -> Result<RegionPlan> {
        let r = RegionRef::parse(region);
        let target = self.target_of(&r, region)?;
        let fullname = r.full_name();
        let span = tracing::info_span!("plan_region", region = %fullname);
        self.plan_region_inner(&r, target, &fullname)
            .instrument(span)
            .await
    }

    async fn plan_region_inner(
        &self,
        r: &RegionRef,
        target: &TargetConfig,
        fullname: &str,
    ) -> Result<RegionPlan> {
        let tenant = self.backend.tenant_id(target).await?;
        let images = self.backend.list_images(r, target).await?;
        let log = SyncLog::collecting();
        let filtered_master = self.to_sync(target, &log);
        Ok(plan_region_with(
            &self.master_images,
            &filtered_master,
            images,
            RegionInput {
                fullname,
                target,
                tenant_id: &tenant,
            },
            log,
        ))
    }

    /// Apply a plan computed by [`GlanceSync::plan_region`] (real run).
    pub async fn apply_plan(&self, plan: &RegionPlan, log: &SyncLog) -> Result<SyncReport> {
        let r = RegionRef::parse(&plan.region);
        let target = self.target_of(&r, &plan.region)?;
        apply_plan(&*self.backend, target, plan, &self.master_images, log).await
    }

    async fn sync_region_inner(
        &self,
        r: &RegionRef,
        target: &TargetConfig,
        fullname: &str,
        dry_run: bool,
        log: &SyncLog,
    ) -> Result<SyncReport> {
        let plan = self.plan_region_inner(r, target, fullname).await?;
        for w in &plan.warnings {
            log.warn(w);
        }
        if dry_run {
            for line in plan.dry_run_lines() {
                log.info(&line);
            }
            return Ok(planned_report(&plan));
        }
        apply_plan(&*self.backend, target, &plan, &self.master_images, log).await
    }
}

/// Rule A: keep active, named images of the master tenant; drop duplicated
/// names entirely; replace kernel/ramdisk UUIDs with image names.
///
/// A kernel/ramdisk id that points outside the kept images is left as is
/// (with a warning), so the image reports `error_ami` instead of crashing.
pub fn master_images_to_dict(images: Vec<Image>, tenant_id: &str) -> IndexMap<String, Image> {
    let images: Vec<Image> = images
        .into_iter()
        .filter(|i| {
            i.status == "active"
                && !i.name.is_empty()
                && (i.owner.is_empty() || same_owner(&i.owner, tenant_id))
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut duplicated = std::collections::HashSet::new();
    for i in &images {
        if !seen.insert(i.name.clone()) && duplicated.insert(i.name.clone()) {
            tracing::warn!("Duplicated images with name {} will be ignored", i.name);
        }
    }
    let mut dict: IndexMap<String, Image> = images
        .into_iter()
        .filter(|i| !duplicated.contains(&i.name))
        .map(|i| (i.name.clone(), i))
        .collect();
    let by_id: std::collections::HashMap<String, String> = dict
        .values()
        .map(|i| (i.id.clone(), i.name.clone()))
        .collect();
    for image in dict.values_mut() {
        for prop in ["kernel_id", "ramdisk_id"] {
            let Some(v) = image.user_properties.get(prop) else {
                continue;
            };
            if is_falsy(v) {
                image.user_properties.shift_remove(prop);
                continue;
            }
            let id = v.to_py_str();
            match by_id.get(&id) {
                Some(name) => {
                    image
                        .user_properties
                        .insert(prop.to_string(), PyValue::Str(name.clone()));
                }
                None => {
                    tracing::warn!(
                        "Image {} has {prop} {id}, which is not an image of the master region that can be synchronised; the image will report error_ami",
                        image.name
                    );
                }
            }
        }
    }
    dict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyvalue::parse_properties;

    fn img(name: &str, id: &str, status: &str, owner: &str, props: &str) -> Image {
        let mut i = Image::new("M", name, id);
        i.status = status.into();
        i.owner = owner.into();
        i.user_properties = parse_properties(props).unwrap();
        i
    }

    #[test]
    fn master_list_filters_dedups_and_names_aux_images() {
        let d = master_images_to_dict(
            vec![
                img("k", "kid", "active", "t", "{}"),
                img(
                    "ami",
                    "a",
                    "active",
                    "t",
                    "{'kernel_id': 'kid', 'ramdisk_id': ''}",
                ),
                img("dangling", "d", "active", "000t", "{'kernel_id': 'gone'}"),
                img("dup", "d1", "active", "t", "{}"),
                img("dup", "d2", "active", "t", "{}"),
                img("dup", "d3", "active", "t", "{}"),
                img("q", "q", "queued", "t", "{}"),
                img("", "n", "active", "t", "{}"),
                img("other", "o", "active", "x", "{}"),
                img("free", "f", "active", "", "{}"),
            ],
            "t",
        );
        assert_eq!(
            d.keys().collect::<Vec<_>>(),
            vec!["k", "ami", "dangling", "free"]
        );
        assert_eq!(
            d["ami"].user_properties,
            parse_properties("{'kernel_id': 'k'}").unwrap()
        );
        // A dangling id is kept as is (no crash): the image will report error_ami.
        assert_eq!(
            d["dangling"].user_properties,
            parse_properties("{'kernel_id': 'gone'}").unwrap()
        );
    }
}
