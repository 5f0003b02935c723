//! `imagebuilder bootstrap` against the real local Glance, the image and
//! its checksum file served by an HTTP server of the test on 127.0.0.1:
//! a verified upload (stdout is only the id, the image private with the
//! `hw_*` properties), a bad checksum (nothing uploaded, exit 1), a file
//! too small, and a download resumed from a partial file (Range request);
//! SIGINT during the download: exit 1, nothing printed or uploaded, the
//! partial file kept for the next run to resume.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use cloud_test_support::{
    cloud_lock, cloud_name, clouds_yaml, image_ids_named, session, text, unique, ImageCleanup,
};
use md5::Digest as _;
use openstack_client::glance::Visibility;

/// A tiny HTTP/1.1 server: serves `files` (path -> bytes), honours
/// `Range: bytes=N-`, and records the request lines and Range headers.
struct Http {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

fn serve(files: Vec<(String, Vec<u8>)>) -> Http {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut range: Option<u64> = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse().ok();
                    log.lock().unwrap().push(format!("range {}", v.trim()));
                }
            }
            log.lock().unwrap().push(first.trim().to_string());
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            match files.iter().find(|(p, _)| *p == path) {
                None => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
                Some((_, body)) => {
                    let (status, part, extra) = match range {
                        Some(from) if (from as usize) < body.len() => (
                            "206 Partial Content",
                            &body[from as usize..],
                            format!(
                                "Content-Range: bytes {from}-{}/{}\r\n",
                                body.len() - 1,
                                body.len()
                            ),
                        ),
                        _ => ("200 OK", &body[..], String::new()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                        part.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(part);
                }
            }
            let _ = stream.flush();
            let mut rest = Vec::new();
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(10)));
            let _ = reader.read_to_end(&mut rest);
        }
    });
    Http { port, seen }
}

fn small_qcow2(dir: &Path) -> Vec<u8> {
    let p = dir.join("up.qcow2");
    cloud_test_support::blank_qcow2(&p, "16M");
    std::fs::read(&p).unwrap()
}

