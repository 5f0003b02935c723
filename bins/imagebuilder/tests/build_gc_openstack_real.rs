//! `imagebuilder gc` (`build::gc`) on the OpenStack backend after a killed
//! build: Nova and Neutron are cloud-test-support's stateful fake,
//! Keystone and Glance the real local ones. A build's server, keypair,
//! security group and floating IP exist and are in its ledger (the build
//! was SIGKILLed after booting), plus a keypair and a group of another
//! killed build that died before reading the answers (ledger records with
//! a name and no id, found by their run-tagged `imagebuilder-<hex>` name).
//! gc releases all of them; a user's group outside the ledger stays; the
//! ledger of a build still running (holding its lock) is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use cloud_test_support::nova_mock::Fake;
use cloud_test_support::{cloud_lock, unique, ImageCleanup};
use image_pipeline::compute::openstack::BACKEND_NAME;
use image_pipeline::{
    AccessProfile, ComputeBackend, OpenStackBackend, OpenStackBackendOptions, ResourceKind,
    ResourceLedger, SshKey, VmSpec,
};
use imagebuilder_core::build::{self, BuildLock};
use openstack_client::glance::Visibility;

fn build_id() -> String {
    format!("imagebuilder-{}", unique("x").replace(['-', '_'], ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_releases_a_killed_openstack_build_by_id_and_by_name() {
    let _lock = cloud_lock().await;
    let fake = Fake::start().await;
    let session = fake.session().await;
    let options = build::openstack_options(OpenStackBackendOptions {
        poll_interval: Duration::from_millis(10),
        delete_timeout: Duration::from_secs(20),
        ..Default::default()
    });
    let backend = OpenStackBackend::connect(session.clone(), options)
        .await
        .unwrap();
    let glance = session.image(None).await.unwrap();
    let mut images = ImageCleanup::new(&glance);
    let source = images
        .create_active(&unique("ipt-ib-gc-src"), Visibility::Private, &[])
        .await;
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");

    // The killed build: booted, then nothing released.
    let id = build_id();
    let ledger_path = state.join("ibgc.ledger.jsonl");
    std::fs::create_dir_all(&state).unwrap();
    let ledger = ResourceLedger::open(&ledger_path).unwrap();
    let (_key, public) = SshKey::generate_ed25519(&id).unwrap();
    let spec = VmSpec {
        name: id.clone(),
        image_id: source.id.clone(),
        flavor: "m1.small".into(),
        login_user: "root".into(),
        public_key: public,
        access: AccessProfile::SshOnly,
        tcp_ports: Vec::new(),
    };
    let vm = backend.boot(&spec, &ledger).await.unwrap();
    drop(vm);
    // Another killed build of that name died before Nova and Neutron answered.
    let lost = build_id();
    fake.add_keypair(&lost, "ssh-ed25519 AAAA lost");
    fake.add_group(&lost, vec![]);
    let region = backend.region().map(str::to_string);
    ledger
        .intent(
            ResourceKind::Keypair,
            &lost,
            BACKEND_NAME,
            region.as_deref(),
        )
        .unwrap();
    ledger
        .intent(
            ResourceKind::SecurityGroup,
            &lost,
            BACKEND_NAME,
            region.as_deref(),
        )
        .unwrap();
    drop(ledger);
    // A user's group that no ledger names.
    fake.add_group("imagebuilder-users-own", vec![]);
    let before = fake.leftovers();
    assert!(
        before.contains(&format!("keypair {id}")) && before.contains(&format!("keypair {lost}")),
        "{before:?}"
    );
    assert!(
        before
            .iter()
            .filter(|l| l.starts_with(&format!("security group {id} ")))
            .count()
            == 1,
        "the group is named after the build: {before:?}"
    );

    // A running build's ledger is left alone.
    let ledgers = build::ledgers(&state, None).unwrap();
    assert_eq!(ledgers, vec![ledger_path.clone()]);
    assert!(build::needs_openstack(&ledgers).unwrap());
    let held = BuildLock::acquire(&ledger_path, "ibgc").unwrap();
    let out = build::gc(&ledgers, &backend, &glance).await.unwrap();
    assert_eq!(out.running, vec![ledger_path.clone()]);
    assert!(out.released.is_empty(), "{out:?}");
    assert_eq!(fake.leftovers(), before);
    drop(held);

    let out = build::gc(&ledgers, &backend, &glance).await.unwrap();
    assert!(out.failed.is_empty(), "{out:?}");
    assert!(out.running.is_empty(), "{out:?}");
    let released = out.released.join("\n");
    for what in [
        format!("keypair {id}"),
        format!("keypair {lost}"),
        format!("security group {lost}"),
        "server ".to_string(),
        "floating IP ".to_string(),
    ] {
        assert!(released.contains(&what), "no {what} in:\n{released}");
    }
    let left = fake.leftovers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].starts_with("security group imagebuilder-users-own "),
        "{left:?}"
    );
    assert!(ResourceLedger::open(&ledger_path)
        .unwrap()
        .is_empty()
        .unwrap());
    let ops = fake.ops();
    assert!(ops.contains(&format!("keypair.delete {lost}")), "{ops:?}");
}
