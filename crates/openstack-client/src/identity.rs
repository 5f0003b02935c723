//! The few Keystone v3 calls the tools need besides authentication.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::session::{Req, Session};

/// A Keystone project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Project id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Domain id.
    #[serde(default)]
    pub domain_id: Option<String>,
    /// Enabled flag.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct ProjectList {
    projects: Vec<Project>,
}

#[derive(Deserialize)]
struct ProjectOne {
    project: Project,
}

/// A Keystone domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    /// Domain id.
    pub id: String,
    /// Name (unique across the cloud).
    pub name: String,
    /// Enabled flag.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct DomainList {
    domains: Vec<Domain>,
}

#[derive(Deserialize)]
struct DomainOne {
    domain: Domain,
}

/// A newly created application credential (the secret is only shown once).
#[derive(Debug, Clone, Deserialize)]
pub struct ApplicationCredential {
    /// Credential id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The secret (only present in the creation response).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Project the credential is scoped to.
    #[serde(default)]
    pub project_id: Option<String>,
}

#[derive(Deserialize)]
struct AppCredOne {
    application_credential: ApplicationCredential,
}

/// Client for Keystone v3 (on the session's `auth_url`).
#[derive(Debug, Clone)]
pub struct IdentityClient {
    session: Session,
    base: Url,
}

impl Session {
    /// A Keystone client on the configured `auth_url`.
    pub fn identity(&self) -> IdentityClient {
        IdentityClient {
            session: self.clone(),
            base: self.config().auth_url.clone(),
        }
    }
}

impl IdentityClient {
    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| Error::InvalidInput(format!("auth URL {} cannot be a base", self.base)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// `GET` of `segments` with the query pairs whose value is given,
    /// decoded as `T`.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, Option<&str>)],
    ) -> Result<T> {
        let mut url = self.url(segments)?;
        if query.iter().any(|(_, v)| v.is_some()) {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                if let Some(v) = v {
                    q.append_pair(k, v);
                }
            }
        }
        self.session
            .execute(Req::new("identity", None, Method::GET, url))
            .await?
            .json::<T>()
    }

    /// `POST` of the JSON `body` to `segments`, decoded as `T`.
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &serde_json::Value,
    ) -> Result<T> {
        let req = Req::new("identity", None, Method::POST, self.url(segments)?).json(body)?;
        self.session.execute(req).await?.json::<T>()
    }

    /// `DELETE` of `segments`.
    async fn delete(&self, segments: &[&str]) -> Result<()> {
        let url = self.url(segments)?;
        self.session
            .execute(Req::new("identity", None, Method::DELETE, url))
            .await
            .map(|_| ())
    }

    /// Projects visible to the caller, optionally filtered by exact name.
    pub async fn list_projects(&self, name: Option<&str>) -> Result<Vec<Project>> {
        let list: ProjectList = self.get(&["projects"], &[("name", name)]).await?;
        Ok(list.projects)
    }

    /// Projects named `name` (exact) in the domain with id `domain_id`.
    pub async fn list_projects_in_domain(
        &self,
        name: Option<&str>,
        domain_id: &str,
    ) -> Result<Vec<Project>> {
        let query = [("name", name), ("domain_id", Some(domain_id))];
        let list: ProjectList = self.get(&["projects"], &query).await?;
        Ok(list.projects)
    }

    /// Create a project in the domain with id `domain_id` (admin only).
    pub async fn create_project(&self, name: &str, domain_id: &str) -> Result<Project> {
        let body =
            serde_json::json!({"project": {"name": name, "domain_id": domain_id, "enabled": true}});
        let one: ProjectOne = self.post(&["projects"], &body).await?;
        Ok(one.project)
    }

    /// Delete a project (admin only).
    pub async fn delete_project(&self, id: &str) -> Result<()> {
        self.delete(&["projects", id]).await
    }

    /// Domains visible to the caller, optionally filtered by exact name
    /// (`GET /v3/domains?name=`).
    pub async fn list_domains(&self, name: Option<&str>) -> Result<Vec<Domain>> {
        let list: DomainList = self.get(&["domains"], &[("name", name)]).await?;
        Ok(list.domains)
    }

    /// A domain by id.
    pub async fn get_domain(&self, id: &str) -> Result<Domain> {
        let one: DomainOne = self.get(&["domains", id], &[]).await?;
        Ok(one.domain)
    }

    /// A domain by name (Keystone's names are unique), else by id. The name
    /// is tried first: `default` is both the `Default` domain's id and a
    /// possible name.
    pub async fn find_domain(&self, name_or_id: &str) -> Result<Domain> {
        let mut found = self.list_domains(Some(name_or_id)).await?;
        if let Some(d) = found.pop() {
            return Ok(d);
        }
        match self.get_domain(name_or_id).await {
            Ok(d) => Ok(d),
            Err(e) if e.is_not_found() => Err(Error::NotFound {
                kind: "domain",
                name: name_or_id.to_owned(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Create a domain (admin only).
    pub async fn create_domain(&self, name: &str) -> Result<Domain> {
        let body = serde_json::json!({"domain": {"name": name, "enabled": true}});
        let one: DomainOne = self.post(&["domains"], &body).await?;
        Ok(one.domain)
    }

    /// Delete a domain (admin only): Keystone deletes only disabled
    /// domains, so it is disabled first. Its projects go with it.
    pub async fn delete_domain(&self, id: &str) -> Result<()> {
        let url = self.url(&["domains", id])?;
        let req = Req::new("identity", None, Method::PATCH, url)
            .json(&serde_json::json!({"domain": {"enabled": false}}))?;
        self.session.execute(req).await?;
        self.delete(&["domains", id]).await
    }

    /// A project by id.
    pub async fn get_project(&self, id: &str) -> Result<Project> {
        let one: ProjectOne = self.get(&["projects", id], &[]).await?;
        Ok(one.project)
    }

    /// A project by id, or else by exact name.
    pub async fn find_project(&self, name_or_id: &str) -> Result<Project> {
        match self.get_project(name_or_id).await {
            Ok(p) => return Ok(p),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let mut found = self.list_projects(Some(name_or_id)).await?;
        match found.len() {
            0 => Err(Error::NotFound {
                kind: "project",
                name: name_or_id.to_owned(),
            }),
            1 => Ok(found.remove(0)),
            count => Err(Error::Ambiguous {
                kind: "project",
                name: name_or_id.to_owned(),
                count,
            }),
        }
    }

    /// Create an application credential for `user_id` in the token's project.
    pub async fn create_application_credential(
        &self,
        user_id: &str,
        name: &str,
    ) -> Result<ApplicationCredential> {
        let body = serde_json::json!({"application_credential": {"name": name}});
        let one: AppCredOne = self
            .post(&["users", user_id, "application_credentials"], &body)
            .await?;
        Ok(one.application_credential)
    }

    /// Delete an application credential.
    pub async fn delete_application_credential(&self, user_id: &str, id: &str) -> Result<()> {
        self.delete(&["users", user_id, "application_credentials", id])
            .await
    }

    /// Revoke a token (`DELETE /v3/auth/tokens`).
    pub async fn revoke_token(&self, token: &Secret) -> Result<()> {
        let mut req = Req::new(
            "identity",
            None,
            Method::DELETE,
            self.url(&["auth", "tokens"])?,
        );
        let mut v = reqwest::header::HeaderValue::from_str(token.expose())
            .map_err(|_| Error::InvalidInput("token contains invalid header characters".into()))?;
        v.set_sensitive(true);
        req.headers.insert("x-subject-token", v);
        self.session.execute(req).await.map(|_| ())
    }
}
