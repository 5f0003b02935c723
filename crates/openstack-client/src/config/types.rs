//! The value types of a cloud configuration: interface, domain and user
//! references, credentials, scope and HTTP behaviour.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Which endpoint interface to use from the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interface {
    /// `public` (the default).
    #[default]
    Public,
    /// `internal`.
    Internal,
    /// `admin`.
    Admin,
}

impl Interface {
    /// The catalog spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Interface {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().trim_end_matches("url") {
            "public" => Ok(Interface::Public),
            "internal" => Ok(Interface::Internal),
            "admin" => Ok(Interface::Admin),
            _ => Err(Error::Config {
                path: None,
                message: format!("unknown interface '{s}' (expected public, internal or admin)"),
            }),
        }
    }
}

/// A Keystone domain reference (by id or by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainRef {
    /// Domain id.
    pub id: Option<String>,
    /// Domain name.
    pub name: Option<String>,
}

impl DomainRef {
    pub(super) fn is_set(&self) -> bool {
        self.id.is_some() || self.name.is_some()
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        match (&self.id, &self.name) {
            (Some(id), _) => serde_json::json!({ "id": id }),
            (None, Some(name)) => serde_json::json!({ "name": name }),
            (None, None) => serde_json::json!({ "id": "default" }),
        }
    }
}

/// A user reference for password and application-credential auth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRef {
    /// User id.
    pub id: Option<String>,
    /// User name (needs a domain).
    pub name: Option<String>,
    /// User's domain (defaults to the `default` domain).
    pub domain: DomainRef,
}

impl UserRef {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match (&self.id, &self.name) {
            (Some(id), _) => serde_json::json!({ "id": id }),
            (None, Some(name)) => {
                serde_json::json!({ "name": name, "domain": self.domain.to_json() })
            }
            (None, None) => serde_json::json!({}),
        }
    }
}

/// How to authenticate against Keystone v3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `password` method.
    Password {
        /// The user.
        user: UserRef,
        /// The password.
        password: Secret,
    },
    /// `token` method: exchange an existing token for a (scoped) one.
    Token {
        /// The existing token.
        token: Secret,
    },
    /// `application_credential` method (the credential carries its own scope).
    ApplicationCredential {
        /// Credential id.
        id: Option<String>,
        /// Credential name (needs `user`).
        name: Option<String>,
        /// Owner of a credential given by name.
        user: Option<UserRef>,
        /// The secret.
        secret: Secret,
    },
}

/// What the token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// A project, by id or by name plus domain.
    Project {
        /// Project id.
        id: Option<String>,
        /// Project name.
        name: Option<String>,
        /// Project domain (defaults to `default`).
        domain: DomainRef,
    },
    /// A domain.
    Domain(DomainRef),
    /// The whole deployment (`system_scope: all`).
    System,
    /// No explicit scope (application credentials, or unscoped tokens).
    #[default]
    Unscoped,
}

/// HTTP behaviour knobs; the defaults suit both API calls and multi-GB transfers.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout: the longest time without any progress (bytes sent or
    /// received) on a request. There is never a total deadline on a
    /// streaming body.
    pub idle_timeout: Duration,
    /// Deadline for a whole small (non-streaming) API request, body included
    /// (`api_timeout` in clouds.yaml).
    pub api_timeout: Duration,
    /// Retries for idempotent requests on 429/502/503/504 and connection errors.
    pub max_retries: u32,
    /// First backoff delay (doubled per attempt, with jitter).
    pub retry_base_delay: Duration,
    /// Largest backoff delay, also the cap for `Retry-After`.
    pub retry_max_delay: Duration,
    /// Refresh the token when it expires within this margin.
    pub token_refresh_margin: Duration,
    /// Before an upload or download, refresh the token if it expires sooner than this.
    pub transfer_token_validity: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            api_timeout: Duration::from_secs(180),
            max_retries: 4,
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            token_refresh_margin: Duration::from_secs(120),
            transfer_token_validity: Duration::from_secs(30 * 60),
            user_agent: concat!("openstack-client-rs/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}
