//! Keystone unreachable at start, at the default verbosity: imagebuilder
//! prints exactly one line on stderr (the error, naming the URL it could
//! not reach) and exits 1, for a himlarcli command (`list`, credentials
//! from `-c config.ini`) and a builder command (`build --packer`,
//! credentials from the `OS_*` variables). The client's bounded retries
//! are debug-level, so they add no line. Nothing listens on the port (a
//! closed loopback port); no shared cloud is used.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use cloud_test_support::leaks::closed_port;

#[test]
fn keystone_unreachable_is_exactly_one_line_at_default_verbosity() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let auth_url = format!("http://127.0.0.1:{}/v3", closed_port());
    let ini = d.join("config.ini");
    std::fs::write(
        &ini,
        format!(
            "[openstack]\nauth_url={auth_url}\nusername=admin\npassword=unused-password\n\
             project_name=admin\ndefault_domain=Default\nregion=RegionOne\n"
        ),
    )
    .unwrap();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/imagebuilder/templates/nrec-default");
    let ini = ini.display().to_string();
    let commands: [&[&str]; 2] = [
        &["list", "-c", &ini],
        &[
            "build", "-a", "nova", "-n", "debian12", "-s", "src", "-u", "debian", "--packer",
        ],
    ];
    for args in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_imagebuilder"))
            .current_dir(d)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", d)
            .env("HIMLARCLI_ROOT", d.join("himlarcli"))
            .env("IB_TEMPLATE_DIR", &templates)
            .env("IB_DOWNLOAD_DIR", d.join("dl"))
            .env("IMAGEBUILDER_STATE_DIR", d.join("state"))
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
            lines[0].starts_with("imagebuilder: ")
                && lines[0].contains(&format!("{auth_url}/auth/tokens")),
            "{args:?}: the error names the URL: {stderr}"
        );
    }
}
