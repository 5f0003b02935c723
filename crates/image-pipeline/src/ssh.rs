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

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Sig};
use tokio::io::AsyncWriteExt as _;
use tracing::Instrument as _;

use crate::error::{Error, Result};

/// How long the TCP connection plus SSH handshake and authentication may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// An SSH private key (loaded from an OpenSSH file or generated in memory).
///
/// Its `Debug` output shows only the algorithm and fingerprint.
#[derive(Clone)]
pub struct SshKey {
    key: Arc<PrivateKey>,
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

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Host name or address.
    pub host: String,
    /// SSH port (22 normally).
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// The private key to authenticate with.
    pub key: SshKey,
}

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

/// The russh client handler: checks the host key against [`KnownHosts`].
struct Client {
    host: String,
    port: u16,
    known_hosts: KnownHosts,
}

/// Errors out of the russh handler: a transport error or our host-key verdict.
#[derive(Debug)]
enum ClientError {
    Russh(russh::Error),
    HostKey(Error),
}

impl From<russh::Error> for ClientError {
    fn from(e: russh::Error) -> Self {
        ClientError::Russh(e)
    }
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        self.known_hosts
            .check(&self.host, self.port, &key)
            .map_err(ClientError::HostKey)?;
        Ok(true)
    }
}

/// How to wait for SSH on a booting machine (the original: sleep 30 s, then
/// up to 25 tries 10 s apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Pause before the first attempt.
    pub initial_delay: Duration,
    /// Number of connection attempts (at least one is made).
    pub attempts: u32,
    /// Pause between attempts.
    pub interval: Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(30),
            attempts: 25,
            interval: Duration::from_secs(10),
        }
    }
}

/// Wait until `target` accepts an SSH login, and return that session.
///
/// For a VM just recreated at a known address, call [`KnownHosts::forget`]
/// first (the original removed the stale known_hosts entry before waiting).
///
/// Every failed attempt is logged at debug level with its reason. A changed
/// host key or an unusable known_hosts file ends the wait at once (retrying
/// cannot help); other errors (refused, timed out, authentication failure
/// while cloud-init installs the key) are retried.
pub async fn wait_for_ssh(
    target: &SshTarget,
    known_hosts: &KnownHosts,
    policy: WaitPolicy,
) -> Result<SshSession> {
    let attempts = policy.attempts.max(1);
    tokio::time::sleep(policy.initial_delay).await;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match SshSession::connect(target, known_hosts).await {
            Ok(session) => return Ok(session),
            Err(e @ (Error::HostKeyChanged { .. } | Error::KnownHosts { .. })) => return Err(e),
            Err(e) => {
                tracing::debug!(host = %target.host, port = target.port, attempt, attempts,
                    error = %e, "ssh not ready");
                if attempt >= attempts {
                    return Err(Error::SshWait {
                        host: target.host.clone(),
                        port: target.port,
                        attempts,
                        last: Box::new(e),
                    });
                }
            }
        }
        tokio::time::sleep(policy.interval).await;
    }
}

/// How to run a remote command.
///
/// Its `Debug` output names the environment variables, never their values.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Allocate a pseudo-terminal (`ssh -t`; sudo on CentOS needs one). The
    /// command's stdin is then the terminal, which sends nothing.
    pub pty: bool,
    /// Environment variables for the command. Names must be shell
    /// identifiers; values are never logged nor put on a command line.
    pub env: Vec<(String, String)>,
    /// File receiving the command's stdout and stderr, interleaved as they
    /// arrive (like `2>&1 | tee`); truncated first. `None` discards them.
    pub log: Option<PathBuf>,
    /// Kill the command's whole process group (signal KILL, from a second
    /// channel) after this long.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(name, _)| format!("{name}=<redacted>"))
            .collect();
        f.debug_struct("RunOptions")
            .field("pty", &self.pty)
            .field("env", &env)
            .field("log", &self.log)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Its exit status, when it exited.
    pub exit_status: Option<u32>,
    /// The signal that killed it, when one did (`KILL`, `TERM`, ...).
    pub signal: Option<String>,
    /// Whether [`RunOptions::timeout`] expired and the command was killed.
    pub timed_out: bool,
}

