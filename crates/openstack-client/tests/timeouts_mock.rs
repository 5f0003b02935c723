//! Idle (stall) timeouts without a total deadline, and an answer cut off,
//! against tiny loopback servers; Keystone is a wiremock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use openstack_client::glance::Image;
use openstack_client::{CloudConfig, Error, Session};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A session whose image endpoint is `image_url`, idle timeout 1 s.
async fn session(image_url: &str) -> (MockServer, Session) {
    let ks = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", "tok")
                .set_body_json(json!({"token": {"expires_at": "2999-01-01T00:00:00Z", "catalog": [
                    {"type": "image", "endpoints": [{"interface": "public", "region_id": "R", "url": image_url}]}
                ]}})),
        )
        .mount(&ks)
        .await;
    let mut cfg = CloudConfig::password(&format!("{}/v3", ks.uri()), "u", "p", "proj").unwrap();
    cfg.http.idle_timeout = Duration::from_secs(1);
    cfg.http.max_retries = 0;
    (ks, Session::new(cfg).unwrap())
}

/// Serves GET /file: headers, then `chunks` chunks of 64 KiB `gap` apart,
/// then (if `stall`) hangs forever.
async fn trickle_server(chunks: usize, gap: Duration, stall: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let total = if stall {
                    chunks * 65536 + 1
                } else {
                    chunks * 65536
                };
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n");
                sock.write_all(head.as_bytes()).await.unwrap();
                for _ in 0..chunks {
                    tokio::time::sleep(gap).await;
                    if sock.write_all(&[7u8; 65536]).await.is_err() {
                        return;
                    }
                }
                if stall {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

fn image(size: usize) -> Image {
    Image {
        id: "img".into(),
        size: Some(size as u64),
        ..Default::default()
    }
}

/// A download that takes longer than the idle timeout in total but never
/// pauses that long succeeds: there is no total deadline.
#[tokio::test]
async fn slow_but_steady_download_is_not_cut() {
    let url = trickle_server(8, Duration::from_millis(300), false).await;
    let (_ks, s) = session(&url).await;
    let g = s.image(Some("R")).await.unwrap();
    let mut stream = g
        .download_image_unverified(&image(8 * 65536))
        .await
        .unwrap();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len();
    }
    assert_eq!(n, 8 * 65536);
}

/// A download that stops moving fails with a timeout naming the phase.
#[tokio::test]
async fn stalled_download_times_out() {
    let url = trickle_server(2, Duration::from_millis(50), true).await;
    let (_ks, s) = session(&url).await;
    let g = s.image(Some("R")).await.unwrap();
    let mut stream = g
        .download_image_unverified(&image(2 * 65536 + 1))
        .await
        .unwrap();
    let mut last = None;
    while let Some(item) = stream.next().await {
        if item.is_err() {
            last = Some(item);
            break;
        }
    }
    let err = last.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: "reading the image data",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_retryable());
}

/// An upload to a server that stops reading fails by the idle watchdog.
#[tokio::test]
async fn stalled_upload_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            // Never read: the socket buffers fill up and the upload stalls.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(sock);
            });
        }
    });
    let (_ks, s) = session(&format!("http://{addr}")).await;
    let g = s.image(Some("R")).await.unwrap();
    let size = 64 * 1024 * 1024;
    let data = vec![0u8; size];
    let err = g
        .upload("img", std::io::Cursor::new(data), Some(size as u64))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: "sending the request body",
                ..
            }
        ),
        "{err}"
    );
}

/// A loopback server answering every request, once it has read the request
/// and `body` bytes after its head, with a 401 whose body ends early (the
/// connection closed); returns its URL and the count of requests.
async fn cut_off_refusals(body: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n");
                    if head_end.is_some_and(|end| got.len() >= end + 4 + body) {
                        break;
                    }
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 100\r\n\r\n401 Unauth",
                    )
                    .await;
            });
        }
    });
    (format!("http://{addr}"), attempts)
}

/// A server refusing an upload (a rejected token, as Glance does) may close
/// the connection in the middle of its answer's body: the refusal is still
/// a 401, so the session re-authenticates and sends the file once more
/// (not a transport error that ends the upload at the first attempt).
#[tokio::test]
async fn a_refusal_cut_off_is_still_a_refusal() {
    const BODY: usize = 1000;
    let (url, attempts) = cut_off_refusals(BODY).await;
    let (_ks, s) = session(&url).await;
    let g = s.image(Some("R")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, vec![3u8; BODY]).unwrap();
    let err = g.upload_file("img", &file).await.unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "sent again after the re-authentication"
    );
}

/// The same for a request with a buffered answer (an image listing): one
/// re-authentication, then the 401.
#[tokio::test]
async fn a_cut_off_refusal_of_a_listing_is_still_a_refusal() {
    let (url, attempts) = cut_off_refusals(0).await;
    let (_ks, s) = session(&url).await;
    let g = s.image(Some("R")).await.unwrap();
    let err = g
        .list_images(&openstack_client::glance::ImageFilter::default())
        .await
        .unwrap_err();
    assert!(err.is_unauthorized(), "{err}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "asked again after the re-authentication"
    );
}
