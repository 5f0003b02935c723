//! Command-line contract of `ge-image`: help, version, bad arguments and the
//! input checks that fail before any appliance is launched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use predicates::prelude::*;

fn bin() -> Command {
    Command::cargo_bin("ge-image").unwrap()
}

#[test]
fn help_lists_the_subcommands() {
    bin()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage: ge-image"))
        .stdout(predicate::str::contains("inspect"))
        .stdout(predicate::str::contains("prepare"))
        .stdout(predicate::str::contains("--log-format"));
    bin()
        .args(["prepare", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--operations"))
        .stdout(predicate::str::contains("--no-shrink"))
        .stdout(predicate::str::contains("--compress"))
        .stdout(predicate::str::contains("--accel"));
}

#[test]
fn version_prints_name_and_version() {
    bin()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(concat!(
            "ge-image ",
            env!("CARGO_PKG_VERSION")
        )));
}

#[test]
fn unknown_argument_exits_2_with_a_message() {
    bin()
        .arg("--no-such-flag")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unexpected argument '--no-such-flag'",
        ));
}

#[test]
fn no_command_exits_2_and_says_so() {
    bin()
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no command given"));
}

#[test]
fn list_operations_marks_the_defaults() {
    let out = bin()
        .args(["prepare", "--list-operations"])
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap()
            .to_string()
    };
    assert!(line("machine-id").starts_with("machine-id * "));
    assert!(line("ge-support-user").starts_with("ge-support-user * "));
    assert!(line("user-account").starts_with("user-account   "));
    assert!(line("fs-uuids").starts_with("fs-uuids   "));
    assert!(line("selinux-relabel").starts_with("selinux-relabel * "));
    assert_eq!(text.lines().count(), 46);
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.qcow2");
    let out = dir.path().join("out.qcow2");
    bin()
        .args(["prepare"])
        .arg(&missing)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("missing.qcow2: no such file"));
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello\n").unwrap();
    bin()
        .arg("inspect")
        .arg(&text)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a disk image"));
    bin()
        .args([
            "prepare",
            "x.qcow2",
            "-o",
            "y.qcow2",
            "--operations",
            "machine-id,bogus",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown operation `bogus`"));
    bin()
        .args(["prepare", "x.qcow2", "-o", "y.qcow2", "--size", "5X"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--size: invalid size `5X`"));
    bin()
        .args(["prepare", "x.qcow2", "-o", "y.qcow2", "--compress=lz4"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("lz4"));
    bin()
        .args([
            "prepare",
            "x.qcow2",
            "-o",
            "y.qcow2",
            "--format",
            "raw",
            "--compress",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--compress needs --format qcow2"));
    bin().args(["prepare", "x.qcow2"]).assert().code(2);
}