fn sha256_hex(data: &[u8], dir: &Path) -> String {
    let p = dir.join("hashme");
    std::fs::write(&p, data).unwrap();
    let out = Command::new("sha256sum").arg(&p).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn bootstrap(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imagebuilder"))
        .arg("bootstrap")
        .args(args)
        .args(["--os-cloud", &cloud_name()])
        .arg("--download-cache")
        .arg(cache)
        .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
        .env_remove("OS_REGION_NAME")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_verifies_uploads_and_refuses_bad_checksums() {
    let _lock = cloud_lock().await;
    let glance = session().await.image(None).await.unwrap();
    let mut cleanup = ImageCleanup::new(&glance);
    let dir = tempfile::tempdir().unwrap();
    let cache: PathBuf = dir.path().join("cache");
    let image = small_qcow2(dir.path());
    let sum = sha256_hex(&image, dir.path());
    let md5 = hex::encode(md5::Md5::digest(&image));
    let http = serve(vec![
        ("/images/up.qcow2".into(), image.clone()),
        (
            "/images/SHA256SUMS".into(),
            format!("{sum}  up.qcow2\nabc  other.qcow2\n").into_bytes(),
        ),
        (
            "/images/BAD".into(),
            format!("{}  up.qcow2\n", "0".repeat(64)).into_bytes(),
        ),
        ("/images/tiny.qcow2".into(), b"tiny".to_vec()),
        (
            "/images/MD5SUMS".into(),
            format!("{md5}  up.qcow2\n").into_bytes(),
        ),
    ]);
    let base = format!("http://127.0.0.1:{}/images", http.port);

    // Good checksum: only the id on stdout, no newline.
    let name = unique("ipt-ib-boot");
    let out = bootstrap(
        &cache,
        &[
            "-a",
            "default-1",
            "-u",
            &format!("{base}/up.qcow2"),
            "-c",
            &format!("{base}/SHA256SUMS"),
            "-n",
            &name,
            "-r",
            "768",
            "-d",
            "3",
            "-f",
            "qcow2",
            "-e",
        ],
    );
    for id in image_ids_named(&glance, &name).await {
        cleanup.track(id);
    }
    assert!(out.status.success(), "{}", text(&out));
    let id = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        !id.ends_with('\n') && id.len() == 36,
        "stdout must be only the id: {id:?}"
    );
    let img = glance.get_image(&id).await.unwrap();
    assert_eq!(img.name.as_deref(), Some(name.as_str()));
    assert_eq!(img.visibility, Visibility::Private);
    assert_eq!(img.checksum.as_deref(), Some(md5.as_str()));
    assert_eq!(img.min_ram, Some(768));
    assert_eq!(img.min_disk, Some(3));
    assert_eq!(img.disk_format.as_deref(), Some("qcow2"));
    for (k, v) in [
        ("hw_disk_bus", "scsi"),
        ("hw_scsi_model", "virtio-scsi"),
        ("hw_firmware_type", "uefi"),
        ("hw_machine_type", "q35"),
        ("hw_rng_model", "virtio"),
    ] {
        assert_eq!(img.property(k), Some(v), "property {k}");
    }
    // The finished download is not kept.
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);

    // Bad checksum: exit 1, nothing in Glance.
    let bad = unique("ipt-ib-bad");
    let out = bootstrap(
        &cache,
        &[
            "-a",
            "default-1",
            "-u",
            &format!("{base}/up.qcow2"),
            "-c",
            &format!("{base}/BAD"),
            "-n",
            &bad,
            "-r",
            "768",
            "-d",
            "3",
            "-f",
            "qcow2",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum not ok"),
        "{}",
        text(&out)
    );
    assert!(image_ids_named(&glance, &bad).await.is_empty());

    // Too small to be an image.
    let out = bootstrap(
        &cache,
        &[
            "-a",
            "default-1",
            "-u",
            &format!("{base}/tiny.qcow2"),
            "-n",
            &bad,
            "-r",
            "1",
            "-d",
            "1",
            "-f",
            "raw",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too small"),
        "{}",
        text(&out)
    );
    assert!(image_ids_named(&glance, &bad).await.is_empty());

    // Resumed: half the file already downloaded; md5 digest, no SCSI.
    let url = format!("{base}/up.qcow2");
    let part = imagebuilder_core::bootstrap::download_path(&cache, &url);
    std::fs::create_dir_all(&cache).unwrap();
    let half = image.len() / 2;
    std::fs::write(format!("{}.part", part.display()), &image[..half]).unwrap();
    let resumed = unique("ipt-ib-resume");
    let out = bootstrap(
        &cache,
        &[
            "-a",
            "default-1",
            "-u",
            &url,
            "-c",
            &format!("{base}/MD5SUMS"),
            "-t",
            "md5",
            "-n",
            &resumed,
            "-r",
            "512",
            "-d",
            "1",
            "-f",
            "qcow2",
            "-s",
        ],
    );
    for id in image_ids_named(&glance, &resumed).await {
        cleanup.track(id);
    }
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        http.seen
            .lock()
            .unwrap()
            .contains(&format!("range {half}-")),
        "no Range request: {:?}",
        http.seen.lock().unwrap()
    );
    let img = glance
        .get_image(&String::from_utf8(out.stdout).unwrap())
        .await
        .unwrap();
    assert_eq!(
        img.checksum.as_deref(),
        Some(md5.as_str()),
        "resumed upload differs"
    );
    assert_eq!(img.property("hw_disk_bus"), None);
    assert_eq!(img.property("hw_rng_model"), Some("virtio"));
}

/// A server that sends the headers of a 64 MiB file, then 64 KiB every
/// 100 ms, forever (a download that is still running when the test stops it).
fn serve_slowly() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let head =
                    "HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\nConnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![0u8; 65536];
                while stream.write_all(&chunk).is_ok() {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_stops_on_sigint_and_keeps_the_download_to_resume() {
    // Holds the shared-cloud lock: were the signal missed, it would upload.
    let _lock = cloud_lock().await;
    let glance = session().await.image(None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache: PathBuf = dir.path().join("cache");
    let port = serve_slowly();
    let name = unique("ipt-ib-boot-int");
    let child = Command::new(env!("CARGO_BIN_EXE_imagebuilder"))
        .args(["bootstrap", "-a", "default-1", "-u"])
        .arg(format!("http://127.0.0.1:{port}/slow.qcow2"))
        .args(["-n", &name, "-r", "512", "-d", "1", "-f", "qcow2"])
        .args(["--os-cloud", &cloud_name()])
        .arg("--download-cache")
        .arg(&cache)
        .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
        .env_remove("OS_REGION_NAME")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the download has started writing.
    let part = || {
        std::fs::read_dir(&cache)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                    .map(|e| e.metadata().unwrap().len())
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    let start = std::time::Instant::now();
    while part() == 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(300),
            "the download never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted by a signal"),
        "{}",
        text(&out)
    );
    assert!(part() > 0, "the partial download is kept to resume");
    assert!(image_ids_named(&glance, &name).await.is_empty());
}
