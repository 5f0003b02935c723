//! Publishing a build on the builder's disk, as NREC's build script does:
//! `<dir>/<name>-YYYYMMDD.qcow2` (compressed with `qemu-img convert -c`),
//! `<name>-YYYYMMDD.md5` (md5sum format), relative `<name>-latest.qcow2`
//! and `<name>-latest.md5` links, and only the two newest builds kept
//! (their `.md5` files go with them, which the original forgot).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use md5::Digest as _;

use crate::error::{io_err, Error, Result};

/// How many dated builds are kept.
pub const KEEP_BUILDS: usize = 2;

/// The files of one published build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    /// `<dir>/<name>-YYYYMMDD.qcow2`.
    pub image: PathBuf,
    /// `<dir>/<name>-YYYYMMDD.md5`.
    pub md5_file: PathBuf,
    /// The md5 of the image.
    pub md5: String,
    /// Builds removed by the rotation.
    pub removed: Vec<PathBuf>,
}

/// `<dir>/<name>-<date>.qcow2`.
pub fn dated_image(dir: &Path, name: &str, date: &str) -> PathBuf {
    dir.join(format!("{name}-{date}.qcow2"))
}

/// `qemu-img convert -O qcow2 -c src dest`.
pub async fn compress(src: &Path, dest: &Path) -> Result<()> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["convert", "-O", "qcow2", "-c"])
        .arg(src)
        .arg(dest)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(io_err("running qemu-img for", dest))?;
    if !out.status.success() {
        return Err(Error::Command {
            program: "qemu-img convert".into(),
            outcome: format!("{}", out.status),
            detail: format!(": {}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(())
}

/// Hex md5 of a file.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io_err("reading", path))?;
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Point `link` at `target` (a file in the same directory) atomically.
fn relink(link: &Path, target: &Path) -> Result<()> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} has no file name", target.display())))?;
    let tmp = link.with_extension(format!("link-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(name, &tmp).map_err(io_err("creating link", &tmp))?;
    std::fs::rename(&tmp, link).map_err(io_err("replacing link", link))
}

/// Write the md5 file of `image` (`<hash>  <path>` as md5sum prints it),
/// update the `-latest` links and rotate. `image` is already in place.
pub fn finish(dir: &Path, name: &str, image: &Path) -> Result<Published> {
    let md5 = md5_file(image)?;
    let md5_path = image.with_extension("md5");
    let line = format!("{md5}  {}\n", image.display());
    let tmp = md5_path.with_extension("md5.part");
    std::fs::write(&tmp, line).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, &md5_path).map_err(io_err("renaming", &tmp))?;
    relink(&dir.join(format!("{name}-latest.md5")), &md5_path)?;
    relink(&dir.join(format!("{name}-latest.qcow2")), image)?;
    let removed = rotate(dir, name)?;
    Ok(Published {
        image: image.to_path_buf(),
        md5_file: md5_path,
        md5,
        removed,
    })
}

/// Remove every `<name>-20*.qcow2` but the [`KEEP_BUILDS`] newest (by name,
/// as `sort -r`), with their `.md5` files. Returns the removed images.
pub fn rotate(dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let prefix = format!("{name}-20");
    let mut builds: Vec<String> = std::fs::read_dir(dir)
        .map_err(io_err("listing", dir))?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|f| {
            f.starts_with(&prefix)
                && f.to_ascii_lowercase().ends_with(".qcow2")
                && f[name.len() + 1..f.len() - 6]
                    .chars()
                    .all(|c| c.is_ascii_digit())
        })
        .collect();
    builds.sort();
    builds.reverse();
    let mut removed = Vec::new();
    for f in builds.into_iter().skip(KEEP_BUILDS) {
        let p = dir.join(&f);
        std::fs::remove_file(&p).map_err(io_err("removing old build", &p))?;
        let _ = std::fs::remove_file(p.with_extension("md5"));
        tracing::info!(file = %p.display(), "old build removed");
        removed.push(p);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_two_newest_and_their_md5() {
        let d = tempfile::tempdir().unwrap();
        for date in ["20240101", "20240108", "20240115"] {
            std::fs::write(d.path().join(format!("deb-{date}.qcow2")), date).unwrap();
            std::fs::write(d.path().join(format!("deb-{date}.md5")), date).unwrap();
        }
        std::fs::write(d.path().join("deb_other-20230101.qcow2"), "x").unwrap();
        std::fs::write(d.path().join("deb-2024-notes.qcow2"), "x").unwrap();
        let p = finish(d.path(), "deb", &d.path().join("deb-20240115.qcow2")).unwrap();
        assert_eq!(p.removed, vec![d.path().join("deb-20240101.qcow2")]);
        assert!(!d.path().join("deb-20240101.md5").exists());
        assert!(d.path().join("deb-20240108.qcow2").exists());
        assert!(d.path().join("deb_other-20230101.qcow2").exists());
        assert!(d.path().join("deb-2024-notes.qcow2").exists());
        let link = std::fs::read_link(d.path().join("deb-latest.qcow2")).unwrap();
        assert_eq!(link, PathBuf::from("deb-20240115.qcow2"));
        let md5 = std::fs::read_to_string(d.path().join("deb-latest.md5")).unwrap();
        assert!(md5.starts_with(&p.md5), "{md5}");
        assert_eq!(p.md5, format!("{:x}", md5::Md5::digest(b"20240115")));
    }
}
