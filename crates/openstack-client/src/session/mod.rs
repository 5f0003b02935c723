//! The authenticated session: token, catalog and the HTTP machinery
//! (timeouts, retries, re-authentication, tracing) every service client uses.
//!
//! - [`auth`]: the token and what comes with it (catalog, expiry,
//!   single-flight re-authentication, Keystone's auth body).
//! - [`transport`]: sending requests: retries with backoff and jitter,
//!   `Retry-After`, timeouts, one re-authentication on 401, streaming
//!   uploads and downloads, a `tracing` span per request.
//! - [`request`]: the request and response values both work with.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use url::Url;

use crate::config::CloudConfig;
use crate::error::{Error, Result};

mod auth;
mod request;
mod transport;

pub(crate) use auth::AuthState;
pub use auth::TokenInfo;
pub(crate) use request::{request_id, Body, RawResponse, Req};
pub(crate) use transport::Framing;

struct Inner {
    config: CloudConfig,
    http: reqwest::Client,
    state: RwLock<Option<Arc<AuthState>>>,
    auth_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    auth_count: AtomicU64,
}

/// An authenticated connection to one cloud: configuration, HTTP client,
/// token and service catalog.
///
/// Cheap to clone (an `Arc`); share one per cloud. Tokens are refreshed
/// before they expire and re-obtained once (single flight: concurrent
/// requests that hit a 401 share one re-authentication) when a service
/// rejects them.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cloud", &self.inner.config.name)
            .field("auth_url", &self.inner.config.auth_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Create a session without contacting Keystone (authentication happens on
    /// first use).
    pub fn new(config: CloudConfig) -> Result<Session> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.http.connect_timeout)
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(config.http.user_agent.clone());
        if config.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &config.cacert {
            let pem = std::fs::read(path).map_err(|e| Error::Config {
                path: Some(path.clone()),
                message: format!("cannot read CA bundle: {e}"),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Config {
                path: Some(path.clone()),
                message: format!("invalid PEM CA bundle: {e}"),
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| Error::Config {
            path: None,
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Session {
            inner: Arc::new(Inner {
                config,
                http,
                state: RwLock::new(None),
                auth_lock: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
                auth_count: AtomicU64::new(0),
            }),
        })
    }

    /// Create a session and authenticate right away.
    pub async fn connect(config: CloudConfig) -> Result<Session> {
        let session = Session::new(config)?;
        session.authenticate().await?;
        Ok(session)
    }

    /// The configuration this session was built from.
    pub fn config(&self) -> &CloudConfig {
        &self.inner.config
    }

    /// Endpoint URL of `service_type` in `region` (the configured default
    /// region when `None`) on the configured interface.
    pub async fn endpoint(&self, service_type: &str, region: Option<&str>) -> Result<Url> {
        if let Some(url) = self.inner.config.endpoint_overrides.get(service_type) {
            return Ok(url.clone());
        }
        let region = region.or(self.inner.config.default_region());
        self.auth_state()
            .await?
            .catalog
            .endpoint(service_type, region, self.inner.config.interface)
    }

    /// Regions of this cloud: the configured `regions:` list, or else every
    /// region the catalog mentions.
    pub async fn regions(&self) -> Result<Vec<String>> {
        if !self.inner.config.regions.is_empty() {
            return Ok(self.inner.config.regions.clone());
        }
        Ok(self
            .auth_state()
            .await?
            .catalog
            .regions()
            .into_iter()
            .collect())
    }

    pub(crate) fn http_options(&self) -> &crate::config::HttpOptions {
        &self.inner.config.http
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_ca_bundle_is_a_config_error() {
        let mut cfg = CloudConfig::password("https://127.0.0.1:1/v3", "u", "p", "proj").unwrap();
        cfg.cacert = Some(std::path::PathBuf::from("/nonexistent/ca.pem"));
        let err = Session::new(cfg).unwrap_err().to_string();
        assert!(
            err.starts_with("/nonexistent/ca.pem: cannot read CA bundle"),
            "{err}"
        );
    }
}
