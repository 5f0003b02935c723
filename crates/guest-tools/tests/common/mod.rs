//! Shared helpers of the guest-tools integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A TCG session on writable drives given as (path, format), in order.
pub async fn open_tcg(
    drives: &[(&Path, &str)],
    progress: Option<guest_tools::ProgressSender>,
) -> guest_tools::Session {
    let drives = drives
        .iter()
        .map(|(path, format)| guest_tools::Drive {
            path: path.to_path_buf(),
            format: Some(format.to_string()),
            readonly: false,
        })
        .collect();
    guest_tools::Session::open(
        guest_tools::SessionOptions {
            drives,
            accel: guest_tools::Accel::Tcg,
        },
        progress,
    )
    .await
    .unwrap()
}

/// The progress events received so far.
pub fn received(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<guest_tools::Progress>,
) -> Vec<guest_tools::Progress> {
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    events
}

/// A sparse raw file of `bytes` at `path`, partitioned by the sfdisk `script`.
pub fn sfdisk_raw(path: &Path, bytes: u64, script: &str) {
    use std::io::Write;
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
    let mut sf = Command::new("sfdisk")
        .arg("-q")
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    sf.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(sf.wait().unwrap().success(), "sfdisk {}", path.display());
}

/// A qcow2 overlay on `base` in `dir`, so tests never change the cached image.
pub fn overlay(base: &Path, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    p
}

/// Bytes allocated on the host for `path` (st_blocks × 512).
pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// The fodder list: (operation, path, check).
pub fn fodder() -> Vec<(String, String, String)> {
    let f =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/guest-tools/sysprep-fodder.txt");
    std::fs::read_to_string(f)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut it = l.split_whitespace();
            let op = it.next().unwrap().to_string();
            let path = it.next().unwrap().to_string();
            let check = it.next().unwrap_or("gone").to_string();
            (op, path, check)
        })
        .collect()
}

/// Boot `disk` under QEMU TCG (snapshot mode, nothing written) and wait up to
/// `timeout` for a login prompt on the serial console. Returns the serial
/// output; panics with its tail when no prompt appears.
pub fn boot_to_login(disk: &Path, timeout: Duration) -> String {
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-nographic",
            "-snapshot",
            "-nic",
            "none",
            "-no-reboot",
        ])
        .arg("-drive")
        .arg(format!("file={},format=qcow2", disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qemu-system-x86_64");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut serial = String::new();
    let mut found = false;
    while start.elapsed() < timeout {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(chunk) => {
                serial.push_str(&String::from_utf8_lossy(&chunk));
                if serial.contains(" login:") {
                    found = true;
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let tail: String = serial
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        found,
        "no login prompt on the serial console within {timeout:?}; last output:\n{tail}"
    );
    serial
}
