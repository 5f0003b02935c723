//! Sending requests: retries (idempotent requests only) with backoff,
//! jitter and `Retry-After`, connect/idle/API timeouts, one
//! re-authentication on 401, streaming uploads and downloads, and a
//! `tracing` span per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::io::AsyncRead;
use tracing::{field::Empty, Instrument};

use super::auth::AuthState;
use super::request::{
    api_error, request_id, Body, RawResponse, Req, X_AUTH_TOKEN, X_SUBJECT_TOKEN,
};
use super::Session;
use crate::error::{is_retryable_status, Error, Result};

/// Frame size for streaming uploads (large frames keep the CPU cost per byte low).
const UPLOAD_FRAME: usize = 1 << 20;

/// Chunk size of a chunked upload: Glance reads its request body 64 KiB at
/// a time, and a chunk of that size is taken off the socket with one
/// `recv()` and no re-buffering of a surplus (a 1 MiB chunk, or a body of
/// known length, is received in large reads whose rest the server copies
/// again on every 64 KiB read).
const CHUNKED_FRAME: usize = 64 << 10;

/// How the body of a streaming upload is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length` (when the size is known), 1 MiB frames.
    Length,
    /// `Transfer-Encoding: chunked` in 64 KiB chunks, the size (when known)
    /// only in `x-openstack-image-size`: what python-glanceclient sends.
    Chunked,
}

impl Session {
    fn builder(&self, req: &Req, token: Option<&AuthState>) -> Result<reqwest::RequestBuilder> {
        let mut rb = self
            .inner
            .http
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        if let Some(state) = token {
            let mut v = HeaderValue::from_str(state.token.expose()).map_err(|_| Error::Auth {
                message: "token contains invalid header characters".into(),
            })?;
            v.set_sensitive(true);
            rb = rb.header(X_AUTH_TOKEN, v);
        }
        if let Body::Bytes { data, content_type } = &req.body {
            rb = rb.header(CONTENT_TYPE, *content_type).body(data.clone());
        }
        Ok(rb)
    }

    fn span(req: &Req, attempt: u32) -> tracing::Span {
        tracing::info_span!(
            "openstack_request",
            otel.kind = "client",
            http.method = %req.method,
            url.path = %req.url.path(),
            openstack.service = req.service,
            openstack.region = req.region.as_deref().unwrap_or(""),
            attempt,
            http.status_code = Empty,
            openstack.request_id = Empty,
            duration_ms = Empty,
        )
    }

    fn record(
        span: &tracing::Span,
        status: Option<StatusCode>,
        headers: Option<&HeaderMap>,
        started: Instant,
    ) {
        if let Some(s) = status {
            span.record("http.status_code", s.as_u16());
        }
        if let Some(id) = headers.and_then(request_id) {
            span.record("openstack.request_id", id.as_str());
        }
        span.record("duration_ms", started.elapsed().as_millis() as u64);
        tracing::debug!(parent: span, "request finished");
    }

