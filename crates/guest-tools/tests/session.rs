//! One appliance on an overlay of the test image: inspect, every sysprep
//! operation (fodder there before, gone after), then sparsify (allocated size
//! drops after a large file is deleted).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use guest_tools::{SysprepOptions, MIB};

fn names(list: &[&'static str]) -> BTreeSet<&'static str> {
    list.iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_sysprep_and_sparsify_in_one_session() {
    let image = cloud_test_support::test_image();
    let dir = tempfile::tempdir().unwrap();
    let disk = common::overlay(&image, dir.path(), "work.qcow2");
    let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
    let session = common::open_tcg(&[(&disk, "qcow2")], Some(ptx)).await;

    // --- inspect ---
    let i = session.inspect().await.unwrap();
    assert_eq!(i.os_type, "linux");
    assert_eq!(i.distro, "debian");
    assert_eq!(i.major_version, 12);
    assert_eq!(i.arch, "x86_64");
    assert_eq!(i.package_format, "deb");
    assert_eq!(i.package_management, "apt");
    assert_eq!(i.init_system, "systemd");
    assert_eq!(i.format, "installed");
    assert_eq!(i.hostname, "ge-test");
    assert_eq!(i.root, "/dev/sda1");
    assert_eq!(
        i.mountpoints.get("/").map(String::as_str),
        Some("/dev/sda1")
    );
    let rootfs = i
        .filesystems
        .iter()
        .find(|f| f.device == "/dev/sda1")
        .unwrap();
    assert_eq!(rootfs.fs_type, "ext4");
    assert_eq!(rootfs.mountpoint.as_deref(), Some("/"));
    for pkg in [
        "linux-image-amd64",
        "openssh-server",
        "systemd",
        "grub-pc-bin",
        "bash",
        "dpkg",
    ] {
        let app = i.applications.iter().find(|a| a.name == pkg);
        assert!(
            app.is_some_and(|a| !a.version.is_empty()),
            "{pkg} not listed with a version"
        );
    }
    assert!(i.to_text().contains("distro:             debian"));

    // --- every planted file is there before sysprep; write and delete a big file ---
    let fodder = common::fodder();
    let before = fodder.clone();
    session
        .with_handle(move |g| {
            g.mount("/dev/sda1", "/")?;
            for (op, path, check) in &before {
                assert!(g.exists(path)?, "{op}: {path} missing before sysprep");
                if let Some(key) = check.strip_prefix("noline=") {
                    assert!(
                        g.cat(path)?.lines().any(|l| l.starts_with(key)),
                        "{op}: no {key} line in {path}"
                    );
                }
            }
            assert!(g.cat("/etc/passwd")?.contains("\nsupport:"));
            g.fill_pattern("0123456789abcdef", 300 * 1024 * 1024, "/big.bin")?;
            g.sync()?;
            g.rm("/big.bin")?;
            g.sync()?;
            g.umount_all()
        })
        .await
        .unwrap();
    let allocated_with_garbage = common::allocated(&disk);
    assert!(
        allocated_with_garbage > 300 * MIB,
        "the big file was not written ({allocated_with_garbage} bytes)"
    );

    // --- the default operations ---
    let results = session.sysprep(SysprepOptions::default()).await.unwrap();
    let ran: BTreeSet<&str> = results.iter().map(|r| r.name).collect();
    assert_eq!(
        ran,
        guest_tools::sysprep::defaults().iter().copied().collect()
    );
    for r in &results {
        match r.name {
            // No customize options, no LVM in the test image.
            "customize" | "lvm-uuids" => {
                assert!(r.changed.is_empty(), "{}: {:?}", r.name, r.changed)
            }
            name if fodder.iter().any(|(op, _, _)| op == name) => {
                assert!(!r.changed.is_empty(), "{name} changed nothing")
            }
            _ => {}
        }
    }
    let after = fodder.clone();
    session
        .with_handle(move |g| {
            g.mount("/dev/sda1", "/")?;
            for (op, path, check) in &after {
                match check.as_str() {
                    "gone" => assert!(!g.exists(path)?, "{op}: {path} still there"),
                    "empty" => assert_eq!(g.filesize(path)?, 0, "{op}: {path} not emptied"),
                    c => {
                        let key = c.strip_prefix("noline=").unwrap();
                        assert!(
                            !g.cat(path)?.lines().any(|l| l.starts_with(key)),
                            "{op}: {key} left in {path}"
                        );
                    }
                }
            }
            let passwd = g.cat("/etc/passwd")?;
            assert!(!passwd.contains("\nsupport:") && passwd.contains("\ndebian:"));
            assert!(!g.cat("/etc/group")?.contains("\nsupport:"));
            assert!(!g.cat("/etc/shadow")?.contains("\nsupport:"));
            // What sysprep must leave alone.
            assert!(g.is_dir("/home/debian", Default::default())?);
            assert!(g.exists("/etc/machine-id")?);
            assert!(g.exists("/usr/bin/bash")?);
            assert!(g.exists("/var/log")?);
            assert_eq!(g.cat("/etc/hostname")?.trim(), "ge-test");
            // Fodder for the operations that are off by default.
            g.write("/etc/sysconfig/iptables", b"*filter\n")?;
            g.mkdir_p("/etc/krb5kdc")?;
            g.write("/etc/krb5kdc/kdc.conf", b"[kdcdefaults]\n")?;
            g.umount_all()
        })
        .await
        .unwrap();

    // --- the operations that are off by default ---
    let old_uuid = session
        .with_handle(|g| g.vfs_uuid("/dev/sda1"))
        .await
        .unwrap();
    let extra = guest_tools::sysprep::parse_operations(
        "user-account,fs-uuids,flag-reconfiguration,firewall-rules,kerberos-data",
    )
    .unwrap();
    assert_eq!(
        extra,
        names(&[
            "user-account",
            "fs-uuids",
            "flag-reconfiguration",
            "firewall-rules",
            "kerberos-data"
        ])
    );
    let results = session
        .sysprep(SysprepOptions {
            operations: extra,
            keep_users: vec![],
        })
        .await
        .unwrap();
    assert!(results.iter().all(|r| !r.changed.is_empty()), "{results:?}");
    let old = old_uuid.clone();
    session
        .with_handle(move |g| {
            let new_uuid = g.vfs_uuid("/dev/sda1")?;
            assert_ne!(new_uuid, old, "fs-uuids kept the UUID");
            g.mount("/dev/sda1", "/")?;
            assert!(
                g.cat("/etc/fstab")?.contains(&format!("UUID={new_uuid}")),
                "fstab not updated"
            );
            let grub = g.cat("/boot/grub/grub.cfg")?;
            assert!(
                grub.contains(&new_uuid) && !grub.contains(&old),
                "grub.cfg not updated"
            );
            assert!(
                !g.cat("/etc/passwd")?.contains("\ndebian:"),
                "user-account kept debian"
            );
            assert!(!g.exists("/home/debian")?);
            assert!(g.exists("/.unconfigured")?);
            assert!(!g.exists("/etc/sysconfig/iptables")?);
            assert!(!g.exists("/etc/krb5kdc/kdc.conf")?);
            g.umount_all()
        })
        .await
        .unwrap();

    // --- sparsify: trimming gives the deleted file's clusters back ---
    session.sparsify(0).await.unwrap();
    session.close().await.unwrap();
    let allocated_after = common::allocated(&disk);
    assert!(
        allocated_after + 250 * MIB < allocated_with_garbage,
        "allocated {allocated_with_garbage} -> {allocated_after}: the deleted file was not trimmed"
    );
    let out = dir.path().join("out.qcow2");
    guest_tools::convert(&disk, &out, guest_tools::OutputFormat::Qcow2, None).unwrap();
    // Flattened, the output is about the base image: none of the deleted file's 300 MiB.
    assert!(
        common::allocated(&out) < common::allocated(&image) + 100 * MIB,
        "output {} vs base image {}",
        common::allocated(&out),
        common::allocated(&image)
    );

    let steps: Vec<_> = common::received(&mut prx)
        .into_iter()
        .map(|p| p.step)
        .collect();
    for s in [
        guest_tools::Step::Launch,
        guest_tools::Step::Inspect,
        guest_tools::Step::Sysprep,
        guest_tools::Step::Sparsify,
        guest_tools::Step::Shutdown,
    ] {
        assert!(steps.contains(&s), "no {s:?} progress event");
    }
}
