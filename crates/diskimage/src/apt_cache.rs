//! diskimage-builder's shared apt cache, safe for concurrent builds.
//!
//! The `dpkg` element's `root.d/50-shared-apt-cache` binds
//! `$DIB_IMAGE_CACHE/apt/$DISTRO_NAME` on the tree's
//! `/var/cache/apt/archives` for every later phase: two builds sharing a
//! cache then run apt on one directory (apt's own lock there is
//! non-blocking, so the second build fails, or one build's `apt-get clean`
//! empties what the other is about to install). Here each build checks out
//! its own copy of the directory instead ([`AptCacheCopy::check_out`]:
//! every `.deb` hard-linked into `<cache>/apt-copies/<id>/`, no data
//! copied), binds that, and checks the new `.deb`s back in when its tree
//! phases are over ([`AptCacheCopy::check_in`]: linked into the shared
//! directory, never overwriting). apt only moves a `.deb` into the archive
//! once it is complete and verified (it downloads under `partial/`), so
//! only complete files are checked in. Both steps run under the cache lock
//! `dib-apt-<hash of the shared directory>` (as the workspace's own `debs/`
//! directory has `debs-<distro>-<release>-<arch>`), so they take turns; a
//! copy is held by a lock file of its own while its build runs, and the
//! copy of a killed build is deleted at the next check-out.

use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::cmd::io;
use crate::error::Result;

/// One build's copy of a shared apt cache directory.
#[derive(Debug)]
pub struct AptCacheCopy {
    cache: Cache,
    shared: PathBuf,
    dir: PathBuf,
    lock_path: PathBuf,
    /// Held while the copy is in use (a sweeper's `try_lock` fails).
    _held: File,
}

/// The cache lock name guarding `shared`.
pub fn lock_name(shared: &Path) -> String {
    let h = Sha256::digest(shared.display().to_string().as_bytes());
    format!("dib-apt-{}", &hex::encode(h)[..16])
}

/// Link (or, across filesystems, copy then rename) every top-level `.deb`
/// of `from` missing in `to`; the number added.
fn add_debs(from: &Path, to: &Path) -> Result<usize> {
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir(from) else {
        return Ok(0);
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".deb") || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let dst = to.join(&name);
        if std::fs::symlink_metadata(&dst).is_ok() {
            continue;
        }
        let src = e.path();
        if std::fs::hard_link(&src, &dst).is_err() {
            let tmp = to.join(format!(".{}.copy", name.to_string_lossy()));
            std::fs::copy(&src, &tmp).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
        }
        n += 1;
    }
    Ok(n)
}

