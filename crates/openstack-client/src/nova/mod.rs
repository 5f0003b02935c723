//! Nova (compute) client: flavors, servers, snapshots, keypairs, console log,
//! with microversion negotiation. The resource and request types live in
//! `types` and are re-exported here.

mod types;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

pub use types::{
    CreatedServer, Flavor, Keypair, Microversion, NetworkSpec, Networks, Server, ServerAddress,
    ServerCreate, ServerFault, ServerFilter, ServerStatus, CREATE_IMAGE_BODY_MICROVERSION,
    MAX_MICROVERSION,
};

use crate::error::{Error, Result};
use crate::paging::{by_id_or_name, get_all, join};
use crate::session::{Req, Session};
use crate::wait::{poll, Poll};

#[derive(Deserialize)]
struct VersionDoc {
    version: VersionInfo,
}
#[derive(Deserialize)]
struct VersionInfo {
    #[serde(default)]
    version: String,
    #[serde(default)]
    min_version: String,
}
/// Client for one region's Nova API. Get one with
/// [`Session::compute`]; the microversion is negotiated once when it is made.
#[derive(Debug, Clone)]
pub struct ComputeClient {
    session: Session,
    region: Option<String>,
    base: Url,
    microversion: Option<Microversion>,
    server_range: Option<(Microversion, Microversion)>,
}

impl Session {
    /// A Nova client for `region` (default region when `None`), with the
    /// highest microversion both sides support (up to [`MAX_MICROVERSION`]).
    pub async fn compute(&self, region: Option<&str>) -> Result<ComputeClient> {
        let region = region.or(self.config().default_region()).map(str::to_owned);
        let endpoint = self.endpoint("compute", region.as_deref()).await?;
        ComputeClient::negotiate(self.clone(), region, endpoint).await
    }
}

impl ComputeClient {
    async fn negotiate(
        session: Session,
        region: Option<String>,
        endpoint: Url,
    ) -> Result<ComputeClient> {
        let mut base = endpoint.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        // The catalog URL may end in the project id (`/v2.1/<project>`): the
        // version document then lives one level up.
        let doc = match Self::version_doc(&session, &region, base.clone()).await {
            Ok(doc) => doc,
            Err(first) => {
                let mut parent = base.clone();
                let trimmed = parent.path().trim_end_matches('/').to_owned();
                match trimmed.rsplit_once('/') {
                    Some((up, _)) if !up.is_empty() => {
                        parent.set_path(&format!("{up}/"));
                        Self::version_doc(&session, &region, parent)
                            .await
                            .map_err(|_| first)?
                    }
                    _ => return Err(first),
                }
            }
        };
        let range = match (
            Microversion::parse(&doc.version.min_version),
            Microversion::parse(&doc.version.version),
        ) {
            (Some(min), Some(max)) => Some((min, max)),
            _ => None,
        };
        let microversion = range.map(|(_, max)| max.min(MAX_MICROVERSION));
        tracing::debug!(?range, ?microversion, "negotiated the compute microversion");
        Ok(ComputeClient {
            session,
            region,
            base,
            microversion,
            server_range: range,
        })
    }

    async fn version_doc(
        session: &Session,
        region: &Option<String>,
        url: Url,
    ) -> Result<VersionDoc> {
        let resp = session
            .execute(Req::new("compute", region.clone(), Method::GET, url))
            .await?;
        resp.json()
    }

    /// The microversion used for requests (`None`: the server has none).
    pub fn microversion(&self) -> Option<Microversion> {
        self.microversion
    }

