//! What `disk-image-create` does to the root around the phases
//! (`create_base` after root.d, `finalise_base` after cleanup.d): the
//! build-time `resolv.conf` and the final clean-up of `/tmp` and logs.

use std::path::Path;

use crate::error::{Error, Result};

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: p.to_path_buf(),
        source,
    }
}

/// After root.d: the root must hold something besides `lost+found` and
/// `tmp` (else root.d deployed nothing: an error); the image's
/// `/etc/resolv.conf` (file or symlink) is kept as `resolv.conf.ORIG` and
/// replaced by the host's, so the hooks can resolve names.
pub fn create_base(root: &Path) -> Result<()> {
    let populated = std::fs::read_dir(root)
        .map_err(io(root))?
        .flatten()
        .any(|e| !matches!(e.file_name().to_str(), Some("lost+found" | "tmp")));
    if !populated {
        return Err(Error::Environment {
            phase: "root.d".into(),
            reason: format!(
                "Failed to deploy the root element: {} is empty",
                root.display()
            ),
        });
    }
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).map_err(io(&etc))?;
    let rc = etc.join("resolv.conf");
    let orig = etc.join("resolv.conf.ORIG");
    if std::fs::symlink_metadata(&rc).is_ok() {
        std::fs::rename(&rc, &orig).map_err(io(&rc))?;
    }
    let host = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    std::fs::write(&rc, host).map_err(io(&rc))
}

/// After cleanup.d: put the image's own `resolv.conf` back (unless an
/// element replaced the build one by a symlink, then that stays and the
/// saved one is dropped), empty `/tmp`, truncate the files under `/var/log`
/// and delete `*.log` under `/root`.
pub fn finalise_base(root: &Path) -> Result<()> {
    let rc = root.join("etc/resolv.conf");
    let orig = root.join("etc/resolv.conf.ORIG");
    let rc_is_link = std::fs::symlink_metadata(&rc).is_ok_and(|m| m.file_type().is_symlink());
    if rc_is_link {
        if std::fs::symlink_metadata(&orig).is_ok() {
            std::fs::remove_file(&orig).map_err(io(&orig))?;
        }
    } else {
        if std::fs::symlink_metadata(&rc).is_ok() {
            std::fs::remove_file(&rc).map_err(io(&rc))?;
        }
        if std::fs::symlink_metadata(&orig).is_ok() {
            std::fs::rename(&orig, &rc).map_err(io(&orig))?;
        }
    }
    let tmp = root.join("tmp");
    if let Ok(rd) = std::fs::read_dir(&tmp) {
        for e in rd.flatten() {
            let p = e.path();
            let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            r.map_err(io(&p))?;
        }
    }
    walk(&root.join("var/log"), &mut |p| {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(p)
            .map(|_| ())
            .map_err(io(p))
    })?;
    walk(&root.join("root"), &mut |p| {
        if p.extension().is_some_and(|e| e == "log") {
            std::fs::remove_file(p).map_err(io(p))?;
        }
        Ok(())
    })
}

/// Unmount everything mounted below `root` (deepest first, lazily as DIB's
/// `unmount_dir` does): what hooks mounted and left (an apt cache bind,
/// a `/proc`). Call after post-root.d, before the tree is copied or packed.
pub fn unmount_under(root: &Path) -> Result<()> {
    let real = std::fs::canonicalize(root).map_err(io(root))?;
    let prefix = format!("{}/", real.display());
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(io(Path::new("/proc/mounts")))?;
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort();
    points.dedup();
    for m in points.iter().rev() {
        crate::cmd::run(std::process::Command::new("umount").arg("-fl").arg(m))?;
    }
    Ok(())
}

/// Call `f` on every regular file under `dir` (symlinks not followed).
fn walk(dir: &Path, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk(&p, f)?;
        } else if t.is_file() {
            f(&p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn resolv_conf_round_trip_and_final_cleanup() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        assert!(create_base(root)
            .unwrap_err()
            .to_string()
            .contains("Failed to deploy the root element"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "nameserver 192.0.2.1\n").unwrap();
        create_base(root).unwrap();
        assert_eq!(
            std::fs::read(root.join("etc/resolv.conf")).unwrap(),
            std::fs::read("/etc/resolv.conf").unwrap_or_default()
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/resolv.conf.ORIG")).unwrap(),
            "nameserver 192.0.2.1\n"
        );

        std::fs::create_dir_all(root.join("tmp/in_target.d")).unwrap();
        std::fs::write(root.join("tmp/x"), "x").unwrap();
        std::fs::create_dir_all(root.join("var/log/apt")).unwrap();
        std::fs::write(root.join("var/log/apt/history.log"), "lots").unwrap();
        std::fs::create_dir_all(root.join("root")).unwrap();
        std::fs::write(root.join("root/build.log"), "x").unwrap();
        std::fs::write(root.join("root/keep.txt"), "x").unwrap();
        finalise_base(root).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
            "nameserver 192.0.2.1\n"
        );
        assert!(!root.join("etc/resolv.conf.ORIG").exists());
        assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        assert_eq!(
            std::fs::read(root.join("var/log/apt/history.log"))
                .unwrap()
                .len(),
            0
        );
        assert!(!root.join("root/build.log").exists() && root.join("root/keep.txt").exists());

        // an element that made resolv.conf a symlink keeps it
        create_base(root).unwrap();
        std::fs::remove_file(root.join("etc/resolv.conf")).unwrap();
        std::os::unix::fs::symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .unwrap();
        finalise_base(root).unwrap();
        assert!(std::fs::symlink_metadata(root.join("etc/resolv.conf"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(!root.join("etc/resolv.conf.ORIG").exists());
    }
}
