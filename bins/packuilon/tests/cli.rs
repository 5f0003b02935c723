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

#[test]
fn domain_and_sandbox_are_mutually_exclusive() {
    Command::cargo_bin("packuilon")
        .unwrap()
        .args([
            "trigger",
            "--personality",
            "p",
            "--domain",
            "prod",
            "--sandbox",
            "a/b",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot be used with"));
}

#[test]
fn sandbox_must_be_owner_slash_name() {
    Command::cargo_bin("packuilon")
        .unwrap()
        .args(["trigger", "--personality", "p", "--sandbox", "nosandbox"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not owner/name"));
}

#[test]
fn trigger_requires_a_personality() {
    Command::cargo_bin("packuilon")
        .unwrap()
        .args(["trigger"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--personality"));
}

#[test]
fn missing_config_file_is_a_one_line_error_naming_it() {
    Command::cargo_bin("packuilon")
        .unwrap()
        .args([
            "--config",
            "/nonexistent/config.ini",
            "trigger",
            "--personality",
            "p",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "packuilon: /nonexistent/config.ini: ",
        ))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
}

#[test]
fn thread_count_below_one_is_refused_naming_file_section_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.ini");
    std::fs::write(&cfg, "[rabbit2packer]\nTHREAD_COUNT = 0\n").unwrap();
    Command::cargo_bin("packuilon")
        .unwrap()
        .arg("--config")
        .arg(&cfg)
        .arg("rabbit2packer")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{}: [rabbit2packer] THREAD_COUNT (line 2): must be at least 1",
            cfg.display()
        )));
}

#[test]
fn cdb2rabbit_without_profile_urls_names_the_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.ini");
    std::fs::write(
        &cfg,
        "[cdb2rabbit]\nPROFILE_DIR_URL = http://127.0.0.1:9/p\n",
    )
    .unwrap();
    Command::cargo_bin("packuilon")
        .unwrap()
        .arg("--config")
        .arg(&cfg)
        .arg("cdb2rabbit")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "{}: [cdb2rabbit] PROFILE_INFO_URL: required by cdb2rabbit but not set",
            cfg.display()
        )));
}
