//! `rename-old-images`: after a successful (and gated) build, the older
//! images of the same name are warehoused and their users move to the new
//! one. Done natively through `openstack-client`'s Glance.
//!
//! [`plan_rename`] only reads (Glance listings, members, the config) and
//! returns a [`RenamePlan`], a plain value that `--dry-run` prints;
//! [`apply_rename`] performs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use openstack_client::glance::{
    GlanceClient, Image, ImageFilter, ImagePatch, MemberStatus, Visibility,
};
use serde::Serialize;
use serde_json::Value;
use tracing::{info, info_span, Instrument};

use crate::error::{Error, Result};

/// How old images are renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RenameStyle {
    /// `warehoused-<name> <YYYY-MM-DD>` (the 2019 script).
    Date,
    /// `warehoused-<name>-<DD-MM-YYYY-HH-MM-SS>` (the 2021 script).
    Timestamp,
}

impl RenameStyle {
    /// The warehoused name of an image called `name`, renamed at `now`.
    pub fn warehoused(self, name: &str, now: DateTime<Utc>) -> String {
        match self {
            RenameStyle::Date => format!("warehoused-{name} {}", now.format("%Y-%m-%d")),
            RenameStyle::Timestamp => {
                format!("warehoused-{name}-{}", now.format("%d-%m-%Y-%H-%M-%S"))
            }
        }
    }
}

/// What the rotation does besides renaming (the `[rename-old-images]`
/// section of `config.ini`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenameSettings {
    /// `RENAME_STYLE`: `date` (default) or `timestamp`.
    pub style: RenameStyle,
    /// `COPY_PROPERTIES`: comma-separated substrings; properties of the
    /// newest old image whose key contains one are set on the new image.
    /// Default `AQ,os_distro,os_version,os_variant` (the 2021 script's).
    pub copy_properties: Vec<String>,
    /// `UPDATE_SOURCE_IMAGES`: the `source-images.json` whose old ids are
    /// replaced by the new image's id, if any.
    pub source_images: Option<PathBuf>,
}

impl Default for RenameSettings {
    fn default() -> Self {
        RenameSettings {
            style: RenameStyle::Date,
            copy_properties: ["AQ", "os_distro", "os_version", "os_variant"]
                .map(String::from)
                .to_vec(),
            source_images: None,
        }
    }
}

/// One older image and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OldImage {
    /// Its id.
    pub id: String,
    /// Its name now.
    pub name: String,
    /// Its new name.
    pub new_name: String,
    /// Its visibility.
    pub visibility: String,
    /// Projects it is shared with (memberships removed from it).
    pub members: Vec<String>,
}

/// Everything `rename-old-images` will do, computed without writing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenamePlan {
    /// The image name looked for.
    pub name: String,
    /// The newest image of that name (the one just built), if any.
    pub new_image: Option<String>,
    /// The new image's final name when it differs (a `Next-` build).
    pub rename_new_to: Option<String>,
    /// The older images.
    pub old_images: Vec<OldImage>,
    /// Visibility for the new image: the most open of the old images'.
    pub visibility: Option<String>,
    /// Projects the new image is shared with (added and accepted).
    pub members: Vec<String>,
    /// Properties set on the new image.
    pub properties: BTreeMap<String, String>,
    /// The source-images file to update, if configured and affected.
    pub source_images: Option<PathBuf>,
}

impl RenamePlan {
    /// Whether there is nothing to do (no older image).
    pub fn is_empty(&self) -> bool {
        self.old_images.is_empty() && self.rename_new_to.is_none()
    }
}

fn os_err(operation: impl Into<String>) -> impl FnOnce(openstack_client::Error) -> Error {
    let operation = operation.into();
    move |source| Error::OpenStack {
        operation,
        source: Box::new(source),
    }
}

fn openness(v: &Visibility) -> u8 {
    match v {
        Visibility::Public => 4,
        Visibility::Community => 3,
        Visibility::Shared => 2,
        Visibility::Private => 1,
        Visibility::Unknown(_) => 0,
    }
}

/// Images of the caller's project named `name`, newest first; among images
/// created in the same second (Glance's resolution), `built` (the image a
/// build just made) counts as the newest.
async fn images_named(
    glance: &GlanceClient,
    owner: &str,
    name: &str,
    built: Option<&str>,
) -> Result<Vec<Image>> {
    let mut images = glance
        .list_images(&ImageFilter::default().name(name).owner(owner))
        .await
        .map_err(os_err(format!("list images named {name:?}")))?;
    images.retain(|i| i.name.as_deref() == Some(name));
    let is_built = |i: &Image| Some(i.id.as_str()) == built;
    images.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then(is_built(b).cmp(&is_built(a)))
            .then(b.id.cmp(&a.id))
    });
    Ok(images)
}

