//! GlanceSync configuration (`/etc/glancesync.conf` format).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::condition::Condition;
use crate::error::{Error, Result};
use ini_config::{Dialect, Ini, DEFAULT_SECTION};
pub use secret::Secret;

/// The default configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/glancesync.conf";
/// The default `images_dir`.
pub const DEFAULT_IMAGES_DIR: &str = "/var/lib/glance/images";
/// How the original (Python 2's `SafeConfigParser`) read `glancesync.conf`.
pub const DIALECT: Dialect = Dialect::PYTHON2_SAFE;

/// Keystone credentials of a target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    /// User name.
    pub user: String,
    /// Password (plain; base64-decoded when given through `credential`).
    pub password: Secret,
    /// Keystone URL.
    pub keystone_url: String,
    /// Tenant (project) name.
    pub tenant: String,
}

/// One target section: a set of regions sharing a Keystone credential.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// Section name (`master` for the master target).
    pub name: String,
    /// User name (may be missing when credentials are not needed, e.g. CSV backend).
    pub user: Option<String>,
    /// Password.
    pub password: Option<Secret>,
    /// Keystone URL.
    pub keystone_url: Option<String>,
    /// Tenant (project) name.
    pub tenant: Option<String>,
    /// Master image UUIDs always synchronised.
    pub forcesyncs: BTreeSet<String>,
    /// Region checksums to replace (`any` allowed).
    pub replace: BTreeSet<String>,
    /// Region checksums to rename and replace (`any` allowed).
    pub rename: BTreeSet<String>,
    /// Region checksums never updated.
    pub dontupdate: BTreeSet<String>,
    /// Regions dropped when the target's regions are expanded.
    pub ignore_regions: BTreeSet<String>,
    /// Compiled `metadata_condition`.
    pub metadata_condition: Option<Condition>,
    /// `metadata_set`.
    pub metadata_set: BTreeSet<String>,
    /// Only consider images of this tenant.
    pub only_tenant_images: bool,
    /// Tenant id override (for offline backends).
    pub tenant_id: Option<String>,
    /// Properties copied to `_obsolete` images.
    pub obsolete_syncprops: BTreeSet<String>,
    /// Handle `_obsolete` images.
    pub support_obsolete_images: bool,
    /// Seconds allowed for listing a region's images.
    pub list_images_timeout: u64,
    /// Use Keystone v3.
    pub use_keystone_v3: bool,
    /// Keystone v3 user domain (extension; default `Default`).
    pub user_domain_name: String,
    /// Keystone v3 project domain (extension; default `Default`).
    pub project_domain_name: String,
    /// How image data reaches this target's regions (extension; default `auto`).
    pub transfer: Transfer,
    /// Server-side imports (`glance-download`) run at once in one region of
    /// this target (extension `max_concurrent_imports`; default
    /// [`DEFAULT_CONCURRENT_IMPORTS`]).
    pub max_concurrent_imports: usize,
}

/// Default of `max_concurrent_imports`: four imports per region, so that a
/// target Glance stages the next images while it imports the previous one.
pub const DEFAULT_CONCURRENT_IMPORTS: usize = 4;

/// How image data reaches a target region (`transfer = auto | stream | glance-download`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transfer {
    /// Server-side (`glance-download`) when the target Glance offers it and
    /// shares the master's Keystone; streaming otherwise, and streaming again
    /// when a server-side import fails.
    #[default]
    Auto,
    /// Always stream the data through glancesync.
    Stream,
    /// Always ask the target Glance to pull the data from the master's Glance.
    GlanceDownload,
}

impl Transfer {
    /// Parse the option's value.
    pub fn parse(s: &str) -> Option<Transfer> {
        match s.trim() {
            "auto" => Some(Transfer::Auto),
            "stream" => Some(Transfer::Stream),
            "glance-download" => Some(Transfer::GlanceDownload),
            _ => None,
        }
    }
}

