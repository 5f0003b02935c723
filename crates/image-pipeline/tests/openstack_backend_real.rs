//! The OpenStack compute backend against a stateful fake Nova + Neutron on
//! wiremock (`cloud_test_support::nova_mock`, bodies shaped like the api-ref samples) and the
//! REAL local Keystone and Glance (`scripts/cloud/up.sh`).
//!
//! How the session reaches both: the real `clouds.yaml` cloud, with
//! `compute` and `network` endpoint overrides pointing at the fake (the
//! `<service>_endpoint_override` of openstacksdk). Keystone issues a real
//! token and a real catalog, Glance is reached through that catalog, and
//! Nova/Neutron requests go to the fake, which ignores the token. The fake's
//! `createImage` answers with the id of an image this test created and
//! uploaded in the real Glance, so the snapshot wait, the verified download
//! and the snapshot deletion run against the real Glance.
//!
//! Every test holds the cross-process cloud lock (the local Glance keeps its
//! data in SQLite) and runs in the nextest `cloud` group (binary `*_real`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use cloud_test_support::nova_mock::{self, Fake};
use cloud_test_support::{cloud_lock, unique, CloudLock, ImageCleanup};
use image_pipeline::compute::openstack::RUN_TAG_KEY;
use image_pipeline::{
    AccessProfile, ComputeBackend, OpenStackBackend, OpenStackBackendOptions, OpenStackVm,
    ResourceKind, ResourceLedger, SshKey, VmHandle, VmSpec, LEDGER_FILE,
};
use openstack_client::glance::{CreateImage, GlanceClient};
use serde_json::{json, Value};

/// Fields drop in declaration order: the image clean-up runs before the
/// cloud lock is released (the local Glance answers concurrent writes with
/// 500 "database is locked").
struct Env {
    images: ImageCleanup,
    fake: Fake,
    backend: OpenStackBackend,
    glance: GlanceClient,
    dir: tempfile::TempDir,
    ledger: ResourceLedger,
    _lock: CloudLock,
}

async fn env_with(tweak: impl FnOnce(&Fake, &mut OpenStackBackendOptions)) -> Env {
    let lock = cloud_lock().await;
    let fake = Fake::start().await;
    let session = fake.session().await;
    let mut options = OpenStackBackendOptions {
        poll_interval: Duration::from_millis(10),
        delete_timeout: Duration::from_secs(20),
        snapshot_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    tweak(&fake, &mut options);
    let backend = OpenStackBackend::connect(session.clone(), options)
        .await
        .unwrap();
    let glance = session.image(None).await.unwrap();
    let images = ImageCleanup::new(&glance);
    let dir = tempfile::tempdir().unwrap();
    let ledger = ResourceLedger::open(dir.path().join(LEDGER_FILE)).unwrap();
    Env {
        _lock: lock,
        fake,
        backend,
        glance,
        images,
        dir,
        ledger,
    }
}

async fn env() -> Env {
    env_with(|_, _| {}).await
}

fn spec(access: AccessProfile) -> VmSpec {
    let (_, public_key) = SshKey::generate_ed25519("ge-image build").unwrap();
    VmSpec {
        name: unique("ipt-osb"),
        image_id: "70a599e0-31e7-49b7-b260-868f441e862b".into(),
        flavor: "m1.small".into(),
        login_user: "debian".into(),
        public_key,
        access,
        tcp_ports: vec![80],
    }
}

impl Env {
    /// A real Glance image the fake's `createImage` answers with: active
    /// with `data`, or left queued (no data) when `data` is `None`.
    async fn snapshot_image(&mut self, name: &str, data: Option<&[u8]>) -> String {
        let image = self
            .glance
            .create_image(
                &CreateImage::new(name)
                    .disk_format("raw")
                    .container_format("bare")
                    .property(RUN_TAG_KEY, "test"),
            )
            .await
            .unwrap();
        self.images.track(image.id.clone());
        if let Some(data) = data {
            let len = data.len() as u64;
            self.glance
                .upload(&image.id, std::io::Cursor::new(data.to_vec()), Some(len))
                .await
                .unwrap();
        }
        self.fake.state.lock().unwrap().snapshot_image_id = image.id.clone();
        image.id
    }

    async fn image_exists(&self, id: &str) -> bool {
        match self.glance.get_image(id).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => panic!("reading image {id}: {e}"),
        }
    }

    /// What the pipeline does on failure: release every outstanding record,
    /// newest first.
    async fn cleanup(&self) {
        let mut records = self.ledger.outstanding().unwrap();
        records.reverse();
        for record in records {
            assert!(
                self.backend.release(&record).await.unwrap(),
                "record of this backend not released: {record:?}"
            );
            self.ledger.released(record.key).unwrap();
        }
    }
}

