//! The sync plan of one region: every write a sync will make, and every
//! image it leaves alone with the reason, computed from the master list, the
//! region's list and the target config with no I/O.
//!
//! [`plan_region`] decides; [`crate::apply::apply_plan`] executes a plan
//! through a [`crate::RegionBackend`]. A dry-run shows the plan
//! ([`RegionPlan::dry_run_lines`]: the original's dry-run log lines, or the
//! plan itself as JSON); a real run applies that same value.
//!
//! Images uploaded by the plan do not have an id yet when it is computed:
//! a kernel or ramdisk uploaded by an earlier action is referenced by name
//! in the action's `aux_from_uploads` (the property holds the aux image's
//! name), and the apply step writes the new id in.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::config::TargetConfig;
use crate::image::Image;
use crate::log::SyncLog;
use crate::pyvalue::PyValue;
use crate::rules::{
    image_for_upload, image_list_to_obsolete, image_list_to_sync, images_to_sync,
    local_images_filtered, metadata_updated, same_owner, SyncStatus,
};

/// Id given, while planning, to an image the plan uploads (never a real id:
/// it starts with a control character).
const PLANNED_ID: &str = "\u{1}planned:";

/// A property of an image that must receive the id of an image uploaded
/// earlier in the same plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuxRef {
    /// `kernel_id` or `ramdisk_id`.
    pub property: String,
    /// Name of the image (uploaded by this plan) whose new id goes there.
    pub image: String,
}

/// Why a pass updates metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetadataReason {
    /// Pass 1: visibility, properties or kernel/ramdisk ids differ (`pending_metadata`).
    Metadata,
    /// Pass 3: kernel/ramdisk ids of images uploaded by this plan (`pending_ami`).
    Ami,
}

/// One write, in execution order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Obsolete pass: a region image becomes (or stays) `<name>_obsolete`
    /// with the master's visibility and `obsolete_syncprops`.
    UpdateObsolete {
        /// The region image as it must be (id, new name, visibility, properties).
        image: Image,
        /// Its name in the region before the update.
        previous_name: String,
    },
    /// Update name, visibility and properties of a region image.
    UpdateMetadata {
        /// Pass 1 or pass 3.
        reason: MetadataReason,
        /// The region image as it must be.
        image: Image,
        /// Properties that take the id of an image this plan uploads.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        aux_from_uploads: Vec<AuxRef>,
    },
    /// Create an image and copy the master's data into it.
    Upload {
        /// `pending_upload`, `pending_replace` or `pending_rename`.
        reason: SyncStatus,
        /// The image to create (no id yet): name, visibility, filtered properties.
        image: Image,
        /// The master image's id (the data source).
        master_id: String,
        /// Bytes to copy.
        size: u64,
        /// Properties that take the id of an image this plan uploads.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        aux_from_uploads: Vec<AuxRef>,
    },
    /// Delete the region image an upload replaced (`pending_replace`).
    Delete {
        /// Its name.
        name: String,
        /// Its id.
        id: String,
        /// Its checksum (the one `replace` named).
        checksum: Option<String>,
    },
    /// Rename the region image an upload replaced to `<name>.old` and make
    /// it private (`pending_rename`).
    RenameOld {
        /// The region image as it must be (renamed, private).
        image: Image,
        /// Its name before.
        previous_name: String,
    },
}

impl Action {
    /// The image name the action is about (as it is named in the master).
    pub fn image_name(&self) -> &str {
        match self {
            Action::UpdateObsolete { image, .. }
            | Action::UpdateMetadata { image, .. }
            | Action::Upload { image, .. } => &image.name,
            Action::Delete { name, .. } => name,
            Action::RenameOld { previous_name, .. } => previous_name,
        }
    }
}

/// A synchronisable master image the plan does not write, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftAlone {
    /// Image name.
    pub image: String,
    /// Its status in the region (`ok`, `ok_stalled_checksum`, `error_ami`,
    /// `error_checksum`); none when the image is not synchronisable to the target.
    pub status: Option<SyncStatus>,
    /// Why nothing is written.
    pub reason: String,
}

/// The status of one synchronisable master image in the region (the
/// `--show-status` line), in (size, name) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStatus {
    /// Image name.
    pub image: String,
    /// Status before the sync.
    pub status: SyncStatus,
    /// Master image size in bytes.
    pub size: u64,
}

