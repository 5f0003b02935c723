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
    /// SHA-256/384/512 through ring (assembly, faster than the pure-Rust ones).
    Ring(ring::digest::Context),
    Sha224(sha2::Sha224),
    Md5(md5::Md5),
}

impl Hasher {
    pub(crate) fn new(algo: &str) -> Option<Hasher> {
        match algo.to_ascii_lowercase().as_str() {
            "sha512" => Some(Hasher::Ring(ring::digest::Context::new(
                &ring::digest::SHA512,
            ))),
            "sha384" => Some(Hasher::Ring(ring::digest::Context::new(
                &ring::digest::SHA384,
            ))),
            "sha256" => Some(Hasher::Ring(ring::digest::Context::new(
                &ring::digest::SHA256,
            ))),
            "sha224" => Some(Hasher::Sha224(sha2::Sha224::new())),
            "md5" => Some(Hasher::Md5(md5::Md5::new())),
            _ => None,
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Ring(h) => h.update(data),
            Hasher::Sha224(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    pub(crate) fn finish_hex(self) -> String {
        match self {
            Hasher::Ring(h) => hex::encode(h.finish().as_ref()),
            Hasher::Sha224(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}

/// Hashing off the async thread: a dedicated thread consumes the chunks
/// (shared `Bytes`, no copy) through a bounded channel, so hashing overlaps
/// with receiving and the channel bounds memory.
pub(crate) struct HashWorker {
    /// Dropped (not just closed: it keeps a sender clone) when the body ends.
    tx: Option<tokio_util::sync::PollSender<Bytes>>,
    result: tokio::sync::oneshot::Receiver<String>,
}

/// Chunks in flight between the network and the hashing thread.
const HASH_QUEUE: usize = 32;

enum Verifier {
    None,
    Inline(Hasher),
    Thread(HashWorker),
}

impl Verifier {
    fn new(algorithm: Option<&str>) -> Verifier {
        let Some(hasher) = algorithm.and_then(Hasher::new) else {
            return Verifier::None;
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE);
        let (rtx, rrx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("image-hash".into())
            .spawn(move || {
                let mut h = hasher;
                while let Some(chunk) = rx.blocking_recv() {
                    h.update(&chunk);
                }
                let _ = rtx.send(h.finish_hex());
            });
        match spawned {
            Ok(_) => Verifier::Thread(HashWorker {
                tx: Some(tokio_util::sync::PollSender::new(tx)),
                result: rrx,
            }),
            // Could not start a thread: hash inline instead (slower, still verified).
            Err(_) => match algorithm.and_then(Hasher::new) {
                Some(h) => Verifier::Inline(h),
                None => Verifier::None,
            },
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
/// The last chunk is held back until the whole download has been verified:
/// on a mismatch the stream ends with an error ([`Error::HashMismatch`] or
/// [`Error::SizeMismatch`]) *instead of* the last chunk, so a consumer never
/// receives the complete data unverified (piping into an upload with a
/// `Content-Length` therefore fails rather than storing bad data). Each chunk must arrive within the
/// idle timeout; there is no total deadline.
pub struct ImageDownload {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    verifier: Verifier,
    body_done: bool,
    held: Option<Bytes>,
    waited_on_hasher: bool,
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
        let verifier = Verifier::new(algorithm.as_deref());
        ImageDownload {
            body: Box::pin(response.bytes_stream()),
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            verifier,
            body_done: false,
            held: None,
            waited_on_hasher: false,
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

    /// Write the download into a new file at `path`, removed again if the
    /// download fails or does not verify. A dedicated thread writes the
    /// chunks as they arrive (no extra copy, overlapped with receiving and
    /// hashing; at most 32 chunks queued).
    pub async fn save_to_file(mut self, path: &std::path::Path) -> Result<DownloadSummary, Error> {
        use futures::StreamExt;
        let writing = |source| Error::Io {
            context: format!("writing {}", path.display()),
            source,
        };
        let file = std::fs::File::create(path).map_err(|source| Error::Io {
            context: format!("cannot create {}", path.display()),
            source,
        })?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(32);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = file;
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
            }
            file.flush()
        });
        let mut failure = None;
        while let Some(chunk) = self.next().await {
            match chunk {
                Ok(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        // The writer stopped: its error is reported below.
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| writing(std::io::Error::other(e.to_string())))
            .and_then(|w| w.map_err(writing));
        let result = match (failure, written) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => self.summary.clone().ok_or_else(|| {
                writing(std::io::Error::other(
                    "the download stopped early (the file could not be written)",
                ))
            }),
        };
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn finish(&mut self, computed: Option<String>) -> Result<(), Error> {
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
        let hash = match (computed, &self.expected_hash) {
            (Some(actual), Some(expected)) => {
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
        loop {
            if this.finished {
                // After a successful verification, release the held-back last chunk.
                return Poll::Ready(this.held.take().map(Ok));
            }
            if this.body_done {
                // Body complete: wait for the hashing thread's verdict.
                let computed = match &mut this.verifier {
                    Verifier::Thread(w) => match Pin::new(&mut w.result).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(hex)) => Some(hex),
                        Poll::Ready(Err(_)) => {
                            this.finished = true;
                            this.held = None;
                            return Poll::Ready(Some(Err(Error::Io {
                                context: format!(
                                    "image {}: the hashing thread stopped",
                                    this.image_id
                                ),
                                source: std::io::Error::other("hash worker ended without a result"),
                            })));
                        }
                    },
                    Verifier::Inline(_) => {
                        match std::mem::replace(&mut this.verifier, Verifier::None) {
                            Verifier::Inline(h) => Some(h.finish_hex()),
                            _ => None,
                        }
                    }
                    Verifier::None => None,
                };
                if let Err(e) = this.finish(computed) {
                    this.held = None;
                    return Poll::Ready(Some(Err(e)));
                }
                continue;
            }
            // Backpressure: only pull from the network when the hasher has room.
            if let Verifier::Thread(HashWorker { tx: Some(tx), .. }) = &mut this.verifier {
                match tx.poll_reserve(cx) {
                    Poll::Pending => {
                        this.waited_on_hasher = true;
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(())) => {
                        if std::mem::take(&mut this.waited_on_hasher) {
                            // Time spent waiting for our own hasher is not network idleness.
                            let deadline = tokio::time::Instant::now() + this.idle;
                            this.sleep.as_mut().reset(deadline);
                        }
                    }
                    Poll::Ready(Err(_)) => {
                        this.finished = true;
                        this.held = None;
                        return Poll::Ready(Some(Err(Error::Io {
                            context: format!("image {}: the hashing thread stopped", this.image_id),
                            source: std::io::Error::other("hash worker channel closed"),
                        })));
                    }
                }
            }
            match this.body.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    match &mut this.verifier {
                        Verifier::Thread(w) => {
                            // A send error means the worker is gone; it is reported at the end.
                            if let Some(tx) = w.tx.as_mut() {
                                let _ = tx.send_item(chunk.clone());
                            }
                        }
                        Verifier::Inline(h) => h.update(&chunk),
                        Verifier::None => {}
                    }
                    this.received += chunk.len() as u64;
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.sleep.as_mut().reset(deadline);
                    // Hold back the newest chunk: the last one is only released
                    // once the whole download verified, so a consumer (e.g. an
                    // upload with Content-Length) never gets complete but
                    // unverified data.
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(Some(Err(source))) => {
                    this.finished = true;
                    this.held = None;
                    return Poll::Ready(Some(Err(Error::Transport {
                        method: Method::GET,
                        url: this.url.to_string(),
                        source,
                    })));
                }
                Poll::Ready(None) => {
                    this.body_done = true;
                    if let Verifier::Thread(w) = &mut this.verifier {
                        // Dropping the last sender ends the worker's loop.
                        w.tx = None;
                    }
                }
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        this.finished = true;
                        this.held = None;
                        return Poll::Ready(Some(Err(Error::Timeout {
                            method: Method::GET,
                            url: this.url.to_string(),
                            phase: "reading the image data",
                            idle: this.idle,
                        })));
                    }
                    return Poll::Pending;
                }
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
