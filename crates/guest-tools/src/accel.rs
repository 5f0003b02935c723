//! Choosing the accelerator for the libguestfs appliance: KVM when it really
//! works (a short real kernel boot under `-accel kvm`), TCG otherwise.

use std::io::Read;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::Error;

/// Accelerator requested by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// Probe KVM, fall back to TCG.
    #[default]
    Auto,
    /// Use KVM without probing.
    Kvm,
    /// Use TCG (software emulation).
    Tcg,
}

impl FromStr for Accel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(Error::Parse {
                program: "--accel".into(),
                reason: format!("`{other}` is not one of auto, kvm, tcg"),
            }),
        }
    }
}

impl Accel {
    /// Resolve `Auto` by probing (cached for the process); returns `true` for KVM.
    pub fn use_kvm(self) -> bool {
        match self {
            Accel::Kvm => true,
            Accel::Tcg => false,
            Accel::Auto => *KVM_WORKS.get_or_init(cached_probe),
        }
    }
}

static KVM_WORKS: OnceLock<bool> = OnceLock::new();

/// The probe's answer is kept for the current boot of the host (keyed by
/// `/proc/sys/kernel/random/boot_id`) in
/// `~/.cache/openstack-image-tools/kvm-probe`, so only the first process after
/// a boot pays for it.
fn cached_probe() -> bool {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let boot_id = boot_id.trim();
    let cache = std::env::var_os("HOME")
        .map(|h| std::path::PathBuf::from(h).join(".cache/openstack-image-tools/kvm-probe"));
    if let (Some(cache), false) = (&cache, boot_id.is_empty()) {
        if let Ok(text) = std::fs::read_to_string(cache) {
            match text.trim().split_once(' ') {
                Some((id, "kvm")) if id == boot_id => return true,
                Some((id, "tcg")) if id == boot_id => return false,
                _ => {}
            }
        }
    }
    let kvm = probe_kvm(PROBE_TIMEOUT);
    if let (Some(cache), false) = (cache, boot_id.is_empty()) {
        if let Some(dir) = cache.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(
            &cache,
            format!("{boot_id} {}\n", if kvm { "kvm" } else { "tcg" }),
        );
    }
    kvm
}

/// How long the KVM probe may take. A kernel reaches its "no root" panic in
/// about 1 s under KVM (5 s under TCG here); a broken KVM hangs forever.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The newest `/boot/vmlinuz-*` (the kernel libguestfs also boots).
fn host_kernel() -> Option<std::path::PathBuf> {
    let mut kernels: Vec<_> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

/// Boot the host kernel with no root filesystem under `-accel kvm` and wait
/// (up to `timeout`) for it to reach its "Kernel panic". `true` only if it did.
pub fn probe_kvm(timeout: Duration) -> bool {
    let span = tracing::info_span!("kvm_probe");
    let _e = span.enter();
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        tracing::info!("no usable /dev/kvm: using TCG");
        return false;
    }
    let Some(kernel) = host_kernel() else {
        tracing::info!("no kernel in /boot to probe KVM with: using TCG");
        return false;
    };
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "kvm", "-machine", "pc", "-cpu", "host", "-m", "256",
        ])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .args(["-append", "console=ttyS0 panic=-1 loglevel=4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::info!("cannot run qemu-system-x86_64 ({e}): using TCG");
            return false;
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(mut out) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut seen = String::new();
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                if seen.contains("Kernel panic") || seen.contains("VFS:") {
                    let _ = tx.send(());
                    break;
                }
            }
        });
    }
    let start = Instant::now();
    let ok = rx.recv_timeout(timeout).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    tracing::info!(
        kvm = ok,
        elapsed_ms = start.elapsed().as_millis() as u64,
        "KVM probe finished"
    );
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accel() {
        assert_eq!("auto".parse::<Accel>().unwrap(), Accel::Auto);
        assert_eq!("kvm".parse::<Accel>().unwrap(), Accel::Kvm);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert!("xen".parse::<Accel>().is_err());
        assert!(!Accel::Tcg.use_kvm());
        assert!(Accel::Kvm.use_kvm());
    }
}
