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
        })
    }

    /// Messages are also kept in memory (see [`SyncLog::lines`]); for tests and tools.
    pub fn capturing() -> Self {
        SyncLog {
            file: None,
            lines: Some(Mutex::new(Vec::new())),
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
        tracing::info!("{msg}");
        self.record(msg);
    }

    /// A warning.
    pub fn warn(&self, msg: &str) {
        tracing::warn!("{msg}");
        self.record(msg);
    }

    /// An error.
    pub fn error(&self, msg: &str) {
        tracing::error!("{msg}");
        self.record(msg);
    }
}
