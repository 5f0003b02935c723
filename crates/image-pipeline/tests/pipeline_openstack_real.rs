//! The whole `ge-image create` → test pipeline over the OpenStack backend:
//! Nova and Neutron are the stateful wiremock fake (`cloud_test_support::nova_mock`, bodies
//! shaped like the api-ref samples), Keystone and Glance are the REAL local
//! ones (base image lookup, the snapshot the fake's `createImage` names,
//! the `<name>_rc` upload), and the "VMs" answer SSH through a REAL private
//! sshd on a loopback port (`cloud_test_support::sshd`).
//!
//! How the pieces meet: the fake allocates floating IPs at `127.0.0.1`, the
//! backend's `ssh_port` is the sshd's port, and a background task copies
//! the keypairs the pipeline registers in the fake Nova into the sshd's
//! `authorized_keys` (what cloud-init does in a real VM). The sshd's
//! `ForceCommand` runs every command in a temporary directory, the "VM's
//! home", so `create.sh`, `data.tgz` and what `create.sh` makes land there.
//! `create.sh` runs with a pty (the base says sudo needs one) and `test.sh`
//! runs in the sandbox (as `nobody`: ge-image runs as root here) and
//! reaches the "VM" with `ssh $USERNAME@$IP`, or inside the tester "VM"
//! with `TEST_USING_VM`.
//!
//! Each run ends with an empty folder ledger and nothing left in the fake
//! (server, keypair, security group, floating IP), whatever happened.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cloud_test_support::fake_cloud::FakeCloud;
use cloud_test_support::sshd::Sshd;
use cloud_test_support::unique;
use image_pipeline::compute::openstack::RUN_TAG_KEY;
use image_pipeline::{
    CreateReport, ImageFolder, OpenStackBackend, OpenStackBackendOptions, Overrides, Pipeline,
    ResourceLedger, Settings,
};
use openstack_client::glance::Visibility;

/// Fields drop in declaration order: the fake cloud (Glance clean-up, then
/// the cloud lock) before the "VM's home".
struct Env {
    cloud: FakeCloud,
    /// The "VM's home" (the sshd's `ForceCommand` directory).
    home: tempfile::TempDir,
    /// Root of the image folders.
    root: tempfile::TempDir,
    backend: OpenStackBackend,
}

async fn env() -> Env {
    let home = tempfile::tempdir().unwrap();
    let sshd = Sshd::prepare_with(&format!(
        "ForceCommand cd {} && eval \"$SSH_ORIGINAL_COMMAND\"\n",
        home.path().display()
    ));
    let cloud = FakeCloud::start(sshd, "ipt-pipe-base").await;
    let options = OpenStackBackendOptions {
        poll_interval: Duration::from_millis(10),
        delete_timeout: Duration::from_secs(20),
        snapshot_timeout: Duration::from_secs(60),
        ssh_port: cloud.sshd.port,
        ..Default::default()
    };
    let backend = OpenStackBackend::connect(cloud.session.clone(), options)
        .await
        .unwrap();
    Env {
        cloud,
        home,
        root: tempfile::tempdir().unwrap(),
        backend,
    }
}

impl Env {
    /// The settings of these runs: the base `fakeos` (login `root`, sudo
    /// needs a pty), no prepare (guest-tools is tested on its own), short
    /// time limits.
    fn settings(&self, extra: &str) -> Settings {
        let file = self.root.path().join("settings.toml");
        std::fs::write(
            &file,
            format!(
                "base = \"fakeos\"\nprepare = false\nssh_attempts = 10\nboot_timeout_secs = 60\n\
                 create_timeout_secs = 120\ntest_timeout_secs = 120\ntester_base = \"fakeos\"\n{extra}\n\
                 [bases.fakeos]\nimage = \"{}\"\nuser = \"root\"\nsudo_pty = true\n",
                self.cloud.source
            ),
        )
        .unwrap();
        let overrides = Overrides {
            settings_file: Some(file),
            ..Default::default()
        };
        Settings::load_from(&overrides, &[], Path::new("/nonexistent")).unwrap()
    }

