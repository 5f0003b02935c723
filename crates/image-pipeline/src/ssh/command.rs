//! Running commands: options (pty, environment, log file, time limit), how
//! a command ended, and the channel loop shared with uploads.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use russh::{ChannelMsg, Sig};
use tokio::io::AsyncWriteExt as _;
use tracing::Instrument as _;

use super::{random_hex, shell_quote, SshSession, UploadSource};
use crate::error::{Error, Result};

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
pub(super) enum Sink {
    Discard,
    File(tokio::fs::File, PathBuf),
    Buffer(Vec<u8>),
}

impl Sink {
    pub(super) async fn write(&mut self, data: &[u8]) -> Result<()> {
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
impl SshSession {
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
    /// Run `wire` on a new channel; `shown` is what errors and logs name.
    pub(super) async fn exec(
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
}

/// Standard input for a remote command.
pub(super) enum Input<'a> {
    Bytes(&'a [u8]),
    File(tokio::fs::File),
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
