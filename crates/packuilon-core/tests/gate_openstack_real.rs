//! The compute-backend test gate on the OpenStack backend: a stateful fake
//! Nova + Neutron on wiremock (`cloud_test_support::nova_mock`, bodies shaped
//! like the api-ref samples) beside the REAL local Keystone and Glance
//! (the session's `compute`/`network` endpoints point at the fake), real
//! RabbitMQ and Packer (null builder). The passing case logs in to a real
//! local sshd (`cloud_test_support::sshd`) at the fake's floating IP
//! 127.0.0.1 (the backend's `ssh_port` is the sshd's), the keypairs the gate
//! registers in the fake Nova copied into its `authorized_keys` as
//! cloud-init would; the failing cases never get that far.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use cloud_test_support::nova_mock::Fake;
use cloud_test_support::sshd::Sshd;
use common::*;
use openstack_client::glance::Visibility;
use packuilon_core::amqp::failed_queue;
use packuilon_core::compute_gate::{ComputeGate, ComputeGateSettings};
use packuilon_core::gate::{GateBackend, GateImage, ImageGate};
use packuilon_core::rotate::{broken_name, RenameStyle};
use packuilon_core::BuildState;

/// OpenStack-backend gate settings (fast polls), state and logs under `dir`.
fn settings(dir: &Path) -> ComputeGateSettings {
    let config = gate_config(GateBackend::Openstack, None, 60, 30);
    let mut settings = gate_settings(&config, dir);
    settings.openstack.poll_interval = Duration::from_millis(10);
    settings.openstack.delete_timeout = Duration::from_secs(20);
    settings
}

fn outstanding(state_dir: &Path, build: &str) -> usize {
    image_pipeline::ResourceLedger::open(state_dir.join("gate").join(build).join("ledger.jsonl"))
        .unwrap()
        .outstanding()
        .unwrap()
        .len()
}

/// A new image whose server goes to ERROR fails the gate: renamed
/// `Broken-<name>-<date>`, made private, nothing rotated, the request
/// parked; the keypair, security group, floating IP and server are gone
/// and the gate's ledger is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_whose_server_goes_to_error_is_broken_and_nothing_is_left() {
    let _lock = cloud_test_support::cloud_lock().await;
    let fake = Fake::start().await;
    fake.state.lock().unwrap().boot_error = true;
    let session = fake.session().await;
    let glance = session.image(Some("RegionOne")).await.unwrap();
    let mut cleanup = cloud_test_support::ImageCleanup::new(&glance);
    let (name, old, new) = old_and_new(&mut cleanup, "pk-gate-os", Visibility::Public).await;

    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("gate-os");
    let svc = gated_service(dir.path(), &queue, &new.id, &session, settings(dir.path()));
    svc.broker.publish(&profile("web")).await.unwrap();
    let entry = run_until_settled(&svc, "web-sl7x-x86_64", Duration::from_secs(300)).await;

    assert_eq!(entry.state, BuildState::Failed, "{entry:?}");
    let reason = entry.reason.clone().unwrap();
    let broken = broken_name(&name, Utc::now());
    assert!(
        reason.contains(&format!(
            "image {} failed the test gate (renamed {broken:?} and made private): no SSH login on the openstack backend",
            new.id
        )) && reason.contains("went to ERROR"),
        "{reason}"
    );
    let n = glance.get_image(&new.id).await.unwrap();
    assert_eq!(n.name.as_deref(), Some(broken.as_str()));
    assert_eq!(n.visibility, Visibility::Private);
    let o = glance.get_image(&old.id).await.unwrap();
    assert_eq!(o.name.as_deref(), Some(name.as_str()), "nothing rotated");
    assert_ne!(
        o.name.as_deref(),
        Some(RenameStyle::Date.warehoused(&name, Utc::now()).as_str())
    );
    let msg = get_one(&svc.broker, &failed_queue(&queue))
        .await
        .expect("parked");
    assert!(header(&msg, "x-packuilon-reason").contains("went to ERROR"));
    // The run made a keypair, a security group, a floating IP and the
    // server, and released them all.
    let ops = fake.ops();
    for op in [
        "keypair.create",
        "sg.create",
        "fip.create",
        "server.create",
        "server.delete",
        "fip.delete",
        "sg.delete",
        "keypair.delete",
    ] {
        assert!(
            ops.iter().any(|o| o.starts_with(op)),
            "{op} missing in {ops:#?}"
        );
    }
    assert_eq!(fake.leftovers(), Vec::<String>::new());
    assert_eq!(outstanding(&dir.path().join("state"), "web-sl7x-x86_64"), 0);
    delete_queues(&svc.broker).await;
}