    /// An image folder with `create.sh`, `test.sh` and a `data.tgz` holding
    /// `payload.txt`.
    fn folder(&self, create: &str, test: &str) -> ImageFolder {
        let name = unique("ipt-pipe");
        let dir = self.root.path().join(&name);
        std::fs::create_dir(&dir).unwrap();
        for (file, text) in [("create.sh", create), ("test.sh", test)] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let payload = self.root.path().join("payload");
        std::fs::create_dir_all(&payload).unwrap();
        std::fs::write(payload.join("payload.txt"), "from data.tgz\n").unwrap();
        let status = Command::new("tar")
            .arg("czf")
            .arg(dir.join("data.tgz"))
            .arg("-C")
            .arg(&payload)
            .arg("payload.txt")
            .status()
            .unwrap();
        assert!(status.success());
        ImageFolder::new(self.root.path(), &name).unwrap()
    }

    /// A real Glance image with qcow2 data that the fake's `createImage`
    /// answers with (the Nova snapshot).
    async fn snapshot_image(&mut self) -> String {
        self.cloud
            .snapshot_image(self.root.path(), "ipt-pipe-snap", &[(RUN_TAG_KEY, "test")])
            .await
    }

    fn pipeline<'a>(
        &'a self,
        settings: &'a Settings,
        folder: &'a ImageFolder,
    ) -> Pipeline<'a, OpenStackBackend> {
        Pipeline {
            backend: &self.backend,
            glance: &self.cloud.glance,
            settings,
            folder,
            verbose: false,
        }
    }

    /// `create fakeos` through [`Env::pipeline`], which must succeed (the
    /// sshd's log in the panic message otherwise).
    async fn create_ok(&self, settings: &Settings, folder: &ImageFolder) -> CreateReport {
        self.pipeline(settings, folder)
            .create("fakeos")
            .await
            .unwrap_or_else(|e| panic!("create: {e}\nsshd log:\n{}", self.cloud.sshd.log()))
    }

    async fn image_exists(&self, id: &str) -> bool {
        self.cloud.image_exists(id).await
    }

    /// Nothing outstanding in the folder's ledger, nothing left in the fake.
    fn assert_nothing_left(&self, folder: &ImageFolder) {
        let ledger = ResourceLedger::open(folder.ledger_path()).unwrap();
        assert_eq!(ledger.outstanding().unwrap(), vec![], "ledger not empty");
        assert_eq!(
            self.cloud.fake.leftovers(),
            Vec::<String>::new(),
            "left in the fake"
        );
    }

    fn count(&self, op: &str) -> usize {
        self.cloud
            .fake
            .ops()
            .iter()
            .filter(|o| o.split(' ').next() == Some(op))
            .count()
    }
}

const CREATE_OK: &str = "#!/bin/bash -ex
if [ -t 0 ]; then echo 'create.sh: on a pty'; else echo 'create.sh: no pty'; exit 9; fi
tar xzf data.tgz
cat payload.txt
echo built-by-create > built-marker
";

