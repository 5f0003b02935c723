//! `imagebuilder build --backend local`, end to end on QEMU (TCG) with the
//! Debian test image (`scripts/test-image/build.sh`) as the source in the
//! local Glance, and a small Packer template of shell (scripts, inline,
//! environment_vars, execute_command) and file provisioners:
//! the compressed dated qcow2 with its md5 file, the `-latest` links, the
//! keep-two rotation, the JSONL report, the manifest, the provisioners'
//! work inside the image, and nothing left behind (ledger empty, no QEMU);
//! then a build failing mid-provisioning: no VM left, report `failed`,
//! the published files untouched.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloud_test_support::{cloud_lock, cloud_name, clouds_yaml, session, unique, ImageCleanup};
use md5::Digest as _;

use cloud_test_support::{qemus_in, text};

const TEMPLATE: &str = r#"{
  "variables": { "manifest_out": null, "greeting": "hello" },
  "builders": [{ "type": "openstack", "ssh_username": "{{user `ssh_username`}}", "ssh_pty": "false" }],
  "post-processors": [{ "type": "manifest", "output": "{{user `manifest_out`}}" }],
  "provisioners": [
    { "type": "file", "source": "files/", "destination": "/opt/ib-files" },
    {
      "type": "shell",
      "environment_vars": ["GREETING={{user `greeting`}}", "IMAGE={{user `image_name`}}", "TRICKY=it's $HOME"],
      "execute_command": "sh -c '{{ .Vars }} {{ .Path }}'",
      "scripts": ["scripts/one.sh", "{{user `provision_script`}}"]
    },
    {
      "type": "shell",
      "inline": ["echo inline ran as $(id -un) for $PACKER_BUILD_NAME", "echo built > /etc/imagebuilder-built"]
    },
    { "type": "file", "direction": "download", "source": "/etc/imagebuilder-built", "destination": "downloaded/" }
  ]
}"#;

/// A template directory: the template, its scripts and files.
fn template_dir(root: &Path, name: &str, template: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::create_dir_all(dir.join("files/sub")).unwrap();
    std::fs::write(dir.join("template"), template).unwrap();
    std::fs::write(
        dir.join("scripts/one.sh"),
        "#!/bin/sh\nset -e\necho \"one: $GREETING from $IMAGE ($TRICKY)\"\n\
         printf '%s\\n' \"$GREETING\" \"$TRICKY\" > /etc/imagebuilder-env\n\
         test -f /opt/ib-files/sub/nested.txt\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("scripts/custom.sh"),
        "#!/bin/sh\necho custom provision script ran\n",
    )
    .unwrap();
    std::fs::write(dir.join("files/top.txt"), "top\n").unwrap();
    std::fs::write(dir.join("files/sub/nested.txt"), "nested\n").unwrap();
    dir
}

struct Env {
    root: tempfile::TempDir,
    base_name: String,
    _images: ImageCleanup,
}

fn build(env: &Env, tdir: &Path, name: &str, extra: &[&str]) -> Output {
    let root = env.root.path();
    Command::new(env!("CARGO_BIN_EXE_imagebuilder"))
        .current_dir(tdir)
        .args([
            "build",
            "-a",
            "default-1",
            "-n",
            name,
            "-s",
            &env.base_name,
            "-u",
            "root",
        ])
        .args(["-p", "scripts/custom.sh", "-d", "-v", "--backend", "local"])
        .args(["--os-cloud", &cloud_name()])
        .arg("--var")
        .arg(format!(
            "manifest_out={}",
            root.join("manifest.json").display()
        ))
        .args(extra)
        .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
        .env_remove("OS_REGION_NAME")
        .env("IB_TEMPLATE_DIR", tdir)
        .env("IB_DOWNLOAD_DIR", root.join("public_builds"))
        .env("IMAGEBUILDER_REPORT", "true")
        .env("IMAGEBUILDER_LOG_DIR", root.join("log"))
        .env("IMAGEBUILDER_STATE_DIR", root.join("state"))
        .env("LIBGUESTFS_BACKEND", "direct")
        .output()
        .unwrap()
}

