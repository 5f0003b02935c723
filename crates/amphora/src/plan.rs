//! What `diskimage-create.sh` computes before it calls `disk-image-create`:
//! the element sequence, the exported variables, the element search path
//! and the build options, as one plain value ([`AmphoraPlan`]) computed
//! from the options and a snapshot of the environment ([`Env`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::options::{BaseOs, ImageType, Options, RootPassword};

/// The variables the original reads, as a plain map (a snapshot of the
/// process environment, or a test's own values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(pub BTreeMap<String, String>);

impl Env {
    /// Snapshot the process environment (UTF-8 variables only).
    pub fn from_process() -> Env {
        Env(std::env::vars().collect())
    }

    /// A variable's value when set and non-empty (the shell's `[ "$X" ]`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `${NAME:-default}`.
    pub fn or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }
}

/// Where the amphora elements come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementDirs {
    /// The amphora elements: `$OCTAVIA_REPO_PATH/elements`, else this
    /// workspace's own `crates/amphora/elements`, else the system's
    /// `octavia-image-elements`.
    pub amphora: PathBuf,
    /// diskimage-builder's element tree (`base`, `vm`, the distro elements).
    pub dib: PathBuf,
}

/// This crate's own amphora elements, when the source tree is where it was
/// built, else installed beside the binary (`../share/amphora-create/elements`).
pub fn own_elements_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("elements");
    if d.is_dir() {
        return Some(d);
    }
    let exe = std::env::current_exe().ok()?;
    let d = exe
        .parent()?
        .parent()?
        .join("share/amphora-create/elements");
    d.is_dir().then_some(d)
}

fn system_elements(name: &str) -> Option<PathBuf> {
    ["/usr/share", "/usr/local/share"]
        .iter()
        .map(|p| Path::new(p).join(name))
        .find(|p| p.is_dir())
}

