//! The authenticated session: token, catalog and the HTTP machinery
//! (timeouts, retries, re-authentication, tracing) every service client uses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::io::AsyncRead;
use tracing::{field::Empty, Instrument};
use url::Url;

use crate::catalog::Catalog;
use crate::config::{CloudConfig, Credentials, Scope};
use crate::error::{is_retryable_status, server_message, Error, Result};
use crate::secret::Secret;

/// Frame size for streaming uploads (large frames keep the CPU cost per byte low).
pub(crate) const UPLOAD_FRAME: usize = 1 << 20;

const X_AUTH_TOKEN: &str = "x-auth-token";
const X_SUBJECT_TOKEN: &str = "x-subject-token";

/// A request body that can be sent again on retry.
#[derive(Clone)]
pub(crate) enum Body {
    Empty,
    Bytes {
        data: Bytes,
        content_type: &'static str,
    },
}

/// Never prints the bytes: an authentication body carries a password.
impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes { data, content_type } => {
                write!(f, "Bytes({} bytes of {content_type})", data.len())
            }
        }
    }
}

impl Body {
    pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<Body> {
        let data = serde_json::to_vec(value)
            .map_err(|e| Error::InvalidInput(format!("cannot serialize request body: {e}")))?;
        Ok(Body::Bytes {
            data: Bytes::from(data),
            content_type: "application/json",
        })
    }
}

/// A request the session executes.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub service: &'static str,
    pub region: Option<String>,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    /// Safe to repeat (GET, PUT, DELETE, most actions).
    pub idempotent: bool,
    /// Send the token and re-authenticate once on 401.
    pub auth: bool,
}

impl Req {
    pub(crate) fn new(
        service: &'static str,
        region: Option<String>,
        method: Method,
        url: Url,
    ) -> Req {
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        Req {
            service,
            region,
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            idempotent,
            auth: true,
        }
    }

    pub(crate) fn json<T: serde::Serialize>(mut self, value: &T) -> Result<Req> {
        self.body = Body::json(value)?;
        Ok(self)
    }

    pub(crate) fn idempotent(mut self, yes: bool) -> Req {
        self.idempotent = yes;
        self
    }
}

/// A fully read response.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub method: Method,
    pub url: Url,
}

