//! Running one operation inside the mounted guest.

use std::collections::HashMap;

use guestfs::Handle;

use super::selinux::{selinux_plan, SelinuxPlan};
use super::{Action, Operation, OperationResult, SysprepOptions};
use crate::error::{GfsContext, Result};

/// Directories searched by `backup-files` (plus every home directory).
const BACKUP_DIRS: &[&str] = &["/etc", "/root", "/srv", "/tmp", "/var"];

/// The guest's directories as the glob patterns of one sysprep run found
/// them: literal directory → its real path in the guest (`None`: it does
/// not exist). Operations remove files, never create directories or
/// retarget links, so one lookup per directory serves the whole run (the
/// defaults name about 150 patterns in 45 directories, and every appliance
/// call is a round trip under TCG).
#[derive(Default)]
pub(crate) struct GuestDirs(HashMap<String, Option<String>>);

/// Run one operation on the mounted OS. `mounts` are the guest's
/// mountpoints (mountpoint → device), as inspection found them; `dirs`
/// is shared by the operations of one run.
pub(crate) fn run_operation(
    g: &Handle,
    op: &Operation,
    opts: &SysprepOptions,
    mounts: &HashMap<String, String>,
    dirs: &mut GuestDirs,
) -> Result<OperationResult> {
    let mut changed = Vec::new();
    match op.action {
        Action::Nothing => {}
        Action::Remove(globs) => {
            for path in expand(g, dirs, globs)? {
                g.rm_rf(&path)
                    .ctx(|| format!("{}: remove {path}", op.name))?;
                changed.push(path);
            }
        }
        Action::Truncate(globs) => {
            for path in expand(g, dirs, globs)? {
                if g.is_file(&path, Default::default()).unwrap_or(false) {
                    g.truncate(&path)
                        .ctx(|| format!("{}: truncate {path}", op.name))?;
                    changed.push(path);
                }
            }
        }
        Action::MachineId => {
            if g.is_file("/etc/machine-id", Default::default())
                .unwrap_or(false)
            {
                g.truncate("/etc/machine-id")
                    .ctx(|| "machine-id: truncate /etc/machine-id".into())?;
                changed.push("/etc/machine-id".into());
            }
            if g.exists("/var/lib/dbus/machine-id").unwrap_or(false) {
                g.rm_f("/var/lib/dbus/machine-id")
                    .ctx(|| "machine-id: remove /var/lib/dbus/machine-id".into())?;
                changed.push("/var/lib/dbus/machine-id".into());
            }
        }
        Action::IfcfgLines(keys) => {
            for path in expand(
                g,
                dirs,
                &[
                    "/etc/sysconfig/network-scripts/ifcfg-*",
                    "/etc/sysconfig/network",
                ],
            )? {
                if !g.is_file(&path, Default::default()).unwrap_or(false) {
                    continue;
                }
                let text = g.cat(&path).ctx(|| format!("{}: read {path}", op.name))?;
                let kept: Vec<&str> = text
                    .lines()
                    .filter(|l| !keys.iter().any(|k| l.trim_start().starts_with(k)))
                    .collect();
                if kept.len() != text.lines().count() {
                    let mut out = kept.join("\n");
                    out.push('\n');
                    g.write(&path, out.as_bytes())
                        .ctx(|| format!("{}: write {path}", op.name))?;
                    changed.push(path);
                }
            }
        }
        Action::BackupFiles => {
            let mut searched: Vec<String> = BACKUP_DIRS.iter().map(|s| s.to_string()).collect();
            searched.extend(expand(g, dirs, &["/home/*"])?);
            for dir in searched {
                if !g.is_dir(&dir, Default::default()).unwrap_or(false) {
                    continue;
                }
                let files = g.find(&dir).ctx(|| format!("backup-files: list {dir}"))?;
                for rel in files {
                    let base = rel.rsplit('/').next().unwrap_or(&rel);
                    let is_backup = base.ends_with('~')
                        || base.ends_with(".bak")
                        || (base.starts_with('.') && base.ends_with(".swp"));
                    if !is_backup {
                        continue;
                    }
                    let path = format!("{dir}/{rel}");
                    if g.is_file(&path, Default::default()).unwrap_or(false) {
                        g.rm_f(&path)
                            .ctx(|| format!("backup-files: remove {path}"))?;
                        changed.push(path);
                    }
                }
            }
        }
        Action::SupportUser => {
            if remove_user(g, "support")? {
                changed.push("user support".into());
            }
            if g.exists("/home/support").unwrap_or(false) {
                g.rm_rf("/home/support")
                    .ctx(|| "ge-support-user: remove /home/support".into())?;
                changed.push("/home/support".into());
            }
        }
        Action::UserAccount => {
            for user in passwd_users(g)? {
                if user.uid >= 1000 && user.uid != 65534 && !opts.keep_users.contains(&user.name) {
                    remove_user(g, &user.name)?;
                    if user.home.starts_with("/home/") && g.exists(&user.home).unwrap_or(false) {
                        g.rm_rf(&user.home)
                            .ctx(|| format!("user-account: remove {}", user.home))?;
                    }
                    changed.push(format!("user {}", user.name));
                }
            }
        }
        Action::SelinuxRelabel => {
            let config = if g
                .is_file("/etc/selinux/config", Default::default())
                .unwrap_or(false)
            {
                Some(
                    g.cat("/etc/selinux/config")
                        .ctx(|| "selinux-relabel: read /etc/selinux/config".into())?,
                )
            } else {
                None
            };
            if let SelinuxPlan::Relabel { file_contexts } = selinux_plan(config.as_deref()) {
                if g.is_file(&file_contexts, Default::default())
                    .unwrap_or(false)
                {
                    g.selinux_relabel(
                        &file_contexts,
                        "/",
                        guestfs::SelinuxRelabelOptArgs { force: Some(true) },
                    )
                    .ctx(|| format!("selinux-relabel: setfiles with {file_contexts}"))?;
                    changed.push(format!("relabelled / with {file_contexts}"));
                } else {
                    // No policy files to relabel with: relabel at first boot.
                    g.write("/.autorelabel", b"")
                        .ctx(|| "selinux-relabel: create /.autorelabel".into())?;
                    changed.push("/.autorelabel".into());
                }
            }
        }
        Action::FlagReconfiguration => {
            g.write("/.unconfigured", b"")
                .ctx(|| "flag-reconfiguration: create /.unconfigured".into())?;
            changed.push("/.unconfigured".into());
        }
        Action::LvmUuids => {
            let lvs = g.lvs().ctx(|| "lvm-uuids: list LVs".into())?;
            if !lvs.is_empty() {
                // PV/VG UUIDs can only change while no LV is active.
                g.umount_all().ctx(|| "lvm-uuids: unmount".into())?;
                g.vg_activate_all(false)
                    .ctx(|| "lvm-uuids: deactivate VGs".into())?;
                let r = g
                    .pvchange_uuid_all()
                    .ctx(|| "lvm-uuids: pvchange -u".into())
                    .and_then(|()| {
                        g.vgchange_uuid_all()
                            .ctx(|| "lvm-uuids: vgchange -u".into())
                    });
                g.vg_activate_all(true)
                    .ctx(|| "lvm-uuids: activate VGs".into())?;
                crate::worker::mount_os(g, mounts, false)?;
                r?;
                changed.push("PV and VG UUIDs".into());
            }
        }
        Action::FsUuids => changed = fs_uuids(g, mounts)?,
    }
    Ok(OperationResult {
        name: op.name,
        changed,
    })
}

