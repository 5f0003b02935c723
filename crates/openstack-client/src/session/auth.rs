//! The token and what comes with it: the catalog, the expiry, proactive
//! refresh and single-flight re-authentication, and Keystone's auth body.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::Deserialize;

use super::request::{Req, X_SUBJECT_TOKEN};
use super::Session;
use crate::catalog::Catalog;
use crate::config::{Credentials, Scope};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Public facts about the current token (never the token itself).
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// When the token expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When Keystone issued the token.
    pub issued_at: Option<DateTime<Utc>>,
    /// Project id of a project-scoped token.
    pub project_id: Option<String>,
    /// Project name of a project-scoped token.
    pub project_name: Option<String>,
    /// User id.
    pub user_id: Option<String>,
    /// User name.
    pub user_name: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct AuthState {
    pub token: Secret,
    pub info: TokenInfo,
    pub catalog: Catalog,
    pub generation: u64,
    pub obtained: Instant,
}

#[derive(Debug, Deserialize)]
struct TokenEnvelope {
    token: TokenBody,
}

#[derive(Debug, Deserialize)]
struct Named {
    id: Option<String>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenBody {
    expires_at: Option<String>,
    #[serde(default)]
    issued_at: Option<String>,
    #[serde(default)]
    catalog: Option<Catalog>,
    project: Option<Named>,
    user: Option<Named>,
    #[serde(default)]
    roles: Vec<Named>,
}

impl Session {
    /// Obtain a new token now (replacing the current one).
    pub async fn authenticate(&self) -> Result<()> {
        let stale = self.current().map(|s| s.generation);
        self.refresh(stale, Duration::ZERO, true).await.map(|_| ())
    }

    /// A valid token (refreshed first if it is about to expire). Hand it to
    /// other programs through their environment, never their command line.
    pub async fn token(&self) -> Result<Secret> {
        Ok(self.auth_state().await?.token.clone())
    }

    /// Facts about the current token (expiry, project, user, roles).
    pub async fn token_info(&self) -> Result<TokenInfo> {
        Ok(self.auth_state().await?.info.clone())
    }

    /// The service catalog of the current token.
    pub async fn catalog(&self) -> Result<Catalog> {
        Ok(self.auth_state().await?.catalog.clone())
    }

    /// How many times this session has obtained a token from Keystone.
    pub fn auth_count(&self) -> u64 {
        self.inner.auth_count.load(Ordering::Relaxed)
    }

    /// Make sure the token stays valid for at least `validity` (refreshing it
    /// now if not). Called before long transfers.
    pub async fn ensure_token_valid_for(&self, validity: Duration) -> Result<()> {
        let state = self.auth_state().await?;
        // A token issued less than a minute ago is as fresh as Keystone
        // makes them (its lifetime may be shorter than `validity`): keep it.
        let age = match state.info.issued_at {
            Some(t) => (Utc::now() - t).to_std().unwrap_or_default(),
            None => state.obtained.elapsed(),
        };
        if expires_within(&state, validity) && age > Duration::from_secs(60) {
            self.refresh(Some(state.generation), validity, false)
                .await?;
        }
        Ok(())
    }

    /// Replace the current token value, keeping the catalog: for tests that
    /// need a revoked or garbage token to exercise re-authentication. Only
    /// in the crate's own tests and with the `test-util` feature (which the
    /// crate's integration tests turn on); never part of the normal API.
    #[cfg(any(test, feature = "test-util"))]
    #[doc(hidden)]
    pub async fn replace_token_for_test(&self, token: Secret) -> Result<()> {
        let state = self.auth_state().await?;
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let new = AuthState {
            token,
            info: state.info.clone(),
            catalog: state.catalog.clone(),
            generation,
            obtained: Instant::now(),
        };
        *self.inner.state.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(new));
        Ok(())
    }

    fn current(&self) -> Option<Arc<AuthState>> {
        self.inner
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) async fn auth_state(&self) -> Result<Arc<AuthState>> {
        let margin = self.inner.config.http.token_refresh_margin;
        match self.current() {
            Some(s) if !expires_within(&s, refresh_margin(&s, margin)) => Ok(s),
            other => {
                let need = other.as_ref().map_or(margin, |s| refresh_margin(s, margin));
                self.refresh(other.map(|s| s.generation), need, false).await
            }
        }
    }

    /// Single-flight refresh: only one task talks to Keystone; the others wait
    /// and reuse its token. `stale` is the generation the caller found bad.
    pub(super) async fn refresh(
        &self,
        stale: Option<u64>,
        need: Duration,
        force: bool,
    ) -> Result<Arc<AuthState>> {
        let _guard = self.inner.auth_lock.lock().await;
        if let Some(cur) = self.current() {
            let fresh_enough = !expires_within(&cur, need);
            let replaced_meanwhile = stale.is_some_and(|g| g != cur.generation);
            if (force && replaced_meanwhile) || (!force && fresh_enough) {
                return Ok(cur);
            }
        }
        let new = Arc::new(self.obtain_token().await?);
        *self.inner.state.write().unwrap_or_else(|p| p.into_inner()) = Some(new.clone());
        Ok(new)
    }

