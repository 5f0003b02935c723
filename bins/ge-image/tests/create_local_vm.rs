//! `ge-image create/test/gc --backend local`, real: the Debian test image
//! (`scripts/test-image/build.sh`) uploaded to the local Glance as the base,
//! QEMU (TCG) VMs, the fixture folder `fixtures/ge-image/webdemo` (its
//! `data.tgz` built here with dpkg-deb), then `publish` and `inspect`.
//! Each VM boot takes about a minute under TCG: the tests boot few.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Instant;

use cloud_test_support::{cloud_name, clouds_yaml, unique, unique_nid};
use openstack_client::glance::Visibility;

mod common;

use common::*;

/// The whole life on the local backend: create (create.sh with data.tgz,
/// snapshot, prepare, upload, test.sh through $IP), publish, inspect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_test_publish_and_inspect_on_the_local_backend() {
    let mut env = setup().await;
    let name = unique("webdemo");
    let dir = webdemo(env.root.path(), &name);

    let start = Instant::now();
    let out = ge_image(&env, &["-v", "create", &name]).output().unwrap();
    let took = start.elapsed();
    let t = text(&out);
    // Track the candidate for deletion whatever happened.
    for id in image_ids_named(&env.glance, &format!("{name}_rc")).await {
        env.images.track(id);
    }
    assert!(out.status.success(), "{t}");
    eprintln!("create + test took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let rc_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Success. UUID: "))
        .unwrap_or_else(|| panic!("no Success line: {t}"))
        .to_string();
    assert!(stdout.contains(&format!("ge-image publish {rc_id}")), "{t}");
    // The folder records the run; nothing is left behind.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["rc_image_id"], rc_id.as_str());
    assert_eq!(state["vm"], serde_json::Value::Null);
    assert_eq!(
        std::fs::read_to_string(dir.join("dist_type")).unwrap(),
        "root\n"
    );
    assert_eq!(outstanding(&dir), 0, "ledger not empty: {t}");
    assert!(qemus_in(&dir).is_empty(), "QEMU left: {:?}", qemus_in(&dir));
    let log = std::fs::read_to_string(dir.join("create.log")).unwrap();
    assert!(log.contains("dpkg -i"), "create.log: {log}");
    let tlog = std::fs::read_to_string(dir.join("test.log")).unwrap();
    assert!(tlog.contains("webdemo ok"), "test.log: {tlog}");
    let vms = dir.join(".ge-image/vms");
    let left: Vec<_> = std::fs::read_dir(&vms)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "VM directories left: {left:?}");
    let rc = env.glance.get_image(&rc_id).await.unwrap();
    assert_eq!(rc.name.as_deref(), Some(format!("{name}_rc").as_str()));
    assert_eq!(rc.visibility, Visibility::Private);

    // Publish it (no earlier public image: NID and TYPE given).
    let nid = unique_nid();
    let out = Command::new(env!("CARGO_BIN_EXE_ge-image"))
        .args(["publish", &rc_id, &nid, "baseimage", "--os-cloud"])
        .arg(cloud_name())
        .env("OS_CLIENT_CONFIG_FILE", clouds_yaml())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let published = env.glance.get_image(&rc_id).await.unwrap();
    assert_eq!(published.name.as_deref(), Some(name.as_str()));
    assert_eq!(published.visibility, Visibility::Public);

    // Inspect the published image: the package create.sh installed is there.
    let file = env.root.path().join("published.qcow2");
    env.glance.download_to_file(&rc_id, &file).await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ge-image"))
        .args(["inspect", "--output", "json"])
        .arg(&file)
        .env("LIBGUESTFS_BACKEND", "direct")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let inspection = String::from_utf8_lossy(&out.stdout);
    assert!(inspection.contains("\"webdemo\""), "{inspection}");
    assert!(inspection.contains("debian"), "{inspection}");
    let _ = std::fs::remove_file(&file);
}

/// `TEST_USING_VM` on the local backend: `test.sh` runs inside a tester VM
/// (booted from `tester_base`), which reaches the tested VM at `$IP` (an
/// address of its own user-mode network forwarded to the tested VM's
/// loopback address) with ssh; both VMs are gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_using_vm_runs_test_sh_in_a_local_tester_vm() {
    let mut env = setup().await;
    let name = unique("testervm");
    let dir = webdemo(env.root.path(), &name);
    std::fs::write(
        dir.join("test.sh"),
        "#!/bin/sh\nset -e\nhere=$(cat /proc/sys/kernel/random/boot_id)\n\
         there=$(ssh \"$USERNAME@$IP\" cat /proc/sys/kernel/random/boot_id)\n\
         echo \"tester $here reached $USERNAME@$IP ($there) TESTSCRIPT=$TESTSCRIPT\"\n\
         test \"$here\" != \"$there\"\n",
    )
    .unwrap();
    let rc = env
        .glance
        .create_image(
            &openstack_client::glance::CreateImage::new(format!("{name}_rc"))
                .disk_format("qcow2")
                .container_format("bare")
                .visibility(Visibility::Private),
        )
        .await
        .unwrap();
    env.images.track(rc.id.clone());
    env.glance.upload_file(&rc.id, &test_image()).await.unwrap();
    let settings = env.root.path().join("tester.toml");
    let base = std::fs::read_to_string(&env.settings).unwrap();
    std::fs::write(&settings, format!("tester_base = \"testdeb\"\n{base}")).unwrap();
    let out = ge_image_with(&env, &settings, &["test", &name])
        .env("TEST_USING_VM", "1")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("Success. UUID: {}", rc.id)), "{t}");
    let log = std::fs::read_to_string(dir.join("test.log")).unwrap();
    assert!(
        log.contains("reached root@10.0.2.100") && log.contains("TESTSCRIPT=test.sh"),
        "{log}"
    );
    assert!(qemus_in(&dir).is_empty(), "QEMU left: {:?}", qemus_in(&dir));
    assert_eq!(outstanding(&dir), 0);
}