/// A gate that cannot run (Nova refuses the server) is an error, not a
/// verdict on the image; what the run created before is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_cannot_run_is_an_error_and_releases_what_it_made() {
    let _lock = cloud_test_support::cloud_lock().await;
    let fake = Fake::start().await;
    fake.fail("server.create", 403);
    let session = fake.session().await;
    let glance = session.image(Some("RegionOne")).await.unwrap();
    let mut cleanup = cloud_test_support::ImageCleanup::new(&glance);
    let image = cleanup
        .create_active(
            &cloud_test_support::unique("pk-gate-os"),
            Visibility::Private,
            &[],
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let gate = ComputeGate::new(session.clone(), settings(dir.path()));
    let e = gate
        .check(&GateImage {
            id: image.id.clone(),
            build: "web-sl7x-x86_64".into(),
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("test gate of image {}", image.id)) && e.contains("403"),
        "{e}"
    );
    let ops = fake.ops();
    assert!(
        ops.iter().any(|o| o.starts_with("keypair.create")),
        "{ops:#?}"
    );
    assert_eq!(fake.leftovers(), Vec::<String>::new());
    assert_eq!(outstanding(&state, "web-sl7x-x86_64"), 0);
    // The image is left as built.
    let i = glance.get_image(&image.id).await.unwrap();
    assert_eq!(i.name, image.name);
}

/// An image whose server comes up and accepts the SSH login passes the
/// gate (no TEST_SCRIPT: the login is the test); its older namesake is
/// warehoused and nothing is left in the fake cloud or the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_accepting_the_login_passes_and_the_old_one_is_rotated() {
    let _lock = cloud_test_support::cloud_lock().await;
    let fake = Fake::start().await;
    fake.state.lock().unwrap().fip_address = Some("127.0.0.1".into());
    let sshd = Sshd::started();
    let keys = fake.authorize_keypairs(sshd.path("authorized_keys"));
    let session = fake.session().await;
    let glance = session.image(Some("RegionOne")).await.unwrap();
    let mut cleanup = cloud_test_support::ImageCleanup::new(&glance);
    let (name, old, new) = old_and_new(&mut cleanup, "pk-gate-os", Visibility::Shared).await;

    let dir = tempfile::tempdir().unwrap();
    let queue = unique_queue("gate-os-pass");
    let mut settings = settings(dir.path());
    settings.openstack.ssh_port = sshd.port;
    let svc = gated_service(dir.path(), &queue, &new.id, &session, settings);
    svc.broker.publish(&profile("web")).await.unwrap();
    let entry = run_until_settled(&svc, "web-sl7x-x86_64", Duration::from_secs(300)).await;
    keys.abort();
    let gate_log = std::fs::read_to_string(dir.path().join("logs/web-sl7x-x86_64.gate.log"))
        .unwrap_or_default();
    assert_eq!(
        entry.state,
        BuildState::Succeeded,
        "{entry:?}\ngate log:\n{gate_log}\nsshd log:\n{}",
        sshd.log()
    );
    assert!(
        gate_log.contains("packuilon: root@127.0.0.1 accepted the SSH login"),
        "{gate_log}"
    );
    let o = glance.get_image(&old.id).await.unwrap();
    assert_eq!(
        o.name.as_deref(),
        Some(RenameStyle::Date.warehoused(&name, Utc::now()).as_str())
    );
    let n = glance.get_image(&new.id).await.unwrap();
    assert_eq!(n.name.as_deref(), Some(name.as_str()));
    assert_eq!(n.visibility, Visibility::Shared, "visibility carried over");
    assert!(
        sshd.log().contains("Accepted publickey for root"),
        "{}",
        sshd.log()
    );
    assert_eq!(fake.leftovers(), Vec::<String>::new());
    assert_eq!(outstanding(&dir.path().join("state"), "web-sl7x-x86_64"), 0);
    assert_eq!(ready(&svc.broker, &failed_queue(&queue)).await, 0);
    delete_queues(&svc.broker).await;
}
