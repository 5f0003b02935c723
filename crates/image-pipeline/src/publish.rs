//! Publishing release-candidate images: the `locate_images.py` and
//! `publish_image.py` steps of the original `create_ge_images` tool.
//!
//! A release candidate is a private image named `<name>_rc`. Publishing it
//! retires the public image it replaces (same name, same owner, carrying the
//! `nid` and `type` properties) by renaming it `<name>_obsolete` and making it
//! private — the shape GlanceSync's obsolete handling expects — and then
//! gives the candidate the plain name, the old image's `nid` and `type`, public
//! visibility and the caller's project as owner.
//!
//! Publication happens in two phases:
//!
//! 1. [`plan_publish`] only reads: it checks the candidate (exists, is active,
//!    is named `*_rc`, is not already published), finds the old images and
//!    decides where `nid`/`type` come from. Every refusal happens here, before
//!    anything is written. A dry run stops after this phase.
//! 2. [`execute_plan`] writes: old images first, the candidate last. When a
//!    write fails, the writes already made are undone (old images get their
//!    name and public visibility back) and the error says what was restored.
//!
//! [`publish`] runs both. [`locate_images`] lists the caller's published
//! images and the NIDs in use.
//!
//! Differences from the original, on purpose:
//! * the old image becomes `<old_name>_obsolete`, not `<name>_rc_obsolete`;
//! * an old image without `nid`/`type` or owned by another project is skipped
//!   with a warning (the original crashed while printing that warning);
//! * when both the request and an old image give `nid`/`type` and they
//!   differ, the old image's values win (as in the original: the published
//!   image keeps its identity) and a warning says so;
//! * when several public images of the caller carry the old name, all are
//!   retired and the most recently created one gives `nid`/`type`;
//! * the candidate must be `active` (the original would publish an image
//!   without data), and publishing an already published image is an error
//!   instead of a silent second rename.

use std::cmp::Ordering;

use openstack_client::glance::{GlanceClient, Image, ImageFilter, ImagePatch, Visibility};
use openstack_client::Session;
use serde::Serialize;
use tracing::{info, warn};

use crate::error::{Error, Result, RollbackOutcome};

/// Property holding the image's numeric id in the catalogue of images.
pub const NID_PROPERTY: &str = "nid";
/// Property holding the image's type (for example `baseimage` or a GE name).
pub const TYPE_PROPERTY: &str = "type";
/// Suffix of a release candidate's name.
pub const RC_SUFFIX: &str = "_rc";
/// Suffix given to the public image a publication replaces.
pub const OBSOLETE_SUFFIX: &str = "_obsolete";
/// Glance's limit on image names and property values, in characters.
pub const MAX_NAME_CHARS: usize = 255;

/// The `nid` and `type` properties of a published image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NidType {
    /// The `nid` property.
    pub nid: String,
    /// The `type` property.
    #[serde(rename = "type")]
    pub image_type: String,
}

impl NidType {
    /// A pair of values, checked: neither may be empty, all blank, or longer
    /// than Glance accepts.
    pub fn new(nid: impl Into<String>, image_type: impl Into<String>) -> Result<Self> {
        let pair = NidType {
            nid: nid.into(),
            image_type: image_type.into(),
        };
        check_value("nid", &pair.nid)?;
        check_value("type", &pair.image_type)?;
        Ok(pair)
    }

    /// The pair carried by `image`, if it has both properties.
    pub fn of(image: &Image) -> Option<Self> {
        Some(NidType {
            nid: image.property(NID_PROPERTY)?.to_owned(),
            image_type: image.property(TYPE_PROPERTY)?.to_owned(),
        })
    }
}

fn check_value(field: &'static str, value: &str) -> Result<()> {
    let problem = if value.trim().is_empty() {
        "it is empty"
    } else if value.chars().count() > MAX_NAME_CHARS {
        "it is longer than Glance's 255 characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidNidType {
        field,
        value: value.to_owned(),
        problem: problem.to_owned(),
    })
}

