//! Shrinking a GPT disk: GPT keeps a backup header at the end of the disk, so
//! the image is copied into a smaller drive attached to the same appliance
//! (partition table recreated with the same GUIDs, filesystem copied at its
//! minimum size, then grown). Built on the host with sfdisk + mkfs.ext4 -d.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use guest_tools::MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpt_root_is_copied_into_the_smaller_drive() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny Linux-looking root with some data.
    let root = dir.path().join("root");
    for d in ["etc", "usr/bin", "var/lib/data"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::fs::write(
        root.join("etc/fstab"),
        "LABEL=gptroot / ext4 defaults 0 1\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/hostname"), "gpt-test\n").unwrap();
    std::fs::write(root.join("etc/debian_version"), "12.0\n").unwrap();
    std::fs::copy("/usr/bin/ls", root.join("usr/bin/ls")).unwrap();
    let payload: Vec<u8> = (0..40 * MIB as usize)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(root.join("var/lib/data/payload.bin"), &payload).unwrap();

    // 3 GiB raw disk, GPT, one partition from 1 MiB to the end, ext4 at that offset.
    let disk = dir.path().join("gpt.raw");
    common::sfdisk_raw(
        &disk,
        3 * 1024 * MIB,
        "label: gpt\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\"\n",
    );
    // sfdisk aligns the end of the partition down to a MiB: stay well inside it.
    let part_bytes = 3 * 1024 * MIB - 4 * MIB;
    let blocks_4k = part_bytes / 4096;
    let st = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-L",
            "gptroot",
            "-E",
            "offset=1048576",
            "-d",
        ])
        .arg(&root)
        .arg(&disk)
        .arg(blocks_4k.to_string())
        .status()
        .unwrap();
    assert!(st.success());

    let target = dir.path().join("small.qcow2");
    guest_tools::create_qcow2(&target, 1024 * MIB).unwrap();
    let session = common::open_tcg(&[(&disk, "raw"), (&target, "qcow2")], None).await;
    let before = session
        .with_handle(|g| {
            Ok((
                g.vfs_uuid("/dev/sda1")?,
                g.part_get_gpt_guid("/dev/sda", 1)?,
                g.part_get_disk_guid("/dev/sda")?,
            ))
        })
        .await
        .unwrap();
    let report = session.shrink(None).await.unwrap();
    assert_eq!(
        report.drive_index, 1,
        "GPT must be copied into the second drive"
    );
    assert_eq!(report.cut_at, None);
    assert_eq!(report.target_size, Some(1024 * MIB));
    assert!(report.min_fs_bytes < 1000 * MIB);
    session.sparsify(1).await.unwrap();
    let expected = payload.len() as i64;
    let (uuid, part_guid, disk_guid) = before;
    session
        .with_handle(move |g| {
            assert_eq!(g.part_get_parttype("/dev/sdb")?, "gpt");
            let parts = g.part_list("/dev/sdb")?;
            assert_eq!(parts.len(), 1);
            assert_eq!(parts[0].part_start, MIB);
            assert!(
                parts[0].part_end >= 1024 * MIB - 34 * 512 - MIB,
                "root does not reach the end"
            );
            assert_eq!(g.part_get_gpt_guid("/dev/sdb", 1)?, part_guid);
            assert_eq!(g.part_get_disk_guid("/dev/sdb")?, disk_guid);
            assert_eq!(g.part_get_name("/dev/sdb", 1)?, "root");
            assert_eq!(g.vfs_uuid("/dev/sdb1")?, uuid);
            g.e2fsck(
                "/dev/sdb1",
                guestfs::E2fsckOptArgs {
                    correct: None,
                    forceall: Some(true),
                },
            )?;
            let tl = g.tune2fs_l("/dev/sdb1")?;
            let fs = tl["Block count"].parse::<u64>().unwrap()
                * tl["Block size"].parse::<u64>().unwrap();
            assert!(
                fs + 4 * MIB >= parts[0].part_size,
                "filesystem was not grown"
            );
            g.mount_ro("/dev/sdb1", "/")?;
            assert_eq!(g.filesize("/var/lib/data/payload.bin")?, expected);
            assert_eq!(g.cat("/etc/hostname")?, "gpt-test\n");
            g.umount_all()
        })
        .await
        .unwrap();
    let digest = session.with_handle(|g| {
        g.mount_ro("/dev/sdb1", "/")?;
        let d = g.checksum("sha256", "/var/lib/data/payload.bin")?;
        g.umount_all()?;
        Ok(d)
    });
    let digest = digest.await.unwrap();
    session.close().await.unwrap();
    let host = Command::new("sha256sum")
        .arg(root.join("var/lib/data/payload.bin"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&host.stdout).starts_with(&digest),
        "payload changed in the copy"
    );
}
