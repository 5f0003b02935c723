//! The build plan: DIB's phase order, the hook tree merged from every
//! element (as `disk-image-create` copies it into `TMP_HOOKS_PATH`), the
//! scripts each phase runs in dib-run-parts order, the package installs per
//! phase and the environment — computed with no side effects.
//!
//! The infrastructure elements `package-installs`, `install-static`,
//! `install-bin`, `pkg-map`, `svc-map` and `source-repositories` are
//! executed natively: when one is in the element set, its hook scripts are
//! replaced by [`Step::Native`] steps at the same position, so the workspace's
//! own elements can depend on those names without DIB's tree.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::element::Element;
use crate::error::{Error, Result};
use crate::package_installs::{self, PackageInstalls, PackageRequest};

/// One DIB phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Phase {
    /// The hook directory name (`install.d`, ...).
    pub dir: &'static str,
    /// Runs inside the chroot.
    pub in_target: bool,
    /// `TARGET_ROOT` is set (root.d and cleanup.d).
    pub target_root: bool,
}

/// DIB's phases in the order `disk-image-create` runs them.
pub const PHASES: [Phase; 10] = [
    Phase {
        dir: "root.d",
        in_target: false,
        target_root: true,
    },
    Phase {
        dir: "extra-data.d",
        in_target: false,
        target_root: false,
    },
    Phase {
        dir: "pre-install.d",
        in_target: true,
        target_root: false,
    },
    Phase {
        dir: "install.d",
        in_target: true,
        target_root: false,
    },
    Phase {
        dir: "post-install.d",
        in_target: true,
        target_root: false,
    },
    Phase {
        dir: "post-root.d",
        in_target: false,
        target_root: false,
    },
    Phase {
        dir: "block-device.d",
        in_target: false,
        target_root: false,
    },
    Phase {
        dir: "pre-finalise.d",
        in_target: false,
        target_root: false,
    },
    Phase {
        dir: "finalise.d",
        in_target: true,
        target_root: false,
    },
    Phase {
        dir: "cleanup.d",
        in_target: false,
        target_root: true,
    },
];

/// The phase called `dir` (`install.d`; `install` is accepted too).
pub fn phase(dir: &str) -> Option<Phase> {
    PHASES
        .iter()
        .copied()
        .find(|p| p.dir == dir || p.dir.strip_suffix(".d") == Some(dir))
}

/// A file of the merged hook tree and the element it comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HookFile {
    /// File (or directory) name inside its hook directory.
    pub name: String,
    /// The element that ships it.
    pub element: String,
    /// Its source path.
    pub source: PathBuf,
    /// For install-types scripts: the `<element>-<type>-install`
    /// sub-directory of `install.d` it is linked from.
    pub via: Option<String>,
}

/// What an infrastructure element does, natively.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum NativeStep {
    /// Install (or with `uninstall`, remove) the phase's package-installs
    /// list, plus legacy `package-installs-*` files of the phase directory.
    PackageInstalls {
        /// Remove instead of install.
        uninstall: bool,
        /// The packages (pre-pkg-map names) and their elements.
        packages: Vec<PackageRequest>,
    },
    /// Copy every element's `static/` tree into the root (`install-static`).
    InstallStatic,
    /// Install every element's `bin/` files to `/usr/local/bin` (`install-bin`).
    InstallBin,
    /// Copy each element's `pkg-map` to `/usr/share/pkg-map/<element>`.
    PkgMapDir,
    /// Write the merged svc-map to `/usr/share/svc-map/services`.
    SvcMap,
    /// Fetch and copy the `source-repository-*` entries (`source-repositories`).
    SourceRepositories,
    /// `-p` packages, installed after install.d.
    ExtraPackages(Vec<String>),
    /// The `dpkg` element's `root.d/50-shared-apt-cache`: the shared apt
    /// cache bound on the tree's archive, this build's copy of it when
    /// the executor has one ([`crate::apt_cache`]); nothing when
    /// `DIB_APT_LOCAL_CACHE=0`.
    SharedAptCache,
}

/// One step of a phase.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Step {
    /// An element's executable hook script.
    Script(HookFile),
    /// A native step standing in for an infrastructure element's script.
    Native {
        /// The script name it takes the place of (orders it).
        name: String,
        /// The element it stands for.
        element: String,
        /// What it does.
        step: NativeStep,
    },
}

impl Step {
    /// The name the step sorts by.
    pub fn name(&self) -> &str {
        match self {
            Step::Script(h) => &h.name,
            Step::Native { name, .. } => name,
        }
    }
}