/// One published image found by [`locate_images`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocatedImage {
    /// Image id.
    pub id: String,
    /// Image name (empty when the image has none).
    pub name: String,
    /// Its `nid` property.
    pub nid: String,
    /// Its `type` property.
    #[serde(rename = "type")]
    pub image_type: String,
}

/// What [`locate_images`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocateReport {
    /// The caller's public images with `nid` and `type`, by name then id.
    pub images: Vec<LocatedImage>,
    /// The NIDs in use, de-duplicated, numbers in numeric order before any
    /// other value in text order.
    pub nids: Vec<String>,
}

impl LocateReport {
    /// The original's output: one `name nid type` line per image, then the
    /// list of NIDs in use.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for i in &self.images {
            out.push_str(&format!("{} {} {}\n", i.name, i.nid, i.image_type));
        }
        out.push_str(&format!("NIDs in use: {}\n", self.nids.join(" ")));
        out
    }
}

/// Order NIDs as the original prints them: numbers numerically, then any
/// non-numeric value in text order.
pub fn compare_nids(a: &str, b: &str) -> Ordering {
    match (a.trim().parse::<u128>(), b.trim().parse::<u128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// A Glance image id as given on a command line: a UUID, with or without
/// dashes (returned unchanged).
pub fn parse_image_id(s: &str) -> Result<String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let dashed_ok = !s.contains('-')
        || (s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-'));
    if hex.len() == 32 && dashed_ok && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_owned())
    } else {
        Err(Error::InvalidImageId {
            value: s.to_owned(),
        })
    }
}

/// The project the session's token is scoped to: whose images are "the
/// caller's own".
#[tracing::instrument(skip(session))]
pub async fn caller_project_id(session: &Session) -> Result<String> {
    let info = session.token_info().await.map_err(|source| Error::Auth {
        source: Box::new(source),
    })?;
    info.project_id.ok_or(Error::NoProject)
}

/// List the public images owned by `owner_project_id` that carry both `nid`
/// and `type`, and the sorted NIDs in use (`locate_images.py`).
#[tracing::instrument(skip(glance))]
pub async fn locate_images(glance: &GlanceClient, owner_project_id: &str) -> Result<LocateReport> {
    let filter = ImageFilter::default()
        .owner(owner_project_id)
        .visibility(Visibility::Public);
    let listed = glance.list_images(&filter).await.map_err(Error::glance(
        "listing the public images of project",
        owner_project_id,
    ))?;
    let mut images: Vec<LocatedImage> = listed
        .iter()
        // The server filtered already; check again so a Glance that ignores
        // a filter cannot widen the answer.
        .filter(|i| i.visibility == Visibility::Public)
        .filter(|i| i.owner.as_deref() == Some(owner_project_id))
        .filter_map(|i| {
            let pair = NidType::of(i)?;
            Some(LocatedImage {
                id: i.id.clone(),
                name: i.name.clone().unwrap_or_default(),
                nid: pair.nid,
                image_type: pair.image_type,
            })
        })
        .collect();
    images.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let mut nids: Vec<String> = images.iter().map(|i| i.nid.clone()).collect();
    nids.sort_by(|a, b| compare_nids(a, b));
    nids.dedup();
    info!(
        images = images.len(),
        nids = nids.len(),
        "located published images"
    );
    Ok(LocateReport { images, nids })
}

/// What to publish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishRequest {
    /// Id of the release candidate (an image named `*_rc`).
    pub rc_image_id: String,
    /// Name of the public image it replaces; default: the candidate's name
    /// without `_rc`.
    pub old_name: Option<String>,
    /// `nid` and `type` to use when no old image provides them.
    pub nid_type: Option<NidType>,
}

/// Where the published image's `nid` and `type` come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum NidTypeSource {
    /// From the old public image being replaced.
    OldImage {
        /// Its id.
        id: String,
    },
    /// From the request (first publication).
    Request,
}

/// An old public image that the publication retires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObsoleteStep {
    /// Image id.
    pub id: String,
    /// Its current name (the old name).
    pub name: String,
    /// The name it gets: `<old name>_obsolete`.
    pub new_name: String,
    /// Its checksum, for GlanceSync's `replace` list (none if it has no data).
    pub checksum: Option<String>,
    /// Its `nid` and `type`.
    #[serde(flatten)]
    pub nid_type: NidType,
}

