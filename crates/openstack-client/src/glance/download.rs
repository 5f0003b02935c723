//! Streaming image download that verifies the data while it streams.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use digest::Digest;
use futures::Stream;
use reqwest::Method;
use url::Url;

use crate::error::Error;

/// An incremental hasher for the algorithms Glance uses.
pub(crate) enum Hasher {
    Sha512(sha2::Sha512),
    Sha384(sha2::Sha384),
    Sha256(sha2::Sha256),
    Sha224(sha2::Sha224),
    Md5(md5::Md5),
}

impl Hasher {
    pub(crate) fn new(algo: &str) -> Option<Hasher> {
        match algo.to_ascii_lowercase().as_str() {
            "sha512" => Some(Hasher::Sha512(sha2::Sha512::new())),
            "sha384" => Some(Hasher::Sha384(sha2::Sha384::new())),
            "sha256" => Some(Hasher::Sha256(sha2::Sha256::new())),
            "sha224" => Some(Hasher::Sha224(sha2::Sha224::new())),
            "md5" => Some(Hasher::Md5(md5::Md5::new())),
            _ => None,
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha512(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    pub(crate) fn finish_hex(self) -> String {
        match self {
            Hasher::Sha512(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha224(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}

/// What a finished download delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSummary {
    /// Bytes received.
    pub bytes: u64,
    /// Algorithm the data was verified with (`None`: Glance recorded no usable hash).
    pub algorithm: Option<String>,
    /// The verified hash (hex).
    pub hash: Option<String>,
}

/// The data of an image as a stream of `Bytes`, verified against Glance's
/// `os_hash_algo`/`os_hash_value` (or the md5 `checksum` when the secure hash
/// is absent or uses an unknown algorithm) while it streams.
///
/// The final item is an error ([`Error::HashMismatch`] or
/// [`Error::SizeMismatch`]) if the data does not match, so a consumer that
/// reads to the end cannot miss corruption. Each chunk must arrive within the
/// idle timeout; there is no total deadline.
pub struct ImageDownload {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    hasher: Option<Hasher>,
    algorithm: Option<String>,
    expected_hash: Option<String>,
    expected_size: Option<u64>,
    received: u64,
    image_id: String,
    url: Url,
    finished: bool,
    summary: Option<DownloadSummary>,
    span: tracing::Span,
    started: Instant,
}

impl std::fmt::Debug for ImageDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageDownload")
            .field("image_id", &self.image_id)
            .field("algorithm", &self.algorithm)
            .field("received", &self.received)
            .field("expected_size", &self.expected_size)
            .finish_non_exhaustive()
    }
}

impl ImageDownload {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        response: reqwest::Response,
        span: tracing::Span,
        idle: Duration,
        image_id: String,
        algorithm: Option<String>,
        expected_hash: Option<String>,
        expected_size: Option<u64>,
    ) -> ImageDownload {
        let url = response.url().clone();
        let hasher = algorithm.as_deref().and_then(Hasher::new);
        ImageDownload {
            body: Box::pin(response.bytes_stream()),
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            hasher,
            algorithm,
            expected_hash,
            expected_size,
            received: 0,
            image_id,
            url,
            finished: false,
            summary: None,
            span,
            started: Instant::now(),
        }
    }

    /// Image id.
    pub fn image_id(&self) -> &str {
        &self.image_id
    }

    /// Size Glance recorded for the image.
    pub fn expected_size(&self) -> Option<u64> {
        self.expected_size
    }

    /// Bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.received
    }

    /// The hash algorithm used for verification, if any.
    pub fn algorithm(&self) -> Option<&str> {
        self.algorithm.as_deref()
    }

    /// After the stream ended without error: what was received and verified.
    pub fn summary(&self) -> Option<&DownloadSummary> {
        self.summary.as_ref()
    }

    /// Turn the download into an `AsyncRead` (errors become `io::Error`s
    /// wrapping this crate's [`Error`]).
    pub fn into_async_read(self) -> impl tokio::io::AsyncRead + Send {
        use futures::TryStreamExt;
        tokio_util::io::StreamReader::new(self.map_err(std::io::Error::other))
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.finished = true;
        let _enter = self.span.enter();
        if let Some(expected) = self.expected_size {
            if expected != self.received {
                return Err(Error::SizeMismatch {
                    image_id: self.image_id.clone(),
                    expected,
                    actual: self.received,
                });
            }
        }
        let hash = match (self.hasher.take(), &self.expected_hash) {
            (Some(h), Some(expected)) => {
                let actual = h.finish_hex();
                if !actual.eq_ignore_ascii_case(expected) {
                    return Err(Error::HashMismatch {
                        image_id: self.image_id.clone(),
                        algorithm: self.algorithm.clone().unwrap_or_default(),
                        expected: expected.clone(),
                        actual,
                    });
                }
                Some(actual)
            }
            _ => None,
        };
        let secs = self.started.elapsed().as_secs_f64();
        tracing::info!(
            bytes = self.received,
            algorithm = self.algorithm.as_deref().unwrap_or("none"),
            mib_per_s = (self.received as f64 / 1048576.0 / secs.max(1e-9)) as u64,
            "download verified"
        );
        self.summary = Some(DownloadSummary {
            bytes: self.received,
            algorithm: hash.as_ref().and(self.algorithm.clone()),
            hash,
        });
        Ok(())
    }
}

impl Stream for ImageDownload {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        match this.body.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&chunk);
                }
                this.received += chunk.len() as u64;
                let deadline = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(source))) => {
                this.finished = true;
                Poll::Ready(Some(Err(Error::Transport {
                    method: Method::GET,
                    url: this.url.to_string(),
                    source,
                })))
            }
            Poll::Ready(None) => match this.finish() {
                Ok(()) => Poll::Ready(None),
                Err(e) => Poll::Ready(Some(Err(e))),
            },
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.finished = true;
                    return Poll::Ready(Some(Err(Error::Timeout {
                        method: Method::GET,
                        url: this.url.to_string(),
                        phase: "reading the image data",
                        idle: this.idle,
                    })));
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        let mut h = Hasher::new("sha512").unwrap();
        h.update(b"abc");
        assert!(h.finish_hex().starts_with("ddaf35a193617aba"));
        let mut h = Hasher::new("MD5").unwrap();
        h.update(b"abc");
        assert_eq!(h.finish_hex(), "900150983cd24fb0d6963f7d28e17f72");
        assert!(Hasher::new("whirlpool").is_none());
    }
}
