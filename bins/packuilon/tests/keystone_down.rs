//! Keystone unreachable at start, at the default verbosity: `packuilon
//! rename-old-images` (the command that talks to Glance at once, with
//! `PACKER_ADMIN_AUTH`'s credentials) prints exactly one line on stderr
//! (the error, naming the URL it could not reach) and exits 1. The
//! client's bounded retries are debug-level, so they add no line. Nothing
//! listens on the port (a closed loopback port); neither the shared cloud
//! nor RabbitMQ is used.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use cloud_test_support::leaks::{
    assert_one_line_keystone_error, closed_port, unreachable_keystone,
};

#[test]
fn keystone_unreachable_is_exactly_one_line_at_default_verbosity() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let auth_url = unreachable_keystone();
    std::fs::write(
        d.join("openrc"),
        format!(
            "export OS_AUTH_URL={auth_url}\nexport OS_USERNAME=admin\nexport OS_PASSWORD=unused-password\n\
             export OS_PROJECT_NAME=admin\nexport OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n"
        ),
    )
    .unwrap();
    std::fs::write(d.join("map.json"), r#"{"DEFAULT": ["t.json"]}"#).unwrap();
    std::fs::write(d.join("images.json"), r#"{"IMAGES": {}}"#).unwrap();
    std::fs::write(
        d.join("config.ini"),
        format!(
            "[global]\nQUEUE = q\nRABBIT_HOST = 127.0.0.1\nRABBIT_PORT = {}\nRABBIT_USER = guest\nRABBIT_PW = guest\n\
             [rabbit2packer]\nPACKER_AUTH_FILE = {d}/openrc\nPACKER_ADMIN_AUTH = {d}/openrc\n\
             PACKER_TEMPLATE_MAP = {d}/map.json\nIMAGES_CONFIG = {d}/images.json\nLOG_DIR = {d}/logs\n\
             BUILD_FILE_DIR = {d}/build\nSTATE_DIR = {d}/state\n",
            closed_port(),
            d = d.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_packuilon"))
        .current_dir(d)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", d)
        .args([
            "--config",
            "config.ini",
            "rename-old-images",
            "sl7x-x86_64",
            "web",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_one_line_keystone_error(&out, "packuilon", &auth_url, "rename-old-images");
}
