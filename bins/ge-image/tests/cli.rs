//! Command-line contract of `ge-image`: help, version, bad arguments and the
//! input checks that fail before any appliance is launched.
//!
//! `--help`, `--version` and an unknown option run through the shared
//! `cli_contract_tests!` (exit 2 on a bad argument); the rest checks what is
//! ge-image's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;

use assert_cmd::Command;
use predicates::prelude::*;

fn bin() -> Command {
    Command::cargo_bin("ge-image").unwrap()
}

cli_common::cli_contract_tests!("ge-image");

#[test]
fn help_lists_the_subcommands() {
    bin()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("inspect"))
        .stdout(predicate::str::contains("prepare"));
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

/// `prepare x.qcow2 -o y.qcow2` followed by `extra`.
fn prepare_x_to_y(extra: &[&str]) -> Vec<OsString> {
    ["prepare", "x.qcow2", "-o", "y.qcow2"]
        .iter()
        .chain(extra)
        .map(OsString::from)
        .collect()
}

#[test]
fn bad_inputs_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.qcow2");
    let out = dir.path().join("out.qcow2");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello\n").unwrap();
    let cases: Vec<(Vec<OsString>, i32, &str)> = vec![
        (
            vec!["prepare".into(), missing.into(), "-o".into(), out.into()],
            1,
            "missing.qcow2: no such file",
        ),
        (vec!["inspect".into(), text.into()], 1, "not a disk image"),
        (
            prepare_x_to_y(&["--operations", "machine-id,bogus"]),
            1,
            "unknown operation `bogus`",
        ),
        (
            prepare_x_to_y(&["--size", "5X"]),
            1,
            "--size: invalid size `5X`",
        ),
        (prepare_x_to_y(&["--compress=lz4"]), 2, "lz4"),
        (
            prepare_x_to_y(&["--format", "raw", "--compress"]),
            1,
            "--compress needs --format qcow2",
        ),
    ];
    for (args, code, needle) in cases {
        bin()
            .args(&args)
            .assert()
            .code(code)
            .stderr(predicate::str::contains(needle));
    }
    bin().args(["prepare", "x.qcow2"]).assert().code(2);
}