impl RunOutcome {
    /// Whether the command exited with status 0 in time.
    pub fn success(&self) -> bool {
        self.exit_status == Some(0) && !self.timed_out && self.signal.is_none()
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.timed_out {
            write!(f, "timed out and was killed")
        } else if let Some(sig) = &self.signal {
            write!(f, "was killed by signal {sig}")
        } else if let Some(code) = self.exit_status {
            write!(f, "exited with status {code}")
        } else {
            write!(f, "ended without an exit status")
        }
    }
}

/// Where data to upload comes from.
#[derive(Debug, Clone)]
pub enum UploadSource<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A local file.
    File(&'a Path),
}

/// Quote `s` for a POSIX shell (single quotes, `'` as `'\''`).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn sig_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(s) => s.clone(),
    }
}

/// Where a command's output goes.
enum Sink {
    Discard,
    File(tokio::fs::File, PathBuf),
    Buffer(Vec<u8>),
}

impl Sink {
    async fn write(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Buffer(b) => {
                b.extend_from_slice(data);
                Ok(())
            }
            Sink::File(f, path) => f.write_all(data).await.map_err(|e| Error::LocalFile {
                action: "writing command log",
                path: path.display().to_string(),
                source: e,
            }),
        }
    }
}

/// A connected, authenticated SSH session.
pub struct SshSession {
    handle: Handle<Client>,
    host: String,
    port: u16,
    span: tracing::Span,
}

impl fmt::Debug for SshSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SshSession({}:{})", self.host, self.port)
    }
}

