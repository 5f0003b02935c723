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
    assert_no_secret, closed_port, files_under, glance_internal_error, keystone_token,
    keystone_unauthorized,
};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PASSWORD: &str = "Kn0wn-Pa55%word;(zq)s";
const TOKEN: &str = "gAAAAA-known-token-7f3a9c1e";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Run glancesync in `dir` with `config` at `-vvv` in both log formats;
/// every output and every file the run left (but the config itself) must be
/// free of the secrets. Returns stderr of the text run, for the caller to
/// check that the failure was the one intended.
async fn run_clean(dir: &Path, config: &str, args: &[&str]) -> String {
    let cfg = dir.join("glancesync.conf");
    std::fs::write(&cfg, config).unwrap();
    let mut text_stderr = String::new();
    for format in ["text", "json"] {
        let work = dir.join(format!("run-{format}"));
        std::fs::create_dir_all(&work).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_glancesync"))
            .current_dir(&work)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir)
            .arg("-vvv")
            .args(["--log-format", format])
            .arg("--config-file")
            .arg(&cfg)
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "the run was meant to fail");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.is_empty(), "-vvv printed nothing");
        for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
            assert_clean(&format!("{format} {what}"), text);
        }
        for file in files_under(&work) {
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            assert_clean(&file.display().to_string(), &text);
        }
        if format == "text" {
            text_stderr = stderr.into_owned();
        }
    }
    text_stderr
}

fn assert_clean(what: &str, text: &str) {
    assert_no_secret(what, text, &[PASSWORD, &b64(PASSWORD), TOKEN]);
}

fn credential(keystone: &str) -> String {
    format!("credential = admin,{},{keystone},admin\n", b64(PASSWORD))
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
    let keystone = format!("http://127.0.0.1:{}/v3", closed_port());
    let config = format!(
        "[main]\nmaster_region = RegionOne\n[DEFAULT]\nuse_keystone_v3 = True\n[master]\n{}",
        credential(&keystone)
    );
    let stderr = run_clean(dir.path(), &config, &["--show-status"]).await;
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
}

#[tokio::test]
async fn refused_credentials_are_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let keystone = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(ResponseTemplate::new(401).set_body_json(keystone_unauthorized()))
        .mount(&keystone)
        .await;
    let config = format!(
        "[main]\nmaster_region = RegionOne\n[DEFAULT]\nuse_keystone_v3 = True\n[master]\n{}",
        credential(&format!("{}/v3", keystone.uri()))
    );
    let stderr = run_clean(dir.path(), &config, &["--show-status"]).await;
    assert!(stderr.contains("401"), "{stderr}");
    // The password did go to Keystone, in the request body only.
    let requests = keystone.received_requests().await.unwrap();
    assert!(requests
        .iter()
        .any(|r| String::from_utf8_lossy(&r.body).contains(PASSWORD)));
}

#[tokio::test]
async fn glance_errors_are_reported_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockServer::start().await;
    let uri = server.uri();
    Mock::given(method("POST"))
        .and(path("/v3/auth/tokens"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("X-Subject-Token", TOKEN)
                .set_body_json(keystone_token(&[
                    ("RegionOne", format!("{uri}/image")),
                    ("RegionTwo", format!("{uri}/image2")),
                ])),
        )
        .mount(&server)
        .await;
    Mock::given(path_regex("^/image2?/.*"))
        .respond_with(ResponseTemplate::new(500).set_body_json(glance_internal_error()))
        .mount(&server)
        .await;
    let config = format!(
        "[main]\nmaster_region = RegionOne\n[DEFAULT]\nuse_keystone_v3 = True\n[master]\n{}",
        credential(&format!("{uri}/v3"))
    );
    let stderr = run_clean(dir.path(), &config, &["--show-status"]).await;
    assert!(stderr.contains("500"), "{stderr}");
    let stderr = run_clean(dir.path(), &config, &["--parallel", "RegionTwo"]).await;
    assert!(stderr.contains("500"), "{stderr}");
    // The token was used, in the X-Auth-Token header only.
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().any(|r| r
        .headers
        .get("x-auth-token")
        .is_some_and(|v| v.as_bytes() == TOKEN.as_bytes())));
}