impl RawResponse {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Decode {
            method: self.method.clone(),
            url: self.url.to_string(),
            type_name: std::any::type_name::<T>(),
            source,
        })
    }

    /// Decode the `T` under `key` of a JSON object body (`{"server": {...}}`).
    pub(crate) fn json_in<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        let decode = |source| Error::Decode {
            method: self.method.clone(),
            url: self.url.to_string(),
            type_name: std::any::type_name::<T>(),
            source,
        };
        let mut value: serde_json::Value = serde_json::from_slice(&self.body).map_err(decode)?;
        let inner = value
            .get_mut(key)
            .map(serde_json::Value::take)
            .ok_or_else(|| {
                decode(<serde_json::Error as serde::de::Error>::custom(
                    format_args!("missing field `{key}`"),
                ))
            })?;
        serde_json::from_value(inner).map_err(decode)
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    [
        "x-openstack-request-id",
        "x-compute-request-id",
        "openstack-request-id",
    ]
    .iter()
    .find_map(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

pub(crate) fn api_error(
    method: &Method,
    url: &Url,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Error {
    Error::Api {
        status,
        method: method.clone(),
        url: url.to_string(),
        request_id: request_id(headers),
        message: server_message(body),
    }
}

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

    /// Replace the current token value, keeping the catalog. Meant for tests
    /// that need a revoked or garbage token to exercise re-authentication.
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

    pub(crate) fn http_options(&self) -> &crate::config::HttpOptions {
        &self.inner.config.http
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
            Some(s) if !expires_within(&s, margin) => Ok(s),
            other => {
                self.refresh(other.map(|s| s.generation), margin, false)
                    .await
            }
        }
    }

    /// Single-flight refresh: only one task talks to Keystone; the others wait
    /// and reuse its token. `stale` is the generation the caller found bad.
    async fn refresh(
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

    fn builder(&self, req: &Req, token: Option<&AuthState>) -> Result<reqwest::RequestBuilder> {
        let mut rb = self
            .inner
            .http
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        if let Some(state) = token {
            let mut v = HeaderValue::from_str(state.token.expose()).map_err(|_| Error::Auth {
                message: "token contains invalid header characters".into(),
            })?;
            v.set_sensitive(true);
            rb = rb.header(X_AUTH_TOKEN, v);
        }
        if let Body::Bytes { data, content_type } = &req.body {
            rb = rb.header(CONTENT_TYPE, *content_type).body(data.clone());
        }
        Ok(rb)
    }

    fn span(req: &Req, attempt: u32) -> tracing::Span {
        tracing::info_span!(
            "openstack_request",
            otel.kind = "client",
            http.method = %req.method,
            url.path = %req.url.path(),
            openstack.service = req.service,
            openstack.region = req.region.as_deref().unwrap_or(""),
            attempt,
            http.status_code = Empty,
            openstack.request_id = Empty,
            duration_ms = Empty,
        )
    }

    fn record(
        span: &tracing::Span,
        status: Option<StatusCode>,
        headers: Option<&HeaderMap>,
        started: Instant,
    ) {
        if let Some(s) = status {
            span.record("http.status_code", s.as_u16());
        }
        if let Some(id) = headers.and_then(request_id) {
            span.record("openstack.request_id", id.as_str());
        }
        span.record("duration_ms", started.elapsed().as_millis() as u64);
        tracing::debug!(parent: span, "request finished");
    }

    fn retry_delay(&self, attempt: u32, headers: Option<&HeaderMap>) -> Duration {
        let opts = &self.inner.config.http;
        if let Some(after) = headers
            .and_then(|h| h.get(RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
        {
            let parsed = after
                .trim()
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
                .or_else(|| {
                    DateTime::parse_from_rfc2822(after.trim())
                        .ok()
                        .and_then(|t| (t.with_timezone(&Utc) - Utc::now()).to_std().ok())
                });
            if let Some(d) = parsed {
                return d.min(opts.retry_max_delay);
            }
        }
        let exp = opts
            .retry_base_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(opts.retry_max_delay);
        // Equal jitter: half fixed, half random.
        let half = exp / 2;
        let jitter = rand::random::<f64>();
        half + half.mul_f64(jitter)
    }

    fn transport_retryable(err: &Error, idempotent: bool) -> bool {
        match err {
            Error::Transport { source, .. } if source.is_connect() => true,
            other => idempotent && other.is_retryable(),
        }
    }

    /// The token state a request is sent with (`None` for unauthenticated
    /// requests such as the authentication itself).
    async fn state_for(&self, req: &Req) -> Result<Option<Arc<AuthState>>> {
        if req.auth {
            Ok(Some(self.auth_state().await?))
        } else {
            Ok(None)
        }
    }

    /// Turn a bounded wait for `req` into the crate's errors: the bound
    /// elapsed (`Timeout` while `phase`) or the HTTP client failed (`Transport`).
    fn bounded<T>(
        req: &Req,
        phase: &'static str,
        bound: Duration,
        outcome: std::result::Result<
            std::result::Result<T, reqwest::Error>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<T> {
        match outcome {
            Err(_) => Err(Error::Timeout {
                method: req.method.clone(),
                url: req.url.to_string(),
                phase,
                idle: bound,
            }),
            Ok(Err(source)) => Err(Error::Transport {
                method: req.method.clone(),
                url: req.url.to_string(),
                source,
            }),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// After an attempt of `req` that did not succeed: re-authenticate once
    /// on a 401, or back off before repeating what may be repeated.
    /// `Ok(())` means "send it again"; `Err` is the error to return.
    async fn after_failure(
        &self,
        req: &Req,
        span: &tracing::Span,
        state: Option<&AuthState>,
        failure: Failure,
        attempt: &mut u32,
        reauthed: &mut bool,
    ) -> Result<()> {
        let (err, retryable, headers) = match failure {
            Failure::Status {
                status,
                headers,
                body,
            } => {
                if status == StatusCode::UNAUTHORIZED && !*reauthed {
                    if let Some(state) = state {
                        tracing::info!(parent: span, "token rejected, re-authenticating once");
                        *reauthed = true;
                        self.refresh(Some(state.generation), Duration::ZERO, true)
                            .await?;
                        return Ok(());
                    }
                }
                let err = api_error(&req.method, &req.url, status, &headers, &body);
                (
                    err,
                    req.idempotent && is_retryable_status(status),
                    Some(headers),
                )
            }
            Failure::NoAnswer(err) => {
                let retryable = Self::transport_retryable(&err, req.idempotent);
                (err, retryable, None)
            }
        };
        if retryable && *attempt < self.inner.config.http.max_retries {
            let delay = self.retry_delay(*attempt, headers.as_ref());
            tracing::warn!(parent: span, error = %err, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
            *attempt += 1;
            return Ok(());
        }
        Err(err)
    }

    /// Send `req` until one attempt succeeds: `send` makes one attempt with
    /// the prepared request builder, its span and start time, and answers
    /// the result or how it failed; [`Session::after_failure`] decides
    /// whether there is another attempt.
    async fn with_retries<T, F, Fut>(&self, req: &Req, mut send: F) -> Result<T>
    where
        F: FnMut(reqwest::RequestBuilder, tracing::Span, Instant) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, (Failure, tracing::Span)>>,
    {
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            let state = self.state_for(req).await?;
            let span = Self::span(req, attempt);
            let rb = self.builder(req, state.as_deref())?;
            match send(rb, span, Instant::now()).await {
                Ok(done) => return Ok(done),
                Err((failure, span)) => {
                    self.after_failure(
                        req,
                        &span,
                        state.as_deref(),
                        failure,
                        &mut attempt,
                        &mut reauthed,
                    )
                    .await?;
                }
            }
        }
    }

    /// Execute a request with a buffered body: retries (idempotent only),
    /// one re-authentication on 401, an overall `api_timeout` per attempt.
    pub(crate) async fn execute(&self, req: Req) -> Result<RawResponse> {
        let opts = &self.inner.config.http;
        let req = &req;
        self.with_retries(req, |rb, span, started| async move {
            let fut = async {
                let resp = rb.send().await?;
                let status = resp.status();
                let mut headers = resp.headers().clone();
                if let Some(v) = headers.get_mut(X_SUBJECT_TOKEN) {
                    v.set_sensitive(true);
                }
                let body = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            };
            let outcome = Self::bounded(
                req,
                "waiting for the complete response",
                opts.api_timeout,
                tokio::time::timeout(opts.api_timeout, fut)
                    .instrument(span.clone())
                    .await,
            );
            match outcome {
                Ok((status, headers, body)) if status.is_success() => {
                    Self::record(&span, Some(status), Some(&headers), started);
                    Ok(RawResponse {
                        status,
                        headers,
                        body,
                        method: req.method.clone(),
                        url: req.url.clone(),
                    })
                }
                Ok((status, headers, body)) => {
                    Err(Failure::status(span, started, status, headers, body))
                }
                Err(err) => Err(Failure::no_answer(span, started, err)),
            }
        })
        .await
    }

    /// Execute a request whose response body is streamed (downloads). Retries
    /// and re-authentication happen only before the body starts; waiting for
    /// the headers is bounded by the idle timeout.
    pub(crate) async fn execute_streaming(
        &self,
        req: Req,
    ) -> Result<(reqwest::Response, tracing::Span)> {
        let opts = &self.inner.config.http;
        let req = &req;
        self.with_retries(req, |rb, span, started| async move {
            let outcome = Self::bounded(
                req,
                "waiting for the response headers",
                opts.idle_timeout,
                tokio::time::timeout(opts.idle_timeout, rb.send())
                    .instrument(span.clone())
                    .await,
            );
            match outcome {
                Ok(resp) if resp.status().is_success() => {
                    span.record("http.status_code", resp.status().as_u16());
                    if let Some(id) = request_id(resp.headers()) {
                        span.record("openstack.request_id", id.as_str());
                    }
                    Ok((resp, span))
                }
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = tokio::time::timeout(opts.idle_timeout, resp.bytes())
                        .await
                        .ok()
                        .and_then(|r| r.ok())
                        .unwrap_or_default();
                    Err(Failure::status(span, started, status, headers, body))
                }
                Err(err) => Err(Failure::no_answer(span, started, err)),
            }
        })
        .await
    }

    /// Execute a request with a streaming body read from `reader`. Exactly one
    /// attempt: a consumed stream cannot be replayed. A 401 refreshes the
    /// token (so the caller can reopen its source and try again) and is
    /// returned as an error. An idle watchdog fails the upload if no bytes
    /// move for `idle_timeout`; there is no total deadline.
    pub(crate) async fn execute_upload<R>(
        &self,
        req: Req,
        reader: R,
        size: Option<u64>,
    ) -> Result<RawResponse>
    where
        R: AsyncRead + Send + 'static,
    {
        let opts = &self.inner.config.http;
        self.ensure_token_valid_for(opts.transfer_token_validity)
            .await?;
        let state = self.auth_state().await?;
        let span = Self::span(&req, 0);
        let started = Instant::now();
        let progress = Arc::new(Progress::new());
        let p = progress.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, UPLOAD_FRAME).inspect_ok(
            move |chunk| {
                p.advance(chunk.len() as u64);
            },
        );
        let mut rb = self
            .builder(&req, Some(&state))?
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(n) = size {
            rb = rb
                .header(CONTENT_LENGTH, n)
                .header("x-openstack-image-size", n);
        }
        let send = async {
            let resp = rb.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        let outcome = tokio::select! {
            r = send.instrument(span.clone()) => r.map_err(|source| Error::Transport {
                method: req.method.clone(),
                url: req.url.to_string(),
                source,
            }),
            phase = progress.watchdog(opts.idle_timeout, size) => Err(Error::Timeout {
                method: req.method.clone(),
                url: req.url.to_string(),
                phase,
                idle: opts.idle_timeout,
            }),
        };
        let sent = progress.bytes();
        match outcome {
            Ok((status, headers, body)) => {
                Self::record(&span, Some(status), Some(&headers), started);
                tracing::info!(parent: &span, bytes = sent, "upload finished");
                if status.is_success() {
                    return Ok(RawResponse {
                        status,
                        headers,
                        body,
                        method: req.method.clone(),
                        url: req.url.clone(),
                    });
                }
                if status == StatusCode::UNAUTHORIZED {
                    // Refresh so that the caller's retry (with a reopened source) works.
                    self.refresh(Some(state.generation), Duration::ZERO, true)
                        .await?;
                }
                Err(api_error(&req.method, &req.url, status, &headers, &body))
            }
            Err(err) => {
                Self::record(&span, None, None, started);
                tracing::warn!(parent: &span, bytes = sent, error = %err, "upload failed");
                Err(err)
            }
        }
    }
}

/// How an attempt that did not succeed ended.
enum Failure {
    /// The server answered with a non-success status.
    Status {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// No usable answer (transport error or timeout).
    NoAnswer(Error),
}

impl Failure {
    /// The attempt in `span` got a non-success answer: record it on the span.
    fn status(
        span: tracing::Span,
        started: Instant,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) -> (Failure, tracing::Span) {
        Session::record(&span, Some(status), Some(&headers), started);
        (
            Failure::Status {
                status,
                headers,
                body,
            },
            span,
        )
    }

    /// The attempt in `span` got no answer: record that on the span.
    fn no_answer(span: tracing::Span, started: Instant, err: Error) -> (Failure, tracing::Span) {
        Session::record(&span, None, None, started);
        (Failure::NoAnswer(err), span)
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

/// Byte counter + last-progress clock shared by a streaming body and its watchdog.
pub(crate) struct Progress {
    start: Instant,
    bytes: AtomicU64,
    last_ms: AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            start: Instant::now(),
            bytes: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn advance(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Resolves when nothing moved for `idle`; returns what we were doing.
    async fn watchdog(&self, idle: Duration, size: Option<u64>) -> &'static str {
        let tick = (idle / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(tick).await;
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if self.start.elapsed().saturating_sub(last) >= idle {
                return match size {
                    Some(n) if self.bytes() >= n => {
                        "waiting for the response after sending the body"
                    }
                    _ => "sending the request body",
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let mut cfg = CloudConfig::password("http://127.0.0.1:1/v3", "u", "p", "proj").unwrap();
        cfg.http.retry_base_delay = Duration::from_millis(100);
        cfg.http.retry_max_delay = Duration::from_secs(2);
        Session::new(cfg).unwrap()
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let s = session();
        for attempt in 0..8 {
            let d = s.retry_delay(attempt, None);
            let full = Duration::from_millis(100)
                .saturating_mul(2u32.pow(attempt))
                .min(Duration::from_secs(2));
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let s = session();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        assert_eq!(s.retry_delay(0, Some(&h)), Duration::from_secs(1));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(s.retry_delay(0, Some(&h)), Duration::from_secs(2));
        let date = (Utc::now() + chrono::Duration::seconds(1)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        assert!(s.retry_delay(0, Some(&h)) <= Duration::from_secs(1));
    }

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

    #[test]
    fn request_debug_hides_the_body() {
        let url = Url::parse("http://127.0.0.1/v3/auth/tokens").unwrap();
        let req = Req::new("identity", None, Method::POST, url)
            .json(&serde_json::json!({"password": "hunter2"}))
            .unwrap();
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("bytes of application/json"), "{dbg}");
    }

    #[test]
    fn json_in_decodes_the_named_member_or_names_what_is_missing() {
        let resp = RawResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(br#"{"keypair": {"name": "k"}}"#),
            method: Method::GET,
            url: Url::parse("http://127.0.0.1/os-keypairs/k").unwrap(),
        };
        let v: serde_json::Value = resp.json_in("keypair").unwrap();
        assert_eq!(v, serde_json::json!({"name": "k"}));
        let err = resp.json_in::<serde_json::Value>("server").unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("GET http://127.0.0.1/os-keypairs/k: cannot decode")
                && err.to_string().contains("missing field `server`"),
            "{err}"
        );
    }

    #[test]
    fn only_safe_methods_are_idempotent_by_default() {
        let url = Url::parse("http://127.0.0.1/x").unwrap();
        assert!(Req::new("image", None, Method::GET, url.clone()).idempotent);
        assert!(Req::new("image", None, Method::PUT, url.clone()).idempotent);
        assert!(Req::new("image", None, Method::DELETE, url.clone()).idempotent);
        assert!(!Req::new("image", None, Method::POST, url.clone()).idempotent);
        assert!(!Req::new("image", None, Method::PATCH, url).idempotent);
    }
}
