//! `imagebuilder build-all` for real, on the local backend (QEMU TCG, one
//! VM boot): a hieradata image list of two standard images whose upstream
//! files an HTTP server of the test serves on 127.0.0.1 (the Debian test
//! image and its SHA256SUMS):
//! - `ibtall_bad` has a checksum file that does not list the image: its
//!   bootstrap fails, nothing is uploaded, and its report is the original's
//!   three lines (`result_imagebuilder` = bootstrap's exit code, its error
//!   in `output_imagebuilder`, `failed`);
//! - `ibtall_deb` is bootstrapped into Glance, built with the class's
//!   template (`<template_base>/default`, IB_TEMPLATE_DIR) with `-d -x`:
//!   compressed dated qcow2, md5 file, `-latest` links, report `0` /
//!   output / `success`, the upstream image deleted from Glance; a
//!   half-written qcow2 that a killed earlier build left in the download
//!   directory (in its ledger) is released first; nothing left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod build_support;

use std::path::PathBuf;
use std::process::Command;

use build_support::{
    assert_nothing_left, ib, report_lines, serve_files, template_dir, text, today,
};
use cloud_test_support::{cloud_lock, image_ids_named, session, test_image, unique};
use image_pipeline::{ResourceKind, ResourceLedger};

const TEMPLATE: &str = r#"{
  "builders": [{ "type": "openstack", "ssh_username": "{{user `ssh_username`}}" }],
  "provisioners": [
    { "type": "shell", "inline": ["echo built {{user `image_name`}} from {{user `source_image`}}", "echo weekly > /etc/ib-weekly"] }
  ]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_all_bootstraps_builds_publishes_and_reports_each_image() {
    let glance = session().await.image(None).await.unwrap();
    let root = tempfile::Builder::new()
        .prefix("iba")
        .tempdir_in("/tmp")
        .unwrap();
    let root = root.path().to_path_buf();
    let image = test_image();
    let sum = Command::new("sha256sum").arg(&image).output().unwrap();
    let hash = String::from_utf8(sum.stdout).unwrap();
    let hash = hash.split_whitespace().next().unwrap().to_string();
    std::fs::write(root.join("SHA256SUMS"), format!("{hash}  debian12.qcow2\n")).unwrap();
    std::fs::write(
        root.join("SHA256SUMS.bad"),
        format!("{}  debian12.qcow2\n", "0".repeat(64)),
    )
    .unwrap();
    let port = serve_files(vec![
        ("/debian12.qcow2".into(), image.clone()),
        ("/SHA256SUMS".into(), root.join("SHA256SUMS")),
        ("/SHA256SUMS.bad".into(), root.join("SHA256SUMS.bad")),
    ]);
    let upstream = unique("ipt-ib-upstream");
    let upstream_bad = unique("ipt-ib-upstream-bad");
    let entry = |upstream: &str, sums: &str| {
        format!(
            "    image_name: '{upstream}'\n    url: 'http://127.0.0.1:{port}/'\n    latest: debian12.qcow2\n\
             \x20   checksum_file: {sums}\n    checksum: sha256\n    min_ram: 512\n    min_disk: 2\n\
             \x20   username: root\n"
        )
    };
    let list = root.join("images.yaml");
    std::fs::write(
        &list,
        format!(
            "profile::application::builder::images:\n  ibtall_bad:\n{}  ibtall_deb:\n{}",
            entry(&upstream_bad, "SHA256SUMS.bad"),
            entry(&upstream, "SHA256SUMS")
        ),
    )
    .unwrap();
    let templates = root.join("templates");
    template_dir(&templates, "default", TEMPLATE);

    // What a killed earlier build of ibtall_deb left: a half-written qcow2.
    let date = today();
    let builds = root.join("public_builds");
    std::fs::create_dir_all(&builds).unwrap();
    let half = builds.join(format!("ibtall_deb-{date}.qcow2.part"));
    std::fs::write(&half, b"half a qcow2").unwrap();
    std::fs::create_dir_all(root.join("state")).unwrap();
    let ledger = ResourceLedger::open(root.join("state/ibtall_deb.ledger.jsonl")).unwrap();
    let k = ledger
        .intent(
            ResourceKind::File,
            &half.display().to_string(),
            "local-file",
            None,
        )
        .unwrap();
    ledger.created(k, &half.display().to_string()).unwrap();
    drop(ledger);

    let out = {
        let _lock = cloud_lock().await;
        ib(
            &root,
            &[
                "build-all",
                "-S",
                "-t",
                "3600",
                "--image-list",
                list.to_str().unwrap(),
                "--template-base",
                templates.to_str().unwrap(),
                "--log-dir",
                root.join("log").to_str().unwrap(),
                "--backend",
                "local",
            ],
        )
        .output()
        .unwrap()
    };
    // Cleanup of Glance whatever the outcome: the upstream images by name.
    let leftovers: Vec<String> = [
        image_ids_named(&glance, &upstream).await,
        image_ids_named(&glance, &upstream_bad).await,
    ]
    .concat();
    for id in &leftovers {
        let _ = glance.delete_image(id).await;
    }
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed builds: ibtall_bad"),
        "{}",
        text(&out)
    );
    assert!(
        leftovers.is_empty(),
        "upstream images left in Glance (-x, bad checksum): {leftovers:?}"
    );

    // The failed bootstrap: the original's three lines, and the plain log.
    let lines = report_lines(&root, "ibtall_bad");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "1"}));
    let output = lines[1]["output_imagebuilder"].as_str().unwrap();
    assert!(output.contains("checksum not ok"), "{output}");
    assert!(
        output.contains("bootstrap of ibtall_bad failed"),
        "{output}"
    );
    assert_eq!(lines[2], serde_json::json!({"result": "failed"}));
    let plain =
        std::fs::read_to_string(root.join(format!("log/ibtall_bad-build-{date}.log"))).unwrap();
    assert!(plain.contains("checksum not ok"), "{plain}");
    assert!(!builds.join(format!("ibtall_bad-{date}.qcow2")).exists());

    // The built image.
    let lines = report_lines(&root, "ibtall_deb");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "0"}));
    let output = lines[1]["output_imagebuilder"].as_str().unwrap();
    assert!(
        output.contains("Released what an interrupted earlier build left behind: file "),
        "{output}"
    );
    // The template's provisioner ran with -s = the bootstrap's image id.
    assert!(output.contains("built ibtall_deb from "), "{output}");
    assert!(output.contains("Removing source image"), "{output}");
    assert_eq!(lines[2], serde_json::json!({"result": "success"}));
    let published = builds.join(format!("ibtall_deb-{date}.qcow2"));
    let info = Command::new("qemu-img")
        .args(["info", "--output", "json"])
        .arg(&published)
        .output()
        .unwrap();
    assert!(info.status.success(), "{}", text(&info));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert!(builds.join(format!("ibtall_deb-{date}.md5")).is_file());
    assert_eq!(
        std::fs::read_link(builds.join("ibtall_deb-latest.qcow2")).unwrap(),
        PathBuf::from(format!("ibtall_deb-{date}.qcow2"))
    );
    assert_eq!(
        std::fs::read_link(builds.join("ibtall_deb-latest.md5")).unwrap(),
        PathBuf::from(format!("ibtall_deb-{date}.md5"))
    );
    assert!(!half.exists(), "the half-written qcow2 is still there");
    assert_nothing_left(&root, "ibtall_deb");
    assert_nothing_left(&root, "ibtall_bad");
    let cat = Command::new("virt-cat")
        .arg("-a")
        .arg(&published)
        .arg("/etc/ib-weekly")
        .env("LIBGUESTFS_BACKEND", "direct")
        .env("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
        .output()
        .unwrap();
    assert!(cat.status.success(), "{}", text(&cat));
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "weekly\n");
    let _ = std::fs::remove_dir_all(&root);
}
