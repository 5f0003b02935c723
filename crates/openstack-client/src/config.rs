//! Cloud configuration: `clouds.yaml` + `secure.yaml` and `OS_*` variables.
//!
//! The search path is the one openstacksdk uses: the file named by
//! `OS_CLIENT_CONFIG_FILE`, then `clouds.{yaml,yml,json}` in the current
//! directory, in `$XDG_CONFIG_HOME/openstack` (`~/.config/openstack`) and in
//! `/etc/openstack`. `secure.yaml` (or `OS_CLIENT_SECURE_FILE`) is searched the
//! same way and merged over the cloud's entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::{Mapping, Value};
use url::Url;

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
    fn is_set(&self) -> bool {
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

/// Everything needed to talk to one cloud.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// Cloud name from clouds.yaml (`None` for plain `OS_*` variables).
    pub name: Option<String>,
    /// Keystone v3 URL (always ends in `/v3`).
    pub auth_url: Url,
    /// Credentials.
    pub credentials: Credentials,
    /// Token scope.
    pub scope: Scope,
    /// Regions of this cloud, first one is the default (`region_name` /
    /// `regions:` / `OS_REGION_NAME`). Empty means "whatever the catalog has".
    pub regions: Vec<String>,
    /// Catalog interface.
    pub interface: Interface,
    /// Extra CA bundle (PEM).
    pub cacert: Option<PathBuf>,
    /// Skip TLS verification (`verify: false` / `OS_INSECURE`).
    pub insecure: bool,
    /// HTTP behaviour.
    pub http: HttpOptions,
    /// Endpoint overrides by service type (`image_endpoint_override` and
    /// friends in clouds.yaml): used instead of the catalog, in every region.
    pub endpoint_overrides: BTreeMap<String, Url>,
    /// The clouds.yaml this came from.
    pub source: Option<PathBuf>,
}

impl CloudConfig {
    /// Build a password-auth config for a project by name (domains `default`).
    pub fn password(
        auth_url: &str,
        username: &str,
        password: impl Into<Secret>,
        project_name: &str,
    ) -> Result<Self> {
        Ok(CloudConfig {
            name: None,
            auth_url: normalize_auth_url(auth_url, None)?,
            credentials: Credentials::Password {
                user: UserRef {
                    id: None,
                    name: Some(username.to_owned()),
                    domain: DomainRef::default(),
                },
                password: password.into(),
            },
            scope: Scope::Project {
                id: None,
                name: Some(project_name.to_owned()),
                domain: DomainRef::default(),
            },
            regions: Vec::new(),
            interface: Interface::Public,
            cacert: None,
            insecure: false,
            http: HttpOptions::default(),
            endpoint_overrides: BTreeMap::new(),
            source: None,
        })
    }

    /// Load cloud `name` from the first `clouds.yaml` on the openstacksdk
    /// search path, merged with `secure.yaml`.
    pub fn from_clouds_yaml(name: &str) -> Result<Self> {
        Self::from_search_path(
            &|k: &str| std::env::var(k).ok().filter(|v| !v.is_empty()),
            name,
        )
    }

