//! The crate's single error type.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to OpenStack.
///
/// Every variant that comes from an HTTP exchange carries the method and URL;
/// API errors also carry the status, the OpenStack request id and the
/// server's own message. Use the helpers ([`Error::is_not_found`],
/// [`Error::is_conflict`], [`Error::is_retryable`], ...) instead of matching
/// on status codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a non-success status.
    #[error("{method} {url}: HTTP {status}{}: {message}", request_id.as_deref().map(|r| format!(" (request id {r})")).unwrap_or_default())]
    Api {
        /// HTTP status code.
        status: StatusCode,
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// `x-openstack-request-id` (or `x-compute-request-id`) if present.
        request_id: Option<String>,
        /// The server's error message (extracted from its JSON or text body).
        message: String,
    },
    /// The request could not be sent or the response could not be read
    /// (the message says which and gives the root cause, e.g. `cannot
    /// connect: Connection refused (os error 111)`).
    #[error("{method} {url}: {}", describe_transport(source))]
    Transport {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// Underlying HTTP client error.
        #[source]
        source: reqwest::Error,
    },
    /// No progress (connect, send, response or body read) within the idle timeout.
    #[error("{method} {url}: no progress for {}s while {phase}", idle.as_secs())]
    Timeout {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// What was being waited for ("waiting for the response", "reading the body", ...).
        phase: &'static str,
        /// The idle time that elapsed.
        idle: Duration,
    },
    /// A configuration problem (clouds.yaml, environment variables, options).
    #[error("{}{message}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Config {
        /// The configuration file involved, if any.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
    /// Keystone answered but the answer is unusable (no token header, ...).
    #[error("authentication failed: {message}")]
    Auth {
        /// What is wrong.
        message: String,
    },
    /// The service catalog has no matching endpoint.
    #[error("no {interface} endpoint for service type '{service_type}'{} in the catalog; the catalog offers: {available}", region.as_deref().map(|r| format!(" in region '{r}'")).unwrap_or_default())]
    Catalog {
        /// Service type that was looked up (`image`, `compute`, ...).
        service_type: String,
        /// Region that was requested.
        region: Option<String>,
        /// Interface that was requested.
        interface: String,
        /// Human-readable summary of what the catalog does contain.
        available: String,
    },
    /// A response body could not be decoded.
    #[error("{method} {url}: cannot decode the response as {type_name}: {source}")]
    Decode {
        /// Request method.
        method: Method,
        /// Request URL.
        url: String,
        /// Rust type the body was decoded into.
        type_name: &'static str,
        /// serde error.
        #[source]
        source: serde_json::Error,
    },
    /// Local I/O failed (reading an upload source, writing a download).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, including the file name when known.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Downloaded data does not match the hash Glance recorded.
    #[error("image {image_id}: {algorithm} mismatch: Glance recorded {expected}, received data hashes to {actual}")]
    HashMismatch {
        /// Image id.
        image_id: String,
        /// Hash algorithm (`sha512`, `md5`, ...).
        algorithm: String,
        /// Value recorded by Glance.
        expected: String,
        /// Value computed over the received data.
        actual: String,
    },
    /// Downloaded data does not have the size Glance recorded.
    #[error("image {image_id}: expected {expected} bytes, received {actual}")]
    SizeMismatch {
        /// Image id.
        image_id: String,
        /// Size recorded by Glance (or announced for an upload).
        expected: u64,
        /// Bytes actually transferred.
        actual: u64,
    },
    /// A lookup by name found nothing.
    #[error("{kind} '{name}' not found")]
    NotFound {
        /// Resource kind (`flavor`, `network`, ...).
        kind: &'static str,
        /// Name or id that was looked up.
        name: String,
    },
    /// A lookup by name found several resources.
    #[error("{count} {kind}s are named '{name}'; use an id")]
    Ambiguous {
        /// Resource kind.
        kind: &'static str,
        /// The name.
        name: String,
        /// How many matched.
        count: usize,
    },
    /// Waiting for a status timed out.
    #[error("{kind} {id} did not reach status {wanted} within {}s (last status {last})", waited.as_secs())]
    WaitTimeout {
        /// Resource kind.
        kind: &'static str,
        /// Resource id.
        id: String,
        /// Wanted status.
        wanted: String,
        /// Last status seen.
        last: String,
        /// How long we waited.
        waited: Duration,
    },
    /// A resource went into an error state while we waited for it.
    #[error("{kind} {id} went to status {status}{}", fault.as_deref().map(|f| format!(": {f}")).unwrap_or_default())]
    ResourceFailed {
        /// Resource kind.
        kind: &'static str,
        /// Resource id.
        id: String,
        /// Status reached (`ERROR`, `killed`, ...).
        status: String,
        /// Fault message reported by the service, if any.
        fault: Option<String>,
    },
    /// The caller passed an invalid argument.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl Error {
    /// HTTP status of an API error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// OpenStack request id of an API error.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// HTTP 404, or a lookup by name that found nothing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. }) || self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// HTTP 409 Conflict.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }

    /// HTTP 401 (after the one re-authentication the session attempts).
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(StatusCode::UNAUTHORIZED)
    }

    /// Whether repeating the same operation later may succeed: 429, 502, 503,
    /// 504, connection failures and stalls. (The client already retried
    /// idempotent requests; this matters for uploads, which are never replayed
    /// automatically, and for callers with their own retry loops.)
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { status, .. } => is_retryable_status(*status),
            Error::Transport { source, .. } => !source.is_builder() && !source.is_decode(),
            Error::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Statuses that are retried for idempotent requests.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Extract a readable message from an OpenStack error body.
