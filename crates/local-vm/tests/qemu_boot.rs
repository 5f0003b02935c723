//! Real QEMU (TCG) VMs booted from the real Debian 12 test image
//! (`scripts/test-image/build.sh`). Each test boots once; they take minutes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cloud_test_support::test_image;
use local_vm::{
    Accel, BootSpec, Error, KeyInjection, Ledger, LocalVm, OutputFormat, ShutdownOutcome,
};

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn pid_alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would show state Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z "),
        Err(_) => false,
    }
}

fn spec(name: &str, base: &Path, work: &Path, key: Option<(String, String)>) -> BootSpec {
    BootSpec {
        name: name.into(),
        base_image: base.to_path_buf(),
        work_dir: work.to_path_buf(),
        memory_mib: 1024,
        cpus: 1,
        accel: Accel::Tcg,
        authorized_key: key,
        host_addr: None,
        forward_ports: Vec::new(),
        key_injection: KeyInjection::Guestfs,
        guest_forwards: Vec::new(),
        export_disk: false,
    }
}

/// `ssh -i key debian@127.0.0.1 -p PORT <command>` with the system client.
/// Retried: non-root logins are refused until systemd-user-sessions ran.
fn ssh(key: &Path, port: u16, command: &str) -> String {
    let mut last = String::new();
    for _ in 0..30 {
        let out = Command::new("ssh")
            .arg("-i")
            .arg(key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "LogLevel=ERROR",
                "-p",
                &port.to_string(),
                "debian@127.0.0.1",
                command,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8(out.stdout).unwrap();
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_secs(3));
    }
    panic!("ssh with the injected key never succeeded: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_ssh_poweroff_snapshot_delete() {
    let base = test_image();
    let base_hash = sha256(&base);
    let base_mtime = std::fs::metadata(&base).unwrap().modified().unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "local-vm-test", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = std::fs::read_to_string(tmp.path().join("key.pub")).unwrap();
    let pubkey = pubkey.trim().to_string();

    let ledger = Ledger::new();
    let work = tmp.path().join("work");
    let mut vm = LocalVm::boot(
        spec(
            "lvm-real",
            &base,
            &work,
            Some(("debian".into(), pubkey.clone())),
        ),
        &ledger,
    )
    .await
    .unwrap();
    assert_eq!(vm.name(), "lvm-real");
    assert_eq!(ledger.records().len(), 1);
    assert_eq!(ledger.records()[0].pid, vm.pid());
    assert!(vm.is_running());
    let (host, port) = vm.ssh_endpoint();
    assert_eq!(host, "127.0.0.1");

    let banner = vm.wait_active(Duration::from_secs(600)).await.unwrap();
    assert!(banner.starts_with("SSH-2.0-OpenSSH"), "{banner}");
    assert!(vm.serial_log().is_file());

    // The injected key logs in; dir 700, file 600, owned by debian.
    let out = ssh(
        &key,
        port,
        "cat ~/.ssh/authorized_keys; stat -c '%a %U:%G' ~/.ssh ~/.ssh/authorized_keys",
    );
    assert!(out.lines().any(|l| l.trim() == pubkey), "{out}");
    assert!(out.contains("700 debian:debian"), "{out}");
    assert!(out.contains("600 debian:debian"), "{out}");

    // Snapshot is refused while running.
    let snap = tmp.path().join("snap.qcow2");
    let e = vm.snapshot(&snap, OutputFormat::Qcow2).await.unwrap_err();
    assert!(matches!(e, Error::Running { .. }), "{e}");
    assert!(!snap.exists());

    let outcome = vm.shutdown(Duration::from_secs(300)).await.unwrap();
    assert_eq!(outcome, ShutdownOutcome::PoweredOff);
    assert!(!vm.is_running());
    assert!(!pid_alive(vm.pid()));
    assert_eq!(
        vm.shutdown(Duration::from_secs(1)).await.unwrap(),
        ShutdownOutcome::AlreadyStopped
    );

    let info = vm.snapshot(&snap, OutputFormat::Qcow2).await.unwrap();
    assert_eq!(info.format, "qcow2");
    let json = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&snap)
        .output()
        .unwrap();
    assert!(json.status.success());
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(json.get("backing-filename").is_none(), "{json}");
    assert!(!tmp.path().join("snap.qcow2.part").exists());

    // The standalone snapshot is a Debian guest that carries the key.
    let session = guest_tools::Session::open(
        guest_tools::SessionOptions {
            drives: vec![guest_tools::Drive {
                path: snap.clone(),
                format: Some("qcow2".into()),
                readonly: true,
            }],
            accel: Accel::Tcg,
        },
        None,
    )
    .await
    .unwrap();
    let insp = session.inspect().await.unwrap();
    assert_eq!(insp.distro, "debian");
    let root = insp.root.clone();
    let (keys, mode, uid) = session
        .with_handle(move |g| {
            g.mount_ro(&root, "/")?;
            let keys = g.cat("/home/debian/.ssh/authorized_keys")?;
            let st = g.statns("/home/debian/.ssh/authorized_keys")?;
            Ok((keys, st.st_mode & 0o777, st.st_uid))
        })
        .await
        .unwrap();
    session.close().await.unwrap();
    assert!(keys.lines().any(|l| l.trim() == pubkey), "{keys}");
    assert_eq!(mode, 0o600);
    assert_eq!(uid, 1000);

    let dir = vm.dir().to_path_buf();
    assert!(vm.overlay().is_file());
    vm.delete().unwrap();
    assert!(!dir.exists());
    vm.delete().unwrap();
    let e = vm
        .snapshot(&tmp.path().join("again.qcow2"), OutputFormat::Qcow2)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Deleted { .. }), "{e}");
    assert!(ledger.records().is_empty());
    assert_eq!(ledger.cleanup().unwrap(), Vec::<String>::new());
    assert!(snap.is_file(), "the snapshot outlives the VM");

    assert_eq!(sha256(&base), base_hash, "test image changed");
    assert_eq!(
        std::fs::metadata(&base).unwrap().modified().unwrap(),
        base_mtime
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbootable_disk_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.qcow2");
    cloud_test_support::blank_qcow2(&empty, "1G");
    let work = tmp.path().join("work");
    let ledger = Ledger::new();

    // A key cannot be injected into a disk without an OS: clear error, no leftovers.
    let e = LocalVm::boot(
        spec(
            "lvm-empty",
            &empty,
            &work,
            Some(("debian".into(), "ssh-ed25519 AAAAC3Nza test".into())),
        ),
        &ledger,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::NoOs { .. }), "{e}");
    assert!(e.to_string().contains("no operating system"), "{e}");
    assert!(!work.join("lvm-empty").exists());
    assert!(ledger.records().is_empty());

    // Without a key it starts, but never becomes active.
    let vm = LocalVm::boot(spec("lvm-empty", &empty, &work, None), &ledger)
        .await
        .unwrap();
    let pid = vm.pid();
    assert!(pid_alive(pid));

    // A second VM of the same name is refused and leaves the first alone.
    let e = LocalVm::boot(spec("lvm-empty", &empty, &work, None), &ledger)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    assert!(vm.overlay().is_file());

    let e = vm.wait_active(Duration::from_secs(20)).await.unwrap_err();
    assert!(
        matches!(e, Error::NotActive { .. } | Error::DiedDuringBoot { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("serial console tail"), "{e}");

    let records = ledger.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].pid, pid);
    assert_eq!(ledger.cleanup().unwrap(), vec!["lvm-empty".to_string()]);
    assert!(!pid_alive(pid), "qemu {pid} still running after cleanup");
    assert!(!work.join("lvm-empty").exists());
    assert!(ledger.records().is_empty());
    drop(vm);
    assert!(empty.is_file(), "the base image is not removed");

    // No OS answers the ACPI power button: shutdown falls back to QMP quit.
    let ledger = Ledger::new();
    let mut vm = LocalVm::boot(spec("lvm-quit", &empty, &work, None), &ledger)
        .await
        .unwrap();
    let pid = vm.pid();
    assert_eq!(
        vm.shutdown(Duration::from_secs(3)).await.unwrap(),
        ShutdownOutcome::Quit
    );
    assert!(!pid_alive(pid));
    vm.delete().unwrap();

    // A panic with a running VM kills its QEMU; dropping the ledger removes its files.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (w, l, e) = (work.clone(), ledger.clone(), empty.clone());
    let task = tokio::spawn(async move {
        let vm = LocalVm::boot(spec("lvm-panic", &e, &w, None), &l)
            .await
            .unwrap();
        tx.send(vm.pid()).unwrap();
        panic!("deliberate panic while VM {} runs", vm.name());
    });
    assert!(task.await.unwrap_err().is_panic());
    let pid = rx.await.unwrap();
    assert!(!pid_alive(pid), "qemu {pid} survived the panic");
    assert!(work.join("lvm-panic").is_dir(), "files stay until cleanup");
    assert_eq!(ledger.records().len(), 1);
    drop(ledger);
    assert!(!work.join("lvm-panic").exists());
    assert!(!work.join("lvm-quit").exists());
}

