//! Host-side image handling with `qemu-img`: validation before a session is
//! launched, overlays, scratch disks and the final conversion.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::error::{Error, Result};

/// What `qemu-img info` says about an image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The path.
    pub path: PathBuf,
    /// Format (`qcow2`, `raw`, ...).
    pub format: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Bytes allocated on the host.
    pub actual_size: u64,
}

#[derive(Deserialize)]
struct RawInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "actual-size", default)]
    actual_size: u64,
    #[serde(default)]
    encrypted: bool,
}

#[derive(Deserialize)]
struct MapEntry {
    data: bool,
}

/// Smallest raw file we accept as a disk (an MBR plus one sector).
const MIN_RAW: u64 = 64 * 1024;

pub(crate) fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
    let shown = format!(
        "{program} {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    tracing::debug!(command = %shown, "running");
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::Command {
            program: shown.clone(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(Error::Command {
            program: shown,
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// `qemu-img info` of any image, shared lock (works while in use).
pub fn info(path: &Path) -> Result<ImageInfo> {
    let json = run(
        "qemu-img",
        &[os("info"), os("-U"), os("--output=json"), path.as_os_str()],
    )?;
    let raw: RawInfo = serde_json::from_str(&json).map_err(|e| Error::Parse {
        program: "qemu-img info".into(),
        reason: e.to_string(),
    })?;
    Ok(ImageInfo {
        path: path.to_path_buf(),
        format: raw.format,
        virtual_size: raw.virtual_size,
        actual_size: raw.actual_size,
    })
}

/// Validate an input image before launching anything: it exists, is a disk
/// image `qemu-img` can read, is not locked by a running VM, not encrypted
/// and not blank.
#[tracing::instrument(skip_all, fields(path = %path.display()))]
pub fn check_input(path: &Path) -> Result<ImageInfo> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingFile {
            path: path.to_path_buf(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    if meta.is_dir() {
        return Err(Error::NotADisk {
            path: path.to_path_buf(),
            reason: "is a directory".into(),
        });
    }
    // Without -U qemu-img takes the shared "write" lock a running VM holds.
    let json = match run(
        "qemu-img",
        &[os("info"), os("--output=json"), path.as_os_str()],
    ) {
        Ok(j) => j,
        Err(Error::Command { stderr, .. }) if stderr.contains("lock") => {
            return Err(Error::InUse {
                path: path.to_path_buf(),
                detail: stderr,
            });
        }
        Err(Error::Command { stderr, .. }) => {
            return Err(Error::NotADisk {
                path: path.to_path_buf(),
                reason: stderr,
            });
        }
        Err(e) => return Err(e),
    };
    let raw: RawInfo = serde_json::from_str(&json).map_err(|e| Error::Parse {
        program: "qemu-img info".into(),
        reason: e.to_string(),
    })?;
    if raw.encrypted {
        return Err(Error::Encrypted {
            path: path.to_path_buf(),
            what: format!("{} encryption", raw.format),
        });
    }
    if raw.virtual_size == 0 {
        return Err(Error::EmptyDisk {
            path: path.to_path_buf(),
            reason: "virtual size is 0".into(),
        });
    }
    if raw.format == "raw" && raw.virtual_size < MIN_RAW {
        return Err(Error::NotADisk {
            path: path.to_path_buf(),
            reason: format!(
                "a raw file of {} bytes is too small to hold a partition table and a filesystem",
                raw.virtual_size
            ),
        });
    }
    let map = run(
        "qemu-img",
        &[os("map"), os("-U"), os("--output=json"), path.as_os_str()],
    )?;
    let entries: Vec<MapEntry> = serde_json::from_str(&map).map_err(|e| Error::Parse {
        program: "qemu-img map".into(),
        reason: e.to_string(),
    })?;
    if !entries.iter().any(|e| e.data) {
        return Err(Error::EmptyDisk {
            path: path.to_path_buf(),
            reason: "no data has ever been written to it".into(),
        });
    }
    Ok(ImageInfo {
        path: path.to_path_buf(),
        format: raw.format,
        virtual_size: raw.virtual_size,
        actual_size: raw.actual_size,
    })
}

/// Create a qcow2 overlay at `overlay` whose backing file is `base`, so the
/// input is never modified.
pub fn create_overlay(base: &ImageInfo, overlay: &Path) -> Result<()> {
    let abs = std::fs::canonicalize(&base.path).map_err(|e| Error::Io {
        path: base.path.clone(),
        source: e,
    })?;
    qcow2_create(
        overlay,
        Some(Backing {
            format: &base.format,
            file: abs.as_os_str(),
            unsafe_: false,
        }),
        None,
    )
}

/// The backing file of a new qcow2 (`-F format -b file`, `-u` when unsafe:
/// the backing file is not opened now).
struct Backing<'a> {
    format: &'a str,
    file: &'a std::ffi::OsStr,
    unsafe_: bool,
}

/// The one `qemu-img create -f qcow2` of this crate: `path`, on `backing`
/// when given, of `size` bytes when given (else the backing file's size).
fn qcow2_create(path: &Path, backing: Option<Backing<'_>>, size: Option<u64>) -> Result<()> {
    let size = size.map(|n| n.to_string());
    let mut args: Vec<&std::ffi::OsStr> = vec![os("create"), os("-q"), os("-f"), os("qcow2")];
    if let Some(b) = &backing {
        if b.unsafe_ {
            args.push(os("-u"));
        }
        args.extend([os("-F"), os(b.format), os("-b"), b.file]);
    }
    args.push(path.as_os_str());
    if let Some(size) = &size {
        args.push(os(size));
    }
    run("qemu-img", &args)?;
    Ok(())
}

/// Create a qcow2 overlay of `size` bytes on the raw NBD export `export`
/// served on the unix socket `socket` (not opened now: the server may
/// change what it serves until the overlay is used).
pub fn create_nbd_overlay(socket: &Path, export: &str, size: u64, overlay: &Path) -> Result<()> {
    let sock = socket.to_string_lossy();
    let plain = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    };
    if !plain(&sock) || !plain(export) {
        return Err(Error::NotADisk {
            path: socket.to_path_buf(),
            reason: format!(
                "NBD socket path and export ({export}) must be plain (letters, digits, /._-+) to go in a URI"
            ),
        });
    }
    let uri = format!("nbd+unix:///{export}?socket={sock}");
    qcow2_create(
        overlay,
        Some(Backing {
            format: "raw",
            file: os(&uri),
            unsafe_: true,
        }),
        Some(size),
    )
}

/// Create an empty qcow2 disk of `size` bytes.
pub fn create_qcow2(path: &Path, size: u64) -> Result<()> {
    qcow2_create(path, None, Some(size))
}

/// Output format of [`convert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// qcow2, zero clusters dropped.
    #[default]
    Qcow2,
    /// Sparse raw.
    Raw,
}

/// qcow2 compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zlib (readable by every QEMU).
    Zlib,
    /// zstd (faster, needs QEMU ≥ 5.1 to read).
    Zstd,
}

/// `s` as one of `choices` (name, value), or an error naming `option`.
fn parse_choice<T: Copy>(option: &str, s: &str, choices: &[(&str, T)]) -> Result<T> {
    choices
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Error::Parse {
                program: option.into(),
                reason: format!("`{s}` is not one of {}", names.join(", ")),
            }
        })
}