/// One phase's ordered steps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PhasePlan {
    /// The phase.
    pub phase: Phase,
    /// Steps in dib-run-parts order.
    pub steps: Vec<Step>,
    /// Files present but skipped (not executable, or a name dib-run-parts refuses).
    pub skipped: Vec<HookFile>,
}

/// Everything a build will run, as plain values.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildPlan {
    /// The expanded elements, in order.
    pub elements: Vec<Element>,
    /// The merged hook tree: directory name → files (the top-level files of
    /// elements under "").
    pub hooks: BTreeMap<String, Vec<HookFile>>,
    /// `environment.d` files in the order they are sourced.
    pub environment_files: Vec<HookFile>,
    /// The phases in DIB order with their steps.
    pub phases: Vec<PhasePlan>,
    /// The squashed package-installs (empty unless `package-installs` is an element).
    pub packages: PackageInstalls,
    /// The environment every hook starts from (before `environment.d`).
    /// Serialised with the values of `*PASSWORD*`, `*SECRET*`, `*TOKEN*`
    /// and `*KEY*` variables replaced by `<redacted>`.
    #[serde(serialize_with = "redacted")]
    pub environment: BTreeMap<String, String>,
}

/// Whether a variable's value must not be shown.
pub fn is_secret_variable(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY"]
        .iter()
        .any(|w| n.contains(w))
}

fn redacted<S: serde::Serializer>(
    env: &BTreeMap<String, String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(env.len()))?;
    for (k, v) in env {
        if is_secret_variable(k) {
            m.serialize_entry(k, "<redacted>")?;
        } else {
            m.serialize_entry(k, v)?;
        }
    }
    m.end()
}

/// Infrastructure elements' scripts that run natively: (element, phase, script).
const NATIVE: &[(&str, &str, &str)] = &[
    (
        "package-installs",
        "extra-data.d",
        "99-squash-package-install",
    ),
    ("package-installs", "pre-install.d", "10-package-installs"),
    ("package-installs", "pre-install.d", "99-package-uninstalls"),
    ("package-installs", "install.d", "01-package-installs"),
    ("package-installs", "install.d", "99-package-uninstalls"),
    ("package-installs", "post-install.d", "00-package-installs"),
    (
        "package-installs",
        "post-install.d",
        "95-package-uninstalls",
    ),
    ("install-static", "install.d", "10-install-static-files"),
    ("install-bin", "pre-install.d", "01-install-bin"),
    ("pkg-map", "extra-data.d", "10-create-pkg-map-dir"),
    ("svc-map", "extra-data.d", "10-merge-svc-map-files"),
    ("svc-map", "extra-data.d", "11-copy-svc-map-file"),
    (
        "source-repositories",
        "extra-data.d",
        "98-source-repositories",
    ),
];

/// dib-run-parts' default name filter `^[0-9A-Za-z_-]+$`.
pub fn runnable_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The key of `LANG=C sort -n`: the leading (optionally negative) number,
/// then the whole name byte-wise.
pub fn run_parts_key(name: &str) -> (i128, Vec<u8>) {
    let b = name.as_bytes();
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    let n: String = digits
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .map(|&c| c as char)
        .collect();
    let v: i128 = n.parse().unwrap_or(0);
    (if neg { -v } else { v }, b.to_vec())
}

/// Sort names as dib-run-parts does.
pub fn sort_run_parts<T>(items: &mut [T], name: impl Fn(&T) -> &str) {
    items.sort_by_key(|a| run_parts_key(name(a)));
}

/// `environment.d` name filter `[0-9A-Za-z_.-]+`.
fn env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Merge the hook directories of `elements` as DIB's `generate_hooks` does:
/// every sub-directory except `tests` and `__pycache__`; a file name shipped
/// twice in one directory is an error (directories of the same name, such
/// as `static/etc`, are merged); top-level files (under "") are overwritten
/// by later elements.
pub fn merge_hooks(elements: &[Element]) -> Result<BTreeMap<String, Vec<HookFile>>> {
    let mut out: BTreeMap<String, Vec<HookFile>> = BTreeMap::new();
    for el in elements {
        let rd = std::fs::read_dir(&el.path).map_err(|source| Error::Io {
            path: el.path.clone(),
            source,
        })?;
        let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let Some(name) = p.file_name().and_then(|n| n.to_str()).map(String::from) else {
                continue;
            };
            if p.is_dir() {
                if name == "tests" || name == "__pycache__" {
                    continue;
                }
                let list = out.entry(name.clone()).or_default();
                let rd = std::fs::read_dir(&p).map_err(|source| Error::Io {
                    path: p.clone(),
                    source,
                })?;
                let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                files.sort();
                for f in files {
                    let fname = f
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    // as DIB's copy_hooks_not_overwrite: a name already
                    // copied as a regular file is a duplicate; directories
                    // (static/etc, ...) are merged, later elements' files win
                    if let Some(first) = list.iter().find(|h| h.name == fname && h.source.is_file())
                    {
                        return Err(Error::DuplicateHook {
                            dir: name.clone(),
                            name: fname,
                            first: first.element.clone(),
                            second: el.name.clone(),
                        });
                    }
                    list.push(HookFile {
                        name: fname,
                        element: el.name.clone(),
                        source: f,
                        via: None,
                    });
                }
            } else if p.is_file() && !name.ends_with(".pyc") {
                let list = out.entry(String::new()).or_default();
                list.retain(|h| h.name != name);
                list.push(HookFile {
                    name,
                    element: el.name.clone(),
                    source: p,
                    via: None,
                });
            }
        }
    }
    Ok(out)
}

