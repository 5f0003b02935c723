//! `imagebuilder build --backend local` stopped part-way, on QEMU (TCG)
//! with the Debian test image: one VM boot in all.
//! - SIGTERM while the VM runs (before SSH): the build stops by itself,
//!   exit 1, the report's three lines (`failed`), and nothing left: no
//!   QEMU, no ledger record, no work directory (it holds the private key),
//!   no VM directory, nothing half-written in the download directory.
//! - SIGKILL while a provisioner runs (`-x`): QEMU, the ledger records and
//!   the work directory are left, as expected of a killed process (while
//!   it ran, `gc` and a second build of that name left it alone);
//!   `imagebuilder gc --dry-run` names the ledger and releases nothing;
//!   `imagebuilder gc -n NAME` releases all of it, the `-x` source image in
//!   Glance included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod build_support;

use std::process::Stdio;

use build_support::{
    assert_nothing_left, entries, ib, image_exists, outstanding, qemus_in, report_lines,
    source_image, template_dir, text, today, wait_for,
};
use cloud_test_support::{cloud_lock, session, ImageCleanup};

/// One provisioner that keeps the VM busy until the build is stopped.
const TEMPLATE: &str = r#"{
  "builders": [{ "type": "openstack", "ssh_username": "{{user `ssh_username`}}" }],
  "provisioners": [
    { "type": "shell", "inline": ["echo provisioning started", "sleep 3600"] }
  ]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_and_killed_builds_leave_nothing_after_cleanup_or_gc() {
    let glance = session().await.image(None).await.unwrap();
    let mut images = ImageCleanup::new(&glance);
    let (source, source_id) = source_image(&mut images).await;
    let root = tempfile::Builder::new()
        .prefix("ibk")
        .tempdir_in("/tmp")
        .unwrap();
    let root = root.path().to_path_buf();
    let tdir = template_dir(&root, "default", TEMPLATE);
    let name = "ibkill_deb";
    let build = |extra: &[&str]| {
        let mut c = ib(
            &root,
            &[
                "build",
                "-a",
                "default-1",
                "-n",
                name,
                "-s",
                &source,
                "-u",
                "root",
                "-d",
                "--backend",
                "local",
            ],
        );
        c.args(extra)
            .env("IB_TEMPLATE_DIR", &tdir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };

    // SIGTERM while the VM runs: a graceful stop.
    let child = build(&[]).spawn().unwrap();
    let pid = child.id();
    wait_for("the build's QEMU", || !qemus_in(&root).is_empty());
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted by a signal"),
        "{}",
        text(&out)
    );
    let lines = report_lines(&root, name);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "1"}));
    let log = lines[1]["output_imagebuilder"].as_str().unwrap();
    assert!(log.contains("Interrupted: stopping the build"), "{log}");
    assert_eq!(lines[2], serde_json::json!({"result": "failed"}));
    assert_nothing_left(&root, name);
    assert!(
        entries(&root.join("public_builds")).is_empty(),
        "{:?}",
        entries(&root.join("public_builds"))
    );
    assert!(
        image_exists(&glance, &source_id).await,
        "no -x: the source stays"
    );

    // SIGKILL while the provisioner runs, with -x.
    let plain_log = root.join(format!("log/{name}-build-{}.log", today()));
    let mut child = build(&["-x"]).spawn().unwrap();
    wait_for("the provisioner to start", || {
        std::fs::read_to_string(&plain_log)
            .is_ok_and(|l| l.contains("Provisioning with shell script"))
    });
    // gc leaves a running build alone, and so does a second build.
    let out = ib(&root, &["gc", "-n", name]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("its build is still running"),
        "{}",
        text(&out)
    );
    let out = build(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is already running"),
        "{}",
        text(&out)
    );
    assert!(!qemus_in(&root).is_empty(), "the running build lost its VM");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "{}", text(&out));
    // What a killed process leaves: its VM, its records, its key.
    assert!(!qemus_in(&root).is_empty(), "QEMU died with its build");
    let left = outstanding(&root, name);
    assert!(left.len() >= 3, "{left:?}");
    assert!(!entries(&root.join("state/work")).is_empty());

    let out = ib(&root, &["gc", "--dry-run"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        root.join(format!("state/{name}.ledger.jsonl"))
            .display()
            .to_string()
    );
    assert_eq!(outstanding(&root, name).len(), left.len());

    let out = {
        let _lock = cloud_lock().await;
        ib(&root, &["gc", "-n", name]).output().unwrap()
    };
    assert!(out.status.success(), "{}", text(&out));
    let released = String::from_utf8_lossy(&out.stdout);
    assert_eq!(released.lines().count(), left.len(), "{released}");
    assert!(released.contains("local VM"), "{released}");
    assert!(released.contains(&source_id), "{released}");
    assert_nothing_left(&root, name);
    assert!(
        !image_exists(&glance, &source_id).await,
        "-x: the source image goes, killed build or not"
    );
    // Nothing more to do.
    let out = ib(&root, &["gc"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let _ = std::fs::remove_dir_all(&root);
}