    async fn obtain_token(&self) -> Result<AuthState> {
        let cfg = &self.inner.config;
        let identity = match &cfg.credentials {
            Credentials::Password { user, password } => {
                let mut u = user.to_json();
                if let Some(obj) = u.as_object_mut() {
                    obj.insert(
                        "password".into(),
                        serde_json::Value::String(password.expose().to_owned()),
                    );
                }
                serde_json::json!({"methods": ["password"], "password": {"user": u}})
            }
            Credentials::Token { token } => {
                serde_json::json!({"methods": ["token"], "token": {"id": token.expose()}})
            }
            Credentials::ApplicationCredential {
                id,
                name,
                user,
                secret,
            } => {
                let mut ac = serde_json::Map::new();
                if let Some(id) = id {
                    ac.insert("id".into(), id.clone().into());
                } else if let Some(name) = name {
                    ac.insert("name".into(), name.clone().into());
                    if let Some(user) = user {
                        ac.insert("user".into(), user.to_json());
                    }
                }
                ac.insert("secret".into(), secret.expose().into());
                serde_json::json!({"methods": ["application_credential"], "application_credential": ac})
            }
        };
        let mut auth = serde_json::json!({ "identity": identity });
        let scope = match &cfg.scope {
            Scope::Project { id: Some(id), .. } => Some(serde_json::json!({"project": {"id": id}})),
            Scope::Project {
                name: Some(name),
                domain,
                ..
            } => Some(serde_json::json!({"project": {"name": name, "domain": domain.to_json()}})),
            Scope::Project { .. } | Scope::Unscoped => None,
            Scope::Domain(d) => Some(serde_json::json!({"domain": d.to_json()})),
            Scope::System => Some(serde_json::json!({"system": {"all": true}})),
        };
        if let Some(scope) = scope {
            if let Some(obj) = auth.as_object_mut() {
                obj.insert("scope".into(), scope);
            }
        }
        let url = cfg
            .auth_url
            .join("auth/tokens")
            .map_err(|e| Error::InvalidInput(format!("auth URL: {e}")))?;
        let mut req = Req::new("identity", None, Method::POST, url)
            .json(&serde_json::json!({ "auth": auth }))?;
        req.auth = false;
        req.idempotent = true;
        // Boxed: execute() -> auth_state() -> obtain_token() -> execute() recurses.
        let resp = Box::pin(self.execute(req)).await?;
        let token = resp
            .header(X_SUBJECT_TOKEN)
            .ok_or_else(|| Error::Auth {
                message: format!(
                    "{} answered {} without an X-Subject-Token header",
                    resp.url, resp.status
                ),
            })?
            .to_owned();
        let body: TokenEnvelope = resp.json()?;
        let expires_at = match body.token.expires_at.as_deref() {
            Some(s) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map_err(|e| Error::Auth {
                        message: format!("token expires_at '{s}' is not RFC 3339: {e}"),
                    })?
                    .with_timezone(&Utc),
            ),
            None => None,
        };
        let issued_at = body
            .token
            .issued_at
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.auth_count.fetch_add(1, Ordering::Relaxed);
        let info = TokenInfo {
            expires_at,
            issued_at,
            project_id: body.token.project.as_ref().and_then(|p| p.id.clone()),
            project_name: body.token.project.as_ref().and_then(|p| p.name.clone()),
            user_id: body.token.user.as_ref().and_then(|u| u.id.clone()),
            user_name: body.token.user.as_ref().and_then(|u| u.name.clone()),
            roles: body
                .token
                .roles
                .iter()
                .filter_map(|r| r.name.clone())
                .collect(),
        };
        tracing::info!(
            cloud = cfg.name.as_deref().unwrap_or("env"),
            project = info.project_name.as_deref().unwrap_or(""),
            expires_at = ?info.expires_at,
            "obtained a Keystone token"
        );
        Ok(AuthState {
            token: Secret::new(token),
            info,
            catalog: body.token.catalog.unwrap_or_default(),
            generation,
            obtained: Instant::now(),
        })
    }
}

/// The proactive-refresh margin for `state`'s token: `margin`, but at most a
/// quarter of the token's lifetime, so that a Keystone issuing short-lived
/// tokens (shorter than the margin) is not asked for a new token before
/// every request: the token is renewed once it is mostly used up (or on the
/// 401 of a request made after it expired).
fn refresh_margin(state: &AuthState, margin: Duration) -> Duration {
    match (state.info.issued_at, state.info.expires_at) {
        (Some(issued), Some(expires)) => (expires - issued)
            .to_std()
            .map_or(margin, |lifetime| margin.min(lifetime / 4)),
        _ => margin,
    }
}

fn expires_within(state: &AuthState, margin: Duration) -> bool {
    match state.info.expires_at {
        None => false,
        Some(t) => {
            let margin = chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX);
            t - Utc::now() < margin
        }
    }
}