    /// Use a specific microversion (must be within the server's range).
    pub fn with_microversion(mut self, v: Microversion) -> Result<Self> {
        match self.server_range {
            Some((min, max)) if v >= min && v <= max => {
                self.microversion = Some(v);
                Ok(self)
            }
            Some((min, max)) => Err(Error::InvalidInput(format!(
                "compute microversion {v} is outside the server's range {min}..{max}"
            ))),
            None => Err(Error::InvalidInput(format!(
                "the compute endpoint supports no microversions (asked for {v})"
            ))),
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = self.microversion {
            if let Ok(val) = HeaderValue::from_str(&format!("compute {v}")) {
                h.insert("openstack-api-version", val);
            }
            if let Ok(val) = HeaderValue::from_str(&v.to_string()) {
                h.insert("x-openstack-nova-api-version", val);
            }
        }
        h
    }

    fn req(&self, method: Method, segments: &[&str]) -> Result<Req> {
        let mut r = Req::new(
            "compute",
            self.region.clone(),
            method,
            join(&self.base, segments)?,
        );
        r.headers = self.headers();
        Ok(r)
    }

    /// Every item under `key` of `first` and the pages after it.
    async fn list<T: serde::de::DeserializeOwned>(&self, first: Url, key: &str) -> Result<Vec<T>> {
        get_all(
            &self.session,
            "compute",
            self.region.clone(),
            &self.headers(),
            first,
            key,
        )
        .await
    }

    async fn action(&self, id: &str, body: Value) -> Result<crate::session::RawResponse> {
        let req = self
            .req(Method::POST, &["servers", id, "action"])?
            .json(&body)?;
        self.session.execute(req).await
    }

    /// All flavors (with details).
    pub async fn list_flavors(&self) -> Result<Vec<Flavor>> {
        self.list(join(&self.base, &["flavors", "detail"])?, "flavors")
            .await
    }

    /// A flavor by id.
    pub async fn get_flavor(&self, id: &str) -> Result<Flavor> {
        self.session
            .execute(self.req(Method::GET, &["flavors", id])?)
            .await?
            .json_in("flavor")
    }

    /// A flavor by id, or else by exact name.
    pub async fn find_flavor(&self, name_or_id: &str) -> Result<Flavor> {
        by_id_or_name(
            "flavor",
            name_or_id,
            self.get_flavor(name_or_id).await,
            Error::is_not_found,
            || async {
                let all = self.list_flavors().await?;
                Ok(all.into_iter().filter(|f| f.name == name_or_id).collect())
            },
        )
        .await
    }

    /// Create a server (returns as soon as Nova accepted it; see
    /// [`ComputeClient::wait_for_server_status`]).
    pub async fn create_server(&self, request: &ServerCreate) -> Result<CreatedServer> {
        let req = self
            .req(Method::POST, &["servers"])?
            .json(&request.body())?;
        self.session.execute(req).await?.json_in("server")
    }

    /// A server by id.
    pub async fn get_server(&self, id: &str) -> Result<Server> {
        self.session
            .execute(self.req(Method::GET, &["servers", id])?)
            .await?
            .json_in("server")
    }

    /// Servers (with details), following pagination.
    pub async fn list_servers(&self, filter: &ServerFilter) -> Result<Vec<Server>> {
        let mut url = join(&self.base, &["servers", "detail"])?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(n) = &filter.name {
                q.append_pair("name", n);
            }
            if let Some(s) = &filter.status {
                q.append_pair("status", s.as_str());
            }
            if let Some(i) = &filter.image {
                q.append_pair("image", i);
            }
            if filter.all_tenants {
                q.append_pair("all_tenants", "1");
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.list(url, "servers").await
    }

    /// Delete a server (returns before it is gone; see
    /// [`ComputeClient::wait_for_server_deleted`]).
    pub async fn delete_server(&self, id: &str) -> Result<()> {
        self.session
            .execute(self.req(Method::DELETE, &["servers", id])?)
            .await
            .map(|_| ())
    }

    /// Stop (power off) a server.
    pub async fn stop_server(&self, id: &str) -> Result<()> {
        self.action(id, serde_json::json!({ "os-stop": null }))
            .await
            .map(|_| ())
    }

    /// Start a stopped server.
    pub async fn start_server(&self, id: &str) -> Result<()> {
        self.action(id, serde_json::json!({ "os-start": null }))
            .await
            .map(|_| ())
    }

    /// Snapshot a server into a new image; returns the image id (from the
    /// body with microversion >= 2.45, else from the `Location` header).
    pub async fn create_image(
        &self,
        id: &str,
        name: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String> {
        let mut inner = serde_json::json!({ "name": name });
        if !metadata.is_empty() {
            inner["metadata"] = serde_json::to_value(metadata).unwrap_or(Value::Null);
        }
        let resp = self
            .action(id, serde_json::json!({ "createImage": inner }))
            .await?;
        let from_body = self
            .microversion
            .filter(|v| *v >= CREATE_IMAGE_BODY_MICROVERSION)
            .and_then(|_| resp.json::<Value>().ok())
            .and_then(|v| v.get("image_id").and_then(Value::as_str).map(str::to_owned));
        if let Some(image_id) = from_body {
            return Ok(image_id);
        }
        let from_location = resp
            .header("location")
            .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        from_location.ok_or_else(|| Error::Api {
            status: resp.status,
            method: Method::POST,
            url: resp.url.to_string(),
            request_id: crate::session::request_id(&resp.headers),
            message: "createImage answer has neither image_id in the body nor a Location header"
                .into(),
        })
    }

    /// The last `lines` lines of the console log (all when `None`).
    pub async fn console_log(&self, id: &str, lines: Option<u32>) -> Result<String> {
        let body = match lines {
            Some(n) => serde_json::json!({ "os-getConsoleOutput": { "length": n } }),
            None => serde_json::json!({ "os-getConsoleOutput": {} }),
        };
        let mut req = self
            .req(Method::POST, &["servers", id, "action"])?
            .json(&body)?;
        req.idempotent = true;
        let v: Value = self.session.execute(req).await?.json()?;
        Ok(v.get("output")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// Import a public key as a key pair.
    pub async fn create_keypair(&self, name: &str, public_key: &str) -> Result<Keypair> {
        let body = serde_json::json!({ "keypair": { "name": name, "public_key": public_key } });
        let req = self.req(Method::POST, &["os-keypairs"])?.json(&body)?;
        self.session.execute(req).await?.json_in("keypair")
    }

    /// A key pair by name.
    pub async fn get_keypair(&self, name: &str) -> Result<Keypair> {
        self.session
            .execute(self.req(Method::GET, &["os-keypairs", name])?)
            .await?
            .json_in("keypair")
    }

    /// Delete a key pair.
    pub async fn delete_keypair(&self, name: &str) -> Result<()> {
        self.session
            .execute(self.req(Method::DELETE, &["os-keypairs", name])?)
            .await
            .map(|_| ())
    }

    /// Poll until the server has `wanted` status; fails on `ERROR` (with the
    /// fault message) or after `timeout`.
    pub async fn wait_for_server_status(
        &self,
        id: &str,
        wanted: ServerStatus,
        timeout: Duration,
    ) -> Result<Server> {
        let wanted_text = wanted.to_string();
        poll("server", id, &wanted_text, timeout, SERVER_POLL, || async {
            let server = self.get_server(id).await?;
            if server.status == wanted && server.task_state.is_none() {
                return Ok(Poll::Done(server));
            }
            if server.status == ServerStatus::Error && wanted != ServerStatus::Error {
                return Err(server_failed(id, server));
            }
            Ok(Poll::Waiting(server.status.to_string()))
        })
        .await
    }

    /// Poll until the server is gone (404 or `DELETED`).
    pub async fn wait_for_server_deleted(&self, id: &str, timeout: Duration) -> Result<()> {
        poll("server", id, "deleted", timeout, SERVER_POLL, || async {
            match self.get_server(id).await {
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(Poll::Done(())),
                Err(e) => Err(e),
                Ok(s) if s.status == ServerStatus::Deleted => Ok(Poll::Done(())),
                Ok(s) if s.status == ServerStatus::Error => Err(server_failed(id, s)),
                Ok(s) => Ok(Poll::Waiting(s.status.to_string())),
            }
        })
        .await
    }
}

/// First pause between two looks at a server that is changing state.
const SERVER_POLL: Duration = Duration::from_millis(500);

/// The error for a server that went to `ERROR` while we waited.
fn server_failed(id: &str, server: Server) -> Error {
    Error::ResourceFailed {
        kind: "server",
        id: id.to_owned(),
        status: server.status.to_string(),
        fault: server.fault.map(|f| f.message),
    }
}
