//! The local compute backend: VMs are QEMU processes (`local-vm`), images
//! still come from and go to Glance.
//!
//! - The base image is downloaded from Glance (hash-verified) once and kept
//!   in a cache keyed by its checksum (`<cache>/base/<hash>.qcow2`); each VM
//!   boots on a qcow2 overlay of it, with the run's key injected for the
//!   login user (the stand-in for a Nova keypair).
//! - Each VM gets a loopback address of its own, `127.x.y.z`, derived from a
//!   hash of its name and checked free, and QEMU user-mode networking
//!   forwards `127.x.y.z:P` to the guest's port `P` for 22 and every port of
//!   [`VmSpec::tcp_ports`] (with [`AccessProfile::AllOpen`] also
//!   [`ALLOPEN_DEFAULT_PORTS`]). So `ssh user@$IP`, `scp` and `curl
//!   http://$IP/` of an unchanged `test.sh` reach the VM. Limits: only these
//!   TCP ports are forwarded; UDP and ICMP (`ping $IP`) do not reach the
//!   guest; forwarding ports below 1024 needs root (or
//!   `net.ipv4.ip_unprivileged_port_start`). Nothing leaves 127.0.0.0/8.
//! - A tester VM (`TEST_USING_VM`) reaches the tested VM at
//!   [`PEER_GUEST_ADDR`] (10.0.2.100 inside the tester's own user-mode
//!   network, not on the host): QEMU `guestfwd` connects each of the tested
//!   VM's forwarded ports to its loopback address.
//! - The snapshot is the flattened overlay; KVM is used when the probe works.
//!
//! Every VM (its directory) and every file being written is recorded in the
//! run's ledger first; [`LocalBackend::release`] kills the QEMU process that
//! uses a recorded VM directory and removes it, even from another process.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use guest_tools::{Accel, OutputFormat};
use openstack_client::glance::GlanceClient;
use sha2::{Digest, Sha256};

use super::{AccessProfile, ComputeBackend, VmAddress, VmHandle, VmSpec};
use crate::error::{Error, Result};
use crate::ledger::{LedgerKey, ResourceKind, ResourceLedger, ResourceRecord};

/// Guest ports forwarded for [`AccessProfile::AllOpen`] besides 22 and the
/// spec's own ports (user-mode networking cannot forward "every port").
pub const ALLOPEN_DEFAULT_PORTS: &[u16] = &[80, 443, 8080];

/// Where a tester VM (`TEST_USING_VM`) reaches the tested local VM: an
/// address inside the tester's own QEMU user-mode network, never on the host.
pub const PEER_GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);

/// Backend name in ledger records.
pub const LOCAL: &str = "local";

/// Settings of the local backend.
#[derive(Debug, Clone)]
pub struct LocalBackendOptions {
    /// Where VM directories are created (overlays, logs, sockets).
    pub work_dir: PathBuf,
    /// Base image cache (`<cache_dir>/base/<checksum>.qcow2`).
    pub cache_dir: PathBuf,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs (default [`default_cpus`]).
    pub cpus: u32,
    /// Accelerator (`Auto`: KVM only when the probe works).
    pub accel: Accel,
    /// How VMs get the run's SSH key (libguestfs by default; a systemd
    /// credential for bases whose systemd reads them: no appliance launch).
    pub key_injection: local_vm::KeyInjection,
}

impl LocalBackendOptions {
    /// The defaults: VMs under `work_dir`, the cache under
    /// `~/.cache/openstack-image-tools/ge-image`, 1 GiB, [`default_cpus`], `Auto`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        LocalBackendOptions {
            work_dir: work_dir.into(),
            cache_dir: default_cache_dir(),
            memory_mib: 1024,
            cpus: default_cpus(),
            accel: Accel::Auto,
            key_injection: local_vm::KeyInjection::Guestfs,
        }
    }
}

/// The most virtual CPUs [`default_cpus`] gives a VM.
pub const MAX_DEFAULT_CPUS: u32 = 4;

/// Virtual CPUs of a local VM unless told otherwise: the host's CPUs, at
/// most [`MAX_DEFAULT_CPUS`]. Under TCG each vCPU is a host thread (QEMU's
/// multi-threaded TCG), and a Debian guest boots, runs `create.sh` and
/// powers off in parallel: on this project's 2-core machine a second vCPU
/// takes ~25 % off a build (docs/benchmarks.md, run 8). Callers that run
/// several VMs side by side (packuilon's gate workers) ask for 1.
pub fn default_cpus() -> u32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| u32::try_from(n.get()).ok())
        .unwrap_or(1)
        .clamp(1, MAX_DEFAULT_CPUS)
}

