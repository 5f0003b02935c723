//! The full Debian amphora: `amphora-create -i debian-minimal` builds it
//! through the diskimage builder over diskimage-builder's element tree and
//! the workspace's amphora elements, `--test` passes on it, and it boots to a
//! login prompt under QEMU TCG.
//!
//! The image cache lives under `~/.cache/openstack-image-tools/amphora/`, so
//! a rerun restores the cached tree and only assembles the disk.
//! diskimage-builder's elements come from the reference venv
//! (`scripts/dib-venv.sh`). vm test group (slow).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use cloud_test_support::boot_to_login;
use common::dib_repo;
use std::path::PathBuf;
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;

fn cache_root() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/openstack-image-tools")
}

#[test]
fn debian_amphora_builds_passes_its_tests_and_boots() {
    let work = tempfile::tempdir().unwrap();
    // A stable output path: it is part of the build's inputs (DIB_ARGS), so
    // a rerun finds the cached tree.
    let out = cache_root().join("amphora/amphora-x64-haproxy.qcow2");
    let cache = cache_root().join("amphora/image-cache");
    std::fs::create_dir_all(&cache).unwrap();
    Command::cargo_bin("amphora-create")
        .unwrap()
        .current_dir(work.path())
        .env("DIB_REPO_PATH", dib_repo())
        .env("LIBGUESTFS_BACKEND", "direct")
        .args(["-i", "debian-minimal", "-w"])
        .arg(work.path())
        .arg("-o")
        .arg(&out)
        .arg("-c")
        .arg(&cache)
        .timeout(Duration::from_secs(3600))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Successfully built the amphora image using amphora-agent from the master branch.",
        ))
        .stdout(predicate::str::contains(format!(
            "Amphora image size: {}",
            out.display()
        )));
    // The temporary build directory is gone.
    assert!(std::fs::read_dir(work.path()).unwrap().flatten().all(|e| !e
        .file_name()
        .to_string_lossy()
        .starts_with("diskimage-create.")));
    Command::cargo_bin("amphora-create")
        .unwrap()
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .args(["-i", "debian-minimal", "--test"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("Amphora image looks good."));
    let console = boot_to_login(&out, "qcow2", work.path());
    assert!(console.contains("login:"));
}
