//! Keystone unreachable at start, at the default verbosity: ge-image prints
//! exactly one line on stderr (the error, naming the URL it could not
//! reach) and exits 1. The client's bounded retries are debug-level, so
//! they add no line. Nothing listens on the port (a closed loopback port);
//! no shared cloud is used.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use cloud_test_support::leaks::{assert_one_line_keystone_error, os_env, unreachable_keystone};

#[test]
fn keystone_unreachable_is_exactly_one_line_at_default_verbosity() {
    let dir = tempfile::tempdir().unwrap();
    let auth_url = unreachable_keystone();
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
            .envs(os_env(&auth_url))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_one_line_keystone_error(&out, "ge-image", &auth_url, &format!("{args:?}"));
    }
}
