//! Guest OS inspection (the facts `virt-inspector` reports).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, GfsContext, Result};
use crate::worker::{mount_os, Step, Worker};

/// A filesystem found in the image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FilesystemInfo {
    /// Device inside the appliance.
    pub device: String,
    /// Type (`ext4`, `swap`, `vfat`, ...).
    #[serde(rename = "type")]
    pub fs_type: String,
    /// UUID, when it has one.
    pub uuid: String,
    /// Label, when it has one.
    pub label: String,
    /// Where the guest mounts it, if it does.
    pub mountpoint: Option<String>,
}

/// An installed package.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Application {
    /// Package name.
    pub name: String,
    /// Version (with `-release` when the format has one).
    pub version: String,
    /// Epoch, 0 when none.
    pub epoch: i32,
    /// Architecture, when known.
    pub arch: String,
}

/// What inspection found (the facts `virt-inspector` reports).
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Root device inside the appliance.
    pub root: String,
    /// `linux`, `windows`, ...
    pub os_type: String,
    /// `debian`, `ubuntu`, `centos`, ...
    pub distro: String,
    /// Product name (`12.x` style for Debian, from `/etc/os-release`).
    pub product_name: String,
    /// `major.minor`.
    pub version: String,
    /// Major version.
    pub major_version: i32,
    /// Minor version.
    pub minor_version: i32,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    /// Hostname configured in the guest.
    pub hostname: String,
    /// `deb`, `rpm`, ...
    pub package_format: String,
    /// `apt`, `dnf`, `yum`, ...
    pub package_management: String,
    /// `systemd`, `upstart`, `sysvinit` or `unknown`.
    pub init_system: String,
    /// What kind of image the OS is in (`virt-inspector`'s `format`):
    /// `installed` (an installed OS), `installer` (install media) or `unknown`.
    pub format: String,
    /// libosinfo short id, when known.
    pub osinfo: String,
    /// Mountpoint → device.
    pub mountpoints: BTreeMap<String, String>,
    /// Every filesystem of the image.
    pub filesystems: Vec<FilesystemInfo>,
    /// Installed packages.
    pub applications: Vec<Application>,
}

/// Find the root, or explain precisely why there is none: the quick path
/// for a plain Debian root (see `quick_inspect`), else libguestfs's
/// `inspect_os`.
pub(crate) fn ensure_root(w: &mut Worker) -> Result<String> {
    ensure_root_with(w, false)
}

fn ensure_root_with(w: &mut Worker, full: bool) -> Result<String> {
    if let Some(r) = &w.root {
        if !full || w.quick.is_none() {
            return Ok(r.clone());
        }
    }
    let fss = w.filesystems(full)?;
    if let Some((dev, _)) = fss
        .iter()
        .find(|(_, t)| *t == "crypto_LUKS" || *t == "BitLocker")
    {
        return Err(Error::Encrypted {
            path: w.image.clone(),
            what: format!("LUKS/BitLocker on {dev}"),
        });
    }
    if !full {
        if let Some(q) = crate::quick_inspect::quick_root(&w.g, &fss)? {
            w.report(
                Step::Inspect,
                format!("{}: a plain Debian root, read from its files", q.root),
            );
            w.root = Some(q.root.clone());
            w.mounts = q.mounts.clone();
            w.quick = Some(q);
            return Ok(w.quick.as_ref().map(|q| q.root.clone()).unwrap_or_default());
        }
    }
    w.quick = None;
    let roots = w.g.inspect_os().ctx(|| "inspect OS".into())?;
    let Some(root) = roots.first().cloned() else {
        let parts = w.g.list_partitions().ctx(|| "list partitions".into())?;
        let real: Vec<String> = fss
            .iter()
            .filter(|(_, t)| *t != "unknown")
            .map(|(d, t)| format!("{d}:{t}"))
            .collect();
        if real.is_empty() {
            return Err(Error::EmptyDisk {
                path: w.image.clone(),
                reason: if parts.is_empty() {
                    "no partition table and no filesystem".into()
                } else {
                    format!("{} partition(s) but no filesystem", parts.len())
                },
            });
        }
        return Err(Error::NoOs {
            path: w.image.clone(),
            filesystems: real.join(", "),
        });
    };
    if roots.len() > 1 {
        tracing::warn!(roots = ?roots, "several operating systems found; using {root}");
    }
    w.mounts =
        w.g.inspect_get_mountpoints(&root)
            .ctx(|| "mountpoints".into())?;
    w.root = Some(root.clone());
    Ok(root)
}

fn init_system(w: &Worker) -> String {
    let g = &w.g;
    let real = g.realpath("/sbin/init").unwrap_or_default();
    if real.contains("systemd") {
        return "systemd".into();
    }
    if g.is_file("/sbin/initctl", Default::default())
        .unwrap_or(false)
        && g.is_dir("/etc/init", Default::default()).unwrap_or(false)
    {
        return "upstart".into();
    }
    if g.exists("/lib/systemd/systemd").unwrap_or(false)
        || g.exists("/usr/lib/systemd/systemd").unwrap_or(false)
    {
        return "systemd".into();
    }
    if !real.is_empty() {
        return "sysvinit".into();
    }
    "unknown".into()
}