/// The steps of a build, as the pipeline drives them.
async fn build(env: &Env, spec: &VmSpec, dest: &Path) -> image_pipeline::Result<OpenStackVm> {
    let vm = env.backend.boot(spec, &env.ledger).await?;
    env.backend.wait_ready(&vm, Duration::from_secs(20)).await?;
    env.backend.power_off(&vm, Duration::from_secs(20)).await?;
    env.backend.snapshot_to_file(&vm, dest, &env.ledger).await?;
    Ok(vm)
}

/// `wanted` appear in `ops` in this order (other operations in between).
fn assert_in_order(ops: &[String], wanted: &[&str]) {
    let mut it = ops.iter();
    for w in wanted {
        assert!(
            it.any(|o| o.starts_with(w)),
            "{w:?} missing (or out of order) in {ops:#?}"
        );
    }
}

fn body_of(requests: &[wiremock::Request], method: &str, path_end: &str) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| r.method.as_str() == method && r.url.path().ends_with(path_end))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn full_sequence_boot_ready_power_off_snapshot_delete_leaves_nothing() {
    let mut env = env().await;
    let spec = spec(AccessProfile::SshOnly);
    let payload = b"qcow2 data of a fake snapshot \x00\x01\x02".repeat(1000);
    let image_id = env
        .snapshot_image(&format!("{}-snapshot", spec.name), Some(&payload))
        .await;

    let vm = env.backend.boot(&spec, &env.ledger).await.unwrap();
    let tag = vm.run_tag().to_string();
    assert!(
        tag.starts_with(&format!("ge-image-{}-", spec.name)) && tag.len() == spec.name.len() + 18,
        "{tag}"
    );
    let records = env.ledger.outstanding().unwrap();
    let kinds: Vec<ResourceKind> = records.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            ResourceKind::Keypair,
            ResourceKind::SecurityGroup,
            ResourceKind::FloatingIp,
            ResourceKind::Server
        ]
    );
    assert!(records.iter().all(|r| r.id.is_some()
        && r.backend == "openstack"
        && r.region.as_deref() == Some("RegionOne")));
    assert_eq!(records[3].id.as_deref(), Some(vm.id()));

    let address = env
        .backend
        .wait_ready(&vm, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(Some(address.ip), vm.floating_ip());
    assert_eq!(
        (address.ssh_host.as_str(), address.ssh_port),
        (address.ip.to_string().as_str(), 22)
    );
    assert!(address.ip.to_string().starts_with("172.24.4."));
    let console = env.backend.console_log(&vm).await.unwrap();
    assert!(console.contains("login:"), "{console}");
    env.backend
        .power_off(&vm, Duration::from_secs(20))
        .await
        .unwrap();
    let dest = env.dir.path().join("tmp_image");
    let written = env
        .backend
        .snapshot_to_file(&vm, &dest, &env.ledger)
        .await
        .unwrap();
    assert_eq!(written, dest);
    assert_eq!(std::fs::read(&dest).unwrap(), payload);
    assert!(
        !env.image_exists(&image_id).await,
        "snapshot deleted from Glance"
    );
    env.backend.delete(vm, &env.ledger).await.unwrap();

    assert!(env.ledger.is_empty().unwrap());
    assert!(
        ResourceLedger::open(env.dir.path().join(LEDGER_FILE))
            .unwrap()
            .is_empty()
            .unwrap(),
        "the ledger file agrees"
    );
    assert_eq!(env.fake.leftovers(), Vec::<String>::new());
    let ops = env.fake.ops();
    assert_in_order(
        &ops,
        &[
            "network.",
            "flavor.",
            "keypair.create",
            "sg.create",
            "sgrule.create",
            "sgrule.create",
            "fip.create",
            "server.create",
            "server.get",
            "port.list",
            "fip.update",
            "server.stop",
            "server.get",
            "server.createImage",
            "server.delete",
            "fip.delete",
            "sg.delete",
            "keypair.delete",
        ],
    );

    // The requests themselves.
    let requests = env.fake.server.received_requests().await.unwrap();
    let server = &body_of(&requests, "POST", "/servers")[0]["server"];
    assert_eq!(server["name"], spec.name.as_str());
    assert_eq!(server["key_name"], tag.as_str());
    assert_eq!(server["security_groups"], json!([{ "name": tag }]));
    assert_eq!(server["networks"], json!([{ "uuid": nova_mock::NET_INT }]));
    assert_eq!(server["flavorRef"], "2");
    assert_eq!(server["metadata"][RUN_TAG_KEY], tag.as_str());
    let keypair = &body_of(&requests, "POST", "/os-keypairs")[0]["keypair"];
    assert_eq!(keypair["public_key"], spec.public_key.as_str());
    let rules: Vec<(Value, Value, Value)> = body_of(&requests, "POST", "/security-group-rules")
        .iter()
        .map(|b| {
            let r = &b["security_group_rule"];
            assert_eq!(r["direction"], "ingress");
            assert_eq!(r["remote_ip_prefix"], "0.0.0.0/0");
            (
                r["protocol"].clone(),
                r["port_range_min"].clone(),
                r["port_range_max"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            (json!("tcp"), json!(22), json!(22)),
            (json!("tcp"), json!(80), json!(80))
        ]
    );
    let fip = &body_of(&requests, "POST", "/floatingips")[0]["floatingip"];
    assert_eq!(fip["floating_network_id"], nova_mock::NET_EXT);
    assert_eq!(fip["description"], tag.as_str());
    let actions = body_of(&requests, "POST", "/action");
    assert!(actions.contains(&json!({"os-stop": null})), "{actions:?}");
    assert!(
        actions.contains(&json!({"createImage": {
            "name": format!("{}-snapshot", spec.name), "metadata": {RUN_TAG_KEY: tag}
        }})),
        "{actions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn all_open_profile_opens_tcp_udp_and_icmp_and_a_given_floating_ip_is_never_released() {
    // The operator's own floating IP (the original's FLOATINGIP), by address.
    let mut given = (String::new(), String::new());
    let env = env_with(|fake, o| {
        let id = fake.add_fip("the operator's");
        let address = fake.state.lock().unwrap().fips[&id]["floating_ip_address"]
            .as_str()
            .unwrap()
            .to_string();
        o.floating_ip = Some(address.clone());
        given = (id, address);
    })
    .await;
    let (given, address) = given;
    let spec = spec(AccessProfile::AllOpen);
    let vm = env.backend.boot(&spec, &env.ledger).await.unwrap();
    assert!(
        env.ledger
            .outstanding()
            .unwrap()
            .iter()
            .all(|r| r.kind != ResourceKind::FloatingIp),
        "a given floating IP is not ours to release"
    );
    let ready = env
        .backend
        .wait_ready(&vm, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(ready.ip.to_string(), address);
    env.backend.delete(vm, &env.ledger).await.unwrap();
    assert!(env.ledger.is_empty().unwrap());
    assert_eq!(
        env.fake.leftovers(),
        [format!("floating IP {given}")],
        "only the operator's floating IP is left"
    );
    let requests = env.fake.server.received_requests().await.unwrap();
    assert!(body_of(&requests, "POST", "/floatingips").is_empty());
    let rules: Vec<Value> = body_of(&requests, "POST", "/security-group-rules")
        .into_iter()
        .map(|b| {
            let r = &b["security_group_rule"];
            json!([
                r["protocol"],
                r.get("port_range_min"),
                r.get("port_range_max")
            ])
        })
        .collect();
    assert_eq!(
        rules,
        [
            json!(["tcp", 1, 65535]),
            json!(["udp", 1, 65535]),
            json!(["icmp", null, null])
        ]
    );
}

/// Where a failure is injected.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// This fake operation answers this status.
    Op(&'static str, u16),
    /// The server goes to ERROR while booting.
    BootError,
    /// The snapshot stays queued past a short timeout.
    SnapshotNeverActive,
    /// The download cannot be written.
    Download,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_at_every_step_is_cleaned_up_from_the_ledger() {
    let cases: &[(Fault, &str)] = &[
        (Fault::Op("keypair.create", 500), "creating keypair"),
        (Fault::Op("sg.create", 500), "creating security group"),
        (Fault::Op("sgrule.create", 500), "adding a rule"),
        (
            Fault::Op("fip.create", 500),
            "allocating a floating IP from public-ext-net-01",
        ),
        (Fault::Op("server.create", 500), "creating server"),
        (Fault::BootError, "No valid host was found"),
        (Fault::Op("fip.update", 500), "associating floating IP"),
        (Fault::Op("server.stop", 500), "stopping server"),
        (Fault::Op("server.createImage", 500), "creating snapshot"),
        (Fault::SnapshotNeverActive, "snapshot_timeout"),
        (Fault::Download, "downloading to"),
    ];
    for (fault, expected) in cases {
        let mut env = env_with(|_, o| {
            if let Fault::SnapshotNeverActive = fault {
                o.snapshot_timeout = Duration::from_millis(300);
            }
        })
        .await;
        let spec = spec(AccessProfile::SshOnly);
        let data = b"snapshot bytes".to_vec();
        let image_id = env
            .snapshot_image(
                &format!("{}-snapshot", spec.name),
                match fault {
                    Fault::SnapshotNeverActive => None,
                    _ => Some(&data),
                },
            )
            .await;
        match fault {
            Fault::Op(op, status) => env.fake.fail(op, *status),
            Fault::BootError => env.fake.state.lock().unwrap().boot_error = true,
            _ => {}
        }
        let dest = match fault {
            Fault::Download => env.dir.path().join("missing-dir").join("tmp_image"),
            _ => env.dir.path().join("tmp_image"),
        };
        let err = match build(&env, &spec, &dest).await {
            Ok(_) => panic!("{fault:?}: the build succeeded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "{fault:?}: {err}");
        let outstanding = env.ledger.outstanding().unwrap();
        env.cleanup().await;

        assert!(env.ledger.is_empty().unwrap(), "{fault:?}");
        assert_eq!(env.fake.leftovers(), Vec::<String>::new(), "{fault:?}");
        assert!(!dest.exists(), "{fault:?}: no partial download left");
        let ops = env.fake.ops();
        // Every resource created got its delete call.
        for record in &outstanding {
            let Some(id) = &record.id else { continue };
            let delete = match record.kind {
                ResourceKind::Keypair => format!("keypair.delete {id}"),
                ResourceKind::SecurityGroup => format!("sg.delete {id}"),
                ResourceKind::FloatingIp => format!("fip.delete {id}"),
                ResourceKind::Server => format!("server.delete {id}"),
                ResourceKind::Snapshot => {
                    assert_eq!(id, &image_id);
                    assert!(!env.image_exists(id).await, "{fault:?}: snapshot left");
                    continue;
                }
                other => panic!("{fault:?}: unexpected record kind {other}"),
            };
            assert!(ops.contains(&delete), "{fault:?}: {delete} not in {ops:#?}");
        }
        let created: Vec<ResourceKind> = outstanding.iter().map(|r| r.kind).collect();
        eprintln!("{fault:?}: cleaned up {created:?}");
        match fault {
            Fault::Op("keypair.create", _) => {
                assert_eq!(created, [ResourceKind::Keypair]);
                assert_eq!(outstanding[0].id, None, "intent only");
            }
            Fault::Op("server.create", _) => {
                assert_eq!(created.last(), Some(&ResourceKind::Server));
                assert_eq!(outstanding.last().unwrap().id, None, "intent only");
            }
            Fault::SnapshotNeverActive | Fault::Download | Fault::Op("server.createImage", _) => {
                assert_eq!(created.last(), Some(&ResourceKind::Snapshot));
                assert_eq!(created.len(), 5);
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn intent_only_records_are_found_by_name_and_only_ours_are_deleted() {
    let mut env = env().await;
    let name = unique("ipt-osb-killed");
    let tag = format!("ge-image-{name}-0badf00d");
    let marker = json!({ RUN_TAG_KEY: tag });
    let ours = env.fake.add_server(&name, marker);
    let users = env.fake.add_server(&name, json!({"owner": "someone"}));
    env.fake.add_keypair(&tag, "ssh-ed25519 AAAA test");
    env.fake.add_group(&tag, vec![]);
    let user_group = env.fake.add_group("default", vec![]);
    env.fake.add_fip(&tag);
    let user_fip = env.fake.add_fip("");
    let snapshot_name = format!("{name}-snapshot");
    let snapshot = env.snapshot_image(&snapshot_name, Some(b"x")).await;
    let user_image = env
        .images
        .create_active(&snapshot_name, Default::default(), &[])
        .await;

    let region = Some("RegionOne");
    for (kind, n) in [
        (ResourceKind::Keypair, tag.as_str()),
        (ResourceKind::SecurityGroup, tag.as_str()),
        (ResourceKind::FloatingIp, tag.as_str()),
        (ResourceKind::Server, name.as_str()),
        (ResourceKind::Snapshot, snapshot_name.as_str()),
    ] {
        env.ledger.intent(kind, n, "openstack", region).unwrap();
    }
    env.cleanup().await;
    assert!(env.ledger.is_empty().unwrap());
    let mut left = env.fake.leftovers();
    left.sort();
    let mut expected = vec![
        format!("floating IP {user_fip}"),
        format!("security group default ({user_group})"),
        format!("server {name} ({users})"),
    ];
    expected.sort();
    assert_eq!(left, expected, "only the run's own resources are deleted");
    assert!(env.fake.ops().contains(&format!("server.delete {ours}")));
    assert!(!env.image_exists(&snapshot).await);
    assert!(
        env.image_exists(&user_image.id).await,
        "an image of the same name without the run marker is kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn release_of_resources_already_gone_succeeds_and_other_backends_are_left_alone() {
    let env = env().await;
    let region = Some("RegionOne");
    let gone = [
        (ResourceKind::Keypair, "ge-image-x-00000000"),
        (ResourceKind::SecurityGroup, "sg-gone"),
        (ResourceKind::FloatingIp, "fip-gone"),
        (ResourceKind::Server, "server-gone"),
        (
            ResourceKind::Snapshot,
            "0b7e0f7c-3a47-4d3a-9b59-7a3f3e9e0000",
        ),
    ];
    for (kind, id) in gone {
        let key = env
            .ledger
            .intent(kind, "ge-image-x-00000000", "openstack", region)
            .unwrap();
        env.ledger.created(key, id).unwrap();
    }
    let local = env
        .ledger
        .intent(ResourceKind::LocalVm, "/tmp/vm", "local", None)
        .unwrap();
    let records = env.ledger.outstanding().unwrap();
    let (local_record, records): (Vec<_>, Vec<_>) =
        records.into_iter().partition(|r| r.key == local);
    assert!(!env.backend.release(&local_record[0]).await.unwrap());
    for record in records {
        assert!(env.backend.release(&record).await.unwrap(), "{record:?}");
        env.ledger.released(record.key).unwrap();
    }
    let ops = env.fake.ops();
    for op in [
        "keypair.delete ge-image-x-00000000",
        "sg.delete sg-gone",
        "fip.delete fip-gone",
        "server.delete server-gone",
    ] {
        assert!(ops.iter().any(|o| o == op), "{op} not in {ops:?}");
    }
    assert_eq!(
        env.ledger.outstanding().unwrap().len(),
        1,
        "the local record stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fixed_ip_mode_uses_no_floating_ip_and_a_second_power_off_is_not_an_error() {
    let env = env_with(|_, o| o.use_fixed_ip = true).await;
    let spec = spec(AccessProfile::SshOnly);
    let vm = env.backend.boot(&spec, &env.ledger).await.unwrap();
    let kinds: Vec<ResourceKind> = env
        .ledger
        .outstanding()
        .unwrap()
        .iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            ResourceKind::Keypair,
            ResourceKind::SecurityGroup,
            ResourceKind::Server
        ]
    );
    let ready = env
        .backend
        .wait_ready(&vm, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(ready.ip.to_string(), "192.168.0.10");
    assert_eq!(vm.floating_ip(), None);
    env.backend
        .power_off(&vm, Duration::from_secs(20))
        .await
        .unwrap();
    // The guest may have powered itself off already: Nova answers 409.
    env.backend
        .power_off(&vm, Duration::from_secs(20))
        .await
        .unwrap();
    let ops = env.fake.ops();
    assert_eq!(
        ops.iter().filter(|o| o.starts_with("server.stop")).count(),
        2
    );
    assert!(
        !ops.iter().any(|o| o.starts_with("fip.")),
        "no floating IP call in fixed-IP mode: {ops:?}"
    );
    env.backend.delete(vm, &env.ledger).await.unwrap();
    assert!(env.ledger.is_empty().unwrap());
    assert_eq!(env.fake.leftovers(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_names_fail_before_anything_is_created() {
    type Tweak = fn(&mut OpenStackBackendOptions);
    let cases: [(Tweak, &str); 3] = [
        (
            |o| o.floating_ip = Some("203.0.113.77".into()),
            "floating IP 203.0.113.77 (option floating_ip / FLOATINGIP) does not exist",
        ),
        (
            |o| o.network = "no-such-net".into(),
            "finding network (option network) no-such-net",
        ),
        (
            |o| o.floating_network = "no-such-ext".into(),
            "finding external network (option floating_network) no-such-ext",
        ),
    ];
    for (tweak, expected) in cases {
        let env = env_with(|_, o| tweak(o)).await;
        let err = env
            .backend
            .boot(&spec(AccessProfile::SshOnly), &env.ledger)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
        assert!(env.ledger.is_empty().unwrap(), "{expected}");
        let ops = env.fake.ops();
        assert!(
            !ops.iter().any(|o| o.contains(".create")),
            "{expected}: {ops:?}"
        );
    }
}