/// `~/.cache/openstack-image-tools/ge-image`.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("openstack-image-tools/ge-image")
}

/// QEMU VMs fed from (and snapshotted to files for) Glance.
#[derive(Debug)]
pub struct LocalBackend {
    glance: GlanceClient,
    options: LocalBackendOptions,
    vms: local_vm::Ledger,
}

/// A VM of the local backend.
#[derive(Debug)]
pub struct LocalVmHandle {
    vm: local_vm::LocalVm,
    id: String,
    key: LedgerKey,
    /// A private download of the booted image (not a cached base), removed with the VM.
    transient: Option<(PathBuf, LedgerKey)>,
}

impl VmHandle for LocalVmHandle {
    fn name(&self) -> &str {
        self.vm.name()
    }
    fn id(&self) -> &str {
        &self.id
    }
}

impl LocalVmHandle {
    /// The loopback address the guest's ports are forwarded from.
    pub fn address(&self) -> Ipv4Addr {
        self.vm.host_addr()
    }
    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.vm.pid()
    }
}

/// The ports forwarded for `spec`: its own, plus the defaults of `AllOpen`.
pub fn forwarded_ports(spec: &VmSpec) -> Vec<u16> {
    let mut ports: Vec<u16> = spec
        .tcp_ports
        .iter()
        .copied()
        .filter(|p| *p != 22)
        .collect();
    if spec.access == AccessProfile::AllOpen {
        ports.extend_from_slice(ALLOPEN_DEFAULT_PORTS);
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Is `name` a release candidate (`<name>_rc`), booted once and not cached?
pub fn is_candidate(name: &str) -> bool {
    name.ends_with("_rc")
}

/// The `attempt`-th candidate loopback address of VM `name`: 127.x.y.z from
/// a hash of the name, never 127.0.0.x nor an address ending in .0 or .255.
pub fn candidate_address(name: &str, attempt: u32) -> Ipv4Addr {
    let digest = Sha256::digest(format!("{name}#{attempt}").as_bytes());
    let x = digest[0].clamp(1, 254);
    let y = digest[1];
    let z = digest[2].clamp(1, 254);
    Ipv4Addr::new(127, x, y, z)
}

/// Can every `port` (and 22) be bound on `addr` right now?
fn address_free(addr: Ipv4Addr, ports: &[u16]) -> bool {
    std::iter::once(22)
        .chain(ports.iter().copied())
        .all(|p| TcpListener::bind((addr, p)).is_ok())
}

/// A free loopback address for VM `name`.
pub fn allocate_address(name: &str, ports: &[u16]) -> Result<Ipv4Addr> {
    for attempt in 0..32 {
        let addr = candidate_address(name, attempt);
        if address_free(addr, ports) {
            return Ok(addr);
        }
    }
    Err(Error::Pipeline(format!(
        "no free loopback address for VM {name}: port 22 or one of {ports:?} is taken on 32 candidates \
         (forwarding ports below 1024 needs root)"
    )))
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::LocalFile {
        action,
        path: path.display().to_string(),
        source,
    }
}

fn local_err<'a>(vm: &'a str, action: &'static str) -> impl FnOnce(local_vm::Error) -> Error + 'a {
    move |source| Error::LocalVm {
        vm: vm.to_string(),
        action,
        source: Box::new(source),
    }
}

impl LocalBackend {
    /// A backend reading base images from `glance`.
    pub fn new(glance: GlanceClient, options: LocalBackendOptions) -> Self {
        LocalBackend {
            glance,
            options,
            vms: local_vm::Ledger::new(),
        }
    }

    /// The local copy of Glance image `image_id`, downloaded (verified) into
    /// the cache unless a copy with the same checksum is already there.
    #[tracing::instrument(skip_all, fields(image = image_id))]
    pub async fn cached_base(&self, image_id: &str, ledger: &ResourceLedger) -> Result<PathBuf> {
        let image = self
            .glance
            .get_image(image_id)
            .await
            .map_err(Error::glance("reading", image_id))?;
        self.cached(&image, ledger).await
    }

    /// Boot `spec` with `guest_forwards` (empty but for a tester VM), on an
    /// overlay of `file` when given (no Glance read), else of the Glance
    /// image `spec.image_id`.
    #[tracing::instrument(skip_all, fields(vm = %spec.name))]
    async fn boot_with(
        &self,
        spec: &VmSpec,
        ledger: &ResourceLedger,
        guest_forwards: Vec<local_vm::GuestForward>,
        file: Option<&Path>,
        export_disk: bool,
    ) -> Result<LocalVmHandle> {
        std::fs::create_dir_all(&self.options.work_dir)
            .map_err(io_err("creating", &self.options.work_dir))?;
        let work_dir = std::fs::canonicalize(&self.options.work_dir)
            .map_err(io_err("resolving", &self.options.work_dir))?;
        let (base, transient) = match file {
            Some(f) => (f.to_path_buf(), None),
            None => self.glance_source(spec, &work_dir, ledger).await?,
        };
        let ports = forwarded_ports(spec);

        let addr = allocate_address(&spec.name, &ports)?;
        let dir = work_dir.join(&spec.name);
        let id = dir.display().to_string();
        let key = ledger.intent(ResourceKind::LocalVm, &id, LOCAL, None)?;
        let boot = local_vm::BootSpec {
            name: spec.name.clone(),
            base_image: base,
            work_dir,
            memory_mib: self.options.memory_mib,
            cpus: self.options.cpus,
            accel: self.options.accel,
            authorized_key: Some((spec.login_user.clone(), spec.public_key.clone())),
            host_addr: Some(addr),
            forward_ports: ports,
            key_injection: self.options.key_injection,
            guest_forwards,
            export_disk,
        };
        let vm = local_vm::LocalVm::boot(boot, &self.vms)
            .await
            .map_err(local_err(&spec.name, "boot"))?;
        ledger.created(key, &id)?;
        tracing::info!(%addr, pid = vm.pid(), "local VM booted");
        Ok(LocalVmHandle {
            vm,
            id,
            key,
            transient,
        })
    }

    /// The Glance image `spec.image_id` as a local file: a release candidate
    /// is downloaded beside the VM (booted once, removed with it: returned
    /// with its ledger key), any other image comes from the base cache.
    async fn glance_source(
        &self,
        spec: &VmSpec,
        work_dir: &Path,
        ledger: &ResourceLedger,
    ) -> Result<(PathBuf, Option<(PathBuf, LedgerKey)>)> {
        let image = self
            .glance
            .get_image(&spec.image_id)
            .await
            .map_err(Error::glance("reading", &spec.image_id))?;
        // Release candidates are booted once: downloaded beside the VM, not cached.
        Ok(if image.name.as_deref().is_some_and(is_candidate) {
            let path = work_dir.join(format!("{}.image.qcow2", spec.name));
            let k = ledger.intent(
                ResourceKind::File,
                &path.display().to_string(),
                "local-file",
                None,
            )?;
            self.glance
                .download_to_file(&image.id, &path)
                .await
                .map_err(Error::glance("downloading", &image.id))?;
            ledger.created(k, &path.display().to_string())?;
            (path.clone(), Some((path, k)))
        } else {
            (self.cached(&image, ledger).await?, None)
        })
    }

    async fn cached(
        &self,
        image: &openstack_client::glance::Image,
        ledger: &ResourceLedger,
    ) -> Result<PathBuf> {
        let image_id = image.id.as_str();
        let hash = image
            .os_hash_value
            .clone()
            .or(image.checksum.clone())
            .ok_or_else(|| {
                Error::Pipeline(format!(
                    "base image {image_id} has no checksum in Glance (no data uploaded?)"
                ))
            })?;
        let dir = self.options.cache_dir.join("base");
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let path = dir.join(format!("{hash}.qcow2"));
        if path.is_file() {
            tracing::info!(path = %path.display(), "base image cached");
            return Ok(path);
        }
        let part = dir.join(format!("{hash}.qcow2.part.{}", std::process::id()));
        let key = ledger.intent(
            ResourceKind::File,
            &part.display().to_string(),
            "local-file",
            None,
        )?;
        tracing::info!(path = %path.display(), "downloading the base image");
        self.glance
            .download_to_file(image_id, &part)
            .await
            .map_err(Error::glance("downloading", image_id))?;
        std::fs::rename(&part, &path).map_err(io_err("renaming", &part))?;
        ledger.released(key)?;
        Ok(path)
    }
}

#[async_trait::async_trait]
impl ComputeBackend for LocalBackend {
    type Vm = LocalVmHandle;

    fn name(&self) -> &'static str {
        LOCAL
    }

    async fn boot(&self, spec: &VmSpec, ledger: &ResourceLedger) -> Result<LocalVmHandle> {
        self.boot_with(spec, ledger, Vec::new(), None, false).await
    }

    /// QEMU serves the disk over NBD (`local-vm`'s `export_disk`) and stays
    /// after the guest's power-off until the VM is deleted.
    async fn boot_exporting_disk(
        &self,
        spec: &VmSpec,
        ledger: &ResourceLedger,
    ) -> Result<LocalVmHandle> {
        self.boot_with(spec, ledger, Vec::new(), None, true).await
    }

    fn live_disk(&self, vm: &LocalVmHandle) -> Option<guest_tools::LiveDisk> {
        let (socket, export) = vm.vm.nbd_export()?;
        Some(guest_tools::LiveDisk {
            path: vm.vm.overlay().to_path_buf(),
            socket,
            export: export.to_string(),
        })
    }

    /// The tester VM reaches the tested one at [`PEER_GUEST_ADDR`] inside its
    /// own user-mode network: each forwarded port of the tested VM (22 and
    /// the ports of its spec) is a `guestfwd` to the tested VM's loopback
    /// address. Nothing is added to the host's network.
    async fn boot_tester(
        &self,
        spec: &VmSpec,
        tested_spec: &VmSpec,
        tested: &VmAddress,
        ledger: &ResourceLedger,
    ) -> Result<(LocalVmHandle, IpAddr)> {
        let IpAddr::V4(host) = tested.ip else {
            return Err(Error::Pipeline(format!(
                "tested VM address {} is not IPv4",
                tested.ip
            )));
        };
        let forwards = std::iter::once(22)
            .chain(forwarded_ports(tested_spec))
            .map(|port| local_vm::GuestForward {
                guest_addr: PEER_GUEST_ADDR,
                port,
                host: std::net::SocketAddrV4::new(host, port),
            })
            .collect();
        let vm = self.boot_with(spec, ledger, forwards, None, false).await?;
        Ok((vm, IpAddr::V4(PEER_GUEST_ADDR)))
    }

    async fn wait_ready(&self, vm: &LocalVmHandle, timeout: Duration) -> Result<VmAddress> {
        vm.vm
            .wait_active(timeout)
            .await
            .map_err(local_err(vm.vm.name(), "waiting for SSH"))?;
        let (host, port) = vm.vm.ssh_endpoint();
        Ok(VmAddress {
            ip: IpAddr::V4(vm.vm.host_addr()),
            ssh_host: host,
            ssh_port: port,
        })
    }

    async fn power_off(&self, vm: &LocalVmHandle, timeout: Duration) -> Result<()> {
        let outcome = vm
            .vm
            .shutdown(timeout)
            .await
            .map_err(local_err(vm.vm.name(), "power off"))?;
        tracing::info!(?outcome, "local VM stopped");
        Ok(())
    }

    async fn snapshot_to_file(
        &self,
        vm: &LocalVmHandle,
        dest: &Path,
        ledger: &ResourceLedger,
    ) -> Result<PathBuf> {
        let key = ledger.intent(
            ResourceKind::File,
            &dest.display().to_string(),
            "local-file",
            None,
        )?;
        vm.vm
            .snapshot(dest, OutputFormat::Qcow2)
            .await
            .map_err(local_err(vm.vm.name(), "snapshot"))?;
        ledger.created(key, &dest.display().to_string())?;
        Ok(dest.to_path_buf())
    }

    /// The VM's qcow2 overlay (on the cached base): read in place once QEMU stopped.
    fn local_disk(&self, vm: &LocalVmHandle) -> Option<PathBuf> {
        Some(vm.vm.overlay().to_path_buf())
    }

    fn boots_local_files(&self) -> bool {
        true
    }

    async fn boot_from_file(
        &self,
        spec: &VmSpec,
        image: &Path,
        ledger: &ResourceLedger,
    ) -> Result<LocalVmHandle> {
        self.boot_with(spec, ledger, Vec::new(), Some(image), false)
            .await
    }

    async fn console_log(&self, vm: &LocalVmHandle) -> Result<String> {
        let bytes = std::fs::read(vm.vm.serial_log()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        Ok(lines[lines.len().saturating_sub(30)..].join("\n"))
    }

    async fn delete(&self, mut vm: LocalVmHandle, ledger: &ResourceLedger) -> Result<()> {
        let name = vm.vm.name().to_string();
        vm.vm.delete().map_err(local_err(&name, "delete"))?;
        ledger.released(vm.key)?;
        if let Some((path, k)) = vm.transient.take() {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &path)(e)),
            }
            ledger.released(k)?;
        }
        Ok(())
    }

    async fn keep(&self, vm: LocalVmHandle) -> Result<()> {
        // The ledger records (VM directory, downloaded candidate) stay: `gc`
        // finds QEMU by its directory and removes both.
        let pid = vm.vm.keep_running();
        tracing::info!(pid, id = %vm.id, "local VM kept running");
        Ok(())
    }

    async fn release(&self, record: &ResourceRecord) -> Result<bool> {
        release_local(record)
    }
}

