//! An LVM root: inspect, sysprep and sparsify work on it; shrinking is
//! refused with a clear error (one appliance: the disk is built in it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use guest_tools::{Accel, Drive, Error, Session, SessionOptions, SysprepOptions, MIB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lvm_root_sysprep_works_and_shrink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("lvm.qcow2");
    guest_tools::create_qcow2(&disk, 512 * MIB).unwrap();
    let session = Session::open(
        SessionOptions {
            drives: vec![Drive {
                path: disk,
                format: Some("qcow2".into()),
                readonly: false,
            }],
            accel: Accel::Tcg,
        },
        None,
    )
    .await
    .unwrap();
    session
        .with_handle(|g| {
            g.part_disk("/dev/sda", "mbr")?;
            g.pvcreate("/dev/sda1")?;
            g.vgcreate("vg0", &["/dev/sda1"])?;
            g.lvcreate("root", "vg0", 400)?;
            g.mkfs("ext4", "/dev/vg0/root", Default::default())?;
            g.mount("/dev/vg0/root", "/")?;
            for d in ["/etc/ssh", "/usr/bin", "/var/log", "/root"] {
                g.mkdir_p(d)?;
            }
            g.ln_s("usr/bin", "/bin")?;
            g.write("/etc/fstab", b"/dev/vg0/root / ext4 defaults 0 1\n")?;
            g.write("/etc/debian_version", b"12.0\n")?;
            g.write("/etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n")?;
            g.write("/etc/machine-id", b"0123456789abcdef0123456789abcdef\n")?;
            g.write("/etc/ssh/ssh_host_rsa_key", b"key\n")?;
            g.write("/var/log/syslog", b"log\n")?;
            g.write("/root/.bash_history", b"ls\n")?;
            g.umount_all()
        })
        .await
        .unwrap();
    let i = session.inspect().await.unwrap();
    assert_eq!(i.root, "/dev/vg0/root");
    assert_eq!(i.distro, "debian");
    let results = session.sysprep(SysprepOptions::default()).await.unwrap();
    let lvm = results.iter().find(|r| r.name == "lvm-uuids").unwrap();
    assert!(
        !lvm.changed.is_empty(),
        "lvm-uuids did nothing on an LVM disk"
    );
    session
        .with_handle(|g| {
            g.mount("/dev/vg0/root", "/")?;
            assert!(!g.exists("/etc/ssh/ssh_host_rsa_key")?);
            assert!(!g.exists("/var/log/syslog")?);
            assert!(!g.exists("/root/.bash_history")?);
            assert_eq!(g.filesize("/etc/machine-id")?, 0);
            g.umount_all()
        })
        .await
        .unwrap();
    let e = session.shrink(None).await.unwrap_err();
    assert!(matches!(e, Error::CannotShrink { .. }), "{e}");
    assert!(
        e.to_string().contains("LVM") && e.to_string().contains("--no-shrink"),
        "{e}"
    );
    session.sparsify(0).await.unwrap();
    session.close().await.unwrap();
}
