//! `update -i FILE [-n NAME]`: bring each image of a set up to the builder's
//! latest build, rotating the current one out.
//!
//! Plan ([`plan_update`], reads only): per entry, the builder's `-latest`
//! md5 is fetched **first** and compared with the current image's Glance
//! checksum, so an unchanged image costs two small requests and no
//! download (the original always downloaded first). When the md5 cannot be
//! known (no `builder_checksum`, or the file is unreadable) the plan says
//! "compare": the data is downloaded to a work file, hashed, and uploaded
//! only when its md5 differs.
//!
//! Apply ([`apply_update`]): the new image is created **without** its
//! `[type, name]` tags, the data streamed from the builder into Glance
//! while it is hashed, then checked (Glance's md5 = ours = the builder's;
//! the `checksum_file` digest listed); members of a shared predecessor are
//! copied and accepted; only then does it get its tags (so it becomes "the"
//! image), and the old one is renamed to its `depricated` name, stamped with
//! the `depricated` property (UTC, seconds) and deactivated. Any failure
//! before that point deletes the new image, so nothing half-uploaded is
//! ever active under the set's tags; a failure while retiring the old image
//! restores it and deletes the new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openstack_client::glance::{CreateImage, Image, ImagePatch, MemberStatus, Visibility};
use serde::Serialize;
use tracing::Instrument;

use crate::cloud::Cloud;
use crate::error::{os, Error, Result};
use crate::fetch::{listed_in, Builder, Digests, Hashes};
use crate::imageset::{ImageEntry, ImageSet};

/// The image to create.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewImage {
    /// Display name.
    pub name: String,
    /// Visibility.
    pub visibility: String,
    /// Disk format.
    pub disk_format: String,
    /// Container format.
    pub container_format: String,
    /// Minimum disk (GB).
    pub min_disk: Option<u64>,
    /// Minimum RAM (MB).
    pub min_ram: Option<u64>,
    /// Tags `[type, short name, extra...]`, set once the data is verified.
    pub tags: Vec<String>,
    /// Glance properties.
    pub properties: BTreeMap<String, String>,
    /// Owner project `(name, id)`; `id` is `None` when the project does not exist.
    pub owner: Option<(String, Option<String>)>,
}

/// The current image, to be rotated out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OldImage {
    /// Id.
    pub id: String,
    /// Current name.
    pub name: String,
    /// Its Glance md5.
    pub checksum: Option<String>,
    /// Its visibility.
    pub visibility: String,
    /// The name it gets (`depricated`).
    pub new_name: String,
    /// Members to copy to the new image (shared images).
    pub members: Vec<String>,
}

/// Where the data comes from and how it is checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourcePlan {
    /// Image URL (`url` + `latest`).
    pub url: String,
    /// The builder's md5 (from `builder_checksum`), when known.
    pub builder_md5: Option<String>,
    /// `(checksum file URL, digest)`: the data's digest must be listed there.
    pub checksum_file: Option<(String, String)>,
}

/// What happens to one entry.
// A plan holds a handful of these: boxing the big variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum EntryAction {
    /// The builder's md5 is the current image's checksum.
    UpToDate {
        /// The current image.
        image_id: String,
        /// Its md5.
        checksum: String,
    },
    /// Upload a new image (and rotate the current one out, if any).
    Upload {
        /// The image to create.
        new: NewImage,
        /// The data.
        source: SourcePlan,
        /// The image it replaces.
        replaces: Option<OldImage>,
        /// The md5 was not known: download first and upload only if it differs.
        only_if_changed: bool,
    },
    /// The entry cannot be updated (reported, the others go on).
    Skip {
        /// Why.
        reason: String,
    },
}

/// One entry's plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryPlan {
    /// Short name.
    pub short_name: String,
    /// What happens.
    #[serde(flatten)]
    pub action: EntryAction,
}

/// The plan of one `update` run over one image set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdatePlan {
    /// The set file.
    pub file: PathBuf,
    /// Its `type`.
    pub image_type: String,
    /// Entries in file order.
    pub entries: Vec<EntryPlan>,
}

impl UpdatePlan {
    /// Whether applying would write anything.
    pub fn has_writes(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.action, EntryAction::Upload { .. }))
    }

    /// One line per entry, as printed by a dry run.
    pub fn lines(&self) -> Vec<String> {
        self.entries.iter().map(EntryPlan::line).collect()
    }
}

