//! SSH key pairs: loaded from an OpenSSH file or generated per run.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};

use super::write_atomic;
use crate::error::{Error, Result};

/// An SSH private key (loaded from an OpenSSH file or generated in memory).
///
/// Its `Debug` output shows only the algorithm and fingerprint.
#[derive(Clone)]
pub struct SshKey {
    pub(super) key: Arc<PrivateKey>,
    origin: String,
}

impl fmt::Debug for SshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SshKey({} from {})", self.describe(), self.origin)
    }
}

impl SshKey {
    /// Load an unencrypted private key in OpenSSH format (ed25519, RSA, ECDSA).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let err = |message: String| Error::SshKey {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let key = russh::keys::decode_secret_key(&text, None)
            .map_err(|e| err(format!("not a usable unencrypted private key: {e}")))?;
        Ok(Self {
            key: Arc::new(key),
            origin: path.display().to_string(),
        })
    }

    /// Generate a fresh ed25519 key in memory (the pipeline's per-run keypair).
    ///
    /// Returns the key and its public half as an OpenSSH line
    /// (`ssh-ed25519 AAAA… comment`), ready for `authorized_keys` or a
    /// Nova keypair.
    pub fn generate_ed25519(comment: &str) -> Result<(Self, String)> {
        use ring::rand::SecureRandom as _;
        let err = |message: String| Error::SshKey {
            path: "<generated>".into(),
            message,
        };
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| err("the system random generator failed".into()))?;
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        seed.fill(0);
        key.set_comment(comment);
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| err(format!("cannot encode the public key: {e}")))?;
        Ok((
            Self {
                key: Arc::new(key),
                origin: "<generated>".into(),
            },
            public,
        ))
    }

    /// The public half as an OpenSSH line.
    pub fn public_openssh(&self) -> Result<String> {
        self.key
            .public_key()
            .to_openssh()
            .map_err(|e| Error::SshKey {
                path: self.origin.clone(),
                message: format!("cannot encode the public key: {e}"),
            })
    }

    /// Algorithm and SHA-256 fingerprint, e.g. `ssh-ed25519 SHA256:…`.
    pub fn describe(&self) -> String {
        format!(
            "{} {}",
            self.key.algorithm(),
            self.key.fingerprint(HashAlg::Sha256)
        )
    }

    /// Write the private key in OpenSSH format to `path`, atomically and with
    /// mode 0600 from the moment the file exists (never any other mode).
    pub fn write_private(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let err = |message: String| Error::SshKey {
            path: path.display().to_string(),
            message,
        };
        let text = self
            .key
            .to_openssh(LineEnding::LF)
            .map_err(|e| err(format!("cannot encode: {e}")))?;
        write_atomic(path, text.as_bytes(), 0o600).map_err(|e| err(format!("cannot write: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generated_key_writes_0600_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = SshKey::generate_ed25519("run-1").unwrap();
        assert!(
            public.starts_with("ssh-ed25519 ") && public.ends_with(" run-1"),
            "{public}"
        );
        let path = dir.path().join("id");
        key.write_private(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = SshKey::from_file(&path).unwrap();
        assert_eq!(back.describe(), key.describe());
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
