//! The clients a command needs and the look-ups shared by the commands:
//! images by tag, projects by name.

use openstack_client::glance::{GlanceClient, Image, ImageFilter, ImageStatus, Visibility};
use openstack_client::identity::{Domain, IdentityClient, Project};
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
    /// The domain project names are looked up in (`--domain`).
    pub domain: Option<DomainChoice>,
}

/// The domain project names are looked up in (himlarcli's `--domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainChoice {
    /// Domain name (or id).
    pub name: String,
    /// Given by the user: a missing domain, or a project name found only
    /// in other domains, is an error. Otherwise (the default domain) the
    /// look-up falls back to the project of that name in any domain.
    pub strict: bool,
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

    /// Set the domain project names are looked up in.
    pub fn with_domain(mut self, domain: Option<DomainChoice>) -> Self {
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

    /// A project by id or name: `None` when there is none.
    ///
    /// By name, as himlarcli's `--domain` (a domain **name**, or an id):
    /// the project of that name in the domain (found with `GET
    /// /v3/domains?name=`). A domain that exists binds: a name found only
    /// in other domains is an error naming them. Only when the domain is
    /// the default (not [`DomainChoice::strict`]) and does not exist at all
    /// is the one project of that name in any domain used (several are an
    /// error listing their domains); a strict domain that does not exist
    /// is an error.
    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        match self.identity.get_project(name).await {
            Ok(p) => return Ok(Some(p)),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(Error::OpenStack {
                    context: format!("looking up project {name}"),
                    source: Box::new(e),
                })
            }
        }
        let all = self
            .identity
            .list_projects(Some(name))
            .await
            .map_err(os(format!("listing projects named {name}")))?;
        if let Some(choice) = &self.domain {
            match self.find_domain(&choice.name).await? {
                Some(domain) => {
                    let inside: Vec<&Project> = all
                        .iter()
                        .filter(|p| p.domain_id.as_deref() == Some(domain.id.as_str()))
                        .collect();
                    if let [one] = inside.as_slice() {
                        return Ok(Some((*one).clone()));
                    }
                    // An existing domain binds, given or default (himlarcli
                    // answers "Unknown project" there): a grant must never
                    // land on a same-named project of another domain.
                    if !all.is_empty() {
                        return Err(Error::Refused(format!(
                            "no project named {name} in domain {} (found in domains {})",
                            choice.name,
                            self.domain_names(&all).await
                        )));
                    }
                }
                None if choice.strict => {
                    return Err(Error::Refused(format!(
                        "--domain {}: no such Keystone domain",
                        choice.name
                    )))
                }
                None => {}
            }
        }
        match all.len() {
            0 => Ok(None),
            1 => Ok(all.into_iter().next()),
            _ => Err(Error::Refused(format!(
                "several projects are named {name} (domains {}); give --domain",
                self.domain_names(&all).await
            ))),
        }
    }

    /// The domain named (or with id) `name`; `None` when there is none.
    pub async fn find_domain(&self, name: &str) -> Result<Option<Domain>> {
        match self.identity.find_domain(name).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(Error::OpenStack {
                context: format!("looking up domain {name}"),
                source: Box::new(e),
            }),
        }
    }

    /// `Default, Other` for the projects' domains (ids when a name cannot
    /// be read).
    async fn domain_names(&self, projects: &[Project]) -> String {
        let mut names = Vec::new();
        for p in projects {
            let id = p.domain_id.clone().unwrap_or_default();
            let name = match self.identity.get_domain(&id).await {
                Ok(d) => d.name,
                Err(_) => id,
            };
            names.push(name);
        }
        names.join(", ")
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
