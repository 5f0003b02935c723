//! Command-line contract of `amphora-create`: help, version, bad arguments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use predicates::prelude::*;

fn bin() -> Command {
    Command::cargo_bin("amphora-create").unwrap()
}

#[test]
fn help_describes_the_tool() {
    bin()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage: amphora-create"))
        .stdout(predicate::str::contains("--log-format"));
}

#[test]
fn version_prints_name_and_version() {
    bin()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(concat!(
            "amphora-create ",
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
