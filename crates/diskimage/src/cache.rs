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
//! - `apt/<distro>/`: diskimage-builder's shared apt cache (the `dpkg`
//!   element's), and `apt-copies/<id>/` each running build's copy of it
//!   ([`crate::apt_cache`]);
//! - `locks/<name>.lock`: cross-process locks (`debs-<distro>-<release>-<arch>`
//!   while a build writes into that package directory; `dib-apt-<hash>`
//!   while a build checks the shared apt cache out or in; `trees` shared
//!   while a build reads or writes snapshots, exclusive while old
//!   snapshots (and unfinished `.part` files) are deleted).
//!
//! The tree snapshots are evicted least recently used first (a restore or
//! a link marks a snapshot used) once they take more than
//! [`TreeEvictionPolicy::max_bytes`] (`DISKIMAGE_TREE_CACHE_MAX_GB`,
//! default [`DEFAULT_TREE_CACHE_MAX_GB`] GiB; `0` keeps everything); the
//! snapshots of the running build are never evicted. diskimage-builder has
//! no such cache, so no setting of its own applies.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::cmd::{io, run};
use crate::error::{Error, Result};

/// tar's flags for a root tree snapshot: numeric owners, xattrs, ACLs.
pub(crate) const TAR_FLAGS: &[&str] = &[
    "--numeric-owner",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
];

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A cross-process lock, released on drop.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// Default cap of the tree snapshots, GiB.
pub const DEFAULT_TREE_CACHE_MAX_GB: u64 = 10;

/// When old tree snapshots go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeEvictionPolicy {
    /// Total bytes the snapshots may take (hard links counted once);
    /// `0`: no limit.
    pub max_bytes: u64,
}

impl TreeEvictionPolicy {
    /// `DISKIMAGE_TREE_CACHE_MAX_GB` (GiB, `0` = unlimited), else
    /// [`DEFAULT_TREE_CACHE_MAX_GB`]. A value that is not a number is an
    /// error naming the variable.
    pub fn from_env() -> Result<TreeEvictionPolicy> {
        let gb = match std::env::var("DISKIMAGE_TREE_CACHE_MAX_GB") {
            Ok(v) if !v.trim().is_empty() => {
                v.trim().parse::<u64>().map_err(|_| Error::Option {
                    option: "DISKIMAGE_TREE_CACHE_MAX_GB".into(),
                    reason: format!("`{v}` is not a whole number of GiB"),
                })?
            }
            _ => DEFAULT_TREE_CACHE_MAX_GB,
        };
        Ok(TreeEvictionPolicy {
            max_bytes: gb.saturating_mul(1 << 30),
        })
    }
}

/// One stored snapshot, as the eviction policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Snapshot key.
    pub key: String,
    /// Bytes on disk.
    pub bytes: u64,
    /// Identity of the file (device, inode): hard-linked snapshots share it.
    pub file_id: (u64, u64),
    /// Last use (modification time, seconds since the epoch).
    pub used: i64,
}

