//! `prepare` end to end on the test image: sysprep + shrink + sparsify in one
//! appliance, the virtual size from the original's rule, the filesystem
//! intact, and the result boots under QEMU TCG to a login prompt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use guest_tools::{Accel, Compression, OutputFormat, PrepareOptions, MIB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_shrinks_and_the_result_boots() {
    let image = cloud_test_support::test_image();
    let dir = tempfile::tempdir().unwrap();
    let input = common::overlay(&image, dir.path(), "input.qcow2");
    let input_before = std::fs::read(&input).unwrap();
    let out = dir.path().join("out.qcow2");

    let report = guest_tools::prepare(
        &input,
        &out,
        PrepareOptions {
            accel: Accel::Tcg,
            shrink: true,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();

    // The input is never written.
    assert_eq!(
        std::fs::read(&input).unwrap(),
        input_before,
        "prepare modified its input"
    );
    // Size rule: the minimum root filesystem picks the virtual size.
    let shrink = report.shrink.clone().unwrap();
    let rule = guest_tools::target_size_for(shrink.min_fs_bytes);
    assert!(
        shrink.min_fs_bytes < 1000 * MIB,
        "test image root is {} at its minimum",
        shrink.min_fs_bytes
    );
    assert_eq!(rule, Some(1024 * MIB));
    assert_eq!(shrink.target_size, rule);
    assert_eq!(report.output_virtual_size, 1024 * MIB);
    assert_eq!(guest_tools::info(&out).unwrap().virtual_size, 1024 * MIB);
    assert_eq!(guest_tools::info(&out).unwrap().format, "qcow2");
    assert!(report
        .sysprep
        .iter()
        .any(|r| r.name == "ge-support-user" && !r.changed.is_empty()));

    // The filesystem is intact: clean fsck, fills its partition, fstab and
    // grub.cfg name its UUID, the OS still inspects, sysprep's work is there.
    let check = common::overlay(&out, dir.path(), "check.qcow2");
    let session = common::open_tcg(&[(&check, "qcow2")], None).await;
    let i = session.inspect().await.unwrap();
    assert_eq!(
        (i.distro.as_str(), i.major_version, i.arch.as_str()),
        ("debian", 12, "x86_64")
    );
    assert!(i.applications.iter().any(|a| a.name == "linux-image-amd64"));
    session
        .with_handle(|g| {
            g.e2fsck(
                "/dev/sda1",
                guestfs::E2fsckOptArgs {
                    correct: None,
                    forceall: Some(true),
                },
            )?;
            let parts = g.part_list("/dev/sda")?;
            assert_eq!(parts.len(), 1);
            assert_eq!(parts[0].part_start, MIB);
            assert!(g.part_get_bootable("/dev/sda", 1)?);
            let tl = g.tune2fs_l("/dev/sda1")?;
            let fs = tl["Block count"].parse::<u64>().unwrap()
                * tl["Block size"].parse::<u64>().unwrap();
            assert!(
                fs + 4 * MIB >= parts[0].part_size,
                "filesystem {fs} does not fill partition {}",
                parts[0].part_size
            );
            let uuid = g.vfs_uuid("/dev/sda1")?;
            g.mount_ro("/dev/sda1", "/")?;
            assert!(g.cat("/etc/fstab")?.contains(&format!("UUID={uuid}")));
            assert!(g.cat("/boot/grub/grub.cfg")?.contains(&uuid));
            assert!(g.exists("/usr/bin/bash")? && g.exists("/boot/grub/i386-pc/core.img")?);
            assert!(!g.exists("/home/support")? && !g.exists("/etc/ssh/ssh_host_ed25519_key")?);
            assert_eq!(g.filesize("/etc/machine-id")?, 0);
            g.umount_all()
        })
        .await
        .unwrap();
    session.close().await.unwrap();

    // Compressed output of the same disk: zstd is recorded and smaller.
    let z = dir.path().join("out-zstd.qcow2");
    guest_tools::convert(&out, &z, OutputFormat::Qcow2, Some(Compression::Zstd)).unwrap();
    let zinfo = std::process::Command::new("qemu-img")
        .args(["info", "-U"])
        .arg(&z)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&zinfo.stdout).contains("compression type: zstd"));
    assert!(common::allocated(&z) < common::allocated(&out));

    // It boots: GRUB, kernel, systemd, a getty on ttyS0.
    let serial = common::boot_to_login(&out, Duration::from_secs(600));
    assert!(serial.contains("ge-test login:"));
}
