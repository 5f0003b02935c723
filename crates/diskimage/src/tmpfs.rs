//! The build directory in a tmpfs, as `disk-image-create` does unless
//! `--no-tmpfs`: restoring a snapshot, the package installs, the raw disk
//! and the final clean-up then touch memory instead of the shared disk.
//!
//! diskimage-builder's rule is kept: a tmpfs is used when the machine's
//! memory is at least twice `DIB_MIN_TMPFS` GB (default 2), since a tmpfs
//! may grow to half the memory. Unlike diskimage-builder, a killed build
//! does not leave the tmpfs mounted: a small watchdog process (immune to
//! the terminal's signals) waits on a pipe from the build and unmounts the
//! tmpfs when the pipe closes, whether the build returned or was killed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::cmd::run;
use crate::error::Result;

/// Whether a tmpfs should be used: `wanted` (not `--no-tmpfs`) and memory
/// of at least 2 × `min_gb` GiB (`DIB_MIN_TMPFS`).
pub fn tmpfs_fits(wanted: bool, min_gb: u64) -> bool {
    wanted && mem_total_kib().is_some_and(|kib| kib >= min_gb * 2 * 1024 * 1024)
}

/// `DIB_MIN_TMPFS` from the environment (GB), default 2.
pub fn min_tmpfs_gb() -> u64 {
    std::env::var("DIB_MIN_TMPFS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(2)
}

fn mem_total_kib() -> Option<u64> {
    let mut s = String::new();
    std::fs::File::open("/proc/meminfo")
        .ok()?
        .read_to_string(&mut s)
        .ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A tmpfs mounted on a directory, unmounted on drop or, if the process
/// dies first, by the watchdog.
#[derive(Debug)]
pub struct Tmpfs {
    at: PathBuf,
    watchdog: Option<Child>,
}

impl Tmpfs {
    /// Mount a tmpfs on `at` (an existing, empty directory).
    pub fn mount(at: &Path) -> Result<Tmpfs> {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0755", "diskimage-build"])
            .arg(at))?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg("trap '' INT TERM HUP QUIT; cat >/dev/null; umount -l -- \"$1\"; rmdir -- \"$1\" 2>/dev/null; exit 0")
            .arg("diskimage-tmpfs-watchdog")
            .arg(at)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match watchdog {
            Ok(w) => Ok(Tmpfs {
                at: at.to_path_buf(),
                watchdog: Some(w),
            }),
            Err(e) => {
                let _ = run(Command::new("umount").arg("-l").arg(at));
                Err(crate::error::Error::Command {
                    program: "sh (tmpfs watchdog)".into(),
                    status: "not started".into(),
                    stderr: e.to_string(),
                })
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.at
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            // Closing the pipe is the signal; the watchdog unmounts.
            drop(w.stdin.take());
            let _ = w.wait();
        }
        let mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| {
                let at = self.at.display().to_string();
                t.lines().any(|l| l.split(' ').nth(4) == Some(at.as_str()))
            })
            .unwrap_or(false);
        if mounted {
            let _ = run(Command::new("umount").arg("-l").arg(&self.at));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mounted(p: &Path) -> bool {
        let p = p.display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
    }

    #[test]
    fn mounted_then_gone_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let at = d.path().join("w");
        std::fs::create_dir(&at).unwrap();
        let t = Tmpfs::mount(&at).unwrap();
        assert!(mounted(&at));
        std::fs::write(at.join("f"), "x").unwrap();
        drop(t);
        assert!(!mounted(&at));
        assert!(!at.join("f").exists(), "the file lived in the tmpfs");
    }

    /// The process holding the tmpfs is killed (SIGKILL, no destructor):
    /// the watchdog still unmounts it.
    #[test]
    fn a_killed_holder_leaves_no_tmpfs() {
        let d = tempfile::tempdir().unwrap();
        let at = d.path().join("w");
        std::fs::create_dir(&at).unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tmpfs::tests::tmpfs_holder_child", "--ignored"])
            .env("FX_TMPFS_AT", &at)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !at.join("ready").exists() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the holder ended early"
            );
            assert!(std::time::Instant::now() < deadline, "never mounted");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(mounted(&at));
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while mounted(&at) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!mounted(&at), "the tmpfs outlived its build");
    }

    /// Mounts a tmpfs and waits to be killed (run by the test above).
    #[test]
    #[ignore = "helper process of a_killed_holder_leaves_no_tmpfs"]
    fn tmpfs_holder_child() {
        let Some(at) = std::env::var_os("FX_TMPFS_AT") else {
            return;
        };
        let at = PathBuf::from(at);
        let _t = Tmpfs::mount(&at).unwrap();
        std::fs::write(at.join("ready"), "").unwrap();
        std::thread::sleep(std::time::Duration::from_secs(600));
    }

    #[test]
    fn the_rule_follows_dib_min_tmpfs() {
        assert!(!tmpfs_fits(false, 0));
        assert!(tmpfs_fits(true, 0));
        assert!(!tmpfs_fits(true, 1 << 30), "no machine has 2 EiB");
    }
}