/// install-types: the scripts of `install.d/<prefix>-<type>-install/`
/// directories whose type is the one chosen for `<prefix>`
/// (`DIB_INSTALLTYPE_<prefix, - as _>`, else `DIB_DEFAULT_INSTALLTYPE`, else
/// `source`), as DIB links them into `install.d`.
fn install_type_scripts(
    hooks: &BTreeMap<String, Vec<HookFile>>,
    env: &BTreeMap<String, String>,
) -> Vec<HookFile> {
    let default = env
        .get("DIB_DEFAULT_INSTALLTYPE")
        .cloned()
        .unwrap_or_else(|| "source".into());
    // prefixes named by DIB_INSTALLTYPE_* variables
    let named: BTreeMap<String, String> = env
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("DIB_INSTALLTYPE_")
                .map(|p| (p.replace('_', "-"), v.clone()))
        })
        .collect();
    let mut out = Vec::new();
    for h in hooks.get("install.d").into_iter().flatten() {
        if !h.source.is_dir() {
            continue;
        }
        let Some(stem) = h.name.strip_suffix("-install") else {
            continue;
        };
        let Some((prefix, kind)) = stem.rsplit_once('-') else {
            continue;
        };
        let chosen = named.get(prefix).unwrap_or(&default);
        if kind != chosen {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&h.source) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if runnable_name(&name) && is_executable_file(&f) {
                out.push(HookFile {
                    name,
                    element: h.element.clone(),
                    source: f,
                    via: Some(h.name.clone()),
                });
            }
        }
    }
    out
}

