//! Output files: the assembled raw disk (or bare filesystem) converted with
//! `qemu-img` to each requested type, named as diskimage-builder names them
//! (`<name>.<type>`), plus `.md5` / `.sha256` checksum files on request.
//!
//! qcow2 is compressed by default, as diskimage-builder does (`-u` turns it
//! off); `vhd` is qemu-img's `vpc` format; `tar` is the root tree (numeric
//! owners, xattrs), not the disk. Raw is written last and is a plain copy of
//! the assembled disk.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::cmd::{io, run};
use crate::error::{Error, Result};

/// An output image type (`-t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageType {
    /// QEMU copy-on-write v2.
    Qcow2,
    /// VHD (qemu-img `vpc`, dynamic).
    Vhd,
    /// tarball of the root tree.
    Tar,
    /// gzip-compressed tarball of the root tree.
    Tgz,
    /// raw disk.
    Raw,
}

impl ImageType {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            ImageType::Qcow2 => "qcow2",
            ImageType::Vhd => "vhd",
            ImageType::Tar => "tar",
            ImageType::Tgz => "tgz",
            ImageType::Raw => "raw",
        }
    }

    /// Whether the type needs the disk (or only the root tree).
    pub fn needs_disk(self) -> bool {
        !matches!(self, ImageType::Tar | ImageType::Tgz)
    }

    /// Parse `-t`'s comma list (`qcow2,tar`). Types diskimage-builder has
    /// and this crate does not build (`squashfs`, `docker`, `aci`) are
    /// refused by name.
    pub fn parse_list(s: &str) -> Result<Vec<ImageType>> {
        let mut out = Vec::new();
        for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let ty = match t {
                "qcow2" => ImageType::Qcow2,
                "vhd" => ImageType::Vhd,
                "tar" => ImageType::Tar,
                "tgz" => ImageType::Tgz,
                "raw" => ImageType::Raw,
                other => {
                    return Err(Error::Option {
                        option: "-t".into(),
                        reason: format!(
                            "image type `{other}` is not supported (qcow2, raw, tar, tgz, vhd)"
                        ),
                    })
                }
            };
            if !out.contains(&ty) {
                out.push(ty);
            }
        }
        if out.is_empty() {
            return Err(Error::Option {
                option: "-t".into(),
                reason: "no image type".into(),
            });
        }
        // raw last: diskimage-builder moves the working file into place.
        out.sort_by_key(|t| *t == ImageType::Raw);
        Ok(out)
    }
}

/// How outputs are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputOptions {
    /// Types, in writing order.
    pub types: Vec<ImageType>,
    /// Compress qcow2 (`-u` clears it).
    pub compress: bool,
    /// Write `.md5` and `.sha256` files (`--checksum`).
    pub checksum: bool,
    /// `--qemu-img-options` (`-o` of qemu-img convert), e.g. `compat=0.10`.
    pub qemu_img_options: Option<String>,
}

/// One written output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Type.
    pub image_type: ImageType,
    /// Path.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// md5 hex (with `--checksum`).
    pub md5: Option<String>,
    /// sha256 hex (with `--checksum`).
    pub sha256: Option<String>,
}

