//! The QEMU child process, shared between a [`crate::LocalVm`] and the
//! [`crate::Ledger`] so either can kill and reap it.

use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, MutexGuard};

/// A QEMU process and, once it ended, its exit status.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    status: Option<ExitStatus>,
    /// Kept running on purpose ([`crate::LocalVm::keep_running`]): no
    /// handle kills it any more.
    detached: bool,
}

/// Shared handle on a [`Proc`].
pub(crate) type SharedProc = Arc<Mutex<Proc>>;

pub(crate) fn shared(child: Child) -> SharedProc {
    Arc::new(Mutex::new(Proc {
        child,
        status: None,
        detached: false,
    }))
}

/// Lock, ignoring poisoning (the data is a process handle; a panic elsewhere
/// must not stop us from killing it).
pub(crate) fn lock(p: &SharedProc) -> MutexGuard<'_, Proc> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Proc {
    /// The last handle on a QEMU process kills it: a boot cancelled part-way
    /// (its future dropped) cannot leak a running QEMU.
    fn drop(&mut self) {
        if !self.detached {
            self.kill();
        }
    }
}

impl Proc {
    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while running; the exit status (reaped) once it ended.
    pub(crate) fn status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Let the process outlive every handle (and this program).
    pub(crate) fn detach(&mut self) {
        self.detached = true;
    }

    /// Whether [`Proc::detach`] was called.
    pub(crate) fn is_detached(&self) -> bool {
        self.detached
    }

    /// SIGKILL if still running, then reap. Returns the exit status when known.
    /// Logged at debug level only: killing a VM whose disk is thrown away is
    /// the normal end of [`crate::LocalVm::delete`]; the callers for which it
    /// means a graceful stop failed ([`crate::LocalVm::shutdown`]) warn themselves.
    pub(crate) fn kill(&mut self) -> Option<ExitStatus> {
        if self.status().is_none() {
            tracing::debug!(pid = self.pid(), "stopping qemu (SIGKILL)");
            let _ = self.child.kill();
            if let Ok(st) = self.child.wait() {
                self.status = Some(st);
            }
        }
        self.status
    }
}