/// Everything one region's sync will do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionPlan {
    /// Region full name (`Region` or `target:Region`).
    pub region: String,
    /// Target (config section) name.
    pub target: String,
    /// The tenant the target's credential is scoped to.
    pub tenant_id: String,
    /// Warnings found while planning (other tenants' images, duplicates,
    /// unresolved kernel/ramdisk, checksum conflicts), in the original's words.
    pub warnings: Vec<String>,
    /// Status of every synchronisable master image before the sync.
    pub statuses: Vec<PlannedStatus>,
    /// The writes, in execution order.
    pub actions: Vec<Action>,
    /// Synchronisable master images the plan does not write, with the reason.
    pub left_alone: Vec<LeftAlone>,
    /// MB the uploads copy (truncated, as the original prints it).
    pub pending_mb: u64,
    /// Nothing to upload and no `pending_metadata`: the region counts as synchronised.
    pub synchronised: bool,
}

/// What the planner needs about the region.
#[derive(Debug, Clone, Copy)]
pub struct RegionInput<'a> {
    /// Region full name.
    pub fullname: &'a str,
    /// The target of the region.
    pub target: &'a TargetConfig,
    /// The tenant id of the target's credential.
    pub tenant_id: &'a str,
}

/// Plan the sync of one region. `master` is the master dict (see
/// [`crate::engine::master_images_to_dict`]), `region_images` every image
/// listed in the region. Pure: no I/O, messages go into the plan.
pub fn plan_region(
    master: &IndexMap<String, Image>,
    region_images: Vec<Image>,
    input: RegionInput<'_>,
) -> RegionPlan {
    let log = SyncLog::collecting();
    let filtered = images_to_sync(master, input.target, &log);
    plan_region_with(master, &filtered, region_images, input, log)
}

