//! The original's host checks: which OS the host runs (`/etc/os-release`'s
//! `NAME=`, else `/etc/system-release`), the packages it must have, and the
//! root-password/SELinux check. `root` is the host's root directory (`/`;
//! another directory checks that tree, e.g. a chroot).

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// The host platform families the original knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    /// `NAME="Ubuntu"`.
    Ubuntu,
    /// A `NAME` containing `Debian`.
    Debian,
    /// A `NAME` containing `SUSE`.
    Suse,
    /// A `NAME` containing `Gentoo`.
    Gentoo,
    /// Anything else: treated as an RPM distribution.
    Rpm(String),
}

/// The host's platform from `root`'s `etc/os-release` (its `NAME=`), else
/// the first line of `etc/system-release` if it names CentOS or Red Hat
/// Enterprise Linux; otherwise the host OS is unknown (exit 2).
pub fn detect_platform(root: &Path) -> Result<Platform> {
    let name = match std::fs::read_to_string(root.join("etc/os-release")) {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("NAME="))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default(),
        Err(_) => {
            let first = std::fs::read_to_string(root.join("etc/system-release"))
                .ok()
                .and_then(|t| t.lines().next().map(String::from))
                .unwrap_or_default();
            if first.contains("CentOS") || first.contains("Red Hat Enterprise Linux") {
                first
            } else {
                return Err(Error::UnknownHostOs);
            }
        }
    };
    Ok(if name == "Ubuntu" {
        Platform::Ubuntu
    } else if name.contains("Debian") {
        Platform::Debian
    } else if name.contains("SUSE") {
        Platform::Suse
    } else if name.contains("Gentoo") {
        Platform::Gentoo
    } else {
        Platform::Rpm(name)
    })
}

/// Debian/Ubuntu host packages this tool's build needs. The original's
/// list was `qemu-utils git kpartx debootstrap`; kpartx is not used here
/// (no device-mapper), the user-space disk assembly needs sfdisk, mkfs.ext4
/// and libguestfs instead.
pub const DEB_PACKAGES: &[&str] = &[
    "qemu-utils",
    "git",
    "debootstrap",
    "fdisk",
    "e2fsprogs",
    "libguestfs0",
];

/// The package check of the original for `platform`: dpkg on
/// Debian/Ubuntu (`root`'s dpkg database), rpm on SUSE and RPM hosts,
/// `/var/db/pkg` on Gentoo. A missing package exits 1.
pub fn check_packages(platform: &Platform, root: &Path) -> Result<()> {
    match platform {
        Platform::Ubuntu | Platform::Debian => {
            let admindir = root.join("var/lib/dpkg");
            for pkg in DEB_PACKAGES {
                let out = Command::new("dpkg-query")
                    .arg(format!("--admindir={}", admindir.display()))
                    .args(["-W", "-f=${Status}", pkg])
                    .output()
                    .map_err(|source| Error::Spawn {
                        program: "dpkg-query".into(),
                        source,
                    })?;
                let status = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() || !status.starts_with("install ok installed") {
                    return Err(Error::MissingPackage {
                        package: (*pkg).into(),
                        list: DEB_PACKAGES.join(" "),
                    });
                }
            }
            Ok(())
        }
        Platform::Suse => rpm_check(&["qemu-tools", "git-core"], false),
        Platform::Rpm(_) => rpm_check(&["qemu-img*", "git"], true),
        Platform::Gentoo => {
            let list = "dev-vcs/git app-emulation/qemu|xen-tools sys-fs/multipath-tools";
            for spec in list.split(' ') {
                let (cat, names) = spec.split_once('/').unwrap_or((spec, ""));
                let found = names.split('|').any(|n| {
                    std::fs::read_dir(root.join("var/db/pkg").join(cat))
                        .map(|rd| {
                            rd.flatten().any(|e| {
                                e.file_name()
                                    .to_string_lossy()
                                    .starts_with(&format!("{n}-"))
                            })
                        })
                        .unwrap_or(false)
                });
                if !found {
                    return Err(Error::MissingPackage {
                        package: spec.into(),
                        list: list.into(),
                    });
                }
            }
            Ok(())
        }
    }
}

fn rpm_check(list: &[&str], all: bool) -> Result<()> {
    for pkg in list {
        let mut cmd = Command::new("rpm");
        if all {
            cmd.args(["-qa", pkg]);
        } else {
            cmd.args(["-q", pkg]);
        }
        let ok = cmd
            .output()
            .map(|o| o.status.success() && !o.stdout.is_empty())
            .unwrap_or(false);
        if !ok {
            return Err(Error::MissingPackage {
                package: pkg.trim_end_matches('*').into(),
                list: list.join(" "),
            });
        }
    }
    Ok(())
}

/// A root password on a host that is neither Ubuntu nor Debian, with
/// SELinux enforcing, exits 1 (as the original).
pub fn check_root_password(platform: &Platform, root_password: bool) -> Result<()> {
    if !root_password || matches!(platform, Platform::Ubuntu | Platform::Debian) {
        return Ok(());
    }
    let enforcing = Command::new("getenforce")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "Enforcing")
        .unwrap_or(false);
    if enforcing {
        return Err(Error::Check {
            message: "A root password cannot be enabled for images built on this platform while SELinux is enabled.".into(),
        });
    }
    Ok(())
}

/// Every host check, in the original's order.
pub fn check_host(root: &Path, root_password: bool) -> Result<Platform> {
    let platform = detect_platform(root)?;
    check_root_password(&platform, root_password)?;
    check_packages(&platform, root)?;
    Ok(platform)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn platforms_from_os_release() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        assert!(matches!(
            detect_platform(d.path()),
            Err(Error::UnknownHostOs)
        ));
        std::fs::write(
            d.path().join("etc/system-release"),
            "CentOS Stream release 9\n",
        )
        .unwrap();
        assert!(matches!(
            detect_platform(d.path()).unwrap(),
            Platform::Rpm(_)
        ));
        for (name, want) in [
            ("NAME=\"Ubuntu\"", Platform::Ubuntu),
            ("NAME=\"Debian GNU/Linux\"", Platform::Debian),
            ("NAME=\"openSUSE Leap\"", Platform::Suse),
            ("NAME=Gentoo", Platform::Gentoo),
        ] {
            std::fs::write(d.path().join("etc/os-release"), format!("{name}\nID=x\n")).unwrap();
            assert_eq!(detect_platform(d.path()).unwrap(), want);
        }
    }
}