/// `<base>.<ext>`: `-o image` gives `image.qcow2`; a name already ending in
/// the extension is kept as it is.
pub fn output_path(base: &Path, ty: ImageType) -> PathBuf {
    let ext = ty.extension();
    if base.extension().is_some_and(|e| e == ext) {
        return base.to_path_buf();
    }
    let mut s = base.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Write every output. `disk` is the raw disk (consumed by the raw output,
/// which is renamed into place), `tree` the root tree for tar outputs.
#[tracing::instrument(skip_all, fields(base = %base.display()))]
pub fn write_outputs(
    disk: Option<&Path>,
    tree: Option<&Path>,
    base: &Path,
    opts: &OutputOptions,
) -> Result<Vec<OutputFile>> {
    let mut out = Vec::new();
    for &ty in &opts.types {
        let dst = output_path(base, ty);
        let tmp = {
            let mut s = dst.as_os_str().to_owned();
            s.push(".part");
            PathBuf::from(s)
        };
        let missing = |what: &str| Error::Option {
            option: "-t".into(),
            reason: format!("`{}` needs the {what}", ty.extension()),
        };
        let r = match ty {
            ImageType::Qcow2 | ImageType::Vhd => {
                let disk = disk.ok_or_else(|| missing("disk"))?;
                let mut cmd = Command::new("qemu-img");
                cmd.args(["convert", "-f", "raw", "-O"]);
                if ty == ImageType::Qcow2 {
                    cmd.arg("qcow2");
                    if opts.compress {
                        // Compression is the slow part: parallel coroutines,
                        // out-of-order writes (qcow2 allows them).
                        cmd.args(["-c", "-m", "8", "-W"]);
                    }
                } else {
                    cmd.arg("vpc");
                }
                if let Some(o) = &opts.qemu_img_options {
                    cmd.args(["-o", o]);
                }
                run(cmd.arg(disk).arg(&tmp)).map(|_| ())
            }
            ImageType::Raw => {
                let disk = disk.ok_or_else(|| missing("disk"))?;
                // A sparse copy; the caller's working file stays.
                run(Command::new("cp")
                    .args(["--sparse=always", "--reflink=auto"])
                    .arg(disk)
                    .arg(&tmp))
                .map(|_| ())
            }
            ImageType::Tar | ImageType::Tgz => {
                let tree = tree.ok_or_else(|| missing("root tree"))?;
                let mut cmd = Command::new("tar");
                cmd.args([
                    "--numeric-owner",
                    "--xattrs",
                    "--xattrs-include=*",
                    "--acls",
                ]);
                if ty == ImageType::Tgz {
                    cmd.arg("-z");
                }
                run(cmd.arg("-C").arg(tree).arg("-cf").arg(&tmp).arg(".")).map(|_| ())
            }
        };
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
        let bytes = std::fs::metadata(&dst).map_err(io(&dst))?.len();
        let (md5, sha256) = if opts.checksum {
            let (m, s) = write_checksums(&dst)?;
            (Some(m), Some(s))
        } else {
            (None, None)
        };
        tracing::info!(path = %dst.display(), bytes, "output written");
        out.push(OutputFile {
            image_type: ty,
            path: dst,
            bytes,
            md5,
            sha256,
        });
    }
    Ok(out)
}

/// Read `file` once and write `<file>.md5` and `<file>.sha256` in the
/// `md5sum`/`sha256sum` format (`<hex>  <file name>`), so `md5sum -c`
/// run in the output directory checks them. Returns both digests.
pub fn write_checksums(file: &Path) -> Result<(String, String)> {
    let mut f = std::fs::File::open(file).map_err(io(file))?;
    let mut md5 = Md5::new();
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(file))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
    }
    let (m, s) = (hex::encode(md5.finalize()), hex::encode(sha.finalize()));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (ext, digest) in [("md5", &m), ("sha256", &s)] {
        let mut p = file.as_os_str().to_owned();
        p.push(".");
        p.push(ext);
        let p = PathBuf::from(p);
        std::fs::write(&p, format!("{digest}  {name}\n")).map_err(io(&p))?;
    }
    Ok((m, s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn type_list_parses_dedups_and_puts_raw_last() {
        let t = ImageType::parse_list("raw,qcow2,tar,qcow2").unwrap();
        assert_eq!(t, vec![ImageType::Qcow2, ImageType::Tar, ImageType::Raw]);
        let e = ImageType::parse_list("qcow2,squashfs")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("-t:") && e.contains("squashfs"), "{e}");
        assert!(ImageType::parse_list(",").is_err());
    }

    #[test]
    fn output_names_follow_dib() {
        assert_eq!(
            output_path(Path::new("/o/image"), ImageType::Qcow2),
            Path::new("/o/image.qcow2")
        );
        assert_eq!(
            output_path(Path::new("/o/a.qcow2"), ImageType::Qcow2),
            Path::new("/o/a.qcow2")
        );
        assert_eq!(
            output_path(Path::new("/o/a.qcow2"), ImageType::Vhd),
            Path::new("/o/a.qcow2.vhd")
        );
    }

    #[test]
    fn checksum_files_verify_with_coreutils() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.raw");
        std::fs::write(&f, b"hello\n").unwrap();
        let (m, s) = write_checksums(&f).unwrap();
        assert_eq!(m, "b1946ac92492d2347c6235b4d2611184");
        assert_eq!(
            s,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        for tool in ["md5sum", "sha256sum"] {
            let ext = if tool == "md5sum" {
                "x.raw.md5"
            } else {
                "x.raw.sha256"
            };
            let st = Command::new(tool)
                .arg("-c")
                .arg(ext)
                .current_dir(d.path())
                .status()
                .unwrap();
            assert!(st.success(), "{tool} -c {ext}");
        }
    }
}