    fn from_search_path(getenv: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Self> {
        let clouds = find_config_file(getenv, "OS_CLIENT_CONFIG_FILE", "clouds")?.ok_or_else(|| Error::Config {
            path: None,
            message: format!(
                "cloud '{name}': no clouds.yaml found (searched $OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)"
            ),
        })?;
        let secure = find_config_file(getenv, "OS_CLIENT_SECURE_FILE", "secure")?;
        Self::from_files(&clouds, secure.as_deref(), name)
    }

    /// Load cloud `name` from an explicit clouds.yaml (and optional secure.yaml).
    pub fn from_files(clouds: &Path, secure: Option<&Path>, name: &str) -> Result<Self> {
        let mut entry = cloud_entry(clouds, name)?;
        if let Some(secure) = secure {
            // secure.yaml need not mention every cloud, but it must parse.
            if let Some(sec) = secure_entry(secure, name)? {
                merge(&mut entry, sec);
            }
        }
        let mut config = from_entry(&entry, clouds)?;
        config.name = Some(name.to_owned());
        config.source = Some(clouds.to_owned());
        Ok(config)
    }

    /// Load from the environment: `OS_CLOUD` selects a clouds.yaml entry,
    /// otherwise plain `OS_*` variables (`OS_AUTH_URL`, `OS_USERNAME`, ...)
    /// are used. `OS_REGION_NAME` moves that region to the front.
    pub fn from_env() -> Result<Self> {
        Self::from_env_with(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// What a CLI with `--os-cloud` and `--os-region-name` flags wants: the
    /// named cloud from clouds.yaml when `cloud` is given, else
    /// [`CloudConfig::from_env`]; `region` (else `OS_REGION_NAME`) becomes the
    /// default region.
    pub fn load(cloud: Option<&str>, region: Option<&str>) -> Result<Self> {
        let mut config = match cloud {
            Some(name) => {
                let mut c = Self::from_clouds_yaml(name)?;
                if let Some(r) = std::env::var("OS_REGION_NAME")
                    .ok()
                    .filter(|r| !r.is_empty())
                {
                    c.set_default_region(&r);
                }
                c
            }
            None => Self::from_env()?,
        };
        if let Some(r) = region {
            config.set_default_region(r);
        }
        Ok(config)
    }

    /// Like [`CloudConfig::from_env`] with an explicit variable lookup (for tests
    /// and for CLIs that merge flags over the environment).
    pub fn from_env_with(getenv: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = match getenv("OS_CLOUD") {
            Some(cloud) => Self::from_search_path(&getenv, &cloud)?,
            None => from_os_vars(&getenv)?,
        };
        if let Some(region) = getenv("OS_REGION_NAME") {
            config.set_default_region(&region);
        }
        Ok(config)
    }

    /// Make `region` the default (first) region, adding it if missing.
    pub fn set_default_region(&mut self, region: &str) {
        self.regions.retain(|r| r != region);
        self.regions.insert(0, region.to_owned());
    }

    /// The default region, if any is configured.
    pub fn default_region(&self) -> Option<&str> {
        self.regions.first().map(String::as_str)
    }
}

fn cfg_err(path: Option<&Path>, message: impl Into<String>) -> Error {
    Error::Config {
        path: path.map(Path::to_owned),
        message: message.into(),
    }
}

/// The openstacksdk search path for `clouds` or `secure` files.
fn find_config_file(
    getenv: &dyn Fn(&str) -> Option<String>,
    env: &str,
    stem: &str,
) -> Result<Option<PathBuf>> {
    if let Some(p) = getenv(env) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(Some(p));
        }
        return Err(cfg_err(
            Some(&p),
            format!("named by {env} but not a readable file"),
        ));
    }
    let mut dirs = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd);
    }
    if let Some(xdg) = getenv("XDG_CONFIG_HOME") {
        dirs.push(PathBuf::from(xdg).join("openstack"));
    }
    if let Some(home) = dirs::home_dir() {
        dirs.push(home.join(".config").join("openstack"));
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    for dir in dirs {
        for ext in ["yaml", "yml", "json"] {
            let p = dir.join(format!("{stem}.{ext}"));
            if p.is_file() {
                return Ok(Some(p));
            }
        }
    }
    Ok(None)
}

fn cloud_entry(path: &Path, name: &str) -> Result<Mapping> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| cfg_err(Some(path), format!("cannot read: {e}")))?;
    let doc: Value = serde_yaml::from_str(&text)
        .map_err(|e| cfg_err(Some(path), format!("invalid YAML: {e}")))?;
    let clouds = doc
        .get("clouds")
        .and_then(Value::as_mapping)
        .ok_or_else(|| cfg_err(Some(path), "no 'clouds:' mapping"))?;
    match clouds.get(name) {
        Some(Value::Mapping(m)) => Ok(m.clone()),
        Some(_) => Err(cfg_err(
            Some(path),
            format!("cloud '{name}' is not a mapping"),
        )),
        None => {
            let names: Vec<&str> = clouds.keys().filter_map(Value::as_str).collect();
            Err(cfg_err(
                Some(path),
                format!(
                    "cloud '{name}' not found (clouds defined: {})",
                    names.join(", ")
                ),
            ))
        }
    }
}

