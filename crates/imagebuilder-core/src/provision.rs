//! Running a template's `shell` and `file` provisioners natively over SSH,
//! in order, as Packer's provisioners do: each script uploaded to its
//! `remote_path` (0755) and run through `execute_command`, the environment
//! in a 0600 file on the VM (`{{.Vars}}` is `. <file> &&`, Packer's
//! `use_env_var_file`), so values never appear on a command line; files
//! and directories uploaded, or a file downloaded.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use image_pipeline::ssh::shell_quote;
use image_pipeline::{
    wait_for_ssh, KnownHosts, RunOptions, SshSession, SshTarget, UploadSource, WaitPolicy,
};

use crate::error::{io_err, Error, Result};
use crate::template::{expand_execute_command, Direction, FileStep, ShellStep, Step};

/// The build log: every line goes to the file (the report's
/// `output_imagebuilder`) and to the tracing log; with `echo` also to stderr.
#[derive(Debug)]
pub struct BuildLog {
    path: PathBuf,
    echo: bool,
}

impl BuildLog {
    /// A log at `path` (truncated).
    pub fn create(path: &Path, echo: bool) -> Result<BuildLog> {
        std::fs::write(path, b"").map_err(io_err("creating build log", path))?;
        Ok(BuildLog {
            path: path.to_path_buf(),
            echo,
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append a progress line (`==> imagebuilder: …`, as Packer prints).
    pub fn say(&self, line: &str) {
        tracing::info!("{line}");
        self.append(format!("==> imagebuilder: {line}\n").as_bytes());
    }

    /// Append raw command output.
    pub fn append(&self, data: &[u8]) {
        if self.echo {
            let _ = std::io::stderr().write_all(data);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&self.path) {
            let _ = f.write_all(data);
        }
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

/// The SSH connection of a build, reopened after a provisioner that
/// disconnects on purpose (`expect_disconnect`).
pub struct Connection {
    target: SshTarget,
    known_hosts: KnownHosts,
    policy: WaitPolicy,
    session: Option<SshSession>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({}:{})", self.target.host, self.target.port)
    }
}

impl Connection {
    /// A connection to `target`, made (and remade) with `policy`.
    pub fn new(target: SshTarget, known_hosts: KnownHosts, policy: WaitPolicy) -> Self {
        Connection {
            target,
            known_hosts,
            policy,
            session: None,
        }
    }

    /// The session, connecting first when there is none.
    pub async fn session(&mut self) -> Result<&SshSession> {
        if self.session.is_none() {
            self.session = Some(wait_for_ssh(&self.target, &self.known_hosts, self.policy).await?);
        }
        self.session
            .as_ref()
            .ok_or_else(|| Error::Config("no SSH session".into()))
    }

    /// Forget the session (the VM went away on purpose).
    pub fn drop_session(&mut self) {
        self.session = None;
    }

    /// Close the session politely.
    pub async fn close(mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.close().await;
        }
    }
}

/// 8 random hex digits.
pub fn hex8() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// Run every step in order.
pub async fn run_steps(
    steps: &[Step],
    conn: &mut Connection,
    pty: bool,
    work: &Path,
    log: &BuildLog,
) -> Result<()> {
    for step in steps {
        match step {
            Step::Shell(s) => run_shell(s, conn, pty, work, log).await?,
            Step::File(f) => run_file(f, conn, log).await?,
        }
    }
    Ok(())
}

fn env_file_text(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(k, v)| format!("export {k}={}\n", shell_quote(v)))
        .collect()
}

async fn run_shell(
    s: &ShellStep,
    conn: &mut Connection,
    pty: bool,
    work: &Path,
    log: &BuildLog,
) -> Result<()> {
    let perr = |message: String| Error::Provision {
        index: s.index,
        kind: "shell".into(),
        message,
    };
    if s.pause_before_secs > 0 {
        log.say(&format!(
            "Pausing {}s before the next provisioner...",
            s.pause_before_secs
        ));
        tokio::time::sleep(Duration::from_secs(s.pause_before_secs)).await;
    }
    for (n, script) in s.scripts.iter().enumerate() {
        let shown = match script {
            crate::template::ScriptSource::File(p) => p.display().to_string(),
            crate::template::ScriptSource::Inline { .. } => "inline script".into(),
        };
        log.say(&format!("Provisioning with shell script: {shown}"));
        let body = script.contents()?;
        let env_path = format!("{}/varfile_{}.sh", s.remote_folder, hex8());
        let session = conn.session().await?;
        session
            .upload(
                UploadSource::Bytes(env_file_text(&s.env).as_bytes()),
                &env_path,
                0o600,
            )
            .await?;
        session
            .upload(UploadSource::Bytes(&body), &s.remote_path, 0o755)
            .await?;
        let command = expand_execute_command(
            &s.execute_command,
            &format!(". {env_path} &&"),
            &s.remote_path,
        );
        let step_log = work.join(format!("provisioner-{}-{n}.log", s.index));
        let outcome = session
            .run(
                &command,
                &RunOptions {
                    pty,
                    env: Vec::new(),
                    log: Some(step_log.clone()),
                    timeout: s.timeout_secs.map(Duration::from_secs),
                },
            )
            .await;
        if let Ok(out) = std::fs::read(&step_log) {
            log.append(&out);
        }
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) if s.expect_disconnect => {
                log.say(&format!("Connection lost as expected: {e}"));
                conn.drop_session();
                continue;
            }
            Err(e) => return Err(perr(format!("{shown}: {e}"))),
        };
        if outcome.exit_status.is_none() && !outcome.timed_out && s.expect_disconnect {
            log.say("Script disconnected as expected");
            conn.drop_session();
            continue;
        }
        let ok = !outcome.timed_out
            && outcome.signal.is_none()
            && outcome
                .exit_status
                .is_some_and(|c| s.valid_exit_codes.contains(&c));
        if !ok {
            return Err(perr(format!(
                "{shown} {outcome} (valid exit codes: {:?}); output in the build log {}",
                s.valid_exit_codes,
                log.path().display()
            )));
        }
        if !s.skip_clean {
            let clean = format!(
                "rm -f {} {}",
                shell_quote(&s.remote_path),
                shell_quote(&env_path)
            );
            let session = conn.session().await?;
            session.run(&clean, &RunOptions::default()).await?;
        }
    }
    Ok(())
}

