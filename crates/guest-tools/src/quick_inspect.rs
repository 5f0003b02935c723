//! Inspection of a plain Debian root without libguestfs's `inspect_os`
//! (8–17 s under TCG here, most of an inspection): the root is the one
//! filesystem holding `/etc/os-release`, and the facts `inspect_os` would
//! report are read from the same files it reads (`/etc/debian_version`,
//! `/etc/hostname`, `/etc/fstab`, the ELF header of `/bin/bash`,
//! `/var/lib/dpkg/status`). Anything outside that simple case (another
//! distribution, LVM, btrfs, several roots, an fstab entry it cannot resolve)
//! returns `None` and the caller runs the full inspection: the result is
//! always the one `inspect_os` gives (checked against it by the session test).

use std::collections::HashMap;

use guestfs::Handle;

use crate::error::{GfsContext, Result};
use crate::inspect::Application;

/// What the quick path found: the root, its mountpoints and the facts
/// libguestfs's `inspect_get_*` calls would return for it.
#[derive(Debug, Clone)]
pub(crate) struct QuickFacts {
    pub(crate) root: String,
    pub(crate) mounts: HashMap<String, String>,
    pub(crate) product_name: String,
    pub(crate) major: i32,
    pub(crate) minor: i32,
    pub(crate) arch: String,
    pub(crate) hostname: String,
}

/// `is_file` following symbolic links, as inspection does (Debian's
/// `/etc/os-release` is a link to `../usr/lib/os-release`).
const FOLLOW: guestfs::IsFileOptArgs = guestfs::IsFileOptArgs {
    followsymlinks: Some(true),
};

/// Filesystem types the quick path knows (anything else: full inspection).
const KNOWN_TYPES: &[&str] = &["ext2", "ext3", "ext4", "xfs", "vfat", "swap", "unknown"];

/// Find a plain Debian root among `fss` (from `list_filesystems`). Leaves
/// nothing mounted.
pub(crate) fn quick_root(g: &Handle, fss: &HashMap<String, String>) -> Result<Option<QuickFacts>> {
    let mut fss: Vec<(String, String)> = fss.iter().map(|(d, t)| (d.clone(), t.clone())).collect();
    fss.sort();
    let fss = fss.as_slice();
    if fss
        .iter()
        .any(|(d, t)| !KNOWN_TYPES.contains(&t.as_str()) || !d.starts_with("/dev/sd"))
    {
        return Ok(None);
    }
    let mut roots = Vec::new();
    for (dev, ty) in fss {
        if !matches!(ty.as_str(), "ext2" | "ext3" | "ext4" | "xfs") {
            continue;
        }
        if g.mount_ro(dev, "/").is_err() {
            // inspect_os skips what it cannot mount as well, but say so.
            return Ok(None);
        }
        let has = g.is_file("/etc/os-release", FOLLOW).unwrap_or(false);
        g.umount_all().ctx(|| "unmount".into())?;
        if has {
            roots.push(dev.clone());
        }
    }
    let [root] = roots.as_slice() else {
        return Ok(None);
    };
    g.mount_ro(root, "/")
        .ctx(|| format!("mount {root} read-only"))?;
    let facts = debian_facts(g, root, fss);
    g.umount_all().ctx(|| "unmount".into())?;
    facts
}