impl std::str::FromStr for OutputFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice(
            "--format",
            s,
            &[("qcow2", OutputFormat::Qcow2), ("raw", OutputFormat::Raw)],
        )
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_choice(
            "--compress",
            s,
            &[("zlib", Compression::Zlib), ("zstd", Compression::Zstd)],
        )
    }
}

/// `qemu-img convert` `src` (qcow2) to `dst`, written to a temporary name
/// first and renamed into place. Zero clusters are not written.
#[tracing::instrument(skip_all, fields(src = %src.display(), dst = %dst.display()))]
pub fn convert(
    src: &Path,
    dst: &Path,
    format: OutputFormat,
    compression: Option<Compression>,
) -> Result<()> {
    convert_cut(src, dst, None, format, compression)
}

/// [`convert`], keeping only the first `cut_at` bytes of `src` when given.
pub fn convert_cut(
    src: &Path,
    dst: &Path,
    cut_at: Option<u64>,
    format: OutputFormat,
    compression: Option<Compression>,
) -> Result<()> {
    let mut tmp = dst.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    let sliced = match cut_at {
        Some(n) => {
            let abs = std::fs::canonicalize(src).map_err(|e| Error::Io {
                path: src.to_path_buf(),
                source: e,
            })?;
            let name = abs.to_string_lossy().into_owned();
            if name.contains(',') {
                return Err(Error::Parse {
                    program: "qemu-img convert".into(),
                    reason: format!("{name}: a comma in the path"),
                });
            }
            Some(format!(
                "driver=raw,size={n},file.driver=qcow2,file.file.filename={name}"
            ))
        }
        None => None,
    };
    let mut args: Vec<&std::ffi::OsStr> = vec![os("convert")];
    match format {
        OutputFormat::Qcow2 => {
            args.extend([os("-O"), os("qcow2")]);
            match compression {
                Some(Compression::Zlib) => args.push(os("-c")),
                Some(Compression::Zstd) => {
                    args.extend([os("-c"), os("-o"), os("compression_type=zstd")])
                }
                None => {}
            }
        }
        OutputFormat::Raw => {
            if compression.is_some() {
                return Err(Error::Parse {
                    program: "--compress".into(),
                    reason: "compression needs --format qcow2".into(),
                });
            }
            args.extend([os("-O"), os("raw")]);
        }
    }
    match &sliced {
        Some(opts) => args.extend([os("--image-opts"), os(opts)]),
        None => args.extend([os("-f"), os("qcow2"), src.as_os_str()]),
    }
    args.push(tmp.as_os_str());
    if let Err(e) = run("qemu-img", &args) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dst).map_err(|e| Error::Io {
        path: dst.to_path_buf(),
        source: e,
    })
}
