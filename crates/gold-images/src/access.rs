//! `grant`, `revoke` and `list-access` on the active **shared** images
//! matching the `-t`/`-n` tags.

use std::io::Write;

use openstack_client::glance::{ImageStatus, Visibility};
use serde::Serialize;
use serde_json::json;

use crate::cloud::Cloud;
use crate::error::{os, Error, Result};
use crate::output::Printer;
use crate::update::grant;

/// Grant or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessAction {
    /// Share and accept.
    Grant,
    /// Remove the membership.
    Revoke,
}

impl AccessAction {
    /// `Grant` / `Revoke`.
    pub fn title(self) -> &'static str {
        match self {
            AccessAction::Grant => "Grant",
            AccessAction::Revoke => "Revoke",
        }
    }
}

/// One image's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessChange {
    /// Image id.
    pub id: String,
    /// Image name.
    pub name: String,
    /// Whether anything is to be done (a grant of an accepted member, or a
    /// revoke of a non-member, is not).
    pub needed: bool,
    /// The member's current status, when it is one.
    pub current: Option<String>,
}

/// The plan of a grant or revoke.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessPlan {
    /// Grant or revoke.
    pub action: AccessAction,
    /// Project as given.
    pub project: String,
    /// Its id.
    pub project_id: String,
    /// The images.
    pub images: Vec<AccessChange>,
}

impl AccessPlan {
    /// One line per image, as a dry run prints them.
    pub fn lines(&self) -> Vec<String> {
        if self.images.is_empty() {
            return vec!["no active shared image matches".into()];
        }
        self.images
            .iter()
            .map(|c| {
                let what = format!(
                    "{} access to image {} for project {}",
                    self.action.title(),
                    c.name,
                    self.project
                );
                if c.needed {
                    what
                } else {
                    format!(
                        "{what}: nothing to do (member status {})",
                        c.current.as_deref().unwrap_or("none")
                    )
                }
            })
            .collect()
    }
}

/// Plan a grant or revoke for `project` (a name, or an id with
/// `project_by_id`) on the active shared images carrying `tags`.
pub async fn plan_access(
    cloud: &Cloud,
    action: AccessAction,
    project: &str,
    project_by_id: bool,
    tags: &[String],
) -> Result<AccessPlan> {
    let project_id = if project_by_id {
        project.to_owned()
    } else {
        cloud
            .project(project)
            .await?
            .ok_or_else(|| Error::Refused(format!("Unknown project {project}")))?
            .id
    };
    let images = cloud
        .images(tags, ImageStatus::Active, Some(Visibility::Shared))
        .await?;
    let mut changes = Vec::new();
    for i in images {
        let current = match cloud.glance.get_member(&i.id, &project_id).await {
            Ok(m) => Some(m.status.to_string()),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                return Err(Error::OpenStack {
                    context: format!("reading member {project_id} of image {}", i.id),
                    source: Box::new(e),
                })
            }
        };
        let needed = match action {
            AccessAction::Grant => current.as_deref() != Some("accepted"),
            AccessAction::Revoke => current.is_some(),
        };
        changes.push(AccessChange {
            name: i.name.clone().unwrap_or_default(),
            id: i.id,
            needed,
            current,
        });
    }
    Ok(AccessPlan {
        action,
        project: project.to_owned(),
        project_id,
        images: changes,
    })
}

/// Apply a grant or revoke plan, printing a message per image.
pub async fn apply_access<W: Write>(
    cloud: &Cloud,
    plan: &AccessPlan,
    p: &mut Printer<W>,
) -> Result<usize> {
    let mut changed = 0;
    for c in &plan.images {
        if c.needed {
            match plan.action {
                AccessAction::Grant => {
                    grant(&cloud.glance, &c.id, &plan.project_id).await?;
                }
                AccessAction::Revoke => cloud
                    .glance
                    .remove_member(&c.id, &plan.project_id)
                    .await
                    .map_err(os(format!(
                    "revoking project {} on image {}",
                    plan.project_id, c.id
                )))?,
            }
            changed += 1;
        }
        p.msg(&format!(
            "{} access to image {} for project {}",
            plan.action.title(),
            c.name,
            plan.project
        ))?;
    }
    Ok(changed)
}

/// `list-access`: the members and their status of each active shared image
/// carrying `tags`; a deleted project shows as `__DELETED__<id>`.
pub async fn list_access<W: Write>(
    cloud: &Cloud,
    tags: &[String],
    p: &mut Printer<W>,
) -> Result<()> {
    let images = cloud
        .images(tags, ImageStatus::Active, Some(Visibility::Shared))
        .await?;
    for i in images {
        let members = cloud
            .glance
            .list_members(&i.id)
            .await
            .map_err(os(format!("listing the members of image {}", i.id)))?;
        p.header(&format!("Members of {}", i.name.as_deref().unwrap_or("")))?;
        for m in members {
            let project = cloud
                .project_name(&m.member_id)
                .await?
                .unwrap_or_else(|| format!("__DELETED__{}", m.member_id));
            p.record(
                &[
                    ("project", json!(project)),
                    ("status", json!(m.status.to_string())),
                ],
                true,
            )?;
        }
    }
    Ok(())
}
