//! The ledger of local VMs: what was booted and what is left to clean up.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

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
/// - The ledger is shared by cloning; when its last clone is dropped it runs
///   [`Ledger::cleanup`] (the VMs only hold a weak reference to it, so the
///   owner's ledger going out of scope cleans up even while `LocalVm`
///   handles still exist; their `delete` then finds nothing left to do).
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

    /// A reference that does not keep the ledger alive.
    pub(crate) fn downgrade(&self) -> WeakLedger {
        WeakLedger(Arc::downgrade(&self.inner))
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

/// A [`Ledger`] reference held by a VM (does not keep the ledger alive).
#[derive(Debug, Clone)]
pub(crate) struct WeakLedger(Weak<Inner>);

impl WeakLedger {
    /// Forget `name` if the ledger still exists.
    pub(crate) fn forget(&self, name: &str) {
        if let Some(inner) = self.0.upgrade() {
            Ledger { inner }.forget(name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::shared;

    /// A recorded "VM" whose process is a `sleep` and whose directory holds one file.
    fn fake_vm(ledger: &Ledger, root: &std::path::Path, name: &str) -> (SharedProc, PathBuf) {
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("disk.qcow2"), b"x").unwrap();
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let proc = shared(child);
        let pid = lock(&proc).pid();
        ledger.record(
            LedgerRecord {
                name: name.into(),
                pid,
                dir: dir.clone(),
                files: vec![dir.join("disk.qcow2")],
            },
            proc.clone(),
        );
        (proc, dir)
    }

    #[test]
    fn cleanup_kills_removes_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let (p1, d1) = fake_vm(&ledger, tmp.path(), "a");
        let (p2, d2) = fake_vm(&ledger, tmp.path(), "b");
        ledger.downgrade().forget("b");
        assert_eq!(
            ledger
                .records()
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(ledger.cleanup().unwrap(), ["a"]);
        assert!(lock(&p1).status().is_some(), "a's process was killed");
        assert!(!d1.exists());
        assert!(lock(&p2).status().is_none(), "b was forgotten: untouched");
        assert!(d2.exists());
        assert!(ledger.cleanup().unwrap().is_empty());
        lock(&p2).kill();
    }

    #[test]
    fn dropping_the_last_clone_cleans_up_and_weak_refs_do_not_keep_it() {
        let tmp = tempfile::tempdir().unwrap();
        let ledger = Ledger::new();
        let (p, d) = fake_vm(&ledger, tmp.path(), "a");
        let weak = ledger.downgrade();
        let clone = ledger.clone();
        drop(ledger);
        assert!(d.exists(), "a clone still holds the ledger");
        drop(clone);
        assert!(!d.exists());
        assert!(lock(&p).status().is_some());
        weak.forget("a");
    }

    #[test]
    fn the_last_process_handle_kills_it() {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id();
        drop(shared(child));
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
