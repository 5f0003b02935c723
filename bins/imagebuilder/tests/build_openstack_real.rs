//! `build` on the OpenStack backend: Nova and Neutron are cloud-test-support's
//! stateful wiremock fake (api-ref shaped bodies), Keystone and Glance the
//! REAL local ones (source image lookup, the snapshot the fake's
//! `createImage` names, which the build downloads, publishes and deletes),
//! and the "VM" answers SSH through a real private sshd on a loopback port.
//! A success publishes the files and leaves nothing in the fake; the
//! server, its temporary keypair and security group are all named
//! `imagebuilder-<uuid hex>` (the build id), as the original's; a failing
//! provisioner and a server going to ERROR both fail with nothing left
//! (keypair, security group, floating IP, server) and an empty ledger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cloud_test_support::fake_cloud::FakeCloud;
use cloud_test_support::sshd::Sshd;
use image_pipeline::compute::openstack::RUN_TAG_KEY;
use image_pipeline::{BackendKind, OpenStackBackend, OpenStackBackendOptions, ResourceLedger};
use imagebuilder_core::build::{self, BuildOptions};
use imagebuilder_core::config::Dirs;
use imagebuilder_core::report::ReportPaths;

/// Fields drop in declaration order: the fake cloud (Glance clean-up, then
/// the cloud lock) first.
struct Env {
    cloud: FakeCloud,
    root: tempfile::TempDir,
    backend: OpenStackBackend,
}

async fn env() -> Env {
    let cloud = FakeCloud::start(Sshd::prepare(), "ipt-ib-src").await;
    let options = build::openstack_options(OpenStackBackendOptions {
        poll_interval: Duration::from_millis(10),
        delete_timeout: Duration::from_secs(20),
        snapshot_timeout: Duration::from_secs(60),
        ssh_port: cloud.sshd.port,
        availability_zone: Some("bgo-default-1".into()),
        ..Default::default()
    });
    let backend = OpenStackBackend::connect(cloud.session.clone(), options)
        .await
        .unwrap();
    Env {
        cloud,
        root: tempfile::tempdir().unwrap(),
        backend,
    }
}

impl Env {
    /// A real Glance image with qcow2 data that the fake's `createImage` answers with.
    async fn snapshot_image(&mut self) -> String {
        self.cloud
            .snapshot_image(self.root.path(), "ipt-ib-snap", &[(RUN_TAG_KEY, "test")])
            .await
    }

    /// Build options with a template of `provisioners` (JSON array text).
    fn options(&self, name: &str, provisioners: &str) -> BuildOptions {
        let root = self.root.path();
        let tdir = root.join(format!("templates-{name}"));
        std::fs::create_dir_all(&tdir).unwrap();
        std::fs::write(
            tdir.join("template"),
            format!(
                "{{\"builders\": [{{\"type\": \"openstack\", \"ssh_pty\": \"true\"}}],\n\
                 \"post-processors\": [{{\"type\": \"manifest\", \"output\": \"{}\"}}],\n\
                 \"provisioners\": {provisioners}}}",
                root.join(format!("{name}-manifest.json")).display()
            ),
        )
        .unwrap();
        BuildOptions {
            availability_zone: "nova".into(),
            name: name.into(),
            source_image: self.cloud.source.clone(),
            ssh_user: "root".into(),
            flavor: "m1.small".into(),
            network: "node-int-net-01".into(),
            provision_script: "/bin/true".into(),
            download: true,
            purge_source: false,
            packer: false,
            backend: BackendKind::Openstack,
            dirs: Dirs {
                template_dir: tdir.clone(),
                download_dir: root.join("public_builds"),
            },
            extra_vars: BTreeMap::new(),
            state_dir: root.join("state"),
            report: Some(ReportPaths::new(&root.join("log"), name, "20250101")),
            date: "20250101".into(),
            cwd: tdir,
            verbose: false,
        }
    }

    /// Plan a build of `name` with `provisioners` (see [`Env::options`]) and
    /// apply it on the fake cloud; the plan and what the build returned.
    async fn build(
        &self,
        name: &str,
        provisioners: &str,
    ) -> (
        build::BuildPlan,
        imagebuilder_core::Result<build::BuildOutcome>,
    ) {
        let plan = build::plan(&self.options(name, provisioners)).unwrap();
        let outcome = build::apply(&plan, &self.backend, &self.cloud.glance, false).await;
        (plan, outcome)
    }

    async fn image_exists(&self, id: &str) -> bool {
        self.cloud.image_exists(id).await
    }

    fn assert_clean(&self, plan: &build::BuildPlan) {
        assert!(
            self.cloud.fake.leftovers().is_empty(),
            "left in the fake: {:?}",
            self.cloud.fake.leftovers()
        );
        let ledger = ResourceLedger::open(&plan.ledger).unwrap();
        assert!(
            ledger.outstanding().unwrap().is_empty(),
            "{:?}",
            ledger.outstanding().unwrap()
        );
        assert!(!plan.work_dir.exists(), "work directory left");
    }
}

