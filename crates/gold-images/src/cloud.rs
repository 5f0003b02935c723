//! The clients a command needs and the look-ups shared by the commands:
//! images by tag, projects by name.

use openstack_client::glance::{GlanceClient, Image, ImageFilter, ImageStatus, Visibility};
use openstack_client::identity::{IdentityClient, Project};
use openstack_client::nova::{ComputeClient, ServerFilter};
use openstack_client::Session;

use crate::error::{os, Error, Result};

/// The region's clients. Nova is only connected when a command needs it
/// (usage, purge), so the Glance-only commands work on clouds without it.
#[derive(Debug, Clone)]
pub struct Cloud {
    session: Session,
    region: Option<String>,
    /// Glance of the region.
    pub glance: GlanceClient,
    /// Keystone.
    pub identity: IdentityClient,
    /// The domain project names are looked up in first (`--domain`).
    pub domain: Option<String>,
}

impl Cloud {
    /// Connect to `region` (the session's default when `None`).
    pub async fn connect(session: Session, region: Option<&str>) -> Result<Self> {
        let glance = session
            .image(region)
            .await
            .map_err(os("connecting to Glance"))?;
        let identity = session.identity();
        Ok(Cloud {
            region: region.map(str::to_owned),
            glance,
            identity,
            session,
            domain: None,
        })
    }

    /// Set the domain project names are preferred in.
    pub fn with_domain(mut self, domain: Option<String>) -> Self {
        self.domain = domain;
        self
    }

    /// A Nova client for the same region.
    pub async fn compute(&self) -> Result<ComputeClient> {
        self.session
            .compute(self.region.as_deref())
            .await
            .map_err(os("connecting to Nova"))
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Images with all `tags`, `status` and (when given) `visibility`,
    /// oldest first.
    pub async fn images(
        &self,
        tags: &[String],
        status: ImageStatus,
        visibility: Option<Visibility>,
    ) -> Result<Vec<Image>> {
        let mut filter = ImageFilter::default().status(status.clone());
        filter.tags = tags.to_vec();
        filter.visibility = visibility;
        let mut images = self.glance.list_images(&filter).await.map_err(os(format!(
            "listing {status} images tagged [{}]",
            tags.join(", ")
        )))?;
        images.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(images)
    }

    /// The active image tagged `[type, short]` (the newest, with a warning,
    /// when several are: there should be exactly one).
    pub async fn active_image(&self, image_type: &str, short: &str) -> Result<Option<Image>> {
        let mut images = self
            .images(
                &[image_type.to_owned(), short.to_owned()],
                ImageStatus::Active,
                None,
            )
            .await?;
        if images.len() > 1 {
            tracing::warn!(
                image = short,
                count = images.len(),
                ids = ?images.iter().map(|i| &i.id).collect::<Vec<_>>(),
                "several active images carry the tags [{image_type}, {short}]; the newest is the current one"
            );
        }
        Ok(images.pop())
    }

    /// A project by name (or id): `None` when there is none. Several
    /// projects of that name: the one in `--domain` (by id or by name,
    /// case-insensitive), else an error listing them.
    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        match self.identity.find_project(name).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(openstack_client::Error::Ambiguous { .. }) => {
                let all = self
                    .identity
                    .list_projects(Some(name))
                    .await
                    .map_err(os(format!("listing projects named {name}")))?;
                let in_domain: Vec<&Project> = all
                    .iter()
                    .filter(|p| {
                        self.domain.as_deref().is_some_and(|d| {
                            p.domain_id
                                .as_deref()
                                .is_some_and(|id| id.eq_ignore_ascii_case(d))
                                || p.extra
                                    .get("domain_name")
                                    .and_then(|v| v.as_str())
                                    .is_some_and(|n| n.eq_ignore_ascii_case(d))
                        })
                    })
                    .collect();
                match in_domain.as_slice() {
                    [one] => Ok(Some((*one).clone())),
                    _ => Err(Error::Refused(format!(
                        "several projects are named {name} (domains {}); give --domain",
                        all.iter()
                            .map(|p| p.domain_id.clone().unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                }
            }
            Err(e) => Err(Error::OpenStack {
                context: format!("looking up project {name}"),
                source: Box::new(e),
            }),
        }
    }

    /// A project's name by id; `None` when it no longer exists.
    pub async fn project_name(&self, id: &str) -> Result<Option<String>> {
        match self.identity.get_project(id).await {
            Ok(p) => Ok(Some(p.name)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(Error::OpenStack {
                context: format!("looking up project {id}"),
                source: Box::new(e),
            }),
        }
    }
}

/// Ids of the instances (of every project) booted from image `id`.
pub async fn instances_of(nova: &ComputeClient, id: &str) -> Result<Vec<String>> {
    let filter = ServerFilter {
        image: Some(id.to_owned()),
        all_tenants: true,
        ..Default::default()
    };
    Ok(nova
        .list_servers(&filter)
        .await
        .map_err(os(format!("listing the instances of image {id}")))?
        .into_iter()
        .map(|s| s.id)
        .collect())
}

/// The tags of `--type` (unless `all`) and `-n`, as himlarcli's `get_tags`.
pub fn filter_tags(image_type: &str, name: Option<&str>) -> Vec<String> {
    let mut tags = Vec::new();
    if image_type != "all" {
        tags.push(image_type.to_owned());
    }
    if let Some(n) = name {
        tags.push(n.to_owned());
    }
    tags
}

/// `[a, b]` or `all tags`, as in the original's prompts.
pub fn tag_text(tags: &[String]) -> String {
    if tags.is_empty() {
        "all tags".into()
    } else {
        format!("[{}]", tags.join(", "))
    }
}
