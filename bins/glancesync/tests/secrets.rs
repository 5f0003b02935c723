//! A known password and a known token never leave `glancesync`: the binary
//! runs at its most verbose level (`-vvv`, text and JSON log records) over
//! configurations and runs that fail in every way we can provoke (malformed
//! INI around the password, a `%` in it, Keystone down, Keystone refusing
//! the credentials, Glance answering 500 after a successful login), and
//! neither the password (plain or base64 as in `credential`) nor the token
//! appears on stdout, stderr or in any file the run wrote (the `--parallel`
//! per-region logs included). glancesync starts no child process, so there
//! is no other command line to check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use base64::Engine as _;
use cloud_test_support::leaks::{
    assert_password_sent, assert_token_used, keystone_with_failing_glance, refusing_keystone,
    unreachable_keystone, Binary, PASSWORD, TOKEN,
};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Run glancesync in `dir` with `config` (written as `dir/glancesync.conf`,
/// outside the run directories) at `-vvv` in both log formats; the run must
/// fail, and every output and every file it left must be free of the
/// password (plain and base64) and the token. Returns stderr of the text
/// run, for the caller to check that the failure was the one intended.
async fn run_clean(dir: &Path, config: &str, args: &[&str]) -> String {
    let cfg = dir.join("glancesync.conf");
    std::fs::write(&cfg, config).unwrap();
    let cfg = cfg.display().to_string();
    let encoded = b64(PASSWORD);
    let glancesync = Binary {
        program: env!("CARGO_BIN_EXE_glancesync"),
        verbose: &["-vvv"],
        secrets: &[PASSWORD, &encoded, TOKEN],
    };
    let args: Vec<&str> = ["--config-file", cfg.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    glancesync.run_case(dir, &args, false, |_, _| {}).await
}

fn credential(keystone: &str) -> String {
    format!("credential = admin,{},{keystone},admin\n", b64(PASSWORD))
}

/// A configuration whose master region logs in at `keystone`.
fn config(keystone: &str) -> String {
    format!(
        "[main]\nmaster_region = RegionOne\n[DEFAULT]\nuse_keystone_v3 = True\n[master]\n{}",
        credential(keystone)
    )
}

#[tokio::test]
async fn malformed_ini_around_the_password_is_reported_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // A line without a delimiter that is the password itself.
        format!("[main]\nmaster_region = RegionOne\n[master]\n{PASSWORD}\n"),
        // An option before any section.
        format!("password = {PASSWORD}\n[main]\n"),
        // A broken section header holding it.
        format!("[main]\nmaster_region = R\n[{PASSWORD}\n"),
        // A `%` interpolation error in the plain password option.
        format!("[main]\nmaster_region = RegionOne\n[master]\nuser = u\npassword = {PASSWORD}\nkeystone_url = http://127.0.0.1:1/v3\ntenant = t\n"),
        // A credential whose password field is not base64.
        format!("[main]\nmaster_region = RegionOne\n[master]\ncredential = u,{PASSWORD},http://127.0.0.1:1/v3,t\n"),
    ];
    for (i, config) in cases.iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let stderr = run_clean(&case, config, &["--show-status"]).await;
        assert!(stderr.contains("glancesync.conf"), "case {i}: {stderr}");
    }
}

#[tokio::test]
async fn keystone_down_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&unreachable_keystone());
    let stderr = run_clean(dir.path(), &config, &["--show-status"]).await;
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
}

#[tokio::test]
async fn refused_credentials_are_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let keystone = refusing_keystone().await;
    let config = config(&format!("{}/v3", keystone.uri()));
    let stderr = run_clean(dir.path(), &config, &["--show-status"]).await;
    assert!(stderr.contains("401"), "{stderr}");
    // The password did go to Keystone, in the request body only.
    assert_password_sent(&keystone, PASSWORD).await;
}

#[tokio::test]
async fn glance_errors_are_reported_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = keystone_with_failing_glance(&["RegionOne", "RegionTwo"]).await;
    let config = config(&format!("{}/v3", server.uri()));
    let stderr = run_clean(dir.path(), &config, &["--show-status"]).await;
    assert!(stderr.contains("500"), "{stderr}");
    let stderr = run_clean(dir.path(), &config, &["--parallel", "RegionTwo"]).await;
    assert!(stderr.contains("500"), "{stderr}");
    // The token was used, in the X-Auth-Token header only.
    assert_token_used(&server).await;
}
