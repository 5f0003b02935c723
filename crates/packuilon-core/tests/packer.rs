//! The runner against the real Packer (`packer` on PATH, 1.6.6 here) with
//! the `null` builder: log content, exit codes, credentials in the
//! environment and never on a command line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use packuilon_core::{AuthEnv, BuildPlan, Runner};

/// What Packer's OpenStack builder prints for its artifact; the null
/// builder has no image, so the provisioner prints the line instead.
const IMAGE_LINE: &str =
    r#", "echo '--> openstack: An image was created: 6c1d4a3e-0f7b-4d2c-9a51-7e3f2b8c9d10'""#;
const IMAGE_ID: &str = "6c1d4a3e-0f7b-4d2c-9a51-7e3f2b8c9d10";

const PASSWORD: &str = "s3cr3t-\"pw\" $x";

fn auth(dir: &Path) -> AuthEnv {
    let file = dir.join("admin-openrc.sh");
    std::fs::write(
        &file,
        "export OS_AUTH_URL=http://127.0.0.1:5000/v3\n\
         export OS_PROJECT_ID=proj-42\n\
         export OS_USER_DOMAIN_NAME=Default\n\
         export OS_USERNAME=admin\n\
         export OS_PASSWORD='s3cr3t-\"pw\" $x'\n\
         export CHECKPOINT_DISABLE=1\n",
    )
    .unwrap();
    AuthEnv::load(&file).unwrap()
}

fn plan(templates: Vec<PathBuf>) -> BuildPlan {
    BuildPlan {
        name: "web-sl7x-x86_64".into(),
        pretty_name: "sl7x-x86_64 web".into(),
        source_image: "0b5e7c6a".into(),
        metadata: vec![("AQ_OS".into(), "sl".into())],
        templates,
    }
}

fn runner(dir: &Path) -> Runner {
    Runner {
        packer: PathBuf::from("packer"),
        build_file_dir: dir.join("build"),
        log_dir: dir.join("logs"),
        auth: auth(dir),
    }
}

/// A null-builder template whose provisioner records the environment and
/// the command lines of all its ancestors (Packer and its plugins).
fn write_template(dir: &Path, file: &str, extra: &str) -> PathBuf {
    let env_file = dir.join(format!("{file}.env"));
    let argv_file = dir.join(format!("{file}.argv"));
    let t = format!(
        r#"{{
  "builders": [{{"type": "null", "communicator": "none"}}],
  "provisioners": [{{
    "type": "shell-local",
    "inline": [
      "echo image=$NAME source=$IMAGE",
      "env > {env}",
      "p=$$; : > {argv}; while [ \"$p\" -gt 1 ]; do tr '\\0' ' ' < /proc/$p/cmdline >> {argv}; echo >> {argv}; p=$(awk '/^PPid:/ {{print $2}}' /proc/$p/status); done"
      {extra}
    ]
  }}]
}}"#,
        env = env_file.display(),
        argv = argv_file.display(),
    );
    let path = dir.join(format!("{file}.json"));
    std::fs::write(&path, t).unwrap();
    path
}

#[tokio::test]
async fn passing_build_logs_output_and_exit_code_0_and_gets_credentials_in_env_only() {
    let dir = tempfile::tempdir().unwrap();
    let template = write_template(dir.path(), "nullok", IMAGE_LINE);
    let results = runner(dir.path()).run_plan(&plan(vec![template])).await;
    assert_eq!(results.len(), 1);
    let outcome = results[0].outcome.as_ref().unwrap();
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.image_id.as_deref(), Some(IMAGE_ID));
    assert!(outcome.succeeded());
    assert_eq!(
        outcome.build_file,
        dir.path().join("build/web-sl7x-x86_64.nullok.json")
    );
    let log_name = outcome
        .log_file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(log_name.starts_with("web-sl7x-x86_64.nullok.") && log_name.ends_with(".log"));
    let log = std::fs::read_to_string(&outcome.log_file).unwrap();
    assert!(
        log.contains("image=sl7x-x86_64 web source=0b5e7c6a"),
        "{log}"
    );
    let last = log.lines().last().unwrap();
    assert!(
        last.starts_with("rabbit2packer: Build finished at ")
            && last.ends_with(" (epoch) with exit code 0"),
        "{last}"
    );
    assert!(!log.contains("s3cr3t"), "password in the log");

    let env = std::fs::read_to_string(dir.path().join("nullok.env")).unwrap();
    for line in [
        format!("OS_PASSWORD={PASSWORD}"),
        "OS_TENANT_ID=proj-42".to_string(),
        "OS_DOMAIN_NAME=Default".to_string(),
        "OS_USERNAME=admin".to_string(),
    ] {
        assert!(
            env.lines().any(|l| l == line),
            "{line} not in the child's env"
        );
    }
    let argv = std::fs::read_to_string(dir.path().join("nullok.argv")).unwrap();
    assert!(argv.contains("packer"), "ancestry not recorded: {argv}");
    assert!(
        !argv.contains("s3cr3t"),
        "password on a command line: {argv}"
    );
}

#[tokio::test]
async fn failing_build_records_packers_non_zero_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let template = write_template(dir.path(), "nullfail", r#", "exit 3""#);
    let results = runner(dir.path()).run_plan(&plan(vec![template])).await;
    let outcome = results[0].outcome.as_ref().unwrap();
    assert_eq!(
        outcome.exit_code,
        Some(1),
        "packer exits 1 on a failed build"
    );
    assert!(!outcome.succeeded());
    let log = std::fs::read_to_string(&outcome.log_file).unwrap();
    assert!(log.contains("non-zero exit status: 3"), "{log}");
    assert!(log.trim_end().ends_with("with exit code 1"), "{log}");
}

#[tokio::test]
async fn exit_code_0_without_an_image_id_is_a_failed_build() {
    let dir = tempfile::tempdir().unwrap();
    let template = write_template(dir.path(), "noimage", "");
    let results = runner(dir.path()).run_plan(&plan(vec![template])).await;
    let outcome = results[0].outcome.as_ref().unwrap();
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.image_id, None);
    assert!(!outcome.succeeded());
    assert!(outcome.failure_reason().unwrap().contains("no image id"));
}

#[tokio::test]
async fn missing_packer_is_an_error_naming_build_and_program() {
    let dir = tempfile::tempdir().unwrap();
    let template = write_template(dir.path(), "nullok", "");
    let mut r = runner(dir.path());
    r.packer = dir.path().join("no-such-packer");
    let results = r.run_plan(&plan(vec![template])).await;
    let e = results[0].outcome.as_ref().unwrap_err().to_string();
    assert!(
        e.starts_with("build web-sl7x-x86_64.nullok: cannot run "),
        "{e}"
    );
    assert!(e.contains("no-such-packer"), "{e}");
}
