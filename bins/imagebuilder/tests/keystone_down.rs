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

use cloud_test_support::leaks::{assert_one_line_keystone_error, os_env, unreachable_keystone};

#[test]
fn keystone_unreachable_is_exactly_one_line_at_default_verbosity() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let auth_url = unreachable_keystone();
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
            .envs(os_env(&auth_url))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_one_line_keystone_error(&out, "imagebuilder", &auth_url, &format!("{args:?}"));
    }
}
