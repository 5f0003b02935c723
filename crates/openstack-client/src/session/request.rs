//! The values a request is made of and a response is read into.

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{server_message, Error, Result};

/// The header that carries the token of a request.
pub(super) const X_AUTH_TOKEN: &str = "x-auth-token";
/// The header Keystone answers a new token in.
pub(super) const X_SUBJECT_TOKEN: &str = "x-subject-token";

/// A request body that can be sent again on retry.
#[derive(Clone)]
pub(crate) enum Body {
    Empty,
    Bytes {
        data: Bytes,
        content_type: &'static str,
    },
}

/// Never prints the bytes: an authentication body carries a password.
impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Bytes { data, content_type } => {
                write!(f, "Bytes({} bytes of {content_type})", data.len())
            }
        }
    }
}

impl Body {
    pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<Body> {
        let data = serde_json::to_vec(value)
            .map_err(|e| Error::InvalidInput(format!("cannot serialize request body: {e}")))?;
        Ok(Body::Bytes {
            data: Bytes::from(data),
            content_type: "application/json",
        })
    }
}

/// A request the session executes.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub service: &'static str,
    pub region: Option<String>,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Body,
    /// Safe to repeat (GET, PUT, DELETE, most actions).
    pub idempotent: bool,
    /// Send the token and re-authenticate once on 401.
    pub auth: bool,
}

impl Req {
    pub(crate) fn new(
        service: &'static str,
        region: Option<String>,
        method: Method,
        url: Url,
    ) -> Req {
        let idempotent = matches!(
            method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        );
        Req {
            service,
            region,
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            idempotent,
            auth: true,
        }
    }

    pub(crate) fn json<T: serde::Serialize>(mut self, value: &T) -> Result<Req> {
        self.body = Body::json(value)?;
        Ok(self)
    }

    pub(crate) fn idempotent(mut self, yes: bool) -> Req {
        self.idempotent = yes;
        self
    }
}

/// A fully read response.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub method: Method,
    pub url: Url,
}

impl RawResponse {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|source| Error::Decode {
            method: self.method.clone(),
            url: self.url.to_string(),
            type_name: std::any::type_name::<T>(),
            source,
        })
    }

    /// Decode the `T` under `key` of a JSON object body (`{"server": {...}}`).
    pub(crate) fn json_in<T: DeserializeOwned>(&self, key: &str) -> Result<T> {
        let decode = |source| Error::Decode {
            method: self.method.clone(),
            url: self.url.to_string(),
            type_name: std::any::type_name::<T>(),
            source,
        };
        let mut value: serde_json::Value = serde_json::from_slice(&self.body).map_err(decode)?;
        let inner = value
            .get_mut(key)
            .map(serde_json::Value::take)
            .ok_or_else(|| {
                decode(<serde_json::Error as serde::de::Error>::custom(
                    format_args!("missing field `{key}`"),
                ))
            })?;
        serde_json::from_value(inner).map_err(decode)
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    [
        "x-openstack-request-id",
        "x-compute-request-id",
        "openstack-request-id",
    ]
    .iter()
    .find_map(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

pub(crate) fn api_error(
    method: &Method,
    url: &Url,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Error {
    Error::Api {
        status,
        method: method.clone(),
        url: url.to_string(),
        request_id: request_id(headers),
        message: server_message(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_debug_hides_the_body() {
        let url = Url::parse("http://127.0.0.1/v3/auth/tokens").unwrap();
        let req = Req::new("identity", None, Method::POST, url)
            .json(&serde_json::json!({"password": "hunter2"}))
            .unwrap();
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("bytes of application/json"), "{dbg}");
    }

    #[test]
    fn json_in_decodes_the_named_member_or_names_what_is_missing() {
        let resp = RawResponse {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(br#"{"keypair": {"name": "k"}}"#),
            method: Method::GET,
            url: Url::parse("http://127.0.0.1/os-keypairs/k").unwrap(),
        };
        let v: serde_json::Value = resp.json_in("keypair").unwrap();
        assert_eq!(v, serde_json::json!({"name": "k"}));
        let err = resp.json_in::<serde_json::Value>("server").unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("GET http://127.0.0.1/os-keypairs/k: cannot decode")
                && err.to_string().contains("missing field `server`"),
            "{err}"
        );
    }

    #[test]
    fn only_safe_methods_are_idempotent_by_default() {
        let url = Url::parse("http://127.0.0.1/x").unwrap();
        assert!(Req::new("image", None, Method::GET, url.clone()).idempotent);
        assert!(Req::new("image", None, Method::PUT, url.clone()).idempotent);
        assert!(Req::new("image", None, Method::DELETE, url.clone()).idempotent);
        assert!(!Req::new("image", None, Method::POST, url.clone()).idempotent);
        assert!(!Req::new("image", None, Method::PATCH, url).idempotent);
    }
}