/// The `environment.d` files of a merged hook tree in sourcing order.
fn environment_files(hooks: &BTreeMap<String, Vec<HookFile>>) -> Vec<HookFile> {
    let mut files: Vec<HookFile> = hooks
        .get("environment.d")
        .map(|l| {
            l.iter()
                .filter(|h| env_name(&h.name) && h.source.is_file())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    sort_run_parts(&mut files, |h| &h.name);
    files
}

impl BuildPlan {
    /// Plan a build of `elements` (already expanded) with `environment`
    /// (the `DIB_*` and documented variables the hooks start from; `ARCH`
    /// and the variables `when:` conditions name must be there — include
    /// what the OS element's `environment.d` would set, such as
    /// `DISTRO_NAME`, see [`crate::executor::source_environment`]).
    /// `extra_packages` are `-p` packages, installed after install.d.
    pub fn new(
        elements: Vec<Element>,
        environment: BTreeMap<String, String>,
        extra_packages: &[String],
    ) -> Result<BuildPlan> {
        let hooks = merge_hooks(&elements)?;
        let has = |n: &str| elements.iter().any(|e| e.name == n);
        let packages = if has("package-installs") {
            package_installs::squash(&elements, &environment)?
        } else {
            PackageInstalls::default()
        };
        let environment_files = environment_files(&hooks);

        let mut phases = Vec::new();
        for ph in PHASES {
            let mut steps = Vec::new();
            let mut skipped = Vec::new();
            for h in hooks.get(ph.dir).into_iter().flatten() {
                let native = NATIVE
                    .iter()
                    .any(|(e, p, s)| *e == h.element && *p == ph.dir && *s == h.name);
                if native {
                    continue;
                }
                if runnable_name(&h.name) && is_executable_file(&h.source) {
                    steps.push(Step::Script(h.clone()));
                } else if h.source.is_file() {
                    skipped.push(h.clone());
                }
            }
            for (el, p, s) in NATIVE {
                if *p != ph.dir || !has(el) {
                    continue;
                }
                let step = match *s {
                    "99-squash-package-install"
                    | "11-copy-svc-map-file"
                    | "99-enable-install-types" => continue,
                    "10-install-static-files" => NativeStep::InstallStatic,
                    "01-install-bin" => NativeStep::InstallBin,
                    "10-create-pkg-map-dir" => NativeStep::PkgMapDir,
                    "10-merge-svc-map-files" => NativeStep::SvcMap,
                    "98-source-repositories" => NativeStep::SourceRepositories,
                    _ => {
                        let uninstall = s.ends_with("uninstalls");
                        let lists = packages.phase(ph.dir);
                        let mut pk = if uninstall {
                            lists.uninstall
                        } else {
                            lists.install
                        };
                        for h in hooks.get(ph.dir).into_iter().flatten() {
                            if let Some(e) = h.name.strip_prefix("package-installs-") {
                                pk.extend(legacy_file(&h.source, e, uninstall)?);
                            }
                        }
                        NativeStep::PackageInstalls {
                            uninstall,
                            packages: pk,
                        }
                    }
                };
                steps.push(Step::Native {
                    name: s.to_string(),
                    element: el.to_string(),
                    step,
                });
            }
            if ph.dir == "install.d" && has("install-types") {
                for h in install_type_scripts(&hooks, &environment) {
                    steps.retain(|s| s.name() != h.name);
                    steps.push(Step::Script(h));
                }
            }
            sort_run_parts(&mut steps, |s| s.name());
            if ph.dir == "install.d" && !extra_packages.is_empty() {
                // do_extra_package_install: after install.d, before post-install.d
                steps.push(Step::Native {
                    name: "zz-extra-packages".into(),
                    element: String::new(),
                    step: NativeStep::ExtraPackages(extra_packages.to_vec()),
                });
            }
            phases.push(PhasePlan {
                phase: ph,
                steps,
                skipped,
            });
        }
        Ok(BuildPlan {
            elements,
            hooks,
            environment_files,
            phases,
            packages,
            environment,
        })
    }

    /// Like [`BuildPlan::new`], but `environment` is first completed by
    /// sourcing the elements' `environment.d` files on the host (bash, as
    /// before each phase) so `when:` conditions see what the elements set
    /// (`DISTRO_NAME`, `DIB_RELEASE` defaults, ...). The hooks still start from
    /// `environment` itself.
    pub fn with_element_environment(
        elements: Vec<Element>,
        environment: BTreeMap<String, String>,
        extra_packages: &[String],
    ) -> Result<BuildPlan> {
        if !elements.iter().any(|e| e.name == "package-installs") {
            return BuildPlan::new(elements, environment, extra_packages);
        }
        let hooks = merge_hooks(&elements)?;
        let files: Vec<String> = environment_files(&hooks)
            .iter()
            .map(|h| h.source.display().to_string())
            .collect();
        let mut sourcing_env = environment.clone();
        crate::executor::dib_defaults(&mut sourcing_env, &elements);
        let full = crate::executor::source_environment(&files, &sourcing_env, None, None).map_err(
            |reason| Error::Environment {
                phase: "planning (package-installs)".into(),
                reason,
            },
        )?;
        let mut plan = BuildPlan::new(elements, full, extra_packages)?;
        plan.environment = environment;
        Ok(plan)
    }

    /// The plan of phase `dir`.
    pub fn phase(&self, dir: &str) -> Option<&PhasePlan> {
        let p = phase(dir)?;
        self.phases.iter().find(|x| x.phase == p)
    }

    /// `IMAGE_ELEMENT`: the element names, space separated.
    pub fn image_element(&self) -> String {
        self.elements
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A human-readable listing (for dry runs).
    pub fn describe(&self) -> String {
        let mut s = format!("elements: {}\n", self.image_element());
        for ph in &self.phases {
            if ph.steps.is_empty() {
                continue;
            }
            s.push_str(&format!(
                "{}{}:\n",
                ph.phase.dir,
                if ph.phase.in_target {
                    " (in chroot)"
                } else {
                    ""
                }
            ));
            for st in &ph.steps {
                match st {
                    Step::Script(h) => s.push_str(&format!("  {} [{}]\n", h.name, h.element)),
                    Step::Native {
                        name,
                        element,
                        step,
                    } => s.push_str(&format!("  {name} [{element}, native] {step:?}\n")),
                }
            }
        }
        s
    }
}

/// A legacy `package-installs-<element>` file: every line is installed (a
/// leading `-` stripped); lines with a leading `-` are also uninstalled.
fn legacy_file(path: &Path, element: &str, uninstall: bool) -> Result<Vec<PackageRequest>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !uninstall || l.starts_with('-'))
        .map(|l| PackageRequest {
            package: l.strip_prefix('-').unwrap_or(l).to_string(),
            element: element.to_string(),
        })
        .collect())
}