fn read_text(g: &Handle, path: &str) -> Option<String> {
    if !g.is_file(path, FOLLOW).unwrap_or(false) {
        return None;
    }
    g.read_file(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `KEY=value` lines of an os-release file, quotes removed.
pub(crate) fn os_release(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

/// `N.M` → `(N, M)`.
fn major_minor(s: &str) -> Option<(i32, i32)> {
    let (a, b) = s.split_once('.')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    (digits(a) && digits(b)).then(|| Some((a.parse().ok()?, b.parse().ok()?)))?
}

/// The architecture from an ELF header, for the 64-bit little-endian
/// machines inspection names `x86_64` and `aarch64`.
pub(crate) fn elf_arch(header: &[u8]) -> Option<&'static str> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    match u16::from_le_bytes([header[18], header[19]]) {
        0x3e => Some("x86_64"),
        0xb7 => Some("aarch64"),
        _ => None,
    }
}

fn debian_facts(g: &Handle, root: &str, fss: &[(String, String)]) -> Result<Option<QuickFacts>> {
    let Some(osr) = read_text(g, "/etc/os-release") else {
        return Ok(None);
    };
    // inspect_os reads /etc/lsb-release before /etc/debian_version, and
    // /etc/HOSTNAME before /etc/hostname: leave those cases to it.
    if os_release(&osr).get("ID").map(String::as_str) != Some("debian")
        || g.exists("/etc/lsb-release").unwrap_or(true)
        || g.exists("/etc/HOSTNAME").unwrap_or(true)
    {
        return Ok(None);
    }
    // Debian's os-release has no minor version: inspect_os takes the
    // product name and the version from /etc/debian_version instead.
    let Some(product_name) =
        read_text(g, "/etc/debian_version").and_then(|t| t.lines().next().map(str::to_string))
    else {
        return Ok(None);
    };
    let Some((major, minor)) = major_minor(product_name.trim()) else {
        return Ok(None);
    };
    let Some(hostname) = read_text(g, "/etc/hostname")
        .and_then(|t| t.lines().next().map(str::to_string))
        .filter(|h| !h.is_empty())
    else {
        return Ok(None);
    };
    let arch = match g.pread("/bin/bash", 20, 0) {
        Ok(h) => elf_arch(&h),
        Err(_) => None,
    };
    let Some(arch) = arch else {
        return Ok(None);
    };
    let Some(mounts) = fstab_mounts(g, root, fss)? else {
        return Ok(None);
    };
    Ok(Some(QuickFacts {
        root: root.to_string(),
        mounts,
        product_name,
        major,
        minor,
        arch: arch.to_string(),
        hostname,
    }))
}

/// `/etc/fstab`'s mountpoints resolved to appliance devices by UUID or
/// label; `None` when an entry names a device another way, does not
/// resolve, or `/` is not the root found.
fn fstab_mounts(
    g: &Handle,
    root: &str,
    fss: &[(String, String)],
) -> Result<Option<HashMap<String, String>>> {
    let text = read_text(g, "/etc/fstab").unwrap_or_default();
    let mut ids = Vec::new();
    for (dev, ty) in fss {
        if ty == "unknown" {
            continue;
        }
        ids.push((
            dev.clone(),
            g.vfs_uuid(dev).unwrap_or_default(),
            g.vfs_label(dev).unwrap_or_default(),
        ));
    }
    let mut mounts = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(spec), Some(mp)) = (f.next(), f.next()) else {
            continue;
        };
        if !mp.starts_with('/') {
            continue;
        }
        let dev = if let Some(u) = spec.strip_prefix("UUID=") {
            ids.iter().find(|(_, id, _)| id.eq_ignore_ascii_case(u))
        } else if let Some(l) = spec.strip_prefix("LABEL=") {
            ids.iter().find(|(_, _, label)| label == l)
        } else if spec.starts_with('/') || spec.contains('=') {
            // A device path or PARTUUID=: inspect_os translates those.
            return Ok(None);
        } else {
            // proc, tmpfs, none, ...: not a disk.
            continue;
        };
        let Some((dev, _, _)) = dev else {
            return Ok(None);
        };
        mounts.insert(mp.to_string(), dev.clone());
    }
    if mounts.get("/").map(String::as_str) != Some(root) {
        return Ok(None);
    }
    Ok(Some(mounts))
}

/// The installed packages from `/var/lib/dpkg/status` (mounted at `/`), as
/// `inspect_list_applications2` lists them for a deb guest.
pub(crate) fn dpkg_applications(g: &Handle) -> Result<Vec<Application>> {
    let text = g
        .read_file("/var/lib/dpkg/status")
        .ctx(|| "read /var/lib/dpkg/status".into())?;
    Ok(parse_dpkg_status(&String::from_utf8_lossy(&text)))
}

/// Parse a dpkg status file: packages whose `Status:` says `installed`,
/// the version split into epoch and `version-release`.
pub(crate) fn parse_dpkg_status(text: &str) -> Vec<Application> {
    let mut apps = Vec::new();
    for para in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = (None, None, "", false);
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.split_whitespace().last() == Some("installed");
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Architecture: ") {
                arch = v.trim();
            }
        }
        let (Some(name), Some(version), true) = (name, version, installed) else {
            continue;
        };
        let (epoch, version) = match version.split_once(':') {
            Some((e, v)) if e.bytes().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), v),
            _ => (0, version),
        };
        apps.push(Application {
            name: name.to_string(),
            version: version.to_string(),
            epoch,
            arch: arch.to_string(),
        });
    }
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    apps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_lose_their_quotes() {
        let m = os_release("ID=debian\nVERSION_ID=\"12\"\nNAME='Debian'\n# c\n");
        assert_eq!(m["ID"], "debian");
        assert_eq!(m["VERSION_ID"], "12");
        assert_eq!(m["NAME"], "Debian");
    }

    #[test]
    fn versions_and_elf_headers() {
        assert_eq!(major_minor("12.15"), Some((12, 15)));
        assert_eq!(major_minor("bookworm/sid"), None);
        assert_eq!(major_minor("12"), None);
        let mut h = b"\x7fELF\x02\x01\x01".to_vec();
        h.resize(20, 0);
        h[18] = 0x3e;
        assert_eq!(elf_arch(&h), Some("x86_64"));
        h[18] = 0xb7;
        assert_eq!(elf_arch(&h), Some("aarch64"));
        h[4] = 1;
        assert_eq!(elf_arch(&h), None);
        assert_eq!(elf_arch(b"#!/bin/sh"), None);
    }

    #[test]
    fn dpkg_status_lists_installed_packages_only() {
        let text = "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n\
                    Version: 1:1.2.13.dfsg-1\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
                    Package: bash\nStatus: install ok installed\nArchitecture: amd64\n\
                    Version: 5.2.15-2+b7\n";
        let apps = parse_dpkg_status(text);
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].name, "bash");
        assert_eq!(apps[0].version, "5.2.15-2+b7");
        assert_eq!(apps[0].epoch, 0);
        assert_eq!(apps[1].name, "zlib1g");
        assert_eq!(apps[1].version, "1.2.13.dfsg-1");
        assert_eq!(apps[1].epoch, 1);
        assert_eq!(apps[1].arch, "amd64");
    }
}
