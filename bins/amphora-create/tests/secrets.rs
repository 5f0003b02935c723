//! The root password given with `-r` never leaves `amphora-create` except
//! through `DIB_PASSWORD` in a build's environment: the binary runs at its
//! most verbose level (`--verbose` ×3, text and JSON log records, `-l` log
//! file) over runs that fail in every way we can provoke before a build
//! (an invalid option value, an unknown host OS, a missing host package)
//! and over `--dry-run`, and the password appears neither on stdout, stderr,
//! in the `-l` log or any other file written, nor on the command line of
//! the children it starts (fake `dpkg-query` and `getenforce` first on
//! `PATH` record their own `/proc/<pid>/cmdline`). Its own command line
//! holds the password because that is the original's interface (`-r`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::dib_repo;
use std::path::{Path, PathBuf};
use std::process::Command;

use cloud_test_support::leaks::{assert_no_secret, files_under};

const PASSWORD: &str = "Kn0wn-R00t%Pa55;(zq)s";

fn assert_clean(what: &str, text: &str) {
    assert_no_secret(what, text, &[PASSWORD]);
}

/// A host root (`AMPHORA_HOST_ROOT`) with or without an os-release, and a
/// `bin` directory of fake children that record their command lines in
/// `cmdlines` and fail.
fn setup(dir: &Path, os_release: bool) -> (PathBuf, PathBuf) {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).unwrap();
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    if os_release {
        std::fs::write(
            root.join("etc/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12\"\nNAME=\"Debian GNU/Linux\"\n",
        )
        .unwrap();
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["dpkg-query", "getenforce", "rpm"] {
        let p = bin.join(name);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"{name}: $(tr '\\0' ' ' < /proc/$$/cmdline)\" >> {d}/cmdlines\nexit 1\n",
                d = dir.display()
            ),
        )
        .unwrap();
        assert!(Command::new("chmod")
            .arg("+x")
            .arg(&p)
            .status()
            .unwrap()
            .success());
    }
    (root, bin)
}

/// Run amphora-create with `args` (plus `-r PASSWORD -l build.log` and the
/// most verbose logging) in both log formats; returns the text run's
/// stdout + stderr and checks every output and file.
fn run_clean(dir: &Path, os_release: bool, args: &[&str], code: i32) -> String {
    let (root, bin) = setup(dir, os_release);
    let mut text_out = String::new();
    for format in ["text", "json"] {
        let work = dir.join(format!("work-{format}"));
        std::fs::create_dir_all(&work).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_amphora-create"))
            .current_dir(&work)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env_remove("RUST_LOG")
            .env("DIB_REPO_PATH", dib_repo())
            .env("AMPHORA_HOST_ROOT", &root)
            .args([
                "--verbose",
                "--verbose",
                "--verbose",
                "--log-format",
                format,
            ])
            .args(["-i", "debian-minimal", "-r", PASSWORD, "-l"])
            .arg(work.join("build.log"))
            .arg("-c")
            .arg(work.join("cache"))
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stdout}{stderr}");
        assert_clean(&format!("{format} stdout of {args:?}"), &stdout);
        assert_clean(&format!("{format} stderr of {args:?}"), &stderr);
        for file in files_under(&work) {
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            assert_clean(&file.display().to_string(), &text);
        }
        if format == "text" {
            text_out = format!("{stdout}{stderr}");
        }
    }
    let cmdlines = dir.join("cmdlines");
    if cmdlines.exists() {
        assert_clean(
            "a child's command line",
            &std::fs::read_to_string(cmdlines).unwrap(),
        );
    }
    text_out
}

#[test]
fn invalid_value_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_clean(dir.path(), true, &["-s", "x"], 3);
    assert!(out.contains("-s"), "{out}");
}

#[test]
fn dry_run_says_the_password_is_set_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_clean(dir.path(), true, &["--dry-run"], 0);
    assert!(out.contains("DIB_PASSWORD=<set, not shown>"), "{out}");
}

#[test]
fn unknown_host_os_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_clean(dir.path(), false, &[], 2);
    assert!(out.contains("Unknown Host OS"), "{out}");
}

#[test]
fn missing_host_package_is_reported_without_the_password_on_any_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_clean(dir.path(), true, &[], 1);
    assert!(out.contains("is not installed"), "{out}");
    let cmdlines = std::fs::read_to_string(dir.path().join("cmdlines")).unwrap();
    assert!(cmdlines.contains("dpkg-query: "), "{cmdlines}");
}