fn report(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_on_openstack_publishes_and_leaves_nothing() {
    let mut env = env().await;
    let snap = env.snapshot_image().await;
    let marker = env.root.path().join("provisioned");
    let (plan, outcome) = env
        .build(
            "ibos",
            &format!(
                "[{{\"type\": \"shell\", \"environment_vars\": [\"WHO=imagebuilder\"], \
                  \"inline\": [\"echo hello from $WHO > {}\"]}}]",
                marker.display()
            ),
        )
        .await;
    let outcome = outcome.unwrap_or_else(|e| panic!("{e}\nops: {:?}", env.cloud.fake.ops()));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "hello from imagebuilder\n"
    );
    let dl = env.root.path().join("public_builds");
    let published = outcome.published.unwrap();
    assert_eq!(published.image, dl.join("ibos-20250101.qcow2"));
    assert!(dl.join("ibos-latest.qcow2").exists() && dl.join("ibos-latest.md5").exists());
    // The temporary keypair and security group were named per build and are gone.
    let ops = env.cloud.fake.ops();
    for op in [
        "keypair.create",
        "sg.create",
        "server.create",
        "server.createImage",
        "server.delete",
        "keypair.delete",
        "sg.delete",
    ] {
        assert!(ops.iter().any(|o| o.starts_with(op)), "no {op} in {ops:?}");
    }
    assert!(
        !env.image_exists(&snap).await,
        "the snapshot was not deleted from Glance"
    );
    // The server was created in the availability zone.
    let posted = |suffix: &'static str| {
        let fake = env.cloud.fake.clone();
        async move {
            fake.server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with(suffix))
                .map(|r| serde_json::from_slice(&r.body).unwrap())
                .collect::<Vec<serde_json::Value>>()
        }
    };
    let bodies = posted("/servers").await;
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        bodies[0]["server"]["availability_zone"], "bgo-default-1",
        "{}",
        bodies[0]
    );
    // The original's names: imagebuilder-<uuid hex>, the build id, for the
    // server, its keypair and its security group (and the ledger's records).
    let id = &plan.build_id;
    let hex = id.strip_prefix("imagebuilder-").unwrap();
    assert!(
        hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(bodies[0]["server"]["name"], id.as_str());
    assert_eq!(bodies[0]["server"]["key_name"], id.as_str());
    assert_eq!(
        bodies[0]["server"]["security_groups"],
        serde_json::json!([{ "name": id }]),
        "{}",
        bodies[0]
    );
    assert_eq!(
        bodies[0]["server"]["metadata"][RUN_TAG_KEY],
        id.as_str(),
        "{}",
        bodies[0]
    );
    let keypairs = posted("/os-keypairs").await;
    assert_eq!(keypairs.len(), 1);
    assert_eq!(keypairs[0]["keypair"]["name"], id.as_str());
    let groups = posted("/security-groups").await;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["security_group"]["name"], id.as_str());
    assert!(
        ops.contains(&format!("keypair.delete {id}")),
        "the keypair is deleted by its name: {ops:?}"
    );
    env.assert_clean(&plan);
    let lines = report(&env.root.path().join("log/ibos-report.jsonl"));
    assert_eq!(
        lines.last().unwrap(),
        &serde_json::json!({"result": "success"})
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(outcome.manifest.unwrap()).unwrap()).unwrap();
    assert_eq!(manifest["builds"][0]["builder_type"], "openstack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_provisioner_and_boot_error_leave_nothing() {
    let mut env = env().await;
    let snap = env.snapshot_image().await;
    let (plan, outcome) = env
        .build(
            "ibfail",
            "[{\"type\": \"shell\", \"inline\": [\"echo failing\", \"exit 3\"]}]",
        )
        .await;
    let err = outcome.unwrap_err().to_string();
    assert!(
        err.contains("provisioner 0 (shell) failed") && err.contains("status 3"),
        "{err}"
    );
    env.assert_clean(&plan);
    assert!(
        env.image_exists(&snap).await,
        "no snapshot is taken of a failed build"
    );
    assert!(!env
        .root
        .path()
        .join("public_builds/ibfail-20250101.qcow2")
        .exists());
    let lines = report(&env.root.path().join("log/ibfail-report.jsonl"));
    assert_eq!(lines[0], serde_json::json!({"result_imagebuilder": "1"}));
    assert!(lines[1]["output_imagebuilder"]
        .as_str()
        .unwrap()
        .contains("failing"));
    assert_eq!(lines[2], serde_json::json!({"result": "failed"}));

    // The server goes to ERROR: the keypair and security group still go.
    env.cloud.fake.state.lock().unwrap().boot_error = true;
    let (plan, outcome) = env
        .build("iberr", "[{\"type\": \"shell\", \"inline\": [\"true\"]}]")
        .await;
    let err = outcome.unwrap_err().to_string();
    assert!(
        err.contains("iberr") || err.contains("imagebuilder-"),
        "{err}"
    );
    env.assert_clean(&plan);
    let lines = report(&env.root.path().join("log/iberr-report.jsonl"));
    assert_eq!(
        lines.last().unwrap(),
        &serde_json::json!({"result": "failed"})
    );
}