impl AptCacheCopy {
    /// Check out a copy of `shared` (created if missing) for one build.
    pub fn check_out(cache: &Cache, shared: &Path) -> Result<AptCacheCopy> {
        std::fs::create_dir_all(shared).map_err(io(shared))?;
        let _turn = cache.lock(&lock_name(shared))?;
        let parent = cache.path().join("apt-copies");
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        sweep(&parent)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let id = format!("{}-{nanos}", std::process::id());
        let lock_path = parent.join(format!("{id}.lock"));
        let held = File::create(&lock_path).map_err(io(&lock_path))?;
        held.lock().map_err(io(&lock_path))?;
        let dir = parent.join(&id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let n = add_debs(shared, &dir)?;
        tracing::info!(shared = %shared.display(), copy = %dir.display(), debs = n, "apt cache checked out");
        Ok(AptCacheCopy {
            cache: cache.clone(),
            shared: shared.to_path_buf(),
            dir,
            lock_path,
            _held: held,
        })
    }

    /// The build's directory, bound where the shared one would be.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Add the `.deb`s this build downloaded to the shared directory and
    /// delete the copy; the number added. (Call once nothing is bound on
    /// the copy any more.) Dropping a copy without checking it in only
    /// deletes it.
    pub fn check_in(self) -> Result<usize> {
        let _turn = self.cache.lock(&lock_name(&self.shared))?;
        let n = add_debs(&self.dir, &self.shared)?;
        tracing::info!(shared = %self.shared.display(), debs = n, "apt cache checked in");
        Ok(n)
    }
}

impl Drop for AptCacheCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Delete the copies whose build is gone (their lock file is free).
fn sweep(parent: &Path) -> Result<()> {
    for e in std::fs::read_dir(parent).map_err(io(parent))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".lock") else {
            continue;
        };
        let Ok(f) = File::options().write(true).open(e.path()) else {
            continue;
        };
        if f.try_lock().is_ok() {
            tracing::info!(copy = %id, "removing the apt cache copy of a build that is gone");
            let _ = std::fs::remove_dir_all(parent.join(id));
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn debs(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Two builds on one cache, each a few times over: apt downloading
    /// (`partial/` then a rename), `apt-get clean` emptying its archive.
    /// Neither sees the other's half-downloaded files, neither's clean
    /// removes a file of the shared directory or of the other's copy, and
    /// every downloaded `.deb` ends up in the shared directory.
    #[test]
    fn concurrent_builds_keep_the_shared_cache_whole() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path().join("cache")).unwrap();
        let shared = d.path().join("cache/apt/debian");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("base_1_amd64.deb"), b"base").unwrap();
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (cache, shared) = (cache.clone(), shared.clone());
                std::thread::spawn(move || {
                    for i in 0..15 {
                        let copy = AptCacheCopy::check_out(&cache, &shared).unwrap();
                        let dir = copy.dir().to_path_buf();
                        let seen = debs(&dir);
                        assert!(seen.contains(&"base_1_amd64.deb".to_string()));
                        assert!(seen.iter().all(|n| n.ends_with(".deb")), "{seen:?}");
                        std::fs::create_dir_all(dir.join("partial")).unwrap();
                        let part = dir.join(format!("partial/p{w}-{i}_amd64.deb"));
                        std::fs::write(&part, b"half").unwrap();
                        std::thread::yield_now();
                        std::fs::write(&part, b"whole").unwrap();
                        std::fs::rename(&part, dir.join(format!("p{w}-{i}_amd64.deb"))).unwrap();
                        // finalise.d-style `apt-get clean` on the copy.
                        if i % 3 == 0 {
                            for f in debs(&dir) {
                                if f != format!("p{w}-{i}_amd64.deb") {
                                    let _ = std::fs::remove_file(dir.join(f));
                                }
                            }
                        }
                        copy.check_in().unwrap();
                        assert!(!dir.exists());
                    }
                })
            })
            .collect();
        for t in workers {
            t.join().unwrap();
        }
        let got = debs(&shared);
        assert_eq!(got.len(), 31, "{got:?}");
        for f in &got {
            assert_ne!(std::fs::read(shared.join(f)).unwrap(), b"half", "{f}");
        }
        assert!(got.contains(&"base_1_amd64.deb".to_string()));
        assert!(!shared.join("partial").exists());
        assert_eq!(debs(&d.path().join("cache/apt-copies")).len(), 0);
    }

    /// Check-outs and check-ins take turns with everything else holding the
    /// shared directory's lock: while it is held, a check-out waits.
    #[test]
    fn check_out_waits_for_the_directorys_lock() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path()).unwrap();
        let shared = d.path().join("apt/debian");
        let held = cache.lock(&lock_name(&shared)).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let t = {
            let (cache, shared, done) = (cache.clone(), shared.clone(), done.clone());
            std::thread::spawn(move || {
                let c = AptCacheCopy::check_out(&cache, &shared).unwrap();
                done.store(true, Ordering::SeqCst);
                c.check_in().unwrap();
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            !done.load(Ordering::SeqCst),
            "checked out while the lock was held"
        );
        drop(held);
        t.join().unwrap();
        assert!(done.load(Ordering::SeqCst));
    }

    /// The copy of a build killed before its check-in (lock file free) is
    /// removed by the next check-out; a live one is not.
    #[test]
    fn a_killed_builds_copy_is_swept() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::open(d.path()).unwrap();
        let shared = d.path().join("apt/debian");
        let live = AptCacheCopy::check_out(&cache, &shared).unwrap();
        let parent = d.path().join("apt-copies");
        std::fs::create_dir_all(parent.join("1-2")).unwrap();
        std::fs::write(parent.join("1-2/x.deb"), b"x").unwrap();
        std::fs::write(parent.join("1-2.lock"), b"").unwrap();
        let next = AptCacheCopy::check_out(&cache, &shared).unwrap();
        assert!(!parent.join("1-2").exists());
        assert!(!parent.join("1-2.lock").exists());
        assert!(live.dir().is_dir());
        // Nothing of the dead copy reached the shared directory.
        drop(next);
        assert_eq!(live.check_in().unwrap(), 0);
        assert!(debs(&shared).is_empty());
    }
}
