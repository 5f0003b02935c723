//! The builder commands' command line, without a cloud: `build --dry-run`
//! (native steps; `--packer` gives the original's `packer build` argument
//! list), `build-all -n`/`-l` on a hieradata-shaped image list (plans
//! compared with `fixtures/imagebuilder/build-all/*.expected.json`),
//! `-W` refused, one error per problem of a bad list, a refused
//! provisioner type, and missing credentials.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloud_test_support::text;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/imagebuilder")
}

fn ib(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagebuilder"));
    c.args(args)
        .env_remove("OS_CLOUD")
        .env_remove("IMAGEBUILDER_REPORT")
        .env_remove("IMAGEBUILDER_BACKEND");
    c
}

fn build_all_plan(args: &[&str]) -> Output {
    let list = fixtures().join("build-all/builder.yaml");
    let mut all = vec!["build-all", "--image-list", list.to_str().unwrap()];
    all.extend_from_slice(&[
        "--template-base",
        "/etc/imagebuilder",
        "--availability-zone",
        "bgo-default-1",
        "--log-dir",
        "/var/log/imagebuilder",
    ]);
    all.extend_from_slice(args);
    ib(&all).output().unwrap()
}

fn check_plan(args: &[&str], expected: &str) {
    let out = build_all_plan(args);
    assert!(out.status.success(), "{}", text(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = fixtures().join("build-all").join(expected);
    if std::env::var("IMAGEBUILDER_BLESS").is_ok() {
        std::fs::write(&file, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(got, want, "{expected}");
}

#[test]
fn build_all_dry_runs_plan_per_class() {
    check_plan(&["-S", "-n"], "plan-S.expected.json");
    check_plan(
        &["-G", "-i", "uio_rhel9", "-n", "-t", "7200"],
        "plan-G-i.expected.json",
    );
}

#[test]
fn build_all_lists_refuses_windows_and_reports_every_problem() {
    let out = build_all_plan(&["-l"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "debian12\tstandard\nubuntu_2404_nv_vgpu\tvgpu\nuio_rhel9\tstandard\nwinsrv_2022_wrapper\twindows\n"
    );
    let out = build_all_plan(&["-W", "-n"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Poke Tor"),
        "{}",
        text(&out)
    );
    let out = build_all_plan(&["-i", "nosuch", "-n"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("-i nosuch"),
        "{}",
        text(&out)
    );

    let bad = fixtures().join("build-all/bad.yaml");
    let out = ib(&[
        "build-all",
        "-S",
        "-n",
        "--image-list",
        bad.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want =
        std::fs::read_to_string(fixtures().join("build-all/bad.expected-error.txt")).unwrap();
    assert!(stderr.contains(want.trim()), "{}", text(&out));
    assert!(stderr.contains("bad.yaml"), "{}", text(&out));
}

fn dry_build(tdir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "build",
        "-a",
        "bgo-default-1",
        "-n",
        "debian12",
        "-s",
        "IMAGEBUILDER Debian 12",
        "-u",
        "debian",
        "-p",
        "scripts/custom.sh",
        "-d",
        "--dry-run",
    ];
    args.extend_from_slice(extra);
    ib(&args)
        .current_dir(tdir)
        .env("IB_TEMPLATE_DIR", tdir)
        .env("IB_DOWNLOAD_DIR", "/opt/images/public_builds")
        .env("IMAGEBUILDER_STATE_DIR", "/var/lib/imagebuilder")
        .output()
        .unwrap()
}

#[test]
fn build_dry_run_prints_the_plan_native_or_packer() {
    let tdir = fixtures().join("templates/nrec-default");
    let out = dry_build(&tdir, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["mode"]["mode"], "native");
    let scripts = &plan["mode"]["steps"][0]["scripts"];
    assert_eq!(scripts.as_array().unwrap().len(), 4, "{plan}");
    assert!(scripts[2]["file"]
        .as_str()
        .unwrap()
        .ends_with("scripts/custom.sh"));
    assert_eq!(plan["mode"]["ssh_pty"], true);
    let date =
        String::from_utf8(Command::new("date").arg("+%Y%m%d").output().unwrap().stdout).unwrap();
    assert_eq!(
        plan["download"]["image"],
        format!("/opt/images/public_builds/debian12-{}.qcow2", date.trim())
    );
    assert_eq!(
        plan["ledger"],
        "/var/lib/imagebuilder/debian12.ledger.jsonl"
    );
    let id = plan["build_id"].as_str().unwrap();
    assert!(
        id.starts_with("imagebuilder-") && id.len() == 13 + 32,
        "{id}"
    );

    let out = dry_build(&tdir, &["--packer"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let args: Vec<String> = plan["mode"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let id = plan["build_id"].as_str().unwrap();
    let work = format!("/var/lib/imagebuilder/work/{id}");
    let want: Vec<String> = [
        "build".to_string(),
        "-color=false".into(),
        "--var".into(),
        "image_name=debian12".into(),
        "--var".into(),
        "ssh_username=debian".into(),
        "--var".into(),
        format!("security_group={id}"),
        "--var".into(),
        "flavor=m1.small".into(),
        "--var".into(),
        "network=Dualstack".into(),
        "--var".into(),
        "source_image=IMAGEBUILDER Debian 12".into(),
        "--var".into(),
        format!("ssh_keypair_name={id}"),
        "--var".into(),
        format!("ssh_key_path={work}/{id}"),
        "--var".into(),
        "availability_zone=bgo-default-1".into(),
        "--var".into(),
        "provision_script=scripts/custom.sh".into(),
        "--var".into(),
        format!("manifest_path={work}/packer-manifest.json"),
        tdir.join("template").display().to_string(),
    ]
    .to_vec();
    assert_eq!(args, want);
}

#[test]
fn unknown_provisioner_is_refused_by_name_and_packer_is_suggested() {
    let tdir = fixtures().join("templates/unknown-provisioner");
    let out = dry_build(&tdir, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'ansible'") && stderr.contains("--packer"),
        "{}",
        text(&out)
    );
    assert_eq!(stderr.lines().count(), 1, "{}", text(&out));
}

#[test]
fn missing_directories_and_credentials_are_one_line_errors() {
    let empty = tempfile::tempdir().unwrap();
    let out = ib(&[
        "build",
        "-a",
        "x",
        "-n",
        "x",
        "-s",
        "x",
        "-u",
        "x",
        "--dry-run",
    ])
    .current_dir(empty.path())
    .env("HOME", empty.path())
    .env_remove("IB_TEMPLATE_DIR")
    .env_remove("IB_DOWNLOAD_DIR")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // /etc/imagebuilder/config may exist on a builder; here it does not.
    assert!(
        stderr.contains("Failed to read template_dir from config"),
        "{}",
        text(&out)
    );

    let out = ib(&[
        "bootstrap",
        "-a",
        "x",
        "-u",
        "http://127.0.0.1:9/x",
        "-n",
        "x",
        "-r",
        "1",
        "-d",
        "1",
        "-f",
        "raw",
    ])
    .env("OS_CLIENT_CONFIG_FILE", empty.path().join("none.yaml"))
    .env_remove("OS_AUTH_URL")
    .env_remove("OS_USERNAME")
    .env_remove("OS_PASSWORD")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Failed to read environment variables"),
        "{}",
        text(&out)
    );
}
