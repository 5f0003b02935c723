//! Tree snapshots packed off the build's critical path.
//!
//! [`Cache::store_tree`] packs and compresses the tree in one go while the
//! build waits (~7 s for a Debian tree here). [`Snapshots`] instead copies
//! the tree uncompressed into a staging directory on the build's tmpfs
//! (a memory copy: the tree may change right after) and compresses that
//! copy into the cache in a background `zstd` while the build goes on.
//! The compressed file is written under [`Cache::tree_part_path`] and
//! renamed to the snapshot's name only once `zstd` succeeded, so a failed,
//! interrupted or killed build never leaves a half-written snapshot under
//! a key (a killed build's `.part` goes at the next eviction pass).
//! [`Snapshots::finish`] (or the drop, on an error path) waits for every
//! pending snapshot; the build holds the cache's `trees` lock shared until
//! then. Without a staging directory (no tmpfs: the copy would go through
//! the shared disk) or with `DISKIMAGE_BACKGROUND_SNAPSHOTS=0` it packs in
//! the foreground.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::cache::{Cache, TAR_FLAGS};
use crate::cmd::{io, run};
use crate::error::{Error, Result};

/// One snapshot being compressed.
#[derive(Debug)]
struct Pending {
    key: String,
    /// The uncompressed copy in the staging directory.
    tar: PathBuf,
    child: Child,
}

/// The build's tree snapshots: stored in the background when a staging
/// directory is given, completed by [`Snapshots::finish`] or on drop.
#[derive(Debug)]
pub struct Snapshots {
    cache: Cache,
    staging: Option<PathBuf>,
    pending: Vec<Pending>,
    /// `(from, key)`: [`Cache::link_tree`] once `from` is complete.
    links: Vec<(String, String)>,
}

impl Snapshots {
    /// Snapshots into `cache`; `staging` (created) holds the uncompressed
    /// copies, `None` packs in the foreground (as does
    /// `DISKIMAGE_BACKGROUND_SNAPSHOTS=0`, for comparisons).
    pub fn new(cache: &Cache, staging: Option<PathBuf>) -> Result<Snapshots> {
        let staging = staging.filter(|_| {
            std::env::var("DISKIMAGE_BACKGROUND_SNAPSHOTS").map_or(true, |v| v.trim() != "0")
        });
        if let Some(s) = &staging {
            std::fs::create_dir_all(s).map_err(io(s))?;
        }
        Ok(Snapshots {
            cache: cache.clone(),
            staging,
            pending: Vec::new(),
            links: Vec::new(),
        })
    }

    /// Whether snapshot `key` exists or will once this build's pending
    /// snapshots complete.
    pub fn has(&self, key: &str) -> bool {
        self.cache.has_tree(key)
            || self.pending.iter().any(|p| p.key == key)
            || self.links.iter().any(|(_, k)| k == key)
    }

