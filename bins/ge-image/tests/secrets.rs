//! A known password and a known token never leave `ge-image`: its cloud
//! commands (`locate`, `publish`) run at the most verbose level (`-vvv`,
//! text and JSON log records) over clouds that fail in every way we can
//! provoke (malformed `clouds.yaml` around the password, Keystone down,
//! Keystone refusing the credentials, Glance answering 500 after a
//! successful login), and neither the password nor the token appears on
//! stdout, stderr or in any file the run wrote. (The commands that start
//! children, `create`/`test`, pass secrets only through the environment and
//! boot VMs; they are covered by their own VM tests, not here.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use cloud_test_support::leaks::{
    assert_no_secret, closed_port, files_under, glance_internal_error, keystone_token,
    keystone_unauthorized,
};

use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PASSWORD: &str = "Kn0wn-Pa55%word;(zq)s";
const TOKEN: &str = "gAAAAA-known-token-7f3a9c1e";

fn assert_clean(what: &str, text: &str) {
    assert_no_secret(what, text, &[PASSWORD, TOKEN]);
}

/// Run ge-image with `args` in `dir` with only `env` (plus PATH and HOME),
/// in both log formats; outputs and files written (but `clouds.yaml`) must
/// be clean. Returns the text run's stderr.
async fn run_clean(dir: &Path, env: &[(&str, String)], args: &[&str]) -> String {
    let mut text_stderr = String::new();
    for format in ["text", "json"] {
        let work = dir.join(format!("run-{format}"));
        std::fs::create_dir_all(&work).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ge-image"))
            .current_dir(&work)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .arg("-vvv")
            .args(["--log-format", format])
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?} was meant to fail");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.is_empty(), "-vvv printed nothing");
        assert_clean(&format!("{format} stdout of {args:?}"), &stdout);
        assert_clean(&format!("{format} stderr of {args:?}"), &stderr);
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

fn os_env(auth_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OS_AUTH_URL", auth_url.to_string()),
        ("OS_USERNAME", "admin".into()),
        ("OS_PASSWORD", PASSWORD.into()),
        ("OS_PROJECT_NAME", "admin".into()),
        ("OS_USER_DOMAIN_NAME", "Default".into()),
        ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
        ("OS_REGION_NAME", "RegionOne".into()),
    ]
}

const COMMANDS: [&[&str]; 2] = [
    &["locate"],
    &[
        "publish",
        "0a1b2c3d-0000-4000-8000-000000000001",
        "104",
        "ngimages",
    ],
];

#[tokio::test]
async fn malformed_clouds_yaml_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        format!("clouds:\n  bad:\n    auth: {PASSWORD}\n"),
        format!("clouds:\n  bad:\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n      password: [{PASSWORD}\n"),
        format!("clouds:\n  bad:\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n      password: {PASSWORD}\n    api_timeout: {PASSWORD}\n"),
        format!("clouds: {PASSWORD}\n"),
    ];
    for (i, yaml) in cases.iter().enumerate() {
        let case = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let file = case.join("clouds.yaml");
        std::fs::write(&file, yaml).unwrap();
        let env = [("OS_CLIENT_CONFIG_FILE", file.display().to_string())];
        for args in COMMANDS {
            let args: Vec<&str> = args.iter().copied().chain(["--os-cloud", "bad"]).collect();
            let stderr = run_clean(&case, &env, &args).await;
            assert!(stderr.contains("clouds.yaml"), "case {i}: {stderr}");
        }
    }
}

#[tokio::test]
async fn keystone_down_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let env = os_env(&format!("http://127.0.0.1:{}/v3", closed_port()));
    for args in COMMANDS {
        let stderr = run_clean(dir.path(), &env, args).await;
        assert!(stderr.contains("127.0.0.1"), "{stderr}");
    }
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
    let env = os_env(&format!("{}/v3", keystone.uri()));
    for args in COMMANDS {
        let stderr = run_clean(dir.path(), &env, args).await;
        assert!(stderr.contains("401"), "{stderr}");
    }
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
                .set_body_json(keystone_token(&[("RegionOne", format!("{uri}/image"))])),
        )
        .mount(&server)
        .await;
    Mock::given(path_regex("^/image/.*"))
        .respond_with(ResponseTemplate::new(500).set_body_json(glance_internal_error()))
        .mount(&server)
        .await;
    let env = os_env(&format!("{uri}/v3"));
    for args in COMMANDS {
        let stderr = run_clean(dir.path(), &env, args).await;
        assert!(stderr.contains("500"), "{stderr}");
    }
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().any(|r| r
        .headers
        .get("x-auth-token")
        .is_some_and(|v| v.as_bytes() == TOKEN.as_bytes())));
}