/// A public image with the old name that the publication leaves alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedImage {
    /// Image id.
    pub id: String,
    /// Its owner.
    pub owner: Option<String>,
    /// Why it is left alone.
    pub reason: String,
}

/// Everything a publication will do, decided before any write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishPlan {
    /// Id of the release candidate.
    pub rc_id: String,
    /// Its current name (`*_rc`).
    pub rc_name: String,
    /// The name it will have.
    pub new_name: String,
    /// The old name that was searched for.
    pub old_name: String,
    /// The `nid` and `type` it will carry.
    #[serde(flatten)]
    pub nid_type: NidType,
    /// Where they come from.
    pub nid_type_source: NidTypeSource,
    /// Old public images to rename `<old>_obsolete` and make private.
    pub obsolete: Vec<ObsoleteStep>,
    /// Public images with the old name that are left alone, and why.
    pub skipped: Vec<SkippedImage>,
    /// Every warning raised while planning (also logged).
    pub warnings: Vec<String>,
    /// The candidate's current owner when it differs from the caller's
    /// project (the owner then changes).
    pub owner_from: Option<String>,
    /// The project that will own the published image.
    pub owner: String,
    /// The candidate as read (its properties decide add vs replace).
    #[serde(skip)]
    pub rc_image: Image,
}

/// The outcome of [`publish`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishReport {
    /// Whether this was a dry run (nothing was written).
    pub dry_run: bool,
    /// What was (or, in a dry run, would be) done.
    #[serde(flatten)]
    pub plan: PublishPlan,
    /// The published image as Glance returned it (none in a dry run).
    #[serde(skip)]
    pub published: Option<Image>,
}

impl PublishReport {
    /// Text in the original's words: one line per retired image plus its
    /// checksum line, then a line naming the published image.
    pub fn to_text(&self) -> String {
        let p = &self.plan;
        let mut out = String::new();
        let verb = if self.dry_run {
            "Would rename and make private"
        } else {
            "Renamed and made private"
        };
        for o in &p.obsolete {
            out.push_str(&format!(
                "{verb} image {} ({} -> {})\n",
                o.id, o.name, o.new_name
            ));
            match &o.checksum {
                Some(c) => out.push_str(&format!(
                    "Add this checksum to replace, at /etc/glancesync.conf: {c}\n"
                )),
                None => out.push_str(&format!(
                    "Image {} has no checksum (no data): nothing to add to replace\n",
                    o.id
                )),
            }
        }
        let owner = p
            .owner_from
            .as_ref()
            .map(|from| format!(", owner {from} -> {}", p.owner))
            .unwrap_or_default();
        let what = format!(
            "image {} ({} -> {}, nid {}, type {}, public{owner})",
            p.rc_id, p.rc_name, p.new_name, p.nid_type.nid, p.nid_type.image_type
        );
        if self.dry_run {
            out.push_str(&format!("Would publish {what}; dry run: nothing changed\n"));
        } else {
            out.push_str(&format!("Published {what}\n"));
        }
        out
    }
}

/// Check a name Glance will be asked to store.
fn check_name(id: &str, name: &str, what: &str) -> Result<()> {
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(Error::InvalidName {
            id: id.to_owned(),
            problem: format!(
                "{what} '{name}' has {chars} characters, more than Glance's {MAX_NAME_CHARS}"
            ),
        });
    }
    Ok(())
}

/// Newest first by `created_at` (RFC 3339 strings sort as times), then by id.
fn newest_first(a: &Image, b: &Image) -> Ordering {
    b.created_at
        .cmp(&a.created_at)
        .then_with(|| a.id.cmp(&b.id))
}

fn warn_into(warnings: &mut Vec<String>, message: String) {
    warn!("{message}");
    warnings.push(message);
}

