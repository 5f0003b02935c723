//! Keystone unreachable at start, at the default verbosity: glancesync
//! prints exactly one line on stderr (the error, naming the URL it could
//! not reach) and exits 1 (fatal error). The client's bounded retries are
//! debug-level, so they add no line. Nothing listens on the port (a closed
//! loopback port); no shared cloud is used.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use base64::Engine as _;
use cloud_test_support::leaks::{assert_one_line_keystone_error, unreachable_keystone};

/// Run glancesync (no `-v`, no `RUST_LOG`) with a master whose Keystone is
/// `auth_url` and `args`.
fn run(dir: &std::path::Path, auth_url: &str, args: &[&str]) -> std::process::Output {
    let cfg = dir.join("glancesync.conf");
    let password = base64::engine::general_purpose::STANDARD.encode("unused-password");
    std::fs::write(
        &cfg,
        format!(
            "[main]\nmaster_region = RegionOne\n\n[master]\ncredential = admin,{password},{auth_url},admin\n"
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_glancesync"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .arg("--config-file")
        .arg(&cfg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn keystone_unreachable_is_exactly_one_line_at_default_verbosity() {
    let dir = tempfile::tempdir().unwrap();
    let auth_url = unreachable_keystone();
    for args in [&["RegionTwo"][..], &["--show-status", "RegionTwo"][..]] {
        let out = run(dir.path(), &auth_url, args);
        assert_one_line_keystone_error(&out, "glancesync", &auth_url, &format!("{args:?}"));
    }
}
