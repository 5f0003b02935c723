//! `-l`, `-x` and `-f` through a real (deliberately short) build: the
//! element list is replaced (`DIB_ELEMENTS`) by a probe element whose
//! root.d hook reports the build directory's filesystem, traces itself
//! under `DIB_DEBUG_TRACE` and stops the build before anything slow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::dib_repo;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn probe_elements() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/diskimage/probe-elements")
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// diskimage-builder's tmpfs rule: memory of at least 2 × DIB_MIN_TMPFS (2) GB.
fn tmpfs_expected() -> bool {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|kib| kib >= 4 * 1024 * 1024)
}

/// Run the probe build in `work` with `flags`; the build must fail (the
/// probe stops it) and leave nothing mounted under `work`.
fn probe(work: &Path, flags: &[&str]) -> std::process::Output {
    let out = Command::cargo_bin("amphora-create")
        .unwrap()
        .current_dir(work)
        .env_remove("DIB_LOCAL_ELEMENTS")
        .env_remove("ELEMENTS_PATH")
        .env_remove("OCTAVIA_REPO_PATH")
        .env_remove("DIB_NO_TMPFS")
        .env_remove("DIB_MIN_TMPFS")
        .env("DIB_REPO_PATH", dib_repo())
        .env("DIB_ELEMENTS", "fx-build-probe")
        .env("DIB_LOCAL_ELEMENTS_PATH", probe_elements())
        .args(["-i", "debian-minimal", "-c"])
        .arg(work.join("cache"))
        .args(flags)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the probe stops the build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = std::fs::canonicalize(work).unwrap().display().to_string();
    let left: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&w))
        .collect();
    assert!(left.is_empty(), "left mounted: {left:?}");
    out
}

#[test]
fn dash_l_writes_the_build_log_and_dash_x_traces_the_hooks() {
    if !is_root() {
        eprintln!("needs root (the build mounts); skipped");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = probe(work.path(), &["-l", "logs/amp.log", "-x"]);
    let log = std::fs::read_to_string(work.path().join("logs/amp.log")).unwrap();
    assert!(
        log.contains("dib-run-parts Running root.d/10-probe"),
        "{log}"
    );
    assert!(log.contains("fx-build-probe stops the build here"), "{log}");
    // -x: DIB_DEBUG_TRACE=1 reached the hook, which traced its commands.
    assert!(
        log.contains("+ echo 'fx-build-probe build directory filesystem:"),
        "{log}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("amp.log"), "{stderr}");

    // Without -x the hook does not trace; without -l the log is not there.
    let work2 = tempfile::tempdir().unwrap();
    probe(work2.path(), &["-l", "amp.log"]);
    let log2 = std::fs::read_to_string(work2.path().join("amp.log")).unwrap();
    assert!(log2.contains("fx-build-probe stops the build here"));
    assert!(!log2.contains("+ echo 'fx-build-probe"), "{log2}");
}

#[test]
fn dash_f_builds_outside_a_tmpfs() {
    if !is_root() {
        eprintln!("needs root (the build mounts); skipped");
        return;
    }
    let fs = |flags: &[&str]| -> String {
        let work = tempfile::tempdir().unwrap();
        let mut f = vec!["-l", "b.log"];
        f.extend(flags);
        probe(work.path(), &f);
        let log = std::fs::read_to_string(work.path().join("b.log")).unwrap();
        log.lines()
            .find_map(|l| l.strip_prefix("fx-build-probe build directory filesystem: "))
            .unwrap_or_else(|| panic!("{log}"))
            .trim()
            .to_string()
    };
    assert_eq!(fs(&[]) == "tmpfs", tmpfs_expected());
    assert_ne!(fs(&["-f"]), "tmpfs");
}
