//! Compute backends: where build and test VMs run.
//!
//! The create/test pipeline is written once against [`ComputeBackend`]; two
//! implementations exist: `openstack` (Nova, Neutron and Glance through
//! `openstack-client`) and `local` (QEMU through `local-vm`). A backend
//! records every resource it creates in the run's [`ResourceLedger`] before
//! the creating call returns its id, and can release any record of its own
//! later ([`ComputeBackend::release`]), even from another process (`gc`).

pub mod local;
pub mod openstack;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use crate::ledger::{ResourceLedger, ResourceRecord};

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Nova + Neutron + Glance.
    #[default]
    Openstack,
    /// Local QEMU VMs (`local-vm`); images still come from and go to Glance.
    Local,
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendKind::Openstack => "openstack",
            BackendKind::Local => "local",
        })
    }
}

/// What happens to the resources of a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Delete everything the run created (the default).
    #[default]
    Cleanup,
    /// Stop at once and leave everything, ledger included, for `gc` later.
    Abort,
    /// Keep the VM and images for debugging; the ledger still lists them.
    Keep,
}

/// Access rules a VM is booted with, as in the original's groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessProfile {
    /// TCP 22 only (the original's `sshopen`, used while creating).
    SshOnly,
    /// Every TCP and UDP port and ICMP (the original's `allopen`, used while testing).
    AllOpen,
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Server name, unique per run (for example `<name>` or `test-<name>`).
    pub name: String,
    /// The image to boot: a Glance image id.
    pub image_id: String,
    /// Flavor name or id (OpenStack); the local backend maps it to memory/CPUs.
    pub flavor: String,
    /// The login user of the image, who receives `public_key`.
    pub login_user: String,
    /// OpenSSH public key line authorised for `login_user`.
    pub public_key: String,
    /// Which ports are reachable.
    pub access: AccessProfile,
    /// Guest TCP ports the operator's tools must reach at the VM's address,
    /// besides 22 (the local backend forwards exactly these; OpenStack opens
    /// them through the security group of `access`).
    pub tcp_ports: Vec<u16>,
}

/// Where the operator's tools reach a running VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmAddress {
    /// The address exported as `IP` to `test.sh` (a floating IP, or the local
    /// VM's own loopback address).
    pub ip: IpAddr,
    /// Host to open SSH connections to (usually `ip`).
    pub ssh_host: String,
    /// Port for SSH (22 unless the backend forwards another one).
    pub ssh_port: u16,
}

/// A booted VM as the pipeline sees it.
pub trait VmHandle: Send + Sync + std::fmt::Debug {
    /// The VM's name.
    fn name(&self) -> &str;
    /// Its id (Nova server id, or the local VM's directory).
    fn id(&self) -> &str;
}

/// A place to run VMs: OpenStack or local QEMU.
#[async_trait::async_trait]
pub trait ComputeBackend: Send + Sync {
    /// The VMs this backend boots.
    type Vm: VmHandle;

    /// Short name written to the ledger (`openstack`, `local`).
    fn name(&self) -> &'static str;

    /// Boot a VM (with its per-run keypair and security group, on OpenStack),
    /// recording each resource in `ledger` before its creating call returns.
    async fn boot(&self, spec: &VmSpec, ledger: &ResourceLedger) -> Result<Self::Vm>;

    /// Boot the tester VM of `TEST_USING_VM`, which must reach the tested VM
    /// (booted from `tested_spec`, reached by this program at `tested`);
    /// returns it with the address the tester reaches the tested VM at (the
    /// `IP` exported to `test.sh` there). The default: a plain boot, and the
    /// same address (VMs of one cloud network reach each other's floating IPs).
    async fn boot_tester(
        &self,
        spec: &VmSpec,
        tested_spec: &VmSpec,
        tested: &VmAddress,
        ledger: &ResourceLedger,
    ) -> Result<(Self::Vm, IpAddr)> {
        let _ = tested_spec;
        Ok((self.boot(spec, ledger).await?, tested.ip))
    }

    /// Wait until the VM runs and has an address; `timeout` bounds the wait.
    async fn wait_ready(&self, vm: &Self::Vm, timeout: Duration) -> Result<VmAddress>;

    /// Power the VM off and wait until it is stopped.
    async fn power_off(&self, vm: &Self::Vm, timeout: Duration) -> Result<()>;

    /// Write the stopped VM's disk to the local file `dest` (qcow2). On
    /// OpenStack: Nova snapshot, wait, download (verified), delete the snapshot.
    async fn snapshot_to_file(
        &self,
        vm: &Self::Vm,
        dest: &Path,
        ledger: &ResourceLedger,
    ) -> Result<PathBuf>;

    /// The stopped VM's disk as a local file that can be read in place until
    /// the VM is deleted (its qcow2 overlay on the local backend), so that
    /// `prepare` reads it without a snapshot copy first. `None` (the
    /// default): the disk is only reachable through
    /// [`ComputeBackend::snapshot_to_file`].
    fn local_disk(&self, vm: &Self::Vm) -> Option<PathBuf> {
        let _ = vm;
        None
    }

    /// Boot like [`ComputeBackend::boot`], with the VM's disk readable
    /// while it runs and after its guest powers off, until the VM is
    /// deleted ([`ComputeBackend::live_disk`]), so that `prepare` starts its
    /// appliance during the build. The default: a plain boot.
    async fn boot_exporting_disk(
        &self,
        spec: &VmSpec,
        ledger: &ResourceLedger,
    ) -> Result<Self::Vm> {
        self.boot(spec, ledger).await
    }

    /// The disk of a VM booted by [`ComputeBackend::boot_exporting_disk`],
    /// as `guest_tools::prepare_live` reads it; `None` (the default) when
    /// the backend does not serve it.
    fn live_disk(&self, vm: &Self::Vm) -> Option<guest_tools::LiveDisk> {
        let _ = vm;
        None
    }

    /// Whether [`ComputeBackend::boot_from_file`] boots local image files
    /// (the default: no, VMs boot Glance images only).
    fn boots_local_files(&self) -> bool {
        false
    }

    /// Boot `spec` from the local image file `image` instead of downloading
    /// the Glance image `spec.image_id`: the candidate just written, byte for
    /// byte what is being uploaded as `spec.image_id` (its hash is checked
    /// against Glance's). `image` must stay until the VM is deleted. The
    /// default refuses: see [`ComputeBackend::boots_local_files`].
    async fn boot_from_file(
        &self,
        spec: &VmSpec,
        image: &Path,
        ledger: &ResourceLedger,
    ) -> Result<Self::Vm> {
        let _ = (spec, ledger);
        Err(crate::error::Error::Pipeline(format!(
            "the {} backend cannot boot the local file {}",
            self.name(),
            image.display()
        )))
    }

    /// The last lines of the VM's console, for error messages.
    async fn console_log(&self, vm: &Self::Vm) -> Result<String>;

    /// Delete the VM and the per-run resources created for it; release their records.
    async fn delete(&self, vm: Self::Vm, ledger: &ResourceLedger) -> Result<()>;

    /// Keep the VM running after this program ends (`--keep-on-failure`);
    /// its ledger records stay outstanding so that `gc` removes it later.
    /// The default lets the handle go (a cloud server outlives it anyway).
    async fn keep(&self, vm: Self::Vm) -> Result<()> {
        drop(vm);
        Ok(())
    }

    /// Release one outstanding record this backend created (by id, or by
    /// its unique name when the run died before the id was known). Records
    /// of other backends are not touched: return `Ok(false)` for them.
    async fn release(&self, record: &ResourceRecord) -> Result<bool>;
}
