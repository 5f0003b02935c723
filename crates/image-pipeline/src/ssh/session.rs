//! Connecting: the russh client handler (host keys through [`KnownHosts`]),
//! one authenticated [`SshSession`], and [`wait_for_ssh`] for a booting VM.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use tracing::Instrument as _;

use super::{KnownHosts, SshKey};
use crate::error::{Error, Result};

/// How long the TCP connection plus SSH handshake and authentication may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
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
/// The russh client handler: checks the host key against [`KnownHosts`].
pub(super) struct Client {
    host: String,
    port: u16,
    known_hosts: KnownHosts,
}

/// Errors out of the russh handler: a transport error or our host-key verdict.
#[derive(Debug)]
pub(super) enum ClientError {
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
/// A connected, authenticated SSH session.
pub struct SshSession {
    pub(super) handle: Handle<Client>,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) span: tracing::Span,
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

    pub(super) fn command_err(&self, command: &str, message: String) -> Error {
        Error::SshCommand {
            host: self.host.clone(),
            port: self.port,
            command: command.to_string(),
            message,
        }
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
