//! Helpers of the builder's VM tests (`build_interrupt_vm`, `build_all_vm`):
//! the command with the test's directories, waiting for a condition,
//! QEMU processes of a directory, ledgers, reports, a source image in the
//! local Glance, and a small HTTP server of files.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cloud_test_support::{cloud_lock, cloud_name, clouds_yaml, unique, ImageCleanup};
use openstack_client::glance::GlanceClient;

pub use cloud_test_support::text;

/// `imagebuilder ARGS` with the test's cloud, directories under `root`,
/// reporting on and the key as a systemd credential.
pub fn ib(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagebuilder"));
    c.args(args)
        .env("OS_CLOUD", cloud_name())
        .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
        .env_remove("OS_REGION_NAME")
        .env_remove("IMAGEBUILDER_BACKEND")
        .env("IB_DOWNLOAD_DIR", root.join("public_builds"))
        .env("IMAGEBUILDER_REPORT", "true")
        .env("IMAGEBUILDER_LOG_DIR", root.join("log"))
        .env("IMAGEBUILDER_STATE_DIR", root.join("state"))
        .env("IMAGEBUILDER_DOWNLOAD_CACHE", root.join("downloads"))
        .env("LIBGUESTFS_BACKEND", "direct")
        // The Debian test image takes the key as a systemd credential: no
        // libguestfs launch per boot (build_local_vm covers the default).
        .env("IMAGEBUILDER_KEY_INJECTION", "systemd-credential");
    c
}

/// Poll `cond` every half second; panic naming `what` after 20 minutes
/// (a safety net for a hung run, not a timing check).
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(1200),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub use cloud_test_support::qemus_in;

/// Names of the entries of `dir` (none when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Outstanding records of image `name`'s ledger under `root/state`.
pub fn outstanding(root: &Path, name: &str) -> Vec<image_pipeline::ResourceRecord> {
    image_pipeline::ResourceLedger::open(root.join(format!("state/{name}.ledger.jsonl")))
        .unwrap()
        .outstanding()
        .unwrap()
}

/// The JSONL report of image `name` under `root/log`.
pub fn report_lines(root: &Path, name: &str) -> Vec<serde_json::Value> {
    let p = root.join(format!("log/{name}-report.jsonl"));
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Today as the builder names its files (`date +%Y%m%d`).
pub fn today() -> String {
    String::from_utf8(Command::new("date").arg("+%Y%m%d").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// Nothing of a build is left under `root`: no QEMU, no outstanding
/// ledger record, no work or VM directory, no file being written.
pub fn assert_nothing_left(root: &Path, name: &str) {
    assert!(qemus_in(root).is_empty(), "{:?}", qemus_in(root));
    let left = outstanding(root, name);
    assert!(left.is_empty(), "ledger: {left:?}");
    assert!(
        entries(&root.join("state/work")).is_empty(),
        "work directories left: {:?}",
        entries(&root.join("state/work"))
    );
    assert!(
        entries(&root.join("state/vms")).is_empty(),
        "VM directories left: {:?}",
        entries(&root.join("state/vms"))
    );
    let partial: Vec<String> = entries(&root.join("public_builds"))
        .into_iter()
        .filter(|f| f.ends_with(".part") || f.contains(".link-"))
        .collect();
    assert!(partial.is_empty(), "half-written files: {partial:?}");
}

/// The Debian test image uploaded to the local Glance as a private image
/// (tracked by `images` for deletion); returns its name and id.
pub async fn source_image(images: &mut ImageCleanup) -> (String, String) {
    let name = unique("ipt-ib-src");
    let _lock = cloud_lock().await;
    let id = images.upload_test_image(&name).await;
    (name, id)
}

/// Whether Glance still has image `id`.
pub async fn image_exists(glance: &GlanceClient, id: &str) -> bool {
    match glance.get_image(id).await {
        Ok(_) => true,
        Err(e) if e.is_not_found() => false,
        Err(e) => panic!("reading image {id}: {e}"),
    }
}

/// A template directory `root/<name>` with `template`.
pub fn template_dir(root: &Path, name: &str, template: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("template"), template).unwrap();
    dir
}

/// A tiny HTTP/1.1 server on 127.0.0.1 streaming `files` (URL path ->
/// file); returns its port.
pub fn serve_files(files: Vec<(String, PathBuf)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
            match files.iter().find(|(p, _)| *p == path) {
                None => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
                Some((_, file)) => {
                    let mut f = std::fs::File::open(file).unwrap();
                    let len = f.metadata().unwrap().len();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = std::io::copy(&mut f, &mut stream);
                }
            }
            let _ = stream.flush();
        }
    });
    port
}