/// `KeyInjection::SystemdCredential`: no libguestfs launch; the guest's
/// systemd-tmpfiles puts the key in place from the SMBIOS credential, and it
/// logs in (dir 700, file 600, owned by the user).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_credential_key_logs_in() {
    let base = test_image();
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "local-vm-cred", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = std::fs::read_to_string(tmp.path().join("key.pub"))
        .unwrap()
        .trim()
        .to_string();
    let ledger = Ledger::new();
    let mut spec = spec(
        "lvm-cred",
        &base,
        &tmp.path().join("work"),
        Some(("debian".into(), pubkey.clone())),
    );
    spec.key_injection = KeyInjection::SystemdCredential;
    let mut vm = LocalVm::boot(spec, &ledger).await.unwrap();
    // The overlay was not touched before the boot: no key written offline.
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", vm.pid())).unwrap();
    assert!(cmdline.contains("io.systemd.credential.binary:tmpfiles.extra="));
    vm.wait_active(Duration::from_secs(600)).await.unwrap();
    let (_, port) = vm.ssh_endpoint();
    let out = ssh(
        &key,
        port,
        "cat ~/.ssh/authorized_keys; stat -c '%a %U' ~/.ssh ~/.ssh/authorized_keys",
    );
    assert!(out.lines().any(|l| l.trim() == pubkey), "{out}");
    assert!(out.contains("700 debian"), "{out}");
    assert!(out.contains("600 debian"), "{out}");
    vm.delete().unwrap();
}