impl TargetConfig {
    fn empty(name: &str) -> Self {
        TargetConfig {
            name: name.to_string(),
            user: None,
            password: None,
            keystone_url: None,
            tenant: None,
            forcesyncs: BTreeSet::new(),
            replace: BTreeSet::new(),
            rename: BTreeSet::new(),
            dontupdate: BTreeSet::new(),
            ignore_regions: BTreeSet::new(),
            metadata_condition: None,
            metadata_set: BTreeSet::new(),
            only_tenant_images: true,
            tenant_id: None,
            obsolete_syncprops: BTreeSet::new(),
            support_obsolete_images: true,
            list_images_timeout: 30,
            use_keystone_v3: false,
            user_domain_name: "Default".into(),
            project_domain_name: "Default".into(),
            transfer: Transfer::Auto,
            max_concurrent_imports: DEFAULT_CONCURRENT_IMPORTS,
        }
    }

    /// Complete credentials, or an error naming what is missing.
    pub fn credential(&self) -> Result<Credential> {
        let missing = |what: &str| Error::Config {
            file: String::new(),
            message: format!(
                "target [{}] has no {what} (credential or user/password/keystone_url/tenant)",
                self.name
            ),
        };
        Ok(Credential {
            user: self.user.clone().ok_or_else(|| missing("user"))?,
            password: self.password.clone().ok_or_else(|| missing("password"))?,
            keystone_url: self
                .keystone_url
                .clone()
                .ok_or_else(|| missing("keystone_url"))?,
            tenant: self.tenant.clone().ok_or_else(|| missing("tenant"))?,
        })
    }

    /// The tenant id offline backends use: `tenant_id`, else `<tenant>id`.
    pub fn offline_tenant_id(&self) -> String {
        self.tenant_id
            .clone()
            .unwrap_or_else(|| format!("{}id", self.tenant.as_deref().unwrap_or("")))
    }
}

/// Where the configuration text comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// Text given directly (named by the string in errors).
    Text {
        /// Name used in messages.
        name: String,
        /// The INI text.
        text: String,
    },
    /// A file named explicitly (e.g. `--config-file`); wins over `GLANCESYNC_CONFIG`.
    File(PathBuf),
    /// Resolve as the original does: `GLANCESYNC_CONFIG`, then the explicit
    /// path, then `/etc/glancesync.conf`, then none (environment only).
    Resolve {
        /// Explicit `--config-file` path.
        explicit: Option<PathBuf>,
    },
}

/// Options for loading.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config key=value` overrides, in order.
    pub overrides: Vec<String>,
    /// When false, missing credentials are not an error (offline backends).
    pub require_credentials: bool,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct GlanceSyncConfig {
    /// Where it was read from (a path, `<string>` or `<environment>`).
    pub source: String,
    /// The master region (may be unknown when neither config nor `OS_REGION_NAME` sets it).
    pub master_region: Option<String>,
    /// Regions to process first.
    pub preferable_order: Vec<String>,
    /// Concurrent regions with `--parallel`.
    pub max_children: usize,
    /// `images_dir` when set explicitly: image data is then read from `<dir>/<master uuid>`.
    pub images_dir: Option<PathBuf>,
    /// Targets by name; `master` is always present. Order: as in the file.
    pub targets: indexmap::IndexMap<String, TargetConfig>,
}