impl SshSession {
    /// Connect to `target`, check its host key against `known_hosts`, and
    /// authenticate with the target's key (one attempt; see [`wait_for_ssh`]).
    pub async fn connect(target: &SshTarget, known_hosts: &KnownHosts) -> Result<Self> {
        let span = tracing::info_span!("ssh", host = %target.host, port = target.port, user = %target.user);
        let connecting = Self::connect_inner(target, known_hosts, span.clone());
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting.instrument(span.clone())).await {
            Ok(result) => result,
            Err(_) => Err(Error::SshConnect {
                host: target.host.clone(),
                port: target.port,
                message: format!("no SSH session within {}s", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    }

    async fn connect_inner(
        target: &SshTarget,
        known_hosts: &KnownHosts,
        span: tracing::Span,
    ) -> Result<Self> {
        let conn_err = |message: String| Error::SshConnect {
            host: target.host.clone(),
            port: target.port,
            message,
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let handler = Client {
            host: target.host.clone(),
            port: target.port,
            known_hosts: known_hosts.clone(),
        };
        let mut handle = client::connect(config, (target.host.as_str(), target.port), handler)
            .await
            .map_err(|e| match e {
                ClientError::HostKey(e) => e,
                ClientError::Russh(e) => conn_err(e.to_string()),
            })?;
        let hash = if target.key.key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| conn_err(e.to_string()))?
                .flatten()
        } else {
            None
        };
        let auth = handle
            .authenticate_publickey(
                target.user.clone(),
                PrivateKeyWithHashAlg::new(target.key.key.clone(), hash),
            )
            .await
            .map_err(|e| conn_err(format!("during authentication: {e}")))?;
        match auth {
            client::AuthResult::Success => {}
            client::AuthResult::Failure {
                remaining_methods, ..
            } => {
                let remaining: Vec<&str> = remaining_methods.iter().map(<&str>::from).collect();
                return Err(Error::SshAuth {
                    user: target.user.clone(),
                    host: target.host.clone(),
                    port: target.port,
                    key: target.key.describe(),
                    remaining: if remaining.is_empty() {
                        "nothing".into()
                    } else {
                        remaining.join(",")
                    },
                });
            }
        }
        tracing::debug!("ssh session established");
        Ok(Self {
            handle,
            host: target.host.clone(),
            port: target.port,
            span,
        })
    }

    fn command_err(&self, command: &str, message: String) -> Error {
        Error::SshCommand {
            host: self.host.clone(),
            port: self.port,
            command: command.to_string(),
            message,
        }
    }

    /// Run `command` through the remote user's shell.
    ///
    /// A non-zero exit, a signal or a timeout is reported in the
    /// [`RunOutcome`], not as an error; see [`SshSession::run_checked`].
    pub async fn run(&self, command: &str, options: &RunOptions) -> Result<RunOutcome> {
        let env_names: Vec<&str> = options.env.iter().map(|(k, _)| k.as_str()).collect();
        let span = tracing::info_span!(parent: &self.span, "ssh_run", command, env = ?env_names
            .iter().map(|k| format!("{k}=<redacted>")).collect::<Vec<_>>(), pty = options.pty);
        self.run_inner(command, options).instrument(span).await
    }

    async fn run_inner(&self, command: &str, options: &RunOptions) -> Result<RunOutcome> {
        let mut sink = match &options.log {
            None => Sink::Discard,
            Some(path) => {
                let file = tokio::fs::File::create(path)
                    .await
                    .map_err(|e| Error::LocalFile {
                        action: "creating command log",
                        path: path.display().to_string(),
                        source: e,
                    })?;
                Sink::File(file, path.clone())
            }
        };
        let wire = if options.env.is_empty() {
            command.to_string()
        } else {
            let mut script = String::new();
            for (name, value) in &options.env {
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(self.command_err(
                        command,
                        format!("environment variable name '{name}' is not a shell identifier"),
                    ));
                }
                script.push_str(&format!("export {name}={}\n", shell_quote(value)));
            }
            let env_file = format!("/tmp/.image-pipeline-env-{}", random_hex()?);
            self.upload_inner(
                UploadSource::Bytes(script.as_bytes()),
                &env_file,
                0o600,
                false,
            )
            .await?;
            let q = shell_quote(&env_file);
            format!(
                ". {q}; __ip_rc=$?; rm -f {q}; [ \"$__ip_rc\" -eq 0 ] || exit 125; unset __ip_rc\n{command}"
            )
        };
        // With a timeout, the remote shell records its pid (sshd made it a
        // session and process-group leader) so that the whole group can be
        // killed from a second channel: the SSH "signal" request is not
        // honoured by every sshd.
        let (wire, kill) = match options.timeout {
            None => (wire, None),
            Some(_) => {
                let q = shell_quote(&format!("/tmp/.image-pipeline-pid-{}", random_hex()?));
                (
                    format!(
                        "(umask 077; echo $$ > {q})\n(\n{wire}\n)\n__ip_rc=$?; rm -f {q}; exit $__ip_rc"
                    ),
                    Some(format!(
                        "p=$(cat {q} 2>/dev/null) && rm -f {q} && kill -s KILL -- -\"$p\""
                    )),
                )
            }
        };
        let timeout = options.timeout.zip(kill.as_deref());
        let outcome = self
            .exec(&wire, command, options.pty, None, &mut sink, timeout)
            .await?;
        if let Sink::File(mut f, path) = sink {
            f.flush().await.map_err(|e| Error::LocalFile {
                action: "writing command log",
                path: path.display().to_string(),
                source: e,
            })?;
        }
        tracing::info!(outcome = %outcome, "command finished");
        Ok(outcome)
    }

    /// Like [`SshSession::run`], but an unsuccessful command is an error naming
    /// the command, how it ended and the log file.
    pub async fn run_checked(&self, command: &str, options: &RunOptions) -> Result<RunOutcome> {
        let outcome = self.run(command, options).await?;
        if outcome.success() {
            Ok(outcome)
        } else {
            Err(Error::SshCommandFailed {
                host: self.host.clone(),
                port: self.port,
                command: command.to_string(),
                status: outcome.to_string(),
                log: options
                    .log
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "<discarded>".into()),
            })
        }
    }

