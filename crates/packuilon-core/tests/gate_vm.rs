//! The compute-backend test gate on the local QEMU backend, end to end:
//! real RabbitMQ, real Packer (null builder reporting the image), the
//! Debian test image (`scripts/test-image/build.sh`) in the real local
//! Glance (RegionOne), a QEMU (TCG) VM booted from it by image-pipeline,
//! an SSH login, the test script in ge-image's sandbox. A passing image
//! has its older namesake warehoused; a failing one is renamed
//! `Broken-<name>-<date>`, made private, nothing rotated, and the request
//! parked on `<QUEUE>.failed`. Each boot takes about a minute under TCG:
//! the two cases share one test (nextest `vm` group).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use common::*;
use openstack_client::glance::Visibility;
use packuilon_core::amqp::failed_queue;
use packuilon_core::gate::GateBackend;
use packuilon_core::rotate::{broken_name, RenameStyle};
use packuilon_core::{BuildState, Service};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    path
}

/// A service reporting `image_id`, gated on the local backend with
/// `test_script`, rotating old images.
fn local_gated_service(
    dir: &Path,
    queue: &str,
    image_id: &str,
    test_script: PathBuf,
    session: &openstack_client::Session,
) -> Service {
    let config = gate_config(GateBackend::Local, Some(test_script), 600, 900);
    gated_service(dir, queue, image_id, session, gate_settings(&config, dir))
}

/// Nothing of the gate's run is left in `dir`: no VM, no ledger record,
/// no copy of the image.
fn nothing_left(dir: &Path, build: &str) {
    let folder = dir.join("state/gate").join(build);
    let ledger = image_pipeline::ResourceLedger::open(folder.join("ledger.jsonl")).unwrap();
    assert!(ledger.outstanding().unwrap().is_empty(), "ledger not empty");
    let qemus = cloud_test_support::qemus_in(dir);
    assert!(qemus.is_empty(), "QEMU left: {qemus:?}");
    let work = folder.join(".ge-image");
    assert!(!work.join("cache").exists(), "image copy left");
    let vms: Vec<_> = std::fs::read_dir(work.join("vms"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(vms.is_empty(), "VM directories left: {vms:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_gate_passes_a_good_image_and_breaks_a_failing_one() {
    let _lock = cloud_test_support::cloud_lock().await;
    let session = cloud_test_support::session().await;
    let glance = session.image(Some("RegionOne")).await.unwrap();
    let mut cleanup = cloud_test_support::ImageCleanup::new(&glance);
    let name = format!("{} AQ", cloud_test_support::unique("pk-gate"));
    let old = cleanup.create_active(&name, Visibility::Public, &[]).await;
    // Glance's created_at has one-second resolution: the pause only orders
    // the images.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // 1. A good image: SSH login, the script checks the OS over SSH.
    let good = cleanup.upload_test_image(&name).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("gate-local");
    let pass = script(
        dir.path(),
        "pass.sh",
        "ssh \"$USERNAME@$IP\" 'grep ^ID= /etc/os-release' | tee /dev/stderr | grep -q '^ID=debian$' && echo 'gate check: debian'\n",
    );
    let svc = local_gated_service(dir.path(), &queue, &good, pass, &session);
    svc.broker.publish(&profile("good")).await.unwrap();
    let entry = run_until_settled(&svc, "good-sl7x-x86_64", Duration::from_secs(1500)).await;
    let gate_log = std::fs::read_to_string(dir.path().join("logs/good-sl7x-x86_64.gate.log"))
        .unwrap_or_default();
    assert_eq!(
        entry.state,
        BuildState::Succeeded,
        "{entry:?}\ngate log:\n{gate_log}"
    );
    assert!(gate_log.contains("gate check: debian"), "{gate_log}");
    assert!(
        gate_log.contains(&format!("test gate of image {good} on the local backend")),
        "{gate_log}"
    );
    let g = glance.get_image(&good).await.unwrap();
    assert_eq!(g.name.as_deref(), Some(name.as_str()));
    assert_eq!(g.visibility, Visibility::Public, "visibility carried over");
    let o = glance.get_image(&old.id).await.unwrap();
    assert_eq!(
        o.name.as_deref(),
        Some(RenameStyle::Date.warehoused(&name, Utc::now()).as_str()),
        "the old image is warehoused"
    );
    nothing_left(dir.path(), "good-sl7x-x86_64");
    delete_queues(&svc.broker).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // 2. A failing image: the login works, the script's check does not.
    let bad = cleanup.upload_test_image(&name).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("gate-local-bad");
    let fail = script(
        dir.path(),
        "fail.sh",
        "ssh \"$USERNAME@$IP\" test -e /etc/packuilon-required-marker || { echo 'gate check: marker missing'; exit 3; }\n",
    );
    let svc = local_gated_service(dir.path(), &queue, &bad, fail, &session);
    svc.broker.publish(&profile("bad")).await.unwrap();
    let entry = run_until_settled(&svc, "bad-sl7x-x86_64", Duration::from_secs(1500)).await;
    assert_eq!(entry.state, BuildState::Failed, "{entry:?}");
    let reason = entry.reason.unwrap();
    let broken = broken_name(&name, Utc::now());
    assert!(
        reason.contains(&format!(
            "image {bad} failed the test gate (renamed {broken:?} and made private)"
        )) && reason.contains("status 3")
            && reason.contains("gate check: marker missing"),
        "{reason}"
    );
    let b = glance.get_image(&bad).await.unwrap();
    assert_eq!(b.name.as_deref(), Some(broken.as_str()));
    assert_eq!(b.visibility, Visibility::Private);
    // Nothing rotated: the good image keeps its name.
    let g = glance.get_image(&good).await.unwrap();
    assert_eq!(g.name.as_deref(), Some(name.as_str()));
    let msg = get_one(&svc.broker, &failed_queue(&queue))
        .await
        .expect("the request is parked");
    assert!(header(&msg, "x-packuilon-reason").contains("failed the test gate"));
    nothing_left(dir.path(), "bad-sl7x-x86_64");
    delete_queues(&svc.broker).await;
}