/// `test.sh` written the original's way: reach the VM at `$IP` with ssh.
const TEST_OK: &str = "#!/bin/sh
set -e
echo \"test.sh as $(id -un) IP=$IP USERNAME=$USERNAME\"
ssh \"$USERNAME@$IP\" cat built-marker payload.txt
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_test_succeeds_and_leaves_only_the_candidate() {
    let mut env = env().await;
    let snapshot = env.snapshot_image().await;
    let settings = env.settings("");
    let folder = env.folder(CREATE_OK, TEST_OK);
    let report = env.create_ok(&settings, &folder).await;
    env.cloud.images.track(report.rc_image_id.clone());
    let test_log = std::fs::read_to_string(folder.test_log()).unwrap();
    assert!(report.test.success, "{report:?}\ntest.log:\n{test_log}");
    let text = report.test.to_text(folder.name());
    assert!(
        text.starts_with(&format!("Success. UUID: {}\n", report.rc_image_id)),
        "{text}"
    );
    // create.sh ran in the "VM" with a pty, with data.tgz beside it.
    let create_log = std::fs::read_to_string(folder.create_log()).unwrap();
    assert!(create_log.contains("create.sh: on a pty"), "{create_log}");
    assert!(create_log.contains("from data.tgz"), "{create_log}");
    assert_eq!(
        std::fs::read_to_string(env.home.path().join("built-marker")).unwrap(),
        "built-by-create\n"
    );
    // test.sh ran in the sandbox, not as root, and reached the VM by ssh $IP.
    assert!(
        test_log.contains("test.sh as nobody IP=127.0.0.1 USERNAME=root"),
        "{test_log}"
    );
    assert!(
        test_log.contains("built-by-create") && test_log.contains("from data.tgz"),
        "{test_log}"
    );
    // The candidate is private in Glance; the Nova snapshot is gone.
    let rc = env
        .cloud
        .glance
        .get_image(&report.rc_image_id)
        .await
        .unwrap();
    assert_eq!(
        rc.name.as_deref(),
        Some(format!("{}_rc", folder.name()).as_str())
    );
    assert_eq!(rc.visibility, Visibility::Private);
    assert!(
        !env.image_exists(&snapshot).await,
        "snapshot left in Glance"
    );
    // Two servers (build, test), each with its keypair, group and floating
    // IP, all deleted.
    assert_eq!(env.count("server.create"), 2);
    assert_eq!(env.count("server.stop"), 1);
    assert_eq!(env.count("server.createImage"), 1);
    for op in ["keypair", "sg", "fip"] {
        assert_eq!(
            env.count(&format!("{op}.create")),
            env.count(&format!("{op}.delete")),
            "{op}: {:?}",
            env.cloud.fake.ops()
        );
    }
    env.assert_nothing_left(&folder);
    let state = folder.load_state().unwrap();
    assert_eq!(
        state.rc_image_id.as_deref(),
        Some(report.rc_image_id.as_str())
    );
    assert_eq!(state.vm, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_test_removes_the_candidate_and_everything_else() {
    let mut env = env().await;
    env.snapshot_image().await;
    let settings = env.settings("");
    let folder = env.folder(CREATE_OK, "#!/bin/sh\necho 'checking'\nexit 3\n");
    let report = env.create_ok(&settings, &folder).await;
    assert!(!report.test.success);
    assert_eq!(report.test.detail, "exited with status 3");
    let text = report.test.to_text(folder.name());
    assert!(text.starts_with("Failed."), "{text}");
    assert!(text.contains("checking"), "{text}");
    assert!(
        !env.image_exists(&report.rc_image_id).await,
        "candidate kept"
    );
    env.assert_nothing_left(&folder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_create_sh_is_reported_with_its_log_tail_and_cleaned_up() {
    let mut env = env().await;
    env.snapshot_image().await;
    let settings = env.settings("");
    let folder = env.folder(
        "#!/bin/bash -e\necho 'installing the service'\necho 'E: no such package' >&2\nexit 4\n",
        TEST_OK,
    );
    let err = env
        .pipeline(&settings, &folder)
        .create("fakeos")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("create.sh"), "{err}");
    assert!(err.contains("status 4"), "{err}");
    assert!(err.contains("E: no such package"), "{err}");
    assert_eq!(env.count("server.createImage"), 0);
    assert_eq!(env.count("server.create"), 1);
    env.assert_nothing_left(&folder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_using_vm_runs_test_sh_in_a_tester_vm() {
    let mut env = env().await;
    env.snapshot_image().await;
    let settings = env.settings("test_using_vm = true");
    let folder = env.folder(
        CREATE_OK,
        "#!/bin/bash -e\necho \"tester in $(pwd) IP=$IP USERNAME=$USERNAME TESTSCRIPT=$TESTSCRIPT\"\n\
         grep -q 'Port' .ssh/config && test -s .ssh/id_ed25519\n",
    );
    let report = env.create_ok(&settings, &folder).await;
    env.cloud.images.track(report.rc_image_id.clone());
    let test_log = std::fs::read_to_string(folder.test_log()).unwrap();
    assert!(report.test.success, "{report:?}\ntest.log:\n{test_log}");
    assert!(
        test_log.contains(&format!(
            "tester in {} IP=127.0.0.1 USERNAME=root TESTSCRIPT=test.sh",
            env.home.path().display()
        )),
        "{test_log}"
    );
    // Build, test and tester servers; the tester from the tester base.
    assert_eq!(env.count("server.create"), 3);
    env.assert_nothing_left(&folder);
}

/// A Nova or Neutron failure at each step of the whole create → test run
/// (build VM and test VM alike): the run fails naming the step, and every
/// resource made before it is deleted (ledger empty, nothing in the fake);
/// no `_rc` image survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_failure_at_every_step_leaves_nothing() {
    let mut env = env().await;
    let settings = env.settings("");
    // (operation, which of its calls fails: 1 = the build VM's, 2 = the test VM's)
    let cases: &[(&str, usize)] = &[
        ("keypair.create", 1),
        ("sg.create", 1),
        ("sgrule.create", 1),
        ("server.create", 1),
        ("fip.create", 1),
        ("fip.update", 1),
        ("server.stop", 1),
        ("server.createImage", 1),
        ("keypair.create", 2),
        ("server.create", 2),
        ("fip.create", 2),
    ];
    for (op, nth) in cases {
        env.cloud.fake.state.lock().unwrap().failures.clear();
        env.snapshot_image().await;
        let folder = env.folder(CREATE_OK, TEST_OK);
        let before = env.count(op);
        // Fail the nth call of `op` from now on: let the earlier ones pass.
        let fake = env.cloud.fake.clone();
        let op_name = op.to_string();
        let nth = *nth;
        if nth == 1 {
            env.cloud.fake.fail(op, 500);
        }
        let arm = tokio::spawn(async move {
            loop {
                let done = fake
                    .ops()
                    .iter()
                    .filter(|o| o.split(' ').next() == Some(op_name.as_str()))
                    .count()
                    - before;
                if done + 1 >= nth {
                    fake.fail(&op_name, 500);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let mut result = env.pipeline(&settings, &folder).create("fakeos").await;
        arm.abort();
        // The shared local Glance sometimes answers a DELETE with 500 under
        // load; the run then says so and points at `gc`, which must finish.
        if let Err(e) = &result {
            if e.to_string().contains("clean-up incomplete") {
                env.cloud.fake.state.lock().unwrap().failures.clear();
                let report = env.pipeline(&settings, &folder).gc().await.unwrap();
                assert!(report.is_complete(), "{op} #{nth}: gc: {report:?}");
                result = Err(image_pipeline::Error::Pipeline(format!("{e} (then gc)")));
            }
        }
        let rc_name = format!("{}_rc", folder.name());
        let leftover_rc = env
            .cloud
            .glance
            .list_images(&openstack_client::glance::ImageFilter {
                name: Some(rc_name.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        for image in &leftover_rc {
            env.cloud.images.track(image.id.clone());
        }
        let err = match result {
            Ok(report) => panic!("{op} #{nth}: the run succeeded: {report:?}"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("injected failure") || err.contains("500"),
            "{op} #{nth}: {err}"
        );
        assert!(leftover_rc.is_empty(), "{op} #{nth}: {rc_name} left: {err}");
        let ledger = ResourceLedger::open(folder.ledger_path()).unwrap();
        assert_eq!(ledger.outstanding().unwrap(), vec![], "{op} #{nth}: {err}");
        assert_eq!(
            env.cloud.fake.leftovers(),
            Vec::<String>::new(),
            "{op} #{nth}: {err}"
        );
    }
}