    /// Snapshot the tree at `dir` as `key`. In the background mode `dir`
    /// may change as soon as this returns.
    #[tracing::instrument(skip(self, dir), fields(dir = %dir.display()))]
    pub fn store(&mut self, key: &str, dir: &Path) -> Result<()> {
        self.reap()?;
        let Some(staging) = &self.staging else {
            return self.cache.store_tree(key, dir).map(drop);
        };
        let tar = staging.join(format!("{key}.tar"));
        let r = run(Command::new("tar")
            .args(TAR_FLAGS)
            .arg("-C")
            .arg(dir)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tar);
            return Err(e);
        }
        let part = self.cache.tree_part_path(key);
        // Lower priority: the build's own work comes first; the snapshot
        // fills the gaps and is waited for at the end.
        let child = Command::new("nice")
            .args(["-n", "10", "zstd", "-T0", "-1", "-q", "-f"])
            .arg(&tar)
            .arg("-o")
            .arg(&part)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Command {
                program: "zstd".into(),
                status: "not started".into(),
                stderr: e.to_string(),
            });
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&tar);
                return Err(e);
            }
        };
        tracing::info!(key = %key, "snapshot compressing in the background");
        self.pending.push(Pending {
            key: key.to_string(),
            tar,
            child,
        });
        Ok(())
    }

    /// Record `key` as the same tree as `from` (see [`Cache::link_tree`]);
    /// waits for `from` if it is still being compressed.
    pub fn link(&mut self, from: &str, key: &str) -> Result<()> {
        self.reap()?;
        let waiting =
            self.pending.iter().any(|p| p.key == from) || self.links.iter().any(|(_, k)| k == from);
        if waiting {
            self.links.push((from.to_string(), key.to_string()));
            Ok(())
        } else {
            self.cache.link_tree(from, key).map(drop)
        }
    }

    /// Wait for every pending snapshot; the first failure is returned
    /// (after all of them are done or cleaned up).
    pub fn finish(mut self) -> Result<()> {
        let t = std::time::Instant::now();
        let n = self.pending.len();
        let r = self.complete();
        tracing::info!(
            snapshots = n,
            waited_seconds = t.elapsed().as_secs_f64(),
            "background snapshots complete"
        );
        r
    }

    /// Complete the snapshots whose `zstd` has exited (freeing their
    /// staging copies, and making them usable by other builds, early).
    fn reap(&mut self) -> Result<()> {
        let mut first: Result<()> = Ok(());
        let mut still = Vec::new();
        for mut p in std::mem::take(&mut self.pending) {
            if matches!(p.child.try_wait(), Ok(Some(_))) {
                let r = self.complete_one(p);
                if first.is_ok() {
                    first = r;
                }
            } else {
                still.push(p);
            }
        }
        self.pending = still;
        let pending: Vec<String> = self.pending.iter().map(|p| p.key.clone()).collect();
        let mut waiting = Vec::new();
        for (from, key) in std::mem::take(&mut self.links) {
            if pending.contains(&from) || waiting.iter().any(|(_, k): &(String, String)| *k == from)
            {
                waiting.push((from, key));
            } else if self.cache.has_tree(&from) {
                let r = self.cache.link_tree(&from, &key).map(drop);
                if first.is_ok() {
                    first = r;
                }
            }
        }
        self.links = waiting;
        first
    }

    fn complete(&mut self) -> Result<()> {
        let mut first: Result<()> = Ok(());
        for p in std::mem::take(&mut self.pending) {
            let r = self.complete_one(p);
            if first.is_ok() {
                first = r;
            }
        }
        for (from, key) in std::mem::take(&mut self.links) {
            if self.cache.has_tree(&from) {
                let r = self.cache.link_tree(&from, &key).map(drop);
                if first.is_ok() {
                    first = r;
                }
            }
        }
        first
    }

    fn complete_one(&self, p: Pending) -> Result<()> {
        let part = self.cache.tree_part_path(&p.key);
        let out = p.child.wait_with_output();
        let _ = std::fs::remove_file(&p.tar);
        let ok = match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(Error::Command {
                program: format!("zstd {}", p.tar.display()),
                status: o.status.to_string(),
                stderr: crate::cmd::tail(&String::from_utf8_lossy(&o.stderr), 8),
            }),
            Err(e) => Err(Error::Command {
                program: format!("zstd {}", p.tar.display()),
                status: "not waited for".into(),
                stderr: e.to_string(),
            }),
        };
        if let Err(e) = ok {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        let dst = self.cache.tree_path(&p.key);
        std::fs::rename(&part, &dst).map_err(io(&dst))?;
        tracing::info!(key = %p.key, "snapshot stored");
        Ok(())
    }
}