impl EntryPlan {
    /// A one-line description.
    pub fn line(&self) -> String {
        let s = &self.short_name;
        match &self.action {
            EntryAction::UpToDate { image_id, .. } => {
                format!("{s}: no new image needed: checksum match found ({image_id})")
            }
            EntryAction::Skip { reason } => format!("{s}: skipped: {reason}"),
            EntryAction::Upload {
                new,
                source,
                replaces,
                only_if_changed,
            } => {
                let when = if *only_if_changed {
                    "download and compare md5; if it differs, "
                } else {
                    ""
                };
                let mut line = format!(
                    "{s}: {when}create image '{}' ({}) from {}",
                    new.name, new.visibility, source.url
                );
                if let Some(old) = replaces {
                    line.push_str(&format!(
                        "; rename {} '{}' to '{}', deactivate it",
                        old.id, old.name, old.new_name
                    ));
                    if !old.members.is_empty() {
                        line.push_str(&format!("; copy {} member(s)", old.members.len()));
                    }
                }
                line
            }
        }
    }
}

/// Compute the plan for `set` (only entry `name` when given): reads the
/// builder's md5 files, Glance and Keystone; writes nothing.
pub async fn plan_update(
    cloud: &Cloud,
    builder: &Builder,
    set: &ImageSet,
    name: Option<&str>,
) -> Result<UpdatePlan> {
    if let Some(n) = name {
        if !set.images.contains_key(n) {
            return Err(Error::Refused(format!(
                "{}: no image '{n}' in the set",
                set.path.display()
            )));
        }
    }
    let mut entries = Vec::new();
    for entry in set.update_entries(name) {
        let span = tracing::info_span!("plan", image = %entry.short_name);
        let action = match plan_entry(cloud, builder, &set.image_type, entry)
            .instrument(span)
            .await
        {
            Ok(a) => a,
            Err(e) => EntryAction::Skip {
                reason: e.to_string(),
            },
        };
        entries.push(EntryPlan {
            short_name: entry.short_name.clone(),
            action,
        });
    }
    Ok(UpdatePlan {
        file: set.path.clone(),
        image_type: set.image_type.clone(),
        entries,
    })
}

async fn plan_entry(
    cloud: &Cloud,
    builder: &Builder,
    image_type: &str,
    entry: &ImageEntry,
) -> Result<EntryAction> {
    let Some(src) = &entry.source else {
        return Err(Error::Refused("no 'url'/'latest' to update from".into()));
    };
    let builder_md5 = match src.builder_checksum_url() {
        Some(u) => builder.fetch_md5(&u).await,
        None => None,
    };
    let current = cloud.active_image(image_type, &entry.short_name).await?;
    if let (Some(cur), Some(md5)) = (&current, &builder_md5) {
        if cur.checksum.as_deref() == Some(md5.as_str()) {
            tracing::debug!(id = %cur.id, "no new image needed: checksum match found");
            return Ok(EntryAction::UpToDate {
                image_id: cur.id.clone(),
                checksum: md5.clone(),
            });
        }
    }
    let owner = match &entry.owner {
        None => None,
        Some(o) => {
            let id = cloud.project(o).await?.map(|p| p.id);
            if id.is_none() {
                tracing::error!(owner = %o, "project {o} not found! the image gets no owner");
            }
            Some((o.clone(), id))
        }
    };
    let mut tags = vec![image_type.to_owned(), entry.short_name.clone()];
    tags.extend(entry.tags.iter().cloned());
    let new = NewImage {
        name: entry.name.clone(),
        visibility: entry.visibility.to_string(),
        disk_format: entry.disk_format.clone(),
        container_format: entry.container_format.clone(),
        min_disk: entry.min_disk,
        min_ram: entry.min_ram,
        tags,
        properties: entry.properties.clone(),
        owner,
    };
    let replaces = match &current {
        None => None,
        Some(cur) => {
            let members = if cur.visibility == Visibility::Shared {
                cloud
                    .glance
                    .list_members(&cur.id)
                    .await
                    .map_err(os(format!("listing the members of image {}", cur.id)))?
                    .into_iter()
                    .map(|m| m.member_id)
                    .collect()
            } else {
                Vec::new()
            };
            if !members.is_empty() && entry.visibility != Visibility::Shared {
                tracing::warn!(
                    "the current image is shared with {} project(s) but the new one is {}: members are not copied",
                    members.len(),
                    entry.visibility
                );
            }
            Some(OldImage {
                id: cur.id.clone(),
                name: cur.name.clone().unwrap_or_default(),
                checksum: cur.checksum.clone(),
                visibility: cur.visibility.to_string(),
                new_name: entry.depricated.clone(),
                members: if entry.visibility == Visibility::Shared {
                    members
                } else {
                    Vec::new()
                },
            })
        }
    };
    let only_if_changed = replaces.is_some() && builder_md5.is_none();
    Ok(EntryAction::Upload {
        new,
        source: SourcePlan {
            url: src.image_url(),
            builder_md5,
            checksum_file: src.checksum_file_url(),
        },
        replaces,
        only_if_changed,
    })
}