/// Decide everything a publication does, reading only. Every refusal
/// (not a `*_rc` image, not active, already published, no `nid`/`type`,
/// names Glance would refuse) happens here.
#[tracing::instrument(skip(glance, request), fields(rc = %request.rc_image_id))]
pub async fn plan_publish(
    glance: &GlanceClient,
    caller_project_id: &str,
    request: &PublishRequest,
) -> Result<PublishPlan> {
    let id = request.rc_image_id.as_str();
    let rc = match glance.get_image(id).await {
        Ok(i) => i,
        Err(e) if e.is_not_found() => {
            return Err(Error::ImageNotFound { id: id.to_owned() });
        }
        Err(e) => return Err(Error::glance("reading", id)(e)),
    };
    let rc_name = rc.name.clone().unwrap_or_default();
    let Some(base) = rc_name.strip_suffix(RC_SUFFIX) else {
        if let (Visibility::Public, Some(pair)) = (&rc.visibility, NidType::of(&rc)) {
            return Err(Error::AlreadyPublished {
                id: id.to_owned(),
                name: rc_name,
                nid: pair.nid,
                image_type: pair.image_type,
            });
        }
        return Err(Error::NotReleaseCandidate {
            id: id.to_owned(),
            name: rc_name,
        });
    };
    if base.trim().is_empty() {
        return Err(Error::InvalidName {
            id: id.to_owned(),
            problem: format!("'{rc_name}' is only the suffix: the published name would be empty"),
        });
    }
    if rc.status != openstack_client::glance::ImageStatus::Active {
        return Err(Error::NotActive {
            id: id.to_owned(),
            name: rc_name,
            status: rc.status.to_string(),
        });
    }
    let new_name = base.to_owned();
    let old_name = request.old_name.clone().unwrap_or_else(|| new_name.clone());
    if old_name.trim().is_empty() {
        return Err(Error::InvalidName {
            id: id.to_owned(),
            problem: "the old name is empty".to_owned(),
        });
    }
    if let Some(pair) = &request.nid_type {
        check_value("nid", &pair.nid)?;
        check_value("type", &pair.image_type)?;
    }

    let filter = ImageFilter::default()
        .name(old_name.clone())
        .visibility(Visibility::Public);
    let mut candidates = glance.list_images(&filter).await.map_err(Error::glance(
        "listing public images named",
        old_name.clone(),
    ))?;
    candidates.retain(|i| {
        i.id != rc.id
            && i.visibility == Visibility::Public
            && i.name.as_deref() == Some(old_name.as_str())
    });
    candidates.sort_by(newest_first);

    let mut warnings = Vec::new();
    let mut skipped = Vec::new();
    let mut obsolete = Vec::new();
    for old in candidates {
        let owner = old.owner.clone();
        let reason = if owner.as_deref() != Some(caller_project_id) {
            Some(format!(
                "owned by project {}, not by the caller's project {caller_project_id}",
                owner.as_deref().unwrap_or("(none)")
            ))
        } else if NidType::of(&old).is_none() {
            Some(format!(
                "it lacks the '{NID_PROPERTY}' or '{TYPE_PROPERTY}' property"
            ))
        } else {
            None
        };
        match (reason, NidType::of(&old)) {
            (None, Some(pair)) => {
                let obsolete_name = format!("{old_name}{OBSOLETE_SUFFIX}");
                check_name(&old.id, &obsolete_name, "the obsolete name")?;
                obsolete.push(ObsoleteStep {
                    id: old.id.clone(),
                    name: old_name.clone(),
                    new_name: obsolete_name,
                    checksum: old.checksum.clone(),
                    nid_type: pair,
                });
            }
            (reason, _) => {
                let reason = reason.unwrap_or_default();
                warn_into(
                    &mut warnings,
                    format!(
                        "public image {} named '{old_name}' is left alone: {reason}",
                        old.id
                    ),
                );
                skipped.push(SkippedImage {
                    id: old.id.clone(),
                    owner,
                    reason,
                });
            }
        }
    }

    let (nid_type, nid_type_source) = match (obsolete.first(), &request.nid_type) {
        (Some(first), requested) => {
            for other in &obsolete[1..] {
                if other.nid_type != first.nid_type {
                    warn_into(
                        &mut warnings,
                        format!(
                            "old images disagree: {} has nid {} type {}, the newest {} has nid {} type {}; using the newest",
                            other.id,
                            other.nid_type.nid,
                            other.nid_type.image_type,
                            first.id,
                            first.nid_type.nid,
                            first.nid_type.image_type
                        ),
                    );
                }
            }
            if let Some(req) = requested {
                if *req != first.nid_type {
                    warn_into(
                        &mut warnings,
                        format!(
                            "nid {} type {} given, but the image being replaced ({}) has nid {} type {}: keeping the old image's values",
                            req.nid,
                            req.image_type,
                            first.id,
                            first.nid_type.nid,
                            first.nid_type.image_type
                        ),
                    );
                }
            }
            (
                first.nid_type.clone(),
                NidTypeSource::OldImage {
                    id: first.id.clone(),
                },
            )
        }
        (None, Some(req)) => (req.clone(), NidTypeSource::Request),
        (None, None) => {
            return Err(Error::MissingNidType {
                id: id.to_owned(),
                name: rc_name,
                old_name,
            });
        }
    };

    let owner_from = match rc.owner.as_deref() {
        Some(o) if o == caller_project_id => None,
        other => Some(other.unwrap_or("(none)").to_owned()),
    };
    Ok(PublishPlan {
        rc_id: rc.id.clone(),
        rc_name,
        new_name,
        old_name,
        nid_type,
        nid_type_source,
        obsolete,
        skipped,
        warnings,
        owner_from,
        owner: caller_project_id.to_owned(),
        rc_image: rc,
    })
}