///
/// Handles `{"error": {"message": ...}}` (Keystone),
/// `{"itemNotFound": {"message": ...}}` (Nova), `{"NeutronError": {...}}`,
/// `{"message": ...}` and Glance's plain-text/HTML webob bodies.
pub(crate) fn server_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(msg) = find_message(&value, 0) {
            return truncate(&msg);
        }
    }
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let collapsed = collapsed
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let stripped = strip_status_lines(&collapsed);
    if stripped.is_empty() {
        "(empty body)".to_owned()
    } else {
        truncate(&stripped)
    }
}

/// webob error pages repeat the status line (`<title>` and `<h1>`): drop
/// those repetitions, the status is part of the error anyway.
fn strip_status_lines(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let is_status = words
        .first()
        .is_some_and(|w| w.len() == 3 && w.chars().all(|c| c.is_ascii_digit()));
    if !is_status {
        return text.to_owned();
    }
    for n in 1..=5usize {
        let len = n + 1;
        if words.len() >= 2 * len && words[..len] == words[len..2 * len] {
            let rest = words[2 * len..].join(" ");
            return if rest.is_empty() {
                words[..len].join(" ")
            } else {
                rest
            };
        }
    }
    text.to_owned()
}

fn find_message(value: &serde_json::Value, depth: usize) -> Option<String> {
    let obj = value.as_object()?;
    for key in ["message", "faultstring", "detail", "title"] {
        if let Some(s) = obj.get(key).and_then(|v| v.as_str()) {
            if !s.is_empty() {
                return Some(s.to_owned());
            }
        }
    }
    if depth < 2 {
        for v in obj.values() {
            if let Some(m) = find_message(v, depth + 1) {
                return Some(m);
            }
        }
    }
    None
}

fn truncate(s: &str) -> String {
    const MAX: usize = 500;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What went wrong in a transport error, with its root cause: reqwest's own
/// message only repeats the URL ("error sending request for url (...)").
fn describe_transport(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() {
        "the request or response body failed"
    } else if e.is_decode() {
        "cannot decode the response"
    } else if e.is_request() {
        "the request failed"
    } else {
        "transport error"
    };
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    let cause = root.to_string();
    if std::ptr::addr_eq(root, e) || cause.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_the_usual_bodies() {
        assert_eq!(
            server_message(br#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#),
            "The request you have made requires authentication."
        );
        assert_eq!(
            server_message(
                br#"{"itemNotFound": {"code": 404, "message": "Flavor 7 could not be found."}}"#
            ),
            "Flavor 7 could not be found."
        );
        assert_eq!(
            server_message(br#"{"NeutronError": {"type": "NetworkNotFound", "message": "Network x could not be found.", "detail": ""}}"#),
            "Network x could not be found."
        );
        assert_eq!(
            server_message(b"<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  No image found with ID abc<br /><br />\n\n\n\n </body>\n</html>"),
            "No image found with ID abc"
        );
        assert_eq!(server_message(b""), "(empty body)");
        assert_eq!(
            server_message(b"<html><head><title>500 Internal Server Error</title></head><body><h1>500 Internal Server Error</h1></body></html>"),
            "500 Internal Server Error"
        );
        assert_eq!(
            server_message(b"503 Service Unavailable\n\nfault injected"),
            "503 Service Unavailable fault injected"
        );
    }

    #[test]
    fn helpers() {
        let url = "http://127.0.0.1:9292/v2/images/x".to_string();
        let e = Error::Api {
            status: StatusCode::NOT_FOUND,
            method: Method::GET,
            url: url.clone(),
            request_id: Some("req-1".into()),
            message: "No image found".into(),
        };
        assert!(e.is_not_found());
        assert!(!e.is_conflict());
        assert!(!e.is_retryable());
        assert_eq!(e.request_id(), Some("req-1"));
        assert_eq!(
            e.to_string(),
            "GET http://127.0.0.1:9292/v2/images/x: HTTP 404 Not Found (request id req-1): No image found"
        );
        let e = Error::Api {
            status: StatusCode::SERVICE_UNAVAILABLE,
            method: Method::GET,
            url,
            request_id: None,
            message: "down".into(),
        };
        assert!(e.is_retryable());
    }
}
