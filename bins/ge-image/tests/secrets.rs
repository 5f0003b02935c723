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
    assert_token_used, keystone_with_failing_glance, malformed_clouds_yamls, os_env_with_password,
    refusing_keystone, unreachable_keystone, Binary, PASSWORD, TOKEN,
};

const GE_IMAGE: Binary = Binary {
    program: env!("CARGO_BIN_EXE_ge-image"),
    verbose: &["-vvv"],
    secrets: &[PASSWORD, TOKEN],
};

/// Run ge-image with `args` in `dir` with only `env` (plus PATH and HOME),
/// in both log formats; it must fail, and its outputs and the files it
/// wrote must be clean. Returns the text run's stderr.
async fn run_clean(dir: &Path, env: &[(&str, String)], args: &[&str]) -> String {
    GE_IMAGE
        .run_case(dir, args, false, |_, cmd| {
            cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        })
        .await
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

/// Every command over `env`: each text stderr must hold `expect`.
async fn run_commands(dir: &Path, env: &[(&str, String)], expect: &str) {
    for args in COMMANDS {
        let stderr = run_clean(dir, env, args).await;
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn malformed_clouds_yaml_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    for (case, file) in malformed_clouds_yamls(dir.path()) {
        let env = [("OS_CLIENT_CONFIG_FILE", file.display().to_string())];
        for args in COMMANDS {
            let args: Vec<&str> = args.iter().copied().chain(["--os-cloud", "bad"]).collect();
            let stderr = run_clean(&case, &env, &args).await;
            assert!(
                stderr.contains("clouds.yaml"),
                "{}: {stderr}",
                case.display()
            );
        }
    }
}

#[tokio::test]
async fn keystone_down_is_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let env = os_env_with_password(&unreachable_keystone(), PASSWORD);
    run_commands(dir.path(), &env, "127.0.0.1").await;
}

#[tokio::test]
async fn refused_credentials_are_reported_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let keystone = refusing_keystone().await;
    let env = os_env_with_password(&format!("{}/v3", keystone.uri()), PASSWORD);
    run_commands(dir.path(), &env, "401").await;
}

#[tokio::test]
async fn glance_errors_are_reported_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = keystone_with_failing_glance(&["RegionOne"]).await;
    let env = os_env_with_password(&format!("{}/v3", server.uri()), PASSWORD);
    run_commands(dir.path(), &env, "500").await;
    assert_token_used(&server).await;
}