fn expand(g: &Handle, dirs: &mut GuestDirs, globs: &[&str]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for glob in globs {
        // A pattern under a directory the guest does not have matches nothing.
        let Some(glob) = resolve_dir(g, dirs, glob) else {
            continue;
        };
        let found = g
            .glob_expand(&glob, Default::default())
            .ctx(|| format!("glob {glob}"))?;
        for f in found {
            let f = f.trim_end_matches('/').to_string();
            let base = f.rsplit('/').next().unwrap_or("");
            if base == "." || base == ".." || f.is_empty() {
                continue;
            }
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// `glob_expand` does not follow absolute symlinks inside the guest (Debian's
/// `/var/run -> /run`), so the literal directory part of the pattern is
/// resolved in the guest first (once per directory and run, see
/// [`GuestDirs`]). `None`: that directory does not exist.
fn resolve_dir(g: &Handle, dirs: &mut GuestDirs, glob: &str) -> Option<String> {
    let literal_end = glob.find(['*', '?', '[', '{']).unwrap_or(glob.len());
    let Some(slash) = glob[..literal_end].rfind('/') else {
        return Some(glob.to_string());
    };
    let (dir, rest) = glob.split_at(slash);
    if dir.is_empty() {
        return Some(glob.to_string());
    }
    let real = dirs
        .0
        .entry(dir.to_string())
        .or_insert_with(|| g.realpath(dir).ok());
    real.as_ref()
        .map(|real| format!("{}{rest}", real.trim_end_matches('/')))
}

struct PasswdUser {
    name: String,
    uid: u32,
    home: String,
}

fn passwd_users(g: &Handle) -> Result<Vec<PasswdUser>> {
    if !g
        .is_file("/etc/passwd", Default::default())
        .unwrap_or(false)
    {
        return Ok(Vec::new());
    }
    let text = g.cat("/etc/passwd").ctx(|| "read /etc/passwd".into())?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdUser {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect())
}

/// Remove `name` from passwd, shadow, group and gshadow, its private group and
/// its mail spool. Returns whether the account existed.
fn remove_user(g: &Handle, name: &str) -> Result<bool> {
    let gid = passwd_users(g)?
        .into_iter()
        .find(|u| u.name == name)
        .and_then(|_| {
            g.cat("/etc/passwd").ok().and_then(|t| {
                t.lines()
                    .find(|l| l.split(':').next() == Some(name))
                    .and_then(|l| l.split(':').nth(3).map(str::to_string))
            })
        });
    let Some(gid) = gid else { return Ok(false) };
    for file in ["/etc/passwd", "/etc/shadow"] {
        edit_lines(g, file, |l| {
            (l.split(':').next() != Some(name)).then(|| l.to_string())
        })?;
    }
    for file in ["/etc/group", "/etc/gshadow"] {
        // Drop the user's private group (same name, its gid in /etc/group), and
        // the user from other groups' member lists.
        edit_lines(g, file, |l| {
            let mut f: Vec<String> = l.split(':').map(str::to_string).collect();
            if f.first().map(String::as_str) == Some(name)
                && (file == "/etc/gshadow" || f.get(2).map(String::as_str) == Some(gid.as_str()))
            {
                return None;
            }
            if let Some(members) = f.last_mut() {
                let kept: Vec<&str> = members.split(',').filter(|m| *m != name).collect();
                *members = kept.join(",");
            }
            Some(f.join(":"))
        })?;
    }
    for spool in [
        format!("/var/mail/{name}"),
        format!("/var/spool/mail/{name}"),
    ] {
        if g.exists(&spool).unwrap_or(false) {
            g.rm_rf(&spool).ctx(|| format!("remove {spool}"))?;
        }
    }
    Ok(true)
}

fn edit_lines(g: &Handle, file: &str, mut f: impl FnMut(&str) -> Option<String>) -> Result<()> {
    if !g.is_file(file, Default::default()).unwrap_or(false) {
        return Ok(());
    }
    let text = g.cat(file).ctx(|| format!("read {file}"))?;
    let mut out: String = text
        .lines()
        .filter_map(&mut f)
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    if out != text {
        // Keep the file's mode and owner: write() replaces contents in place.
        g.write(file, out.as_bytes())
            .ctx(|| format!("write {file}"))?;
    }
    Ok(())
}

/// `fs-uuids`: new random UUIDs for every ext2/3/4 filesystem and swap, with
/// `/etc/fstab` and the GRUB configuration updated to match.
fn fs_uuids(g: &Handle, mounts: &HashMap<String, String>) -> Result<Vec<String>> {
    let fss = g
        .list_filesystems()
        .ctx(|| "fs-uuids: list filesystems".into())?;
    g.umount_all().ctx(|| "fs-uuids: unmount".into())?;
    let mut changes = Vec::new();
    for (dev, ty) in &fss {
        let old = g.vfs_uuid(dev).unwrap_or_default();
        if old.is_empty() {
            continue;
        }
        match ty.as_str() {
            "ext2" | "ext3" | "ext4" => {
                // tune2fs -U on a metadata_csum filesystem needs a fresh fsck.
                g.e2fsck(
                    dev,
                    guestfs::E2fsckOptArgs {
                        correct: None,
                        forceall: Some(true),
                    },
                )
                .ctx(|| format!("fs-uuids: e2fsck {dev}"))?;
                g.set_uuid_random(dev)
                    .ctx(|| format!("fs-uuids: new UUID for {dev}"))?;
            }
            "swap" => {
                let label = g.vfs_label(dev).unwrap_or_default();
                let label = (!label.is_empty()).then_some(label.as_str());
                g.mkswap(dev, guestfs::MkswapOptArgs { label, uuid: None })
                    .ctx(|| format!("fs-uuids: mkswap {dev}"))?;
            }
            _ => continue,
        }
        let new = g
            .vfs_uuid(dev)
            .ctx(|| format!("fs-uuids: read UUID of {dev}"))?;
        changes.push((old, new));
    }
    crate::worker::mount_os(g, mounts, false)?;
    let mut changed = Vec::new();
    for file in [
        "/etc/fstab",
        "/boot/grub/grub.cfg",
        "/boot/grub2/grub.cfg",
        "/etc/default/grub",
    ] {
        if !g.is_file(file, Default::default()).unwrap_or(false) {
            continue;
        }
        let text = g.cat(file).ctx(|| format!("fs-uuids: read {file}"))?;
        let mut new_text = text.clone();
        for (old, new) in &changes {
            new_text = new_text.replace(old.as_str(), new);
        }
        if new_text != text {
            g.write(file, new_text.as_bytes())
                .ctx(|| format!("fs-uuids: write {file}"))?;
            changed.push(file.to_string());
        }
    }
    changed.extend(changes.into_iter().map(|(o, n)| format!("{o} -> {n}")));
    Ok(changed)
}
