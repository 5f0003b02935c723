//! `ge-image create` on bad inputs and after SIGKILL, local backend, real:
//! every failure is a one-line (or quoted-log) error with a non-zero exit,
//! and nothing is left: no QEMU process, no VM directory, no Glance image.
//! VM boots: the failing create.sh, the killed run, and `create --no-test`
//! whose candidate then boots for `test --keep-on-failure`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use cloud_test_support::unique;

mod common;

use common::*;

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// No QEMU, no VM directory, an empty ledger, no `<name>_rc` in Glance.
async fn nothing_left(env: &Env, dir: &Path, name: &str) {
    no_local_leftovers(dir);
    assert!(image_ids_named(&env.glance, &format!("{name}_rc"))
        .await
        .is_empty());
}

/// No QEMU, no VM directory, an empty ledger, no image file in the folder's
/// `.ge-image`.
fn no_local_leftovers(dir: &Path) {
    assert!(qemus_in(dir).is_empty(), "QEMU left: {:?}", qemus_in(dir));
    let vms = dir.join(".ge-image/vms");
    let left: Vec<_> = std::fs::read_dir(&vms)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "VM directories left: {left:?}");
    assert_eq!(outstanding(dir), 0, "ledger not empty");
    let files: Vec<_> = std::fs::read_dir(dir.join(".ge-image"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "qcow2"))
                .collect()
        })
        .unwrap_or_default();
    assert!(files.is_empty(), "image files left: {files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_named_and_leave_nothing() {
    let env = setup().await;

    // A folder without create.sh.
    let name = unique("nocreate");
    let dir = env.root.path().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("test.sh"), "#!/bin/sh\n").unwrap();
    let out = ge_image(&env, &["create", &name]).output().unwrap();
    let e = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(e.contains("create.sh") && e.contains("missing"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");

    // An unknown base.
    let name = unique("webdemo");
    let dir = webdemo(env.root.path(), &name);
    let out = ge_image(&env, &["create", &name, "--base", "windows95"])
        .output()
        .unwrap();
    let e = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(e.contains("unknown base 'windows95'"), "{e}");

    // A base whose image is not in Glance.
    let settings = env.root.path().join("missing.toml");
    let missing = unique("ipt-nosuchbase");
    std::fs::write(
        &settings,
        format!("backend = \"local\"\n[bases.ghost]\nimage = \"{missing}\"\nuser = \"root\"\n"),
    )
    .unwrap();
    let out = ge_image_with(&env, &settings, &["create", &name, "--base", "ghost"])
        .output()
        .unwrap();
    let e = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        e.contains(&missing) && e.contains("not found in Glance"),
        "{e}"
    );
    nothing_left(&env, &dir, &name).await;

    // A create.sh that fails: exit status and the log's tail shown, all cleaned.
    std::fs::write(
        dir.join("create.sh"),
        "#!/bin/bash\necho preparing the web server\necho about to fail >&2\nexit 3\n",
    )
    .unwrap();
    let out = ge_image(&env, &["create", &name]).output().unwrap();
    let e = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(e.contains("create.sh exited with status 3"), "{e}");
    assert!(
        e.contains("about to fail") && e.contains("preparing the web server"),
        "{e}"
    );
    nothing_left(&env, &dir, &name).await;
}