impl Drop for Snapshots {
    /// An error path: the snapshots already taken are of phases that
    /// completed, so they are finished (not thrown away).
    fn drop(&mut self) {
        if let Err(e) = self.complete() {
            tracing::warn!(error = %e, "a background snapshot failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A cache under `cache/`, a source tree `src/` whose `etc/x` holds
    /// `text`, and the staging directory `staging/`, all in one temporary
    /// directory: the set-up every snapshot test starts from.
    struct Fixture {
        d: tempfile::TempDir,
        cache: Cache,
        src: PathBuf,
        staging: PathBuf,
    }

    impl Fixture {
        fn new(text: &str) -> Fixture {
            let d = tempfile::tempdir().unwrap();
            let cache = Cache::open(d.path().join("cache")).unwrap();
            let src = d.path().join("src");
            std::fs::create_dir_all(src.join("etc")).unwrap();
            std::fs::write(src.join("etc/x"), text).unwrap();
            let staging = d.path().join("staging");
            Fixture {
                d,
                cache,
                src,
                staging,
            }
        }

        /// A snapshot writer compressing in the background from `staging/`.
        fn snapshots(&self) -> Snapshots {
            Snapshots::new(&self.cache, Some(self.staging.clone())).unwrap()
        }
    }

    /// The snapshot is the tree as it was when `store` returned, whatever
    /// the build does to the tree while it is compressed; until then its
    /// key names no file (only a `.part`), and a link to it waits for it.
    #[test]
    fn background_snapshot_is_the_tree_at_store_time() {
        let f = Fixture::new("before");
        let (cache, src) = (&f.cache, &f.src);
        let mut s = f.snapshots();
        s.store("k1", src).unwrap();
        assert!(s.has("k1"));
        // The next phase changes the tree right away.
        std::fs::write(src.join("etc/x"), "after").unwrap();
        std::fs::write(src.join("etc/new"), "n").unwrap();
        s.link("k1", "k2").unwrap();
        assert!(s.has("k2"));
        s.finish().unwrap();
        for k in ["k1", "k2"] {
            let out = f.d.path().join(format!("out-{k}"));
            assert!(cache.restore_tree(k, &out).unwrap());
            assert_eq!(
                std::fs::read_to_string(out.join("etc/x")).unwrap(),
                "before"
            );
            assert!(!out.join("etc/new").exists());
        }
        // Nothing left behind: no staging copy, no part file.
        assert_eq!(std::fs::read_dir(&f.staging).unwrap().count(), 0);
        let parts = std::fs::read_dir(f.d.path().join("cache/trees"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
            .count();
        assert_eq!(parts, 0);
    }

    /// A snapshot whose compression is over is completed at the next
    /// store or link: usable by other builds, its staging copy freed,
    /// before the build ends.
    #[test]
    fn finished_snapshots_are_completed_before_the_end() {
        let f = Fixture::new("a");
        let (cache, src, staging) = (&f.cache, &f.src, &f.staging);
        let mut s = f.snapshots();
        s.store("k1", src).unwrap();
        let _ = s.pending[0].child.wait();
        s.store("k2", src).unwrap();
        assert!(cache.has_tree("k1"), "completed at the next store");
        assert!(!staging.join("k1.tar").exists());
        let _ = s.pending[0].child.wait();
        s.link("k2", "k3").unwrap();
        assert!(cache.has_tree("k2") && cache.has_tree("k3"));
        assert!(s.pending.is_empty() && s.links.is_empty());
        s.finish().unwrap();
    }

    /// Dropping the writer (an error path) completes what is pending; a
    /// snapshot whose compression fails is not stored under its key.
    #[test]
    fn drop_completes_pending_and_a_failed_compression_stores_nothing() {
        let f = Fixture::new("a");
        let (cache, src) = (&f.cache, &f.src);
        let mut s = f.snapshots();
        s.store("good", src).unwrap();
        drop(s);
        assert!(cache.has_tree("good"));
        let out = f.d.path().join("out");
        assert!(cache.restore_tree("good", &out).unwrap());
        assert_eq!(std::fs::read_to_string(out.join("etc/x")).unwrap(), "a");

        // zstd cannot write its output (a directory is in the way).
        let mut s = f.snapshots();
        std::fs::create_dir_all(cache.tree_part_path("broken").join("x")).unwrap();
        s.store("broken", src).unwrap();
        assert!(s.finish().is_err());
        assert!(!cache.has_tree("broken"));
    }

    /// A `.part` left by a killed build is never a snapshot and goes at
    /// the next eviction pass (with no build holding the trees).
    #[test]
    fn a_killed_builds_part_file_is_swept() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path()).unwrap();
        let part = d.path().join("trees/k.tar.zst.999999.part");
        std::fs::write(&part, b"half").unwrap();
        assert!(!cache.has_tree("k"));
        assert!(cache.tree_entries().unwrap().is_empty());
        let held = cache.lock_shared("trees").unwrap();
        cache
            .evict_trees(crate::cache::TreeEvictionPolicy { max_bytes: 0 }, &[])
            .unwrap();
        assert!(part.exists(), "a running build may be writing it");
        drop(held);
        cache
            .evict_trees(crate::cache::TreeEvictionPolicy { max_bytes: 0 }, &[])
            .unwrap();
        assert!(!part.exists());
    }
}