/// What applying an entry did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum EntryOutcome {
    /// Nothing to do.
    UpToDate {
        /// The current image.
        image_id: String,
    },
    /// A new image was created (no predecessor).
    Created {
        /// The new image.
        image_id: String,
        /// Its md5.
        md5: String,
        /// Bytes uploaded.
        bytes: u64,
    },
    /// A new image replaced the old one, which was renamed and deactivated.
    Rotated {
        /// The new image.
        image_id: String,
        /// The retired image.
        old_id: String,
        /// Its md5.
        md5: String,
        /// Bytes uploaded.
        bytes: u64,
        /// Members copied and accepted.
        members: usize,
    },
    /// Skipped at planning time.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Failed; nothing of this entry was left behind (see the message).
    Failed {
        /// The error.
        error: String,
    },
}

/// Settings of the apply step.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Where the data is saved when it must be compared first.
    pub work_dir: PathBuf,
    /// Keep such saved files (`--skip-cleanup`).
    pub keep_downloads: bool,
    /// Smallest acceptable image (the original's 10 000 bytes).
    pub min_size: u64,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            work_dir: std::env::temp_dir(),
            keep_downloads: false,
            min_size: crate::fetch::MIN_IMAGE_SIZE,
        }
    }
}

/// Apply `plan`: every entry is tried; the outcome of each is returned
/// (failures included, each logged as it happens).
pub async fn apply_update(
    cloud: &Cloud,
    builder: &Builder,
    plan: &UpdatePlan,
    opts: &ApplyOptions,
) -> Vec<(String, EntryOutcome)> {
    let mut out = Vec::new();
    for e in &plan.entries {
        let span = tracing::info_span!("update", image = %e.short_name);
        let outcome = match &e.action {
            EntryAction::UpToDate { image_id, .. } => EntryOutcome::UpToDate {
                image_id: image_id.clone(),
            },
            EntryAction::Skip { reason } => {
                span.in_scope(|| tracing::error!(reason = %reason, "skipped"));
                EntryOutcome::Skipped {
                    reason: reason.clone(),
                }
            }
            EntryAction::Upload {
                new,
                source,
                replaces,
                only_if_changed,
            } => match upload_entry(
                cloud,
                builder,
                new,
                source,
                replaces.as_ref(),
                *only_if_changed,
                opts,
            )
            .instrument(span)
            .await
            {
                Ok(o) => o,
                Err(err) => {
                    tracing::error!(image = %e.short_name, error = %err, "update failed");
                    EntryOutcome::Failed {
                        error: err.to_string(),
                    }
                }
            },
        };
        out.push((e.short_name.clone(), outcome));
    }
    out
}

/// The `depricated` stamp: UTC, ISO 8601 to the second, no zone (as the original).
pub fn depricated_stamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn create_request(new: &NewImage) -> CreateImage {
    let mut req = CreateImage::new(new.name.clone())
        .disk_format(new.disk_format.clone())
        .container_format(new.container_format.clone())
        .visibility(Visibility::from(new.visibility.as_str()));
    if let Some(d) = new.min_disk {
        req = req.min_disk(d);
    }
    if let Some(r) = new.min_ram {
        req = req.min_ram(r);
    }
    for (k, v) in &new.properties {
        req = req.property(k.clone(), v.clone());
    }
    if let Some((_, Some(id))) = &new.owner {
        req = req.property("owner", id.clone());
    }
    req
}