fn report_lines(env: &Env, name: &str) -> Vec<serde_json::Value> {
    let p = env.root.path().join(format!("log/{name}-report.jsonl"));
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn outstanding(env: &Env, name: &str) -> usize {
    image_pipeline::ResourceLedger::open(env.root.path().join(format!("state/{name}.ledger.jsonl")))
        .unwrap()
        .outstanding()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_on_the_local_backend_publishes_rotates_reports_and_cleans_up() {
    let glance = session().await.image(None).await.unwrap();
    let mut images = ImageCleanup::new(&glance);
    let base_name = unique("ipt-ib-base");
    {
        let _lock = cloud_lock().await;
        images.upload_test_image(&base_name).await;
    }
    let root = tempfile::Builder::new()
        .prefix("ibt")
        .tempdir_in("/tmp")
        .unwrap();
    let env = Env {
        root,
        base_name,
        _images: images,
    };
    let root = env.root.path().to_path_buf();
    let name = "ibtest_deb";
    let date = String::from_utf8(Command::new("date").arg("+%Y%m%d").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let builds = root.join("public_builds");
    std::fs::create_dir_all(&builds).unwrap();
    // Two older builds: the oldest goes, with its md5 file.
    for old in ["20000101", "20000102"] {
        std::fs::write(builds.join(format!("{name}-{old}.qcow2")), old).unwrap();
        std::fs::write(builds.join(format!("{name}-{old}.md5")), old).unwrap();
    }
    let tdir = template_dir(&root, "default", TEMPLATE);

    let out = build(&env, &tdir, name, &[]);
    assert!(out.status.success(), "{}", text(&out));

    // The published files.
    let image = builds.join(format!("{name}-{date}.qcow2"));
    let info = Command::new("qemu-img")
        .args(["info", "--output", "json"])
        .arg(&image)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    let md5 = hex::encode(md5::Md5::digest(std::fs::read(&image).unwrap()));
    let md5_text = std::fs::read_to_string(builds.join(format!("{name}-{date}.md5"))).unwrap();
    assert_eq!(md5_text, format!("{md5}  {}\n", image.display()));
    assert_eq!(
        std::fs::read_link(builds.join(format!("{name}-latest.qcow2"))).unwrap(),
        PathBuf::from(format!("{name}-{date}.qcow2"))
    );
    assert_eq!(
        std::fs::read_link(builds.join(format!("{name}-latest.md5"))).unwrap(),
        PathBuf::from(format!("{name}-{date}.md5"))
    );
    assert!(
        !builds.join(format!("{name}-20000101.qcow2")).exists(),
        "rotation kept the oldest"
    );
    assert!(!builds.join(format!("{name}-20000101.md5")).exists());
    assert!(
        builds.join(format!("{name}-20000102.qcow2")).exists(),
        "rotation removed too much"
    );

    // The report and the manifest.
    let lines = report_lines(&env, name);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "0"}));
    let output = lines[1]["output_imagebuilder"].as_str().unwrap();
    assert!(
        output.contains("one: hello from ibtest_deb (it's $HOME)\\n"),
        "{output}"
    );
    assert!(output.contains("custom provision script ran"), "{output}");
    assert!(
        output.contains("inline ran as root for openstack"),
        "{output}"
    );
    assert!(!output.contains('\n'), "the log is one line");
    assert_eq!(lines[2], serde_json::json!({"result": "success"}));
    let log = std::fs::read_to_string(root.join(format!("log/{name}-build-{date}.log"))).unwrap();
    assert!(log.contains("custom provision script ran"), "{log}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["builds"][0]["artifact_id"],
        image.display().to_string()
    );
    assert_eq!(manifest["builds"][0]["builder_type"], "openstack");
    assert_eq!(
        manifest["last_run_uuid"],
        manifest["builds"][0]["packer_run_uuid"]
    );
    assert_eq!(
        std::fs::read_to_string(tdir.join("downloaded/imagebuilder-built")).unwrap(),
        "built\n"
    );

    // Nothing left behind.
    assert_eq!(outstanding(&env, name), 0);
    assert!(qemus_in(&root).is_empty(), "{:?}", qemus_in(&root));
    let work = root.join("state/work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "work directories left: {left:?}");

    // The provisioners' work is inside the image.
    let cat = Command::new("virt-cat")
        .arg("-a")
        .arg(&image)
        .arg("/etc/imagebuilder-env")
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .output()
        .unwrap();
    assert!(cat.status.success(), "{}", text(&cat));
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "hello\nit's $HOME\n");

    // A build failing mid-provisioning: reported, nothing left, files untouched.
    let failing = TEMPLATE.replace(
        "\"echo inline ran as $(id -un) for $PACKER_BUILD_NAME\"",
        "\"echo about to fail\", \"exit 7\"",
    );
    let fdir = template_dir(&root, "failing", &failing);
    let before = std::fs::read(&image).unwrap();
    let out = build(&env, &fdir, name, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("provisioner 2 (shell) failed"),
        "{}",
        text(&out)
    );
    let lines = report_lines(&env, name);
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "1"}));
    assert!(lines[1]["output_imagebuilder"]
        .as_str()
        .unwrap()
        .contains("about to fail"));
    assert_eq!(
        lines.last().unwrap(),
        &serde_json::json!({"result": "failed"})
    );
    assert_eq!(outstanding(&env, name), 0);
    assert!(qemus_in(&root).is_empty(), "{:?}", qemus_in(&root));
    let vms: Vec<_> = std::fs::read_dir(root.join("state/vms"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(vms.is_empty(), "VM directories left: {vms:?}");
    assert_eq!(
        std::fs::read(&image).unwrap(),
        before,
        "a failed build touched the published image"
    );
}
