//! Per-region log sink: every engine message goes to `tracing` and, with
//! `--parallel`, also to the region's own log file (message text only, as
//! the original wrote them).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Where engine messages go.
#[derive(Debug, Default)]
pub struct SyncLog {
    file: Option<Mutex<std::fs::File>>,
    lines: Option<Mutex<Vec<String>>>,
    /// Keep messages only (no `tracing`): planning collects its warnings
    /// into the plan, which the caller then logs.
    quiet: bool,
}

impl SyncLog {
    /// Messages go to `tracing` only.
    pub fn new() -> Self {
        SyncLog::default()
    }

    /// Messages also go to a newly created file.
    pub fn with_file(path: &Path) -> Result<Self> {
        let f = std::fs::File::create(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SyncLog {
            file: Some(Mutex::new(f)),
            lines: None,
            quiet: false,
        })
    }

    /// Messages are also kept in memory (see [`SyncLog::lines`]); for tests and tools.
    pub fn capturing() -> Self {
        SyncLog {
            file: None,
            lines: Some(Mutex::new(Vec::new())),
            quiet: false,
        }
    }

    /// Messages are only kept in memory, not traced (see [`SyncLog::lines`]).
    pub fn collecting() -> Self {
        SyncLog {
            file: None,
            lines: Some(Mutex::new(Vec::new())),
            quiet: true,
        }
    }

    /// Captured messages (empty unless [`SyncLog::capturing`]).
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .as_ref()
            .and_then(|l| l.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    fn record(&self, msg: &str) {
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                // A failing log file must not abort a sync; tracing still has the message.
                let _ = writeln!(f, "{msg}");
            }
        }
        if let Some(l) = &self.lines {
            if let Ok(mut l) = l.lock() {
                l.push(msg.to_string());
            }
        }
    }

    /// An informational message.
    pub fn info(&self, msg: &str) {
        if !self.quiet {
            tracing::info!("{msg}");
        }
        self.record(msg);
    }

    /// A warning.
    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            tracing::warn!("{msg}");
        }
        self.record(msg);
    }

    /// An error.
    pub fn error(&self, msg: &str) {
        if !self.quiet {
            tracing::error!("{msg}");
        }
        self.record(msg);
    }
}
