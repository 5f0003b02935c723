//! Command-line contract of `packuilon`: help, version, bad arguments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use predicates::prelude::*;

cli_common::cli_contract_tests!("packuilon");

#[test]
fn no_command_exits_2_and_says_so() {
    Command::cargo_bin("packuilon")
        .unwrap()
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no command given"));
}
