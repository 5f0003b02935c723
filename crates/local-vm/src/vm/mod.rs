//! [`LocalVm`]: one QEMU virtual machine on an overlay of a base image.

mod qemu;
mod spec;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use guest_tools::{ImageInfo, OutputFormat};

use crate::error::{io, Error, Result};
use crate::inject::inject_key;
use crate::ledger::{remove_dir, Ledger, LedgerRecord, WeakLedger};
use crate::process::{lock, SharedProc};
use crate::qmp::QmpClient;

use qemu::log_tail;
use qemu::{free_port, read_banner, start_qemu, StartError};
pub use spec::{credential_smbios, key_tmpfiles, BootSpec, GuestForward, KeyInjection, NBD_EXPORT};

/// How often [`LocalVm::wait_active`] starts a new SSH banner probe.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How many banner probes may wait at once (each gives up after 5 s),
/// below sshd's default `MaxStartups` (10) unauthenticated connections.
const MAX_PROBES: usize = 8;

/// The emulator started for every VM.
pub const QEMU: &str = "qemu-system-x86_64";

/// How long one QMP exchange may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long QEMU may take to create its QMP socket after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `quit` may take before the process is killed.
const QUIT_GRACE: Duration = Duration::from_secs(10);
/// Attempts at finding a free forwarded port (another process may take the
/// port between our probe and QEMU's bind).
const PORT_ATTEMPTS: usize = 3;
/// Lines of the serial console quoted in errors.
const TAIL_LINES: usize = 30;
/// Longest path of a unix socket (`sun_path` less the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How [`LocalVm::shutdown`] ended the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The process had already exited.
    AlreadyStopped,
    /// The guest powered off after the ACPI power button (`system_powerdown`).
    PoweredOff,
    /// The guest did not power off in time; QEMU quit on QMP `quit`.
    Quit,
    /// QEMU had to be killed.
    Killed,
}

/// A local QEMU VM. Kills its process on drop if still running; call
/// [`LocalVm::delete`] to remove its files (or [`Ledger::cleanup`]).
#[derive(Debug)]
pub struct LocalVm {
    name: String,
    dir: PathBuf,
    overlay: PathBuf,
    serial_log: PathBuf,
    qmp_socket: PathBuf,
    qemu_log: PathBuf,
    host: Ipv4Addr,
    port: u16,
    pid: u32,
    proc: SharedProc,
    ledger: WeakLedger,
    deleted: bool,
    /// The NBD socket, when booted with [`BootSpec::export_disk`].
    nbd_socket: Option<PathBuf>,
}

/// Removes a half-made VM directory unless disarmed (also when the boot
/// future is dropped part-way).
struct DirGuard(Option<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = remove_dir(&d);
        }
    }
}