/// The data of an upload: straight from the builder, or a saved file.
enum Data {
    Stream(crate::fetch::Download, Arc<Mutex<Hashes>>),
    File(PathBuf, Digests),
}

async fn upload_entry(
    cloud: &Cloud,
    builder: &Builder,
    new: &NewImage,
    source: &SourcePlan,
    replaces: Option<&OldImage>,
    only_if_changed: bool,
    opts: &ApplyOptions,
) -> Result<EntryOutcome> {
    let extra_algo = source.checksum_file.as_ref().map(|(_, a)| a.as_str());
    // Small files first: a missing checksum file refuses before any upload.
    let checksum_text = match &source.checksum_file {
        Some((url, _)) => Some(builder.fetch_text(url).await?),
        None => None,
    };
    let download = builder.open(&source.url, opts.min_size).await?;
    let data = if only_if_changed {
        let (path, digests) = download.save_hashed(&opts.work_dir, extra_algo).await?;
        let same = replaces.and_then(|o| o.checksum.as_deref()) == Some(digests.md5.as_str());
        if same {
            cleanup_file(&path, opts.keep_downloads);
            let id = replaces.map(|o| o.id.clone()).unwrap_or_default();
            tracing::info!(%id, "no new image needed: checksum match found");
            return Ok(EntryOutcome::UpToDate { image_id: id });
        }
        Data::File(path, digests)
    } else {
        let hashes = Arc::new(Mutex::new(Hashes::new(extra_algo)));
        Data::Stream(download, hashes)
    };
    if let (Data::File(path, digests), Some(text), Some((url, algo))) =
        (&data, &checksum_text, &source.checksum_file)
    {
        check_listed(digests, algo, text, url).inspect_err(|_| cleanup_file(path, false))?;
    }

    let image = cloud
        .glance
        .create_image(&create_request(new))
        .await
        .map_err(os(format!("creating image '{}'", new.name)))?;
    tracing::info!(id = %image.id, name = %new.name, "created the new image, uploading");
    let result = finish_new(
        cloud,
        new,
        source,
        replaces,
        &image,
        data,
        &checksum_text,
        opts,
    )
    .await;
    match result {
        Ok(o) => Ok(o),
        Err(e) => {
            let cleanup = match cloud.glance.delete_image(&image.id).await {
                Ok(()) => format!("the new image {} was deleted", image.id),
                Err(d) => format!("the new image {} could NOT be deleted: {d}", image.id),
            };
            Err(Error::Refused(format!("{e} ({cleanup})")))
        }
    }
}

fn cleanup_file(path: &Path, keep: bool) {
    if keep {
        tracing::info!(path = %path.display(), "download kept (--skip-cleanup)");
    } else if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the downloaded file");
    }
}

fn check_listed(digests: &Digests, algo: &str, text: &str, url: &str) -> Result<()> {
    let Some(value) = Hashes::pick(digests, algo) else {
        return Err(Error::Checksum {
            what: url.to_owned(),
            message: format!("no {algo} digest was computed"),
        });
    };
    if listed_in(value, text) {
        Ok(())
    } else {
        Err(Error::Checksum {
            what: url.to_owned(),
            message: format!("download checksum mismatch: {algo} {value} is not listed"),
        })
    }
}

