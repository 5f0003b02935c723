//! Cloud configuration: `clouds.yaml` + `secure.yaml` and `OS_*` variables.
//!
//! The search path is the one openstacksdk uses: the file named by
//! `OS_CLIENT_CONFIG_FILE`, then `clouds.{yaml,yml,json}` in the current
//! directory, in `$XDG_CONFIG_HOME/openstack` (`~/.config/openstack`) and in
//! `/etc/openstack`. `secure.yaml` (or `OS_CLIENT_SECURE_FILE`) is searched the
//! same way and merged over the cloud's entry.

mod entry;
mod files;
mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use url::Url;

use crate::error::{Error, Result};
use crate::secret::Secret;

use entry::{from_entry, from_os_vars, normalize_auth_url};
use files::{cloud_entry, find_config_file, merge, secure_entry};
pub use types::{Credentials, DomainRef, HttpOptions, Interface, Scope, UserRef};

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
