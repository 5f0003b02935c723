//! The SSH layer of the pipeline (over `russh`): connect with a key, check the
//! host key against the pipeline's own known_hosts file, wait for a booting
//! VM, upload files and run commands with their output in a log file.
//!
//! This replaces the original's `ssh`/`scp` invocations: `StrictHostKeyChecking
//! accept-new` semantics on a private known_hosts file, `ssh-keygen -R` as
//! [`KnownHosts::forget`], `ssh -t` as [`RunOptions::pty`], and
//! `2>&1 | tee create.log` as [`RunOptions::log`].
//!
//! Environment values given to [`SshSession::run`] never appear on a command
//! line nor in a log: they travel over the channel's standard input into a
//! mode-0600 file that the remote shell sources and removes before the command.
//!
//! The layer is split along its seams: [`keys`] (key pairs), [`known_hosts`]
//! (the pipeline's own host-key file), [`session`] (connecting, waiting for a
//! booting VM), `command` (running commands into a log) and `upload`.

mod command;
pub mod keys;
pub mod known_hosts;
pub mod session;
mod upload;

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub use command::{RunOptions, RunOutcome};
pub use keys::SshKey;
pub use known_hosts::{ChangedKeyPolicy, KnownHosts};
pub use session::{wait_for_ssh, SshSession, SshTarget, WaitPolicy};
pub use upload::UploadSource;

/// Write `data` to `path` through a temporary file in the same directory
/// created with `mode`, then rename it over `path`.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Quote `s` for a POSIX shell (single quotes, `'` as `'\''`).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn random_hex() -> Result<String> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::SshKey {
            path: "<random>".into(),
            message: "the system random generator failed".into(),
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_handles_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
