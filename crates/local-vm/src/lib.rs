//! Local QEMU virtual machines: the engine of the image pipeline's local
//! compute backend (Nova cannot run here, so create/test runs on QEMU).
//!
//! Owns: QEMU processes booted from a base image for the pipeline — the qcow2
//! overlay, the SSH key injected before boot (the stand-in for a Nova
//! keypair), the forwarded ports (by default the guest's 22 from a free port
//! of 127.0.0.1; with [`BootSpec::host_addr`] 22 and
//! [`BootSpec::forward_ports`] one to one from a loopback address of the
//! VM's own, TCP only), the serial log, QMP power control,
//! snapshots and clean-up.
//! Must not: talk to OpenStack, or modify the base image.
//!
//! [`LocalVm::boot`] → [`LocalVm::wait_active`] → (SSH by the caller to
//! [`LocalVm::ssh_endpoint`]) → [`LocalVm::shutdown`] → [`LocalVm::snapshot`]
//! → [`LocalVm::delete`]. Every VM is recorded in a [`Ledger`] whose
//! [`Ledger::cleanup`] removes whatever is left; a dropped [`LocalVm`] kills
//! its QEMU. See [`Ledger`] for the exact guarantees.

mod error;
mod inject;
mod ledger;
mod process;
pub mod qmp;
mod vm;

pub use error::{Error, Result};
pub use guest_tools::{Accel, OutputFormat};
pub use ledger::{Ledger, LedgerRecord};
pub use vm::{
    credential_smbios, key_tmpfiles, BootSpec, GuestForward, KeyInjection, LocalVm,
    ShutdownOutcome, NBD_EXPORT, QEMU,
};
