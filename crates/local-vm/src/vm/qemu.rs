//! Starting the QEMU process: its command line (user-mode network, escaped
//! paths, the key credential), waiting for the QMP socket, and reading logs
//! and the guest's SSH banner.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::{
    credential_smbios, key_tmpfiles, BootSpec, GuestForward, KeyInjection, QEMU, START_TIMEOUT,
    TAIL_LINES,
};
use crate::process::{lock, shared, SharedProc};

/// Last [`TAIL_LINES`] lines of a log, control characters (terminal escapes) dropped.
pub(crate) fn log_tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(16 * 1024);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let lines: Vec<&str> = clean
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let from = lines.len().saturating_sub(TAIL_LINES);
    if lines.is_empty() {
        "<empty>".into()
    } else {
        lines[from..].join("\n")
    }
}

/// A loopback port nobody listens on right now.
pub(super) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Does `b` start like an SSH-2 server identification?
pub(crate) fn is_ssh2_banner(b: &[u8]) -> bool {
    b.starts_with(b"SSH-2.0-") || b.starts_with(b"SSH-1.99-")
}

/// Connect to the forwarded port and read the server's identification line.
pub(super) async fn read_banner(host: Ipv4Addr, port: u16) -> Option<String> {
    let connect = tokio::net::TcpStream::connect((host, port));
    let mut s = tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; 256];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while got < buf.len() && !buf[..got].contains(&b'\n') {
        let left = deadline.checked_duration_since(Instant::now())?;
        let n = tokio::time::timeout(left, s.read(&mut buf[got..]))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        got += n;
    }
    is_ssh2_banner(&buf[..got]).then(|| {
        String::from_utf8_lossy(&buf[..got])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

/// The user-mode `-netdev` value forwarding `host:from` to guest port `to`
/// for every `(from, to)`.
pub(super) fn netdev(host: Ipv4Addr, forwards: &[(u16, u16)], guest: &[GuestForward]) -> String {
    let mut s = String::from("user,id=net0");
    for (from, to) in forwards {
        s.push_str(&format!(",hostfwd=tcp:{host}:{from}-:{to}"));
    }
    for g in guest {
        s.push_str(&format!(
            ",guestfwd=tcp:{}:{}-tcp:{}",
            g.guest_addr, g.port, g.host
        ));
    }
    s
}

/// `value` as a QEMU option value: commas are doubled.
pub(super) fn qemu_escape(value: &Path) -> String {
    value.to_string_lossy().replace(',', ",,")
}

pub(super) enum StartError {
    /// The forwarded port was taken between the probe and QEMU's bind.
    PortTaken(String),
    Failed {
        what: String,
        detail: String,
    },
}

/// Start QEMU and wait until its QMP socket exists.
#[allow(clippy::too_many_arguments)]
pub(super) async fn start_qemu(
    spec: &BootSpec,
    kvm: bool,
    overlay: &Path,
    serial_log: &Path,
    qmp_socket: &Path,
    qemu_log: &Path,
    host: Ipv4Addr,
    forwards: &[(u16, u16)],
) -> std::result::Result<SharedProc, StartError> {
    let failed = |what: &str, detail: String| StartError::Failed {
        what: what.to_string(),
        detail,
    };
    let stderr = std::fs::File::create(qemu_log)
        .map_err(|e| failed("log file", format!("{}: {e}", qemu_log.display())))?;
    let _ = std::fs::remove_file(qmp_socket);
    let mut cmd = Command::new(QEMU);
    cmd.arg("-name").arg(&spec.name);
    if kvm {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg"]);
    }
    cmd.args([
        "-machine",
        "pc",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-m")
    .arg(spec.memory_mib.to_string())
    .arg("-smp")
    .arg(spec.cpus.to_string())
    .arg("-drive")
    .arg(format!(
        "file={},format=qcow2,if=virtio,discard=unmap{}",
        qemu_escape(overlay),
        if spec.export_disk {
            format!(",node-name={}", super::spec::NBD_EXPORT)
        } else {
            String::new()
        }
    ))
    .arg("-netdev")
    .arg(netdev(host, forwards, &spec.guest_forwards))
    // Slot 3, the slot the default NIC has: Debian names it ens3.
    .args(["-device", "virtio-net-pci,netdev=net0,addr=0x3"])
    .arg("-serial")
    .arg(format!("file:{}", qemu_escape(serial_log)))
    .arg("-qmp")
    .arg(format!(
        "unix:{},server=on,wait=off",
        qemu_escape(qmp_socket)
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(stderr);
    if spec.export_disk {
        // The guest's power-off stops it; QEMU stays to serve the export.
        cmd.arg("-no-shutdown");
    }
    if let (Some((user, key)), KeyInjection::SystemdCredential) =
        (&spec.authorized_key, spec.key_injection)
    {
        cmd.arg("-smbios")
            .arg(credential_smbios(&key_tmpfiles(user, key)));
    }
    tracing::debug!(?cmd, "starting qemu");
    let child = cmd
        .spawn()
        .map_err(|e| failed("not started", e.to_string()))?;
    let proc = shared(child);
    let start = Instant::now();
    loop {
        let status = lock(&proc).status();
        if let Some(st) = status {
            let detail = log_tail(qemu_log);
            if detail.contains("hostfwd") || detail.contains("forwarding rule") {
                return Err(StartError::PortTaken(detail));
            }
            return Err(failed(&format!("exited at start ({st})"), detail));
        }
        if qmp_socket.exists() {
            return Ok(proc);
        }
        if start.elapsed() >= START_TIMEOUT {
            lock(&proc).kill();
            return Err(failed(
                &format!("created no QMP socket within {START_TIMEOUT:?}"),
                log_tail(qemu_log),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