/// SIGKILL while the VM boots, then `gc`: no QEMU, no overlay, no image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_create_is_cleaned_by_gc() {
    let env = setup().await;
    let name = unique("webdemo");
    let dir = webdemo(env.root.path(), &name);
    let mut child = ge_image(&env, &["create", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the VM is recorded and QEMU runs: the guest is booting.
    let start = Instant::now();
    loop {
        // Read the ledger without opening it (opening may repair a line
        // the running writer is appending).
        let booted = std::fs::read_to_string(dir.join("ledger.jsonl"))
            .is_ok_and(|t| t.contains("\"local_vm\"") && t.contains("\"created\""));
        if booted && !qemus_in(&dir).is_empty() {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "create ended early");
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "VM never booted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !qemus_in(&dir).is_empty(),
        "QEMU outlives a SIGKILLed ge-image"
    );
    assert!(outstanding(&dir) > 0);

    // A new run refuses and points at gc.
    let out = ge_image(&env, &["create", &name]).output().unwrap();
    let e = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(e.contains(&format!("ge-image gc {name}")), "{e}");

    let out = ge_image(&env, &["gc", &name]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("released local VM"), "{stdout}");
    nothing_left(&env, &dir, &name).await;
    // gc again: nothing to do.
    let out = ge_image(&env, &["gc", &name]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to release"));
}

/// `ge-image create NAME --no-test` end to end (build VM, prepare on the
/// live NBD export, verified upload): `<name>_rc` is active and private in
/// Glance with the hash of its data, the ledger is empty, no QEMU, VM
/// directory or image file is left, and the printed commands name it. Then
/// `ge-image test NAME --keep-on-failure` on that candidate with a failing
/// `test.sh`: the test VM stays running after ge-image exits, its address
/// and an ssh command are printed (and work), the ledger lists it; `gc` then
/// removes it. The candidate was not made by the test run: it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_no_test_then_keep_on_failure_keeps_the_test_vm_until_gc() {
    let mut env = setup().await;
    let name = unique("keepdemo");
    let dir = webdemo(env.root.path(), &name);
    std::fs::write(
        dir.join("test.sh"),
        "#!/bin/sh\necho \"checking $USERNAME@$IP\"\nexit 5\n",
    )
    .unwrap();

    // The candidate, made by `create --no-test`.
    let out = ge_image(&env, &["create", &name, "--no-test"])
        .output()
        .unwrap();
    let t = text(&out);
    let made = image_ids_named(&env.glance, &format!("{name}_rc")).await;
    for id in &made {
        env.images.track(id.clone());
    }
    assert!(out.status.success(), "{t}");
    assert_eq!(made.len(), 1, "{t}");
    let rc_id = made[0].clone();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        stdout,
        format!(
            "{name}_rc: {rc_id}\nNot tested (--no-test): test it with `ge-image test {name}`, \
             then publish it with `ge-image publish {rc_id}`\n"
        ),
        "{t}"
    );
    let rc = env.glance.get_image(&rc_id).await.unwrap();
    assert_eq!(rc.status, openstack_client::glance::ImageStatus::Active);
    assert_eq!(rc.visibility, openstack_client::glance::Visibility::Private);
    assert_eq!(rc.disk_format.as_deref(), Some("qcow2"));
    // Glance's hash is the hash of the data it serves.
    let algo = rc.os_hash_algo.clone().unwrap_or_default();
    assert_eq!(algo, "sha512", "{rc:?}");
    let file = env.root.path().join("candidate.qcow2");
    env.glance.download_to_file(&rc_id, &file).await.unwrap();
    let sum = std::process::Command::new("sha512sum")
        .arg(&file)
        .output()
        .unwrap();
    assert!(sum.status.success());
    let sum = String::from_utf8_lossy(&sum.stdout).to_string();
    assert_eq!(
        sum.split_whitespace().next(),
        rc.os_hash_value.as_deref(),
        "{rc:?}"
    );
    let _ = std::fs::remove_file(&file);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["rc_image_id"], rc_id.as_str());
    assert_eq!(state["vm"], serde_json::Value::Null);
    let log = std::fs::read_to_string(dir.join("create.log")).unwrap();
    assert!(log.contains("dpkg -i"), "create.log: {log}");
    assert!(!dir.join("test.log").exists(), "test.sh ran: {t}");
    // Nothing left but the candidate, which is handed over.
    assert!(dir.join(".ge-image").is_dir(), "{t}");
    no_local_leftovers(&dir);

    let out = ge_image(&env, &["test", &name, "--keep-on-failure"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("Failed.") && t.contains("checking root@127."),
        "{t}"
    );
    let ssh = t
        .lines()
        .find_map(|l| l.split_once("; log in with: ").map(|(_, c)| c.to_string()))
        .unwrap_or_else(|| panic!("no ssh command printed: {t}"));
    assert!(t.contains("The VM runs at IP=127."), "{t}");
    // ge-image has exited; the VM still runs and answers the printed command.
    assert_eq!(qemus_in(&dir).len(), 1, "{t}");
    assert!(outstanding(&dir) > 0);
    let login = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{ssh} id -un"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(login.status.success(), "{ssh}: {}", text(&login));
    assert_eq!(String::from_utf8_lossy(&login.stdout).trim(), "root");

    let out = ge_image(&env, &["gc", &name]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("released local VM"),
        "{}",
        text(&out)
    );
    assert!(qemus_in(&dir).is_empty(), "QEMU left: {:?}", qemus_in(&dir));
    assert_eq!(outstanding(&dir), 0);
    assert!(
        env.glance.get_image(&rc_id).await.is_ok(),
        "the operator's candidate was deleted"
    );
}
