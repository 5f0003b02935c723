//! Native steps standing in for DIB's infrastructure elements.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Executor;
use crate::error::{Error, Result};
use crate::phases::{NativeStep, Phase};
use crate::pkg_map::PkgMap;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn run(
    ex: &Executor<'_>,
    ph: Phase,
    step: &NativeStep,
    env: &BTreeMap<String, String>,
) -> Result<()> {
    match step {
        NativeStep::PackageInstalls {
            uninstall,
            packages,
        } => {
            let name = if *uninstall {
                "package-uninstalls"
            } else {
                "package-installs"
            };
            if packages.is_empty() {
                return Ok(());
            }
            let distro = env.get("DISTRO_NAME").ok_or_else(|| Error::Script {
                phase: ph.dir.into(),
                script: name.into(),
                element: "package-installs".into(),
                status: "DISTRO_NAME is not set (pkg-map needs the operating-system element's environment)".into(),
            })?;
            let release = env.get("DIB_RELEASE").map(String::as_str);
            // group by element (first-seen order), map through each element's pkg-map
            let mut groups: Vec<(String, Vec<String>)> = Vec::new();
            for r in packages {
                match groups.iter_mut().find(|(e, _)| *e == r.element) {
                    Some((_, v)) => v.push(r.package.clone()),
                    None => groups.push((r.element.clone(), vec![r.package.clone()])),
                }
            }
            let mut pkgs: Vec<String> = Vec::new();
            for (element, names) in groups {
                let map = ex
                    .plan()
                    .elements
                    .iter()
                    .find(|e| e.name == element)
                    .map(|e| e.path.join("pkg-map"))
                    .filter(|p| p.is_file());
                let mapped = match map {
                    Some(p) => PkgMap::load(&p)?.map(distro, release, &names),
                    None => names,
                };
                for m in mapped {
                    if !pkgs.contains(&m) {
                        pkgs.push(m);
                    }
                }
            }
            if pkgs.is_empty() {
                return Ok(());
            }
            let mut args = vec!["install-packages".to_string()];
            if *uninstall {
                args.push("-e".into());
            }
            args.extend(pkgs);
            ex.chroot_command(&args, env, (ph.dir, name, "package-installs"))
        }
        NativeStep::ExtraPackages(pkgs) => {
            let mut args = vec!["install-packages".to_string()];
            args.extend(pkgs.iter().cloned());
            ex.chroot_command(&args, env, (ph.dir, "extra packages (-p)", ""))
        }
        NativeStep::InstallStatic => {
            let src = ex.hooks_path().join("static");
            if src.is_dir() {
                copy_tree(&src, ex.root())?;
            }
            Ok(())
        }
        NativeStep::InstallBin => {
            let src = ex.hooks_path().join("bin");
            let dest = ex.root().join("usr/local/bin");
            std::fs::create_dir_all(&dest).map_err(io(&dest))?;
            let Ok(rd) = std::fs::read_dir(&src) else {
                return Ok(());
            };
            for e in rd.flatten() {
                let p = e.path();
                if !p.is_file() {
                    continue;
                }
                let to = dest.join(e.file_name());
                std::fs::copy(&p, &to).map_err(io(&to))?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(&to))?;
            }
            Ok(())
        }
        NativeStep::PkgMapDir => {
            let dest = ex.root().join("usr/share/pkg-map");
            std::fs::create_dir_all(&dest).map_err(io(&dest))?;
            for el in &ex.plan().elements {
                let f = el.path.join("pkg-map");
                if f.is_file() {
                    let to = dest.join(&el.name);
                    std::fs::copy(&f, &to).map_err(io(&to))?;
                }
            }
            Ok(())
        }
        NativeStep::SvcMap => {
            let distro = env.get("DISTRO_NAME").map(String::as_str).unwrap_or("");
            let map = crate::svc_map::merge(&ex.plan().elements, distro)?;
            let dest = ex.root().join("usr/share/svc-map/services");
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::write(&dest, crate::svc_map::render(&map)).map_err(io(&dest))?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644))
                .map_err(io(&dest))
        }
        NativeStep::SharedAptCache => {
            if env.get("DIB_APT_LOCAL_CACHE").is_some_and(|v| v == "0") {
                return Ok(());
            }
            let dir = match ex.apt_cache() {
                Some(d) => d.to_path_buf(),
                None => {
                    let (Some(cache), Some(distro)) =
                        (env.get("DIB_IMAGE_CACHE"), env.get("DISTRO_NAME"))
                    else {
                        return Err(Error::Script {
                            phase: ph.dir.into(),
                            script: "50-shared-apt-cache".into(),
                            element: "dpkg".into(),
                            status: "DIB_IMAGE_CACHE or DISTRO_NAME is not set".into(),
                        });
                    };
                    let d = Path::new(cache).join("apt").join(distro);
                    std::fs::create_dir_all(&d).map_err(io(&d))?;
                    d
                }
            };
            ex.bind_for_phases(&dir, "var/cache/apt/archives")
        }
        NativeStep::SourceRepositories => {
            let repos = crate::source_repo::plan(&ex.plan().elements, env)?;
            let cache = crate::source_repo::cache_dir(&ex.options().image_cache);
            crate::source_repo::apply(
                &repos,
                &cache,
                ex.root(),
                env.get("DIB_OFFLINE").is_some_and(|v| !v.is_empty()),
            )
        }
    }
}

/// Names rsync's `-C` leaves out (the common part of its CVS exclude list).
fn cvs_excluded(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "RCS",
        "SCCS",
        "CVS",
        "CVS.adm",
        "RCSLOG",
        "cvslog.*",
        "tags",
        "TAGS",
        ".make.state",
        ".nse_depinfo",
        "core",
        ".svn",
        ".git",
        ".hg",
        ".bzr",
    ];
    const SUFFIX: &[&str] = &[
        "~", ".old", ".bak", ".BAK", ".orig", ".rej", ".a", ".olb", ".o", ".obj", ".so", ".exe",
        ".Z", ".elc", ".ln",
    ];
    EXACT.contains(&name)
        || SUFFIX.iter().any(|s| name.ends_with(s))
        || name.starts_with(".#")
        || name.starts_with(",")
        || name.starts_with("_$")
        || (name.starts_with('#') && name.ends_with('#'))
        || name.ends_with('$')
}

/// `rsync -lCr src/ dest/`: directories, files (mode without group/other
/// write) and symlinks copied over what is there; CVS-style junk skipped.
pub(crate) fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let mut entries: Vec<_> = std::fs::read_dir(src).map_err(io(src))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if cvs_excluded(&name.to_string_lossy()) {
            continue;
        }
        let from = e.path();
        let to = dest.join(&name);
        let meta = std::fs::symlink_metadata(&from).map_err(io(&from))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&from).map_err(io(&from))?;
            if std::fs::symlink_metadata(&to).is_ok() {
                std::fs::remove_file(&to).map_err(io(&to))?;
            }
            std::os::unix::fs::symlink(&target, &to).map_err(io(&to))?;
        } else if meta.is_dir() {
            copy_tree(&from, &to)?;
        } else if meta.is_file() {
            if std::fs::symlink_metadata(&to).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&to).map_err(io(&to))?;
            }
            std::fs::copy(&from, &to).map_err(io(&to))?;
            let mode = meta.permissions().mode() & 0o7755;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
                .map_err(io(&to))?;
        }
    }
    Ok(())
}