/// [`plan_region`] with the synchronisable master images already computed
/// (the engine computes them once per target); `log` collects the warnings.
pub fn plan_region_with(
    master: &IndexMap<String, Image>,
    filtered_master: &IndexMap<String, &Image>,
    mut images: Vec<Image>,
    input: RegionInput<'_>,
    log: SyncLog,
) -> RegionPlan {
    let RegionInput {
        fullname,
        target,
        tenant_id,
    } = input;
    let mut actions = Vec::new();
    if target.only_tenant_images {
        images.retain(|i| {
            !i.name.is_empty() && (i.owner.trim().is_empty() || same_owner(&i.owner, tenant_id))
        });
    }

    if target.support_obsolete_images {
        let before: BTreeMap<String, String> = images
            .iter()
            .map(|i| (i.id.clone(), i.name.clone()))
            .collect();
        for img in image_list_to_obsolete(master, &mut images, target, tenant_id, &log) {
            let previous_name = before.get(&img.id).cloned().unwrap_or_default();
            actions.push(Action::UpdateObsolete {
                image: img,
                previous_name,
            });
        }
    }

    let mut dict =
        local_images_filtered(filtered_master, images, target, tenant_id, fullname, &log);
    let tuples = image_list_to_sync(filtered_master, &dict, target);
    let statuses = tuples
        .iter()
        .map(|(s, m)| PlannedStatus {
            image: m.name.clone(),
            status: *s,
            size: m.size,
        })
        .collect();
    let mut synchronised = true;
    let mut total_mb = 0f64;
    let mut left_alone = Vec::new();

    // Pass 1: metadata.
    for (status, m) in &tuples {
        if *status == SyncStatus::PendingMetadata {
            synchronised = false;
            actions.push(metadata_action(
                m,
                &mut dict,
                target,
                MetadataReason::Metadata,
                &log,
            ));
        }
    }

    // Pass 2: uploads, in size order, except that a kernel or ramdisk an
    // uploaded image refers to goes first (so the image gets its id at once;
    // the original uploaded it later and left `__<name>` behind).
    let uploading = |s: &SyncStatus| {
        matches!(
            s,
            SyncStatus::PendingUpload | SyncStatus::PendingReplace | SyncStatus::PendingRename
        )
    };
    let aux_of_uploads: std::collections::HashSet<String> = tuples
        .iter()
        .filter(|(s, _)| uploading(s))
        .flat_map(|(_, m)| {
            ["kernel_id", "ramdisk_id"]
                .into_iter()
                .filter_map(|p| m.user_properties.get(p).map(PyValue::to_py_str))
        })
        .collect();
    let mut pass2: Vec<&(SyncStatus, &Image)> = tuples
        .iter()
        .filter(|(s, m)| uploading(s) && aux_of_uploads.contains(&m.name))
        .collect();
    pass2.extend(
        tuples
            .iter()
            .filter(|(s, m)| !(uploading(s) && aux_of_uploads.contains(&m.name))),
    );
    for (status, m) in pass2 {
        match status {
            SyncStatus::PendingUpload | SyncStatus::PendingReplace | SyncStatus::PendingRename => {
                let old = dict.get(&m.name).cloned();
                let mut new = image_for_upload(m, &dict, target, fullname, &log);
                let aux_from_uploads = take_planned_refs(&mut new);
                new.id = String::new();
                actions.push(Action::Upload {
                    reason: *status,
                    image: new.clone(),
                    master_id: m.id.clone(),
                    size: m.size,
                    aux_from_uploads,
                });
                new.id = format!("{PLANNED_ID}{}", m.name);
                dict.insert(m.name.clone(), new);
                if let Some(old) = old {
                    if *status == SyncStatus::PendingReplace {
                        actions.push(Action::Delete {
                            name: old.name.clone(),
                            id: old.id.clone(),
                            checksum: old.checksum.clone(),
                        });
                    } else if *status == SyncStatus::PendingRename {
                        let previous_name = old.name.clone();
                        let mut renamed = old;
                        renamed.name.push_str(".old");
                        renamed.is_public = false;
                        actions.push(Action::RenameOld {
                            image: renamed,
                            previous_name,
                        });
                    }
                }
                synchronised = false;
                #[allow(clippy::cast_precision_loss)]
                {
                    total_mb += m.size as f64 / 1024.0 / 1024.0;
                }
            }
            SyncStatus::ErrorChecksum => {
                let region_checksum = dict
                    .get(&m.name)
                    .map_or("None", Image::checksum_str)
                    .to_string();
                log.warn(&format!(
                    "Image {} has a different checksum ({region_checksum}) in region {fullname} than in the master region. It was not set what to do. Please, fill either dontupdate, replace or rename with the checksum.",
                    m.name
                ));
                left_alone.push(LeftAlone {
                    image: m.name.clone(),
                    status: Some(*status),
                    reason: format!(
                        "checksum {region_checksum} differs from the master's {} and is in none of dontupdate, replace, rename",
                        m.checksum_str()
                    ),
                });
            }
            SyncStatus::Ok => left_alone.push(LeftAlone {
                image: m.name.clone(),
                status: Some(*status),
                reason: "in sync".into(),
            }),
            SyncStatus::OkStalledChecksum => left_alone.push(LeftAlone {
                image: m.name.clone(),
                status: Some(*status),
                reason: format!(
                    "checksum {} differs from the master's but is in dontupdate",
                    dict.get(&m.name).map_or("None", Image::checksum_str)
                ),
            }),
            SyncStatus::ErrorAmi => left_alone.push(LeftAlone {
                image: m.name.clone(),
                status: Some(*status),
                reason: "its kernel or ramdisk is neither in the region nor uploaded by this sync"
                    .into(),
            }),
            SyncStatus::PendingMetadata | SyncStatus::PendingAmi => {}
        }
    }

    for m in master.values() {
        if !filtered_master.contains_key(&m.name) {
            left_alone.push(LeftAlone {
                image: m.name.clone(),
                status: None,
                reason: not_synchronisable_reason(m, target),
            });
        }
    }

    // Pass 3: kernel/ramdisk ids that depend on this plan's uploads (they do
    // not make the region count as unsynchronised).
    for (status, m) in &tuples {
        if *status == SyncStatus::PendingAmi {
            actions.push(metadata_action(
                m,
                &mut dict,
                target,
                MetadataReason::Ami,
                &log,
            ));
        }
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let pending_mb = total_mb as u64;
    RegionPlan {
        region: fullname.to_string(),
        target: target.name.clone(),
        tenant_id: tenant_id.to_string(),
        warnings: log.lines(),
        statuses,
        actions,
        left_alone,
        pending_mb,
        synchronised,
    }
}

/// Why rule B keeps a master image out of a target.
fn not_synchronisable_reason(m: &Image, target: &TargetConfig) -> String {
    let t = &target.name;
    if m.name.ends_with("_obsolete") {
        "not synchronisable: an _obsolete image is never uploaded".into()
    } else if target.metadata_condition.is_some() {
        format!("not synchronisable: metadata_condition of [{t}] is false")
    } else if !m.is_public {
        format!("not synchronisable: private and not in forcesyncs of [{t}]")
    } else {
        format!("not synchronisable: has none of the metadata_set properties of [{t}]")
    }
}

/// The metadata update of the region image named like `master`, recorded
/// in the simulated region dict.
fn metadata_action(
    master: &Image,
    dict: &mut IndexMap<String, Image>,
    target: &TargetConfig,
    reason: MetadataReason,
    log: &SyncLog,
) -> Action {
    // Every pending_metadata/pending_ami status comes from a region image of that name.
    let current = dict
        .get(&master.name)
        .cloned()
        .unwrap_or_else(|| Image::new(&master.region, &master.name, ""));
    let updated = metadata_updated(&current, master, dict, target, log);
    dict.insert(master.name.clone(), updated.clone());
    let mut image = updated;
    let aux_from_uploads = take_planned_refs(&mut image);
    Action::UpdateMetadata {
        reason,
        image,
        aux_from_uploads,
    }
}

/// Kernel/ramdisk properties holding the planning id of an image uploaded by
/// this plan: replaced by that image's name and returned as references.
fn take_planned_refs(image: &mut Image) -> Vec<AuxRef> {
    let mut refs = Vec::new();
    for prop in ["kernel_id", "ramdisk_id"] {
        if let Some(PyValue::Str(v)) = image.user_properties.get(prop) {
            if let Some(name) = v.strip_prefix(PLANNED_ID) {
                let name = name.to_string();
                image
                    .user_properties
                    .insert(prop.to_string(), PyValue::Str(name.clone()));
                refs.push(AuxRef {
                    property: prop.to_string(),
                    image: name,
                });
            }
        }
    }
    refs
}

fn mb_str(size: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    crate::pyvalue::float_repr(size as f64 / 1024.0 / 1024.0)
}

impl RegionPlan {
    /// The lines a dry-run logs (the original's wording), without the
    /// planning warnings (see [`RegionPlan::warnings`]).
    pub fn dry_run_lines(&self) -> Vec<String> {
        let r = &self.region;
        let mut out = Vec::new();
        for a in &self.actions {
            match a {
                Action::UpdateObsolete { image, .. } => {
                    out.push(format!(
                        "{r}: obsolete image pending to update {}",
                        image.name
                    ));
                }
                Action::UpdateMetadata { image, .. } => out.push(format!(
                    "{r}: Image pending to update the metadata {}",
                    image.name
                )),
                Action::Upload {
                    reason,
                    image,
                    size,
                    ..
                } => {
                    let mb = mb_str(*size);
                    match reason {
                        SyncStatus::PendingReplace => {
                            out.push(format!("{r}: Replacing image {} ({mb} MB)", image.name));
                        }
                        SyncStatus::PendingRename => out.push(format!(
                            "{r}: Renaming and replacing image {} ({mb} MB)",
                            image.name
                        )),
                        _ => {}
                    }
                    out.push(format!("{r}: Pending: {} ({mb} MB)", image.name));
                }
                Action::Delete { .. } | Action::RenameOld { .. } => {}
            }
        }
        out.push(self.summary_line(true));
        out
    }

    /// The last line of a region's sync: synchronised, MBs pending (dry-run)
    /// or uploaded.
    pub fn summary_line(&self, dry_run: bool) -> String {
        let r = &self.region;
        if self.synchronised {
            format!("{r}: Region is synchronized.")
        } else if dry_run {
            format!("{r}: MBs pending : {}", self.pending_mb)
        } else {
            format!("{r}:   Total uploaded to region: {} (MB) ", self.pending_mb)
        }
    }

    /// The last line of a region's real sync, `uploaded_mb` being the MB of
    /// the images actually copied (a failed upload does not count).
    pub fn uploaded_summary_line(&self, uploaded_mb: u64) -> String {
        let r = &self.region;
        if self.synchronised {
            format!("{r}: Region is synchronized.")
        } else {
            format!("{r}:   Total uploaded to region: {uploaded_mb} (MB) ")
        }
    }

    /// Names of the images the plan uploads, in order.
    pub fn uploads(&self) -> Vec<&str> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Upload { image, .. } => Some(image.name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}
