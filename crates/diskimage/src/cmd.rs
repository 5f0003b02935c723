//! Running host programs for the image build: one place that turns a failed
//! child process into an [`Error::Command`] naming the program and the tail of
//! its standard error.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// How a command line is shown in logs and errors.
fn shown(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The last `n` non-empty lines of `text`, joined with " / ".
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join(" / ")
}

/// Run `cmd` to completion; its stdout on success, else an error with the
/// last lines of its stderr (or stdout when stderr is empty).
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let line = shown(cmd);
    tracing::debug!(command = %line, "running");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command {
            program: line.clone(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = if stderr.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            stderr.into_owned()
        };
        return Err(Error::Command {
            program: line,
            status: out.status.to_string(),
            stderr: tail(&text, 8),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `cmd` with stdout and stderr appended to `log`; on failure the error
/// carries the log's last lines.
pub(crate) fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let line = shown(cmd);
    tracing::debug!(command = %line, log = %log.display(), "running");
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::Io {
                path: log.to_path_buf(),
                source: e,
            })
    };
    let status = cmd
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .status()
        .map_err(|e| Error::Command {
            program: line.clone(),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        return Err(Error::Command {
            program: line,
            status: status.to_string(),
            stderr: format!("{} (log: {})", tail(&text, 8), log.display()),
        });
    }
    Ok(())
}

/// `std::io::Error` at `path` as the crate's error.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