/// Environment lookup, injectable for tests.
pub trait Env {
    /// The value of a variable.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl GlanceSyncConfig {
    /// Load with the original's resolution order, overrides and env fallbacks.
    pub fn load(source: &ConfigSource, opts: &LoadOptions, env: &dyn Env) -> Result<Self> {
        let mut ini = match source {
            ConfigSource::Text { name, text } => Ini::parse(name.clone(), text, DIALECT)?,
            ConfigSource::File(p) => read_file(p)?,
            ConfigSource::Resolve { explicit } => {
                let path = env
                    .var("GLANCESYNC_CONFIG")
                    .map(PathBuf::from)
                    .or_else(|| explicit.clone())
                    .or_else(|| {
                        let p = Path::new(DEFAULT_CONFIG_FILE);
                        p.exists().then(|| p.to_path_buf())
                    });
                match path {
                    Some(p) => read_file(&p)?,
                    None => Ini::new("<environment>", DIALECT),
                }
            }
        };
        for (k, v) in [
            ("use_keystone_v3", "False"),
            ("support_obsolete_images", "True"),
            ("only_tenant_images", "True"),
            ("list_images_timeout", "30"),
        ] {
            ini.set_default_if_absent(k, v);
        }
        for arg in &opts.overrides {
            apply_override(&mut ini, arg)?;
        }
        Self::from_ini(&ini, opts.require_credentials, env)
    }

    /// Build from a parsed INI document.
    pub fn from_ini(ini: &Ini, require_credentials: bool, env: &dyn Env) -> Result<Self> {
        let file = ini.source().to_string();
        let master_region = ini
            .get("main", "master_region")?
            .map(|s| s.trim().to_string())
            .or_else(|| env.var("OS_REGION_NAME"));
        if master_region.is_none() {
            tracing::error!("A master region must be set in the configuration or OS_REGION_NAME must be defined");
        }
        let preferable_order = get_list(ini, "main", "preferable_order")?;
        let max_children = match ini.get_int("main", "max_children")? {
            None => 1,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(1),
            Some(_) => {
                return Err(ini
                    .option_error("main", "max_children", "must be at least 1")
                    .into())
            }
        };
        let images_dir = ini
            .get("main", "images_dir")?
            .map(|s| PathBuf::from(s.trim()));

        let mut targets = indexmap::IndexMap::new();
        for section in ini.sections() {
            if section == "main" || section == "DEFAULTS" {
                continue;
            }
            let t = read_target(ini, section, require_credentials)?;
            targets.insert(section.to_string(), t);
        }
        if !targets.contains_key("master") {
            let mut t = TargetConfig::empty("master");
            // DEFAULT values apply to the implicit master target as well.
            if ini.has_section(DEFAULT_SECTION) {
                if let Ok(mut with_defaults) = read_target_defaults_only(ini) {
                    with_defaults.name = "master".into();
                    t = with_defaults;
                }
            }
            targets.insert("master".to_string(), t);
        }
        if let Some(master) = targets.get_mut("master") {
            let fallbacks = [
                ("OS_USERNAME", "A username for master target must be provided in configuration or OS_USERNAME must be defined"),
                ("OS_PASSWORD", "A password for master target must be provided in configuration or OS_PASSWORD must be defined. In the configuration file, passwords must be encoded with base64"),
                ("OS_AUTH_URL", "A keystone url for master target must be provided in configuration or OS_AUTH_URL must be defined."),
                ("OS_TENANT_NAME", "A tenant name for master target must be provided in configuration or OS_TENANT_NAME must be defined."),
            ];
            for (i, (var, msg)) in fallbacks.iter().enumerate() {
                let present = match i {
                    0 => master.user.is_some(),
                    1 => master.password.is_some(),
                    2 => master.keystone_url.is_some(),
                    _ => master.tenant.is_some(),
                };
                if present {
                    continue;
                }
                // OS_PROJECT_NAME is the modern spelling of OS_TENANT_NAME.
                let value = env.var(var).or_else(|| {
                    if i == 3 {
                        env.var("OS_PROJECT_NAME")
                    } else {
                        None
                    }
                });
                match (i, value) {
                    (0, Some(v)) => master.user = Some(v),
                    (1, Some(v)) => master.password = Some(Secret::new(v)),
                    (2, Some(v)) => master.keystone_url = Some(v),
                    (_, Some(v)) => master.tenant = Some(v),
                    (_, None) if require_credentials => {
                        return Err(Error::Config {
                            file: file.clone(),
                            message: (*msg).to_string(),
                        })
                    }
                    (_, None) => {}
                }
            }
        }
        Ok(GlanceSyncConfig {
            source: file,
            master_region,
            preferable_order,
            max_children,
            images_dir,
            targets,
        })
    }