    /// Upload `source` to `remote_path` with permission bits `mode`
    /// (`cat > path && chmod MODE path` over an exec channel, the file being
    /// created 0600 first), then check the remote size. Returns the size.
    pub async fn upload(
        &self,
        source: UploadSource<'_>,
        remote_path: &str,
        mode: u32,
    ) -> Result<u64> {
        let span = tracing::info_span!(parent: &self.span, "ssh_upload", remote = remote_path, mode = format!("{mode:04o}"));
        self.upload_inner(source, remote_path, mode, true)
            .instrument(span)
            .await
    }

    async fn upload_inner(
        &self,
        source: UploadSource<'_>,
        remote_path: &str,
        mode: u32,
        verify: bool,
    ) -> Result<u64> {
        let source_desc = match &source {
            UploadSource::Bytes(b) => format!("<{} bytes>", b.len()),
            UploadSource::File(p) => p.display().to_string(),
        };
        let err = |message: String| Error::SshUpload {
            host: self.host.clone(),
            port: self.port,
            source_desc: source_desc.clone(),
            remote: remote_path.to_string(),
            message,
        };
        let q = shell_quote(remote_path);
        let command = format!("umask 077 && cat > {q} && chmod {mode:04o} {q}");
        let mut sink = Sink::Buffer(Vec::new());
        let (outcome, expected) = match source {
            UploadSource::Bytes(b) => {
                let out = self.exec(
                    &command,
                    &command,
                    false,
                    Some(Input::Bytes(b)),
                    &mut sink,
                    None,
                );
                (out.await?, b.len() as u64)
            }
            UploadSource::File(p) => {
                let file = tokio::fs::File::open(p)
                    .await
                    .map_err(|e| Error::LocalFile {
                        action: "reading upload source",
                        path: p.display().to_string(),
                        source: e,
                    })?;
                let len = file
                    .metadata()
                    .await
                    .map_err(|e| Error::LocalFile {
                        action: "reading upload source",
                        path: p.display().to_string(),
                        source: e,
                    })?
                    .len();
                let out = self.exec(
                    &command,
                    &command,
                    false,
                    Some(Input::File(file)),
                    &mut sink,
                    None,
                );
                (out.await?, len)
            }
        };
        if !outcome.success() {
            let output = match &sink {
                Sink::Buffer(b) => String::from_utf8_lossy(b).trim().to_string(),
                _ => String::new(),
            };
            return Err(err(format!("remote `{command}` {outcome}: {output}")));
        }
        if verify {
            let check = format!("wc -c < {q}");
            let mut out = Sink::Buffer(Vec::new());
            let outcome = self
                .exec(&check, &check, false, None, &mut out, None)
                .await?;
            let text = match &out {
                Sink::Buffer(b) => String::from_utf8_lossy(b).trim().to_string(),
                _ => String::new(),
            };
            let size: Option<u64> = text.parse().ok();
            if !outcome.success() || size != Some(expected) {
                return Err(err(format!(
                    "size check failed: sent {expected} bytes, remote `{check}` {outcome} and printed '{text}'"
                )));
            }
        }
        tracing::debug!(bytes = expected, "uploaded");
        Ok(expected)
    }

