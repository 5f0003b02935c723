//! A private OpenSSH server for tests: `/usr/sbin/sshd` on a free loopback
//! port with its own host key, config and authorized_keys in a temporary
//! directory, logging in as the current user (root here). Killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use image_pipeline::ssh::{KnownHosts, SshKey, SshSession, SshTarget};

/// A private sshd; killed on drop.
pub struct Sshd {
    /// Its host key, config, authorized_keys and log.
    pub dir: tempfile::TempDir,
    /// The loopback port it listens on.
    pub port: u16,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

    pub fn started() -> Self {
        let mut s = Self::prepare();
        s.start();
        s
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn authorize(&self, public_line: &str) {
        let path = self.dir.path().join("authorized_keys");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(public_line.trim_end());
        text.push('\n');
        std::fs::write(path, text).unwrap();
    }

    pub fn host_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap()
    }

    pub fn new_host_key(&self) {
        keygen(&["-t", "ed25519"], &self.dir.path().join("host_key"));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn known_hosts(&self) -> KnownHosts {
        KnownHosts::new(self.path("pipeline_known_hosts"))
    }

    /// A target for root with a freshly generated, authorised ed25519 key.
    pub fn target(&self) -> SshTarget {
        let (key, public) = SshKey::generate_ed25519("ssh-real-test").unwrap();
        self.authorize(&public);
        SshTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            key,
        }
    }

    pub async fn session(&self) -> SshSession {
        match SshSession::connect(&self.target(), &self.known_hosts()).await {
            Ok(s) => s,
            Err(e) => panic!("connect: {e}\nsshd log:\n{}", self.log()),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