    /// The master region, or an error saying how to set it.
    pub fn require_master_region(&self) -> Result<&str> {
        self.master_region.as_deref().ok_or_else(|| Error::Config {
            file: self.source.clone(),
            message: "A master region must be set in the configuration ([main] master_region) or OS_REGION_NAME must be defined".into(),
        })
    }

    /// The master target.
    pub fn master(&self) -> &TargetConfig {
        // `from_ini` always inserts it.
        &self.targets["master"]
    }

    /// A target by name.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.get(name)
    }
}

/// `arg` as error messages may show it: the value of a `password` or
/// `credential` option is replaced by `***`.
fn shown_override(arg: &str) -> String {
    match arg.split_once('=') {
        Some((key, _)) if is_secret_option(key) => format!("{key}=***"),
        _ => arg.to_string(),
    }
}

/// Options whose values carry a password.
fn is_secret_option(key: &str) -> bool {
    let option = key
        .trim()
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    option.contains("password") || option == "credential"
}

fn apply_override(ini: &mut Ini, arg: &str) -> Result<()> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(Error::Override {
            arg: shown_override(arg),
            message: "config options must have the format key=value".into(),
        });
    };
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        [section, option] => {
            if !ini.has_section(section) {
                return Err(Error::Override {
                    arg: shown_override(arg),
                    message: format!("no section [{section}] in {}", ini.source()),
                });
            }
            ini.set(section, option, value)
                .map_err(|e| Error::Override {
                    arg: shown_override(arg),
                    message: e.to_string(),
                })
        }
        [option] if !option.is_empty() => Ok(ini.set(DEFAULT_SECTION, option, value)?),
        _ => Err(Error::Override {
            arg: shown_override(arg),
            message: "key must be 'option' or 'section.option'".into(),
        }),
    }
}

/// Read `glancesync.conf` at `path`; a missing file names it.
fn read_file(path: &Path) -> Result<Ini> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Ini::parse(path.display().to_string(), &text, DIALECT)?)
}

/// Remove backslash-newline pairs (and the indentation configparser already
/// stripped), turning a value continued with `\` into one logical line.
pub fn join_backslash_lines(v: &str) -> String {
    v.replace("\\\n", "")
}

/// Split a comma-separated value the way GlanceSync does: trim each item;
/// a blank value gives an empty list.
pub fn split_list(v: &str) -> Vec<String> {
    let v = join_backslash_lines(v);
    let v = v.trim();
    if v.is_empty() {
        return Vec::new();
    }
    v.split(',').map(|x| x.trim().to_string()).collect()
}

/// A comma-separated option as a list (empty when absent).
fn get_list(ini: &Ini, section: &str, option: &str) -> Result<Vec<String>> {
    Ok(ini
        .get(section, option)?
        .map(|v| split_list(&v))
        .unwrap_or_default())
}

fn get_set(ini: &Ini, section: &str, option: &str) -> Result<BTreeSet<String>> {
    Ok(get_list(ini, section, option)?.into_iter().collect())
}

fn read_target_defaults_only(ini: &Ini) -> Result<TargetConfig> {
    read_target(ini, DEFAULT_SECTION, false)
}

