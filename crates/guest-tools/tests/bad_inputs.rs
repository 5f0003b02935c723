//! Clear errors for inputs that are not usable disk images.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use guest_tools::{Accel, Error};

fn qemu_img(args: &[&str]) {
    assert!(Command::new("qemu-img")
        .args(args)
        .status()
        .unwrap()
        .success());
}

#[test]
fn host_side_checks_need_no_appliance() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let missing = d.join("nope.qcow2");
    let e = guest_tools::check_input(&missing).unwrap_err();
    assert!(matches!(e, Error::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("nope.qcow2: no such file"));

    let text = d.join("notes.txt");
    std::fs::write(&text, "this is not a disk\n").unwrap();
    let e = guest_tools::check_input(&text).unwrap_err();
    assert!(matches!(e, Error::NotADisk { .. }), "{e}");
    assert!(e.to_string().contains("not a disk image"), "{e}");

    let e = guest_tools::check_input(d).unwrap_err();
    assert!(matches!(e, Error::NotADisk { .. }), "{e}");

    let blank = d.join("blank.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", blank.to_str().unwrap(), "1G"]);
    let e = guest_tools::check_input(&blank).unwrap_err();
    assert!(matches!(e, Error::EmptyDisk { .. }), "{e}");

    let zero = d.join("zero.raw");
    std::fs::write(&zero, b"").unwrap();
    let e = guest_tools::check_input(&zero).unwrap_err();
    assert!(matches!(e, Error::EmptyDisk { .. }), "{e}");

    let secret = d.join("key");
    std::fs::write(&secret, "test-only-key").unwrap();
    let enc = d.join("enc.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "--object",
        &format!("secret,id=s0,file={}", secret.display()),
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s0",
        enc.to_str().unwrap(),
        "64M",
    ]);
    let e = guest_tools::check_input(&enc).unwrap_err();
    assert!(matches!(e, Error::Encrypted { .. }), "{e}");
}

#[test]
fn image_in_use_by_a_vm_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("busy.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", disk.to_str().unwrap(), "64M"]);
    // A paused VM holds the image's write lock.
    let mut vm = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-S",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
        ])
        .arg("-drive")
        .arg(format!("file={},format=qcow2", disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut err = None;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if let Err(e) = guest_tools::check_input(&disk) {
            if matches!(e, Error::InUse { .. }) {
                err = Some(e);
                break;
            }
        }
    }
    vm.kill().unwrap();
    vm.wait().unwrap();
    let e = err.expect("image held by a VM was not reported as in use");
    assert!(e.to_string().contains("in use"), "{e}");
}

fn raw_with_partition(path: &Path) {
    common::sfdisk_raw(path, 64 * 1024 * 1024, "label: dos\nstart=2048, type=83\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_without_filesystem_or_os() {
    let dir = tempfile::tempdir().unwrap();
    // A partition table but no filesystem: an empty disk.
    let empty = dir.path().join("parts.raw");
    raw_with_partition(&empty);
    let e = guest_tools::inspect(&empty, Accel::Tcg, None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::EmptyDisk { .. }), "{e}");
    assert!(
        e.to_string().contains("partition(s) but no filesystem"),
        "{e}"
    );

    // A filesystem with no operating system in it.
    let noos = dir.path().join("noos.raw");
    std::fs::File::create(&noos)
        .unwrap()
        .set_len(64 * 1024 * 1024)
        .unwrap();
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&noos)
        .status()
        .unwrap()
        .success());
    let e = guest_tools::prepare(
        &noos,
        &dir.path().join("out.qcow2"),
        guest_tools::PrepareOptions {
            accel: Accel::Tcg,
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::NoOs { .. }), "{e}");
    assert!(e.to_string().contains("no operating system"), "{e}");
    assert!(!dir.path().join("out.qcow2").exists());
}
