//! The pipeline's own known_hosts file: accept-new, refuse or replace a
//! changed key, OpenSSH's entry format.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use russh::keys::{HashAlg, PublicKey};

use super::write_atomic;
use crate::error::{Error, Result};

/// What to do when a host presents a key other than the recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangedKeyPolicy {
    /// Refuse the connection (the default; a changed key may be an attack).
    #[default]
    Refuse,
    /// Replace the recorded key (a VM recreated at the same address).
    Replace,
}

/// The pipeline's own known_hosts file (never `~/.ssh/known_hosts`).
///
/// Unknown hosts are accepted and recorded ("accept-new"); a changed key is
/// refused or replaced according to the [`ChangedKeyPolicy`]. Entries are
/// written as OpenSSH does (`host` for port 22, `[host]:port` otherwise);
/// every change rewrites the file atomically.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
    policy: ChangedKeyPolicy,
}

/// Serialises read-modify-write cycles on known_hosts files in this process.
static KNOWN_HOSTS_LOCK: Mutex<()> = Mutex::new(());

/// What the known_hosts file says about a host key.
enum HostKeyStatus {
    Known,
    Unknown,
    Changed(PublicKey),
}

impl KnownHosts {
    /// Use the known_hosts file at `path` (created on the first recorded key),
    /// refusing changed keys.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            policy: ChangedKeyPolicy::Refuse,
        }
    }

    /// The same file with another policy for changed keys.
    pub fn with_policy(mut self, policy: ChangedKeyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn entry_name(host: &str, port: u16) -> String {
        if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        }
    }

    fn err(&self, line: Option<usize>, message: String) -> Error {
        Error::KnownHosts {
            path: self.path.display().to_string(),
            line,
            message,
        }
    }

    /// The file's lines, each with the key if it is an entry for `name`.
    fn read_lines(&self, name: &str) -> Result<Vec<(String, Option<PublicKey>)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(self.err(None, format!("cannot read: {e}"))),
        };
        let mut lines = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            let mut fields = trimmed.split_whitespace();
            let matches = !trimmed.starts_with('#')
                && fields
                    .next()
                    .is_some_and(|hosts| hosts.split(',').any(|h| h == name));
            let key = if matches {
                let rest: Vec<&str> = fields.collect();
                let key = PublicKey::from_openssh(&rest.join(" "))
                    .map_err(|e| self.err(Some(index + 1), format!("unreadable key: {e}")))?;
                Some(key)
            } else {
                None
            };
            lines.push((line.to_string(), key));
        }
        Ok(lines)
    }

    fn write_lines(&self, lines: &[String]) -> Result<()> {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.err(None, format!("cannot create its directory: {e}")))?;
        }
        write_atomic(&self.path, text.as_bytes(), 0o600)
            .map_err(|e| self.err(None, format!("cannot write: {e}")))
    }

    /// The key recorded for `host:port`, if any.
    pub fn lookup(&self, host: &str, port: u16) -> Result<Option<PublicKey>> {
        let name = Self::entry_name(host, port);
        Ok(self.read_lines(&name)?.into_iter().find_map(|(_, key)| key))
    }

    /// Remove every entry for `host:port` (the original's "remove the stale
    /// known_hosts entry"); returns whether there was one.
    pub fn forget(&self, host: &str, port: u16) -> Result<bool> {
        let _guard = KNOWN_HOSTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let name = Self::entry_name(host, port);
        let lines = self.read_lines(&name)?;
        let before = lines.len();
        let kept: Vec<String> = lines
            .into_iter()
            .filter(|(_, key)| key.is_none())
            .map(|(line, _)| line)
            .collect();
        if kept.len() == before {
            return Ok(false);
        }
        self.write_lines(&kept)?;
        tracing::info!(host, port, path = %self.path.display(), "forgot known host key");
        Ok(true)
    }

    /// Record `key` for `host:port`, replacing any earlier entry.
    pub fn record(&self, host: &str, port: u16, key: &PublicKey) -> Result<()> {
        let _guard = KNOWN_HOSTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let name = Self::entry_name(host, port);
        let mut kept: Vec<String> = self
            .read_lines(&name)?
            .into_iter()
            .filter(|(_, k)| k.is_none())
            .map(|(line, _)| line)
            .collect();
        let mut bare = key.clone();
        bare.set_comment("");
        let encoded = bare
            .to_openssh()
            .map_err(|e| self.err(None, format!("cannot encode the key of {name}: {e}")))?;
        kept.push(format!("{name} {}", encoded.trim_end()));
        self.write_lines(&kept)
    }

    fn status(&self, host: &str, port: u16, offered: &PublicKey) -> Result<HostKeyStatus> {
        Ok(match self.lookup(host, port)? {
            None => HostKeyStatus::Unknown,
            Some(k) if k.key_data() == offered.key_data() => HostKeyStatus::Known,
            Some(k) => HostKeyStatus::Changed(k),
        })
    }

    /// Check the key offered by `host:port`: accept a known key, record an
    /// unknown one, and refuse or replace a changed one per the policy.
    pub fn check(&self, host: &str, port: u16, offered: &PublicKey) -> Result<()> {
        let fingerprint = offered.fingerprint(HashAlg::Sha256).to_string();
        match self.status(host, port, offered)? {
            HostKeyStatus::Known => Ok(()),
            HostKeyStatus::Unknown => {
                tracing::info!(host, port, key = %fingerprint, "recording new host key");
                self.record(host, port, offered)
            }
            HostKeyStatus::Changed(recorded) => {
                let recorded = recorded.fingerprint(HashAlg::Sha256).to_string();
                match self.policy {
                    ChangedKeyPolicy::Refuse => Err(Error::HostKeyChanged {
                        host: host.into(),
                        port,
                        recorded,
                        offered: fingerprint,
                        path: self.path.display().to_string(),
                    }),
                    ChangedKeyPolicy::Replace => {
                        tracing::warn!(host, port, %recorded, offered = %fingerprint,
                            "host key changed; replacing the recorded key as asked");
                        self.record(host, port, offered)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::SshKey;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn known_hosts_entry_names_follow_openssh() {
        assert_eq!(KnownHosts::entry_name("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(KnownHosts::entry_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
    }

    #[test]
    fn known_hosts_record_lookup_forget() {
        let dir = tempfile::tempdir().unwrap();
        let kh = KnownHosts::new(dir.path().join("kh"));
        let (a, _) = SshKey::generate_ed25519("a").unwrap();
        let (b, _) = SshKey::generate_ed25519("b").unwrap();
        let pa = a.key.public_key().clone();
        let pb = b.key.public_key().clone();
        kh.check("h", 2200, &pa).unwrap();
        kh.check("h", 22, &pb).unwrap();
        assert_eq!(
            kh.lookup("h", 2200).unwrap().unwrap().key_data(),
            pa.key_data()
        );
        let changed = kh.check("h", 2200, &pb).unwrap_err();
        assert!(changed.to_string().contains("h:2200"), "{changed}");
        assert!(kh.forget("h", 2200).unwrap());
        assert!(!kh.forget("h", 2200).unwrap());
        assert!(kh.lookup("h", 2200).unwrap().is_none());
        assert_eq!(
            kh.lookup("h", 22).unwrap().unwrap().key_data(),
            pb.key_data()
        );
        let replace = kh.clone().with_policy(ChangedKeyPolicy::Replace);
        replace.check("h", 22, &pa).unwrap();
        assert_eq!(
            kh.lookup("h", 22).unwrap().unwrap().key_data(),
            pa.key_data()
        );
        let mode = std::fs::metadata(kh.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn known_hosts_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        std::fs::write(&path, "# comment\n[h]:2200 ssh-ed25519 notbase64\n").unwrap();
        let err = KnownHosts::new(&path)
            .lookup("h", 2200)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