fn read_target(ini: &Ini, section: &str, require_credentials: bool) -> Result<TargetConfig> {
    let mut t = TargetConfig::empty(section);
    let has = |o: &str| ini.has_option(section, o);
    let get_trim = |o: &str| -> Result<Option<String>> {
        Ok(ini
            .get(section, o)?
            .map(|v| join_backslash_lines(&v).trim().to_string()))
    };
    if has("user") && has("password") && has("keystone_url") && has("tenant") {
        t.user = get_trim("user")?;
        t.tenant = get_trim("tenant")?;
        t.password = get_trim("password")?.map(Secret::new);
        t.keystone_url = get_trim("keystone_url")?;
    } else if has("credential") {
        let cred = get_trim("credential")?.unwrap_or_default();
        let parts: Vec<&str> = cred.split(',').map(str::trim).collect();
        if parts.len() != 4 {
            return Err(ini
                .option_error(
                    section,
                    "credential",
                    format!("expected 4 comma-separated fields (user,base64(password),keystone_url,tenant), found {}", parts.len()),
                )
                .into());
        }
        let pw = base64::engine::general_purpose::STANDARD
            .decode(parts[1].as_bytes())
            .map_err(|_| {
                // The decoder's message shows the offending byte: not shown.
                ini.option_error(section, "credential", "password field is not valid base64")
            })?;
        let pw = String::from_utf8(pw).map_err(|_| {
            ini.option_error(section, "credential", "decoded password is not valid UTF-8")
        })?;
        t.user = Some(parts[0].to_string());
        t.password = Some(Secret::new(pw));
        t.keystone_url = Some(parts[2].to_string());
        t.tenant = Some(parts[3].to_string());
    } else if section != "master" && section != DEFAULT_SECTION && require_credentials {
        return Err(Error::Config {
            file: ini.source().to_string(),
            message: format!(
                "[{section}]: A credential parameter is mandatory for each target (or the set: user, password, tenant, keystone_url)"
            ),
        });
    } else if section == "master" {
        // Partial credentials in [master]; OS_* fill the rest.
        t.user = get_trim("user")?;
        t.password = get_trim("password")?.map(Secret::new);
        t.keystone_url = get_trim("keystone_url")?;
        t.tenant = get_trim("tenant")?;
    } else {
        t.tenant = get_trim("tenant")?;
    }
    t.forcesyncs = get_set(ini, section, "forcesyncs")?;
    t.replace = get_set(ini, section, "replace")?;
    t.rename = get_set(ini, section, "rename")?;
    t.dontupdate = get_set(ini, section, "dontupdate")?;
    t.ignore_regions = get_set(ini, section, "ignore_regions")?;
    if let Some(cond) = ini.get(section, "metadata_condition")? {
        t.metadata_condition = Condition::compile(&cond)
            .map_err(|e| ini.option_error(section, "metadata_condition", e.0))?;
    }
    t.metadata_set = get_set(ini, section, "metadata_set")?;
    let bool_or = |o: &str, d: bool| -> Result<bool> { Ok(ini.get_bool(section, o)?.unwrap_or(d)) };
    t.only_tenant_images = bool_or("only_tenant_images", true)?;
    t.tenant_id = ini.get(section, "tenant_id")?.map(|s| s.trim().to_string());
    t.obsolete_syncprops = get_set(ini, section, "obsolete_syncprops")?;
    t.support_obsolete_images = bool_or("support_obsolete_images", true)?;
    t.list_images_timeout = match ini.get_int(section, "list_images_timeout")? {
        None => 30,
        Some(n) if n > 0 => n.unsigned_abs(),
        Some(_) => {
            return Err(ini
                .option_error(
                    section,
                    "list_images_timeout",
                    "must be a positive number of seconds",
                )
                .into())
        }
    };
    t.use_keystone_v3 = bool_or("use_keystone_v3", false)?;
    if let Some(d) = get_trim("user_domain_name")? {
        t.user_domain_name = d;
    }
    if let Some(d) = get_trim("project_domain_name")? {
        t.project_domain_name = d;
    }
    if let Some(v) = get_trim("transfer")? {
        t.transfer = Transfer::parse(&v).ok_or_else(|| {
            ini.option_error(
                section,
                "transfer",
                "expected auto, stream or glance-download",
            )
        })?;
    }
    t.max_concurrent_imports = match ini.get_int(section, "max_concurrent_imports")? {
        None => DEFAULT_CONCURRENT_IMPORTS,
        Some(n) if (1..=64).contains(&n) => usize::try_from(n).unwrap_or(1),
        Some(_) => {
            return Err(ini
                .option_error(
                    section,
                    "max_concurrent_imports",
                    "must be a whole number from 1 to 64",
                )
                .into())
        }
    };
    Ok(t)
}