fn secure_entry(path: &Path, name: &str) -> Result<Option<Mapping>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| cfg_err(Some(path), format!("cannot read: {e}")))?;
    let doc: Value = serde_yaml::from_str(&text)
        .map_err(|e| cfg_err(Some(path), format!("invalid YAML: {e}")))?;
    match doc.get("clouds").and_then(|c| c.get(name)) {
        None => Ok(None),
        Some(Value::Mapping(m)) => Ok(Some(m.clone())),
        Some(_) => Err(cfg_err(
            Some(path),
            format!("cloud '{name}' is not a mapping"),
        )),
    }
}

fn merge(base: &mut Mapping, overlay: Mapping) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn yaml_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn from_entry(entry: &Mapping, path: &Path) -> Result<CloudConfig> {
    let top = |k: &str| entry.get(k).and_then(yaml_string);
    let auth = entry
        .get("auth")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let lookup = |k: &str| -> Option<String> {
        match k {
            "auth_type" | "region_name" | "interface" | "cacert" | "verify" | "insecure" => top(k),
            "system_scope" => auth.get(k).and_then(yaml_string).or_else(|| top(k)),
            _ => auth.get(k).and_then(yaml_string),
        }
    };
    let mut config = build(&lookup, Some(path))?;
    let mut regions = Vec::new();
    if let Some(r) = top("region_name") {
        regions.push(r);
    }
    if let Some(Value::Sequence(list)) = entry.get("regions") {
        for item in list {
            let name = match item {
                Value::Mapping(m) => m.get("name").and_then(yaml_string),
                other => yaml_string(other),
            };
            match name {
                Some(n) if !regions.contains(&n) => regions.push(n),
                Some(_) => {}
                None => return Err(cfg_err(Some(path), "an entry of 'regions:' has no name")),
            }
        }
    }
    config.regions = regions;
    if let Some(t) = top("api_timeout") {
        let secs: f64 = t
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0)
            .ok_or_else(|| {
                cfg_err(
                    Some(path),
                    format!("api_timeout: '{t}' is not a positive number of seconds"),
                )
            })?;
        config.http.api_timeout = Duration::from_secs_f64(secs);
    }
    for (k, v) in entry {
        let (Some(key), Some(value)) = (k.as_str(), yaml_string(v)) else {
            continue;
        };
        if let Some(service) = key.strip_suffix("_endpoint_override") {
            let url = Url::parse(&value)
                .map_err(|e| cfg_err(Some(path), format!("{key}: '{value}' is not a URL: {e}")))?;
            config
                .endpoint_overrides
                .insert(service.replace('_', "-"), url);
        }
    }
    if let Some(v) = entry.get("verify") {
        if let Some(b) = v.as_bool() {
            config.insecure = !b;
        } else if let Some(s) = v.as_str() {
            config.cacert = Some(PathBuf::from(s));
        }
    }
    Ok(config)
}

