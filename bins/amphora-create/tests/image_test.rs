//! `amphora-create --test IMAGE` (Octavia's `image-tests.sh`, parameterised
//! by the build options) against a small Debian-shaped image built here:
//! a whole-disk ext4 filesystem made with `mkfs.ext4 -d` from a tree with
//! Debian's release files, an x86_64 binary and a dpkg database listing
//! haproxy and keepalived, converted to qcow2 with `qemu-img`.
//! libguestfs inspects it (vm test group: one appliance at a time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command as Std;

use assert_cmd::Command;
use predicates::prelude::*;

fn make_image(dir: &Path, packages: &[&str]) -> std::path::PathBuf {
    let tree = dir.join("tree");
    for d in ["etc", "bin", "usr/bin", "var/lib/dpkg/info", "root", "tmp"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("etc/debian_version"), "12.8\n").unwrap();
    std::fs::write(
        tree.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
    )
    .unwrap();
    std::fs::write(tree.join("etc/hostname"), "amphora\n").unwrap();
    std::fs::write(
        tree.join("etc/fstab"),
        "LABEL=cloudimg-rootfs / ext4 defaults 0 1\n",
    )
    .unwrap();
    for b in ["bin/ls", "bin/bash"] {
        std::fs::copy(Path::new("/").join(b), tree.join(b)).unwrap();
    }
    let mut status = String::new();
    for p in packages {
        status.push_str(&format!(
            "Package: {p}\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: 1.0-1\nDescription: {p}\n\n"
        ));
    }
    std::fs::write(tree.join("var/lib/dpkg/status"), status).unwrap();
    let raw = dir.join("disk.raw");
    let ok = Std::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "cloudimg-rootfs", "-d"])
        .arg(&tree)
        .arg(&raw)
        .arg("2G")
        .status()
        .unwrap();
    assert!(ok.success());
    let qcow = dir.join("amphora-x64-haproxy.qcow2");
    let ok = Std::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::remove_file(raw).unwrap();
    qcow
}

fn bin() -> Command {
    let mut c = Command::cargo_bin("amphora-create").unwrap();
    c.env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg");
    c
}

#[test]
fn test_passes_for_a_matching_image_and_names_the_mismatch_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), &["haproxy", "keepalived", "bash"]);
    // Positive: -i debian-minimal, amd64, 2 GB; a directory finds
    // amphora-x64-haproxy.qcow2 in it, as image-tests.sh does.
    bin()
        .args(["-i", "debian-minimal", "-a", "amd64", "--test"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("Amphora image looks good."));
    // Negative, no appliance needed: the size of -s.
    bin()
        .args(["-i", "debian-minimal", "-s", "3", "--test"])
        .arg(&img)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "ERROR: Amphora image size is not 3 GB (found 2 GB",
        ));
    // Negative: the default build is Ubuntu.
    bin()
        .arg("--test")
        .arg(&img)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "ERROR: Amphora image distro is \"debian\", expected \"ubuntu\"",
        ));
    // Missing image.
    bin()
        .arg("--test")
        .arg(dir.path().join("nope.qcow2"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "ERROR: Amphora image not found at:",
        ));
}

#[test]
fn test_fails_when_keepalived_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let img = make_image(dir.path(), &["haproxy"]);
    bin()
        .args(["-i", "debian-minimal", "--test"])
        .arg(&img)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "ERROR: Amphora image is missing the keepalived package",
        ));
}