    fn retry_delay(&self, attempt: u32, headers: Option<&HeaderMap>) -> Duration {
        let opts = &self.inner.config.http;
        if let Some(after) = headers
            .and_then(|h| h.get(RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
        {
            let parsed = after
                .trim()
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
                .or_else(|| {
                    DateTime::parse_from_rfc2822(after.trim())
                        .ok()
                        .and_then(|t| (t.with_timezone(&Utc) - Utc::now()).to_std().ok())
                });
            if let Some(d) = parsed {
                return d.min(opts.retry_max_delay);
            }
        }
        let exp = opts
            .retry_base_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(opts.retry_max_delay);
        // Equal jitter: half fixed, half random.
        let half = exp / 2;
        let jitter = rand::random::<f64>();
        half + half.mul_f64(jitter)
    }

    fn transport_retryable(err: &Error, idempotent: bool) -> bool {
        match err {
            Error::Transport { source, .. } if source.is_connect() => true,
            other => idempotent && other.is_retryable(),
        }
    }

    /// The token state a request is sent with (`None` for unauthenticated
    /// requests such as the authentication itself).
    async fn state_for(&self, req: &Req) -> Result<Option<Arc<AuthState>>> {
        if req.auth {
            Ok(Some(self.auth_state().await?))
        } else {
            Ok(None)
        }
    }

    /// Turn a bounded wait for `req` into the crate's errors: the bound
    /// elapsed (`Timeout` while `phase`) or the HTTP client failed (`Transport`).
    fn bounded<T>(
        req: &Req,
        phase: &'static str,
        bound: Duration,
        outcome: std::result::Result<
            std::result::Result<T, reqwest::Error>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<T> {
        match outcome {
            Err(_) => Err(Error::Timeout {
                method: req.method.clone(),
                url: req.url.to_string(),
                phase,
                idle: bound,
            }),
            Ok(Err(source)) => Err(Error::Transport {
                method: req.method.clone(),
                url: req.url.to_string(),
                source,
            }),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// After an attempt of `req` that did not succeed: re-authenticate once
    /// on a 401, or back off before repeating what may be repeated.
    /// `Ok(())` means "send it again"; `Err` is the error to return.
    async fn after_failure(
        &self,
        req: &Req,
        span: &tracing::Span,
        state: Option<&AuthState>,
        failure: Failure,
        attempt: &mut u32,
        reauthed: &mut bool,
    ) -> Result<()> {
        let (err, retryable, headers) = match failure {
            Failure::Status {
                status,
                headers,
                body,
            } => {
                if status == StatusCode::UNAUTHORIZED && !*reauthed {
                    if let Some(state) = state {
                        tracing::info!(parent: span, "token rejected, re-authenticating once");
                        *reauthed = true;
                        self.refresh(Some(state.generation), Duration::ZERO, true)
                            .await?;
                        return Ok(());
                    }
                }
                let err = api_error(&req.method, &req.url, status, &headers, &body);
                (
                    err,
                    req.idempotent && is_retryable_status(status),
                    Some(headers),
                )
            }
            Failure::NoAnswer(err) => {
                let retryable = Self::transport_retryable(&err, req.idempotent);
                (err, retryable, None)
            }
        };
        if retryable && *attempt < self.inner.config.http.max_retries {
            let delay = self.retry_delay(*attempt, headers.as_ref());
            tracing::debug!(parent: span, error = %err, delay_ms = delay.as_millis() as u64, "retrying");
            tokio::time::sleep(delay).await;
            *attempt += 1;
            return Ok(());
        }
        Err(err)
    }

    /// Send `req` until one attempt succeeds: `send` makes one attempt with
    /// the prepared request builder, its span and start time, and answers
    /// the result or how it failed; [`Session::after_failure`] decides
    /// whether there is another attempt.
    async fn with_retries<T, F, Fut>(&self, req: &Req, mut send: F) -> Result<T>
    where
        F: FnMut(reqwest::RequestBuilder, tracing::Span, Instant) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, (Failure, tracing::Span)>>,
    {
        let mut attempt = 0u32;
        let mut reauthed = false;
        loop {
            let state = self.state_for(req).await?;
            let span = Self::span(req, attempt);
            let rb = self.builder(req, state.as_deref())?;
            match send(rb, span.clone(), Instant::now()).await {
                Ok(done) => {
                    if attempt > 0 {
                        // The retries themselves are debug-level (a request
                        // that finally fails prints only its error); one
                        // that recovered is worth one warning.
                        tracing::warn!(
                            parent: &span,
                            retries = attempt,
                            "{} {} succeeded after {attempt} retries",
                            req.method,
                            req.url.path()
                        );
                    }
                    return Ok(done);
                }
                Err((failure, span)) => {
                    self.after_failure(
                        req,
                        &span,
                        state.as_deref(),
                        failure,
                        &mut attempt,
                        &mut reauthed,
                    )
                    .await?;
                }
            }
        }
    }

    /// Execute a request with a buffered body: retries (idempotent only),
    /// one re-authentication on 401, an overall `api_timeout` per attempt.
    pub(crate) async fn execute(&self, req: Req) -> Result<RawResponse> {
        let opts = &self.inner.config.http;
        let req = &req;
        self.with_retries(req, |rb, span, started| async move {
            let fut = async { answer(rb.send().await?).await };
            let outcome = Self::bounded(
                req,
                "waiting for the complete response",
                opts.api_timeout,
                tokio::time::timeout(opts.api_timeout, fut)
                    .instrument(span.clone())
                    .await,
            );
            match outcome {
                Ok((status, headers, body)) if status.is_success() => {
                    Self::record(&span, Some(status), Some(&headers), started);
                    Ok(RawResponse {
                        status,
                        headers,
                        body,
                        method: req.method.clone(),
                        url: req.url.clone(),
                    })
                }
                Ok((status, headers, body)) => {
                    Err(Failure::status(span, started, status, headers, body))
                }
                Err(err) => Err(Failure::no_answer(span, started, err)),
            }
        })
        .await
    }

    /// Execute a request whose response body is streamed (downloads). Retries
    /// and re-authentication happen only before the body starts; waiting for
    /// the headers is bounded by the idle timeout.
    pub(crate) async fn execute_streaming(
        &self,
        req: Req,
    ) -> Result<(reqwest::Response, tracing::Span)> {
        let opts = &self.inner.config.http;
        let req = &req;
        self.with_retries(req, |rb, span, started| async move {
            let outcome = Self::bounded(
                req,
                "waiting for the response headers",
                opts.idle_timeout,
                tokio::time::timeout(opts.idle_timeout, rb.send())
                    .instrument(span.clone())
                    .await,
            );
            match outcome {
                Ok(resp) if resp.status().is_success() => {
                    span.record("http.status_code", resp.status().as_u16());
                    if let Some(id) = request_id(resp.headers()) {
                        span.record("openstack.request_id", id.as_str());
                    }
                    Ok((resp, span))
                }
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = tokio::time::timeout(opts.idle_timeout, refusal_body(resp))
                        .await
                        .unwrap_or_default();
                    Err(Failure::status(span, started, status, headers, body))
                }
                Err(err) => Err(Failure::no_answer(span, started, err)),
            }
        })
        .await
    }

    /// Execute a request with a streaming body read from `reader`. Exactly one
    /// attempt: a consumed stream cannot be replayed. A 401 refreshes the
    /// token (so the caller can reopen its source and try again) and is
    /// returned as an error. An idle watchdog fails the upload if no bytes
    /// move for `idle_timeout`; there is no total deadline.
    pub(crate) async fn execute_upload<R>(
        &self,
        req: Req,
        reader: R,
        size: Option<u64>,
        framing: Framing,
    ) -> Result<RawResponse>
    where
        R: AsyncRead + Send + 'static,
    {
        let opts = &self.inner.config.http;
        self.ensure_token_valid_for(opts.transfer_token_validity)
            .await?;
        let state = self.auth_state().await?;
        let span = Self::span(&req, 0);
        let started = Instant::now();
        let progress = Arc::new(Progress::new());
        let p = progress.clone();
        let frame = match framing {
            Framing::Length => UPLOAD_FRAME,
            Framing::Chunked => CHUNKED_FRAME,
        };
        let stream =
            tokio_util::io::ReaderStream::with_capacity(reader, frame).inspect_ok(move |chunk| {
                p.advance(chunk.len() as u64);
            });
        // A chunked body has no length for the HTTP stack to enforce: a
        // source that ends short of (or beyond) the announced size fails the
        // body, so the request breaks off without its last chunk and the
        // server never takes the data as complete.
        let announced = size.filter(|_| framing == Framing::Chunked);
        let counted = progress.clone();
        let stream = stream
            .chain(futures::stream::once(async move {
                match announced {
                    Some(n) if counted.bytes() != n => Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("the source gave {} bytes, {n} announced", counted.bytes()),
                    )),
                    _ => Ok(Bytes::new()),
                }
            }))
            .try_filter(|chunk| futures::future::ready(!chunk.is_empty()));
        let mut rb = self
            .builder(&req, Some(&state))?
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(n) = size {
            if framing == Framing::Length {
                rb = rb.header(CONTENT_LENGTH, n);
            }
            rb = rb.header("x-openstack-image-size", n);
        }
        let send = async { answer(rb.send().await?).await };
        let outcome = tokio::select! {
            r = send.instrument(span.clone()) => r.map_err(|source| Error::Transport {
                method: req.method.clone(),
                url: req.url.to_string(),
                source,
            }),
            phase = progress.watchdog(opts.idle_timeout, size) => Err(Error::Timeout {
                method: req.method.clone(),
                url: req.url.to_string(),
                phase,
                idle: opts.idle_timeout,
            }),
        };
        let sent = progress.bytes();
        match outcome {
            Ok((status, headers, body)) => {
                Self::record(&span, Some(status), Some(&headers), started);
                tracing::info!(parent: &span, bytes = sent, "upload finished");
                if status.is_success() {
                    return Ok(RawResponse {
                        status,
                        headers,
                        body,
                        method: req.method.clone(),
                        url: req.url.clone(),
                    });
                }
                if status == StatusCode::UNAUTHORIZED {
                    // Refresh so that the caller's retry (with a reopened source) works.
                    self.refresh(Some(state.generation), Duration::ZERO, true)
                        .await?;
                }
                Err(api_error(&req.method, &req.url, status, &headers, &body))
            }
            Err(err) => {
                Self::record(&span, None, None, started);
                tracing::warn!(parent: &span, bytes = sent, error = %err, "upload failed");
                Err(err)
            }
        }
    }
}

/// A response's status, headers (the subject token marked sensitive) and
/// body. A refusal's body is read as far as it goes ([`refusal_body`]): its
/// status is the answer.
async fn answer(resp: reqwest::Response) -> reqwest::Result<(StatusCode, HeaderMap, Bytes)> {
    let status = resp.status();
    let mut headers = resp.headers().clone();
    if let Some(v) = headers.get_mut(X_SUBJECT_TOKEN) {
        v.set_sensitive(true);
    }
    let body = if status.is_success() {
        resp.bytes().await?
    } else {
        refusal_body(resp).await
    };
    Ok((status, headers, body))
}

/// The body of a non-success response, empty when it cannot be read: a
/// server refusing an upload (a rejected token) answers before reading the
/// data and closes the connection under it, which can cut its answer off,
/// and the status must still reach the caller (for the re-authentication,
/// a retry, the error) rather than become a transport error.
async fn refusal_body(resp: reqwest::Response) -> Bytes {
    let status = resp.status();
    resp.bytes().await.unwrap_or_else(|e| {
        tracing::debug!(%status, error = %e, "the refusal's body was cut off");
        Bytes::new()
    })
}

/// How an attempt that did not succeed ended.
enum Failure {
    /// The server answered with a non-success status.
    Status {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// No usable answer (transport error or timeout).
    NoAnswer(Error),
}

impl Failure {
    /// The attempt in `span` got a non-success answer: record it on the span.
    fn status(
        span: tracing::Span,
        started: Instant,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    ) -> (Failure, tracing::Span) {
        Session::record(&span, Some(status), Some(&headers), started);
        (
            Failure::Status {
                status,
                headers,
                body,
            },
            span,
        )
    }

    /// The attempt in `span` got no answer: record that on the span.
    fn no_answer(span: tracing::Span, started: Instant, err: Error) -> (Failure, tracing::Span) {
        Session::record(&span, None, None, started);
        (Failure::NoAnswer(err), span)
    }
}

/// Byte counter + last-progress clock shared by a streaming body and its watchdog.
struct Progress {
    start: Instant,
    bytes: AtomicU64,
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            start: Instant::now(),
            bytes: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn advance(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Resolves when nothing moved for `idle`; returns what we were doing.
    async fn watchdog(&self, idle: Duration, size: Option<u64>) -> &'static str {
        let tick = (idle / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(tick).await;
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if self.start.elapsed().saturating_sub(last) >= idle {
                return match size {
                    Some(n) if self.bytes() >= n => {
                        "waiting for the response after sending the body"
                    }
                    _ => "sending the request body",
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CloudConfig;

    fn session() -> Session {
        let mut cfg = CloudConfig::password("http://127.0.0.1:1/v3", "u", "p", "proj").unwrap();
        cfg.http.retry_base_delay = Duration::from_millis(100);
        cfg.http.retry_max_delay = Duration::from_secs(2);
        Session::new(cfg).unwrap()
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let s = session();
        for attempt in 0..8 {
            let d = s.retry_delay(attempt, None);
            let full = Duration::from_millis(100)
                .saturating_mul(2u32.pow(attempt))
                .min(Duration::from_secs(2));
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let s = session();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        assert_eq!(s.retry_delay(0, Some(&h)), Duration::from_secs(1));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(s.retry_delay(0, Some(&h)), Duration::from_secs(2));
        let date = (Utc::now() + chrono::Duration::seconds(1)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        assert!(s.retry_delay(0, Some(&h)) <= Duration::from_secs(1));
    }
}
