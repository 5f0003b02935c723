//! GlanceSync configuration (`/etc/glancesync.conf` format): the types
//! here, reading and checking a file in [`read`].

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::condition::Condition;
use crate::error::{Error, Result};
use ini_config::Dialect;
pub use secret::Secret;

mod read;
pub use read::{join_backslash_lines, split_list};

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
mod tests;
