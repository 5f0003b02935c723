//! `ge-image create/test` settings, loaded with the `config` crate.
//!
//! Layers, later wins: built-in defaults ([`DEFAULTS_TOML`]) <
//! `/etc/ge-image/config.toml` (or the file given with `--settings`) <
//! the original's variables `FLAVOR`, `FLOATINGIP`, `TEST_ONLY`,
//! `TEST_USING_VM` < `GE_IMAGE_*` variables (`GE_IMAGE_FLAVOR`, ...) < flags.
//!
//! The original's `create_template_<os>.sh` wrappers become the `bases`
//! map: OS name → Glance base image, login user, whether sudo needs a pty.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compute::{BackendKind, OnError};
use crate::error::{Error, Result};

/// The system-wide settings file.
pub const SYSTEM_SETTINGS: &str = "/etc/ge-image/config.toml";

/// The built-in defaults (the original's wrappers, plus `debian12`, the
/// local test image).
pub const DEFAULTS_TOML: &str = r#"
backend = "openstack"
flavor = "m1.small"
base = "debian8"
on_error = "cleanup"
keep_on_failure = false
test_only = false
test_using_vm = false
test_user = "nobody"
test_timeout_secs = 1800
create_timeout_secs = 3600
boot_timeout_secs = 900
ssh_attempts = 25
prepare = true
run_test = true
tester_base = "debian7"
tester_flavor = "m1.tiny"
local_memory_mib = 1024

[bases.ubuntu12]
image = "base_ubuntu_12.04"
user = "ubuntu"
[bases.ubuntu14]
image = "base_ubuntu_14.04"
user = "ubuntu"
[bases.debian7]
image = "base_debian_7"
user = "debian"
[bases.debian8]
image = "base_debian_8"
user = "debian"
[bases.centos6]
image = "base_centos_6"
user = "centos"
sudo_pty = true
[bases.centos7]
image = "base_centos_7"
user = "centos"
sudo_pty = true
[bases.debian12]
image = "ge-test-debian12"
user = "root"
systemd_credentials = true
"#;

/// One base: the original's `create_template_<os>.sh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    /// Glance image name (or id) to boot.
    pub image: String,
    /// Login user of that image (written to `dist_type`).
    pub user: String,
    /// Whether `sudo` needs a terminal there (CentOS): run `create.sh` with a pty.
    #[serde(default)]
    pub sudo_pty: bool,
    /// Whether the image's systemd (252 or later) reads credentials: the
    /// local backend then hands the SSH key over as a systemd credential
    /// instead of writing it into the disk with libguestfs (no appliance
    /// launch per boot).
    #[serde(default)]
    pub systemd_credentials: bool,
}

/// Every setting of `create`/`test`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Where VMs run.
    pub backend: BackendKind,
    /// Nova flavor (`FLAVOR`).
    pub flavor: String,
    /// Floating IP to use (`FLOATINGIP`); OpenStack only.
    #[serde(default)]
    pub floating_ip: Option<String>,
    /// Default base OS when `--base` is not given.
    pub base: String,
    /// What happens to the resources of a failed run.
    pub on_error: OnError,
    /// Keep the test VM and `_rc` image when the test fails.
    pub keep_on_failure: bool,
    /// Only run the test step (`TEST_ONLY`).
    pub test_only: bool,
    /// Run `test.sh` inside a tester VM (`TEST_USING_VM`).
    pub test_using_vm: bool,
    /// Unprivileged user `test.sh` runs as when ge-image runs as root.
    pub test_user: String,
    /// Time limit of `test.sh`.
    pub test_timeout_secs: u64,
    /// Time limit of `create.sh`.
    pub create_timeout_secs: u64,
    /// How long a VM may take to boot and answer SSH.
    pub boot_timeout_secs: u64,
    /// SSH connection attempts (10 s apart on OpenStack, 5 s locally).
    pub ssh_attempts: u32,
    /// Prepare the snapshot (sysprep, shrink, sparsify) before uploading.
    pub prepare: bool,
    /// `ge-image create` runs the test step at its end (`--no-test`: it
    /// stops at the verified upload, see `Pipeline::create_untested`).
    #[serde(default = "yes")]
    pub run_test: bool,
    /// Base of the tester VM of `TEST_USING_VM`.
    pub tester_base: String,
    /// Flavor of the tester VM of `TEST_USING_VM` (the original's `m1.tiny`).
    #[serde(default = "default_tester_flavor")]
    pub tester_flavor: String,
    /// Memory of local VMs, MiB.
    pub local_memory_mib: u32,
    /// CPUs of local VMs; unset: the host's CPUs, at most 4
    /// ([`crate::compute::local::default_cpus`]).
    #[serde(default)]
    pub local_cpus: Option<std::num::NonZeroU32>,
    /// Root of the image folders (default `~/create_ge_images`).
    #[serde(default)]
    pub folder_root: Option<PathBuf>,
    /// The bases by OS name.
    pub bases: BTreeMap<String, Base>,
}

fn yes() -> bool {
    true
}

fn default_tester_flavor() -> String {
    "m1.tiny".into()
}

