//! Keystone unreachable at start, at the default verbosity: ge-image prints
//! exactly one line on stderr (the error, naming the URL it could not
//! reach) and exits 1. The client's bounded retries are debug-level, so
//! they add no line. Nothing listens on the port (a closed loopback port);
//! no shared cloud is used.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use cloud_test_support::leaks::closed_port;

#[test]
fn keystone_unreachable_is_exactly_one_line_at_default_verbosity() {
    let dir = tempfile::tempdir().unwrap();
    let auth_url = format!("http://127.0.0.1:{}/v3", closed_port());
    let commands: [&[&str]; 2] = [
        &["locate"],
        &[
            "publish",
            "0a1b2c3d-0000-4000-8000-000000000001",
            "104",
            "ngimages",
        ],
    ];
    for args in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_ge-image"))
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("OS_AUTH_URL", &auth_url)
            .env("OS_USERNAME", "admin")
            .env("OS_PASSWORD", "unused-password")
            .env("OS_PROJECT_NAME", "admin")
            .env("OS_USER_DOMAIN_NAME", "Default")
            .env("OS_PROJECT_DOMAIN_NAME", "Default")
            .env("OS_REGION_NAME", "RegionOne")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line on stderr:\n{stderr}");
        assert!(
            lines[0].starts_with("ge-image: ")
                && lines[0].contains(&format!("{auth_url}/auth/tokens")),
            "{args:?}: the error names the URL: {stderr}"
        );
    }
}