/// Carry out a plan made by [`plan_publish`]: retire the old images, then
/// publish the candidate. On a failed write, every earlier write is undone
/// and [`Error::RolledBack`] says what was restored.
#[tracing::instrument(skip(glance, plan), fields(rc = %plan.rc_id))]
pub async fn execute_plan(glance: &GlanceClient, plan: PublishPlan) -> Result<PublishReport> {
    let mut done: Vec<&ObsoleteStep> = Vec::new();
    for step in &plan.obsolete {
        let patch = ImagePatch::new()
            .replace("name", step.new_name.as_str())
            .replace("visibility", Visibility::Private.to_string());
        match glance.update_image(&step.id, &patch).await {
            Ok(_) => {
                info!(image = %step.id, from = %step.name, to = %step.new_name, "renamed and made private");
                done.push(step);
            }
            Err(source) => {
                let rollback = roll_back(glance, &done).await;
                return Err(Error::RolledBack {
                    action: format!("renaming to '{}'", step.new_name),
                    image: step.id.clone(),
                    source: Box::new(source),
                    rollback,
                });
            }
        }
    }
    let mut patch = ImagePatch::for_image(&plan.rc_image)
        .name(plan.new_name.as_str())
        .set_property(NID_PROPERTY, plan.nid_type.nid.as_str())
        .set_property(TYPE_PROPERTY, plan.nid_type.image_type.as_str())
        .visibility(Visibility::Public);
    if plan.owner_from.is_some() {
        patch = patch.replace("owner", plan.owner.as_str());
    }
    match glance.update_image(&plan.rc_id, &patch).await {
        Ok(image) => {
            info!(image = %plan.rc_id, name = %plan.new_name, "published");
            Ok(PublishReport {
                dry_run: false,
                plan,
                published: Some(image),
            })
        }
        Err(source) => {
            let rollback = roll_back(glance, &done).await;
            Err(Error::RolledBack {
                action: format!("publishing as '{}'", plan.new_name),
                image: plan.rc_id.clone(),
                source: Box::new(source),
                rollback,
            })
        }
    }
}

/// Give retired images their name and public visibility back, newest write first.
#[tracing::instrument(skip_all, fields(images = done.len()))]
async fn roll_back(glance: &GlanceClient, done: &[&ObsoleteStep]) -> RollbackOutcome {
    let mut outcome = RollbackOutcome::default();
    for step in done.iter().rev() {
        let patch = ImagePatch::new()
            .replace("name", step.name.as_str())
            .replace("visibility", Visibility::Public.to_string());
        match glance.update_image(&step.id, &patch).await {
            Ok(_) => {
                warn!(image = %step.id, name = %step.name, "rolled back: name and public visibility restored");
                outcome
                    .restored
                    .push(format!("{} ({})", step.id, step.name));
            }
            Err(e) => {
                warn!(image = %step.id, name = %step.name, error = %e, "roll-back failed");
                outcome.failed.push(format!(
                    "{} (should be '{}', public): {e}",
                    step.id, step.name
                ));
            }
        }
    }
    outcome
}