/// Plan the rotation for the image called `name` (the arguments of the
/// original script joined by spaces, e.g. `sl7x-x86_64 web AQ`), in the
/// project `owner`. A name starting with `Next-` (the 2021 layout) is the
/// new image; the old ones carry the name without the prefix, which the
/// new image then takes.
pub async fn plan_rename(
    glance: &GlanceClient,
    owner: &str,
    name: &str,
    settings: &RenameSettings,
    now: DateTime<Utc>,
) -> Result<RenamePlan> {
    plan_rename_after(glance, owner, name, settings, now, None).await
}

/// [`plan_rename`], where `built` (the image a build just made, if known)
/// wins a tie on creation time.
async fn plan_rename_after(
    glance: &GlanceClient,
    owner: &str,
    name: &str,
    settings: &RenameSettings,
    now: DateTime<Utc>,
    built: Option<&str>,
) -> Result<RenamePlan> {
    let (new_name, old_name) = match name.strip_prefix("Next-") {
        Some(stripped) if !stripped.is_empty() => (name, stripped),
        _ => (name, name),
    };
    let mut candidates = images_named(glance, owner, new_name, built).await?;
    let mut plan = RenamePlan {
        name: name.to_string(),
        new_image: None,
        rename_new_to: None,
        old_images: vec![],
        visibility: None,
        members: vec![],
        properties: BTreeMap::new(),
        source_images: None,
    };
    if candidates.is_empty() {
        return Ok(plan);
    }
    let new = candidates.remove(0);
    let mut old = candidates;
    if new_name != old_name {
        plan.rename_new_to = Some(old_name.to_string());
        old = images_named(glance, owner, old_name, None).await?;
        old.retain(|i| i.id != new.id);
    }
    let mut best: Option<&Visibility> = None;
    for image in &old {
        let members = if image.visibility == Visibility::Shared {
            glance
                .list_members(&image.id)
                .await
                .map_err(os_err(format!("list members of image {}", image.id)))?
                .into_iter()
                .map(|m| m.member_id)
                .collect()
        } else {
            vec![]
        };
        for m in &members {
            if !plan.members.contains(m) {
                plan.members.push(m.clone());
            }
        }
        if best.is_none_or(|b| openness(&image.visibility) > openness(b)) {
            best = Some(&image.visibility);
        }
        plan.old_images.push(OldImage {
            id: image.id.clone(),
            name: image.name.clone().unwrap_or_default(),
            new_name: settings.style.warehoused(old_name, now),
            visibility: image.visibility.to_string(),
            members,
        });
    }
    if let Some(v) = best.filter(|v| **v != new.visibility) {
        plan.visibility = Some(v.to_string());
    }
    if let Some(newest_old) = old.first() {
        for (k, v) in &newest_old.properties {
            if settings
                .copy_properties
                .iter()
                .any(|s| k.contains(s.as_str()))
            {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if new.properties.get(k) != Some(v) {
                    plan.properties.insert(k.clone(), value);
                }
            }
        }
    }
    plan.new_image = Some(new.id);
    if let Some(path) = &settings.source_images {
        if !plan.old_images.is_empty() {
            plan.source_images = Some(path.clone());
        }
    }
    Ok(plan)
}

