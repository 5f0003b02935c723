//! Turning a clouds.yaml entry or plain `OS_*` variables into a
//! [`CloudConfig`](super::CloudConfig): the flat key lookup both share, auth
//! types, domains, scope, regions and the auth URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::{Mapping, Value};
use url::Url;

use super::{cfg_err, CloudConfig, Credentials, DomainRef, HttpOptions, Interface, Scope, UserRef};
use crate::error::Result;
use crate::secret::Secret;

fn yaml_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn from_entry(entry: &Mapping, path: &Path) -> Result<CloudConfig> {
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
            let url = Url::parse(&value).map_err(|e| {
                cfg_err(
                    Some(path),
                    format!("{key}: not a URL (value not shown): {e}"),
                )
            })?;
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

pub(super) fn from_os_vars(getenv: &dyn Fn(&str) -> Option<String>) -> Result<CloudConfig> {
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

pub(super) fn normalize_auth_url(raw: &str, path: Option<&Path>) -> Result<Url> {
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
    Url::parse(&s).map_err(|e| cfg_err(path, format!("auth_url: not a URL (value not shown): {e}")))
}
