//! A private mount and PID namespace for the build's chroot work, so that
//! nothing a hook or the executor mounts is ever seen by (or left on) the
//! host, and everything is torn down even when the build is killed.
//!
//! [`MountNamespace::new`] starts a holder:
//! `setpriv --pdeathsig KILL -- unshare --mount --propagation private --pid
//! --fork --kill-child -- sleep infinity`, spawned from a keeper thread that
//! lives as long as the value (the death signal follows the spawning
//! thread). Commands run inside with `nsenter --target <init> --mount
//! --pid` ([`MountNamespace::command`]); their mounts are private to the
//! namespace. When the value is dropped, or when the building process dies
//! in any way (SIGKILL included), `unshare` is killed, its child (PID 1 of
//! the namespace) is killed with it, the kernel kills every process left in
//! the PID namespace, and the mount namespace and all its mounts go away
//! with its last process.
//!
//! Files written through such a command land in the same filesystems as on
//! the host (only the mount table is private), so the host reads the tree
//! as usual; what is mounted over it inside is invisible outside.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The namespace's holder; see the module documentation.
#[derive(Debug)]
pub struct MountNamespace {
    /// PID (host view) of the namespace's init, the target of `nsenter`.
    init: u32,
    /// Dropping it tells the keeper thread to kill the holder.
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
    cwd: PathBuf,
}

fn spawn_error(e: impl std::fmt::Display) -> Error {
    Error::Command {
        program: "unshare --mount --pid (private namespace for the build)".into(),
        status: "not started".into(),
        stderr: e.to_string(),
    }
}

impl MountNamespace {
    /// Start a fresh private mount + PID namespace (needs root).
    pub fn new() -> Result<MountNamespace> {
        let (pid_tx, pid_rx) = mpsc::channel::<std::io::Result<u32>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let keeper = std::thread::Builder::new()
            .name("diskimage-mountns".into())
            .spawn(move || {
                let child = Command::new("setpriv")
                    .args(["--pdeathsig", "KILL", "--", "unshare", "--mount"])
                    .args(["--propagation", "private", "--pid", "--fork"])
                    .args(["--kill-child", "--", "sleep", "infinity"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn();
                let mut child: Child = match child {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = pid_tx.send(Err(e));
                        return;
                    }
                };
                let _ = pid_tx.send(Ok(child.id()));
                // Until the owner drops its sender (or sends).
                let _ = stop_rx.recv();
                let _ = child.kill();
                let _ = child.wait();
            })
            .map_err(spawn_error)?;
        let holder = match pid_rx.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => {
                let _ = keeper.join();
                return Err(spawn_error(e));
            }
            Err(e) => {
                let _ = keeper.join();
                return Err(spawn_error(e));
            }
        };
        let mut ns = MountNamespace {
            init: 0,
            stop: Some(stop_tx),
            keeper: Some(keeper),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        };
        // `unshare` forks the namespace's init right after unsharing; wait
        // for it to appear (and for `unshare` to have left the old mount
        // namespace's view), or for the holder to fail.
        let children = format!("/proc/{holder}/task/{holder}/children");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let init = std::fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
            if let Some(init) = init {
                if ns_of(init, "pid") != ns_of(std::process::id(), "pid") {
                    ns.init = init;
                    return Ok(ns);
                }
            }
            if !Path::new(&format!("/proc/{holder}")).exists() || Instant::now() > deadline {
                return Err(spawn_error(
                    "the namespace holder exited (unshare needs root and util-linux)",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// PID (host view) of the namespace's init.
    pub fn init_pid(&self) -> u32 {
        self.init
    }

    /// `program` run inside the namespace (its mounts, its PIDs), in the
    /// caller's working directory.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={}", self.init))
            .args(["--mount", "--pid"])
            .arg(format!("--wd={}", self.cwd.display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Mount points inside the namespace at or below `dir`, deepest first.
    pub fn mounts_under(&self, dir: &Path) -> Vec<PathBuf> {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.init)) else {
            return Vec::new();
        };
        let dir = dir.display().to_string();
        let under = format!("{}/", dir.trim_end_matches('/'));
        let mut points: Vec<String> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(|m| m.replace("\\040", " "))
            .filter(|m| *m == dir || m.starts_with(&under))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        points.dedup();
        points.into_iter().map(PathBuf::from).collect()
    }

    /// Unmount (lazily) everything mounted inside the namespace below
    /// `dir`, deepest first: what hooks mounted and left, before the tree
    /// is used as the image's content.
    pub fn unmount_under(&self, dir: &Path) -> Result<()> {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        for m in self.mounts_under(&dir) {
            if m == dir {
                continue;
            }
            crate::cmd::run(self.command("umount").arg("-l").arg(&m))?;
        }
        Ok(())
    }

    /// Kill the namespace now (also done on drop).
    pub fn close(mut self) {
        self.stop_holder();
    }

    fn stop_holder(&mut self) {
        drop(self.stop.take());
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

impl Drop for MountNamespace {
    fn drop(&mut self) {
        self.stop_holder();
    }
}

/// The namespace inode link of `pid` (`/proc/<pid>/ns/<kind>`).
fn ns_of(pid: u32, kind: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn host_mounts() -> String {
        std::fs::read_to_string("/proc/self/mountinfo").unwrap()
    }

    /// A mount made inside is private, processes started inside die with
    /// the namespace, and nothing is left on the host.
    #[test]
    fn mounts_stay_inside_and_die_with_the_namespace() {
        let d = tempfile::tempdir().unwrap();
        let at = d.path().join("m");
        std::fs::create_dir_all(&at).unwrap();
        let ns = MountNamespace::new().unwrap();
        let st = ns
            .command("mount")
            .args(["-t", "tmpfs", "fx-private"])
            .arg(&at)
            .status()
            .unwrap();
        assert!(st.success());
        let inside = ns
            .command("cat")
            .arg("/proc/self/mountinfo")
            .output()
            .unwrap();
        let at_s = at.display().to_string();
        assert!(String::from_utf8_lossy(&inside.stdout).contains(&at_s));
        assert!(!host_mounts().contains(&at_s), "leaked to the host");
        // a background process started inside
        let st = ns
            .command("sh")
            .args(["-c", "sleep 600 >/dev/null 2>&1 &"])
            .status()
            .unwrap();
        assert!(st.success());
        let mnt = ns_of(ns.init_pid(), "mnt").unwrap();
        drop(ns);
        let members = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .filter(|e| std::fs::read_link(e.path().join("ns/mnt")).ok() == Some(mnt.clone()))
                .count()
        };
        // The kernel reaps the namespace's processes asynchronously.
        let deadline = Instant::now() + Duration::from_secs(30);
        while members() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(members(), 0, "processes left in the namespace");
        assert!(!host_mounts().contains(&at_s));
    }
}
