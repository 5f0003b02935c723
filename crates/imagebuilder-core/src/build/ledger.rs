//! A build's ledger and lock: [`BuildLock`] keeps a second build of the same
//! name and `gc` off a running build's resources; [`ledgers`], [`gc`] and
//! [`needs_openstack`] release what SIGKILLed builds left behind.

use std::path::{Path, PathBuf};

use image_pipeline::cleanup::release_all;
use image_pipeline::{ComputeBackend, ResourceLedger};
use openstack_client::glance::GlanceClient;
use serde::Serialize;

use crate::error::{io_err, Error, Result};

/// The exclusive lock a running build holds on `<ledger>.lock` (released
/// when the process ends, killed or not): a second build of the same name
/// and `gc` leave a running build's resources alone.
#[derive(Debug)]
pub struct BuildLock {
    _file: std::fs::File,
}

impl BuildLock {
    /// The lock file of `ledger`.
    pub fn path(ledger: &Path) -> PathBuf {
        PathBuf::from(format!("{}.lock", ledger.display()))
    }

    /// Take the lock of `ledger` (`None` when a running build holds it).
    pub fn try_acquire(ledger: &Path) -> Result<Option<BuildLock>> {
        if let Some(d) = ledger.parent() {
            std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
        }
        let path = Self::path(ledger);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(BuildLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err("locking", &path)(e)),
        }
    }

    /// Take the lock of `ledger` for a build of `name`, refusing when
    /// another build of that name runs.
    pub fn acquire(ledger: &Path, name: &str) -> Result<BuildLock> {
        Self::try_acquire(ledger)?.ok_or_else(|| {
            Error::Config(format!(
                "a build of '{name}' is already running (it holds {})",
                Self::path(ledger).display()
            ))
        })
    }
}

/// What `imagebuilder gc` released or could not release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcOutcome {
    /// `<ledger file>: <kind> <id or name>` of each released resource.
    pub released: Vec<String>,
    /// The same with the error, for each resource still there.
    pub failed: Vec<String>,
    /// Ledgers of builds still running, left alone.
    pub running: Vec<PathBuf>,
}

/// The ledgers under `state_dir` (`<name>.ledger.jsonl`), of image `name`
/// only when given.
pub fn ledgers(state_dir: &Path, name: Option<&str>) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("reading", state_dir)(e)),
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let Some(image) = file.strip_suffix(".ledger.jsonl") else {
            continue;
        };
        if name.is_none_or(|n| n == image) {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Release every outstanding record of `ledgers` (what SIGKILLed builds
/// left: VMs, keypairs, security groups, snapshots, work directories,
/// half-written files, `-x` source images); the ledger of a build still
/// running (holding its [`BuildLock`]) is left alone.
pub async fn gc<B: ComputeBackend>(
    ledgers: &[PathBuf],
    backend: &B,
    glance: &GlanceClient,
) -> Result<GcOutcome> {
    let mut out = GcOutcome::default();
    for path in ledgers {
        let Some(_lock) = BuildLock::try_acquire(path)? else {
            out.running.push(path.clone());
            continue;
        };
        let ledger = ResourceLedger::open(path)?;
        if ledger.is_empty()? {
            continue;
        }
        let r = release_all(backend, glance, &ledger).await?;
        let file = path.display();
        out.released
            .extend(r.released.iter().map(|x| format!("{file}: {x}")));
        out.failed
            .extend(r.failed.iter().map(|x| format!("{file}: {x}")));
    }
    Ok(out)
}

/// Whether a ledger lists records of the OpenStack backend (`gc` then
/// needs it; the local backend's records need no cloud but Glance).
pub fn needs_openstack(ledgers: &[PathBuf]) -> Result<bool> {
    for path in ledgers {
        let ledger = ResourceLedger::open(path)?;
        if ledger
            .outstanding()?
            .iter()
            .any(|r| r.backend == image_pipeline::compute::openstack::BACKEND_NAME)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_build_holds_its_lock_until_it_ends() {
        let d = tempfile::tempdir().unwrap();
        let ledger = d.path().join("state/deb.ledger.jsonl");
        let held = BuildLock::acquire(&ledger, "deb").unwrap();
        assert!(BuildLock::try_acquire(&ledger).unwrap().is_none());
        let e = BuildLock::acquire(&ledger, "deb").unwrap_err().to_string();
        assert!(e.contains("a build of 'deb' is already running"), "{e}");
        drop(held);
        assert!(BuildLock::try_acquire(&ledger).unwrap().is_some());
        // The lock file is not a ledger.
        assert_eq!(
            ledgers(&d.path().join("state"), None).unwrap(),
            Vec::<PathBuf>::new()
        );
        std::fs::write(&ledger, "").unwrap();
        assert_eq!(
            ledgers(&d.path().join("state"), None).unwrap(),
            vec![ledger.clone()]
        );
        assert_eq!(
            ledgers(&d.path().join("state"), Some("other")).unwrap(),
            Vec::<PathBuf>::new()
        );
    }
}
