//! Helpers of the tests that run `rabbit2packer` end to end on the real
//! RabbitMQ (127.0.0.1:5672), the real Packer (null builder) and the real
//! local Glance: a service whose one template "creates" a given Glance
//! image, queue look-ups, waiting for a build to settle.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud_test_support::amqp::{take_all, take_one};
pub use cloud_test_support::write_executable;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use packuilon_core::amqp::failed_queue;
use packuilon_core::compute_gate::{ComputeGate, ComputeGateSettings};
use packuilon_core::gate::{GateBackend, GateConfig};
use packuilon_core::record::BuildEntry;
use packuilon_core::rotate::{RenameSettings, Rotator};
use packuilon_core::{AuthEnv, Broker, BuildRecord, BuildState, Runner, Secret, Service};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A queue name no other test uses.
pub fn unique_queue(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("packuilon-test-{tag}-{}-{nanos}", std::process::id())
}

/// The local broker, queue `queue`.
pub fn broker(queue: &str) -> Broker {
    broker_on(queue, 5672)
}

/// The broker on 127.0.0.1:`port` (the local one, or a proxy to it), queue
/// `queue`.
pub fn broker_on(queue: &str, port: u16) -> Broker {
    Broker {
        host: "127.0.0.1".into(),
        port,
        user: "guest".into(),
        password: Secret::new("guest"),
        queue: queue.into(),
    }
}