/// Perform a plan: share the new image with the old images' members and
/// accept them, set its visibility and properties (and its final name),
/// then warehouse the old images (rename, memberships removed), then
/// update `source-images.json`.
pub async fn apply_rename(glance: &GlanceClient, plan: &RenamePlan) -> Result<()> {
    let Some(new_id) = &plan.new_image else {
        info!(name = %plan.name, "no image of that name: no work to do");
        return Ok(());
    };
    let span = info_span!("rename_old_images", name = %plan.name, new = %new_id);
    async {
        if !plan.members.is_empty() {
            glance
                .update_image(new_id, &ImagePatch::new().visibility(Visibility::Shared))
                .await
                .map_err(os_err(format!("share image {new_id}")))?;
            let existing: Vec<String> = glance
                .list_members(new_id)
                .await
                .map_err(os_err(format!("list members of image {new_id}")))?
                .into_iter()
                .map(|m| m.member_id)
                .collect();
            for m in &plan.members {
                if !existing.contains(m) {
                    glance
                        .add_member(new_id, m)
                        .await
                        .map_err(os_err(format!("add member {m} to image {new_id}")))?;
                }
                glance
                    .update_member(new_id, m, MemberStatus::Accepted)
                    .await
                    .map_err(os_err(format!("accept member {m} of image {new_id}")))?;
                info!(member = %m, "member moved to the new image and accepted");
            }
        }
        let mut patch = ImagePatch::new();
        if let Some(v) = &plan.visibility {
            patch = patch.visibility(Visibility::from(v.as_str()));
        }
        if let Some(n) = &plan.rename_new_to {
            patch = patch.name(n.clone());
        }
        for (k, v) in &plan.properties {
            patch = patch.set_property(k, v.clone());
        }
        for old in &plan.old_images {
            let warehouse = ImagePatch::new().name(old.new_name.clone());
            glance
                .update_image(&old.id, &warehouse)
                .await
                .map_err(os_err(format!("rename image {}", old.id)))?;
            for m in &old.members {
                glance
                    .remove_member(&old.id, m)
                    .await
                    .map_err(os_err(format!("remove member {m} from image {}", old.id)))?;
            }
            info!(id = %old.id, new_name = %old.new_name, "old image warehoused");
        }
        if !patch.is_empty() {
            glance
                .update_image(new_id, &patch)
                .await
                .map_err(os_err(format!("update image {new_id}")))?;
        }
        if let Some(path) = &plan.source_images {
            let old_ids: Vec<&str> = plan.old_images.iter().map(|o| o.id.as_str()).collect();
            let n = replace_source_images(path, &old_ids, new_id)?;
            info!(file = %path.display(), replaced = n, "source images updated");
        }
        Ok(())
    }
    .instrument(span)
    .await
}

/// Replace every string value of `path` (either shape) equal to one of
/// `old_ids` by `new_id`; the file is rewritten atomically only when
/// something changed. Returns the number of values replaced.
pub fn replace_source_images(path: &Path, old_ids: &[&str], new_id: &str) -> Result<usize> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut root: Value = serde_json::from_slice(&text).map_err(|source| Error::Json {
        what: path.display().to_string(),
        source,
    })?;
    fn walk(v: &mut Value, old: &[&str], new: &str) -> usize {
        match v {
            Value::String(s) if old.contains(&s.as_str()) => {
                *s = new.to_string();
                1
            }
            Value::Object(m) => m.values_mut().map(|v| walk(v, old, new)).sum(),
            Value::Array(a) => a.iter_mut().map(|v| walk(v, old, new)).sum(),
            _ => 0,
        }
    }
    let n = walk(&mut root, old_ids, new_id);
    if n > 0 {
        let mut out = serde_json::to_string_pretty(&root).map_err(|source| Error::Json {
            what: path.display().to_string(),
            source,
        })?;
        out.push('\n');
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, out).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    }
    Ok(n)
}

/// Runs the rotation for the images a build created (what `rabbit2packer`
/// does after a successful, gated build).
#[derive(Debug, Clone)]
pub struct Rotator {
    session: openstack_client::Session,
    region: Option<String>,
    settings: RenameSettings,
}

impl Rotator {
    /// A rotator over `session` (its default region unless `region`).
    pub fn new(
        session: openstack_client::Session,
        region: Option<String>,
        settings: RenameSettings,
    ) -> Self {
        Rotator {
            session,
            region,
            settings,
        }
    }

    /// Credentials for the rotation: `cloud` from clouds.yaml when given
    /// (or `OS_CLOUD` is set in the file), else the `OS_*` variables of the
    /// admin credentials file (`PACKER_ADMIN_AUTH`).
    pub fn session_from(
        admin_auth: &crate::runner::AuthEnv,
        cloud: Option<&str>,
    ) -> Result<openstack_client::Session> {
        let config = match cloud {
            Some(c) => openstack_client::CloudConfig::load(Some(c), None),
            None => openstack_client::CloudConfig::from_env_with(|k| {
                admin_auth
                    .get(k)
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            }),
        }
        .map_err(os_err("read the OpenStack credentials"))?;
        openstack_client::Session::new(config).map_err(os_err("open an OpenStack session"))
    }