/// Inspect the guest: the quick path's facts when it applied, else
/// libguestfs's (`full`: always libguestfs's, the reference the quick path
/// is checked against).
pub(crate) fn inspect(w: &mut Worker, full: bool) -> Result<Inspection> {
    let root = ensure_root_with(w, full)?;
    let quick = w.quick.clone();
    let fss = w.filesystems(full)?;
    let g = &w.g;
    let s = |r: std::result::Result<String, guestfs::Error>| r.unwrap_or_default();
    let (major, minor) = match &quick {
        Some(q) => (q.major, q.minor),
        None => (
            g.inspect_get_major_version(&root).unwrap_or(0),
            g.inspect_get_minor_version(&root).unwrap_or(0),
        ),
    };
    let mountpoints: BTreeMap<String, String> = w
        .mounts
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut filesystems: Vec<FilesystemInfo> = fss
        .into_iter()
        .filter(|(_, t)| t != "unknown")
        .map(|(device, fs_type)| FilesystemInfo {
            uuid: s(g.vfs_uuid(&device)),
            label: s(g.vfs_label(&device)),
            mountpoint: mountpoints
                .iter()
                .find(|(_, d)| **d == device)
                .map(|(m, _)| m.clone()),
            device,
            fs_type,
        })
        .collect();
    filesystems.sort_by(|a, b| a.device.cmp(&b.device));
    mount_os(g, &w.mounts, true)?;
    let apps = match &quick {
        Some(_) => crate::quick_inspect::dpkg_applications(g),
        None => g
            .inspect_list_applications2(&root)
            .ctx(|| "list applications".into())
            .map(|apps| {
                apps.into_iter()
                    .map(|a| Application {
                        version: if a.app2_release.is_empty() {
                            a.app2_version
                        } else {
                            format!("{}-{}", a.app2_version, a.app2_release)
                        },
                        name: a.app2_name,
                        epoch: a.app2_epoch,
                        arch: a.app2_arch,
                    })
                    .collect()
            }),
    };
    let init = init_system(w);
    let (hostname, format) = match &quick {
        Some(q) => (q.hostname.clone(), "installed".to_string()),
        None => (
            s(g.inspect_get_hostname(&root)),
            s(g.inspect_get_format(&root)),
        ),
    };
    g.umount_all().ctx(|| "unmount".into())?;
    // A guest without a package database (a minimal or broken root) still
    // inspects: report no applications instead of failing.
    let applications = apps.unwrap_or_else(|e| {
        tracing::warn!("cannot list installed applications: {e}");
        Vec::new()
    });
    let (os_type, distro, product_name, arch, package_format, package_management, osinfo) =
        match quick {
            // What inspect_os reports for a Debian root.
            Some(q) => (
                "linux".to_string(),
                "debian".to_string(),
                q.product_name,
                q.arch,
                "deb".to_string(),
                "apt".to_string(),
                format!("debian{major}"),
            ),
            None => (
                s(g.inspect_get_type(&root)),
                s(g.inspect_get_distro(&root)),
                s(g.inspect_get_product_name(&root)),
                s(g.inspect_get_arch(&root)),
                s(g.inspect_get_package_format(&root)),
                s(g.inspect_get_package_management(&root)),
                s(g.inspect_get_osinfo(&root)),
            ),
        };
    Ok(Inspection {
        os_type,
        distro,
        product_name,
        version: format!("{major}.{minor}"),
        major_version: major,
        minor_version: minor,
        arch,
        hostname,
        package_format,
        package_management,
        init_system: init,
        format,
        osinfo,
        mountpoints,
        filesystems,
        applications,
        root,
    })
}

impl Inspection {
    /// A `virt-inspector`-like plain-text rendering.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<20}{v}\n"));
        line("root:", &self.root);
        line("type:", &self.os_type);
        line("distro:", &self.distro);
        line("product name:", &self.product_name);
        line("version:", &self.version);
        line("arch:", &self.arch);
        line("hostname:", &self.hostname);
        line("package format:", &self.package_format);
        line("package management:", &self.package_management);
        line("init system:", &self.init_system);
        line("format:", &self.format);
        line("osinfo:", &self.osinfo);
        out.push_str("filesystems:\n");
        for f in &self.filesystems {
            out.push_str(&format!(
                "  {:<20}{:<8}{:<40}{}\n",
                f.device,
                f.fs_type,
                f.uuid,
                f.mountpoint.as_deref().unwrap_or("-")
            ));
        }
        out.push_str(&format!("applications ({}):\n", self.applications.len()));
        for a in &self.applications {
            out.push_str(&format!("  {} {}\n", a.name, a.version));
        }
        out
    }
}