    /// Run `wire` on a new channel; `shown` is what errors and logs name.
    async fn exec(
        &self,
        wire: &str,
        shown: &str,
        pty: bool,
        input: Option<Input<'_>>,
        sink: &mut Sink,
        timeout: Option<(Duration, &str)>,
    ) -> Result<RunOutcome> {
        let cerr = |message: String| self.command_err(shown, message);
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| cerr(format!("cannot open a channel: {e}")))?;
        if pty {
            channel
                .request_pty(true, "xterm", 200, 50, 0, 0, &[])
                .await
                .map_err(|e| cerr(format!("cannot request a pty: {e}")))?;
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => break,
                    Some(ChannelMsg::Failure) => {
                        return Err(cerr("the server refused a pty".into()))
                    }
                    Some(_) => continue,
                    None => return Err(cerr("channel closed while requesting a pty".into())),
                }
            }
        }
        channel
            .exec(true, wire)
            .await
            .map_err(|e| cerr(format!("cannot start: {e}")))?;
        match input {
            None => {}
            Some(Input::Bytes(b)) => channel
                .data(b)
                .await
                .map_err(|e| cerr(format!("sending input: {e}")))?,
            Some(Input::File(f)) => channel
                .data(f)
                .await
                .map_err(|e| cerr(format!("sending input: {e}")))?,
        }
        // Without a pty, end the command's stdin. With one, EOF would reach the
        // terminal rather than the command; its stdin stays open (a command
        // waiting for input then runs until its timeout).
        if !pty {
            channel
                .eof()
                .await
                .map_err(|e| cerr(format!("closing input: {e}")))?;
        }
        let mut outcome = RunOutcome {
            exit_status: None,
            signal: None,
            timed_out: false,
        };
        let mut deadline = timeout.map(|(t, _)| tokio::time::Instant::now() + t);
        loop {
            let msg = match deadline {
                None => channel.wait().await,
                Some(d) => match tokio::time::timeout_at(d, channel.wait()).await {
                    Ok(m) => m,
                    Err(_) if outcome.timed_out => {
                        // Killed, but the channel lingers: give up on it.
                        let _ = channel.close().await;
                        break;
                    }
                    Err(_) => {
                        outcome.timed_out = true;
                        let kill = timeout.map(|(_, k)| k).unwrap_or("");
                        tracing::warn!(timeout = ?timeout.map(|(t, _)| t), "command timed out; killing it");
                        let mut ignored = Sink::Discard;
                        let killed =
                            Box::pin(self.exec(kill, kill, false, None, &mut ignored, None));
                        if let Err(e) = killed.await {
                            tracing::warn!(error = %e, "could not kill the timed-out command");
                        }
                        // Collect how it ended, but do not wait for long.
                        deadline = Some(tokio::time::Instant::now() + Duration::from_secs(10));
                        continue;
                    }
                },
            };
            match msg {
                Some(ChannelMsg::Data { data }) => sink.write(&data).await?,
                Some(ChannelMsg::ExtendedData { data, .. }) => sink.write(&data).await?,
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    outcome.exit_status = Some(exit_status)
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    outcome.signal = Some(sig_name(&signal_name))
                }
                Some(ChannelMsg::Failure) => {
                    return Err(cerr("the server refused to run it".into()));
                }
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            }
        }
        Ok(outcome)
    }

    /// Close the connection politely.
    pub async fn close(self) -> Result<()> {
        self.handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await
            .map_err(|e| Error::SshConnect {
                host: self.host.clone(),
                port: self.port,
                message: format!("disconnecting: {e}"),
            })
    }
}

/// Standard input for a remote command.
enum Input<'a> {
    Bytes(&'a [u8]),
    File(tokio::fs::File),
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
    fn run_options_debug_names_variables_but_never_values() {
        let options = RunOptions {
            env: vec![("OS_PASSWORD".into(), "hunter2".into())],
            ..Default::default()
        };
        let text = format!("{options:?}");
        assert!(text.contains("OS_PASSWORD=<redacted>"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn shell_quote_handles_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

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

    #[test]
    fn outcome_success_and_display() {
        let ok = RunOutcome {
            exit_status: Some(0),
            signal: None,
            timed_out: false,
        };
        assert!(ok.success());
        let three = RunOutcome {
            exit_status: Some(3),
            ..ok.clone()
        };
        assert!(!three.success());
        assert_eq!(three.to_string(), "exited with status 3");
        let killed = RunOutcome {
            exit_status: None,
            signal: Some("KILL".into()),
            timed_out: false,
        };
        assert_eq!(killed.to_string(), "was killed by signal KILL");
    }
}
