//! The builder's HTTP side: its `-latest.md5` files, checksum files, and the
//! image data itself, streamed with hashing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use digest::DynDigest;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::error::{Error, Result};

/// The smallest image the original accepted (`Content-Length` below this is refused).
pub const MIN_IMAGE_SIZE: u64 = 10_000;

/// A digest by its himlarcli name.
pub fn new_digest(algo: &str) -> Option<Box<dyn DynDigest + Send>> {
    Some(match algo {
        "md5" => Box::new(md5::Md5::default()),
        "sha224" => Box::new(sha2::Sha224::default()),
        "sha256" => Box::new(sha2::Sha256::default()),
        "sha384" => Box::new(sha2::Sha384::default()),
        "sha512" => Box::new(sha2::Sha512::default()),
        _ => return None,
    })
}

/// Digests of data seen so far (md5 always, plus one more when asked).
pub struct Hashes {
    md5: md5::Md5,
    extra: Option<(String, Box<dyn DynDigest + Send>)>,
    bytes: u64,
}

impl std::fmt::Debug for Hashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hashes")
            .field("bytes", &self.bytes)
            .field("extra", &self.extra.as_ref().map(|(a, _)| a))
            .finish()
    }
}

/// The result of hashing a whole transfer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Digests {
    /// Hex md5 of the data.
    pub md5: String,
    /// The extra digest asked for, `(algorithm, hex)`.
    pub extra: Option<(String, String)>,
    /// Bytes seen.
    pub bytes: u64,
}

impl Hashes {
    /// Hash md5 and, when `extra` names a digest other than md5, that one too.
    pub fn new(extra: Option<&str>) -> Self {
        let extra = extra
            .filter(|a| *a != "md5")
            .and_then(|a| new_digest(a).map(|d| (a.to_owned(), d)));
        Hashes {
            md5: md5::Md5::default(),
            extra,
            bytes: 0,
        }
    }

    /// Feed data.
    pub fn update(&mut self, data: &[u8]) {
        digest::Digest::update(&mut self.md5, data);
        if let Some((_, d)) = self.extra.as_mut() {
            d.update(data);
        }
        self.bytes += data.len() as u64;
    }

    /// The digests so far (the state is reset).
    pub fn finish(&mut self) -> Digests {
        let md5 = hex::encode(digest::Digest::finalize_reset(&mut self.md5));
        let extra = self
            .extra
            .as_mut()
            .map(|(a, d)| (a.clone(), hex::encode(d.finalize_reset())));
        Digests {
            md5,
            extra,
            bytes: self.bytes,
        }
    }

    /// The digest named `algo` (md5 or the extra one).
    pub fn pick<'a>(digests: &'a Digests, algo: &str) -> Option<&'a str> {
        if algo == "md5" {
            return Some(&digests.md5);
        }
        digests
            .extra
            .as_ref()
            .filter(|(a, _)| a == algo)
            .map(|(_, v)| v.as_str())
    }
}

/// HTTP client for the builder's files.
#[derive(Debug, Clone)]
pub struct Builder {
    http: reqwest::Client,
}

/// An image download in progress: its announced size and the data stream.
pub struct Download {
    /// The URL.
    pub url: String,
    /// `Content-Length`, when sent.
    pub size: Option<u64>,
    response: reqwest::Response,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("url", &self.url)
            .field("size", &self.size)
            .finish()
    }
}

fn http_err(url: &str, message: impl Into<String>) -> Error {
    Error::Http {
        url: url.to_owned(),
        message: message.into(),
    }
}

impl Builder {
    /// A client with `user_agent`, a 10 s connect timeout and a 120 s idle
    /// read timeout (no total deadline: images are large).
    pub fn new(user_agent: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| http_err("(client)", e.to_string()))?;
        Ok(Builder { http })
    }

    /// GET a small text file (checksum files); an error status is an error.
    pub async fn fetch_text(&self, url: &str) -> Result<String> {
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| http_err(url, e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(http_err(url, format!("HTTP {status}")));
        }
        resp.text().await.map_err(|e| http_err(url, e.to_string()))
    }

    /// The builder's md5 for an image: the first whitespace-separated token
    /// of the file at `url`, when it can be fetched and looks like an md5.
    /// `None` (with a warning) otherwise: the caller then compares the data.
    pub async fn fetch_md5(&self, url: &str) -> Option<String> {
        match self.fetch_text(url).await {
            Ok(text) => {
                let token = text.split_whitespace().next().unwrap_or("");
                if token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Some(token.to_ascii_lowercase())
                } else {
                    tracing::warn!(
                        url,
                        "the builder checksum file holds no md5; the data will be compared instead"
                    );
                    None
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the builder checksum; the data will be compared instead");
                None
            }
        }
    }

    /// Start downloading `url`: the status must be a success and the
    /// announced size at least `min_size`.
    pub async fn open(&self, url: &str, min_size: u64) -> Result<Download> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| http_err(url, e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http_err(url, format!("HTTP {status}")));
        }
        let size = response.content_length();
        if let Some(n) = size {
            if n < min_size {
                return Err(http_err(
                    url,
                    format!("file is too small: {n} bytes (at least {min_size} expected)"),
                ));
            }
        }
        Ok(Download {
            url: url.to_owned(),
            size,
            response,
        })
    }
}

impl Download {
    /// The data as a stream of chunks, each one fed to `hashes` first.
    pub fn hashed_stream(
        self,
        hashes: Arc<Mutex<Hashes>>,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let url = self.url;
        self.response
            .bytes_stream()
            .map_err(move |e| std::io::Error::other(format!("{url}: {e}")))
            .inspect_ok(move |chunk| {
                if let Ok(mut h) = hashes.lock() {
                    h.update(chunk);
                }
            })
    }

    /// The data as an [`AsyncRead`] for an upload, hashed on the way.
    pub fn hashed_reader(self, hashes: Arc<Mutex<Hashes>>) -> impl AsyncRead + Send + 'static {
        tokio_util::io::StreamReader::new(Box::pin(self.hashed_stream(hashes)))
    }

    /// Save the data into a new file in `dir`, hashing it; the file is
    /// removed again on any failure.
    pub async fn save_hashed(self, dir: &Path, extra: Option<&str>) -> Result<(PathBuf, Digests)> {
        let url = self.url.clone();
        let file = tempfile::Builder::new()
            .prefix(".gold-images-")
            .tempfile_in(dir)
            .map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?;
        let (std_file, temp_path) = file.into_parts();
        let mut out = tokio::fs::File::from_std(std_file);
        let mut hashes = Hashes::new(extra);
        let mut stream = Box::pin(self.response.bytes_stream());
        let io = |source| Error::Io {
            path: temp_path.to_path_buf(),
            source,
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| http_err(&url, e.to_string()))?;
            hashes.update(&chunk);
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        let path = temp_path.keep().map_err(|e| Error::Io {
            path: dir.to_owned(),
            source: e.error,
        })?;
        Ok((path, hashes.finish()))
    }
}

/// Whether `digest` appears in the checksum file text (the original's test:
/// a substring match, case-insensitive here).
pub fn listed_in(digest: &str, checksum_text: &str) -> bool {
    checksum_text
        .to_ascii_lowercase()
        .contains(&digest.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_of_known_data() {
        let mut h = Hashes::new(Some("sha256"));
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            Hashes::pick(&d, "sha256"),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(d.bytes, 3);
        assert!(Hashes::pick(&d, "sha512").is_none());
        assert!(listed_in(
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  image.qcow2\n"
        ));
    }
}