/// Release a record of the local backend or a local file: kill the QEMU
/// process using a VM directory and remove the directory; remove a file (and
/// its `.part`). `Ok(false)` for records of other backends.
pub fn release_local(record: &ResourceRecord) -> Result<bool> {
    match (record.kind, record.backend.as_str()) {
        (ResourceKind::LocalVm, LOCAL) => {
            let dir = PathBuf::from(&record.name);
            kill_qemu_using(&dir);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &dir)(e)),
            }
            Ok(true)
        }
        (ResourceKind::File, "local-file") => {
            let path = PathBuf::from(&record.name);
            // A killed run's prepare appliance may still run on `.work`.
            kill_qemu_using(&PathBuf::from(format!("{}.work", path.display())));
            // `.part`: a conversion's output; `.work`: prepare's overlays.
            for p in [
                path.clone(),
                PathBuf::from(format!("{}.part", path.display())),
                PathBuf::from(format!("{}.work", path.display())),
            ] {
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                match r {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("removing", &p)(e)),
                }
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// SIGKILL every process whose command line names a file in `dir` (the
/// QEMU of a VM whose owner was killed), then wait for it to go.
fn kill_qemu_using(dir: &Path) {
    let needle = format!("{}/", dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == own {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let is_qemu = cmdline.starts_with(local_vm::QEMU)
            || cmdline.contains(&format!("/{}", local_vm::QEMU));
        if is_qemu && cmdline.contains(&needle) {
            tracing::info!(pid, dir = %dir.display(), "killing leftover QEMU");
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{pid}/cmdline")).exists()
                    || std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| c.is_empty())
                        .unwrap_or(true)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cpus_are_the_hosts_within_bounds() {
        let host = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        assert_eq!(default_cpus(), host.clamp(1, MAX_DEFAULT_CPUS));
        assert_eq!(LocalBackendOptions::new("/w").cpus, default_cpus());
    }

    fn spec(access: AccessProfile, ports: &[u16]) -> VmSpec {
        VmSpec {
            name: "web".into(),
            image_id: "x".into(),
            flavor: "m1.small".into(),
            login_user: "debian".into(),
            public_key: "ssh-ed25519 AAAA".into(),
            access,
            tcp_ports: ports.to_vec(),
        }
    }

    #[test]
    fn ports_follow_the_access_profile() {
        assert_eq!(
            forwarded_ports(&spec(AccessProfile::SshOnly, &[])),
            Vec::<u16>::new()
        );
        assert_eq!(
            forwarded_ports(&spec(AccessProfile::SshOnly, &[22, 5000])),
            vec![5000]
        );
        assert_eq!(
            forwarded_ports(&spec(AccessProfile::AllOpen, &[8080, 9000])),
            vec![80, 443, 8080, 9000]
        );
    }

    #[test]
    fn addresses_are_loopback_stable_and_per_name() {
        for attempt in 0..100 {
            let a = candidate_address("web", attempt);
            assert!(a.is_loopback());
            let o = a.octets();
            assert_ne!(o[1], 0);
            assert!(o[3] != 0 && o[3] != 255);
        }
        assert_eq!(candidate_address("web", 0), candidate_address("web", 0));
        assert_ne!(
            candidate_address("web", 0),
            candidate_address("test-web", 0)
        );
    }

    #[test]
    fn release_ignores_other_backends_and_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("snap.qcow2");
        std::fs::write(&f, b"x").unwrap();
        let rec = |kind, backend: &str, name: &Path| ResourceRecord {
            key: LedgerKey(1),
            kind,
            name: name.display().to_string(),
            id: None,
            backend: backend.into(),
            region: None,
        };
        assert!(!release_local(&rec(ResourceKind::Server, "openstack", &f)).unwrap());
        let work = PathBuf::from(format!("{}.work", f.display()));
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join("overlay.qcow2"), b"x").unwrap();
        assert!(release_local(&rec(ResourceKind::File, "local-file", &f)).unwrap());
        assert!(!f.exists());
        assert!(!work.exists());
        let vmdir = dir.path().join("vm");
        std::fs::create_dir(&vmdir).unwrap();
        std::fs::write(vmdir.join("disk.qcow2"), b"x").unwrap();
        assert!(release_local(&rec(ResourceKind::LocalVm, LOCAL, &vmdir)).unwrap());
        assert!(!vmdir.exists());
        // Idempotent.
        assert!(release_local(&rec(ResourceKind::LocalVm, LOCAL, &vmdir)).unwrap());
    }
}