impl LocalVm {
    /// Boot a VM: overlay on the base image in `<work_dir>/<name>/`, the SSH
    /// key injected (one libguestfs launch), then QEMU started with the guest's
    /// port 22 forwarded to a free loopback port, the serial console in
    /// `serial.log`, a QMP socket and `-no-reboot`. Returns once QEMU runs
    /// (not once the guest is up: see [`LocalVm::wait_active`]). On error
    /// (or when this future is dropped part-way) the VM's directory is removed
    /// and no QEMU process is left; `work_dir` itself is kept.
    #[tracing::instrument(skip_all, fields(vm = %spec.name, base = %spec.base_image.display()))]
    pub async fn boot(spec: BootSpec, ledger: &Ledger) -> Result<LocalVm> {
        spec.check()?;
        let name = spec.name.clone();
        let meta = std::fs::metadata(&spec.base_image).map_err(|e| Error::BaseImage {
            name: name.clone(),
            source: if e.kind() == std::io::ErrorKind::NotFound {
                guest_tools::Error::MissingFile {
                    path: spec.base_image.clone(),
                }
            } else {
                guest_tools::Error::Io {
                    path: spec.base_image.clone(),
                    source: e,
                }
            },
        })?;
        if !meta.is_file() {
            return Err(Error::BaseImage {
                name,
                source: guest_tools::Error::NotADisk {
                    path: spec.base_image.clone(),
                    reason: "not a regular file".into(),
                },
            });
        }
        let base = guest_tools::info(&spec.base_image).map_err(|source| Error::BaseImage {
            name: name.clone(),
            source,
        })?;

        std::fs::create_dir_all(&spec.work_dir).map_err(io(&spec.work_dir))?;
        let work_dir = std::fs::canonicalize(&spec.work_dir).map_err(io(&spec.work_dir))?;
        let dir = work_dir.join(&name);
        let qmp_socket = dir.join("qmp.sock");
        if qmp_socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::InvalidSpec {
                name,
                field: "work_dir",
                reason: format!(
                    "{} is longer than the {MAX_SOCKET_PATH} bytes a unix socket path may have",
                    qmp_socket.display()
                ),
            });
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists { name, path: dir })
            }
            Err(e) => return Err(io(&dir)(e)),
        }
        let mut guard = DirGuard(Some(dir.clone()));

        let overlay = dir.join("disk.qcow2");
        guest_tools::create_overlay(&base, &overlay).map_err(|source| Error::GuestTools {
            name: name.clone(),
            op: "create the overlay",
            source,
        })?;
        if let Some((user, key)) = &spec.authorized_key {
            match spec.key_injection {
                KeyInjection::Guestfs => inject_key(&name, &overlay, user, key, spec.accel).await?,
                KeyInjection::SystemdCredential => {
                    tracing::debug!(user, "the key goes in as a systemd credential")
                }
            }
        }

        let accel = spec.accel;
        let kvm = tokio::task::spawn_blocking(move || accel.use_kvm())
            .await
            .unwrap_or(false);
        let serial_log = dir.join("serial.log");
        let qemu_log = dir.join("qemu.log");
        let mut last_err = None;
        let attempts = if spec.host_addr.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        for _ in 0..attempts {
            let (host, port, forwards) = match spec.host_addr {
                None => {
                    let port = free_port().map_err(io("127.0.0.1:0"))?;
                    (Ipv4Addr::LOCALHOST, port, vec![(port, 22)])
                }
                Some(addr) => {
                    let mut ports = vec![22];
                    for p in &spec.forward_ports {
                        if !ports.contains(p) {
                            ports.push(*p);
                        }
                    }
                    (addr, 22, ports.into_iter().map(|p| (p, p)).collect())
                }
            };
            match start_qemu(
                &spec,
                kvm,
                &overlay,
                &serial_log,
                &qmp_socket,
                &qemu_log,
                host,
                &forwards,
            )
            .await
            {
                Ok(proc) => {
                    let pid = lock(&proc).pid();
                    let nbd_socket = dir.join("nbd.sock");
                    if spec.export_disk {
                        if let Err(e) = export_disk(&qmp_socket, &nbd_socket).await {
                            lock(&proc).kill();
                            return Err(Error::Qemu {
                                name,
                                what: "could not export its disk over NBD".into(),
                                detail: e.to_string(),
                            });
                        }
                    }
                    ledger.record(
                        LedgerRecord {
                            name: name.clone(),
                            pid,
                            dir: dir.clone(),
                            files: vec![
                                overlay.clone(),
                                serial_log.clone(),
                                qmp_socket.clone(),
                                qemu_log.clone(),
                            ],
                        },
                        proc.clone(),
                    );
                    guard.0 = None;
                    tracing::info!(pid, port, kvm, "VM started");
                    return Ok(LocalVm {
                        name,
                        dir,
                        overlay,
                        serial_log,
                        qmp_socket,
                        qemu_log,
                        host,
                        port,
                        pid,
                        proc,
                        ledger: ledger.downgrade(),
                        deleted: false,
                        nbd_socket: spec.export_disk.then_some(nbd_socket),
                    });
                }
                Err(StartError::PortTaken(detail)) => {
                    tracing::warn!(port, "forwarded port taken, retrying: {detail}");
                    last_err = Some(detail);
                }
                Err(StartError::Failed { what, detail }) => {
                    return Err(Error::Qemu { name, what, detail })
                }
            }
        }
        Err(Error::Qemu {
            name,
            what: format!("found no free forwarded port in {PORT_ATTEMPTS} attempts"),
            detail: last_err.unwrap_or_default(),
        })
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the guest's SSH server is reachable: `("127.0.0.1", port)`, or
    /// `(host_addr, 22)` when the spec gave the VM an address of its own.
    pub fn ssh_endpoint(&self) -> (String, u16) {
        (self.host.to_string(), self.port)
    }

    /// The host address the guest's ports are forwarded from.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host
    }

    /// The serial console log.
    pub fn serial_log(&self) -> &Path {
        &self.serial_log
    }

    /// The VM's qcow2 overlay (backed by the base image).
    pub fn overlay(&self) -> &Path {
        &self.overlay
    }

    /// The VM's directory (overlay, logs, QMP socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Is the QEMU process still running?
    pub fn is_running(&self) -> bool {
        lock(&self.proc).status().is_none()
    }

    /// The NBD server's unix socket and export name of a VM booted with
    /// [`BootSpec::export_disk`] (serving until the VM is deleted), else `None`.
    pub fn nbd_export(&self) -> Option<(PathBuf, &'static str)> {
        self.nbd_socket.clone().map(|s| (s, NBD_EXPORT))
    }

    /// Has the guest stopped? The process exited, or (with `-no-shutdown`,
    /// [`BootSpec::export_disk`]) QMP reports the status `shutdown`.
    async fn guest_stopped(&self) -> bool {
        if !self.is_running() {
            return true;
        }
        if self.nbd_socket.is_none() {
            return false;
        }
        let status = async {
            let mut q = QmpClient::connect(&self.qmp_socket, QMP_TIMEOUT).await?;
            q.execute("query-status").await
        };
        match status.await {
            Ok(v) => v.get("status").and_then(|s| s.as_str()) == Some("shutdown"),
            Err(_) => !self.is_running(),
        }
    }

    /// Wait until the guest's SSH server answers on the forwarded port with
    /// an SSH-2 banner (returned). Fails when QEMU exits first
    /// ([`Error::DiedDuringBoot`]) or after `timeout` ([`Error::NotActive`]),
    /// both with the tail of the serial console.
    ///
    /// QEMU's user network accepts a connection to a forwarded port at once
    /// and only then tries the guest, so before the guest's network is up a
    /// probe hangs until its own deadline (5 s). One probe at a time saw the
    /// banner up to 6 s late; a new probe starts every [`PROBE_EVERY`] (at
    /// most [`MAX_PROBES`] waiting), the first banner wins and the others
    /// are dropped (their connections closed).
    #[tracing::instrument(skip_all, fields(vm = %self.name, port = self.port))]
    pub async fn wait_active(&self, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        let mut probes = tokio::task::JoinSet::new();
        let mut next_probe = start;
        loop {
            if let Some(st) = lock(&self.proc).status() {
                return Err(Error::DiedDuringBoot {
                    name: self.name.clone(),
                    status: st.to_string(),
                    serial_tail: log_tail(&self.serial_log),
                });
            }
            if start.elapsed() >= timeout {
                return Err(Error::NotActive {
                    name: self.name.clone(),
                    port: self.port,
                    timeout,
                    serial_tail: log_tail(&self.serial_log),
                });
            }
            if Instant::now() >= next_probe && probes.len() < MAX_PROBES {
                probes.spawn(read_banner(self.host, self.port));
                next_probe = Instant::now() + PROBE_EVERY;
            }
            let pause = next_probe
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(50));
            tokio::select! {
                Some(done) = probes.join_next(), if !probes.is_empty() => {
                    if let Ok(Some(banner)) = done {
                        tracing::info!(elapsed_s = start.elapsed().as_secs(), %banner, "VM active");
                        return Ok(banner);
                    }
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Power the VM off: ACPI power button over QMP and wait up to `timeout`
    /// for QEMU to exit (`-no-reboot` makes it exit at power-off); then QMP
    /// `quit`; then SIGKILL. The process is always gone when this returns Ok.
    #[tracing::instrument(skip_all, fields(vm = %self.name))]
    pub async fn shutdown(&self, timeout: Duration) -> Result<ShutdownOutcome> {
        if !self.is_running() {
            return Ok(ShutdownOutcome::AlreadyStopped);
        }
        match self.powerdown().await {
            Ok(()) => {
                if self.wait_stopped(timeout).await {
                    tracing::info!(qemu_stays = self.is_running(), "guest powered off");
                    return Ok(ShutdownOutcome::PoweredOff);
                }
                tracing::warn!(?timeout, "guest did not power off in time: QMP quit");
            }
            Err(e) => tracing::warn!("ACPI power-off failed: {e}"),
        }
        if !self.is_running() {
            return Ok(ShutdownOutcome::PoweredOff);
        }
        let quit = async {
            let mut q = QmpClient::connect(&self.qmp_socket, QMP_TIMEOUT).await?;
            q.quit().await
        };
        match quit.await {
            Ok(()) if self.wait_exit(QUIT_GRACE).await => return Ok(ShutdownOutcome::Quit),
            Ok(()) => tracing::warn!("QEMU still running after quit: killing"),
            Err(e) => tracing::warn!("QMP quit failed ({e}): killing"),
        }
        if lock(&self.proc).kill().is_none() {
            return Err(Error::Qemu {
                name: self.name.clone(),
                what: format!("pid {} could not be killed", self.pid),
                detail: log_tail(&self.qemu_log),
            });
        }
        Ok(ShutdownOutcome::Killed)
    }

    async fn powerdown(&self) -> Result<()> {
        let mut q = QmpClient::connect(&self.qmp_socket, QMP_TIMEOUT).await?;
        q.execute("system_powerdown").await?;
        Ok(())
    }

    /// Poll until the guest stopped (see [`LocalVm::guest_stopped`]) or
    /// `timeout` passed; `true` if it stopped.
    async fn wait_stopped(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.guest_stopped().await {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Poll until the process exited or `timeout` passed; `true` if it exited.
    async fn wait_exit(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if !self.is_running() {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Convert the stopped VM's disk into a standalone image at `dest` (no
    /// backing file; written as `<dest>.part` and renamed): the local
    /// equivalent of Nova's `createImage`. Refused while QEMU runs.
    #[tracing::instrument(skip_all, fields(vm = %self.name, dest = %dest.display()))]
    pub async fn snapshot(&self, dest: &Path, format: OutputFormat) -> Result<ImageInfo> {
        if self.deleted {
            return Err(Error::Deleted {
                name: self.name.clone(),
                op: "snapshot",
            });
        }
        if self.is_running() {
            return Err(Error::Running {
                name: self.name.clone(),
                op: "snapshot",
            });
        }
        let (src, dst) = (self.overlay.clone(), dest.to_path_buf());
        let name = self.name.clone();
        let gt = move |source| Error::GuestTools {
            name,
            op: "snapshot",
            source,
        };
        let info = tokio::task::spawn_blocking(move || {
            guest_tools::convert(&src, &dst, format, None)?;
            guest_tools::info(&dst)
        })
        .await
        .map_err(|e| Error::Qemu {
            name: self.name.clone(),
            what: "snapshot task".into(),
            detail: e.to_string(),
        })?
        .map_err(gt)?;
        tracing::info!(bytes = info.actual_size, "snapshot written");
        Ok(info)
    }

    /// Keep the VM running after this handle and its ledger are gone (for
    /// debugging a failed test): QEMU is no longer killed on drop nor by
    /// [`Ledger::cleanup`], and its directory stays. Whoever keeps it must
    /// record it elsewhere (its directory and pid) to remove it later.
    /// Returns QEMU's pid.
    pub fn keep_running(self) -> u32 {
        lock(&self.proc).detach();
        self.ledger.forget(&self.name);
        tracing::info!(pid = self.pid, dir = %self.dir.display(), "VM kept running");
        self.pid
    }

    /// Kill QEMU if it still runs and remove the VM's directory (overlay,
    /// logs, socket); forget it in the ledger. Idempotent.
    #[tracing::instrument(skip_all, fields(vm = %self.name))]
    pub fn delete(&mut self) -> Result<()> {
        lock(&self.proc).kill();
        remove_dir(&self.dir)?;
        self.ledger.forget(&self.name);
        if !self.deleted {
            tracing::info!("VM deleted");
        }
        self.deleted = true;
        Ok(())
    }
}

impl Drop for LocalVm {
    fn drop(&mut self) {
        let mut proc = lock(&self.proc);
        if !proc.is_detached() {
            if !self.deleted && proc.status().is_none() {
                tracing::warn!(vm = %self.name, pid = self.pid, "VM handle dropped while QEMU runs: killing it");
            }
            proc.kill();
        }
    }
}

/// Start QEMU's NBD server on `nbd_socket` and export the VM's disk
/// read-only as [`NBD_EXPORT`].
async fn export_disk(qmp_socket: &Path, nbd_socket: &Path) -> Result<()> {
    let mut q = QmpClient::connect(qmp_socket, QMP_TIMEOUT).await?;
    q.execute_with(
        "nbd-server-start",
        serde_json::json!({
            "addr": { "type": "unix", "data": { "path": nbd_socket.to_string_lossy() } }
        }),
    )
    .await?;
    q.execute_with(
        "block-export-add",
        serde_json::json!({
            "type": "nbd", "id": NBD_EXPORT, "node-name": NBD_EXPORT,
            "name": NBD_EXPORT, "writable": false
        }),
    )
    .await?;
    tracing::debug!(socket = %nbd_socket.display(), "disk exported over NBD");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::qemu::{is_ssh2_banner, netdev, qemu_escape};
    use super::*;
    use guest_tools::Accel;

    fn spec(name: &str) -> BootSpec {
        BootSpec {
            name: name.into(),
            base_image: "/nonexistent/base.qcow2".into(),
            work_dir: "/nonexistent".into(),
            memory_mib: 512,
            cpus: 1,
            host_addr: None,
            forward_ports: Vec::new(),
            key_injection: KeyInjection::Guestfs,
            guest_forwards: Vec::new(),
            export_disk: false,
            accel: Accel::Tcg,
            authorized_key: None,
        }
    }

    #[test]
    fn names_and_sizes_are_checked() {
        assert!(spec("vm-1_a.b").check().is_ok());
        for bad in ["", ".x", "-x", "a/b", "a b", "ä", &"x".repeat(65)] {
            let e = spec(bad).check().unwrap_err();
            assert!(matches!(e, Error::InvalidName { .. }), "{bad}: {e}");
        }
        let mut s = spec("vm");
        s.memory_mib = 64;
        assert!(s.check().unwrap_err().to_string().contains("memory_mib"));
        let mut s = spec("vm");
        s.cpus = 0;
        assert!(s.check().unwrap_err().to_string().contains("cpus"));
        let mut s = spec("vm");
        s.authorized_key = Some(("debian".into(), "not a key".into()));
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("authorized_key") && e.contains("vm"), "{e}");
    }

    #[test]
    fn forwarded_ports_need_a_loopback_address() {
        let mut s = spec("vm");
        s.forward_ports = vec![80];
        assert!(s.check().is_err(), "ports without an address");
        s.host_addr = Some(Ipv4Addr::new(10, 0, 0, 5));
        assert!(s.check().unwrap_err().to_string().contains("loopback"));
        s.host_addr = Some(Ipv4Addr::new(127, 45, 3, 9));
        s.check().unwrap();
        s.forward_ports = vec![0];
        assert!(s.check().is_err());
        assert_eq!(
            netdev(Ipv4Addr::new(127, 45, 3, 9), &[(22, 22), (8080, 8080)], &[]),
            "user,id=net0,hostfwd=tcp:127.45.3.9:22-:22,hostfwd=tcp:127.45.3.9:8080-:8080"
        );
        assert_eq!(
            netdev(Ipv4Addr::LOCALHOST, &[(40022, 22)], &[]),
            "user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22"
        );
        let peer = GuestForward {
            guest_addr: Ipv4Addr::new(10, 0, 2, 100),
            port: 22,
            host: std::net::SocketAddrV4::new(Ipv4Addr::new(127, 45, 3, 9), 22),
        };
        assert_eq!(
            netdev(Ipv4Addr::LOCALHOST, &[(40022, 22)], &[peer]),
            "user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,guestfwd=tcp:10.0.2.100:22-tcp:127.45.3.9:22"
        );
        let mut s = spec("vm");
        s.guest_forwards = vec![peer];
        s.check().unwrap();
        s.guest_forwards[0].guest_addr = Ipv4Addr::new(10, 0, 2, 2);
        assert!(s.check().unwrap_err().to_string().contains("10.0.2.0/24"));
        s.guest_forwards[0].guest_addr = Ipv4Addr::new(192, 168, 1, 5);
        assert!(s.check().is_err());
        s.guest_forwards[0] = GuestForward {
            host: std::net::SocketAddrV4::new(Ipv4Addr::new(10, 1, 1, 1), 22),
            ..peer
        };
        assert!(s.check().unwrap_err().to_string().contains("loopback"));
    }

    #[test]
    fn banners_and_escapes() {
        assert!(is_ssh2_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"));
        assert!(is_ssh2_banner(b"SSH-1.99-Old"));
        assert!(!is_ssh2_banner(b"SSH-1.5-Old"));
        assert!(!is_ssh2_banner(b""));
        assert!(!is_ssh2_banner(b"HTTP/1.1 400"));
        assert_eq!(qemu_escape(Path::new("/a,b/c")), "/a,,b/c");
    }

    #[test]
    fn log_tail_keeps_the_last_clean_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("serial.log");
        assert_eq!(log_tail(&p), "<empty>");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("\x1b[0mline {i}\r\n"));
        }
        std::fs::write(&p, text).unwrap();
        let tail = log_tail(&p);
        let lines: Vec<&str> = tail.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "[0mline 70");
        assert_eq!(*lines.last().unwrap(), "[0mline 99");
    }

    #[tokio::test]
    async fn a_missing_base_image_is_named_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec("vm");
        s.work_dir = dir.path().join("work");
        s.base_image = dir.path().join("missing.qcow2");
        let ledger = Ledger::new();
        let e = LocalVm::boot(s, &ledger).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, Error::BaseImage { .. }) && msg.contains("missing.qcow2"),
            "{msg}"
        );
        assert!(!dir.path().join("work").exists());
        assert!(ledger.records().is_empty());
    }

    #[test]
    fn key_credential_lines() {
        let t = key_tmpfiles("debian", "ssh-ed25519 AAAA c\n");
        assert_eq!(
            t,
            "d /home/debian/.ssh 0700 debian - -\n\
             f /home/debian/.ssh/authorized_keys 0600 debian - -\n\
             w+ /home/debian/.ssh/authorized_keys - - - - ssh-ed25519 AAAA c\\n\n"
        );
        assert!(key_tmpfiles("root", "k").starts_with("d /root/.ssh "));
        let v = credential_smbios("x,y");
        assert_eq!(
            v,
            "type=11,value=io.systemd.credential.binary:tmpfiles.extra=eCx5"
        );
    }
}
