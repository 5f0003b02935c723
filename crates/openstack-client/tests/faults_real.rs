//! Retries and large transfers against the real local Glance. Faults come
//! from a tiny TCP proxy the test starts on loopback in front of Glance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openstack_client::glance::{CreateImage, ImageFilter, ImageStatus};
use openstack_client::{CloudConfig, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Read the request (headers and body), answer 503 with `Retry-After: 0`.
    Unavailable,
    /// Close the connection without answering.
    Reset,
}

struct Proxy {
    addr: SocketAddr,
    plan: Arc<Mutex<VecDeque<Fault>>>,
    faults: Arc<AtomicUsize>,
    passed: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plan: Arc<Mutex<VecDeque<Fault>>> = Arc::default();
        let faults = Arc::new(AtomicUsize::new(0));
        let passed = Arc::new(AtomicUsize::new(0));
        let (p, f, ok) = (plan.clone(), faults.clone(), passed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let fault = p.lock().unwrap().pop_front();
                match fault {
                    Some(fault) => {
                        f.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(async move { inject(&mut client, fault).await });
                    }
                    None => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(async move {
                            let mut server = TcpStream::connect(upstream).await.unwrap();
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        });
                    }
                }
            }
        });
        Proxy {
            addr,
            plan,
            faults,
            passed,
        }
    }

    fn plan(&self, faults: &[Fault]) {
        self.plan.lock().unwrap().extend(faults.iter().copied());
    }

    /// A config whose image endpoint is this proxy.
    fn config(&self) -> CloudConfig {
        let mut cfg = common::config();
        cfg.endpoint_overrides.insert(
            "image".into(),
            url::Url::parse(&format!("http://{}", self.addr)).unwrap(),
        );
        cfg.http.retry_base_delay = Duration::from_millis(50);
        cfg
    }
}

async fn inject(client: &mut TcpStream, fault: Fault) {
    if let Fault::Reset = fault {
        // Wait for the request, then close with it unread: the kernel
        // answers with a RST.
        let _ = client.readable().await;
        return;
    }
    // Read the headers, then drain the body so the client sees our answer.
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let header_end = loop {
        let n = client.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut remaining = length.saturating_sub(buf.len() - header_end);
    while remaining > 0 {
        let n = client.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        remaining = remaining.saturating_sub(n);
    }
    let body = "503 Service Unavailable\n\nfault injected by the test proxy";
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Type: text/plain\r\nx-openstack-request-id: req-proxy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(resp.as_bytes()).await;
    let _ = client.shutdown().await;
}

async fn glance_addr(session: &Session) -> SocketAddr {
    let url = session
        .endpoint("image", Some(&common::regions()[0]))
        .await
        .unwrap();
    format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap()
    )
    .parse()
    .unwrap()
}

/// Idempotent GETs are retried through 503s and a connection reset.
#[tokio::test]
async fn get_is_retried_on_503_and_reset() {
    let _serial = common::cloud_lock().await;
    let real = common::session().await;
    let proxy = Proxy::start(glance_addr(&real).await).await;
    proxy.plan(&[Fault::Unavailable, Fault::Reset, Fault::Unavailable]);
    let s = common::session_for(proxy.config()).await;
    let g = s.image(None).await.unwrap();
    g.list_images(&ImageFilter::default().limit(1))
        .await
        .unwrap();
    assert_eq!(proxy.faults.load(Ordering::SeqCst), 3);
    assert_eq!(proxy.passed.load(Ordering::SeqCst), 1);
}

/// POST (create) is not idempotent: a 503 is returned, not retried.
#[tokio::test]
async fn create_is_not_retried() {
    let _serial = common::cloud_lock().await;
    let real = common::session().await;
    let proxy = Proxy::start(glance_addr(&real).await).await;
    proxy.plan(&[Fault::Unavailable]);
    let s = common::session_for(proxy.config()).await;
    let g = s.image(None).await.unwrap();
    let err = g
        .create_image(&CreateImage::new(common::unique("noretry")))
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.request_id(), Some("req-proxy"));
    assert!(err.to_string().contains("fault injected"), "{err}");
    assert_eq!(proxy.faults.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.passed.load(Ordering::SeqCst), 0);
}

/// A streaming upload is never replayed; `upload_file` reopens the file and
/// tries again.
#[tokio::test]
async fn upload_is_not_replayed_but_upload_file_reopens() {
    let _serial = common::cloud_lock().await;
    let real = common::session().await;
    let rg = real.image(Some(&common::regions()[0])).await.unwrap();
    let image = common::raw_image(&rg, common::unique("reopen")).await;
    let payload = common::data(5 * 1024 * 1024 + 3, 21);
    let proxy = Proxy::start(glance_addr(&real).await).await;

    proxy.plan(&[Fault::Unavailable]);
    let s = common::session_for(proxy.config()).await;
    let g = s.image(None).await.unwrap();
    let err = g
        .upload(
            &image.id,
            std::io::Cursor::new(payload.clone()),
            Some(payload.len() as u64),
        )
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(proxy.faults.load(Ordering::SeqCst), 1);
    assert_eq!(proxy.passed.load(Ordering::SeqCst), 0);
    assert_eq!(
        rg.get_image(&image.id).await.unwrap().status,
        ImageStatus::Queued
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    std::fs::write(&path, &payload).unwrap();
    proxy.plan(&[Fault::Unavailable]);
    let s = common::session_for(proxy.config()).await;
    let g = s.image(None).await.unwrap();
    g.upload_file(&image.id, &path).await.unwrap();
    assert_eq!(proxy.faults.load(Ordering::SeqCst), 2);
    let active = rg.get_image(&image.id).await.unwrap();
    assert_eq!(active.status, ImageStatus::Active);
    common::assert_holds(&active, &payload);
    rg.delete_image(&image.id).await.unwrap();
}

/// 200 MiB up and down in each region, verified by sha512 on both sides.
#[tokio::test]
async fn two_hundred_mib_round_trip() {
    let _serial = common::cloud_lock().await;
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.raw");
    let size: u64 = 200 * 1024 * 1024;
    let mut hasher = sha2::Sha512::new();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let block = 8 * 1024 * 1024;
        for i in 0..(size as usize / block) {
            let d = common::data(block, 1000 + i as u64);
            hasher.update(&d);
            f.write_all(&d).unwrap();
        }
    }
    let want = hex::encode(hasher.finalize());
    let s = common::session().await;
    for region in common::regions() {
        let g = s.image(Some(&region)).await.unwrap();
        let image = common::raw_image(&g, common::unique("big")).await;
        g.upload_file(&image.id, &src).await.unwrap();
        let active = g.get_image(&image.id).await.unwrap();
        assert_eq!(active.size, Some(size));
        assert_eq!(active.os_hash_value.as_deref(), Some(want.as_str()));
        let dst = dir.path().join(format!("down-{region}.raw"));
        let summary = g.download_to_file(&image.id, &dst).await.unwrap();
        assert_eq!(summary.bytes, size);
        assert_eq!(summary.hash.as_deref(), Some(want.as_str()));
        assert_eq!(std::fs::metadata(&dst).unwrap().len(), size);
        std::fs::remove_file(&dst).unwrap();
        g.delete_image(&image.id).await.unwrap();
    }
}
