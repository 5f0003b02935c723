//! A private OpenSSH server for tests: `/usr/sbin/sshd` on a free loopback
//! port with its own host key, config and authorized_keys in a temporary
//! directory, logging in as the current user (root here). Killed on drop.
//! The "VM" of the tests that SSH to a server of the fake Nova
//! ([`crate::nova_mock`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private sshd; killed on drop.
pub struct Sshd {
    /// Its host key, config, authorized_keys and log.
    pub dir: tempfile::TempDir,
    /// The loopback port it listens on.
    pub port: u16,
    child: Option<Child>,
}

/// A loopback TCP port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Generate a key without passphrase at `path` (and `path.pub`), replacing
/// any there, with `ssh-keygen` and its type arguments `args` (`["-t",
/// "ed25519"]`).
pub fn keygen(args: &[&str], path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let status = Command::new("ssh-keygen")
        .args(args)
        .args(["-q", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen {args:?} failed");
}

impl Sshd {
    /// Host key, config and empty authorized_keys; not started.
    pub fn prepare() -> Self {
        Self::prepare_with("")
    }

    /// Like [`Sshd::prepare`], with `extra` lines appended to its config.
    pub fn prepare_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        keygen(&["-t", "ed25519"], &dir.path().join("host_key"));
        let p = dir.path();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPermitRootLogin prohibit-password\nPidFile {pid}\n{extra}",
            hk = p.join("host_key").display(),
            ak = p.join("authorized_keys").display(),
            pid = p.join("sshd.pid").display(),
        );
        std::fs::write(p.join("sshd_config"), config).unwrap();
        std::fs::write(p.join("authorized_keys"), "").unwrap();
        Self {
            dir,
            port,
            child: None,
        }
    }

    /// Start it (its log in `sshd.log`), and wait until it listens.
    pub fn start(&mut self) {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(self.dir.path().join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/sbin/sshd");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd did not listen on {}: {}", self.port, self.log());
    }

    /// [`Sshd::prepare`], then [`Sshd::start`].
    pub fn started() -> Self {
        let mut s = Self::prepare();
        s.start();
        s
    }

    /// Kill it (if running) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Append the public key line `public_line` to its authorized_keys.
    pub fn authorize(&self, public_line: &str) {
        let path = self.dir.path().join("authorized_keys");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(public_line.trim_end());
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    /// Its host public key line.
    pub fn host_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap()
    }

    /// Replace its host key (seen by the clients that connect after a restart).
    pub fn new_host_key(&self) {
        keygen(&["-t", "ed25519"], &self.dir.path().join("host_key"));
    }

    /// The file `name` in its directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
