//! What to boot: [`BootSpec`] and its checks, forwarded ports, and how the
//! SSH key reaches the guest.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use guest_tools::Accel;

use crate::error::{Error, Result};
use crate::inject::check_key;

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootSpec {
    /// VM name: letters, digits, `.`, `_`, `-`; names its directory in `work_dir`.
    pub name: String,
    /// The image to boot; never modified (the VM writes to a qcow2 overlay).
    pub base_image: PathBuf,
    /// Where the VM's directory `<work_dir>/<name>` is created.
    pub work_dir: PathBuf,
    /// Guest memory in MiB (at least 128).
    pub memory_mib: u32,
    /// Virtual CPUs (at least 1).
    pub cpus: u32,
    /// Accelerator; `Auto` uses KVM only when a real probe boot works.
    pub accel: Accel,
    /// `(user, OpenSSH public key line)` written to `~user/.ssh/authorized_keys`
    /// in the overlay before the first boot (the local stand-in for a Nova keypair).
    pub authorized_key: Option<(String, String)>,
    /// Where the guest's ports are reachable. `None` (the default): the
    /// guest's port 22 is forwarded from a free port of 127.0.0.1. `Some(addr)`
    /// (an address of 127.0.0.0/8 of this VM's own): port 22 and every port of
    /// [`BootSpec::forward_ports`] are forwarded one to one (`addr:P` → guest
    /// `P`, QEMU user-mode `hostfwd`), so that `ssh user@addr` and clients of
    /// the guest's services work unchanged. Only those TCP ports reach the
    /// guest: UDP and ICMP are not forwarded. Ports below 1024 need root (or
    /// `net.ipv4.ip_unprivileged_port_start`).
    pub host_addr: Option<Ipv4Addr>,
    /// Guest TCP ports forwarded one to one besides 22 (only with `host_addr`).
    pub forward_ports: Vec<u16>,
    /// How [`BootSpec::authorized_key`] reaches the guest.
    pub key_injection: KeyInjection,
    /// Connections the guest may open to the host's loopback services
    /// (QEMU user-mode `guestfwd`): for a tester VM reaching another local
    /// VM. Empty by default.
    pub guest_forwards: Vec<GuestForward>,
    /// Serve the disk read-only over NBD (unix socket `<dir>/nbd.sock`,
    /// export [`NBD_EXPORT`]) from the start, and keep QEMU (with the guest
    /// stopped) after the guest powers off, until the VM is deleted: another
    /// QEMU, a libguestfs appliance, reads the disk through this one's block
    /// layer (coherent with the guest's writes) while the guest still runs
    /// and after it stopped. See [`crate::LocalVm::nbd_export`]. Off by default.
    pub export_disk: bool,
}

/// Name of the NBD export of a VM booted with [`BootSpec::export_disk`].
pub const NBD_EXPORT: &str = "disk0";

/// A guest-side address inside QEMU's user-mode network (10.0.2.0/24, never
/// on the host) whose TCP port `port` leads to `host` on the host's loopback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestForward {
    /// The address the guest connects to (in 10.0.2.0/24, not the gateway
    /// 10.0.2.2, the DNS 10.0.2.3 nor the guest's own 10.0.2.15).
    pub guest_addr: Ipv4Addr,
    /// The TCP port the guest connects to.
    pub port: u16,
    /// Where the connection goes on the host (a 127.0.0.0/8 address).
    pub host: std::net::SocketAddrV4,
}

/// How the SSH key of [`BootSpec::authorized_key`] reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyInjection {
    /// Written into the overlay with libguestfs before the first boot: one
    /// appliance launch per boot (tens of seconds under TCG); any Linux guest.
    #[default]
    Guestfs,
    /// Handed to the guest's systemd as the credential `tmpfiles.extra`
    /// (SMBIOS type 11 string): `systemd-tmpfiles-setup` creates
    /// `~user/.ssh` and appends the key to `authorized_keys` early at boot.
    /// No appliance launch. Needs systemd 252 or later in the guest (Debian
    /// 12, Ubuntu 23.04, Fedora 37, RHEL 10); the home is `/root` for root
    /// and `/home/<user>` otherwise; the key stays in the guest's
    /// `authorized_keys` as with [`KeyInjection::Guestfs`].
    SystemdCredential,
}

/// The `tmpfiles.d` lines giving `user` the SSH `key` (see
/// [`KeyInjection::SystemdCredential`]).
pub fn key_tmpfiles(user: &str, key: &str) -> String {
    let home = if user == "root" {
        "/root".to_string()
    } else {
        format!("/home/{user}")
    };
    // Mode and owner are also applied to an existing directory and file (as
    // sshd's StrictModes wants them); `-`: the group is left alone.
    format!(
        "d {home}/.ssh 0700 {user} - -\n\
         f {home}/.ssh/authorized_keys 0600 {user} - -\n\
         w+ {home}/.ssh/authorized_keys - - - - {}\\n\n",
        key.trim()
    )
}

/// The QEMU `-smbios` value carrying `tmpfiles` as the systemd credential
/// `tmpfiles.extra` (base64: no comma to escape).
pub fn credential_smbios(tmpfiles: &str) -> String {
    use base64::Engine as _;
    format!(
        "type=11,value=io.systemd.credential.binary:tmpfiles.extra={}",
        base64::engine::general_purpose::STANDARD.encode(tmpfiles)
    )
}

fn check_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("must not start with `.` or `-`");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("only letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

impl BootSpec {
    pub(super) fn check(&self) -> Result<()> {
        check_name(&self.name)?;
        let invalid = |field, reason: String| Error::InvalidSpec {
            name: self.name.clone(),
            field,
            reason,
        };
        if self.memory_mib < 128 {
            return Err(invalid(
                "memory_mib",
                format!("{} MiB is less than 128", self.memory_mib),
            ));
        }
        if self.cpus == 0 {
            return Err(invalid("cpus", "must be at least 1".into()));
        }
        if let Some((user, key)) = &self.authorized_key {
            check_key(user, key).map_err(|r| invalid("authorized_key", r))?;
        }
        match self.host_addr {
            Some(addr) if !addr.is_loopback() => {
                return Err(invalid(
                    "host_addr",
                    format!("{addr} is not a loopback address (127.0.0.0/8)"),
                ))
            }
            None if !self.forward_ports.is_empty() => {
                return Err(invalid(
                    "forward_ports",
                    "ports are forwarded one to one only with a host_addr".into(),
                ))
            }
            _ => {}
        }
        if self.forward_ports.contains(&0) {
            return Err(invalid(
                "forward_ports",
                "port 0 cannot be forwarded".into(),
            ));
        }
        for g in &self.guest_forwards {
            let o = g.guest_addr.octets();
            if o[..3] != [10, 0, 2] || matches!(o[3], 0 | 2 | 3 | 15 | 255) {
                return Err(invalid(
                    "guest_forwards",
                    format!(
                        "{} is not a free address of the user-mode network 10.0.2.0/24",
                        g.guest_addr
                    ),
                ));
            }
            if !g.host.ip().is_loopback() || g.port == 0 || g.host.port() == 0 {
                return Err(invalid(
                    "guest_forwards",
                    format!(
                        "{}:{} -> {}: the target must be a loopback address and ports non-zero",
                        g.guest_addr, g.port, g.host
                    ),
                ));
            }
        }
        Ok(())
    }
}