/// Upload, verify, copy members, tag, retire the old image. On error the
/// caller deletes the new image.
#[allow(clippy::too_many_arguments)]
async fn finish_new(
    cloud: &Cloud,
    new: &NewImage,
    source: &SourcePlan,
    replaces: Option<&OldImage>,
    image: &Image,
    data: Data,
    checksum_text: &Option<String>,
    opts: &ApplyOptions,
) -> Result<EntryOutcome> {
    let glance = &cloud.glance;
    let digests = match data {
        Data::Stream(download, hashes) => {
            let size = download.size;
            let reader = download.hashed_reader(hashes.clone());
            glance
                .upload(&image.id, reader, size)
                .await
                .map_err(os(format!(
                    "uploading {} into image {}",
                    source.url, image.id
                )))?;
            let d = hashes
                .lock()
                .map_err(|_| Error::Refused("internal: hash state poisoned".into()))?
                .finish();
            if let (Some(text), Some((url, algo))) = (checksum_text, &source.checksum_file) {
                check_listed(&d, algo, text, url)?;
            }
            d
        }
        Data::File(path, digests) => {
            let r = glance
                .upload_file(&image.id, &path)
                .await
                .map_err(os(format!(
                    "uploading {} into image {}",
                    path.display(),
                    image.id
                )));
            cleanup_file(&path, opts.keep_downloads);
            r?;
            digests
        }
    };
    if digests.bytes < opts.min_size {
        return Err(Error::Http {
            url: source.url.clone(),
            message: format!("file is too small: {} bytes", digests.bytes),
        });
    }
    let stored = glance
        .get_image(&image.id)
        .await
        .map_err(os(format!("reading image {}", image.id)))?;
    if stored.checksum.as_deref() != Some(digests.md5.as_str()) {
        return Err(Error::Checksum {
            what: format!("image {}", image.id),
            message: format!(
                "Glance stored md5 {:?}, the data sent had {}",
                stored.checksum, digests.md5
            ),
        });
    }
    if let Some(expected) = &source.builder_md5 {
        if expected != &digests.md5 {
            return Err(Error::Checksum {
                what: source.url.clone(),
                message: format!(
                    "the builder announced md5 {expected} but sent data with md5 {} (rebuilt meanwhile?)",
                    digests.md5
                ),
            });
        }
    }
    let mut members = 0;
    if let Some(old) = replaces {
        for project in &old.members {
            grant(glance, &image.id, project).await?;
            members += 1;
        }
    }
    glance
        .update_image(
            &image.id,
            &ImagePatch::for_image(&stored).tags(new.tags.iter().cloned()),
        )
        .await
        .map_err(os(format!("tagging image {}", image.id)))?;
    let Some(old) = replaces else {
        tracing::info!(id = %image.id, md5 = %digests.md5, "image created");
        return Ok(EntryOutcome::Created {
            image_id: image.id.clone(),
            md5: digests.md5,
            bytes: digests.bytes,
        });
    };
    retire_image(cloud, &old.id, &old.new_name).await?;
    tracing::info!(id = %image.id, old = %old.id, md5 = %digests.md5, "image rotated");
    Ok(EntryOutcome::Rotated {
        image_id: image.id.clone(),
        old_id: old.id.clone(),
        md5: digests.md5,
        bytes: digests.bytes,
        members,
    })
}

/// Share image `id` with `project` and accept the membership for it
/// (skipped when it is already a member; an existing pending one is accepted).
pub async fn grant(
    glance: &openstack_client::glance::GlanceClient,
    id: &str,
    project: &str,
) -> Result<bool> {
    let existing = match glance.get_member(id, project).await {
        Ok(m) => Some(m),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            return Err(Error::OpenStack {
                context: format!("reading member {project} of image {id}"),
                source: Box::new(e),
            })
        }
    };
    let created = existing.is_none();
    if created {
        glance
            .add_member(id, project)
            .await
            .map_err(os(format!("sharing image {id} with project {project}")))?;
    }
    if existing.map(|m| m.status) != Some(MemberStatus::Accepted) {
        glance
            .update_member(id, project, MemberStatus::Accepted)
            .await
            .map_err(os(format!("accepting image {id} for project {project}")))?;
    }
    Ok(created)
}

/// Rename image `id` to `new_name`, stamp `depricated`, deactivate it. When
/// the deactivation fails, the name and property are put back.
pub async fn retire_image(cloud: &Cloud, id: &str, new_name: &str) -> Result<()> {
    let glance = &cloud.glance;
    let before = glance
        .get_image(id)
        .await
        .map_err(os(format!("reading image {id}")))?;
    let patch = ImagePatch::for_image(&before)
        .name(new_name)
        .set_property("depricated", depricated_stamp());
    let renamed = glance
        .update_image(id, &patch)
        .await
        .map_err(os(format!("renaming image {id} to '{new_name}'")))?;
    if let Err(e) = glance.deactivate_image(id).await {
        let mut undo =
            ImagePatch::for_image(&renamed).name(before.name.clone().unwrap_or_default());
        undo = match before.property("depricated") {
            Some(v) => undo.set_property("depricated", v),
            None => undo.remove_property("depricated"),
        };
        let restored = match glance.update_image(id, &undo).await {
            Ok(_) => "its name and properties were restored".to_owned(),
            Err(u) => format!("restoring its name failed too: {u}"),
        };
        return Err(Error::Refused(format!(
            "deactivating image {id} failed ({restored}): {e}"
        )));
    }
    Ok(())
}
