//! An LVM root: inspect, sysprep, shrink and sparsify work on it (one
//! appliance: the disk is built in it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use guest_tools::{target_size_for, SysprepOptions, GIB, MIB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lvm_root_sysprep_and_shrink_work() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("lvm.qcow2");
    guest_tools::create_qcow2(&disk, 2 * GIB).unwrap();
    let payload: Vec<u8> = (0..3 * MIB as u32).map(|i| (i % 251) as u8).collect();
    let written = payload.clone();
    let (progress, mut events) = tokio::sync::mpsc::unbounded_channel();
    let session = common::open_tcg(&[(&disk, "qcow2")], Some(progress)).await;
    session
        .with_handle(move |g| {
            g.part_disk("/dev/sda", "mbr")?;
            g.pvcreate("/dev/sda1")?;
            g.vgcreate("vg0", &["/dev/sda1"])?;
            g.lvcreate_free("root", "vg0", 100)?;
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
            g.write("/data.bin", &written)?;
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
    let report = session.shrink(None).await.unwrap();
    assert_eq!(report.device, "/dev/vg0/root");
    assert_eq!(report.drive_index, 0);
    // The filesystem and the used part of the disk are far under 1000 MiB,
    // so the rule picks 1 GiB, and the 2 GiB disk is cut there in place.
    assert!(report.min_fs_bytes < 1000 * MIB, "{report:?}");
    assert_eq!(report.target_size, target_size_for(report.min_fs_bytes));
    assert_eq!(report.target_size, Some(1024 * MIB));
    assert_eq!(report.cut_at, Some(1024 * MIB));
    let check = session
        .with_handle(move |g| {
            let parts = g.part_list("/dev/sda")?;
            assert_eq!(parts.len(), 1);
            assert_eq!(parts[0].part_end + 1, 1024 * MIB);
            // The only PV (its kernel name may be sdb1 when the appliance
            // disk took sda, so it is not looked up by name).
            let pvs = g.pvs_full()?;
            assert_eq!(pvs.len(), 1, "one PV expected");
            let pv = pvs.into_iter().next().unwrap();
            assert_eq!(pv.dev_size, parts[0].part_size);
            let vg = g
                .vgs_full()?
                .into_iter()
                .find(|v| v.vg_name == "vg0")
                .unwrap();
            assert_eq!(vg.vg_free_count, 0, "the LV does not fill the VG");
            let lv_size = g.blockdev_getsize64("/dev/vg0/root")? as u64;
            assert_eq!(lv_size, vg.vg_size);
            assert!(lv_size + pv.pe_start + 8 * MIB > parts[0].part_size);
            let tl = g.tune2fs_l("/dev/vg0/root")?;
            let field = |k: &str| tl.get(k).unwrap().trim().parse::<u64>().unwrap();
            let fs = field("Block count") * field("Block size");
            assert!(fs + 4 * MIB > lv_size && fs <= lv_size, "{fs} vs {lv_size}");
            let fsck = g.debug(
                "sh",
                &["e2fsck -fn /dev/vg0/root >/dev/null 2>&1; echo rc=$?"],
            )?;
            g.mount("/dev/vg0/root", "/")?;
            let back = g.read_file("/data.bin")?;
            let os = g.read_file("/etc/os-release")?;
            g.umount_all()?;
            Ok((fsck, back, os))
        })
        .await
        .unwrap();
    assert!(check.0.contains("rc=0"), "e2fsck after shrink: {}", check.0);
    assert!(check.1 == payload, "the file written before changed");
    assert_eq!(check.2, b"ID=debian\nVERSION_ID=\"12\"\n");
    session.sparsify(0).await.unwrap();
    session.close().await.unwrap();
    // Sparsify found the logical volume behind the physical one and
    // trimmed it (or zeroed its free space).
    let sparsified: Vec<_> = common::received(&mut events)
        .into_iter()
        .filter(|e| e.step == guest_tools::Step::Sparsify)
        .map(|e| e.detail)
        .collect();
    assert!(
        sparsified
            .iter()
            .any(|d| d.starts_with("/dev/vg0/root (ext4): ")),
        "sparsify did not reach the LV: {sparsified:?}"
    );
}

/// LVM layouts that cannot be shrunk are refused with the reason named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lvm_layouts_that_cannot_shrink_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("lvm2.qcow2");
    guest_tools::create_qcow2(&disk, 256 * MIB).unwrap();
    let session = common::open_tcg(&[(&disk, "qcow2")], None).await;
    let root_fs = |fstype: &'static str| {
        move |g: &guestfs::Handle| {
            g.mkfs(fstype, "/dev/vg0/root", Default::default())?;
            g.mount("/dev/vg0/root", "/")?;
            for d in ["/etc", "/usr/bin"] {
                g.mkdir_p(d)?;
            }
            if fstype == "vfat" {
                g.mkdir("/bin")?;
            } else {
                g.ln_s("usr/bin", "/bin")?;
            }
            g.write("/etc/fstab", b"/dev/vg0/root / auto defaults 0 1\n")?;
            g.write("/etc/debian_version", b"12.0\n")?;
            g.write("/etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n")?;
            g.umount_all()
        }
    };
    // Two physical volumes in the root's volume group.
    session
        .with_handle(|g| {
            g.part_init("/dev/sda", "mbr")?;
            g.part_add("/dev/sda", "p", 2048, 262143)?;
            g.part_add("/dev/sda", "p", 262144, -2048)?;
            g.pvcreate("/dev/sda1")?;
            g.pvcreate("/dev/sda2")?;
            g.vgcreate("vg0", &["/dev/sda1", "/dev/sda2"])?;
            g.lvcreate_free("root", "vg0", 100)
        })
        .await
        .unwrap();
    session.with_handle(root_fs("ext4")).await.unwrap();
    let e = session.shrink(None).await.unwrap_err().to_string();
    assert!(
        e.contains("2 physical volumes") && e.contains("--no-shrink"),
        "{e}"
    );
    // A root filesystem other than ext2/3/4.
    session.with_handle(root_fs("vfat")).await.unwrap();
    let e = session.shrink(None).await.unwrap_err().to_string();
    assert!(
        e.contains("LVM") && e.contains("vfat") && e.contains("--no-shrink"),
        "{e}"
    );
    session.close().await.unwrap();
}