fn from_os_vars(getenv: &dyn Fn(&str) -> Option<String>) -> Result<CloudConfig> {
    let map: BTreeMap<&str, &str> = [
        ("auth_url", "OS_AUTH_URL"),
        ("auth_type", "OS_AUTH_TYPE"),
        ("username", "OS_USERNAME"),
        ("user_id", "OS_USER_ID"),
        ("password", "OS_PASSWORD"),
        ("token", "OS_TOKEN"),
        ("project_name", "OS_PROJECT_NAME"),
        ("project_id", "OS_PROJECT_ID"),
        ("tenant_name", "OS_TENANT_NAME"),
        ("tenant_id", "OS_TENANT_ID"),
        ("user_domain_name", "OS_USER_DOMAIN_NAME"),
        ("user_domain_id", "OS_USER_DOMAIN_ID"),
        ("project_domain_name", "OS_PROJECT_DOMAIN_NAME"),
        ("project_domain_id", "OS_PROJECT_DOMAIN_ID"),
        ("domain_name", "OS_DOMAIN_NAME"),
        ("domain_id", "OS_DOMAIN_ID"),
        ("default_domain", "OS_DEFAULT_DOMAIN"),
        ("system_scope", "OS_SYSTEM_SCOPE"),
        ("application_credential_id", "OS_APPLICATION_CREDENTIAL_ID"),
        (
            "application_credential_name",
            "OS_APPLICATION_CREDENTIAL_NAME",
        ),
        (
            "application_credential_secret",
            "OS_APPLICATION_CREDENTIAL_SECRET",
        ),
        ("region_name", "OS_REGION_NAME"),
        ("interface", "OS_INTERFACE"),
        ("cacert", "OS_CACERT"),
        ("insecure", "OS_INSECURE"),
    ]
    .into_iter()
    .collect();
    let lookup = |k: &str| -> Option<String> {
        let v = map.get(k).and_then(|var| getenv(var));
        if v.is_none() && k == "interface" {
            return getenv("OS_ENDPOINT_TYPE");
        }
        v
    };
    if lookup("auth_url").is_none() {
        return Err(cfg_err(None, "neither OS_CLOUD nor OS_AUTH_URL is set"));
    }
    let mut config = build(&lookup, None)?;
    if let Some(r) = lookup("region_name") {
        config.regions = vec![r];
    }
    Ok(config)
}

/// Build a config from flat clouds.yaml-style keys.
fn build(get: &dyn Fn(&str) -> Option<String>, path: Option<&Path>) -> Result<CloudConfig> {
    let auth_url = get("auth_url").ok_or_else(|| cfg_err(path, "auth.auth_url is missing"))?;
    let auth_url = normalize_auth_url(&auth_url, path)?;
    let default_domain = get("default_domain");
    let domain = |id_key: &str, name_key: &str| {
        let d = DomainRef {
            id: get(id_key),
            name: get(name_key),
        };
        if d.is_set() {
            d
        } else {
            let d = DomainRef {
                id: get("domain_id"),
                name: get("domain_name"),
            };
            if d.is_set() {
                d
            } else {
                DomainRef {
                    id: default_domain.clone(),
                    name: None,
                }
            }
        }
    };
    let user = UserRef {
        id: get("user_id"),
        name: get("username").or_else(|| get("user_name")),
        domain: domain("user_domain_id", "user_domain_name"),
    };
    let auth_type = get("auth_type").unwrap_or_else(|| {
        if get("application_credential_secret").is_some() {
            "v3applicationcredential".into()
        } else if get("token").is_some() && get("password").is_none() {
            "v3token".into()
        } else {
            "password".into()
        }
    });
    let credentials = match auth_type.as_str() {
        "password" | "v3password" => {
            let password = get("password").ok_or_else(|| cfg_err(path, "password auth: password is missing"))?;
            if user.id.is_none() && user.name.is_none() {
                return Err(cfg_err(path, "password auth: username or user_id is missing"));
            }
            Credentials::Password {
                user: user.clone(),
                password: Secret::new(password),
            }
        }
        "token" | "v3token" => Credentials::Token {
            token: Secret::new(get("token").ok_or_else(|| cfg_err(path, "token auth: token is missing"))?),
        },
        "v3applicationcredential" | "applicationcredential" | "application_credential" => {
            let secret = get("application_credential_secret")
                .ok_or_else(|| cfg_err(path, "application credential auth: application_credential_secret is missing"))?;
            let id = get("application_credential_id");
            let name = get("application_credential_name");
            if id.is_none() && name.is_none() {
                return Err(cfg_err(
                    path,
                    "application credential auth: application_credential_id or application_credential_name is missing",
                ));
            }
            if id.is_none() && user.id.is_none() && user.name.is_none() {
                return Err(cfg_err(
                    path,
                    "application credential given by name needs username or user_id",
                ));
            }
            Credentials::ApplicationCredential {
                id,
                name,
                user: if user.id.is_some() || user.name.is_some() { Some(user.clone()) } else { None },
                secret: Secret::new(secret),
            }
        }
        other => {
            return Err(cfg_err(
                path,
                format!("auth_type '{other}' is not supported (use password, token or v3applicationcredential)"),
            ))
        }
    };
    let project_id = get("project_id").or_else(|| get("tenant_id"));
    let project_name = get("project_name").or_else(|| get("tenant_name"));
    let scope = if matches!(credentials, Credentials::ApplicationCredential { .. }) {
        Scope::Unscoped
    } else if project_id.is_some() || project_name.is_some() {
        Scope::Project {
            id: project_id,
            name: project_name,
            domain: domain("project_domain_id", "project_domain_name"),
        }
    } else if get("system_scope").as_deref() == Some("all") {
        Scope::System
    } else if get("domain_id").is_some() || get("domain_name").is_some() {
        Scope::Domain(DomainRef {
            id: get("domain_id"),
            name: get("domain_name"),
        })
    } else {
        Scope::Unscoped
    };
    let interface = match get("interface") {
        Some(i) => i
            .parse()
            .map_err(|_| cfg_err(path, format!("unknown interface '{i}'")))?,
        None => Interface::Public,
    };
    let insecure = match get("insecure").as_deref() {
        Some(v) => matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"),
        None => matches!(get("verify").as_deref(), Some("false" | "False")),
    };
    Ok(CloudConfig {
        name: None,
        auth_url,
        credentials,
        scope,
        regions: Vec::new(),
        interface,
        cacert: get("cacert").map(PathBuf::from),
        insecure,
        http: HttpOptions::default(),
        endpoint_overrides: BTreeMap::new(),
        source: path.map(Path::to_owned),
    })
}