    /// The Glance client and the caller's project.
    pub async fn connect(&self) -> Result<(GlanceClient, String)> {
        let glance = self
            .session
            .image(self.region.as_deref())
            .await
            .map_err(os_err("find the image service"))?;
        let project = self
            .session
            .token_info()
            .await
            .map_err(os_err("authenticate"))?
            .project_id
            .ok_or_else(|| Error::OpenStack {
                operation: "authenticate".into(),
                source: Box::new(openstack_client::Error::InvalidInput(
                    "the token is not scoped to a project".into(),
                )),
            })?;
        Ok((glance, project))
    }

    /// Plan (and unless `dry_run`, apply) the rotation for `name`.
    pub async fn rename_old_images(&self, name: &str, dry_run: bool) -> Result<RenamePlan> {
        let (glance, project) = self.connect().await?;
        let plan = plan_rename(&glance, &project, name, &self.settings, Utc::now()).await?;
        if !dry_run {
            apply_rename(&glance, &plan).await?;
        }
        Ok(plan)
    }

    /// Rotate for the image `image_id` a build created: its name is read
    /// from Glance; nothing is done unless it is the newest of that name.
    pub async fn after_build(&self, image_id: &str) -> Result<RenamePlan> {
        let (glance, project) = self.connect().await?;
        let image = glance
            .get_image(image_id)
            .await
            .map_err(os_err(format!("get image {image_id}")))?;
        let name = image.name.unwrap_or_default();
        let plan = plan_rename_after(
            &glance,
            &project,
            &name,
            &self.settings,
            Utc::now(),
            Some(image_id),
        )
        .await?;
        if plan.new_image.as_deref() != Some(image_id) {
            tracing::warn!(image = %image_id, newest = ?plan.new_image, "a newer image of the same name exists; old images left alone");
            return Ok(plan);
        }
        apply_rename(&glance, &plan).await?;
        Ok(plan)
    }
}

/// The name a failed image gets: `Broken-<name>-<YYYY-MM-DD>` (2021).
pub fn broken_name(name: &str, now: DateTime<Utc>) -> String {
    format!("Broken-{name}-{}", now.format("%Y-%m-%d"))
}

/// Rename a failed image `Broken-<name>-<date>` and make it private, so it
/// is never taken for the current image; returns the new name.
pub async fn mark_broken(
    glance: &GlanceClient,
    image_id: &str,
    now: DateTime<Utc>,
) -> Result<String> {
    let image = glance
        .get_image(image_id)
        .await
        .map_err(os_err(format!("get image {image_id}")))?;
    let name = broken_name(image.name.as_deref().unwrap_or(image_id), now);
    glance
        .update_image(
            image_id,
            &ImagePatch::new()
                .name(name.clone())
                .visibility(Visibility::Private),
        )
        .await
        .map_err(os_err(format!("mark image {image_id} broken")))?;
    info!(image = %image_id, name = %name, "failed image renamed and made private");
    Ok(name)
}

impl Rotator {
    /// [`mark_broken`] through this rotator's session.
    pub async fn mark_broken(&self, image_id: &str) -> Result<String> {
        let (glance, _) = self.connect().await?;
        mark_broken(&glance, image_id, Utc::now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn warehoused_names() {
        let now = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(
            RenameStyle::Date.warehoused("sl7x-x86_64 web AQ", now),
            "warehoused-sl7x-x86_64 web AQ 2026-03-04"
        );
        assert_eq!(
            RenameStyle::Timestamp.warehoused("host.example.org", now),
            "warehoused-host.example.org-04-03-2026-05-06-07"
        );
    }

    #[test]
    fn source_images_in_both_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let flat = dir.path().join("flat.json");
        std::fs::write(
            &flat,
            r#"{"sl7x-x86_64": "old-1", "rocky8-x86_64": "other"}"#,
        )
        .unwrap();
        assert_eq!(replace_source_images(&flat, &["old-1"], "new").unwrap(), 1);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&flat).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"sl7x-x86_64": "new", "rocky8-x86_64": "other"})
        );
        let nested = dir.path().join("nested.json");
        let text = r#"{"IMAGES": {"sl": {"7x-x86_64": "old-2"}}}"#;
        std::fs::write(&nested, text).unwrap();
        assert_eq!(replace_source_images(&nested, &["none"], "new").unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&nested).unwrap(), text);
        assert_eq!(
            replace_source_images(&nested, &["old-2"], "new").unwrap(),
            1
        );
    }
}
