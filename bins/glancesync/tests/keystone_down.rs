//! Keystone unreachable at start, at the default verbosity: glancesync
//! prints exactly one line on stderr (the error, naming the URL it could
//! not reach) and exits 1 (fatal error). The client's bounded retries are
//! debug-level, so they add no line. Nothing listens on the port (a closed
//! loopback port); no shared cloud is used.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use base64::Engine as _;
use cloud_test_support::leaks::closed_port;

/// Run glancesync (no `-v`, no `RUST_LOG`) with a master whose Keystone is
/// `auth_url` and `args`; answer its exit status and stderr.
fn run(dir: &std::path::Path, auth_url: &str, args: &[&str]) -> (Option<i32>, String) {
    let cfg = dir.join("glancesync.conf");
    let password = base64::engine::general_purpose::STANDARD.encode("unused-password");
    std::fs::write(
        &cfg,
        format!(
            "[main]\nmaster_region = RegionOne\n\n[master]\ncredential = admin,{password},{auth_url},admin\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_glancesync"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .arg("--config-file")
        .arg(&cfg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keystone_unreachable_is_exactly_one_line_at_default_verbosity() {
    let dir = tempfile::tempdir().unwrap();
    let auth_url = format!("http://127.0.0.1:{}/v3", closed_port());
    for args in [&["RegionTwo"][..], &["--show-status", "RegionTwo"][..]] {
        let (code, stderr) = run(dir.path(), &auth_url, args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line on stderr:\n{stderr}");
        assert!(
            lines[0].starts_with("glancesync: ")
                && lines[0].contains(&format!("{auth_url}/auth/tokens")),
            "{args:?}: the error names the URL: {stderr}"
        );
    }
}