fn normalize_auth_url(raw: &str, path: Option<&Path>) -> Result<Url> {
    let mut s = raw.trim().trim_end_matches('/').to_owned();
    if s.ends_with("/v2.0") {
        return Err(cfg_err(
            path,
            format!("auth_url {raw}: Keystone v2.0 is not supported, use v3"),
        ));
    }
    if !s.ends_with("/v3") {
        s.push_str("/v3");
    }
    s.push('/');
    Url::parse(&s).map_err(|e| cfg_err(path, format!("auth_url '{raw}' is not a URL: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CLOUDS: &str = r#"
clouds:
  local:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: admin
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    regions:
      - RegionOne
      - name: RegionTwo
        values: {}
    interface: internal
    image_endpoint_override: http://127.0.0.1:9999
    api_timeout: 42
    identity_api_version: 3
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: http://127.0.0.1:5000
      application_credential_id: abc
      application_credential_secret: s3cret
    region_name: RegionTwo
"#;
    const SECURE: &str = "clouds:\n  local:\n    auth:\n      password: secret\n";

    #[test]
    fn clouds_yaml_with_secure_yaml_and_regions() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("clouds.yaml");
        let s = dir.path().join("secure.yaml");
        std::fs::write(&c, CLOUDS).unwrap();
        std::fs::write(&s, SECURE).unwrap();
        let cfg = CloudConfig::from_files(&c, Some(&s), "local").unwrap();
        assert_eq!(cfg.auth_url.as_str(), "http://127.0.0.1:5000/v3/");
        assert_eq!(cfg.regions, vec!["RegionOne", "RegionTwo"]);
        assert_eq!(cfg.interface, Interface::Internal);
        assert_eq!(
            cfg.endpoint_overrides["image"].as_str(),
            "http://127.0.0.1:9999/"
        );
        match &cfg.credentials {
            Credentials::Password { user, password } => {
                assert_eq!(user.name.as_deref(), Some("admin"));
                assert_eq!(user.domain.name.as_deref(), Some("Default"));
                assert_eq!(password.expose(), "secret");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!format!("{cfg:?}").contains("secret\""));
        assert!(!format!("{cfg:?}").contains("\"secret"));
        let app = CloudConfig::from_files(&c, None, "appcred").unwrap();
        assert_eq!(app.auth_url.as_str(), "http://127.0.0.1:5000/v3/");
        assert_eq!(app.regions, vec!["RegionTwo"]);
        assert!(matches!(
            app.credentials,
            Credentials::ApplicationCredential { .. }
        ));
        assert_eq!(app.scope, Scope::Unscoped);
    }

    #[test]
    fn missing_cloud_lists_defined_ones() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("clouds.yaml");
        std::fs::write(&c, CLOUDS).unwrap();
        let err = CloudConfig::from_files(&c, None, "nope")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cloud 'nope' not found"), "{err}");
        assert!(err.contains("local, appcred"), "{err}");
        let err = CloudConfig::from_files(&c, None, "local")
            .unwrap_err()
            .to_string();
        assert!(err.contains("password is missing"), "{err}");
    }

    #[test]
    fn plain_os_variables() {
        let env: HashMap<&str, &str> = [
            ("OS_AUTH_URL", "https://keystone.example.invalid:5000/"),
            ("OS_USERNAME", "demo"),
            ("OS_PASSWORD", "pw"),
            ("OS_TENANT_NAME", "demo"),
            ("OS_USER_DOMAIN_ID", "default"),
            ("OS_PROJECT_DOMAIN_NAME", "Default"),
            ("OS_REGION_NAME", "RegionTwo"),
            ("OS_INTERFACE", "publicURL"),
            ("OS_INSECURE", "true"),
        ]
        .into_iter()
        .collect();
        let cfg = CloudConfig::from_env_with(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(
            cfg.auth_url.as_str(),
            "https://keystone.example.invalid:5000/v3/"
        );
        assert_eq!(cfg.regions, vec!["RegionTwo"]);
        assert_eq!(cfg.interface, Interface::Public);
        assert!(cfg.insecure);
        assert_eq!(
            cfg.scope,
            Scope::Project {
                id: None,
                name: Some("demo".into()),
                domain: DomainRef {
                    id: None,
                    name: Some("Default".into())
                }
            }
        );
        let err = CloudConfig::from_env_with(|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("OS_AUTH_URL"), "{err}");
    }

    #[test]
    fn os_cloud_uses_the_config_file_variable() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("my-clouds.yaml");
        std::fs::write(
            &c,
            CLOUDS.replace(
                "      username: admin\n",
                "      username: admin\n      password: pw\n",
            ),
        )
        .unwrap();
        let path = c.to_string_lossy().to_string();
        let env: HashMap<&str, String> = [
            ("OS_CLOUD", "local".to_string()),
            ("OS_CLIENT_CONFIG_FILE", path),
            ("OS_REGION_NAME", "RegionTwo".to_string()),
        ]
        .into_iter()
        .collect();
        let cfg = CloudConfig::from_env_with(|k| env.get(k).cloned()).unwrap();
        assert_eq!(cfg.name.as_deref(), Some("local"));
        assert_eq!(cfg.regions, vec!["RegionTwo", "RegionOne"]);
    }

    #[test]
    fn missing_named_config_file_is_an_error() {
        let env: HashMap<&str, &str> = [
            ("OS_CLOUD", "local"),
            ("OS_CLIENT_CONFIG_FILE", "/nonexistent/clouds.yaml"),
        ]
        .into_iter()
        .collect();
        let err = CloudConfig::from_env_with(|k| env.get(k).map(|v| v.to_string()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/nonexistent/clouds.yaml: named by OS_CLIENT_CONFIG_FILE but not a readable file"
        );
    }

    #[test]
    fn token_auth_and_v2_rejected() {
        let env: HashMap<&str, &str> = [
            ("OS_AUTH_URL", "http://k:5000/v3"),
            ("OS_TOKEN", "tok"),
            ("OS_PROJECT_ID", "p1"),
        ]
        .into_iter()
        .collect();
        let cfg = CloudConfig::from_env_with(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert!(matches!(cfg.credentials, Credentials::Token { .. }));
        let env: HashMap<&str, &str> = [("OS_AUTH_URL", "http://k:5000/v2.0"), ("OS_TOKEN", "tok")]
            .into_iter()
            .collect();
        let err = CloudConfig::from_env_with(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(err.to_string().contains("v2.0"));
    }
}
