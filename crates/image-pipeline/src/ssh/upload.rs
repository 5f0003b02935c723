//! Uploads: `cat > path && chmod` over an exec channel, then a size check.

use std::path::Path;

use tracing::Instrument as _;

use super::command::{Input, Sink};
use super::{shell_quote, SshSession};
use crate::error::{Error, Result};

/// Where data to upload comes from.
#[derive(Debug, Clone)]
pub enum UploadSource<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A local file.
    File(&'a Path),
}
impl SshSession {
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

    pub(super) async fn upload_inner(
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
}