/// Publish a release candidate (`publish_image.py`): [`plan_publish`], then,
/// unless `dry_run`, [`execute_plan`]. A dry run sends no write request.
#[tracing::instrument(skip(glance, request), fields(rc = %request.rc_image_id))]
pub async fn publish(
    glance: &GlanceClient,
    caller_project_id: &str,
    request: &PublishRequest,
    dry_run: bool,
) -> Result<PublishReport> {
    let plan = plan_publish(glance, caller_project_id, request).await?;
    if dry_run {
        return Ok(PublishReport {
            dry_run: true,
            plan,
            published: None,
        });
    }
    execute_plan(glance, plan).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_are_uuids_with_or_without_dashes() {
        let dashed = "6f1c1f2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f";
        assert_eq!(parse_image_id(dashed).ok().as_deref(), Some(dashed));
        let bare = dashed.replace('-', "");
        assert_eq!(parse_image_id(&bare).ok(), Some(bare.clone()));
        for bad in [
            "not-a-uuid",
            "6f1c1f2e3b4a-4c5d-8e9f-0a1b2c3d4e5f",
            &bare[1..],
            "",
        ] {
            let e = parse_image_id(bad).err().map(|e| e.to_string());
            assert_eq!(e, Some(format!("'{bad}' is not an image UUID")));
        }
    }

    #[test]
    fn nids_sort_numerically_then_textually() {
        let mut v = vec!["10", "9", "abc", "100", "2", "Abc"];
        v.sort_by(|a, b| compare_nids(a, b));
        assert_eq!(v, ["2", "9", "10", "100", "Abc", "abc"]);
    }

    #[test]
    fn nid_type_values_are_checked() {
        assert!(NidType::new("1", "x").is_ok());
        let e = NidType::new(" ", "x").unwrap_err();
        assert_eq!(e.to_string(), "invalid nid ' ': it is empty");
        assert!(NidType::new("1", "t".repeat(256)).is_err());
    }

    #[test]
    fn report_text_has_the_original_lines() {
        let plan = PublishPlan {
            rc_id: "rc-id".into(),
            rc_name: "foo_rc".into(),
            new_name: "foo".into(),
            old_name: "foo".into(),
            nid_type: NidType::new("7", "base").unwrap(),
            nid_type_source: NidTypeSource::OldImage { id: "old".into() },
            obsolete: vec![ObsoleteStep {
                id: "old".into(),
                name: "foo".into(),
                new_name: "foo_obsolete".into(),
                checksum: Some("abc".into()),
                nid_type: NidType::new("7", "base").unwrap(),
            }],
            skipped: vec![],
            warnings: vec![],
            owner_from: None,
            owner: "p".into(),
            rc_image: Image::default(),
        };
        let report = PublishReport {
            dry_run: false,
            plan,
            published: None,
        };
        assert_eq!(
            report.to_text(),
            "Renamed and made private image old (foo -> foo_obsolete)\n\
             Add this checksum to replace, at /etc/glancesync.conf: abc\n\
             Published image rc-id (foo_rc -> foo, nid 7, type base, public)\n"
        );
    }

    #[test]
    fn rollback_outcome_says_what_happened() {
        let mut o = RollbackOutcome::default();
        assert_eq!(o.to_string(), "nothing had been changed");
        o.restored.push("a (foo)".into());
        assert!(o.is_complete());
        assert!(o
            .to_string()
            .contains("restored name and visibility of a (foo)"));
        o.failed.push("b (should be 'foo', public): boom".into());
        assert!(!o.is_complete());
        assert!(o.to_string().starts_with("ROLLBACK FAILED for b"));
    }
}