/// Values given on the command line (highest layer).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--settings FILE` (replaces `/etc/ge-image/config.toml`).
    pub settings_file: Option<PathBuf>,
    /// `--backend`.
    pub backend: Option<BackendKind>,
    /// `--flavor`.
    pub flavor: Option<String>,
    /// `--base`.
    pub base: Option<String>,
    /// `--on-error`.
    pub on_error: Option<OnError>,
    /// `--keep-on-failure`.
    pub keep_on_failure: bool,
    /// `--folder-root`.
    pub folder_root: Option<PathBuf>,
    /// `--no-prepare`.
    pub no_prepare: bool,
    /// `--no-test`.
    pub no_test: bool,
}

/// The original's variables and their settings.
const ORIGINAL_VARIABLES: &[(&str, &str)] = &[
    ("FLAVOR", "flavor"),
    ("FLOATINGIP", "floating_ip"),
    ("TEST_ONLY", "test_only"),
    ("TEST_USING_VM", "test_using_vm"),
];

impl Settings {
    /// Load from the process environment and `overrides`.
    pub fn load(overrides: &Overrides) -> Result<Settings> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(overrides, &env, Path::new(SYSTEM_SETTINGS))
    }

    /// Load with an explicit environment and system file (for tests).
    pub fn load_from(
        overrides: &Overrides,
        env: &[(String, String)],
        system_file: &Path,
    ) -> Result<Settings> {
        use config::{Config, Environment, File, FileFormat};
        let mut b = Config::builder().add_source(File::from_str(DEFAULTS_TOML, FileFormat::Toml));
        b = match &overrides.settings_file {
            Some(f) => {
                if !f.is_file() {
                    return Err(Error::Settings(format!(
                        "--settings {}: no such file",
                        f.display()
                    )));
                }
                b.add_source(
                    File::from(f.as_path())
                        .format(FileFormat::Toml)
                        .required(true),
                )
            }
            None => b.add_source(
                File::from(system_file)
                    .format(FileFormat::Toml)
                    .required(false),
            ),
        };
        // The original's variables: set means "yes" for the two switches.
        let mut originals = config::Map::new();
        for (var, key) in ORIGINAL_VARIABLES {
            if let Some((_, v)) = env.iter().find(|(k, _)| k == var) {
                let value = match *key {
                    "test_only" | "test_using_vm" => (!v.is_empty()).to_string(),
                    _ => v.clone(),
                };
                if !value.is_empty() {
                    originals.insert(key.to_string(), value);
                }
            }
        }
        b = b.add_source(
            Environment::default()
                .source(Some(originals))
                .try_parsing(true),
        );
        let ours: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("GE_IMAGE_") && k != "GE_IMAGE_ACCEL")
            .cloned()
            .collect();
        b = b.add_source(
            Environment::with_prefix("GE_IMAGE")
                .prefix_separator("_")
                .source(Some(ours))
                .try_parsing(true),
        );
        let set = |b: config::ConfigBuilder<config::builder::DefaultState>,
                   key: &str,
                   v: String|
         -> Result<_> {
            b.set_override(key, v)
                .map_err(|e| Error::Settings(format!("--{key}: {e}")))
        };
        if let Some(v) = overrides.backend {
            b = set(b, "backend", v.to_string())?;
        }
        if let Some(v) = &overrides.flavor {
            b = set(b, "flavor", v.clone())?;
        }
        if let Some(v) = &overrides.base {
            b = set(b, "base", v.clone())?;
        }
        if let Some(v) = overrides.on_error {
            let s = match v {
                OnError::Cleanup => "cleanup",
                OnError::Abort => "abort",
                OnError::Keep => "keep",
            };
            b = set(b, "on_error", s.into())?;
        }
        if overrides.keep_on_failure {
            b = set(b, "keep_on_failure", "true".into())?;
        }
        if let Some(v) = &overrides.folder_root {
            b = set(b, "folder_root", v.display().to_string())?;
        }
        if overrides.no_prepare {
            b = set(b, "prepare", "false".into())?;
        }
        if overrides.no_test {
            b = set(b, "run_test", "false".into())?;
        }
        let settings: Settings = b
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| Error::Settings(e.to_string()))?;
        Ok(settings)
    }

    /// The base of OS `os`, or an error listing the known ones.
    pub fn base_for(&self, os: &str) -> Result<&Base> {
        self.bases.get(os).ok_or_else(|| {
            Error::Settings(format!(
                "unknown base '{os}' (known: {})",
                self.bases.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// How the local backend gives VMs of base `os` their SSH key: as a
    /// systemd credential when the base says its systemd reads them, else
    /// with libguestfs (an unknown base: libguestfs).
    pub fn key_injection(&self, os: &str) -> local_vm::KeyInjection {
        match self.bases.get(os) {
            Some(b) if b.systemd_credentials => local_vm::KeyInjection::SystemdCredential,
            _ => local_vm::KeyInjection::Guestfs,
        }
    }

    /// The folder root: the setting, else `~/create_ge_images`.
    pub fn folder_root(&self) -> PathBuf {
        self.folder_root.clone().unwrap_or_else(|| {
            dirs::home_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join("create_ge_images")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_hold_the_original_bases() {
        let s = Settings::load_from(&Overrides::default(), &[], Path::new("/nonexistent")).unwrap();
        assert_eq!(s.flavor, "m1.small");
        assert_eq!(s.backend, BackendKind::Openstack);
        assert_eq!(s.base_for("centos7").unwrap().user, "centos");
        assert!(s.base_for("centos7").unwrap().sudo_pty);
        assert_eq!(s.base_for("ubuntu14").unwrap().image, "base_ubuntu_14.04");
        assert!(!s.base_for("debian8").unwrap().sudo_pty);
        assert_eq!(s.base_for("debian12").unwrap().user, "root");
        let e = s.base_for("windows").unwrap_err().to_string();
        assert!(
            e.contains("unknown base 'windows'") && e.contains("debian12"),
            "{e}"
        );
        assert!(s.prepare && s.run_test);
        let o = Overrides {
            no_prepare: true,
            no_test: true,
            ..Default::default()
        };
        let s = Settings::load_from(&o, &[], Path::new("/nonexistent")).unwrap();
        assert!(!s.prepare && !s.run_test);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "flavor = \"m1.file\"\nbackend = \"local\"\ntest_user = \"tester\"\n[bases.mine]\nimage = \"my_base\"\nuser = \"me\"\n",
        )
        .unwrap();
        // File over defaults.
        let s = Settings::load_from(&Overrides::default(), &[], &file).unwrap();
        assert_eq!(
            (s.flavor.as_str(), s.backend, s.test_user.as_str()),
            ("m1.file", BackendKind::Local, "tester")
        );
        assert_eq!(s.base_for("mine").unwrap().image, "my_base");
        assert!(s.bases.contains_key("centos6"), "defaults stay");
        // The original's variables over the file.
        let e = env(&[
            ("FLAVOR", "m1.var"),
            ("TEST_ONLY", "1"),
            ("FLOATINGIP", "1.2.3.4"),
        ]);
        let s = Settings::load_from(&Overrides::default(), &e, &file).unwrap();
        assert_eq!(s.flavor, "m1.var");
        assert!(s.test_only && !s.test_using_vm);
        assert_eq!(s.floating_ip.as_deref(), Some("1.2.3.4"));
        // GE_IMAGE_* over the original's variables.
        let mut e2 = e.clone();
        e2.extend(env(&[
            ("GE_IMAGE_FLAVOR", "m1.ours"),
            ("GE_IMAGE_TEST_TIMEOUT_SECS", "60"),
        ]));
        let s = Settings::load_from(&Overrides::default(), &e2, &file).unwrap();
        assert_eq!((s.flavor.as_str(), s.test_timeout_secs), ("m1.ours", 60));
        // Local VMs' CPUs: unset (the host's, see default_cpus) unless given.
        assert_eq!(s.local_cpus, None);
        e2.extend(env(&[("GE_IMAGE_LOCAL_CPUS", "2")]));
        let s = Settings::load_from(&Overrides::default(), &e2, &file).unwrap();
        assert_eq!(s.local_cpus.map(|n| n.get()), Some(2));
        let zero = env(&[("GE_IMAGE_LOCAL_CPUS", "0")]);
        let e = Settings::load_from(&Overrides::default(), &zero, &file).unwrap_err();
        assert!(e.to_string().contains("local_cpus"), "{e}");
        // Flags over everything.
        let o = Overrides {
            flavor: Some("m1.flag".into()),
            backend: Some(BackendKind::Openstack),
            on_error: Some(OnError::Keep),
            ..Default::default()
        };
        let s = Settings::load_from(&o, &e2, &file).unwrap();
        assert_eq!(
            (s.flavor.as_str(), s.backend, s.on_error),
            ("m1.flag", BackendKind::Openstack, OnError::Keep)
        );
        // --settings replaces the system file.
        let other = dir.path().join("other.toml");
        std::fs::write(&other, "flavor = \"m1.other\"\n").unwrap();
        let o = Overrides {
            settings_file: Some(other),
            ..Default::default()
        };
        let s = Settings::load_from(&o, &[], &file).unwrap();
        assert_eq!(
            (s.flavor.as_str(), s.backend),
            ("m1.other", BackendKind::Openstack)
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "backend = \"cloudy\"\n").unwrap();
        let e = Settings::load_from(&Overrides::default(), &[], &file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("backend") || e.contains("cloudy"), "{e}");
        let o = Overrides {
            settings_file: Some(dir.path().join("missing.toml")),
            ..Default::default()
        };
        let e = Settings::load_from(&o, &[], &file).unwrap_err().to_string();
        assert!(e.contains("missing.toml"), "{e}");
        let e = Settings::load_from(
            &Overrides::default(),
            &env(&[("GE_IMAGE_TEST_TIMEOUT_SECS", "soon")]),
            &file,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("test_timeout_secs") || e.contains("soon") || e.contains("backend"),
            "{e}"
        );
    }
}
