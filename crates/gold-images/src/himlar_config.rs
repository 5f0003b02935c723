//! himlarcli's `config.ini` (`-c`): the `[openstack]` section as an
//! openstack-client [`CloudConfig`].
//!
//! ```ini
//! [openstack]
//! auth_url=https://api.example:5000/v3
//! username=admin
//! password=...
//! project_name=openstack
//! default_domain=Default
//! region=bgo
//! keystone_cachain=/etc/ssl/ca.pem   ; optional
//! ```
//!
//! `default_domain` is the user's and the project's domain, as in himlarcli.
//! Every other section and key is left alone.

use std::path::{Path, PathBuf};

use ini_config::{Dialect, Ini};
use openstack_client::{CloudConfig, Credentials, DomainRef, Scope, Secret, UserRef};

use crate::error::{Error, Result};

/// Where himlarcli looks for `config.ini` when `-c` is not given: beside
/// the tool (`root`), then `/etc/himlarcli/config.ini`.
pub fn default_locations(root: &Path) -> Vec<PathBuf> {
    vec![
        root.join("config.ini"),
        PathBuf::from("/etc/himlarcli/config.ini"),
    ]
}

/// Python 3's `configparser.ConfigParser()`, as himlarcli reads config.ini:
/// `%(name)s` interpolation, strict, no inline comments.
pub const HIMLARCLI_DIALECT: Dialect = Dialect {
    interpolation: true,
    inline_comments: false,
    empty_quotes: false,
    strict: true,
};

fn cfg_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Config {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Read `path` and build the cloud config from its `[openstack]` section.
pub fn load(path: &Path) -> Result<CloudConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Build the cloud config from config.ini `text`; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<CloudConfig> {
    let ini = Ini::parse(path.display().to_string(), text, HIMLARCLI_DIALECT)
        .map_err(|e| cfg_err(path, e.to_string()))?;
    if !ini.has_section("openstack") {
        return Err(cfg_err(path, "missing section [openstack]"));
    }
    let get = |key: &str| -> Result<Option<String>> {
        ini.get("openstack", key)
            .map_err(|e| cfg_err(path, e.to_string()))
            .map(|v| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
    };
    let mut missing = Vec::new();
    let mut need = |key: &'static str| -> Result<String> {
        let v = get(key)?;
        if v.is_none() {
            missing.push(key);
        }
        Ok(v.unwrap_or_default())
    };
    let auth_url = need("auth_url")?;
    let username = need("username")?;
    let password = need("password")?;
    let project_name = need("project_name")?;
    if !missing.is_empty() {
        return Err(cfg_err(
            path,
            format!(
                "[openstack] is missing {}",
                missing
                    .iter()
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let domain = DomainRef {
        id: None,
        name: Some(get("default_domain")?.unwrap_or_else(|| "Default".into())),
    };
    let mut config =
        CloudConfig::password(&auth_url, &username, Secret::new(password), &project_name).map_err(
            |e| {
                cfg_err(
                    path,
                    format!(
                        "[openstack] auth_url (line {}): {e}",
                        ini.line_of("openstack", "auth_url")
                    ),
                )
            },
        )?;
    config.credentials = Credentials::Password {
        user: UserRef {
            id: None,
            name: Some(username),
            domain: domain.clone(),
        },
        password: match config.credentials {
            Credentials::Password { password, .. } => password,
            _ => return Err(cfg_err(path, "internal: password credentials expected")),
        },
    };
    config.scope = Scope::Project {
        id: None,
        name: Some(project_name),
        domain,
    };
    if let Some(region) = get("region")? {
        config.set_default_region(&region);
    }
    if let Some(ca) = get("keystone_cachain")? {
        config.cacert = Some(PathBuf::from(ca));
    }
    config.source = Some(path.to_owned());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openstack_section_maps_to_a_password_cloud() {
        let text = "[openstack]\nauth_url=http://127.0.0.1:5000/v3\nusername=admin\npassword=s3cret\nproject_name=openstack\ndefault_domain=Dom\nregion=bgo\n\n[foreman]\nurl=x\n";
        let c = parse(Path::new("config.ini"), text).unwrap();
        assert_eq!(c.auth_url.as_str(), "http://127.0.0.1:5000/v3/");
        assert_eq!(c.default_region(), Some("bgo"));
        match &c.credentials {
            Credentials::Password { user, password } => {
                assert_eq!(user.name.as_deref(), Some("admin"));
                assert_eq!(user.domain.name.as_deref(), Some("Dom"));
                assert_eq!(password.expose(), "s3cret");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn missing_keys_are_named_together() {
        let err = parse(
            Path::new("/etc/himlarcli/config.ini"),
            "[openstack]\nauth_url=http://x/v3\nusername=u\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "/etc/himlarcli/config.ini: [openstack] is missing 'password', 'project_name'"
        );
        let err = parse(Path::new("c.ini"), "[other]\na=b\n")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "c.ini: missing section [openstack]");
    }
}
