//! The build cache: downloaded packages, bootstrap tarballs and snapshots of
//! the root tree after each build stage, keyed by a hash chain of everything
//! that went into the tree up to that stage.
//!
//! Layout under the cache directory (`--image-cache`, `DIB_IMAGE_CACHE`,
//! default `~/.cache/image-create` as diskimage-builder):
//! - `debs/<distro>-<release>-<arch>/`: `.deb` files (debootstrap's
//!   `--cache-dir`, and apt's archives during package installs);
//! - `trees/<key>.tar.zst`: a root tree (bootstrap result or the tree after
//!   a stage), written to a temporary name and renamed, so a reader never
//!   sees a half-written snapshot;
//! - `apt-lists/<distro>-<release>-<arch>/`: apt's package lists;
//! - `locks/<name>.lock`: cross-process locks.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::cmd::{io, run};
use crate::error::{Error, Result};

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// An exclusive cross-process lock, released on drop.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

impl Cache {
    /// Open (creating) the cache at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Cache> {
        let root = root.into();
        for sub in ["debs", "trees", "locks"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        Ok(Cache { root })
    }

    /// diskimage-builder's default: `$DIB_IMAGE_CACHE`, else `~/.cache/image-create`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("DIB_IMAGE_CACHE").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        dirs::home_dir()
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".cache/image-create")
    }

    /// The cache directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Directory of downloaded packages for one distribution release.
    pub fn debs_dir(&self, distro: &str, release: &str, arch: &str) -> Result<PathBuf> {
        let d = self
            .root
            .join("debs")
            .join(format!("{distro}-{release}-{arch}"));
        std::fs::create_dir_all(&d).map_err(io(&d))?;
        Ok(d)
    }

    /// apt's package lists for one distribution release, kept between
    /// builds (bind-mounted at `/var/lib/apt/lists` during installs, so a
    /// later `apt-get update` only revalidates them and no list ends up
    /// in the image).
    pub fn apt_lists_dir(&self, distro: &str, release: &str, arch: &str) -> Result<PathBuf> {
        let d = self
            .root
            .join("apt-lists")
            .join(format!("{distro}-{release}-{arch}"));
        let partial = d.join("partial");
        std::fs::create_dir_all(&partial).map_err(io(&partial))?;
        Ok(d)
    }

    /// Take the exclusive lock `name` (blocks while another process holds it).
    pub fn lock(&self, name: &str) -> Result<CacheLock> {
        let p = self.root.join("locks").join(format!("{name}.lock"));
        let f = File::create(&p).map_err(io(&p))?;
        f.lock().map_err(io(&p))?;
        Ok(CacheLock { _file: f })
    }

    /// Path of the tree snapshot `key`.
    pub fn tree_path(&self, key: &str) -> PathBuf {
        self.root.join("trees").join(format!("{key}.tar.zst"))
    }

    /// Whether a snapshot of `key` exists.
    pub fn has_tree(&self, key: &str) -> bool {
        self.tree_path(key).is_file()
    }

    /// Store the tree at `dir` as snapshot `key` (numeric owners, xattrs, ACLs).
    #[tracing::instrument(skip(self, dir), fields(dir = %dir.display()))]
    pub fn store_tree(&self, key: &str, dir: &Path) -> Result<PathBuf> {
        let dst = self.tree_path(key);
        let tmp = dst.with_extension(format!("zst.{}.part", std::process::id()));
        let r = run(Command::new("tar")
            .args([
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
            ])
            .args(["-I", "zstd -T0 -1 -q", "-C"])
            .arg(dir)
            .arg("-cf")
            .arg(&tmp)
            .arg("."));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
        Ok(dst)
    }

    /// Record snapshot `key` as the same tree as snapshot `from` (a stage
    /// that left the tree as it was): a hard link, or a copy across
    /// filesystems; no re-packing.
    pub fn link_tree(&self, from: &str, key: &str) -> Result<PathBuf> {
        let src = self.tree_path(from);
        let dst = self.tree_path(key);
        if dst.is_file() {
            return Ok(dst);
        }
        let tmp = dst.with_extension(format!("zst.{}.part", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(&src, &tmp).is_err() {
            std::fs::copy(&src, &tmp).map_err(io(&src))?;
        }
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
        Ok(dst)
    }

    /// Unpack snapshot `key` into `dest` (created; should be empty).
    /// `Ok(false)` when there is no such snapshot.
    #[tracing::instrument(skip(self, dest), fields(dest = %dest.display()))]
    pub fn restore_tree(&self, key: &str, dest: &Path) -> Result<bool> {
        let src = self.tree_path(key);
        if !src.is_file() {
            return Ok(false);
        }
        std::fs::create_dir_all(dest).map_err(io(dest))?;
        run(Command::new("tar")
            .args([
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
            ])
            .args(["-I", "zstd -T0 -q", "-C"])
            .arg(dest)
            .arg("-xpf")
            .arg(&src))?;
        Ok(true)
    }
}

/// A hash chain of build inputs: each stage's key is the hash of the
/// previous key and the stage's own inputs, so changing an input of one
/// stage changes the keys of that stage and every later one, and nothing
/// before it.
#[derive(Debug, Clone)]
pub struct KeyChain {
    hasher: Sha256,
}

impl KeyChain {
    /// Start a chain; `seed` names the cache format (bump it to invalidate).
    pub fn new(seed: &str) -> KeyChain {
        let mut hasher = Sha256::new();
        hasher.update(b"diskimage-cache-v1\0");
        hasher.update(seed.as_bytes());
        KeyChain { hasher }
    }

    /// Add a labelled value (length-prefixed, so `("ab","c")` ≠ `("a","bc")`).
    pub fn push(&mut self, label: &str, value: &[u8]) -> &mut Self {
        for part in [label.as_bytes(), value] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
        self
    }

    /// Add a labelled string.
    pub fn push_str(&mut self, label: &str, value: &str) -> &mut Self {
        self.push(label, value.as_bytes())
    }

    /// Add every file of the tree at `dir`: relative paths, modes, symlink
    /// targets and contents, in sorted order. `dir` may also be a single
    /// file or symlink; a missing one adds a marker.
    pub fn push_tree(&mut self, label: &str, dir: &Path) -> Result<&mut Self> {
        self.push_str("tree", label);
        if std::fs::symlink_metadata(dir).is_err() {
            self.push_str("missing", "");
            return Ok(self);
        }
        let mut files = Vec::new();
        let top = std::fs::symlink_metadata(dir).map_err(io(dir))?;
        if top.is_dir() {
            walk(dir, dir, &mut files)?;
            files.sort();
        } else {
            // A single file (or symlink): hashed under an empty name.
            files.push(String::new());
        }
        for rel in files {
            let p = if rel.is_empty() {
                dir.to_path_buf()
            } else {
                dir.join(&rel)
            };
            let meta = std::fs::symlink_metadata(&p).map_err(io(&p))?;
            self.push_str("path", &rel);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                self.push("mode", &meta.permissions().mode().to_le_bytes());
            }
            if meta.file_type().is_symlink() {
                let t = std::fs::read_link(&p).map_err(io(&p))?;
                self.push_str("link", &t.to_string_lossy());
            } else if meta.is_file() {
                let mut f = File::open(&p).map_err(io(&p))?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f.read(&mut buf).map_err(io(&p))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                self.push("data", &h.finalize());
            }
        }
        Ok(self)
    }

    /// The current key (hex).
    pub fn key(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in rd {
        let entry = entry.map_err(io(dir))?;
        let p = entry.path();
        let rel = p
            .strip_prefix(base)
            .map_err(|_| Error::Io {
                path: p.clone(),
                source: std::io::Error::other("outside the hashed tree"),
            })?
            .to_string_lossy()
            .into_owned();
        let ft = entry.file_type().map_err(io(&p))?;
        out.push(rel);
        if ft.is_dir() {
            walk(base, &p, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chain_changes_with_any_input_and_keeps_prefix() {
        let mut a = KeyChain::new("s");
        a.push_str("x", "1");
        let k1 = a.key();
        a.push_str("y", "2");
        let k2 = a.key();
        let mut b = KeyChain::new("s");
        b.push_str("x", "1");
        assert_eq!(b.key(), k1);
        b.push_str("y", "3");
        assert_ne!(b.key(), k2);
        let mut c = KeyChain::new("s");
        c.push_str("x1", "");
        assert_ne!(c.key(), k1, "labels and values are length-prefixed");
    }

    #[test]
    fn tree_hash_sees_content_mode_and_names() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), "a").unwrap();
        let key = || {
            let mut k = KeyChain::new("t");
            k.push_tree("e", d.path()).unwrap();
            k.key()
        };
        let k0 = key();
        assert_eq!(key(), k0);
        std::fs::write(d.path().join("sub/f"), "b").unwrap();
        let k1 = key();
        assert_ne!(k1, k0);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            d.path().join("sub/f"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(key(), k1);
    }

    #[test]
    fn snapshot_round_trip_keeps_modes_links_and_owners() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path().join("cache")).unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/x"), "hello").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.join("etc/x"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::os::unix::fs::symlink("etc/x", src.join("link")).unwrap();
        assert!(!cache.has_tree("k"));
        assert!(!cache.restore_tree("k", &d.path().join("none")).unwrap());
        cache.store_tree("k", &src).unwrap();
        assert!(cache.has_tree("k"));
        cache.link_tree("k", "k2").unwrap();
        assert!(cache.has_tree("k2"));
        let dst = d.path().join("dst");
        assert!(cache.restore_tree("k2", &dst).unwrap());
        assert_eq!(std::fs::read_to_string(dst.join("etc/x")).unwrap(), "hello");
        let mode = std::fs::metadata(dst.join("etc/x"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o4755);
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            Path::new("etc/x")
        );
    }

    #[test]
    fn lock_is_reentrant_across_handles_after_release() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path()).unwrap();
        drop(cache.lock("a").unwrap());
        let _l = cache.lock("a").unwrap();
    }
}