/// Local files under `dir` (recursively), with their path relative to it.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf, bool)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err("listing", dir))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let r = rel.join(e.file_name());
        if p.is_dir() {
            out.push((p.clone(), r.clone(), true));
            walk(&p, &r, out)?;
        } else {
            out.push((p, r, false));
        }
    }
    Ok(())
}

fn mode_of(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644)
}

async fn run_file(f: &FileStep, conn: &mut Connection, log: &BuildLog) -> Result<()> {
    let perr = |message: String| Error::Provision {
        index: f.index,
        kind: "file".into(),
        message,
    };
    if f.pause_before_secs > 0 {
        tokio::time::sleep(Duration::from_secs(f.pause_before_secs)).await;
    }
    match f.direction {
        Direction::Upload => {
            for src in &f.sources {
                log.say(&format!("Uploading {src} => {}", f.destination));
                let path = Path::new(src);
                let session = conn.session().await?;
                if path.is_dir() {
                    // Packer: "dir/" uploads the contents, "dir" the directory itself.
                    let base = if src.ends_with('/') {
                        PathBuf::from(&f.destination)
                    } else {
                        Path::new(&f.destination).join(path.file_name().unwrap_or_default())
                    };
                    let mut items = Vec::new();
                    walk(path, Path::new(""), &mut items)?;
                    let mkdir = format!("mkdir -p {}", shell_quote(&base.display().to_string()));
                    session
                        .run_checked(&mkdir, &RunOptions::default())
                        .await
                        .map_err(|e| perr(e.to_string()))?;
                    for (local, rel, is_dir) in items {
                        let remote = base.join(&rel).display().to_string();
                        if is_dir {
                            let c = format!("mkdir -p {}", shell_quote(&remote));
                            session
                                .run_checked(&c, &RunOptions::default())
                                .await
                                .map_err(|e| perr(e.to_string()))?;
                        } else {
                            session
                                .upload(UploadSource::File(&local), &remote, mode_of(&local))
                                .await
                                .map_err(|e| perr(e.to_string()))?;
                        }
                    }
                } else {
                    let remote = if f.destination.ends_with('/') {
                        format!(
                            "{}{}",
                            f.destination,
                            path.file_name().unwrap_or_default().to_string_lossy()
                        )
                    } else {
                        f.destination.clone()
                    };
                    session
                        .upload(UploadSource::File(path), &remote, mode_of(path))
                        .await
                        .map_err(|e| perr(e.to_string()))?;
                }
            }
        }
        Direction::Download => {
            let src = &f.sources[0];
            let dest = if f.destination.ends_with('/') {
                let name = Path::new(src).file_name().unwrap_or_default();
                Path::new(&f.destination).join(name)
            } else {
                PathBuf::from(&f.destination)
            };
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
            }
            log.say(&format!("Downloading {src} => {}", dest.display()));
            let session = conn.session().await?;
            session
                .run_checked(
                    &format!("cat {}", shell_quote(src)),
                    &RunOptions {
                        log: Some(dest.clone()),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| {
                    let _ = std::fs::remove_file(&dest);
                    perr(e.to_string())
                })?;
        }
    }
    Ok(())
}
