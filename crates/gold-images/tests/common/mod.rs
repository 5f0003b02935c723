//! Test plumbing: a small HTTP file server on 127.0.0.1 standing in for the
//! builder (`http://builder/`), and the image set templates of
//! `fixtures/gold-images/cloud/`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use md5::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The builder's files and the GET requests it answered.
#[derive(Clone, Default)]
pub struct BuilderServer {
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
    pub url: String,
}

impl BuilderServer {
    /// Start serving on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = BuilderServer {
            url: format!("http://{addr}/"),
            ..Default::default()
        };
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    let mut parts = text.split_whitespace();
                    let method = parts.next().unwrap_or("").to_owned();
                    let path = parts
                        .next()
                        .unwrap_or("/")
                        .trim_start_matches('/')
                        .to_owned();
                    s.requests.lock().unwrap().push(format!("{method} {path}"));
                    let body = s.files.lock().unwrap().get(&path).cloned();
                    let (status, body) = match body {
                        Some(b) => ("200 OK", b),
                        None => ("404 Not Found", b"not found\n".to_vec()),
                    };
                    let header = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(header.as_bytes()).await;
                    if method != "HEAD" {
                        let _ = sock.write_all(&body).await;
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        server
    }

    /// Serve `data` at `name`.
    pub fn put(&self, name: &str, data: Vec<u8>) {
        self.files.lock().unwrap().insert(name.to_owned(), data);
    }

    /// Publish a build the way the builder does: `<short>-latest.raw` and
    /// its `-latest.md5` (`md5sum` output). Returns the md5.
    pub fn publish(&self, short: &str, data: &[u8]) -> String {
        let md5 = hex::encode(md5::Md5::digest(data));
        self.put(&format!("{short}-latest.raw"), data.to_vec());
        self.put(
            &format!("{short}-latest.md5"),
            format!("{md5}  /opt/images/public_builds/{short}-20261125.qcow2\n").into_bytes(),
        );
        md5
    }

    /// The requests answered so far (`GET path`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// How many times `path` was fetched.
    pub fn gets(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| *r == &format!("GET {path}"))
            .count()
    }
}

/// Random image data of `size` bytes (raw images: Glance accepts anything).
pub fn data(size: usize) -> Vec<u8> {
    (0..size).map(|_| rand::random::<u8>()).collect()
}

/// The workspace's `fixtures/gold-images`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gold-images")
}

/// Write the template `name` of `fixtures/gold-images/cloud/` into `dir`
/// with the server URL and the run's type tag filled in.
pub fn render(name: &str, dir: &Path, url: &str, image_type: &str) -> PathBuf {
    let text =
        std::fs::read_to_string(fixtures().join("cloud").join(format!("{name}.tmpl"))).unwrap();
    let out = dir.join(name);
    std::fs::write(
        &out,
        text.replace("@URL@", url).replace("@TYPE@", image_type),
    )
    .unwrap();
    out
}