/// The keys to delete so the snapshots fit `policy`: least recently used
/// first, never one of `keep`; a file hard-linked under several keys frees
/// its space only when all its keys go, so they go together.
pub fn eviction_plan(
    entries: &[TreeEntry],
    policy: TreeEvictionPolicy,
    keep: &[String],
) -> Vec<String> {
    use std::collections::BTreeMap;
    if policy.max_bytes == 0 {
        return Vec::new();
    }
    /// One file on disk and the keys naming it.
    struct File {
        bytes: u64,
        used: i64,
        keys: Vec<String>,
        kept: bool,
    }
    let mut files: BTreeMap<(u64, u64), File> = BTreeMap::new();
    for e in entries {
        let f = files.entry(e.file_id).or_insert(File {
            bytes: e.bytes,
            used: i64::MIN,
            keys: Vec::new(),
            kept: false,
        });
        f.used = f.used.max(e.used);
        f.keys.push(e.key.clone());
        f.kept |= keep.contains(&e.key);
    }
    let mut total: u64 = files.values().map(|f| f.bytes).sum();
    let mut order: Vec<File> = files.into_values().filter(|f| !f.kept).collect();
    order.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.keys.cmp(&b.keys)));
    let mut out = Vec::new();
    for mut f in order {
        if total <= policy.max_bytes {
            break;
        }
        total = total.saturating_sub(f.bytes);
        f.keys.sort();
        out.extend(f.keys);
    }
    out
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

    /// The lock of [`Cache::debs_dir`]`(distro, release, arch)`: held by
    /// whatever writes into that package directory (debootstrap's
    /// `--cache-dir`, apt with the directory bound on its archive), so two
    /// builds sharing the cache take turns instead of racing on a
    /// half-downloaded `.deb` (or failing on apt's own non-blocking lock).
    pub fn debs_lock(&self, distro: &str, release: &str, arch: &str) -> Result<CacheLock> {
        self.lock(&format!("debs-{distro}-{release}-{arch}"))
    }

    fn lock_file(&self, name: &str) -> Result<(File, PathBuf)> {
        let p = self.root.join("locks").join(format!("{name}.lock"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io(&p))?;
        Ok((f, p))
    }

    /// Take the exclusive lock `name` (blocks while another process holds it).
    pub fn lock(&self, name: &str) -> Result<CacheLock> {
        let (f, p) = self.lock_file(name)?;
        f.lock().map_err(io(&p))?;
        Ok(CacheLock { _file: f })
    }

    /// Take the lock `name` shared (blocks while it is held exclusively).
    pub fn lock_shared(&self, name: &str) -> Result<CacheLock> {
        let (f, p) = self.lock_file(name)?;
        f.lock_shared().map_err(io(&p))?;
        Ok(CacheLock { _file: f })
    }

    /// Take the exclusive lock `name` if nobody holds it, else `None`.
    pub fn try_lock(&self, name: &str) -> Result<Option<CacheLock>> {
        let (f, p) = self.lock_file(name)?;
        match f.try_lock() {
            Ok(()) => Ok(Some(CacheLock { _file: f })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&p)(e)),
        }
    }

    /// The stored snapshots (`trees/*.tar.zst`), for [`eviction_plan`].
    pub fn tree_entries(&self) -> Result<Vec<TreeEntry>> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.root.join("trees");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".tar.zst") else {
                continue;
            };
            let Ok(m) = e.metadata() else { continue };
            if !m.is_file() {
                continue;
            }
            out.push(TreeEntry {
                key: key.to_string(),
                bytes: m.blocks() * 512,
                file_id: (m.dev(), m.ino()),
                used: m.mtime(),
            });
        }
        Ok(out)
    }

    /// Delete the snapshots [`eviction_plan`] picks for `policy`, never
    /// one of `keep` (the running build's). Skipped (nothing deleted) while
    /// another build reads a snapshot or evicts. Returns the deleted keys.
    /// Also deletes the `.part` files of snapshots that were never
    /// completed (a killed build's): with the lock exclusive, no running
    /// build is writing one.
    pub fn evict_trees(&self, policy: TreeEvictionPolicy, keep: &[String]) -> Result<Vec<String>> {
        let Some(_lock) = self.try_lock("trees")? else {
            tracing::info!("tree cache in use by another build; no eviction this time");
            return Ok(Vec::new());
        };
        self.remove_partial_trees()?;
        if policy.max_bytes == 0 {
            return Ok(Vec::new());
        }
        let gone = eviction_plan(&self.tree_entries()?, policy, keep);
        for key in &gone {
            let p = self.tree_path(key);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&p)(e)),
                _ => tracing::info!(key = %key, "evicted tree snapshot"),
            }
        }
        Ok(gone)
    }

    /// Delete `trees/*.part` (call with the `trees` lock exclusive).
    fn remove_partial_trees(&self) -> Result<()> {
        let dir = self.root.join("trees");
        for e in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            if e.file_name().to_string_lossy().ends_with(".part") {
                let p = e.path();
                match std::fs::remove_file(&p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&p)(e)),
                    _ => tracing::info!(file = %p.display(), "removed an unfinished snapshot"),
                }
            }
        }
        Ok(())
    }

    /// Evict per `policy` (sparing `keep`, the build's own chain of
    /// keys), then hold the `trees` lock shared until the guard drops, so
    /// no other build evicts a snapshot this build may still restore.
    pub fn use_trees(&self, policy: TreeEvictionPolicy, keep: &[String]) -> Result<CacheLock> {
        self.evict_trees(policy, keep)?;
        self.lock_shared("trees")
    }

    /// Mark snapshot `key` as just used (its modification time).
    fn touch_tree(&self, key: &str) {
        let p = self.tree_path(key);
        if let Ok(f) = File::options().write(true).open(&p) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }

    /// Path of the tree snapshot `key`.
    pub fn tree_path(&self, key: &str) -> PathBuf {
        self.root.join("trees").join(format!("{key}.tar.zst"))
    }

    /// Whether a snapshot of `key` exists.
    pub fn has_tree(&self, key: &str) -> bool {
        self.tree_path(key).is_file()
    }

    /// The temporary name snapshot `key` is written under by this process
    /// (renamed to [`Cache::tree_path`] once complete; a `.part` left by a
    /// killed build is deleted by the next eviction pass).
    pub fn tree_part_path(&self, key: &str) -> PathBuf {
        self.tree_path(key)
            .with_extension(format!("zst.{}.part", std::process::id()))
    }

    /// Store the tree at `dir` as snapshot `key` (numeric owners, xattrs, ACLs).
    #[tracing::instrument(skip(self, dir), fields(dir = %dir.display()))]
    pub fn store_tree(&self, key: &str, dir: &Path) -> Result<PathBuf> {
        let dst = self.tree_path(key);
        let tmp = self.tree_part_path(key);
        let r = run(Command::new("tar")
            .args(TAR_FLAGS)
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
            self.touch_tree(key);
            return Ok(dst);
        }
        let tmp = self.tree_part_path(key);
        let _ = std::fs::remove_file(&tmp);
        self.touch_tree(from);
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
        self.touch_tree(key);
        std::fs::create_dir_all(dest).map_err(io(dest))?;
        run(Command::new("tar")
            .args(TAR_FLAGS)
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

    fn entry(key: &str, bytes: u64, ino: u64, used: i64) -> TreeEntry {
        TreeEntry {
            key: key.into(),
            bytes,
            file_id: (1, ino),
            used,
        }
    }

    #[test]
    fn eviction_removes_least_recently_used_until_under_the_cap() {
        let policy = TreeEvictionPolicy { max_bytes: 250 };
        let entries = vec![
            entry("new", 100, 1, 30),
            entry("old", 100, 2, 10),
            entry("mid", 100, 3, 20),
        ];
        assert_eq!(eviction_plan(&entries, policy, &[]), vec!["old"]);
        let policy = TreeEvictionPolicy { max_bytes: 100 };
        assert_eq!(eviction_plan(&entries, policy, &[]), vec!["old", "mid"]);
        // Under the cap, or no cap: nothing goes.
        let policy = TreeEvictionPolicy { max_bytes: 300 };
        assert!(eviction_plan(&entries, policy, &[]).is_empty());
        let policy = TreeEvictionPolicy { max_bytes: 0 };
        assert!(eviction_plan(&entries, policy, &[]).is_empty());
    }

    #[test]
    fn eviction_spares_the_running_build_and_counts_links_once() {
        let policy = TreeEvictionPolicy { max_bytes: 200 };
        // `a` and `a2` are one file (a stage that changed nothing); `b` is
        // older but kept; the linked pair goes together and its latest use
        // counts.
        let entries = vec![
            entry("a", 100, 1, 10),
            entry("a2", 100, 1, 40),
            entry("b", 100, 2, 5),
            entry("c", 100, 3, 20),
        ];
        let keep = vec!["b".to_string()];
        // 300 bytes in 3 files: `c` (used 20) goes before the pair (40).
        assert_eq!(eviction_plan(&entries, policy, &keep), vec!["c"]);
        let policy = TreeEvictionPolicy { max_bytes: 100 };
        assert_eq!(eviction_plan(&entries, policy, &keep), vec!["c", "a", "a2"]);
        // Everything kept: over the cap, nothing to delete.
        let keep: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert!(eviction_plan(&entries, policy, &keep).is_empty());
    }

    #[test]
    fn evict_trees_deletes_old_snapshots_and_restore_marks_use() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path().join("cache")).unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        // Incompressible content, so each snapshot has a known size.
        let data: Vec<u8> = (0..256 * 1024u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(src.join("f"), &data).unwrap();
        for k in ["k1", "k2", "k3"] {
            cache.store_tree(k, &src).unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for (i, k) in ["k1", "k2", "k3"].iter().enumerate() {
            let f = File::options()
                .write(true)
                .open(cache.tree_path(k))
                .unwrap();
            f.set_modified(old + std::time::Duration::from_secs(i as u64))
                .unwrap();
        }
        // k1 is the oldest, but restoring it makes it the newest.
        assert!(cache.restore_tree("k1", &d.path().join("out")).unwrap());
        let one = cache.tree_entries().unwrap()[0].bytes;
        let policy = TreeEvictionPolicy { max_bytes: one };
        let gone = cache.evict_trees(policy, &["k2".to_string()]).unwrap();
        assert_eq!(gone, vec!["k3", "k1"]);
        assert!(cache.has_tree("k2") && !cache.has_tree("k1") && !cache.has_tree("k3"));
        // While a build holds the trees shared, nobody evicts.
        cache.store_tree("k4", &src).unwrap();
        let held = cache.lock_shared("trees").unwrap();
        let policy = TreeEvictionPolicy { max_bytes: 1 };
        assert!(cache.evict_trees(policy, &[]).unwrap().is_empty());
        drop(held);
        assert_eq!(cache.evict_trees(policy, &[]).unwrap().len(), 2);
    }

    /// Two builds' package steps on one cache take turns: while one holds
    /// the directory's lock (and writes a `.deb` in two steps, as a
    /// download does), the other never sees the half-written file.
    #[test]
    fn debs_lock_serialises_two_builds_on_one_package_directory() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path()).unwrap();
        let debs = cache.debs_dir("debian", "bookworm", "amd64").unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (cache, debs) = (cache.clone(), debs.clone());
                let (inside, overlaps) = (inside.clone(), overlaps.clone());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let _l = cache.debs_lock("debian", "bookworm", "amd64").unwrap();
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        // No half-written file is visible to the holder.
                        for e in std::fs::read_dir(&debs).unwrap() {
                            let n = e.unwrap().file_name();
                            assert!(!n.to_string_lossy().ends_with(".partial"), "{n:?}");
                        }
                        let part = debs.join(format!("p{w}_{i}.deb.partial"));
                        std::fs::write(&part, b"half").unwrap();
                        std::thread::yield_now();
                        std::fs::rename(&part, debs.join(format!("p{w}_{i}.deb"))).unwrap();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in workers {
            t.join().unwrap();
        }
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
        assert_eq!(std::fs::read_dir(&debs).unwrap().count(), 100);
    }
}