#[cfg(test)]
impl GlanceSyncConfig {
    /// The configuration `text` (named `t`), without overrides or
    /// environment: the unit tests' starting point.
    pub(crate) fn from_test_text(text: String) -> GlanceSyncConfig {
        GlanceSyncConfig::load(
            &ConfigSource::Text {
                name: "t".into(),
                text,
            },
            &LoadOptions::default(),
            &|_: &str| None,
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "[main]\nmaster_region = Valladolid\n[master]\ncredential = user,ZmFrZXBhc3N3b3JkLG9mY291cnNl,\\\n  http://server:4730/v2.0,tenant1\nmetadata_set = nid, type\n[other]\ncredential = user2,ZmFrZXBhc3N3b3JkLG9mY291cnNl,\\\n  http://server2:4730/v2.0,tenant2\nignore_region = Region2\nmetadata_set = type\nmetadata_condition = image.is_public and\\\n 'type' in image.user_properties and image.user_properties['type']\\\n  == 'baseimage'\n";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str, overrides: &[&str], env: &dyn Env) -> Result<GlanceSyncConfig> {
        GlanceSyncConfig::load(
            &ConfigSource::Text {
                name: "test.conf".into(),
                text: text.into(),
            },
            &LoadOptions {
                overrides: overrides.iter().map(|s| s.to_string()).collect(),
                require_credentials: true,
            },
            env,
        )
    }

    #[test]
    fn reads_fixture_config() {
        let c = load(FIXTURE, &[], &no_env).unwrap();
        assert_eq!(c.master_region.as_deref(), Some("Valladolid"));
        let m = c.master();
        assert_eq!(m.user.as_deref(), Some("user"));
        assert_eq!(
            m.password.as_ref().unwrap().expose(),
            "fakepassword,ofcourse"
        );
        assert_eq!(m.keystone_url.as_deref(), Some("http://server:4730/v2.0"));
        assert_eq!(m.tenant.as_deref(), Some("tenant1"));
        assert_eq!(
            m.metadata_set.iter().collect::<Vec<_>>(),
            vec!["nid", "type"]
        );
        let o = c.target("other").unwrap();
        assert!(o.metadata_condition.is_some());
        assert!(
            o.ignore_regions.is_empty(),
            "ignore_region (typo) must be ignored"
        );
        assert!(o.only_tenant_images && o.support_obsolete_images && !o.use_keystone_v3);
        assert_eq!(o.list_images_timeout, 30);
        assert_eq!(o.offline_tenant_id(), "tenant2id");
        assert_eq!(c.max_children, 1);
        assert!(c.images_dir.is_none());
        assert!(!format!("{c:?}").contains("fakepassword"));
    }

    #[test]
    fn overrides_and_defaults() {
        let c = load(
            FIXTURE,
            &[
                "main.max_children=3",
                "only_tenant_images=False",
                "other.metadata_condition=image.name == 'x'",
                "forcesyncs = None",
            ],
            &no_env,
        )
        .unwrap();
        assert_eq!(c.max_children, 3);
        assert!(!c.master().only_tenant_images);
        assert!(c
            .target("other")
            .unwrap()
            .metadata_condition
            .as_ref()
            .unwrap()
            .source()
            .contains("'x'"));
        assert_eq!(
            c.master().forcesyncs.iter().collect::<Vec<_>>(),
            vec!["None"]
        );
        let e = load(FIXTURE, &["nosuch.key=1"], &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nosuch"), "{e}");
        let e = load(FIXTURE, &["novalue"], &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("key=value"), "{e}");
        // A password given on the command line never comes back in an error.
        for arg in [
            "nosuch.password=hunter2",
            "nosuch.credential=u,aHVudGVyMg==,http://k,t",
            "a.b.password=hunter2",
        ] {
            let e = load(FIXTURE, &[arg], &no_env).unwrap_err().to_string();
            assert!(
                !e.contains("hunter2") && !e.contains("aHVudGVyMg") && e.contains("=***"),
                "{e}"
            );
        }
    }

    #[test]
    fn plain_credentials_and_env_fallback() {
        let env = |k: &str| match k {
            "OS_USERNAME" => Some("envuser".to_string()),
            "OS_PASSWORD" => Some("envpw".to_string()),
            "OS_AUTH_URL" => Some("http://k:5000/v3".to_string()),
            "OS_TENANT_NAME" => Some("envtenant".to_string()),
            "OS_REGION_NAME" => Some("RegionOne".to_string()),
            _ => None,
        };
        let c = load("[master]\nuser = u\n", &[], &env).unwrap();
        assert_eq!(c.master_region.as_deref(), Some("RegionOne"));
        assert_eq!(c.master().user.as_deref(), Some("u"));
        assert_eq!(c.master().password.as_ref().unwrap().expose(), "envpw");
        let c = load(
            "[main]\nmaster_region=R\n[t]\nuser=a\npassword=p\nkeystone_url=http://x\ntenant=tt\n",
            &[],
            &env,
        )
        .unwrap();
        assert_eq!(
            c.target("t").unwrap().password.as_ref().unwrap().expose(),
            "p"
        );
        let e = load("[main]\nmaster_region=R\n", &[], &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("OS_USERNAME"), "{e}");
    }

    #[test]
    fn errors_name_option() {
        let e = load("[master]\ncredential = a,b\n", &[], &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("test.conf:2") && e.contains("credential"), "{e}");
        let e = load(&format!("{FIXTURE}[x]\nmetadata_set = a\n"), &[], &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[x]") && e.contains("credential parameter is mandatory"),
            "{e}"
        );
        let e = load(
            &format!("{FIXTURE}only_tenant_images = perhaps\n"),
            &[],
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[other] only_tenant_images") && e.contains("test.conf:15"),
            "{e}"
        );
        let e = load(
            &format!("{FIXTURE}[y]\ncredential=a,cA==,c,d\nmetadata_condition = len(image.name)\n"),
            &[],
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("metadata_condition") && e.contains("len()") && e.contains("test.conf:17"),
            "{e}"
        );
        let e = load("[main]\nmax_children = x\n", &[], &no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_children"), "{e}");
        let e = load(&format!("{FIXTURE}transfer = fast\n"), &[], &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[other] transfer") && e.contains("glance-download"),
            "{e}"
        );
    }

    #[test]
    fn transfer_per_target() {
        let c = load(
            &format!("{FIXTURE}transfer = glance-download\n"),
            &["master.transfer=stream"],
            &no_env,
        )
        .unwrap();
        assert_eq!(c.master().transfer, Transfer::Stream);
        assert_eq!(
            c.target("other").unwrap().transfer,
            Transfer::GlanceDownload
        );
        let c = load(FIXTURE, &[], &no_env).unwrap();
        assert_eq!(c.master().transfer, Transfer::Auto);
    }

    #[test]
    fn max_concurrent_imports_per_target() {
        let c = load(
            &format!("{FIXTURE}max_concurrent_imports = 4\n"),
            &["master.max_concurrent_imports=1"],
            &no_env,
        )
        .unwrap();
        assert_eq!(c.master().max_concurrent_imports, 1);
        assert_eq!(c.target("other").unwrap().max_concurrent_imports, 4);
        let c = load(FIXTURE, &[], &no_env).unwrap();
        assert_eq!(
            c.master().max_concurrent_imports,
            DEFAULT_CONCURRENT_IMPORTS
        );
        for bad in ["0", "65", "two"] {
            let e = load(
                &format!("{FIXTURE}max_concurrent_imports = {bad}\n"),
                &[],
                &no_env,
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("[other] max_concurrent_imports") && e.contains("test.conf:15"),
                "{bad}: {e}"
            );
        }
    }
}
