//! The ledger of local VMs: what was booted and what is left to clean up.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{io, Error, Result};
use crate::process::{lock, SharedProc};

/// What the ledger knows about one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    /// The VM's name.
    pub name: String,
    /// Process id of its QEMU.
    pub pid: u32,
    /// The VM's directory (overlay, serial log, QMP socket, QEMU's stderr).
    pub dir: PathBuf,
    /// The files in that directory the VM created.
    pub files: Vec<PathBuf>,
}

#[derive(Debug)]
struct Entry {
    record: LedgerRecord,
    proc: SharedProc,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Mutex<Vec<Entry>>,
}

/// Every VM booted through it that has not been deleted yet.
///
/// Guarantees (within this process):
/// - [`crate::LocalVm::boot`] records a VM as soon as its QEMU process exists;
///   [`crate::LocalVm::delete`] removes the record after removing the files.
/// - [`Ledger::cleanup`] kills (SIGKILL) and reaps every recorded QEMU still
///   running and removes every recorded VM directory; it is idempotent.
/// - The ledger is shared by cloning; when the last clone (including the one
///   every [`crate::LocalVm`] holds) is dropped, it runs [`Ledger::cleanup`].
/// - A [`crate::LocalVm`] dropped without `delete` kills its QEMU at once
///   (also while a panic unwinds); its files stay until the ledger's cleanup.
///
/// Not covered: a SIGKILL of this process (nothing runs then). The VM
/// directories are named after the VMs, so a later run finds the leftovers
/// ([`crate::Error::AlreadyExists`]) rather than overwriting them.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Ledger {
        Ledger::default()
    }

    fn entries(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.inner.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn record(&self, record: LedgerRecord, proc: SharedProc) {
        tracing::debug!(vm = %record.name, pid = record.pid, "ledger: recorded");
        self.entries().push(Entry { record, proc });
    }

    pub(crate) fn forget(&self, name: &str) {
        self.entries().retain(|e| e.record.name != name);
    }

    /// The VMs not deleted yet, in boot order.
    pub fn records(&self) -> Vec<LedgerRecord> {
        self.entries().iter().map(|e| e.record.clone()).collect()
    }

    /// Kill every recorded QEMU still running and remove every recorded VM
    /// directory. Returns the names of the VMs cleaned up. Every VM is
    /// attempted; the first failure (a directory that cannot be removed) is
    /// returned after all were tried, and those VMs stay recorded.
    #[tracing::instrument(skip_all)]
    pub fn cleanup(&self) -> Result<Vec<String>> {
        let entries = std::mem::take(&mut *self.entries());
        let mut done = Vec::new();
        let mut kept = Vec::new();
        let mut first_err: Option<Error> = None;
        for e in entries {
            lock(&e.proc).kill();
            match remove_dir(&e.record.dir) {
                Ok(()) => {
                    tracing::info!(vm = %e.record.name, pid = e.record.pid, "ledger: cleaned up");
                    done.push(e.record.name.clone());
                }
                Err(err) => {
                    tracing::warn!(vm = %e.record.name, "ledger: {err}");
                    first_err.get_or_insert(err);
                    kept.push(e);
                }
            }
        }
        self.entries().extend(kept);
        match first_err {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let entries = std::mem::take(self.entries.get_mut().unwrap_or_else(|e| e.into_inner()));
        for e in entries {
            lock(&e.proc).kill();
            if let Err(err) = remove_dir(&e.record.dir) {
                tracing::warn!(vm = %e.record.name, "ledger dropped: {err}");
            }
        }
    }
}

/// Remove a VM directory; one that is already gone is fine.
pub(crate) fn remove_dir(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}
