//! `ge-image locate` and `ge-image publish` against the real local cloud
//! (`scripts/cloud/up.sh`; cloud `$OS_TEST_CLOUD`, default `local`, region
//! RegionOne). Every test deletes the images it created, even when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use cloud_test_support::{cloud_name, clouds_yaml, glance_test, publish_lines, unique_nid};
use openstack_client::glance::Visibility;
use predicates::prelude::*;

const REGION: &str = "RegionOne";

/// `ge-image` pointed at the test cloud through flags, with no OS_* leaking in.
fn ge_image() -> Command {
    let mut cmd = Command::cargo_bin("ge-image").unwrap();
    for var in ["OS_CLOUD", "OS_REGION_NAME", "OS_AUTH_URL", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    cmd.env("OS_CLIENT_CONFIG_FILE", clouds_yaml());
    cmd
}

fn cloud_args() -> [String; 4] {
    [
        "--os-cloud".into(),
        cloud_name(),
        "--os-region-name".into(),
        REGION.into(),
    ]
}

fn unique(tag: &str) -> String {
    cloud_test_support::unique(&format!("ipt-cli-{tag}"))
}

/// Run `cmd` off the async runtime and return its output.
async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_prints_the_original_lines() {
    let mut c = glance_test(REGION).await;
    let name = unique("text");
    let nid = unique_nid();
    let old = c.images.old_public(&name, &nid, "base").await;
    let rc = c.images.candidate(&name).await;

    let mut cmd = ge_image();
    cmd.arg("publish").arg(&rc.id).args(cloud_args());
    let out = run(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        publish_lines(&old, &rc, &name, &nid, "base")
    );
    let rc_now = c.glance.get_image(&rc.id).await.unwrap();
    assert_eq!(rc_now.name.as_deref(), Some(name.as_str()));
    assert_eq!(rc_now.visibility, Visibility::Public);

    // locate now lists the published image in the original's format.
    let mut cmd = ge_image();
    cmd.arg("locate").args(cloud_args());
    let out = run(cmd).await;
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&format!("{name} {nid} base\n")), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("NIDs in use: "), "{last}");
    assert!(last.split(' ').any(|n| n == nid), "{last}");

    // A second run is a one-line error, and changes nothing.
    let mut cmd = ge_image();
    cmd.arg("publish").arg(&rc.id).args(cloud_args());
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("already published"), "{stderr}");
    assert_eq!(c.glance.get_image(&rc.id).await.unwrap(), rc_now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_parses_and_dry_run_changes_nothing() {
    let mut c = glance_test(REGION).await;
    let name = unique("json");
    let nid = unique_nid();
    let rc = c.images.candidate(&name).await;

    let mut cmd = ge_image();
    cmd.args([
        "publish",
        &rc.id,
        &nid,
        "ge",
        "--dry-run",
        "--output",
        "json",
    ])
    .args(cloud_args());
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["rc_id"], rc.id.as_str());
    assert_eq!(v["new_name"], name.as_str());
    assert_eq!(v["nid"], nid.as_str());
    assert_eq!(v["type"], "ge");
    assert_eq!(v["nid_type_source"]["from"], "request");
    assert_eq!(v["obsolete"], serde_json::json!([]));
    assert_eq!(c.glance.get_image(&rc.id).await.unwrap(), rc);

    let mut cmd = ge_image();
    cmd.args(["locate", "--output", "json"]).args(cloud_args());
    let out = run(cmd).await;
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["images"].is_array(), "{v}");
    assert!(v["nids"].is_array(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_one_line_errors_with_a_non_zero_exit() {
    let mut c = glance_test(REGION).await;
    let name = unique("refuse");
    let plain = c
        .images
        .create_active(&name, Visibility::Private, &[])
        .await;

    let mut cmd = ge_image();
    cmd.args(["publish", &plain.id, "1", "x"])
        .args(cloud_args());
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ge-image: "), "{stderr}");
    assert!(stderr.contains("does not end in '_rc'"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(c.glance.get_image(&plain.id).await.unwrap(), plain);

    let missing = uuid::Uuid::new_v4().to_string();
    let mut cmd = ge_image();
    cmd.args(["publish", &missing]).args(cloud_args());
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("image {missing} not found")),
        "{stderr}"
    );

    let rc = c.images.candidate(&name).await;
    let mut cmd = ge_image();
    cmd.args(["publish", &rc.id]).args(cloud_args());
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("give them explicitly"), "{stderr}");
    assert_eq!(c.glance.get_image(&rc.id).await.unwrap(), rc);
}

#[test]
fn an_unknown_cloud_is_a_one_line_error() {
    let out = ge_image()
        .args(["locate", "--os-cloud", "no-such-cloud"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-cloud"), "{stderr}");
}

#[test]
fn bad_arguments_exit_2() {
    let id = "6f1c1f2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f";
    for args in [
        vec!["publish"],
        vec!["publish", "not-a-uuid"],
        vec!["publish", id, "1", "type", "extra"],
        vec!["publish", id, "--output", "xml"],
        vec!["locate", "--output", "yaml"],
        vec!["locate", "extra"],
    ] {
        ge_image()
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("error:"));
    }
    ge_image()
        .args(["publish", "not-a-uuid"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "'not-a-uuid' is not an image UUID",
        ));
}

#[test]
fn help_shows_the_publish_forms() {
    ge_image()
        .args(["publish", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("IMAGE_UUID NID TYPE"))
        .stdout(predicate::str::contains("--dry-run"))
        .stdout(predicate::str::contains("--os-cloud"));
}
