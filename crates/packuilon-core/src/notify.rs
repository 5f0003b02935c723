//! Notifications of finished builds: mail through a sendmail-compatible
//! command (`SUCCESS_ADDRESS`, `FAILURE_ADDRESS`) and a Slack incoming
//! webhook on success (`SLACK_SUCCESS_HOOK`). All optional; a notification
//! that cannot be sent is logged and never changes the build's outcome.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use crate::config::{Config, Secret};
use crate::error::{Error, Result};

/// What happened to a build, for a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The build name.
    pub build: String,
    /// The image name(s) or build description.
    pub images: Vec<String>,
    /// `None` on success, else why it failed.
    pub failure: Option<String>,
    /// The log files.
    pub logs: Vec<String>,
    /// Attempts made.
    pub attempts: u32,
}

impl Notice {
    /// The mail subject.
    pub fn subject(&self) -> String {
        match &self.failure {
            None => format!("packuilon: build of {} succeeded", self.build),
            Some(_) => format!("packuilon: build of {} failed", self.build),
        }
    }

    /// The mail body (and the Slack text).
    pub fn body(&self) -> String {
        let mut b = match &self.failure {
            None => format!(
                "The image build {} succeeded; image(s): {}.\n",
                self.build,
                self.images.join(", ")
            ),
            Some(why) => format!(
                "The image build {} failed after {} attempt(s): {why}\n",
                self.build, self.attempts
            ),
        };
        if !self.logs.is_empty() {
            b.push_str(&format!("Log file(s): {}\n", self.logs.join(", ")));
        }
        b
    }
}

/// Where notifications go.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// The mail command and its arguments (`MAIL_COMMAND`, default
    /// `/usr/sbin/sendmail -t -i`); it reads the whole message, headers
    /// included, on its standard input.
    pub mail_command: Vec<String>,
    /// `SUCCESS_ADDRESS`.
    pub success_address: Option<String>,
    /// `FAILURE_ADDRESS`.
    pub failure_address: Option<String>,
    /// `SLACK_SUCCESS_HOOK` (a secret URL: never logged).
    pub slack_success_hook: Option<Secret>,
}

impl Notifier {
    /// The `[global]` notification settings of a config file.
    pub fn from_config(config: &Config) -> Self {
        let g = &config.global;
        Notifier {
            mail_command: g.mail_command.clone(),
            success_address: g.success_address.clone().filter(|a| !a.is_empty()),
            failure_address: g.failure_address.clone().filter(|a| !a.is_empty()),
            slack_success_hook: g
                .slack_success_hook
                .clone()
                .filter(|h| !h.expose().is_empty()),
        }
    }

    /// Send every notification configured for `notice`; failures are
    /// logged, not returned.
    pub async fn notify(&self, notice: &Notice) {
        let address = match notice.failure {
            None => &self.success_address,
            Some(_) => &self.failure_address,
        };
        if let Some(to) = address {
            match self.mail(to, notice).await {
                Ok(()) => info!(to = %to, "notification mailed"),
                Err(e) => warn!(error = %e, "cannot send the notification mail"),
            }
        }
        if notice.failure.is_none() {
            if let Some(hook) = &self.slack_success_hook {
                match slack(hook, &notice.body()).await {
                    Ok(()) => info!("Slack notified"),
                    Err(e) => warn!(error = %e, "cannot post to the Slack hook"),
                }
            }
        }
    }

    /// Mail `notice` to `to` through the mail command.
    pub async fn mail(&self, to: &str, notice: &Notice) -> Result<()> {
        let (program, args) = match self.mail_command.split_first() {
            Some((p, a)) => (PathBuf::from(p), a.to_vec()),
            None => (
                PathBuf::from("/usr/sbin/sendmail"),
                vec!["-t".to_string(), "-i".to_string()],
            ),
        };
        let spawn_err = |source| Error::Spawn {
            build: notice.build.clone(),
            program: program.clone(),
            source,
        };
        let message = format!(
            "To: {to}\nSubject: {}\nContent-Type: text/plain; charset=utf-8\n\n{}",
            notice.subject(),
            notice.body()
        );
        let mut child = tokio::process::Command::new(&program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(message.as_bytes())
                .await
                .map_err(spawn_err)?;
        }
        let out = child.wait_with_output().await.map_err(spawn_err)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Notify {
                what: format!("mail command {}", program.display()),
                message: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            })
        }
    }
}

/// Post `text` to a Slack incoming webhook.
pub async fn slack(hook: &Secret, text: &str) -> Result<()> {
    let err = |message: String| Error::Notify {
        what: "Slack hook".into(),
        message,
    };
    let resp = reqwest::Client::new()
        .post(hook.expose())
        .json(&serde_json::json!({ "text": text }))
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        // The URL is the secret: report only what went wrong.
        .map_err(|e| err(e.without_url().to_string()))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(err(format!("HTTP {}", resp.status())))
    }
}