/// `site-packages/diskimage_builder/elements` of the Python environment a
/// `disk-image-create` script belongs to.
fn dib_elements_beside(script: &Path) -> Option<PathBuf> {
    let venv = script.parent()?.parent()?;
    for lib in ["lib", "lib64", "local/lib"] {
        let Ok(rd) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        for e in rd.flatten() {
            for sub in ["site-packages", "dist-packages"] {
                let p = e.path().join(sub).join("diskimage_builder/elements");
                if p.is_dir() {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// Find the element directories as the original finds its own and
/// diskimage-builder: `OCTAVIA_REPO_PATH` (else ours, else the system's
/// `octavia-image-elements`); `DIB_REPO_PATH` (default: beside the Octavia
/// repository) holding `diskimage_builder/elements`, else the
/// diskimage-builder that `disk-image-create` on `PATH` belongs to.
/// A missing tree exits 1, as in the original.
pub fn find_element_dirs(env: &Env) -> Result<ElementDirs> {
    let amphora = match env.get("OCTAVIA_REPO_PATH") {
        Some(repo) => {
            let d = Path::new(repo).join("elements");
            if d.is_dir() {
                d
            } else {
                system_elements("octavia-image-elements").ok_or_else(|| Error::MissingElements {
                    what: "Octavia elements directory".into(),
                    path: d.display().to_string(),
                })?
            }
        }
        None => own_elements_dir()
            .or_else(|| system_elements("octavia-image-elements"))
            .ok_or_else(|| Error::MissingElements {
                what: "Octavia elements directory".into(),
                path: format!("{}/elements", env!("CARGO_MANIFEST_DIR")),
            })?,
    };
    let repo_default = env
        .get("OCTAVIA_REPO_PATH")
        .and_then(|r| Path::new(r).parent())
        .map(|p| p.join("diskimage-builder"));
    let dib_repo = env.get("DIB_REPO_PATH").map(PathBuf::from).or(repo_default);
    let mut looked = Vec::new();
    if let Some(repo) = &dib_repo {
        let d = repo.join("diskimage_builder/elements");
        if d.is_dir() {
            return Ok(ElementDirs { amphora, dib: d });
        }
        looked.push(d.display().to_string());
    }
    if let Some(path) = env.get("PATH") {
        for dir in path.split(':').filter(|d| !d.is_empty()) {
            let script = Path::new(dir).join("disk-image-create");
            if script.is_file() {
                let real = std::fs::canonicalize(&script).unwrap_or(script);
                if let Some(d) = dib_elements_beside(&real) {
                    return Ok(ElementDirs { amphora, dib: d });
                }
            }
        }
    }
    looked.push("disk-image-create in PATH".into());
    Err(Error::MissingElements {
        what: "diskimage-builder elements".into(),
        path: looked.join(" or "),
    })
}

/// Everything the original computes before calling `disk-image-create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmphoraPlan {
    /// The base OS.
    pub base_os: BaseOs,
    /// `DIB_RELEASE`.
    pub release: String,
    /// The element list given to `disk-image-create` (before its own
    /// `base`/block-device additions and the dependency expansion).
    pub elements: Vec<String>,
    /// `ELEMENTS_PATH` as exported: the amphora elements, then
    /// `DIB_LOCAL_ELEMENTS_PATH` (a user's own `ELEMENTS_PATH` first).
    pub elements_path: Vec<PathBuf>,
    /// diskimage-builder's element tree, searched after `elements_path`.
    pub dib_elements: PathBuf,
    /// Variables exported to the build (`DIB_PASSWORD` excluded: see
    /// [`AmphoraPlan::root_password`]).
    pub exports: BTreeMap<String, String>,
    /// `-r`: exported as `DIB_PASSWORD` to the build only.
    pub root_password: Option<RootPassword>,
    /// `-a` (None: the host's).
    pub arch: Option<String>,
    /// Output file.
    pub output: PathBuf,
    /// Output type.
    pub image_type: ImageType,
    /// Size, GB.
    pub image_size: u64,
    /// Image cache (absolute).
    pub cache_dir: PathBuf,
    /// `--no-tmpfs`.
    pub no_tmpfs: bool,
    /// `-x`.
    pub trace: bool,
    /// `-l`.
    pub logfile: Option<PathBuf>,
    /// `-w` (the temporary directory is made inside it).
    pub working_dir: PathBuf,
    /// Lines the original prints before building (`-g`, root password).
    pub notices: Vec<String>,
}

/// The element sequence of the original, in its order (§5.4), for `o` and
/// the environment (`AMP_element_sequence`, `DIB_ELEMENTS`,
/// `DIB_LOCAL_ELEMENTS`).
pub fn element_sequence(o: &Options, env: &Env) -> Vec<String> {
    let os = o.base_os;
    let mut seq: Vec<String> = env
        .or("AMP_element_sequence", "base vm")
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut push = |s: &str| seq.push(s.to_string());
    push(os.element());
    push(&o.backend);
    if o.root_password.is_some() {
        push("root-passwd");
    }
    for e in [
        "rebind-sshd",
        "no-resolvconf",
        "amphora-agent",
        "octavia-lib",
        "sos",
        "cloud-init-datasources",
        "remove-default-ints",
    ] {
        push(e);
    }
    if os.is_red_hat() {
        push(if o.full_mac {
            "amphora-selinux"
        } else {
            "selinux-permissive"
        });
    }
    if os == BaseOs::UbuntuMinimal {
        push("amphora-apparmor");
    }
    if os.is_red_hat() {
        push("disable-makecache");
    }
    for e in [
        "keepalived-octavia",
        "ipvsadmin",
        "pip-cache",
        "certs-ramfs",
    ] {
        push(e);
    }
    if o.cpu_pinning {
        push("cpu-pinning");
    }
    if o.disable_sshd {
        push("remove-sshd");
    }
    if o.fips {
        push("amphora-fips");
    }
    if let Some(all) = env.get("DIB_ELEMENTS") {
        seq = all.split_whitespace().map(String::from).collect();
    }
    if let Some(local) = env.get("DIB_LOCAL_ELEMENTS") {
        seq.extend(local.split_whitespace().map(String::from));
    }
    seq
}

/// The variables the original exports, for `o` and the environment (every
/// `${X:-default}` of the script; values already set are kept).
pub fn exports(o: &Options, env: &Env) -> (BTreeMap<String, String>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut notices = Vec::new();
    let os = o.base_os;
    if let Some(branch) = &o.branch {
        match env.get("DIB_REPOREF_amphora_agent") {
            None => {
                notices.push(format!("Building image with amphora agent from {branch}."));
                out.insert("DIB_REPOREF_amphora_agent".into(), branch.clone());
            }
            Some(r) => notices.push(format!("Environment variable DIB_REPOREF_amphora_agent is set. Building the image with amphora agent {r}.")),
        }
        let url = format!(
            "https://opendev.org/openstack/requirements/raw/branch/{branch}/upper-constraints.txt"
        );
        match env.get("DIB_REPOLOCATION_upper_constraints") {
            None => {
                notices.push(format!("Using upper constraints from {url}."));
                out.insert("DIB_REPOLOCATION_upper_constraints".into(), url);
            }
            Some(l) => notices.push(format!("Environment variable DIB_REPOLOCATION_upper_constraints is set. Building the image with upper-constraints.txt from {l}.")),
        }
    }
    let release = o
        .release
        .clone()
        .unwrap_or_else(|| os.default_release().to_string());
    out.insert("DIB_RELEASE".into(), release.clone());
    if os == BaseOs::UbuntuMinimal {
        out.insert(
            "DIB_UBUNTU_KERNEL".into(),
            o.kernel
                .clone()
                .unwrap_or_else(|| "linux-image-virtual".into()),
        );
    }
    out.insert(
        "DIB_OCTAVIA_AMP_USE_NFTABLES".into(),
        env.or("DIB_OCTAVIA_AMP_USE_NFTABLES", "True"),
    );
    let datasources = env.or("CLOUD_INIT_DATASOURCES", "ConfigDrive");
    out.insert("CLOUD_INIT_DATASOURCES".into(), datasources.clone());
    out.insert("DIB_CLOUD_INIT_DATASOURCES".into(), datasources);
    if os == BaseOs::Rhel && release == "8" {
        out.insert(
            "DIB_INSTALLTYPE_pip_and_virtualenv".into(),
            "package".into(),
        );
    }
    if o.package_install {
        out.insert("DIB_INSTALLTYPE_amphora_agent".into(), "package".into());
    }
    if os == BaseOs::CentosMinimal {
        out.insert("DIB_YUM_MINIMAL_CREATE_INTERFACES".into(), "0".into());
    }
    out.insert(
        "DIB_OCTAVIA_AMP_USE_SSH".into(),
        env.or(
            "DIB_OCTAVIA_AMP_USE_SSH",
            if o.disable_sshd { "False" } else { "True" },
        ),
    );
    out.insert("DIB_GRUB_TIMEOUT".into(), env.or("DIB_GRUB_TIMEOUT", "0"));
    if env.get("USE_PYTHON3") == Some("False") {
        out.insert("DIB_PYTHON_VERSION".into(), "2".into());
    }
    if o.root_password.is_some() {
        notices
            .push("Warning: Using a root password in the image, NOT FOR PRODUCTION USAGE.".into());
    }
    (out, notices)
}

/// The checks the original makes on the options before touching the host:
/// RHEL/Fedora need at least 3 GB; RHEL needs `DIB_LOCAL_IMAGE`.
pub fn check_options(o: &Options, env: &Env) -> Result<()> {
    if matches!(o.base_os, BaseOs::Rhel | BaseOs::Fedora) && o.image_size < 3 {
        return Err(Error::Check {
            message: "RHEL/Fedora based amphora requires an image size of at least 3GB (option -s)"
                .into(),
        });
    }
    if o.base_os == BaseOs::Rhel && env.get("DIB_LOCAL_IMAGE").is_none() {
        return Err(Error::Check {
            message: "DIB_LOCAL_IMAGE variable must be set and point to a RHEL base cloud image. Exiting.\nFor more information, see the README file of diskimage-builder's rhel element".into(),
        });
    }
    Ok(())
}

/// Compute the plan: options checked, element directories found, the
/// sequence, the exports and the build options. `cwd` resolves the
/// defaults that depend on it (output, working directory). Creates nothing.
pub fn plan(o: &Options, env: &Env, cwd: &Path) -> Result<AmphoraPlan> {
    check_options(o, env)?;
    let dirs = find_element_dirs(env)?;
    let mut elements_path: Vec<PathBuf> = env
        .get("ELEMENTS_PATH")
        .map(diskimage::parse_elements_path)
        .unwrap_or_default();
    elements_path.push(dirs.amphora.clone());
    if let Some(local) = env.get("DIB_LOCAL_ELEMENTS_PATH") {
        elements_path.extend(diskimage::parse_elements_path(local));
    }
    let (mut exports, notices) = exports(o, env);
    // debian-minimal: the security suite from the machine's apt sources
    // (diskimage-builder's default is an upstream host).
    if o.base_os == BaseOs::DebianMinimal && env.get("DIB_DEBIAN_SECURITY_MIRROR").is_none() {
        let release = exports.get("DIB_RELEASE").cloned().unwrap_or_default();
        if let Some(m) = crate::apt::security_mirror(Path::new("/"), &release) {
            exports.insert("DIB_DEBIAN_SECURITY_MIRROR".into(), m);
        }
    }
    let home = env
        .get("HOME")
        .map(PathBuf::from)
        .or_else(dirs::home_dir)
        .unwrap_or_else(|| PathBuf::from("/"));
    let cache_dir = match &o.cache_dir {
        Some(c) => cwd.join(c),
        None => home.join(".cache/image-create"),
    };
    Ok(AmphoraPlan {
        base_os: o.base_os,
        release: exports.get("DIB_RELEASE").cloned().unwrap_or_default(),
        elements: element_sequence(o, env),
        elements_path,
        dib_elements: dirs.dib,
        exports,
        root_password: o.root_password.clone(),
        arch: o.arch.clone(),
        output: o
            .output
            .clone()
            .unwrap_or_else(|| cwd.join("amphora-x64-haproxy.qcow2")),
        image_type: o.image_type,
        image_size: o.image_size,
        cache_dir,
        no_tmpfs: o.no_tmpfs,
        trace: o.trace,
        logfile: o.logfile.as_ref().map(|l| cwd.join(l)),
        working_dir: o
            .working_dir
            .as_ref()
            .map(|w| cwd.join(w))
            .unwrap_or_else(|| cwd.to_path_buf()),
        notices,
    })
}

impl AmphoraPlan {
    /// The whole search path of the build: `ELEMENTS_PATH` as exported,
    /// then diskimage-builder's elements, then the diskimage crate's own.
    pub fn search_path(&self) -> Vec<PathBuf> {
        let joined = self
            .elements_path
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        diskimage::elements_search_path(Some(&joined), std::slice::from_ref(&self.dib_elements))
    }

    /// The build's architecture in DIB's spelling (`-a`, else the host's).
    pub fn dib_arch(&self) -> String {
        self.arch.clone().unwrap_or_else(|| {
            match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                "powerpc64" => "ppc64le",
                "arm" => "armhf",
                other => other,
            }
            .to_string()
        })
    }

    /// The final expanded element list, as `disk-image-create` expands it
    /// (`base` first, a default `block-device-*` for `vm`, then every
    /// dependency over [`AmphoraPlan::search_path`]).
    pub fn expanded_elements(&self) -> Result<Vec<String>> {
        let opts = diskimage::ImageElementOptions {
            arch: self.dib_arch(),
            ..Default::default()
        };
        let els = diskimage::expand_image_elements(&self.search_path(), &self.elements, &opts)?;
        Ok(els.into_iter().map(|e| e.name).collect())
    }

    /// The `disk-image-create` command line the original would run (for
    /// `--dry-run`; the password is never part of it).
    pub fn disk_image_create_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(l) = &self.logfile {
            a.push(format!("--logfile={}", l.display()));
        }
        if self.trace {
            a.push("-x".into());
        }
        if let Some(arch) = &self.arch {
            a.extend(["-a".into(), arch.clone()]);
        }
        a.extend([
            "-o".into(),
            self.output.display().to_string(),
            "-t".into(),
            self.image_type.as_str().into(),
            "--image-size".into(),
            self.image_size.to_string(),
            "--image-cache".into(),
            self.cache_dir.display().to_string(),
        ]);
        if self.no_tmpfs {
            a.push("--no-tmpfs".into());
        }
        a.extend(self.elements.iter().cloned());
        a
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn seq(args: &[&str], env: &[(&str, &str)]) -> String {
        let inv = crate::options::parse_args(args, Path::new("/tmp")).unwrap();
        let env = Env(env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect());
        element_sequence(&inv.options, &env).join(" ")
    }

    const MID: &str = "rebind-sshd no-resolvconf amphora-agent octavia-lib sos cloud-init-datasources remove-default-ints";
    const TAIL: &str = "keepalived-octavia ipvsadmin pip-cache certs-ramfs";

    #[test]
    fn sequence_per_base_os_in_the_originals_order() {
        assert_eq!(
            seq(&[], &[]),
            format!("base vm ubuntu-minimal haproxy-octavia {MID} amphora-apparmor {TAIL}")
        );
        assert_eq!(
            seq(&["-i", "debian-minimal"], &[]),
            format!("base vm debian-minimal haproxy-octavia {MID} {TAIL}")
        );
        for (os, el) in [
            ("fedora", "fedora"),
            ("centos", "centos-minimal"),
            ("rhel", "rhel"),
            ("rocky", "rocky-container"),
        ] {
            assert_eq!(
                seq(&["-i", os], &[]),
                format!("base vm {el} haproxy-octavia {MID} selinux-permissive disable-makecache {TAIL}")
            );
            assert_eq!(
                seq(&["-i", os, "-e"], &[]),
                format!(
                    "base vm {el} haproxy-octavia {MID} amphora-selinux disable-makecache {TAIL}"
                )
            );
        }
        assert_eq!(
            seq(&["-i", "debian", "-r", "pw", "-m", "-n", "-y"], &[]),
            format!("base vm debian-minimal haproxy-octavia root-passwd {MID} {TAIL} cpu-pinning remove-sshd amphora-fips")
        );
    }

    #[test]
    fn environment_overrides() {
        assert_eq!(seq(&[], &[("DIB_ELEMENTS", "a  b")]), "a b");
        assert_eq!(
            seq(&[], &[("DIB_ELEMENTS", "a"), ("DIB_LOCAL_ELEMENTS", "c d")]),
            "a c d"
        );
        assert!(seq(&[], &[("AMP_element_sequence", "base")]).starts_with("base ubuntu-minimal "));
        // Empty values count as unset, as `[ "$X" ]`.
        assert!(seq(&[], &[("DIB_ELEMENTS", "")]).starts_with("base vm "));
    }

    #[test]
    fn exports_follow_the_options() {
        let env = Env::default();
        let o = crate::options::parse_args(
            &["-n", "-p", "-i", "centos", "-g", "stable/x"],
            Path::new("/"),
        )
        .unwrap()
        .options;
        let (e, notes) = exports(&o, &env);
        assert_eq!(e["DIB_OCTAVIA_AMP_USE_SSH"], "False");
        assert_eq!(e["DIB_INSTALLTYPE_amphora_agent"], "package");
        assert_eq!(e["DIB_YUM_MINIMAL_CREATE_INTERFACES"], "0");
        assert_eq!(e["DIB_RELEASE"], "10-stream");
        assert_eq!(e["DIB_REPOREF_amphora_agent"], "stable/x");
        assert_eq!(e["DIB_GRUB_TIMEOUT"], "0");
        assert!(!e.contains_key("DIB_UBUNTU_KERNEL"));
        assert_eq!(notes.len(), 2);
        let env = Env([
            ("DIB_REPOREF_amphora_agent".to_string(), "abc".to_string()),
            (
                "DIB_OCTAVIA_AMP_USE_NFTABLES".to_string(),
                "False".to_string(),
            ),
        ]
        .into());
        let (e, notes) = exports(&o, &env);
        assert!(!e.contains_key("DIB_REPOREF_amphora_agent"));
        assert!(notes[0].contains("amphora agent abc"));
        assert_eq!(e["DIB_OCTAVIA_AMP_USE_NFTABLES"], "False");
    }
}