async fn channel(b: &Broker) -> (lapin::Connection, lapin::Channel) {
    let conn = b
        .connect()
        .await
        .expect("RabbitMQ is not reachable on 127.0.0.1:5672: run scripts/rabbitmq/up.sh");
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

/// Messages ready in `queue` on the open channel `ch` (not counting
/// unacknowledged ones), or the broker's refusal (no such queue yet).
async fn count(ch: &lapin::Channel, queue: &str) -> Result<u32, lapin::Error> {
    let q = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(q.message_count())
}

/// Messages ready in `queue` (0 while it does not exist).
pub async fn ready(b: &Broker, queue: &str) -> u32 {
    let (_conn, ch) = channel(b).await;
    count(&ch, queue).await.unwrap_or(0)
}

/// Messages ready in `queue`, or why they cannot be counted (the broker is
/// down, the queue does not exist yet).
pub async fn try_ready(b: &Broker, queue: &str) -> Result<u32, String> {
    let conn = b.connect().await.map_err(|e| e.to_string())?;
    let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
    count(&ch, queue).await.map_err(|e| e.to_string())
}

/// Wait (two minutes at most, a liveness bound) until `queue` holds `want`
/// ready messages; returns the last count (0 while the queue does not exist).
pub async fn wait_ready(b: &Broker, queue: &str, want: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = try_ready(b, queue).await.unwrap_or(0);
        if n == want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Take one message off `queue` (acked).
pub async fn get_one(b: &Broker, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    let (_conn, ch) = channel(b).await;
    take_one(&ch, queue).await
}

/// Take every message off `queue` (each acked), in the broker's order.
pub async fn get_all(b: &Broker, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let (_conn, ch) = channel(b).await;
    take_all(&ch, queue).await
}

/// Delete the queue and its failed queue.
pub async fn delete_queues(b: &Broker) {
    let (_conn, ch) = channel(b).await;
    for q in [b.queue.clone(), failed_queue(&b.queue)] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// A profile whose build name is `<personality>-sl7x-x86_64`.
pub fn profile(personality: &str) -> Vec<u8> {
    serde_json::json!({
        "metadata": {"template": {"branch": {"name": "prod", "type": "domain"}}},
        "system": {
            "personality": {"name": personality},
            "archetype": {"name": "ral-tier1"},
            "os": {"architecture": "x86_64", "distribution": {"name": "sl"}, "version": {"name": "7x"}}
        }
    })
    .to_string()
    .into_bytes()
}

/// A service in `dir` whose one template (Packer's null builder) prints
/// `built <build name> from <source image>` and reports that it created the
/// Glance image `image_id`, as the OpenStack builder does; one worker, one
/// attempt per request, no gate, no rotation.
pub fn service(dir: &Path, queue: &str, image_id: &str) -> Service {
    std::fs::write(
        dir.join("null.json"),
        serde_json::json!({
            "builders": [{"type": "null", "communicator": "none"}],
            "provisioners": [{"type": "shell-local", "inline": [
                "echo built $NAME from $IMAGE",
                format!("echo '--> openstack: An image was created: {image_id}'")
            ]}]
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("template-map.json"),
        r#"{"DEFAULT": ["null.json"]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("source-images.json"),
        r#"{"sl7x-x86_64": "0b5e7c6a-6a43-4f3e-9a0e-1d2f3c4b5a69"}"#,
    )
    .unwrap();
    let auth = dir.join("openrc");
    std::fs::write(
        &auth,
        "export OS_PROJECT_ID=p\nexport CHECKPOINT_DISABLE=1\n",
    )
    .unwrap();
    Service {
        broker: broker(queue),
        thread_count: 1,
        runner: Runner {
            packer: PathBuf::from("packer"),
            build_file_dir: dir.join("build"),
            log_dir: dir.join("logs"),
            auth: AuthEnv::load(&auth).unwrap(),
        },
        template_map: dir.join("template-map.json"),
        images_config: dir.join("source-images.json"),
        max_backoff: Duration::from_secs(2),
        max_attempts: 1,
        retry_delay: Duration::ZERO,
        record: Arc::new(BuildRecord::load(&dir.join("state/builds.json")).unwrap()),
        rotator: None,
        notifier: Default::default(),
        gate: None,
        rotate_old_images: false,
    }
}

/// Wait until the record shows `name` settled (not running) with a
/// handed-off or succeeded state and the queue is empty; `limit` is a
/// liveness bound, not a timing assertion.
pub async fn wait_settled(svc: &Service, name: &str, limit: Duration) -> Option<BuildEntry> {
    let deadline = Instant::now() + limit;
    loop {
        let entry = svc.record.get(name);
        let settled = entry.as_ref().is_some_and(|e| match e.state {
            BuildState::Running => false,
            BuildState::Succeeded => true,
            BuildState::Failed | BuildState::RotationFailed => e.handed_off,
        });
        if settled && ready(&svc.broker, &svc.broker.queue).await == 0 {
            return entry;
        }
        if Instant::now() > deadline {
            return entry;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Run `svc` until `name` settles; returns the record's entry.
pub async fn run_until_settled(svc: &Service, name: &str, limit: Duration) -> BuildEntry {
    let (trigger, shutdown) = packuilon_core::shutdown_signal();
    let running = tokio::spawn({
        let svc = svc.clone();
        async move { svc.run(shutdown).await }
    });
    let entry = wait_settled(svc, name, limit).await;
    trigger.trigger();
    running.await.unwrap().unwrap();
    entry.unwrap_or_else(|| panic!("no record of {name}"))
}

/// A header of a message as text.
pub fn header(msg: &lapin::message::BasicGetMessage, name: &str) -> String {
    packuilon_core::amqp::header_str(&msg.delivery.properties, name).unwrap_or_default()
}

/// A `[test-gate]` on `backend` with `script` and the two time limits
/// (seconds), everything else at the defaults of an empty section.
pub fn gate_config(
    backend: GateBackend,
    script: Option<PathBuf>,
    timeout: u64,
    boot_timeout: u64,
) -> GateConfig {
    GateConfig {
        backend,
        script,
        timeout,
        boot_timeout,
        login_user: "root".into(),
        flavor: "m1.tiny".into(),
        network: None,
        floating_network: None,
        floating_ip: None,
        use_fixed_ip: false,
        memory_mib: 1024,
        work_dir: None,
        cloud: None,
        test_user: "nobody".into(),
    }
}

/// An image family `<unique tag> AQ`: an older image with `old_visibility`
/// and, more than a second later (Glance's `created_at` has whole seconds),
/// the private new one, both deleted by `cleanup`. The name, old, new.
pub async fn old_and_new(
    cleanup: &mut cloud_test_support::ImageCleanup,
    tag: &str,
    old_visibility: openstack_client::glance::Visibility,
) -> (
    String,
    openstack_client::glance::Image,
    openstack_client::glance::Image,
) {
    let name = format!("{} AQ", cloud_test_support::unique(tag));
    let old = cleanup.create_active(&name, old_visibility, &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = cleanup
        .create_active(&name, openstack_client::glance::Visibility::Private, &[])
        .await;
    (name, old, new)
}

/// `config` as compute-gate settings in RegionOne, the gate's state and
/// logs under `dir` (`state/`, `logs/`).
pub fn gate_settings(config: &GateConfig, dir: &Path) -> ComputeGateSettings {
    let mut settings =
        ComputeGateSettings::from_config(config, &dir.join("state"), &dir.join("logs")).unwrap();
    settings.openstack.region = Some("RegionOne".into());
    settings
}

/// A service reporting `image_id` on `queue` ([`service`]), gated with
/// `settings`, rotating old images in RegionOne.
pub fn gated_service(
    dir: &Path,
    queue: &str,
    image_id: &str,
    session: &openstack_client::Session,
    settings: ComputeGateSettings,
) -> Service {
    let mut svc = service(dir, queue, image_id);
    svc.gate = Some(Arc::new(ComputeGate::new(session.clone(), settings)));
    svc.rotator = Some(Arc::new(Rotator::new(
        session.clone(),
        Some("RegionOne".into()),
        RenameSettings::default(),
    )));
    svc.rotate_old_images = true;
    svc
}
